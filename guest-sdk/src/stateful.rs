//! The [`Stateful`] trait and the glue that [`export_stateful!`](crate::export_stateful) puts
//! between it and the node's `stateful-service` world.

use std::cell::RefCell;

use crate::service::{Service, Slot};

/// A [`Service`] that hands its state to its next version when the node hot-swaps it.
/// Implement it next to [`Service`] and export the type with
/// [`export_stateful!`](crate::export_stateful).
///
/// On a swap the node calls [`snapshot`](Stateful::snapshot) on the old version after its last
/// message (before its [`stop`](Service::stop)), then builds the new version with
/// [`start`](Service::start) and immediately calls [`restore`](Stateful::restore) on it with
/// those bytes, before it sees any message. A fresh start (no swap) skips `restore`.
pub trait Stateful: Service {
    /// The state to hand to the next version, in any encoding this service chooses (the next
    /// version must understand it, so keep it stable or versioned).
    fn snapshot(&mut self) -> Vec<u8>;

    /// Takes over the state a previous version's [`snapshot`](Stateful::snapshot) returned.
    /// Called right after [`start`](Service::start). An error fails this version's start
    /// with that message (the node then keeps or rolls back to the old version); it should
    /// name what is wrong with `state`.
    fn restore(&mut self, state: &[u8]) -> Result<(), String>;
}

std::thread_local! {
    /// The state passed to the `restore` export, waiting for `start`.
    static PENDING: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Export `restore`: keeps the state until `start` builds the service.
pub fn restore(state: Vec<u8>) -> Result<(), String> {
    PENDING.set(Some(state));
    Ok(())
}

/// Export `start` of `stateful-service`: builds the service, lets it restore the state the
/// `restore` export stashed (if any), then keeps it.
pub fn start<S: Stateful>(slot: &'static Slot<S>) -> Result<(), String> {
    let pending = PENDING.take();
    let mut service = S::start()?;
    if let Some(state) = pending {
        service.restore(&state)?;
    }
    slot.with_borrow_mut(|current| *current = Some(service));
    Ok(())
}

/// Export `snapshot`: the running service's state; empty when none is running.
pub fn snapshot<S: Stateful>(slot: &'static Slot<S>) -> Vec<u8> {
    slot.with_borrow_mut(|current| current.as_mut().map(Stateful::snapshot))
        .unwrap_or_default()
}

/// Exports a [`Stateful`] [`Service`] as this component's `stateful-service` world: like
/// [`export!`](crate::export), plus the `snapshot` and `restore` exports.
///
/// Use it once, at the crate root of a `cdylib`, instead of `export!`:
///
/// ```rust,ignore
/// busbar_guest::export_stateful!(MyService);
/// ```
///
/// The `restore` export only stashes the state it is given; the `start` export then calls
/// [`Service::start`] and, if state was stashed, [`Stateful::restore`] with it (an error
/// fails the start with that message). The `snapshot` export calls [`Stateful::snapshot`] on
/// the running service, or returns nothing if none runs. Messages, timers, delivery failures,
/// state updates and `stop` are handled exactly as by `export!`.
#[macro_export]
macro_rules! export_stateful {
    ($service:ty) => {
        const _: () = {
            ::std::thread_local! {
                static BUSBAR_SERVICE: ::core::cell::RefCell<::core::option::Option<$service>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct BusbarExport;

            impl $crate::bindings::stateful::Guest for BusbarExport {
                fn start() -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::start_stateful(&BUSBAR_SERVICE)
                }

                fn stop() {
                    $crate::__private::stop(&BUSBAR_SERVICE)
                }

                fn process(
                    message: $crate::bindings::stateful::Message,
                ) -> ::core::result::Result<
                    ::core::option::Option<$crate::bindings::stateful::Reply>,
                    $crate::bindings::stateful::Error,
                > {
                    $crate::__private::process(&BUSBAR_SERVICE, message)
                }

                fn state_update(state: ::std::string::String) {
                    $crate::__private::state_update(&BUSBAR_SERVICE, state)
                }

                fn snapshot() -> ::std::vec::Vec<u8> {
                    $crate::__private::snapshot(&BUSBAR_SERVICE)
                }

                fn restore(
                    state: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::restore(state)
                }
            }

            $crate::bindings::stateful::export!(BusbarExport with_types_in $crate::bindings::stateful);
        };
    };
}
