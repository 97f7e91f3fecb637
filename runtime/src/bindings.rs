//! The one `bindgen!` of the `busbar:service` world. Every other module imports from here.

wasmtime::component::bindgen!({
    world: "service",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
});

pub use self::busbar::service::types::{Error as WitError, ErrorCode};
