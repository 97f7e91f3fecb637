//! Integration tests: real guest components (built from `guests/`) on a real node, in this
//! process or through the `busbar` binary.

mod admin;
mod artifacts;
mod com;
mod console;
mod daemon;
mod fabric;
mod faults;
mod fleet;
mod hostile;
mod loading;
mod operator;
mod precompiled;
mod python;
mod reload;
mod routing;
mod sandbox;
mod storage;
mod topics;
