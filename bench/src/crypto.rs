//! The cryptography every chat message needs, measured alone on one core:
//! the floor that per-message latency and CPU figures are set beside.
//!
//! Sending a message costs one envelope signature and one age encryption
//! (the author stores it); receiving one costs one signature verification
//! and one age encryption (the receiver stores it).

use std::time::Instant;

use anyhow::Context;
use libp2p::identity::Keypair;
use palaver_proto::envelope::Envelope;
use palaver_proto::wire::{Body, Payload};
use serde::Serialize;

use crate::report::{Row, us};

/// Per-operation costs, microseconds of one core.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Figures {
    /// Bytes of the text the envelopes carry and of the whole envelope.
    pub text_bytes: usize,
    pub envelope_bytes: usize,
    /// Envelope::seal: encode and one ed25519 signature.
    pub sign_us: f64,
    /// Envelope::open: decode and one ed25519 verification.
    pub verify_us: f64,
    /// One age X25519 encryption of an envelope (what the store does per value).
    pub age_encrypt_us: f64,
    pub age_decrypt_us: f64,
}

impl Figures {
    /// The crypto an author spends on one message.
    pub fn send_us(&self) -> f64 {
        self.sign_us + self.age_encrypt_us
    }

    /// The crypto a member spends on one message it receives.
    pub fn receive_us(&self) -> f64 {
        self.verify_us + self.age_encrypt_us
    }
}

/// A chat envelope with a text of `text_bytes` bytes.
pub fn envelope(key: &Keypair, seq: u64, text_bytes: usize) -> anyhow::Result<Envelope> {
    let mut text = format!("{seq} ");
    while text.len() < text_bytes {
        text.push('x');
    }
    let payload = Payload {
        room: "bench".parse()?,
        nick: "bencher".parse()?,
        ts: 1_700_000_000_000 + seq,
        session: 1,
        seq,
        body: Body::Chat(text.parse()?),
    };
    Envelope::seal(key, payload).context("seal")
}

/// Measures each operation `n` times on this thread.
pub fn measure(text_bytes: usize, n: usize) -> anyhow::Result<Figures> {
    let n = n.max(1);
    let key = Keypair::generate_ed25519();
    let start = Instant::now();
    let envelopes = (0..n as u64)
        .map(|i| envelope(&key, i, text_bytes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sign_us = per_op_us(start, n);

    let start = Instant::now();
    for e in &envelopes {
        std::hint::black_box(Envelope::open(e.as_bytes()).context("open")?);
    }
    let verify_us = per_op_us(start, n);

    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let start = Instant::now();
    let sealed = envelopes
        .iter()
        .map(|e| age::encrypt(&recipient, e.as_bytes()).context("age encrypt"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let age_encrypt_us = per_op_us(start, n);

    let start = Instant::now();
    for c in &sealed {
        std::hint::black_box(age::decrypt(&identity, c).context("age decrypt")?);
    }
    let age_decrypt_us = per_op_us(start, n);

    Ok(Figures {
        text_bytes,
        envelope_bytes: envelopes.first().map_or(0, |e| e.as_bytes().len()),
        sign_us,
        verify_us,
        age_encrypt_us,
        age_decrypt_us,
    })
}

/// The same measurement on every core at once, averaged: what each
/// operation costs when all cores are busy, as they are at full throughput
/// (cores that share caches, or a host's CPUs, slow each other down).
pub fn measure_all_cores_busy(text_bytes: usize, n: usize) -> anyhow::Result<Figures> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let runs = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cores)
            .map(|_| scope.spawn(move || measure(text_bytes, n)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a crypto thread failed"))?
            })
            .collect::<anyhow::Result<Vec<Figures>>>()
    })?;
    let mean = |f: fn(&Figures) -> f64| runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64;
    Ok(Figures {
        text_bytes,
        envelope_bytes: runs.first().map_or(0, |f| f.envelope_bytes),
        sign_us: mean(|f| f.sign_us),
        verify_us: mean(|f| f.verify_us),
        age_encrypt_us: mean(|f| f.age_encrypt_us),
        age_decrypt_us: mean(|f| f.age_decrypt_us),
    })
}

fn per_op_us(start: Instant, n: usize) -> f64 {
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

pub fn rows(f: &Figures) -> Vec<Row> {
    let what = |op: &str| format!("{op}, {} B envelope, one core", f.envelope_bytes);
    vec![
        Row::new("crypto", what("sign (Envelope::seal)"), us(f.sign_us)),
        Row::new("crypto", what("verify (Envelope::open)"), us(f.verify_us)),
        Row::new("crypto", what("age encrypt"), us(f.age_encrypt_us)),
        Row::new("crypto", what("age decrypt"), us(f.age_decrypt_us)),
        Row::new(
            "crypto",
            "floor per message sent (sign + encrypt)",
            us(f.send_us()),
        ),
        Row::new(
            "crypto",
            "floor per message received (verify + encrypt)",
            us(f.receive_us()),
        ),
        Row::new(
            "crypto",
            "a gossipsub signature too (removed) would add per hop",
            us(f.sign_us + f.verify_us),
        )
        .against(
            format!(
                "{} per message sent + received now",
                us(f.send_us() + f.receive_us())
            ),
            (f.sign_us + f.verify_us) / (f.send_us() + f.receive_us()),
        ),
    ]
}

/// Rows for crypto measured with every core busy, beside one core alone.
pub fn busy_rows(busy: &Figures, alone: &Figures) -> Vec<Row> {
    let what = |op: &str| format!("{op}, {} B envelope, every core busy", busy.envelope_bytes);
    let row = |op: &str, b: f64, a: f64| {
        Row::new("crypto", what(op), us(b)).against(format!("one core alone {}", us(a)), b / a)
    };
    vec![
        row("sign", busy.sign_us, alone.sign_us),
        row("verify", busy.verify_us, alone.verify_us),
        row("age encrypt", busy.age_encrypt_us, alone.age_encrypt_us),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_texts_of_the_asked_size() {
        let key = Keypair::generate_ed25519();
        let e = envelope(&key, 7, 1024)
            .map(|e| e.as_bytes().len())
            .unwrap_or(0);
        assert!(e > 1024 && e < 1024 + 300, "{e}");
    }

    #[test]
    fn every_operation_costs_something() {
        let f = measure(64, 20).unwrap_or_default();
        assert!(f.sign_us > 0.0 && f.verify_us > 0.0 && f.age_encrypt_us > 0.0);
    }
}
