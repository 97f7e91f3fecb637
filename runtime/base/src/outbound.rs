//! The outbound network a manifest may grant a service (`grants.network`): addresses and
//! ports it may connect or send to, e.g. `"192.168.1.10:502"`, `"10.0.0.0/24:*"` or
//! `"[fd00::7]:8080"`. IP addresses only: name lookup is never granted.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One entry of `grants.network`: a host or a CIDR block, and one port or any (`*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct OutboundRule {
    net: IpNet,
    port: Option<u16>,
}

impl OutboundRule {
    /// Whether a connection or datagram to `addr` is within this rule. IPv4 addresses
    /// mapped into IPv6 (`::ffff:a.b.c.d`) count as the IPv4 address.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.port.is_none_or(|p| p == addr.port()) && self.net.contains(&addr.ip().to_canonical())
    }
}

/// Why a `grants.network` entry is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "grants.network: `{entry}` is not an outbound address: {why} (write `IP:PORT`, \
     `IP/PREFIX:PORT` or `*` for any port, IPv6 in brackets: `[fd00::1]:502`)"
)]
pub struct OutboundRuleError {
    entry: String,
    why: &'static str,
}

impl FromStr for OutboundRule {
    type Err = OutboundRuleError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let err = |why| OutboundRuleError {
            entry: entry
                .chars()
                .take(80)
                .flat_map(char::escape_debug)
                .collect(),
            why,
        };
        if entry.ends_with(']') {
            return Err(err("no port"));
        }
        let (host, port) = entry.rsplit_once(':').ok_or_else(|| err("no port"))?;
        let port = match port {
            "*" => None,
            p => Some(
                p.parse::<u16>()
                    .map_err(|_| err("the port is not 0-65535 or `*`"))?,
            ),
        };
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(|| err("unclosed `[`"))?,
            None if host.contains(':') => return Err(err("an IPv6 address needs brackets")),
            None => host,
        };
        let net = if host.contains('/') {
            IpNet::from_str(host).map_err(|_| err("not an IP network"))?
        } else {
            IpNet::from(
                IpAddr::from_str(host)
                    .map_err(|_| err("not an IP address (name lookup is not granted)"))?,
            )
        };
        let net = match net {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) if v6.prefix_len() >= 96 => IpNet::new(v4.into(), v6.prefix_len() - 96)
                    .map_err(|_| err("not an IP network"))?,
                _ => net,
            },
            IpNet::V4(_) => net,
        };
        Ok(Self {
            net: net.trunc(),
            port,
        })
    }
}

impl TryFrom<String> for OutboundRule {
    type Error = OutboundRuleError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match (self.net, self.net.prefix_len() == self.net.max_prefix_len()) {
            (IpNet::V4(n), true) => n.addr().to_string(),
            (IpNet::V6(n), true) => format!("[{}]", n.addr()),
            (IpNet::V4(n), false) => n.to_string(),
            (IpNet::V6(n), false) => format!("[{n}]"),
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => write!(f, "{host}:*"),
        }
    }
}

impl From<OutboundRule> for String {
    fn from(r: OutboundRule) -> Self {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OutboundRule {
        s.parse().unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_blocks_and_ports() {
        let modbus = rule("192.168.1.10:502");
        assert!(modbus.allows(addr("192.168.1.10:502")));
        assert!(!modbus.allows(addr("192.168.1.10:503")));
        assert!(!modbus.allows(addr("192.168.1.11:502")));
        assert!(
            modbus.allows(addr("[::ffff:192.168.1.10]:502")),
            "mapped IPv4"
        );
        let lan = rule("10.0.0.0/24:*");
        assert!(lan.allows(addr("10.0.0.255:1")) && !lan.allows(addr("10.0.1.0:1")));
        let v6 = rule("[fd00::/64]:8080");
        assert!(v6.allows(addr("[fd00::7]:8080")) && !v6.allows(addr("[fd01::7]:8080")));
        assert!(!v6.allows(addr("10.0.0.1:8080")));
    }

    #[test]
    fn written_back_as_read() {
        for s in [
            "192.168.1.10:502",
            "10.0.0.0/24:*",
            "[fd00::7]:8080",
            "[fd00::/64]:*",
        ] {
            assert_eq!(rule(s).to_string(), s);
        }
        assert_eq!(rule("10.0.0.9/24:1").to_string(), "10.0.0.0/24:1");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (s, why) in [
            ("192.168.1.10", "no port"),
            ("plc.local:502", "name lookup is not granted"),
            ("10.0.0.1:70000", "not 0-65535"),
            ("fd00::1:80", "needs brackets"),
            ("[fd00::1:80", "unclosed"),
            ("10.0.0.0/33:1", "not an IP network"),
            ("é:ü", "the port is not"),
            ("é:1", "not an IP address"),
            ("[::1]", "no port"),
            ("\u{1b}[2J:1", "`\\u{1b}[2J:1`"),
        ] {
            let e = s.parse::<OutboundRule>().unwrap_err().to_string();
            assert!(
                e.contains(why) && e.starts_with("grants.network"),
                "{s}: {e}"
            );
        }
    }
}
