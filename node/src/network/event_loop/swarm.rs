//! libp2p's events in: each is handed to the core it concerns (gossip to
//! the road of a message, connections and NAT traversal to reachability,
//! catch-up streams to the pulls and serving), and what the core asks for
//! is applied.

use std::time::Instant;

use libp2p::core::ConnectedPoint;
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{autonat, dcutr, gossipsub, identify, mdns, relay, rendezvous};
use palaver_proto::contract::{RELAY_HOP_PROTOCOL, RENDEZVOUS_PROTOCOL};
use palaver_proto::{ErrorCode, history};

use super::super::behaviour::{BehaviourEvent, room_of};
use super::super::reachability::DialFailure;
use super::EventLoop;
use crate::api::{Answer, NatStatus};

impl EventLoop {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = Instant::now();
        // Gossip (the bulk of events) gives reachability no input.
        let reach_input = !matches!(event, SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(_)));
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossipsub(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => self.on_mdns(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e, now),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => self.on_relay_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => self.on_dcutr(e),
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(e)) => self.on_rendezvous(e, now),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => self.on_autonat(e),
            SwarmEvent::Behaviour(BehaviourEvent::CatchUp(e)) => self.on_catch_up(e),
            SwarmEvent::Behaviour(BehaviourEvent::Redeem(e)) => self.on_redeem_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::PerIp(never)) => match never {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connection_established(peer_id, connection_id, &endpoint, now),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                num_established,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                self.on_connection_closed(peer_id, connection_id, now);
                if num_established == 0 {
                    self.on_peer_gone(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => self.on_dial_error(connection_id, &error, now),
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                self.reach.new_listen_addr(listener_id, address, now);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.reach.expired_listen_addr(&address)
            }
            SwarmEvent::ListenerError { error, .. } => tracing::warn!("listener error: {error}"),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                tracing::info!(?addresses, ?reason, "listener closed");
                self.reach.listener_closed(listener_id, &addresses, now);
            }
            SwarmEvent::NewExternalAddrCandidate { address } => {
                tracing::debug!(%address, "external address candidate");
                self.reach.external_candidate(address);
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "reachable at a confirmed external address");
                self.reach.external_confirmed(&address, now);
            }
            other => tracing::trace!(?other, "swarm event"),
        }
        if reach_input {
            self.apply_reach_actions();
        }
    }

    fn on_connection_established(
        &mut self,
        peer: libp2p::PeerId,
        id: libp2p::swarm::ConnectionId,
        endpoint: &ConnectedPoint,
        now: Instant,
    ) {
        // A circuit someone opened to us has only `/p2p/<them>` as its remote
        // address; the circuit itself is our listen address at the relay.
        let relayed = endpoint.is_relayed();
        let addr = match endpoint {
            ConnectedPoint::Listener { local_addr, .. } if relayed => local_addr.clone(),
            other => other.get_remote_address().clone(),
        };
        tracing::debug!(%peer, %addr, relayed, "connection established");
        self.reach.connected(peer, id, addr, relayed, now);
        if let Some(reply) = self.pending.dials.remove(&id) {
            let _ = reply.send(Answer::Done("dial"));
        }
        self.catch_up_with_member(peer);
    }

    fn on_connection_closed(
        &mut self,
        peer: libp2p::PeerId,
        id: libp2p::swarm::ConnectionId,
        now: Instant,
    ) {
        let member = self.rooms.is_member_anywhere(&peer);
        if self.reach.disconnected(peer, id, member, now) {
            self.catch_ups.peer_gone(&peer, now);
        }
    }

    fn on_dial_error(&mut self, id: libp2p::swarm::ConnectionId, error: &DialError, now: Instant) {
        tracing::debug!("dial failed: {error}");
        if let Some(reply) = self.pending.dials.remove(&id) {
            let full = format!("dial failed: {error}");
            let message = super::commands::truncate(&full, 600);
            let _ = reply.send(Answer::refused(ErrorCode::DialFailed, message));
        }
        self.reach.dial_failed(DialFailure::Failed(id), now);
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => self.on_gossip_message(propagation_source, message_id, message),
            gossipsub::Event::Subscribed { peer_id, topic } => {
                tracing::debug!(%peer_id, %topic, "peer subscribed");
                if let Some(room) = room_of(&topic) {
                    self.rooms.on_peer_subscribed(&room, Instant::now());
                } else {
                    self.on_private_subscribed(topic.as_str());
                }
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => tracing::debug!(%peer_id, ?failed_messages, "slow peer"),
            other => tracing::trace!(?other, "gossipsub event"),
        }
    }

    fn on_mdns(&mut self, event: mdns::Event) {
        if let mdns::Event::Discovered(found) = event {
            self.reach.found_on_lan(found);
        }
    }

    /// Every connection to `peer` is closed: one that restarted is dialled
    /// again now, so that its first connection greets it afresh.
    fn on_peer_gone(&mut self, peer: libp2p::PeerId) {
        self.pending.runs.remove(&peer);
        if let Some(addrs) = self.pending.restarted.remove(&peer) {
            let dial = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(dial) {
                tracing::debug!(%peer, "cannot dial a restarted peer again: {e}");
            }
        }
    }

    /// A peer's identify on a connection: a new run id means it restarted
    /// and its other connections are dead ones; all go, and it is dialled
    /// again (see `behaviour::run_id`).
    fn check_run(&mut self, peer: libp2p::PeerId, info: &identify::Info) {
        let Some(run) = super::super::behaviour::run_of(&info.agent_version) else {
            return;
        };
        // At most one entry per connected peer, which the connection
        // limits bound.
        let before = self.pending.runs.insert(peer, run.to_owned());
        if before.is_some_and(|b| b != run) {
            tracing::info!(%peer, "peer restarted; dropping its old connections");
            let addrs = info.listen_addrs.iter().take(8).cloned().collect();
            self.pending.restarted.insert(peer, addrs);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_identify(&mut self, event: identify::Event, now: Instant) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        tracing::debug!(%peer_id, agent = %info.agent_version, observed = %info.observed_addr, "identified");
        self.check_run(peer_id, &info);
        let offers = |p: &str| info.protocols.iter().any(|q| q.as_ref() == p);
        let offers_relay = offers(RELAY_HOP_PROTOCOL) && offers(RENDEZVOUS_PROTOCOL);
        self.reach.identified(peer_id, offers_relay, now);
    }

    fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                limit,
            } => {
                tracing::info!(relay = %relay_peer_id, renewal, ?limit, "relay reservation accepted");
                let limit = limit.and_then(|l| l.duration());
                self.reach.reservation_accepted(relay_peer_id, limit);
            }
            other => tracing::debug!(?other, "relay client"),
        }
    }

    fn on_rendezvous(&mut self, event: rendezvous::client::Event, now: Instant) {
        match event {
            rendezvous::client::Event::Registered {
                rendezvous_node,
                ttl,
                namespace,
            } => {
                tracing::debug!(relay = %rendezvous_node, %namespace, ttl, "registered");
                self.reach
                    .registered(&rendezvous_node, &namespace, ttl, now);
            }
            rendezvous::client::Event::RegisterFailed {
                rendezvous_node,
                namespace,
                error,
            } => {
                tracing::info!(relay = %rendezvous_node, %namespace, ?error, "registration refused; will retry");
            }
            rendezvous::client::Event::Discovered {
                rendezvous_node,
                registrations,
                ..
            } => {
                let found = registrations
                    .into_iter()
                    .map(|r| (r.record.peer_id(), r.record.addresses().to_vec()));
                let rooms = &self.rooms;
                self.reach.discovered(
                    &rendezvous_node,
                    found,
                    |p| rooms.is_member_anywhere(p),
                    now,
                );
            }
            rendezvous::client::Event::DiscoverFailed {
                rendezvous_node,
                error,
                ..
            } => tracing::info!(relay = %rendezvous_node, ?error, "discovery failed"),
            rendezvous::client::Event::Expired { .. } => {}
        }
    }

    fn on_dcutr(&mut self, event: dcutr::Event) {
        let result = event.result.map(|_| ()).map_err(|e| e.to_string());
        self.reach.hole_punched(event.remote_peer_id, result);
    }

    fn on_autonat(&mut self, event: autonat::Event) {
        if let autonat::Event::StatusChanged { old, new } = event {
            tracing::info!(?old, ?new, "NAT status");
            self.reach.nat_status(match new {
                autonat::NatStatus::Public(_) => NatStatus::Public,
                autonat::NatStatus::Private => NatStatus::Private,
                autonat::NatStatus::Unknown => NatStatus::Unknown,
            });
        }
    }

    fn on_catch_up(
        &mut self,
        event: libp2p::request_response::Event<history::Request, history::Response>,
    ) {
        use libp2p::request_response::{Event as E, Message};
        match event {
            E::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.serve(peer, request, channel),
            E::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.on_pull_answer(peer, request_id, response),
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, "catch-up request failed: {error}");
                self.on_pull_failed(request_id);
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "catch-up request from a peer failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }
}
