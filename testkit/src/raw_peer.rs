//! A bare libp2p peer for tests that play a hostile or minimal peer beside
//! real nodes: gossipsub as nodes speak it (anonymous: the envelope carries
//! the signature) or with gossipsub's own signature, and optionally the
//! catch-up request-response protocol with the node's own codec. It checks
//! nothing it is given and sends whatever the test tells it to; what it
//! answers to catch-up requests is up to the test.
//!
//! The swarm runs on QUIC and needs a tokio runtime: build it inside one.

use std::fmt;
use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{Multiaddr, StreamProtocol, Swarm, SwarmBuilder};
use palaver_node::network::HistoryCodec;
use palaver_proto::history::{PROTOCOL, Response};
use sha2::{Digest, Sha256};

/// What a raw peer speaks.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawPeerOptions {
    /// Adds gossipsub's own signature to what it publishes (nodes refuse
    /// such messages: Palaver's gossip is anonymous).
    pub signed_gossip: bool,
    /// Speaks the catch-up protocol, so that nodes ask it for history.
    pub catch_up: bool,
}

/// Largest gossipsub frame a raw peer sends or takes: far over a node's, so
/// that a test can send what a node must refuse.
pub const MAX_TRANSMIT_BYTES: usize = 1 << 20;

/// The raw peer's protocols.
#[derive(NetworkBehaviour)]
pub struct RawBehaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub history: Toggle<request_response::Behaviour<HistoryCodec>>,
}

impl fmt::Debug for RawBehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawBehaviour")
            .field("catch_up", &self.history.is_enabled())
            .finish_non_exhaustive()
    }
}

impl RawBehaviour {
    /// Answers a catch-up request. Fails when the peer does not speak the
    /// protocol or the requester has gone.
    pub fn respond(
        &mut self,
        channel: ResponseChannel<Response>,
        response: Response,
    ) -> Result<(), Response> {
        match self.history.as_mut() {
            Some(history) => history.send_response(channel, response),
            None => Err(response),
        }
    }
}

/// The gossipsub topic of a room, as nodes name it.
pub fn room_topic(room: &str) -> IdentTopic {
    IdentTopic::new(format!("palaver/2/room/{room}"))
}

/// A raw peer with identity `key`, not yet connected. Call inside a tokio
/// runtime.
pub fn raw_swarm(key: Keypair, options: RawPeerOptions) -> anyhow::Result<Swarm<RawBehaviour>> {
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_quic()
        .with_behaviour(
            |key| -> Result<RawBehaviour, Box<dyn std::error::Error + Send + Sync>> {
                let config = gossipsub::ConfigBuilder::default()
                    .max_transmit_size(MAX_TRANSMIT_BYTES)
                    // Takes whatever arrives, signed or not: it checks nothing.
                    .validation_mode(gossipsub::ValidationMode::None)
                    // As nodes identify messages: a hash of the envelope.
                    .message_id_fn(|m: &gossipsub::Message| {
                        gossipsub::MessageId::new(&Sha256::digest(&m.data)[..16])
                    })
                    .build()?;
                let authenticity = if options.signed_gossip {
                    MessageAuthenticity::Signed(key.clone())
                } else {
                    MessageAuthenticity::Anonymous
                };
                let history = options.catch_up.then(|| {
                    request_response::Behaviour::with_codec(
                        HistoryCodec,
                        [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
                        request_response::Config::default(),
                    )
                });
                Ok(RawBehaviour {
                    gossipsub: gossipsub::Behaviour::new(authenticity, config)?,
                    history: Toggle::from(history),
                })
            },
        )?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

/// A raw peer (see [`raw_swarm`]) in `room`, dialling `addr`; returns it and
/// the room's topic. Call inside a tokio runtime.
pub fn raw_peer_in_room(
    key: Keypair,
    options: RawPeerOptions,
    room: &str,
    addr: Multiaddr,
) -> anyhow::Result<(Swarm<RawBehaviour>, IdentTopic)> {
    let mut swarm = raw_swarm(key, options)?;
    let topic = room_topic(room);
    swarm.behaviour_mut().gossipsub.subscribe(&topic)?;
    swarm.dial(addr)?;
    Ok((swarm, topic))
}
