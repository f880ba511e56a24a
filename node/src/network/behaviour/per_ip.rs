//! A cap on the connections others open to a node from one address: one
//! host under fresh peer ids cannot take every inbound slot (an eclipse).
//! IPv4 addresses count one by one, IPv6 ones by /64 (one host's share).
//! Connections this node opens (to its bootstrap peers, relays and room
//! members) are not counted, nor are relayed ones (the relay caps those).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Where a connection comes from, as far as the cap is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4([u8; 4]),
    /// The first 64 bits.
    V6([u8; 8]),
}

/// The source of a remote address; `None` for one through a relay or with no IP.
pub fn source_of(addr: &Multiaddr) -> Option<Source> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(Source::V4(ip.octets())),
        Protocol::Ip6(ip) => Some(match ip.to_ipv4_mapped() {
            Some(v4) => Source::V4(v4.octets()),
            None => {
                let o = ip.octets();
                Source::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }),
        _ => None,
    })
}

/// The address as an [`IpAddr`], for logs.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0} inbound connections from one address already")]
pub struct TooManyFromOneAddress(pub usize);

/// See the module docs.
#[derive(Debug)]
pub struct PerIpLimit {
    max: usize,
    by_source: HashMap<Source, usize>,
    inbound: HashMap<ConnectionId, Source>,
}

impl PerIpLimit {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            by_source: HashMap::new(),
            inbound: HashMap::new(),
        }
    }

    /// Counts an inbound connection from `remote`, unless its source has
    /// its fill already.
    pub fn admit(
        &mut self,
        id: ConnectionId,
        remote: &Multiaddr,
    ) -> Result<(), TooManyFromOneAddress> {
        let Some(source) = source_of(remote) else {
            return Ok(());
        };
        let n = self.by_source.entry(source).or_insert(0);
        if *n >= self.max {
            return Err(TooManyFromOneAddress(self.max));
        }
        *n += 1;
        self.inbound.insert(id, source);
        Ok(())
    }

    /// A connection closed.
    pub fn closed(&mut self, id: ConnectionId) {
        let Some(source) = self.inbound.remove(&id) else {
            return;
        };
        if let Some(n) = self.by_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
    }
}

impl NetworkBehaviour for PerIpLimit {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        match self.admit(id, remote) {
            Ok(()) => Ok(dummy::ConnectionHandler),
            Err(e) => {
                tracing::debug!(%peer, ip = ?ip_of(remote), "refused: {e}");
                Err(ConnectionDenied::new(e))
            }
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) = event {
            self.closed(connection_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_share_and_no_more_until_one_closes() {
        let mut cap = PerIpLimit::new(2);
        let from = addr("/ip4/192.0.2.1/tcp/5000");
        assert!(cap.admit(ConnectionId::new_unchecked(1), &from).is_ok());
        assert!(cap.admit(ConnectionId::new_unchecked(2), &from).is_ok());
        assert!(cap.admit(ConnectionId::new_unchecked(3), &from).is_err());
        // Another address is not affected.
        assert!(
            cap.admit(
                ConnectionId::new_unchecked(4),
                &addr("/ip4/192.0.2.2/udp/1/quic-v1")
            )
            .is_ok()
        );
        cap.closed(ConnectionId::new_unchecked(1));
        assert!(cap.admit(ConnectionId::new_unchecked(5), &from).is_ok());
        cap.closed(ConnectionId::new_unchecked(99));
        assert!(cap.admit(ConnectionId::new_unchecked(6), &from).is_err());
    }

    #[test]
    fn ipv6_addresses_count_by_their_first_64_bits_and_relayed_ones_not_at_all() {
        let mut cap = PerIpLimit::new(1);
        assert!(
            cap.admit(
                ConnectionId::new_unchecked(1),
                &addr("/ip6/2001:db8::1/tcp/1")
            )
            .is_ok()
        );
        assert!(
            cap.admit(
                ConnectionId::new_unchecked(2),
                &addr("/ip6/2001:db8::2/tcp/1")
            )
            .is_err()
        );
        assert!(
            cap.admit(
                ConnectionId::new_unchecked(3),
                &addr("/ip6/2001:db8:0:1::2/tcp/1")
            )
            .is_ok()
        );
        let relayed = addr(
            "/ip4/192.0.2.9/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
        );
        for i in 10..20 {
            assert!(cap.admit(ConnectionId::new_unchecked(i), &relayed).is_ok());
        }
    }
}
