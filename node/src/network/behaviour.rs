//! The composed libp2p behaviour of a node and the configuration of each part.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, autonat, connection_limits, dcutr, gossipsub, identify, mdns, ping, relay,
    rendezvous, request_response,
};
use palaver_proto::contract;

use super::stream_codec::{CatchUpCodec, RedeemCodec};

mod per_ip;
mod topics;

/// gossipsub as a node runs it: room topics only.
pub type Gossipsub = gossipsub::Behaviour<gossipsub::IdentityTransform, topics::Filter>;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub per_ip: per_ip::PerIpLimit,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: Gossipsub,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub relay_client: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
    pub rendezvous: rendezvous::client::Behaviour,
    pub autonat: autonat::Behaviour,
    /// Catch-up: `/palaver/history/1`.
    pub catch_up: request_response::Behaviour<CatchUpCodec>,
    /// Redeeming invites to private rooms: `/palaver/invite/1`.
    pub redeem: request_response::Behaviour<RedeemCodec>,
}

/// How long one catch-up request may take.
const CATCH_UP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Catch-up streams open at once on one connection, both directions together.
const CATCH_UP_STREAMS_PER_CONNECTION: usize = 4;

/// How long redeeming an invite may take (dialing the member, through a
/// relay perhaps, included).
const REDEEM_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the behaviour could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BehaviourError {
    #[error("gossipsub configuration: {0}")]
    Gossipsub(String),
}

impl Behaviour {
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        enable_mdns: bool,
        caps: super::ConnectionCaps,
    ) -> Result<Self, BehaviourError> {
        let local = key.public().to_peer_id();
        let mdns = if enable_mdns {
            match mdns::tokio::Behaviour::new(mdns::Config::default(), local) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!("mDNS is unavailable, continuing without it: {e}");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(caps.total))
                    .with_max_established_incoming(Some(caps.inbound))
                    .with_max_established_outgoing(Some(caps.outbound))
                    .with_max_established_per_peer(Some(4))
                    .with_max_pending_incoming(Some(64))
                    .with_max_pending_outgoing(Some(64)),
            ),
            per_ip: per_ip::PerIpLimit::new(caps.per_address as usize),
            identify: identify::Behaviour::new(
                identify::Config::new(contract::IDENTIFY_PROTOCOL_VERSION.to_owned(), key.public())
                    .with_agent_version(format!(
                        "palaver-node/{} {RUN_TAG}{}",
                        env!("CARGO_PKG_VERSION"),
                        run_id()
                    )),
            ),
            ping: ping::Behaviour::default(),
            gossipsub: gossipsub()?,
            mdns: mdns.into(),
            relay_client,
            dcutr: dcutr::Behaviour::new(local),
            rendezvous: rendezvous::client::Behaviour::new(key.clone()),
            // Asks its relays (and no one else) to dial back, to learn whether
            // this node is publicly reachable: a verdict of "public" drops its
            // reservations, so a stranger that could give one would cut the
            // node off from its relays. Private addresses count: a relay on a
            // campus or company network is normal.
            autonat: autonat::Behaviour::new(
                local,
                autonat::Config {
                    use_connected: false,
                    only_global_ips: false,
                    boot_delay: Duration::from_secs(2),
                    retry_interval: Duration::from_secs(30),
                    refresh_interval: Duration::from_secs(5 * 60),
                    throttle_server_period: Duration::from_secs(5),
                    ..Default::default()
                },
            ),
            catch_up: request_response::Behaviour::with_codec(
                CatchUpCodec,
                [(
                    StreamProtocol::new(contract::HISTORY_PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(CATCH_UP_REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(CATCH_UP_STREAMS_PER_CONNECTION),
            ),
            redeem: request_response::Behaviour::with_codec(
                RedeemCodec,
                [(
                    StreamProtocol::new(palaver_proto::private::redeem::PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(REDEEM_REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(2),
            ),
        })
    }
}

/// What precedes a node's run id in its identify agent version.
pub const RUN_TAG: &str = "run/";

/// A random id of this process, told to peers by identify: a peer that
/// sees it change on a new connection knows the node restarted, and that
/// its older connections are dead ones it must drop (gossipsub greets a
/// peer on its first connection only, so a dead one left beside the new
/// one keeps the two deaf to each other).
fn run_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        return "unknown".to_owned();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The run id in a peer's agent version, if it gives one.
pub fn run_of(agent_version: &str) -> Option<&str> {
    agent_version
        .rsplit_once(RUN_TAG)
        .map(|(_, run)| run)
        .filter(|r| !r.is_empty() && r.len() <= 32)
}

/// The id of a published message: a hash of its bytes (a signed envelope, so
/// the author is part of them), the same as [`palaver_proto::envelope::Envelope::id`].
pub fn message_id(data: &[u8]) -> gossipsub::MessageId {
    gossipsub::MessageId::new(&contract::message_id(data))
}

fn gossipsub() -> Result<Gossipsub, BehaviourError> {
    let err = |e: &dyn std::fmt::Display| BehaviourError::Gossipsub(e.to_string());
    let config = gossipsub::ConfigBuilder::default()
        // No gossipsub signature, source or sequence number: every payload is
        // an envelope its author signed, verified by the node itself, and the
        // message id is a hash of it. A message carrying those fields is
        // invalid. (BENCHMARKS.md: the second signature cost a quarter of the
        // crypto per message and bought nothing.)
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| message_id(&m.data))
        // A frame can carry several messages and control messages, so this
        // is well above one payload (enforced per message when each is
        // decoded); a frame over it ends the stream.
        .max_transmit_size(contract::MAX_GOSSIP_FRAME_BYTES)
        .heartbeat_interval(Duration::from_millis(700))
        // A room may be small: graft whoever is there.
        .mesh_n_low(2)
        .mesh_outbound_min(1)
        .flood_publish(true)
        .duplicate_cache_time(Duration::from_secs(120))
        // The hello of a node in every room it may be in, read whole.
        .max_control_message_size(contract::MAX_GOSSIP_CONTROL_BYTES)
        .build()
        .map_err(|e| err(&e))?;
    let mut behaviour = Gossipsub::new_with_subscription_filter(
        gossipsub::MessageAuthenticity::Anonymous,
        config,
        topics::filter(),
    )
    .map_err(|e| err(&e))?;
    behaviour
        .with_peer_score(peer_score_params(), peer_score_thresholds())
        .map_err(|e| err(&e))?;
    Ok(behaviour)
}

/// Scoring tuned for chat: penalise invalid messages and protocol misbehaviour
/// hard, but never a quiet member of a quiet room (no mesh-delivery quotas),
/// nor many members behind one address (a campus NAT, a test on loopback).
fn peer_score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        // The application score counts envelopes a peer served by catch-up
        // that failed verification (-1 each): from the ninth it is graylisted.
        app_specific_weight: 10.0,
        // Good behaviour earns little, so it cannot buy room for much bad behaviour.
        topic_score_cap: 50.0,
        ..Default::default()
    }
}

pub fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        // Up to +10 for an hour in the mesh, up to +20 for first deliveries.
        time_in_mesh_weight: 10.0 / 3600.0,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 3600.0,
        first_message_deliveries_weight: 0.2,
        first_message_deliveries_cap: 100.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // n invalid messages cost 20·n²: from the third a peer is graylisted
        // (below -80: nothing it sends is read) for about 40 s, as the count
        // decays by 1 % a second and what a graylisted peer sends is not counted.
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    }
}

fn peer_score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds::default()
}

/// The gossipsub topic of a room.
pub fn topic(room: &palaver_proto::RoomName) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(contract::topic(room))
}

/// The room of a topic, if it is a public room's topic.
pub fn room_of(topic: &gossipsub::TopicHash) -> Option<palaver_proto::RoomName> {
    contract::room_of_topic(topic.as_str())
}
