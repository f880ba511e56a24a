//! What [`super::Reachability`] asks of the event loop, and what the loop
//! reports back about the dials it made.

use libp2p::core::transport::ListenerId;
use libp2p::rendezvous::Namespace;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::api::Event;

/// Why a dial is made; its outcome is reported back with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialPurpose {
    /// A `--bootstrap` address, kept dialled.
    Bootstrap(Multiaddr),
    /// A room member found by rendezvous or mDNS, or lost and dialled again.
    Member,
    /// A fresh circuit to a member before the relay ends the old one: dialled
    /// even though connected.
    FreshCircuit,
}

/// A dial to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// `None`: whoever answers at the address (a bootstrap address without `/p2p/`).
    pub peer: Option<PeerId>,
    /// Direct addresses first.
    pub addrs: Vec<Multiaddr>,
    pub purpose: DialPurpose,
}

/// What the event loop is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dial(Dial),
    /// Ask `relay` for a reservation by listening on the `circuit` address;
    /// report the listener with [`Reachability::reserving`].
    Reserve {
        relay: PeerId,
        circuit: Multiaddr,
    },
    RemoveListener(ListenerId),
    AddExternalAddr(Multiaddr),
    RemoveExternalAddr(Multiaddr),
    /// Let AutoNAT ask this relay to dial back.
    AddAutonatServer {
        peer: PeerId,
        addr: Multiaddr,
    },
    Register {
        relay: PeerId,
        namespace: Namespace,
    },
    Unregister {
        relay: PeerId,
        namespace: Namespace,
    },
    Discover {
        relay: PeerId,
        namespace: Namespace,
    },
    Emit(Event),
}

/// A dial that did not lead to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialFailure {
    /// The swarm refused to start it.
    NotStarted(DialPurpose),
    /// The swarm did not start it because the peer is being dialled (or is
    /// connected) another way already: no fault of the peer.
    Deferred(DialPurpose),
    /// It started as this connection and failed.
    Failed(ConnectionId),
}
