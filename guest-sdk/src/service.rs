//! The [`Service`] trait and the glue that [`export!`](crate::export) puts between it and the
//! node.

use std::cell::RefCell;
use std::thread::LocalKey;

use serde::{Deserialize, Serialize};

use crate::bindings::busbar::service::types::{
    Error as RawError, Message as RawMessage, Reply as RawReply,
};
use crate::error::{Error, ErrorCode};
use crate::message::{Message, Reply};

/// Action of the node's timer ticks; the payload is the timer's name.
const TIMER_ACTION: &str = "$timer";
/// Action of the node's delivery failure reports; the payload is a JSON [`DeliveryFailure`].
const ERROR_ACTION: &str = "$error";
/// Action of a publish on a subscribed MQTT topic.
const TOPIC_ACTION: &str = "$topic";

/// A busbar service. Implement it and hand the type to [`export!`](crate::export).
///
/// One value lives from [`start`](Service::start) to [`stop`](Service::stop); the node calls
/// the other methods one at a time in between.
pub trait Service: Sized + 'static {
    /// Builds the service. Called once, before anything else; an error marks the start as
    /// failed and is shown to the operator.
    fn start() -> Result<Self, String>;

    /// Handles one message. For a `call` the returned reply is the answer (ignored
    /// otherwise); an error goes back to the sender. The default refuses every action with
    /// `unknown-action`.
    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        Err(Error::unknown_action(msg))
    }

    /// A timer set with [`timers`](crate::timers) fired. The default does nothing.
    fn on_timer(&mut self, name: &str) {
        let _ = name;
    }

    /// A message this service sent could not be delivered or processed. The default logs a
    /// warning.
    fn on_error(&mut self, failure: &DeliveryFailure) {
        crate::warn!(
            "message {} (action `{}` to `{}`) failed: {}: {}",
            failure.message_id,
            failure.action,
            failure.destination,
            failure.code,
            failure.message
        );
    }

    /// A publish arrived on a subscribed MQTT filter ([`topics`](crate::topics)):
    /// [`Message::topic`] says where, the payload is as published. The default logs a
    /// warning.
    fn on_topic(&mut self, msg: &Message) -> Result<(), Error> {
        crate::warn!(
            "a publish on `{}` arrived, but this service does not handle topics (on_topic)",
            msg.topic().unwrap_or_default()
        );
        Ok(())
    }

    /// The node's desired state changed. The default does nothing.
    fn state_update(&mut self, state: &State) {
        let _ = state;
    }

    /// Called once before the instance is dropped. The default does nothing.
    fn stop(&mut self) {}
}

/// Why a message this service sent failed, as reported by the node in an `$error` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFailure {
    /// Id of the message that failed.
    pub message_id: String,
    /// Where it was going.
    pub destination: String,
    /// Its action.
    pub action: String,
    /// The error code's WIT name, e.g. `unknown-action` (see [`DeliveryFailure::error_code`]).
    pub code: String,
    /// The explanation.
    pub message: String,
}

impl DeliveryFailure {
    /// [`code`](DeliveryFailure::code) as an [`ErrorCode`], if it names one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code.parse().ok()
    }
}

/// The node's desired state, as passed to [`Service::state_update`]: the hub's desired
/// properties, whose `msb-state` holds `enabled` and `debug`.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Whether custom services should be doing their work (`true` when not given).
    pub enabled: bool,
    /// Whether debug output is forwarded to the hub (`false` when not given).
    pub debug: bool,
    /// The whole JSON document, including any fields not listed above.
    pub raw: serde_json::Value,
}

impl State {
    /// Parses the JSON the node sends (the shape and the rules: `busbar_state`).
    fn parse(json: &str) -> Result<State, String> {
        let (msb, raw) = busbar_state::MsbState::parse(json)?;
        Ok(State {
            enabled: msb.enabled_or_default(),
            debug: msb.debug_or_default(),
            raw,
        })
    }
}

/// Where [`export!`](crate::export) and [`export_stateful!`](crate::export_stateful) keep the
/// running service.
pub(crate) type Slot<S> = LocalKey<RefCell<Option<S>>>;

/// Export `start`: builds the service and keeps it.
pub fn start<S: Service>(slot: &'static Slot<S>) -> Result<(), String> {
    let service = S::start()?;
    slot.with_borrow_mut(|current| *current = Some(service));
    Ok(())
}

/// Export `stop`: lets the service stop, then drops it.
pub fn stop<S: Service>(slot: &'static Slot<S>) {
    let service = slot.with_borrow_mut(Option::take);
    if let Some(mut service) = service {
        service.stop();
    }
}

/// Export `process`: routes `$timer` and `$error` to their methods, the rest to `process`.
pub fn process<S: Service>(
    slot: &'static Slot<S>,
    raw: RawMessage,
) -> Result<Option<RawReply>, RawError> {
    let msg = Message::from(raw);
    slot.with_borrow_mut(|current| {
        let Some(service) = current.as_mut() else {
            return Err(Error::new(
                ErrorCode::Unavailable,
                format!("action `{}`: the service is not running", msg.action()),
            ));
        };
        dispatch(service, &msg)
    })
    .map(|reply| reply.map(Reply::into_raw))
    .map_err(Error::into_raw)
}

fn dispatch<S: Service>(service: &mut S, msg: &Message) -> Result<Option<Reply>, Error> {
    match msg.action() {
        TIMER_ACTION => {
            service.on_timer(&String::from_utf8_lossy(msg.payload()));
            Ok(None)
        }
        ERROR_ACTION => {
            match serde_json::from_slice::<DeliveryFailure>(msg.payload()) {
                Ok(failure) => service.on_error(&failure),
                // Answering with an error would only bounce back to the node.
                Err(e) => crate::warn!("ignoring malformed `$error` message {}: {e}", msg.id()),
            }
            Ok(None)
        }
        TOPIC_ACTION => service.on_topic(msg).map(|()| None),
        _ => service.process(msg),
    }
}

/// Export `state-update`: parses the state and passes it on.
pub fn state_update<S: Service>(slot: &'static Slot<S>, json: String) {
    let state = match State::parse(&json) {
        Ok(state) => state,
        Err(e) => {
            crate::warn!("ignoring malformed state update {json:?}: {e}");
            return;
        }
    };
    slot.with_borrow_mut(|current| {
        if let Some(service) = current.as_mut() {
            service.state_update(&state);
        }
    });
}

/// Exports a [`Service`] implementation as this component's `service` world.
///
/// Use it once, at the crate root of a `cdylib`:
///
/// ```rust,ignore
/// busbar_guest::export!(MyService);
/// ```
///
/// The service lives in a thread-local slot from `start` to `stop`. Messages arriving before
/// `start` succeeded (or after `stop`) are refused with `unavailable`. Action `$timer` calls
/// [`Service::on_timer`] with the payload as the timer name; `$error` parses the payload as a
/// [`DeliveryFailure`] and calls [`Service::on_error`]; both answer `Ok(None)`. Every other
/// action goes to [`Service::process`].
#[macro_export]
macro_rules! export {
    ($service:ty) => {
        const _: () = {
            ::std::thread_local! {
                static BUSBAR_SERVICE: ::core::cell::RefCell<::core::option::Option<$service>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct BusbarExport;

            impl $crate::bindings::Guest for BusbarExport {
                fn start() -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::start(&BUSBAR_SERVICE)
                }

                fn stop() {
                    $crate::__private::stop(&BUSBAR_SERVICE)
                }

                fn process(
                    message: $crate::bindings::Message,
                ) -> ::core::result::Result<
                    ::core::option::Option<$crate::bindings::Reply>,
                    $crate::bindings::Error,
                > {
                    $crate::__private::process(&BUSBAR_SERVICE, message)
                }

                fn state_update(state: ::std::string::String) {
                    $crate::__private::state_update(&BUSBAR_SERVICE, state)
                }
            }

    $crate::bindings::export!(BusbarExport with_types_in $crate::bindings);
        };
    };
}
