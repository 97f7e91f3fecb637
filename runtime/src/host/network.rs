//! What a service's sockets may reach: the addresses of its `grants.network`, outbound only.
//! Every socket call outside them fails in the guest with `access-denied` (Python:
//! `PermissionError`), and the node logs it under the service's name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use crate::grants::OutboundRule;

/// Denials logged per instance; past that they are only counted in the last line.
const LOGGED_DENIALS: u32 = 20;

/// Sets the socket policy of a new instance of `service`.
pub(super) fn confine(wasi: &mut WasiCtxBuilder, service: Arc<str>, rules: &[OutboundRule]) {
    let rules: Arc<[OutboundRule]> = rules.into();
    let denied = Arc::new(AtomicU32::new(0));
    wasi.allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(false)
        .socket_addr_check(move |addr, usage| {
            let allowed = allows(&rules, addr, usage);
            if !allowed {
                let n = denied.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= LOGGED_DENIALS {
                    let more = if n == LOGGED_DENIALS {
                        " (further denials of this instance are not logged)"
                    } else {
                        ""
                    };
                    tracing::warn!(
                        service = %service,
                        "network: {} {addr} denied: not in grants.network{more}",
                        verb(usage)
                    );
                }
            }
            Box::pin(async move { allowed })
        });
}

/// Outbound only: connecting and sending to (and hearing back from) a granted address, on
/// a socket the system binds to a port of its choosing. Never listening or accepting.
fn allows(rules: &[OutboundRule], addr: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
            rules.iter().any(|r| r.allows(addr))
        }
        // The implicit bind before a connect or a send; the connect or send is what is
        // checked (and logged with its address).
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
            addr.ip().is_unspecified() && addr.port() == 0
        }
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
    }
}

fn verb(usage: SocketAddrUse) -> &'static str {
    match usage {
        SocketAddrUse::TcpConnect => "connecting to",
        SocketAddrUse::UdpSend => "sending to",
        SocketAddrUse::UdpReceive => "receiving from",
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => "binding",
        SocketAddrUse::TcpListen => "listening on",
        SocketAddrUse::TcpAccept => "accepting from",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_only_and_only_what_is_granted() {
        let rules: Vec<OutboundRule> = vec!["127.0.0.1:502".parse().unwrap()];
        let plc: SocketAddr = "127.0.0.1:502".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:503".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert!(allows(&rules, plc, SocketAddrUse::TcpConnect));
        assert!(allows(&rules, plc, SocketAddrUse::UdpSend));
        assert!(!allows(&rules, other, SocketAddrUse::TcpConnect));
        assert!(allows(&rules, any, SocketAddrUse::TcpBind), "implicit bind");
        assert!(
            !allows(&rules, plc, SocketAddrUse::TcpBind),
            "explicit bind"
        );
        assert!(!allows(&rules, any, SocketAddrUse::TcpListen));
        assert!(!allows(&rules, plc, SocketAddrUse::TcpAccept));
        assert!(
            !allows(&[], plc, SocketAddrUse::TcpConnect),
            "no grant: nothing"
        );
        assert!(!allows(&[], plc, SocketAddrUse::UdpSend));
        assert!(!allows(&[], any, SocketAddrUse::TcpListen));
    }
}
