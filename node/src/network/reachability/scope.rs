//! How far an address reaches: loopback, a private network, or the
//! internet. Addresses a relay hands out are dialled only if they are as
//! public as the relay itself: a relay on the internet has no business
//! sending members to dial 127.0.0.1 or 10.0.0.1 (a lying relay would use
//! every member as a port scanner of its own network), while one on a LAN
//! or on loopback (a campus, a test) may.

use std::net::{Ipv4Addr, Ipv6Addr};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Ordered from the narrowest reach to the widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Loopback,
    /// Private, carrier-grade NAT, link-local or unique-local addresses.
    Private,
    /// Anything else, DNS names included.
    Public,
}

/// The scope of the first IP address in `addr` (for a circuit, the relay's);
/// public when it has none (a DNS name).
pub fn scope_of(addr: &Multiaddr) -> Scope {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Ip4(ip) => Some(v4(ip)),
            Protocol::Ip6(ip) => Some(match ip.to_ipv4_mapped() {
                Some(ip) => v4(ip),
                None => v6(ip),
            }),
            _ => None,
        })
        .unwrap_or(Scope::Public)
}

fn v4(ip: Ipv4Addr) -> Scope {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() || ip.is_unspecified() {
        Scope::Loopback
    } else if ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b)) {
        Scope::Private
    } else {
        Scope::Public
    }
}

fn v6(ip: Ipv6Addr) -> Scope {
    let first = ip.segments()[0];
    if ip.is_loopback() || ip.is_unspecified() {
        Scope::Loopback
    } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
        Scope::Private
    } else {
        Scope::Public
    }
}

/// Whether a member's address a relay at `relay` handed out may be dialled.
pub fn may_dial(addr: &Multiaddr, relay: Scope) -> bool {
    scope_of(addr) >= relay
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    fn scope(s: &str) -> Scope {
        scope_of(&s.parse().unwrap())
    }

    #[test]
    fn addresses_are_told_apart_by_reach() {
        assert_eq!(scope("/ip4/127.0.0.1/tcp/1"), Scope::Loopback);
        assert_eq!(scope("/ip6/::1/tcp/1"), Scope::Loopback);
        assert_eq!(scope("/ip4/0.0.0.0/tcp/1"), Scope::Loopback);
        for private in [
            "/ip4/10.1.2.3/tcp/1",
            "/ip4/172.16.0.1/udp/1/quic-v1",
            "/ip4/192.168.1.1/tcp/1",
            "/ip4/100.64.0.1/tcp/1",
            "/ip4/169.254.0.1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/::ffff:10.0.0.1/tcp/1",
        ] {
            assert_eq!(scope(private), Scope::Private, "{private}");
        }
        assert_eq!(scope("/ip4/203.0.113.9/tcp/1"), Scope::Public);
        assert_eq!(scope("/ip4/100.128.0.1/tcp/1"), Scope::Public);
        assert_eq!(scope("/ip6/2001:db8::1/tcp/1"), Scope::Public);
        assert_eq!(scope("/dns4/example.org/tcp/1"), Scope::Public);
    }

    #[test]
    fn a_public_relay_cannot_send_members_to_private_or_loopback_addresses() {
        let ok = |a: &str, relay| may_dial(&a.parse().unwrap(), relay);
        assert!(!ok("/ip4/127.0.0.1/tcp/22", Scope::Public));
        assert!(!ok("/ip4/10.0.0.1/tcp/22", Scope::Public));
        assert!(ok("/ip4/203.0.113.9/tcp/1", Scope::Public));
        // A relay on a LAN or on loopback may.
        assert!(ok("/ip4/10.0.0.1/tcp/22", Scope::Private));
        assert!(!ok("/ip4/127.0.0.1/tcp/22", Scope::Private));
        assert!(ok("/ip4/127.0.0.1/tcp/22", Scope::Loopback));
        // A circuit counts as the relay it goes through.
        assert!(!ok(
            "/ip4/10.0.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
            Scope::Public
        ));
    }
}
