//! What a service's sockets may reach: the addresses of its `grants.network`, outbound only.
//! Without the grant a socket cannot even be created (so none holds a file descriptor); with
//! it, connecting or sending outside it fails. Either way the guest gets `access-denied`
//! (Python: `PermissionError`), and the node logs it under the service's name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{SocketError, SocketResult, TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView as _};

use super::HostState;
use crate::grants::OutboundRule;

/// Denied connections and datagrams logged per instance.
const LOGGED_DENIALS: u32 = 20;

/// Sets the socket policy of a new instance of `service`.
pub(super) fn confine(wasi: &mut WasiCtxBuilder, service: Arc<str>, rules: &[OutboundRule]) {
    wasi.allow_ip_name_lookup(false);
    if rules.is_empty() {
        wasi.allow_tcp(false).allow_udp(false);
        return;
    }
    let rules: Arc<[OutboundRule]> = rules.into();
    let denied = Arc::new(AtomicU32::new(0));
    wasi.allow_tcp(true)
        .allow_udp(true)
        .socket_addr_check(move |addr, usage| {
            let allowed = allows(&rules, addr, usage);
            // Datagrams dropped on receipt are the sender's doing: not logged, so an
            // outsider cannot use up the lines that report the service's own attempts.
            if !allowed && !matches!(usage, SocketAddrUse::UdpReceive) {
                let n = denied.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= LOGGED_DENIALS {
                    let more = if n == LOGGED_DENIALS {
                        " (further ones of this instance are not logged)"
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

/// The `create-tcp-socket` and `create-udp-socket` imports in front of wasmtime-wasi's: a
/// service without `grants.network` is refused (and the node says so) before any socket is
/// made; one with it gets wasmtime-wasi's socket, confined by [`confine`].
pub(crate) fn gate_socket_creation(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    tcp_create_socket::add_to_linker::<HostState, Gate>(linker, |s| s)?;
    udp_create_socket::add_to_linker::<HostState, Gate>(linker, |s| s)?;
    linker.allow_shadowing(false);
    Ok(())
}

struct Gate;

impl HasData for Gate {
    type Data<'a> = &'a mut HostState;
}

impl HostState {
    /// Refuses a socket to a service without `grants.network`, saying so once per instance.
    fn may_create_socket(&mut self, kind: &str) -> SocketResult<()> {
        if !self.granted.network.is_empty() {
            return Ok(());
        }
        if !std::mem::replace(&mut self.socket_refused, true) {
            tracing::warn!(
                service = %self.service,
                "network: creating a {kind} socket denied: the service has no grants.network"
            );
        }
        Err(ErrorCode::AccessDenied.into())
    }
}

impl tcp_create_socket::Host for HostState {
    fn create_tcp_socket(&mut self, family: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        self.may_create_socket("TCP")?;
        tcp_create_socket::Host::create_tcp_socket(&mut self.sockets(), family)
    }
}

impl udp_create_socket::Host for HostState {
    async fn create_udp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> SocketResult<Resource<UdpSocket>> {
        self.may_create_socket("UDP")?;
        udp_create_socket::Host::create_udp_socket(&mut self.sockets(), family).await
    }
}

// What the two interfaces above need of `wasi:sockets/network`: wasmtime-wasi's own.
impl network::Host for HostState {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.sockets(), error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.sockets(), err)
    }
}

impl network::HostNetwork for HostState {
    fn drop(&mut self, this: Resource<network::Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets(), this)
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
