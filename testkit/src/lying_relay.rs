//! A relay that lies: it offers circuit relay v2 (libp2p's own server) and
//! answers rendezvous on the wire itself, with whatever the test tells it to
//! put in its answers — a registration time-to-live of `u64::MAX`, records
//! of made-up peers with addresses of the test's choosing. It plays the
//! malicious or broken relay a node must survive.
//!
//! Rendezvous (`/rendezvous/1.0.0`) is one unsigned-varint length-prefixed
//! protobuf `Message` each way (libp2p-rendezvous' `rpc.proto`); the few
//! fields used are encoded here by hand.
//!
//! The swarm runs on TCP and needs a tokio runtime: build it inside one.

use std::io;
use std::time::Duration;

use libp2p::core::PeerRecord;
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, StreamProtocol, Swarm, SwarmBuilder, identify, noise, relay};
use libp2p::{tcp, yamux};
use palaver_proto::contract;

/// What the lying relay puts in its answers.
#[derive(Debug, Clone)]
pub struct Lies {
    /// The ttl of every registration it accepts and hands out.
    pub ttl: u64,
    /// Records it hands out in every discover answer: each a fresh peer
    /// at these addresses.
    pub peers: usize,
    pub addrs: Vec<Multiaddr>,
}

/// The lying relay's protocols.
#[derive(NetworkBehaviour)]
pub struct LyingBehaviour {
    pub identify: identify::Behaviour,
    pub relay: relay::Behaviour,
    pub rendezvous: request_response::Behaviour<RawCodec>,
}

impl std::fmt::Debug for LyingBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LyingBehaviour").finish_non_exhaustive()
    }
}

/// A lying relay with identity `key`, not yet listening. Call inside a
/// tokio runtime.
pub fn lying_relay(key: Keypair) -> anyhow::Result<Swarm<LyingBehaviour>> {
    Ok(SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| LyingBehaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                contract::IDENTIFY_PROTOCOL_VERSION.to_owned(),
                key.public(),
            )),
            relay: relay::Behaviour::new(key.public().to_peer_id(), relay::Config::default()),
            rendezvous: request_response::Behaviour::with_codec(
                RawCodec,
                [(
                    StreamProtocol::new(contract::RENDEZVOUS_PROTOCOL),
                    ProtocolSupport::Inbound,
                )],
                request_response::Config::default(),
            ),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// `Message.type` of a discover request.
pub const DISCOVER: u64 = 3;

/// The `Message.type` of a rendezvous request (0 register, 2 unregister,
/// [`DISCOVER`]), if it can be read.
pub fn kind(request: &[u8]) -> Option<u64> {
    Some(
        fields(request)?
            .iter()
            .find(|f| f.0 == 1)
            .map_or(0, |f| f.1),
    )
}

/// The answer to one rendezvous request, or `None` for a request it does
/// not understand.
pub fn answer(request: &[u8], lies: &Lies) -> Option<Vec<u8>> {
    let fields = fields(request)?;
    let kind = fields.iter().find(|f| f.0 == 1).map_or(0, |f| f.1);
    match kind {
        // REGISTER → REGISTER_RESPONSE { status OK, ttl }
        0 => {
            let mut inner = Vec::new();
            put_varint_field(&mut inner, 1, 0);
            put_varint_field(&mut inner, 3, lies.ttl);
            let mut out = Vec::new();
            put_varint_field(&mut out, 1, 1);
            put_bytes_field(&mut out, 3, &inner);
            Some(out)
        }
        // DISCOVER → DISCOVER_RESPONSE { registrations, cookie, status OK }
        3 => {
            let discover = fields.iter().find(|f| f.0 == 5)?.2.clone();
            let ns = fields_of(&discover)?
                .into_iter()
                .find(|f| f.0 == 1)
                .map(|f| f.2)
                .unwrap_or_default();
            let mut inner = Vec::new();
            for _ in 0..lies.peers {
                let record = PeerRecord::new(&Keypair::generate_ed25519(), lies.addrs.clone())
                    .ok()?
                    .into_signed_envelope()
                    .into_protobuf_encoding();
                let mut reg = Vec::new();
                put_bytes_field(&mut reg, 1, &ns);
                put_bytes_field(&mut reg, 2, &record);
                put_varint_field(&mut reg, 3, lies.ttl);
                put_bytes_field(&mut inner, 1, &reg);
            }
            let mut cookie = 7u64.to_be_bytes().to_vec();
            cookie.extend_from_slice(&ns);
            put_bytes_field(&mut inner, 2, &cookie);
            put_varint_field(&mut inner, 3, 0);
            let mut out = Vec::new();
            put_varint_field(&mut out, 1, 4);
            put_bytes_field(&mut out, 6, &inner);
            Some(out)
        }
        _ => None,
    }
}

// ---- the wire ----

/// The raw bytes of one rendezvous message each way.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// The largest message read.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// (field, varint value, bytes) of each field of a message.
type Field = (u64, u64, Vec<u8>);

fn fields_of(mut buf: &[u8]) -> Option<Vec<Field>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        match tag & 7 {
            0 => out.push((tag >> 3, varint(&mut buf)?, Vec::new())),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let bytes = buf.get(..len)?.to_vec();
                buf = &buf[len..];
                out.push((tag >> 3, 0, bytes));
            }
            _ => return None,
        }
    }
    Some(out)
}

fn fields(message: &[u8]) -> Option<Vec<Field>> {
    fields_of(message)
}

async fn read_message<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = 0usize;
    for shift in (0..35).step_by(7) {
        let mut b = [0u8];
        io.read_exact(&mut b).await?;
        len |= usize::from(b[0] & 0x7f) << shift;
        if b[0] < 0x80 {
            break;
        }
    }
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too long",
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_message<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(bytes.len() + 5);
    put_varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    io.write_all(&out).await?;
    io.close().await
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_message(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_message(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_message(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_message(io, &res).await
    }
}
