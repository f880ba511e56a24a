//! Rendezvous and relay abuse (issue 13): a discover that would list every
//! room, a discover asking for everything at once, a sybil wave from one host
//! (connections, reservations, registrations, circuits),
//! and registrations left behind by peers that are gone.
//!
//! Every client here is a real libp2p swarm on loopback QUIC. Linux routes all
//! of 127.0.0.0/8 to `lo`, so a client that listens on 127.0.0.2 (and dials
//! from that socket) is another host as far as the relay can tell.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::client::{Client, ClientEvent, client, start_relay};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, relay, rendezvous};
use palaver_testkit::Relay;
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(60);

/// Connects from `source` (a QUIC dial goes out of the listening socket) and
/// waits for the relay's identify; `None` when the relay refuses the
/// connection.
async fn connect(swarm: &mut Swarm<Client>, relay: &Multiaddr, source: Ipv4Addr) -> Option<PeerId> {
    swarm
        .listen_on(format!("/ip4/{source}/udp/0/quic-v1").parse().unwrap())
        .unwrap();
    // The listener must be up before the dial, or the dial uses a new socket.
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let SwarmEvent::NewListenAddr { .. } = swarm.select_next_some().await {
                return;
            }
        }
    })
    .await
    .expect("listening");
    swarm.dial(relay.clone()).unwrap();
    let relay_id = match relay.iter().last() {
        Some(Protocol::P2p(p)) => p,
        _ => panic!("relay address without /p2p"),
    };
    tokio::time::timeout(DEADLINE, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(ClientEvent::Identify(identify::Event::Received {
                    peer_id,
                    ..
                })) if peer_id == relay_id => return Some(relay_id),
                SwarmEvent::OutgoingConnectionError { .. } => return None,
                SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == relay_id => {
                    return None;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the relay either identified itself or refused")
}

/// Registers `namespace` at the relay; whether it was accepted.
async fn register(swarm: &mut Swarm<Client>, relay: PeerId, namespace: &str) -> bool {
    let port = 1000 + u16::from(swarm.local_peer_id().to_bytes()[6]);
    swarm.add_external_address(
        format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
            .parse()
            .unwrap(),
    );
    let ns = rendezvous::Namespace::new(namespace.to_owned()).unwrap();
    swarm
        .behaviour_mut()
        .rendezvous
        .register(ns, relay, Some(300))
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(ClientEvent::Rendezvous(
                    rendezvous::client::Event::Registered { .. },
                )) => return true,
                SwarmEvent::Behaviour(ClientEvent::Rendezvous(
                    rendezvous::client::Event::RegisterFailed { .. },
                )) => return false,
                _ => {}
            }
        }
    })
    .await
    .expect("the registration was answered")
}

/// Asks for a reservation; whether it was granted.
async fn reserve(swarm: &mut Swarm<Client>, relay: &Multiaddr) -> bool {
    swarm
        .listen_on(relay.clone().with(Protocol::P2pCircuit))
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(ClientEvent::Relay(
                    relay::client::Event::ReservationReqAccepted { .. },
                )) => return true,
                SwarmEvent::ListenerClosed { reason: Err(_), .. } => return false,
                _ => {}
            }
        }
    })
    .await
    .expect("the reservation was answered")
}

/// What a discover got: the registrations, or the error.
async fn discover(
    swarm: &mut Swarm<Client>,
    relay: PeerId,
    namespace: Option<&str>,
    limit: Option<u64>,
) -> Result<Vec<rendezvous::Registration>, rendezvous::ErrorCode> {
    let ns = namespace.map(|n| rendezvous::Namespace::new(n.to_owned()).unwrap());
    swarm
        .behaviour_mut()
        .rendezvous
        .discover(ns, None, limit, relay);
    tokio::time::timeout(DEADLINE, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(ClientEvent::Rendezvous(
                    rendezvous::client::Event::Discovered { registrations, .. },
                )) => return Ok(registrations),
                SwarmEvent::Behaviour(ClientEvent::Rendezvous(
                    rendezvous::client::Event::DiscoverFailed { error, .. },
                )) => return Err(error),
                _ => {}
            }
        }
    })
    .await
    .expect("the discover was answered")
}

/// Opens a circuit through the relay to `target`; whether it opened.
async fn circuit(swarm: &mut Swarm<Client>, relay: &Multiaddr, target: PeerId) -> bool {
    swarm
        .dial(
            relay
                .clone()
                .with(Protocol::P2pCircuit)
                .with(Protocol::P2p(target)),
        )
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target => {
                    return true;
                }
                SwarmEvent::OutgoingConnectionError {
                    peer_id: Some(p), ..
                } if p == target => return false,
                _ => {}
            }
        }
    })
    .await
    .expect("the circuit was answered")
}

/// Keeps a swarm's connections alive (and answering) in the background.
fn keep(mut swarm: Swarm<Client>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    })
}

/// Starts `n` clients from `source`, each connecting and registering
/// `namespace` (and asking for a reservation when `reservations`); returns
/// how many were connected, registered and reserved, and the tasks keeping
/// them connected.
async fn wave(
    n: usize,
    source: Ipv4Addr,
    relay: &Multiaddr,
    namespace: &'static str,
    reservations: bool,
) -> ((usize, usize, usize), Vec<tokio::task::JoinHandle<()>>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let tx = tx.clone();
        let relay = relay.clone();
        tasks.push(tokio::spawn(async move {
            let mut swarm = client();
            let Some(relay_id) = connect(&mut swarm, &relay, source).await else {
                let _ = tx.send((false, false, false));
                return;
            };
            let registered = register(&mut swarm, relay_id, namespace).await;
            let reserved = reservations && reserve(&mut swarm, &relay).await;
            let _ = tx.send((true, registered, reserved));
            loop {
                swarm.select_next_some().await;
            }
        }));
    }
    drop(tx);
    let mut tally = (0, 0, 0);
    for _ in 0..n {
        let (c, g, r) = tokio::time::timeout(DEADLINE * 2, rx.recv())
            .await
            .expect("every client of the wave finished")
            .expect("a client of the wave answered");
        tally.0 += usize::from(c);
        tally.1 += usize::from(g);
        tally.2 += usize::from(r);
    }
    (tally, tasks)
}

/// A relay with `n` registrations of "room", the clients holding them, and
/// another client connected to it.
async fn room_of(
    name: &str,
    n: usize,
) -> (
    Relay,
    PeerId,
    Swarm<Client>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (relay, relay_addr, relay_id) = start_relay(
        name,
        &[
            "--max-connections-per-ip",
            "1000",
            "--max-handshakes-per-ip",
            "1000",
        ],
    );
    let (tally, tasks) = wave(n, Ipv4Addr::LOCALHOST, &relay_addr, "room", false).await;
    assert_eq!((tally.0, tally.1), (n, n), "{tally:?}");
    let mut asker = client();
    connect(&mut asker, &relay_addr, Ipv4Addr::LOCALHOST)
        .await
        .unwrap();
    (relay, relay_id, asker, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discover_without_a_namespace_is_refused() {
    let (_relay, relay_id, mut asker, tasks) = room_of("everything", 3).await;
    let everything = discover(&mut asker, relay_id, None, Some(10_000)).await;
    assert_eq!(
        everything.map(|r| r.len()),
        Err(rendezvous::ErrorCode::InvalidNamespace)
    );
    // The room itself is still served.
    let room = discover(&mut asker, relay_id, Some("room"), None).await;
    assert_eq!(room.map(|r| r.len()), Ok(3));
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discover_asking_for_ten_thousand_or_for_everything_gets_at_most_100() {
    let (_relay, relay_id, mut asker, tasks) = room_of("wide", 120).await;
    let wide = discover(&mut asker, relay_id, Some("room"), Some(10_000)).await;
    assert_eq!(wide.map(|r| r.len()), Ok(100));
    let unbounded = discover(&mut asker, relay_id, Some("room"), None).await;
    assert_eq!(unbounded.map(|r| r.len()), Ok(100));
    let small = discover(&mut asker, relay_id, Some("room"), Some(7)).await;
    assert_eq!(small.map(|r| r.len()), Ok(7));
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sybil_wave_from_one_address_an_honest_client_still_gets_a_reservation_a_registration_and_a_circuit()
 {
    let (_relay, relay_addr, relay_id) = start_relay(
        "sybils",
        &[
            "--max-connections-per-ip",
            "16",
            "--max-reservations",
            "64",
            "--max-registrations",
            "64",
        ],
    );
    let (tally, sybils) = wave(200, Ipv4Addr::LOCALHOST, &relay_addr, "sybil", true).await;
    // The wave stays connected: what it got, it holds.

    let mut honest = client();
    connect(&mut honest, &relay_addr, Ipv4Addr::new(127, 0, 0, 2))
        .await
        .expect("the honest client got in");
    assert!(
        register(&mut honest, relay_id, "honest").await,
        "registration"
    );
    assert!(reserve(&mut honest, &relay_addr).await, "reservation");

    // Another honest client, from yet another address, reaches it through a circuit.
    let honest_id = *honest.local_peer_id();
    let _honest = keep(honest);
    let mut caller = client();
    connect(&mut caller, &relay_addr, Ipv4Addr::new(127, 0, 0, 3))
        .await
        .expect("the caller got in");
    let found = discover(&mut caller, relay_id, Some("honest"), None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].record.peer_id(), honest_id);
    assert!(
        circuit(&mut caller, &relay_addr, honest_id).await,
        "a circuit to the honest client"
    );
    assert!(tally.0 <= 16, "the relay let {} sybils in", tally.0);
    for t in sybils {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registrations_of_a_peer_that_disconnected_vanish_from_discover() {
    let (_relay, relay_addr, relay_id) = start_relay("gone", &[]);
    let mut leaver = client();
    connect(&mut leaver, &relay_addr, Ipv4Addr::LOCALHOST)
        .await
        .unwrap();
    assert!(register(&mut leaver, relay_id, "room").await);
    let mut asker = client();
    connect(&mut asker, &relay_addr, Ipv4Addr::new(127, 0, 0, 2))
        .await
        .unwrap();
    let before = discover(&mut asker, relay_id, Some("room"), None)
        .await
        .unwrap();
    assert_eq!(before.len(), 1);

    leaver.disconnect_peer_id(relay_id).unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let SwarmEvent::ConnectionClosed { peer_id, .. } = leaver.select_next_some().await
                && peer_id == relay_id
            {
                return;
            }
        }
    })
    .await
    .expect("the leaver disconnected");
    drop(leaver);

    // The relay sees the close a moment later: ask until it is gone (the
    // registration's ttl is 300 s, far beyond this deadline).
    let gone = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let now = discover(&mut asker, relay_id, Some("room"), None)
                .await
                .unwrap();
            if now.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "the leaver's registration outlived its connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sybils_on_one_address_cannot_hold_every_circuit() {
    let (_relay, relay_addr, _) = start_relay(
        "circuits",
        &["--max-circuits", "8", "--max-circuits-per-ip", "4"],
    );
    // A sybil target with a reservation, and twelve sybil callers from the
    // same address opening circuits to it and holding them.
    let mut target = client();
    connect(&mut target, &relay_addr, Ipv4Addr::LOCALHOST)
        .await
        .unwrap();
    assert!(reserve(&mut target, &relay_addr).await);
    let target_id = *target.local_peer_id();
    let mut held = vec![keep(target)];
    let mut opened = 0;
    for _ in 0..12 {
        let mut sybil = client();
        connect(&mut sybil, &relay_addr, Ipv4Addr::LOCALHOST)
            .await
            .unwrap();
        if circuit(&mut sybil, &relay_addr, target_id).await {
            opened += 1;
        }
        held.push(keep(sybil));
    }
    assert_eq!(opened, 4, "the sybils' address opened {opened} circuits");

    // An honest pair on two other addresses still gets one.
    let mut honest = client();
    connect(&mut honest, &relay_addr, Ipv4Addr::new(127, 0, 0, 2))
        .await
        .unwrap();
    assert!(reserve(&mut honest, &relay_addr).await);
    let honest_id = *honest.local_peer_id();
    held.push(keep(honest));
    let mut caller = client();
    connect(&mut caller, &relay_addr, Ipv4Addr::new(127, 0, 0, 3))
        .await
        .unwrap();
    assert!(
        circuit(&mut caller, &relay_addr, honest_id).await,
        "no circuit for an honest caller after the sybils"
    );
    for t in held {
        t.abort();
    }
}
