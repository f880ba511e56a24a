//! What the relay's tests share: a relay started on loopback QUIC, and the
//! libp2p client they talk to it with (a relay client, rendezvous and
//! identify over QUIC, as a node has them).

use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, identify, noise, relay, rendezvous, yamux};
use palaver_testkit::{Relay, RelayCommand, binary, temp_dir};

#[derive(NetworkBehaviour)]
pub struct Client {
    pub relay: relay::client::Behaviour,
    pub rendezvous: rendezvous::client::Behaviour,
    pub identify: identify::Behaviour,
}

/// A client with a fresh identity, its idle connections kept for two minutes.
pub fn client() -> Swarm<Client> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key, relay| Client {
            relay,
            rendezvous: rendezvous::client::Behaviour::new(key.clone()),
            identify: identify::Behaviour::new(identify::Config::new(
                "/test/1".into(),
                key.public(),
            )),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}

/// Starts a relay on 127.0.0.1 QUIC with `args` (clients on 127.0.0.x reach it).
pub fn start_relay(name: &str, args: &[&str]) -> (Relay, Multiaddr, PeerId) {
    let dir = temp_dir("abuse", name);
    let relay = RelayCommand::new(binary("relay"))
        .identity(dir.join("id.key"))
        .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
        .args(args)
        .stderr_to(dir.join("relay.stderr"))
        .start(1)
        .unwrap();
    let addr: Multiaddr = relay.addrs[0].parse().unwrap();
    let id = match addr.iter().last() {
        Some(Protocol::P2p(p)) => p,
        _ => panic!("relay address without /p2p"),
    };
    (relay, addr, id)
}
