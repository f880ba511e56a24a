//! Every rule of [`Reachability`], played without a network: inputs and the
//! time in, actions out.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use super::relays::namespace;
use super::*;

const MEMBER: fn(&PeerId) -> bool = |_| true;

struct World {
    reach: Reachability,
    relay: PeerId,
    relay_addr: Multiaddr,
    t0: Instant,
    next_conn: usize,
}

impl World {
    /// A node with one bootstrap relay, in room `lobby`.
    fn new() -> Self {
        let t0 = Instant::now();
        let relay = PeerId::random();
        let relay_addr: Multiaddr = format!("/ip4/203.0.113.1/udp/4001/quic-v1/p2p/{relay}")
            .parse()
            .unwrap();
        let mut reach = Reachability::new(PeerId::random(), std::slice::from_ref(&relay_addr), t0);
        reach.room_joined(&"lobby".parse().unwrap(), t0);
        Self {
            reach,
            relay,
            relay_addr,
            t0,
            next_conn: 1,
        }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn conn(&mut self) -> ConnectionId {
        self.next_conn += 1;
        ConnectionId::new_unchecked(self.next_conn)
    }

    /// The address of `peer` through a circuit at the world's relay.
    fn circuit_to(&self, peer: PeerId) -> Multiaddr {
        format!("{}/p2p-circuit/p2p/{peer}", self.relay_addr)
            .parse()
            .unwrap()
    }

    /// A member discovered at the relay, reachable only through a circuit,
    /// and connected through it at `now`.
    fn relayed_member(&mut self, now: Instant) -> PeerId {
        let member = PeerId::random();
        let circuit = self.circuit_to(member);
        let relay = self.relay;
        self.reach
            .discovered(&relay, [(member, vec![circuit.clone()])], MEMBER, now);
        let id = self.conn();
        self.reach.connected(member, id, circuit, true, now);
        self.reach.take_actions();
        member
    }

    fn poll(&mut self, now: Instant) -> Vec<Action> {
        self.reach.poll(now, MEMBER);
        self.reach.take_actions()
    }

    /// Dials the relay as bootstrap asks, connects, and identifies it.
    fn connect_relay(&mut self, now: Instant) -> ConnectionId {
        let id = self.conn();
        let dials = dials(&self.poll(now));
        assert_eq!(dials.len(), 1, "the bootstrap relay is dialled");
        self.reach.dialing(&dials[0].purpose, id);
        self.reach
            .connected(self.relay, id, self.relay_addr.clone(), false, now);
        self.reach.identified(self.relay, true, now);
        self.reach.take_actions();
        id
    }

    /// Connects the relay and gets an active reservation through `listener`.
    fn reserve(&mut self, now: Instant, listener: ListenerId) -> Multiaddr {
        self.connect_relay(now);
        let actions = self.poll(now);
        let circuit = actions
            .iter()
            .find_map(|a| match a {
                Action::Reserve { relay, circuit } if *relay == self.relay => Some(circuit.clone()),
                _ => None,
            })
            .expect("a reservation is asked for");
        self.reach.reserving(&self.relay, listener);
        let addr = circuit.with(Protocol::P2p(self.reach.local));
        self.reach.new_listen_addr(listener, addr.clone(), now);
        addr
    }
}

fn dials(actions: &[Action]) -> Vec<Dial> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dial(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn count(actions: &[Action], f: impl Fn(&Action) -> bool) -> usize {
    actions.iter().filter(|a| f(a)).count()
}

#[test]
fn a_bootstrap_relay_gets_a_reservation_a_registration_and_a_lookup_per_room() {
    let mut w = World::new();
    let id = w.conn();
    let first = w.poll(w.t0);
    let dial = &dials(&first)[0];
    assert_eq!(dial.peer, Some(w.relay));
    w.reach.dialing(&dial.purpose, id);
    w.reach
        .connected(w.relay, id, w.relay_addr.clone(), false, w.t0);
    w.reach.identified(w.relay, true, w.t0);
    let identified = w.reach.take_actions();
    assert!(identified.iter().any(|a| matches!(a,
        Action::AddAutonatServer { peer, .. } if *peer == w.relay)));
    assert!(w.reach.poll_at(MEMBER).is_some_and(|t| t <= w.t0));
    let due = w.poll(w.t0);
    assert_eq!(count(&due, |a| matches!(a, Action::Reserve { .. })), 1);
    let lobby = namespace(&"lobby".parse().unwrap());
    assert!(due.contains(&Action::Register {
        relay: w.relay,
        namespace: lobby.clone()
    }));
    assert!(due.contains(&Action::Discover {
        relay: w.relay,
        namespace: lobby
    }));
    // Nothing is asked twice while the first asks are under way.
    assert!(w.poll(w.t0).is_empty());
}

#[test]
fn a_bootstrap_peer_that_is_no_relay_is_only_kept_dialled() {
    let mut w = World::new();
    let id = w.conn();
    let first = w.poll(w.t0);
    w.reach.dialing(&dials(&first)[0].purpose, id);
    w.reach
        .connected(w.relay, id, w.relay_addr.clone(), false, w.t0);
    w.reach.identified(w.relay, false, w.t0);
    assert!(
        !w.reach
            .take_actions()
            .iter()
            .any(|a| matches!(a, Action::AddAutonatServer { .. }))
    );
    assert!(w.poll(w.at(100.0)).is_empty());
    assert!(w.reach.relays().is_empty());
}

#[test]
fn a_reservation_is_reported_once_and_its_end_once() {
    let mut w = World::new();
    let l = ListenerId::next();
    let addr = w.reserve(w.t0, l);
    let events: Vec<_> = w.reach.take_actions();
    assert!(events.contains(&Action::AddExternalAddr(addr.clone())));
    assert_eq!(
        count(&events, |a| matches!(
            a,
            Action::Emit(Event::Reservation { active: true, .. })
        )),
        1
    );
    // A renewal, or a second address of the same reservation, is no news.
    w.reach.new_listen_addr(l, addr.clone(), w.at(1.0));
    let renewed = w.reach.take_actions();
    assert_eq!(
        count(&renewed, |a| matches!(a, Action::Emit(_))),
        0,
        "{renewed:?}"
    );
    w.reach
        .listener_closed(l, std::slice::from_ref(&addr), w.at(2.0));
    let ended = w.reach.take_actions();
    assert!(ended.contains(&Action::RemoveExternalAddr(addr.clone())));
    assert!(ended.contains(&Action::Emit(Event::Reservation {
        relay: w.relay,
        addr: Some(addr),
        active: false
    })));
}

#[test]
fn a_relay_that_restarts_is_dialled_again_and_asked_for_everything_again() {
    let mut w = World::new();
    let l = ListenerId::next();
    let addr = w.reserve(w.t0, l);
    w.reach.take_actions();
    // The relay goes away: its listener closes, then the connection.
    w.reach
        .listener_closed(l, std::slice::from_ref(&addr), w.at(10.0));
    let conn = ConnectionId::new_unchecked(2);
    assert!(w.reach.disconnected(w.relay, conn, false, w.at(10.0)));
    w.reach.take_actions();
    // Nothing is asked of a relay that is not connected.
    assert!(dials(&w.poll(w.at(10.5))).is_empty());
    assert!(
        w.poll(w.at(10.5))
            .iter()
            .all(|a| !matches!(a, Action::Reserve { .. }))
    );
    // The bootstrap backoff passes: it is dialled again, and once it is
    // back a reservation is asked for again.
    let again = w.poll(w.at(11.0));
    assert_eq!(dials(&again).len(), 1);
    let id = w.conn();
    w.reach.dialing(&dials(&again)[0].purpose, id);
    w.reach
        .connected(w.relay, id, w.relay_addr.clone(), false, w.at(11.5));
    w.reach.identified(w.relay, true, w.at(11.5));
    w.reach.take_actions();
    let due = w.poll(w.at(15.5));
    assert_eq!(count(&due, |a| matches!(a, Action::Reserve { .. })), 1);
    assert_eq!(count(&due, |a| matches!(a, Action::Register { .. })), 1);
}

#[test]
fn autonat_public_drops_reservations_and_private_asks_for_one_again() {
    let mut w = World::new();
    let l = ListenerId::next();
    w.reserve(w.t0, l);
    w.reach.take_actions();
    w.reach.nat_status(NatStatus::Public);
    assert_eq!(w.reach.take_actions(), vec![Action::RemoveListener(l)]);
    w.reach.listener_closed(l, &[], w.at(1.0));
    w.reach.take_actions();
    // Public: no reservation however long it waits.
    let later = w.poll(w.at(60.0));
    assert!(later.iter().all(|a| !matches!(a, Action::Reserve { .. })));
    assert_eq!(w.reach.nat(), NatStatus::Public);
    w.reach.nat_status(NatStatus::Private);
    assert!(w.reach.take_actions().is_empty());
    let private = w.poll(w.at(61.0));
    assert_eq!(count(&private, |a| matches!(a, Action::Reserve { .. })), 1);
}

#[test]
fn a_changed_address_registers_every_room_again() {
    let mut w = World::new();
    w.connect_relay(w.t0);
    w.poll(w.t0);
    let lobby = namespace(&"lobby".parse().unwrap());
    w.reach
        .registered(&w.relay, &lobby, REGISTRATION_TTL, w.at(1.0));
    let quiet = w.poll(w.at(2.0));
    assert_eq!(count(&quiet, |a| matches!(a, Action::Register { .. })), 0);
    w.reach.addresses_changed(w.at(3.0));
    let again = w.poll(w.at(3.0));
    assert_eq!(count(&again, |a| matches!(a, Action::Register { .. })), 1);
}

#[test]
fn a_registration_is_refreshed_at_half_its_ttl_and_a_lying_ttl_is_clamped() {
    let mut w = World::new();
    w.connect_relay(w.t0);
    w.poll(w.t0);
    let lobby = namespace(&"lobby".parse().unwrap());
    w.reach.registered(&w.relay, &lobby, u64::MAX, w.t0);
    let half = REGISTRATION_TTL as f64 / 2.0;
    let before = w.poll(w.at(half - 1.0));
    assert_eq!(count(&before, |a| matches!(a, Action::Register { .. })), 0);
    let at_half = w.poll(w.at(half));
    assert_eq!(count(&at_half, |a| matches!(a, Action::Register { .. })), 1);
}

#[test]
fn leaving_a_room_unregisters_it_at_every_connected_relay() {
    let mut w = World::new();
    w.connect_relay(w.t0);
    w.poll(w.t0);
    w.reach.room_left(&"lobby".parse().unwrap());
    assert_eq!(
        w.reach.take_actions(),
        vec![Action::Unregister {
            relay: w.relay,
            namespace: namespace(&"lobby".parse().unwrap())
        }]
    );
    let later = w.poll(w.at(100.0));
    assert!(later.iter().all(|a| !matches!(a, Action::Register { .. })));
    assert!(later.iter().all(|a| !matches!(a, Action::Discover { .. })));
}

#[test]
fn a_discovered_member_is_dialled_direct_addresses_first() {
    let mut w = World::new();
    let member = PeerId::random();
    let circuit = w.circuit_to(member);
    let direct: Multiaddr = "/ip4/192.0.2.7/udp/5000/quic-v1".parse().unwrap();
    w.reach.discovered(
        &w.relay.clone(),
        [(member, vec![circuit.clone(), direct.clone()])],
        MEMBER,
        w.t0,
    );
    let d = dials(&w.reach.take_actions());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].addrs, vec![direct, circuit]);
    assert_eq!(d[0].purpose, DialPurpose::Member);
    // Itself, or one with no address, is not dialled.
    let own = w.reach.local;
    w.reach.discovered(
        &w.relay.clone(),
        [
            (own, vec!["/ip4/192.0.2.8/tcp/1".parse().unwrap()]),
            (PeerId::random(), vec![]),
        ],
        MEMBER,
        w.t0,
    );
    assert!(dials(&w.reach.take_actions()).is_empty());
}

#[test]
fn a_lost_member_is_dialled_again_after_a_second() {
    let mut w = World::new();
    let member = PeerId::random();
    let addr: Multiaddr = "/ip4/192.0.2.7/udp/5000/quic-v1".parse().unwrap();
    w.reach.discovered(
        &w.relay.clone(),
        [(member, vec![addr.clone()])],
        MEMBER,
        w.t0,
    );
    w.reach.take_actions();
    let id = w.conn();
    w.reach.connected(member, id, addr.clone(), false, w.t0);
    assert!(w.reach.disconnected(member, id, true, w.at(5.0)));
    w.reach.take_actions();
    assert!(
        dials(&w.poll(w.at(5.5)))
            .iter()
            .all(|d| d.peer != Some(member))
    );
    assert!(
        w.reach.poll_at(MEMBER).is_some_and(|t| t <= w.at(6.0)),
        "it wakes in time for the redial"
    );
    let again = dials(&w.poll(w.at(6.0)));
    assert!(
        again
            .iter()
            .any(|d| d.peer == Some(member) && d.addrs == vec![addr.clone()])
    );
    // One who is in no room with this node is not.
    let id = w.conn();
    w.reach.connected(member, id, addr, false, w.at(7.0));
    w.reach.disconnected(member, id, false, w.at(8.0));
    assert!(
        dials(&w.poll(w.at(20.0)))
            .iter()
            .all(|d| d.peer != Some(member))
    );
}

#[test]
fn a_circuit_near_its_limit_is_replaced_by_a_fresh_one_once() {
    let mut w = World::new();
    w.connect_relay(w.t0);
    w.reach
        .reservation_accepted(w.relay, Some(Duration::from_secs(100)));
    w.relayed_member(w.t0);
    let fresh = |actions: &[Action]| {
        dials(actions)
            .into_iter()
            .filter(|d| d.purpose == DialPurpose::FreshCircuit)
            .count()
    };
    assert_eq!(fresh(&w.poll(w.at(69.0))), 0);
    assert!(
        w.reach
            .poll_at(MEMBER)
            .is_some_and(|t| t <= w.at(70.0) && t > w.at(69.0)),
        "it wakes for the refresh"
    );
    assert_eq!(fresh(&w.poll(w.at(70.0))), 1);
    assert_eq!(fresh(&w.poll(w.at(71.0))), 0, "once, not on every poll");
    // A lying relay's limit cannot overflow the arithmetic.
    w.reach.reservation_accepted(w.relay, Some(Duration::MAX));
    assert_eq!(fresh(&w.poll(w.at(200.0))), 0);
}

#[test]
fn a_relayed_connection_without_an_upgrade_is_a_failed_hole_punch_after_the_timeout() {
    let mut w = World::new();
    let peer = PeerId::random();
    let circuit = w.circuit_to(peer);
    let id = w.conn();
    w.reach.connected(peer, id, circuit, true, w.t0);
    w.reach.take_actions();
    let punches = |actions: Vec<Action>| -> Vec<Event> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Emit(e @ Event::HolePunch { .. }) => Some(e),
                _ => None,
            })
            .collect()
    };
    let secs = PUNCH_TIMEOUT.as_secs_f64();
    assert!(punches(w.poll(w.at(secs - 1.0))).is_empty());
    let failed = punches(w.poll(w.at(secs)));
    assert!(matches!(&failed[..], [Event::HolePunch { peer: p, result: Err(_) }] if *p == peer));
    // Reported once.
    assert!(punches(w.poll(w.at(secs * 2.0))).is_empty());
}

#[test]
fn a_direct_connection_to_a_relayed_peer_is_a_successful_hole_punch_reported_once() {
    let mut w = World::new();
    let peer = PeerId::random();
    let circuit = w.circuit_to(peer);
    let relayed = w.conn();
    w.reach.connected(peer, relayed, circuit, true, w.t0);
    let direct = w.conn();
    let addr: Multiaddr = "/ip4/192.0.2.9/udp/1/quic-v1".parse().unwrap();
    w.reach.connected(peer, direct, addr, false, w.at(1.0));
    let actions = w.reach.take_actions();
    assert_eq!(
        count(&actions, |a| matches!(
            a,
            Action::Emit(Event::HolePunch { result: Ok(()), .. })
        )),
        1
    );
    w.reach.hole_punched(peer, Ok(()));
    assert!(w.reach.take_actions().is_empty());
}

#[test]
fn a_refused_bootstrap_dial_waits_its_backoff_instead_of_spinning() {
    let mut w = World::new();
    let first = dials(&w.poll(w.t0));
    w.reach
        .dial_failed(DialFailure::NotStarted(first[0].purpose.clone()), w.t0);
    assert!(dials(&w.poll(w.at(0.5))).is_empty());
    assert!(w.reach.poll_at(MEMBER).is_some_and(|t| t > w.at(0.5)));
    assert_eq!(dials(&w.poll(w.at(1.0))).len(), 1);
}

#[test]
fn a_bootstrap_dial_put_off_is_asked_again_soon_without_growing_the_backoff() {
    let mut w = World::new();
    let first = dials(&w.poll(w.t0));
    w.reach
        .dial_failed(DialFailure::Deferred(first[0].purpose.clone()), w.t0);
    assert!(dials(&w.poll(w.at(0.2))).is_empty());
    let again = dials(&w.poll(w.at(0.25)));
    assert_eq!(again.len(), 1);
    // A real failure now waits the first backoff, not a doubled one.
    w.reach.dial_failed(
        DialFailure::NotStarted(again[0].purpose.clone()),
        w.at(0.25),
    );
    assert_eq!(dials(&w.poll(w.at(1.25))).len(), 1);
}

#[test]
fn a_relay_saying_circuits_last_no_time_cannot_make_circuits_churn() {
    let mut w = World::new();
    w.connect_relay(w.t0);
    w.reach.reservation_accepted(w.relay, Some(Duration::ZERO));
    w.relayed_member(w.t0);
    let fresh: usize = (0..1000)
        .map(|ms| {
            dials(&w.poll(w.t0 + Duration::from_millis(ms * 5)))
                .iter()
                .filter(|d| d.purpose == DialPurpose::FreshCircuit)
                .count()
        })
        .sum();
    assert!(fresh <= 1, "{fresh} fresh circuits in 5 s");
}

#[test]
fn after_a_poll_the_next_wake_up_is_in_the_future() {
    let mut w = World::new();
    let l = ListenerId::next();
    w.reserve(w.t0, l);
    w.reach
        .reservation_accepted(w.relay, Some(Duration::from_secs(120)));
    w.relayed_member(w.t0);
    for step in 0..400 {
        let now = w.at(f64::from(step) * 0.5);
        w.poll(now);
        let next = w.reach.poll_at(MEMBER);
        assert!(next.is_none_or(|t| t > now), "at step {step}: {next:?}");
    }
}

#[test]
fn of_two_peers_meeting_on_the_lan_the_smaller_id_dials_first() {
    let mut w = World::new();
    let other = PeerId::random();
    let addr: Multiaddr = "/ip4/192.168.1.2/udp/1/quic-v1".parse().unwrap();
    w.reach.found_on_lan([(other, addr.clone())]);
    let first = dials(&w.reach.take_actions());
    assert_eq!(first.len(), usize::from(w.reach.local < other));
    // Seen again while still apart: now it dials either way.
    w.reach.found_on_lan([(other, addr)]);
    assert_eq!(dials(&w.reach.take_actions()).len(), 1);
}

#[test]
fn a_confirmed_address_nobody_saw_is_withdrawn_and_one_a_peer_saw_is_kept() {
    let mut w = World::new();
    let made_up: Multiaddr = "/ip4/6.6.6.6/tcp/6666".parse().unwrap();
    w.reach.external_confirmed(&made_up, w.t0);
    let actions = w.reach.take_actions();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::RemoveExternalAddr(x) if *x == made_up)),
        "{actions:?}"
    );
    let seen: Multiaddr = "/ip4/203.0.113.7/udp/4001/quic-v1".parse().unwrap();
    w.reach.external_candidate(seen.clone());
    w.reach.external_confirmed(&seen, w.t0);
    assert!(
        !w.reach
            .take_actions()
            .iter()
            .any(|a| matches!(a, Action::RemoveExternalAddr(_)))
    );
    // Candidates are bounded: the oldest are forgotten first.
    for i in 0..MAX_CANDIDATES {
        w.reach
            .external_candidate(format!("/ip4/198.51.100.{i}/tcp/1").parse().unwrap());
    }
    w.reach.external_confirmed(&seen, w.t0);
    assert!(
        w.reach
            .take_actions()
            .iter()
            .any(|a| matches!(a, Action::RemoveExternalAddr(_)))
    );
}

#[test]
fn one_discovery_dials_a_bounded_number_of_members_at_addresses_as_public_as_the_relay() {
    let mut w = World::new();
    let relay = w.relay;
    // 64 made-up members, each at eight addresses of someone else's host,
    // and one at loopback and a private address only.
    let victim: Vec<Multiaddr> = (0..8)
        .map(|p| {
            format!("/ip4/198.51.100.1/tcp/{}", 1000 + p)
                .parse()
                .unwrap()
        })
        .collect();
    let mut found: Vec<(PeerId, Vec<Multiaddr>)> = (0..64)
        .map(|_| (PeerId::random(), victim.clone()))
        .collect();
    let inside = PeerId::random();
    found.insert(
        0,
        (
            inside,
            vec![
                "/ip4/127.0.0.1/tcp/22".parse().unwrap(),
                "/ip4/10.0.0.1/tcp/22".parse().unwrap(),
            ],
        ),
    );
    w.reach.discovered(&relay, found, MEMBER, w.t0);
    let d = dials(&w.reach.take_actions());
    assert_eq!(d.len(), members::MAX_DIALS_PER_DISCOVERY);
    assert!(
        d.iter()
            .all(|d| d.addrs.len() <= 4 && d.peer != Some(inside))
    );
    // The minute's budget runs out, whatever the relay answers.
    let mut total = d.len();
    for _ in 0..20 {
        let found: Vec<_> = (0..64)
            .map(|_| (PeerId::random(), victim.clone()))
            .collect();
        w.reach.discovered(&relay, found, MEMBER, w.at(10.0));
        total += dials(&w.reach.take_actions()).len();
    }
    assert_eq!(total, members::MAX_DISCOVERY_DIALS_PER_MINUTE as usize);
    let found: Vec<_> = (0..64)
        .map(|_| (PeerId::random(), victim.clone()))
        .collect();
    w.reach.discovered(&relay, found, MEMBER, w.at(61.0));
    assert_eq!(
        dials(&w.reach.take_actions()).len(),
        members::MAX_DIALS_PER_DISCOVERY
    );
}
