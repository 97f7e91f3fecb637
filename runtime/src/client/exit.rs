//! Exit codes of the operator commands, so scripts can tell failures apart ([`Failure`], from
//! `busbar_base::exit`, has the table); here: the code for a JSON-RPC error.

pub use busbar_base::exit::{Failure, exit_code};

use crate::admin::jsonrpc::ErrorObject;
use crate::admin::rpc::{INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR};

/// The failure for a JSON-RPC error object: 5, 6 or 7 by its code.
pub fn rpc_failure(error: &ErrorObject) -> Failure {
    let code = error.code;
    let exit = match code {
        METHOD_NOT_FOUND | INVALID_PARAMS | INVALID_REQUEST | PARSE_ERROR => 5,
        -32001 => 7,
        -32006 => 4,
        _ => 6,
    };
    Failure::new(exit, format!("{} (JSON-RPC error {code})", error.message))
}
