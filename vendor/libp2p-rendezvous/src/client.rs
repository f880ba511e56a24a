// Copyright 2021 COMIT Network.
//
// Permission is hereby granted, free of charge, to any person obtaining a
// copy of this software and associated documentation files (the "Software"),
// to deal in the Software without restriction, including without limitation
// the rights to use, copy, modify, merge, publish, distribute, sublicense,
// and/or sell copies of the Software, and to permit persons to whom the
// Software is furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in
// all copies or substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
// OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
// FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
// AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
// LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
// FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
// DEALINGS IN THE SOFTWARE.

use std::{
    collections::{HashMap, VecDeque},
    iter,
    task::{Context, Poll},
    time::Duration,
};

use web_time::Instant;

use futures::future::FutureExt;
use libp2p_core::{Endpoint, Multiaddr, PeerRecord, transport::PortUse};
use libp2p_identity::{Keypair, PeerId, SigningError};
use libp2p_request_response::{OutboundRequestId, ProtocolSupport};
use libp2p_swarm::{
    ConnectionDenied, ConnectionId, ExternalAddresses, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};

use crate::codec::{
    Cookie, ErrorCode, Message, Message::*, Namespace, NewRegistration, Registration, Ttl,
};

/// Palaver: the longest a discovered registration is kept, whatever ttl the
/// relay claims (upstream turned a ttl of u64::MAX into an Instant overflow).
pub const MAX_DISCOVERED_TTL: u64 = 72 * 60 * 60;
/// Palaver: most namespaces remembered per discovered peer.
pub const MAX_NAMESPACES_PER_PEER: usize = 64;
/// Palaver: most addresses remembered per discovered record.
pub const MAX_ADDRESSES_PER_RECORD: usize = 16;
/// Palaver: most (peer, namespace) entries remembered in total.
pub const MAX_DISCOVERED_ENTRIES: usize = 8192;
/// Palaver: most events (new addresses, expiries) queued for the swarm.
const MAX_QUEUED_EVENTS: usize = 4096;
/// Palaver: how often expired discovered entries are dropped.
const EXPIRY_SWEEP: Duration = Duration::from_secs(30);

pub struct Behaviour {
    events: VecDeque<ToSwarm<<Self as NetworkBehaviour>::ToSwarm, THandlerInEvent<Self>>>,

    inner: libp2p_request_response::Behaviour<crate::codec::Codec>,

    keypair: Keypair,

    waiting_for_register: HashMap<OutboundRequestId, (PeerId, Namespace)>,
    waiting_for_discovery: HashMap<OutboundRequestId, (PeerId, Option<Namespace>)>,

    /// Hold addresses of all peers that we have discovered so far.
    ///
    /// Storing these internally allows us to assist the [`libp2p_swarm::Swarm`] in dialing by
    /// returning addresses from [`NetworkBehaviour::handle_pending_outbound_connection`].
    ///
    /// Palaver: each entry carries its expiry (the relay's ttl, clamped to
    /// [`MAX_DISCOVERED_TTL`]); the map is bounded by [`MAX_NAMESPACES_PER_PEER`],
    /// [`MAX_ADDRESSES_PER_RECORD`] and [`MAX_DISCOVERED_ENTRIES`].
    discovered_peers: HashMap<PeerId, HashMap<Namespace, (Vec<Multiaddr>, Instant)>>,

    /// Palaver: how many (peer, namespace) entries `discovered_peers` holds.
    discovered_entries: usize,

    registered_namespaces: HashMap<(PeerId, Namespace), Ttl>,

    /// Palaver: one periodic sweep of `discovered_peers` replaces upstream's
    /// timer per discovered registration (one per answer, duplicates included,
    /// so as many timers as a relay cared to send).
    expiry_sweep: futures_timer::Delay,

    /// Palaver: peers whose entries expired, to report as [`Event::Expired`].
    expired: VecDeque<PeerId>,

    external_addresses: ExternalAddresses,
}

impl Behaviour {
    /// Create a new instance of the rendezvous [`NetworkBehaviour`].
    pub fn new(keypair: Keypair) -> Self {
        Self {
            events: Default::default(),
            inner: libp2p_request_response::Behaviour::with_codec(
                crate::codec::Codec::default(),
                iter::once((crate::PROTOCOL_NAME, ProtocolSupport::Outbound)),
                libp2p_request_response::Config::default(),
            ),
            keypair,
            waiting_for_register: Default::default(),
            waiting_for_discovery: Default::default(),
            discovered_peers: Default::default(),
            discovered_entries: 0,
            registered_namespaces: Default::default(),
            expiry_sweep: futures_timer::Delay::new(EXPIRY_SWEEP),
            expired: Default::default(),
            external_addresses: Default::default(),
        }
    }

    /// Register our external addresses in the given namespace with the given rendezvous peer.
    ///
    /// External addresses are either manually added via
    /// [`libp2p_swarm::Swarm::add_external_address`] or reported by other [`NetworkBehaviour`]s
    /// via [`ToSwarm::ExternalAddrConfirmed`].
    pub fn register(
        &mut self,
        namespace: Namespace,
        rendezvous_node: PeerId,
        ttl: Option<Ttl>,
    ) -> Result<(), RegisterError> {
        let external_addresses = self.external_addresses.iter().cloned().collect::<Vec<_>>();
        if external_addresses.is_empty() {
            return Err(RegisterError::NoExternalAddresses);
        }

        let peer_record = PeerRecord::new(&self.keypair, external_addresses)?;
        let req_id = self.inner.send_request(
            &rendezvous_node,
            Register(NewRegistration::new(namespace.clone(), peer_record, ttl)),
        );
        self.waiting_for_register
            .insert(req_id, (rendezvous_node, namespace));

        Ok(())
    }

    /// Unregister ourselves from the given namespace with the given rendezvous peer.
    pub fn unregister(&mut self, namespace: Namespace, rendezvous_node: PeerId) {
        self.registered_namespaces
            .retain(|(rz_node, ns), _| rz_node.ne(&rendezvous_node) && ns.ne(&namespace));

        self.inner
            .send_request(&rendezvous_node, Unregister(namespace));
    }

    /// Discover other peers at a given rendezvous peer.
    ///
    /// If desired, the registrations can be filtered by a namespace.
    /// If no namespace is given, peers from all namespaces will be returned.
    /// A successfully discovery returns a cookie within [`Event::Discovered`].
    /// Such a cookie can be used to only fetch the _delta_ of registrations since
    /// the cookie was acquired.
    pub fn discover(
        &mut self,
        namespace: Option<Namespace>,
        cookie: Option<Cookie>,
        limit: Option<u64>,
        rendezvous_node: PeerId,
    ) {
        let req_id = self.inner.send_request(
            &rendezvous_node,
            Discover {
                namespace: namespace.clone(),
                cookie,
                limit,
            },
        );

        self.waiting_for_discovery
            .insert(req_id, (rendezvous_node, namespace));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("We don't know about any externally reachable addresses of ours")]
    NoExternalAddresses,
    #[error("Failed to make a new PeerRecord")]
    FailedToMakeRecord(#[from] SigningError),
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// We successfully discovered other nodes with using the contained rendezvous node.
    Discovered {
        rendezvous_node: PeerId,
        registrations: Vec<Registration>,
        cookie: Cookie,
    },
    /// We failed to discover other nodes on the contained rendezvous node.
    DiscoverFailed {
        rendezvous_node: PeerId,
        namespace: Option<Namespace>,
        error: ErrorCode,
    },
    /// We successfully registered with the contained rendezvous node.
    Registered {
        rendezvous_node: PeerId,
        ttl: Ttl,
        namespace: Namespace,
    },
    /// We failed to register with the contained rendezvous node.
    RegisterFailed {
        rendezvous_node: PeerId,
        namespace: Namespace,
        error: ErrorCode,
    },
    /// The connection details we learned from this node expired.
    Expired { peer: PeerId },
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = <libp2p_request_response::Behaviour<
        crate::codec::Codec,
    > as NetworkBehaviour>::ConnectionHandler;

    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        let changed = self.external_addresses.on_swarm_event(&event);

        self.inner.on_swarm_event(event);

        if changed && self.external_addresses.iter().count() > 0 {
            let registered = self.registered_namespaces.clone();
            for ((rz_node, ns), ttl) in registered {
                if let Err(e) = self.register(ns, rz_node, Some(ttl)) {
                    tracing::warn!("refreshing registration failed: {e}")
                }
            }
        }
    }

    #[tracing::instrument(level = "trace", name = "NetworkBehaviour::poll", skip(self, cx))]
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        use libp2p_request_response as req_res;
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(event);
            }

            match self.inner.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(req_res::Event::Message {
                    message:
                        req_res::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                })) => {
                    if let Some(event) = self.handle_response(&request_id, response) {
                        return Poll::Ready(ToSwarm::GenerateEvent(event));
                    }

                    continue; // not a request we care about
                }
                Poll::Ready(ToSwarm::GenerateEvent(req_res::Event::OutboundFailure {
                    request_id,
                    ..
                })) => {
                    if let Some(event) = self.event_for_outbound_failure(&request_id) {
                        return Poll::Ready(ToSwarm::GenerateEvent(event));
                    }

                    continue; // not a request we care about
                }
                Poll::Ready(ToSwarm::GenerateEvent(
                    req_res::Event::InboundFailure { .. }
                    | req_res::Event::ResponseSent { .. }
                    | req_res::Event::Message {
                        message: req_res::Message::Request { .. },
                        ..
                    },
                )) => {
                    unreachable!("rendezvous clients never receive requests")
                }
                Poll::Ready(other) => {
                    let new_to_swarm =
                        other.map_out(|_| unreachable!("we manually map `GenerateEvent` variants"));

                    return Poll::Ready(new_to_swarm);
                }
                Poll::Pending => {}
            }

            // Palaver: a periodic sweep instead of a timer per registration.
            if self.expiry_sweep.poll_unpin(cx).is_ready() {
                self.expiry_sweep.reset(EXPIRY_SWEEP);
                self.sweep_expired(Instant::now());
                continue;
            }
            if let Some(peer) = self.expired.pop_front() {
                return Poll::Ready(ToSwarm::GenerateEvent(Event::Expired { peer }));
            }

            return Poll::Pending;
        }
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let addrs = maybe_peer
            .map(|peer| self.discovered_peer_addrs(&peer).cloned().collect())
            .unwrap_or_default();
        Ok(addrs)
    }
}

impl Behaviour {
    fn event_for_outbound_failure(&mut self, req_id: &OutboundRequestId) -> Option<Event> {
        if let Some((rendezvous_node, namespace)) = self.waiting_for_register.remove(req_id) {
            return Some(Event::RegisterFailed {
                rendezvous_node,
                namespace,
                error: ErrorCode::Unavailable,
            });
        };

        if let Some((rendezvous_node, namespace)) = self.waiting_for_discovery.remove(req_id) {
            return Some(Event::DiscoverFailed {
                rendezvous_node,
                namespace,
                error: ErrorCode::Unavailable,
            });
        };

        None
    }

    fn handle_response(
        &mut self,
        request_id: &OutboundRequestId,
        response: Message,
    ) -> Option<Event> {
        match response {
            RegisterResponse(Ok(ttl)) => {
                let (rendezvous_node, namespace) = self.waiting_for_register.remove(request_id)?;
                self.registered_namespaces
                    .insert((rendezvous_node, namespace.clone()), ttl);

                Some(Event::Registered {
                    rendezvous_node,
                    ttl,
                    namespace,
                })
            }
            RegisterResponse(Err(error_code)) => {
                let (rendezvous_node, namespace) = self.waiting_for_register.remove(request_id)?;
                Some(Event::RegisterFailed {
                    rendezvous_node,
                    namespace,
                    error: error_code,
                })
            }
            DiscoverResponse(Ok((registrations, cookie))) => {
                let (rendezvous_node, _ns) = self.waiting_for_discovery.remove(request_id)?;
                let now = Instant::now();
                registrations.iter().for_each(|registration| {
                    let peer_id = registration.record.peer_id();
                    // Palaver: at most MAX_ADDRESSES_PER_RECORD addresses of a record.
                    let addresses = registration.record.addresses();
                    let addresses = &addresses[..addresses.len().min(MAX_ADDRESSES_PER_RECORD)];
                    let namespace = registration.namespace.clone();
                    // Palaver: the relay's ttl, clamped; never an Instant overflow.
                    let ttl = Duration::from_secs(registration.ttl.min(MAX_DISCOVERED_TTL));
                    let Some(expires) = now.checked_add(ttl) else {
                        return;
                    };
                    // Palaver: refuse entries beyond the caps (the registration is
                    // still reported in Event::Discovered; only the dial hints are dropped).
                    let known = self.discovered_peers.get(&peer_id);
                    let is_new_entry = !known.is_some_and(|ns| ns.contains_key(&namespace));
                    if is_new_entry
                        && (self.discovered_entries >= MAX_DISCOVERED_ENTRIES
                            || known.is_some_and(|ns| ns.len() >= MAX_NAMESPACES_PER_PEER))
                    {
                        return;
                    }

                    // Emit events for all newly discovered addresses.
                    let new_addr_events = addresses
                        .iter()
                        .filter_map(|address| {
                            if self.discovered_peer_addrs(&peer_id).any(|a| a == address) {
                                return None;
                            }
                            Some(ToSwarm::NewExternalAddrOfPeer {
                                peer_id,
                                address: address.clone(),
                            })
                        })
                        .collect::<Vec<_>>();
                    // Palaver: the events queue is bounded by the caps above too.
                    if self.events.len() < MAX_QUEUED_EVENTS {
                        self.events.extend(new_addr_events);
                    }

                    // Update list of discovered peers.
                    if self
                        .discovered_peers
                        .entry(peer_id)
                        .or_default()
                        .insert(namespace, (addresses.to_owned(), expires))
                        .is_none()
                    {
                        self.discovered_entries = self.discovered_entries.saturating_add(1);
                    }
                });

                Some(Event::Discovered {
                    rendezvous_node,
                    registrations,
                    cookie,
                })
            }
            DiscoverResponse(Err(error_code)) => {
                let (rendezvous_node, ns) = self.waiting_for_discovery.remove(request_id)?;
                Some(Event::DiscoverFailed {
                    rendezvous_node,
                    namespace: ns,
                    error: error_code,
                })
            }
            // Palaver: a relay may answer with any message type (the codec
            // decodes all of them); that fails the request instead of panicking.
            Register(_) | Unregister(_) | Discover { .. } => {
                self.event_for_outbound_failure(request_id)
            }
        }
    }

    fn discovered_peer_addrs(&self, peer: &PeerId) -> impl Iterator<Item = &Multiaddr> {
        self.discovered_peers
            .get(peer)
            .into_iter()
            .flat_map(|namespaces| namespaces.values().flat_map(|(addrs, _)| addrs))
    }

    /// Palaver: drops every discovered entry whose (clamped) ttl has passed,
    /// queueing an [`Event::Expired`] per entry as upstream did.
    fn sweep_expired(&mut self, now: Instant) {
        let mut removed = 0usize;
        let expired = &mut self.expired;
        self.discovered_peers.retain(|peer, namespaces| {
            namespaces.retain(|_, (_, expires)| {
                let keep = *expires > now;
                if !keep {
                    removed = removed.saturating_add(1);
                    if expired.len() < MAX_QUEUED_EVENTS {
                        expired.push_back(*peer);
                    }
                }
                keep
            });
            !namespaces.is_empty()
        });
        self.discovered_entries = self.discovered_entries.saturating_sub(removed);
    }
}
