//! A peer that answers AutoNAT v1 dial-back requests with a lie: "I dialled
//! you back at this address" for an address of the test's choosing, without
//! dialling anything. It plays the connected stranger that would flip a node
//! to "public" and make it advertise an address it does not have.
//!
//! AutoNAT v1 (`/libp2p/autonat/1.0.0`) is one unsigned-varint
//! length-prefixed protobuf `Message` each way; the answer is encoded here
//! by hand. The peer also speaks ping, whose rounds give a test a clock
//! that runs with the connection.
//!
//! The swarm runs on TCP and needs a tokio runtime: build it inside one.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, StreamProtocol, Swarm, SwarmBuilder, identify, noise, ping, tcp, yamux};
use palaver_proto::contract;

use crate::lying_relay::RawCodec;

/// AutoNAT v1's protocol name.
pub const AUTONAT_PROTOCOL: &str = "/libp2p/autonat/1.0.0";

/// The lying AutoNAT server's protocols.
#[derive(NetworkBehaviour)]
pub struct LyingAutonatBehaviour {
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub autonat: request_response::Behaviour<RawCodec>,
}

impl std::fmt::Debug for LyingAutonatBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LyingAutonatBehaviour")
            .finish_non_exhaustive()
    }
}

/// A lying AutoNAT server with identity `key`, not yet listening. Call
/// inside a tokio runtime.
pub fn lying_autonat(key: Keypair) -> anyhow::Result<Swarm<LyingAutonatBehaviour>> {
    Ok(SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| LyingAutonatBehaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                contract::IDENTIFY_PROTOCOL_VERSION.to_owned(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(2))),
            autonat: request_response::Behaviour::with_codec(
                RawCodec,
                [(
                    StreamProtocol::new(AUTONAT_PROTOCOL),
                    ProtocolSupport::Inbound,
                )],
                request_response::Config::default(),
            ),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// `DIAL_RESPONSE { status: OK, addr: claim }`: "you are reachable at `claim`".
pub fn dial_back_claim(claim: &Multiaddr) -> Vec<u8> {
    let addr = claim.to_vec();
    let mut inner = vec![0x08, 0x00, 0x1a];
    inner.push(u8::try_from(addr.len()).unwrap_or(u8::MAX));
    inner.extend_from_slice(&addr);
    let mut out = vec![0x08, 0x01, 0x1a];
    out.push(u8::try_from(inner.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&inner);
    out
}
