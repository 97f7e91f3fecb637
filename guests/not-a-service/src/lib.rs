//! A component of the wrong world (`test:other/other`, not `busbar:service/service`), for
//! testing that the node refuses to load it.

wit_bindgen::generate!({
    path: "wit",
    world: "other",
});

struct NotAService;

impl Guest for NotAService {
    fn hello() -> String {
        "hello from a component that is not a busbar service".to_owned()
    }
}

export!(NotAService);
