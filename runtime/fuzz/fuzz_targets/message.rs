//! Message decoding: JSON-RPC request bodies, and message/reply payloads turned into JSON
//! (Com's JSON lines, JSON-RPC results), for any bytes, never panic.
#![no_main]

use busbar::message::{Reply, new_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = busbar::admin::rpc::decode(data, 100);
    // First byte: how long the content type is; the rest is the payload.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let cut = (n as usize).min(rest.len());
    let (content_type, payload) = rest.split_at(cut);
    let content_type = String::from_utf8_lossy(content_type).into_owned();
    let msg = new_message(
        "id".into(),
        "fuzz",
        "com",
        "submit",
        &content_type,
        payload.to_vec(),
    );
    let _ = busbar::message::message_json(&msg);
    let reply = Reply {
        content_type,
        payload: payload.to_vec(),
    };
    let _ = busbar::message::reply_json(&reply);
});
