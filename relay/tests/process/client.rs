//! The libp2p client the relay's tests talk to it with: a relay client,
//! rendezvous and identify over QUIC, as a node has them.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, SwarmBuilder, identify, noise, relay, rendezvous, yamux};

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
