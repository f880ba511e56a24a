//! A cap on the inbound connections from one address block (an IPv4 address
//! or an IPv6 /48), so that a few hundred sybil peer ids from one host cannot
//! take every connection, reservation, circuit and registration of the relay.
//!
//! Pending and established connections count alike, since a handshake holds
//! resources too; handshakes under way from one block are also capped on
//! their own (`max_pending_per_block`), so that two hosts with stalled
//! handshakes cannot take every pending slot of the swarm (256). Relayed connections (`/p2p-circuit`) are not counted: the
//! address they carry is another relay's. Outbound connections (AutoNAT
//! dial-backs) are not counted either.

use std::collections::HashMap;
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::transport::PortUse;
use libp2p::rendezvous::server::IpBlock;
use libp2p::swarm::behaviour::{ConnectionClosed, ListenFailure};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Why a connection was denied.
#[derive(Debug, thiserror::Error)]
#[error("{block:?} already has {open} {what}, at most {max}")]
pub struct TooManyFromBlock {
    pub block: IpBlock,
    pub what: &'static str,
    pub open: usize,
    pub max: usize,
}

/// The behaviour: counts connections per address block, denies the one
/// beyond `max_per_block`.
#[derive(Debug)]
pub struct Behaviour {
    max_per_block: usize,
    max_pending_per_block: usize,
    /// Every counted connection and its block (bounded by the swarm's
    /// connection limits).
    connections: HashMap<ConnectionId, IpBlock>,
    per_block: HashMap<IpBlock, usize>,
    /// The counted connections whose handshake is under way.
    pending: HashMap<ConnectionId, IpBlock>,
    pending_per_block: HashMap<IpBlock, usize>,
}

impl Behaviour {
    pub fn new(max_per_block: usize, max_pending_per_block: usize) -> Self {
        Self {
            max_per_block,
            max_pending_per_block,
            connections: HashMap::new(),
            per_block: HashMap::new(),
            pending: HashMap::new(),
            pending_per_block: HashMap::new(),
        }
    }

    /// How many connections `block` holds now.
    pub fn open(&self, block: IpBlock) -> usize {
        self.per_block.get(&block).copied().unwrap_or(0)
    }

    fn admit(&mut self, id: ConnectionId, remote: &Multiaddr) -> Result<(), TooManyFromBlock> {
        if remote.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            return Ok(());
        }
        let Some(block) = IpBlock::of_addr(remote) else {
            return Ok(());
        };
        let open = self.open(block);
        if open >= self.max_per_block {
            return Err(TooManyFromBlock {
                block,
                what: "connections",
                open,
                max: self.max_per_block,
            });
        }
        let pending = self.pending_per_block.get(&block).copied().unwrap_or(0);
        if pending >= self.max_pending_per_block {
            return Err(TooManyFromBlock {
                block,
                what: "handshakes under way",
                open: pending,
                max: self.max_pending_per_block,
            });
        }
        self.connections.insert(id, block);
        self.per_block.insert(block, open.saturating_add(1));
        self.pending.insert(id, block);
        self.pending_per_block
            .insert(block, pending.saturating_add(1));
        Ok(())
    }

    /// A connection's handshake ended (it is established or gone).
    fn handshake_done(&mut self, id: ConnectionId) {
        if let Some(block) = self.pending.remove(&id) {
            uncount(&mut self.pending_per_block, block);
        }
    }

    fn release(&mut self, id: ConnectionId) {
        self.handshake_done(id);
        if let Some(block) = self.connections.remove(&id) {
            uncount(&mut self.per_block, block);
        }
    }
}

/// Takes one off `block`'s count, forgetting the block at zero.
fn uncount(counts: &mut HashMap<IpBlock, usize>, block: IpBlock) {
    match counts.get_mut(&block) {
        Some(n) if *n > 1 => *n = n.saturating_sub(1),
        _ => {
            counts.remove(&block);
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.admit(connection_id, remote_addr).map_err(|e| {
            tracing::debug!(%remote_addr, "connection denied: {e}");
            ConnectionDenied::new(e)
        })
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.handshake_done(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.release(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
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
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn id(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    const PENDING: usize = 8;

    #[test]
    fn connections_beyond_the_cap_from_one_address_are_denied() {
        let mut limits = Behaviour::new(2, 8);
        let from = addr("/ip4/192.0.2.1/udp/1000/quic-v1");
        assert!(limits.admit(id(1), &from).is_ok());
        assert!(limits.admit(id(2), &from).is_ok());
        assert!(limits.admit(id(3), &from).is_err());
        assert!(
            limits
                .admit(id(4), &addr("/ip4/192.0.2.2/tcp/1000"))
                .is_ok()
        );
    }

    #[test]
    fn a_closed_connection_frees_its_slot() {
        let mut limits = Behaviour::new(1, 8);
        let from = addr("/ip4/192.0.2.1/tcp/1000");
        assert!(limits.admit(id(1), &from).is_ok());
        limits.release(id(1));
        assert!(limits.admit(id(2), &from).is_ok());
        assert_eq!(limits.open(IpBlock::of("192.0.2.1".parse().unwrap())), 1);
        limits.release(id(7));
        limits.release(id(2));
        limits.release(id(2));
        assert!(limits.per_block.is_empty());
        assert!(limits.connections.is_empty());
    }

    #[test]
    fn handshakes_under_way_from_one_address_are_capped_below_its_connections() {
        let mut limits = Behaviour::new(100, PENDING);
        let from = addr("/ip4/192.0.2.1/tcp/1000");
        for n in 0..PENDING {
            assert!(limits.admit(id(n), &from).is_ok());
        }
        assert!(limits.admit(id(100), &from).is_err());
        assert!(limits.admit(id(101), &addr("/ip4/192.0.2.2/tcp/1")).is_ok());
        // One handshake done: room for another, and the connection still counts.
        limits.handshake_done(id(0));
        assert!(limits.admit(id(102), &from).is_ok());
        assert_eq!(
            limits.open(IpBlock::of("192.0.2.1".parse().unwrap())),
            PENDING + 1
        );
        // A failed handshake frees both.
        limits.release(id(1));
        assert!(limits.admit(id(103), &from).is_ok());
        for n in (0..PENDING).chain([101, 102, 103]) {
            limits.release(id(n));
        }
        assert!(limits.pending.is_empty() && limits.pending_per_block.is_empty());
        assert!(limits.per_block.is_empty());
    }

    #[test]
    fn one_ipv6_slash_48_is_one_block() {
        let mut limits = Behaviour::new(1, 8);
        assert!(
            limits
                .admit(id(1), &addr("/ip6/2001:db8:7::1/tcp/1"))
                .is_ok()
        );
        assert!(
            limits
                .admit(id(2), &addr("/ip6/2001:db8:7:ffff::9/tcp/1"))
                .is_err()
        );
        assert!(
            limits
                .admit(id(3), &addr("/ip6/2001:db8:8::1/tcp/1"))
                .is_ok()
        );
    }

    #[test]
    fn relayed_connections_are_not_counted() {
        let mut limits = Behaviour::new(1, 8);
        let relayed = addr(
            "/ip4/192.0.2.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
        );
        for n in 0..10 {
            assert!(limits.admit(id(n), &relayed).is_ok());
        }
        assert!(limits.connections.is_empty());
    }
}
