//! Sending messages: to the IoT hub through Com, to other services, and calls.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::busbar::service::bus;
use crate::error::Error;
use crate::message::{JSON, Reply};

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::other(format!("cannot serialize as JSON: {e}")))
}

fn owned_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A timeout in whole milliseconds, saturating at `u32::MAX`.
pub(crate) fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Submits `value` as JSON towards the IoT hub (through the node's Com bridge). Returns the
/// message id the node gave it.
pub fn submit<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    submit_with_headers(value, &[])
}

/// Like [`submit`], with headers (carried to the hub as message properties).
pub fn submit_with_headers<T: Serialize + ?Sized>(
    value: &T,
    headers: &[(&str, &str)],
) -> Result<String, Error> {
    submit_bytes(JSON, &to_json(value)?, headers)
}

/// Submits a payload of any content type towards the IoT hub, with headers.
pub fn submit_bytes(
    content_type: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
) -> Result<String, Error> {
    bus::submit_message(content_type, payload, &owned_headers(headers)).map_err(Error::from)
}

/// Sends `action` with `value` as JSON to the service `destination` (`*` for every other
/// service) without waiting. Returns the message id. An unknown destination fails at once; a
/// failure at the receiver comes back later through [`Service::on_error`].
///
/// [`Service::on_error`]: crate::Service::on_error
pub fn submit_action<T: Serialize + ?Sized>(
    destination: &str,
    action: &str,
    value: &T,
) -> Result<String, Error> {
    submit_action_bytes(destination, action, JSON, &to_json(value)?)
}

/// Like [`submit_action`], with a payload of any content type.
pub fn submit_action_bytes(
    destination: &str,
    action: &str,
    content_type: &str,
    payload: &[u8],
) -> Result<String, Error> {
    bus::submit_action(destination, action, content_type, payload).map_err(Error::from)
}

/// Sends `action` with `value` as JSON to `destination` and waits up to `timeout` for the
/// reply, parsed as JSON into `R`. A reply-less answer reads as `null` (fits `()` and
/// `Option`).
pub fn call<T: Serialize + ?Sized, R: DeserializeOwned>(
    destination: &str,
    action: &str,
    value: &T,
    timeout: Duration,
) -> Result<R, Error> {
    call_raw(destination, action, JSON, &to_json(value)?, timeout)?
        .json_payload()
        .map_err(|e| {
            Error::bad_payload(format!(
                "reply from `{destination}` to `{action}`: {}",
                e.message()
            ))
        })
}

/// Sends `action` with a payload of any content type to `destination` and waits up to
/// `timeout` for the reply.
pub fn call_raw(
    destination: &str,
    action: &str,
    content_type: &str,
    payload: &[u8],
    timeout: Duration,
) -> Result<Reply, Error> {
    bus::call(destination, action, content_type, payload, millis(timeout))
        .map(Reply::from)
        .map_err(Error::from)
}
