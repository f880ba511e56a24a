//! The client's own share of a discover, timed in this process: a discover
//! answer's signed peer records decoded and verified, shown beside the
//! discover's time so that the relay's part can be told from the client's.

use std::time::Instant;

use libp2p::{Multiaddr, PeerId};

use crate::stats::Latency;

/// The floor of a discover answer of `n` registrations on the client: decode
/// and verify `n` signed peer records (each with a relayed address, as the
/// load's are), as libp2p's rendezvous codec does for every answer.
pub(super) fn verify_floor(n: usize, rounds: usize) -> anyhow::Result<Latency> {
    let relay = PeerId::random();
    let records = (0..n)
        .map(|_| {
            let key = libp2p::identity::Keypair::generate_ed25519();
            let addr: Multiaddr = format!(
                "/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{}",
                key.public().to_peer_id()
            )
            .parse()?;
            let record = libp2p::core::PeerRecord::new(&key, vec![addr])?;
            Ok(record.into_signed_envelope().into_protobuf_encoding())
        })
        .collect::<anyhow::Result<Vec<Vec<u8>>>>()?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let began = Instant::now();
        for bytes in &records {
            let envelope = libp2p::core::SignedEnvelope::from_protobuf_encoding(bytes)?;
            let record = libp2p::core::PeerRecord::from_signed_envelope(envelope)?;
            std::hint::black_box(record);
        }
        times.push(began.elapsed());
    }
    Ok(Latency::of(&times))
}
