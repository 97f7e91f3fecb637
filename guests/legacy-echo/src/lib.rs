//! A service built against `busbar:service@0.1.0`, the contract before `topics`, with raw
//! bindings (its own copy of that WIT): nodes must keep loading it. Action `echo` answers
//! the payload.

wit_bindgen::generate!({
    path: "wit",
    world: "service",
});

use busbar::service::types::ErrorCode;

struct LegacyEcho;

impl Guest for LegacyEcho {
    fn start() -> Result<(), String> {
        Ok(())
    }

    fn stop() {}

    fn process(message: Message) -> Result<Option<Reply>, Error> {
        match message.action.as_str() {
            "echo" => Ok(Some(Reply {
                content_type: message.content_type,
                payload: message.payload,
            })),
            other => Err(Error {
                code: ErrorCode::UnknownAction,
                message: format!("legacy-echo has no action `{other}`"),
            }),
        }
    }

    fn state_update(_state: String) {}
}

export!(LegacyEcho);
