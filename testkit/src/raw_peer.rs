//! A bare libp2p peer for tests that play a hostile or minimal peer beside
//! real nodes: gossipsub as nodes speak it (anonymous: the envelope carries
//! the signature) or with gossipsub's own signature, and optionally the
//! catch-up request-response protocol with the node's own codec. It checks
//! nothing it is given and sends whatever the test tells it to; what it
//! answers to catch-up requests is up to the test.
//!
//! The swarm runs on QUIC and needs a tokio runtime: build it inside one.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{Multiaddr, StreamProtocol, Swarm, SwarmBuilder};
use palaver_node::CatchUpCodec;
use palaver_proto::contract;
use palaver_proto::history::reconcile::Items;
use palaver_proto::history::{MessageRef, Refusal, Request, Response};

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
    pub catch_up: Toggle<request_response::Behaviour<CatchUpCodec>>,
}

impl fmt::Debug for RawBehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawBehaviour")
            .field("catch_up", &self.catch_up.is_enabled())
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
        match self.catch_up.as_mut() {
            Some(catch_up) => catch_up.send_response(channel, response),
            None => Err(response),
        }
    }
}

/// The gossipsub topic of a room, as nodes name it.
pub fn room_topic(room: &str) -> IdentTopic {
    match room.parse() {
        Ok(room) => IdentTopic::new(contract::topic(&room)),
        Err(_) => IdentTopic::new(format!("{}{room}", contract::TOPIC_PREFIX)),
    }
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
                        gossipsub::MessageId::new(&contract::message_id(&m.data))
                    })
                    .build()?;
                let authenticity = if options.signed_gossip {
                    MessageAuthenticity::Signed(key.clone())
                } else {
                    MessageAuthenticity::Anonymous
                };
                let catch_up = options.catch_up.then(|| {
                    request_response::Behaviour::with_codec(
                        CatchUpCodec,
                        [(
                            StreamProtocol::new(contract::HISTORY_PROTOCOL),
                            ProtocolSupport::Full,
                        )],
                        request_response::Config::default(),
                    )
                });
                Ok(RawBehaviour {
                    gossipsub: gossipsub::Behaviour::new(authenticity, config)?,
                    catch_up: Toggle::from(catch_up),
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

/// What a raw peer holds and serves by catch-up: envelopes, each under the
/// timestamp it claims for it (a hostile test may lie). It answers
/// reconciliation over those (ts, id) pairs as a node would, and fetches
/// with whatever it holds under what was asked, genuine or not.
#[derive(Debug, Default, Clone)]
pub struct Served {
    items: Items,
    envelopes: HashMap<MessageRef, Vec<u8>>,
}

impl Served {
    /// Holds these envelopes, each as (bytes, claimed ts).
    pub fn new(envelopes: impl IntoIterator<Item = (Vec<u8>, u64)>) -> Self {
        let envelopes: HashMap<MessageRef, Vec<u8>> = envelopes
            .into_iter()
            .map(|(bytes, ts)| (reference(&bytes, ts), bytes))
            .collect();
        Self {
            items: Items::from_refs(envelopes.keys().copied()),
            envelopes,
        }
    }

    /// How many envelopes it holds.
    pub fn len(&self) -> usize {
        self.envelopes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
    }

    /// The answer to a node's catch-up request.
    pub fn answer(&self, request: &Request) -> Response {
        match request {
            Request::Reconcile { message, .. } => match self.items.answer(message) {
                Ok(answer) => Response::Reconcile(answer),
                Err(_) => Response::Refused(Refusal::Unavailable),
            },
            Request::Fetch { refs, .. } => Response::Envelopes(
                refs.iter()
                    .filter_map(|r| self.envelopes.get(r).cloned())
                    .collect(),
            ),
        }
    }
}

/// How catch-up names an envelope claimed to be dated `ts`.
pub fn reference(bytes: &[u8], ts: u64) -> MessageRef {
    MessageRef {
        ts,
        id: contract::message_id(bytes),
    }
}
