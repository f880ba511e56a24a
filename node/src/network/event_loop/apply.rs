//! Carries out what [`Reachability`](super::super::reachability::Reachability)
//! asked for, in one place: dials, reservations, external addresses,
//! rendezvous, and the events it reports. What the swarm says back (a dial or
//! listener it refused) goes straight back to the core.

use std::time::Instant;

use libp2p::swarm::DialError;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};

use super::super::reachability::{Action, Dial, DialFailure, DialPurpose, REGISTRATION_TTL};
use super::EventLoop;

/// Most registrations one discovery asks for.
const DISCOVER_LIMIT: u64 = 100;

impl EventLoop {
    /// Applies every action reachability queued, in order; reachability
    /// had input, so its next deadline is asked again.
    pub(super) fn apply_reach_actions(&mut self) {
        for action in self.reach.take_actions() {
            self.apply(action);
        }
        self.reach_changed();
    }

    fn apply(&mut self, action: Action) {
        let swarm = &mut self.swarm;
        match action {
            Action::Dial(dial) => self.dial_for(dial),
            Action::Reserve { relay, circuit } => match swarm.listen_on(circuit) {
                Ok(listener) => self.reach.reserving(&relay, listener),
                Err(e) => tracing::info!(%relay, "cannot ask for a reservation: {e}"),
            },
            Action::RemoveListener(listener) => {
                swarm.remove_listener(listener);
            }
            Action::AddExternalAddr(addr) => swarm.add_external_address(addr),
            Action::RemoveExternalAddr(addr) => swarm.remove_external_address(&addr),
            Action::AddAutonatServer { peer, addr } => {
                swarm.behaviour_mut().autonat.add_server(peer, Some(addr));
            }
            Action::Register { relay, namespace } => {
                let rendezvous = &mut swarm.behaviour_mut().rendezvous;
                if let Err(e) = rendezvous.register(namespace, relay, Some(REGISTRATION_TTL)) {
                    tracing::debug!(%relay, "cannot register yet: {e}");
                }
            }
            Action::Unregister { relay, namespace } => {
                swarm
                    .behaviour_mut()
                    .rendezvous
                    .unregister(namespace, relay);
            }
            Action::Discover { relay, namespace } => {
                swarm.behaviour_mut().rendezvous.discover(
                    Some(namespace),
                    None,
                    Some(DISCOVER_LIMIT),
                    relay,
                );
            }
            Action::Emit(event) => self.emit(event),
        }
    }

    fn dial_for(&mut self, dial: Dial) {
        let Dial {
            peer,
            addrs,
            purpose,
        } = dial;
        let condition = match purpose {
            DialPurpose::FreshCircuit => PeerCondition::Always,
            DialPurpose::Bootstrap(_) | DialPurpose::Member => {
                PeerCondition::DisconnectedAndNotDialing
            }
        };
        let opts = match peer {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(condition)
                .build(),
            None => match addrs.into_iter().next() {
                Some(addr) => DialOpts::unknown_peer_id().address(addr).build(),
                None => return,
            },
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => self.reach.dialing(&purpose, id),
            Err(DialError::DialPeerConditionFalse(_)) => self
                .reach
                .dial_failed(DialFailure::Deferred(purpose), Instant::now()),
            Err(e) => {
                tracing::info!(?purpose, "cannot dial: {e}");
                self.reach
                    .dial_failed(DialFailure::NotStarted(purpose), Instant::now());
            }
        }
    }
}
