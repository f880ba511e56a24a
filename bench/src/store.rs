//! The encrypted history store, driven directly through `Store` on the same
//! RocksDB build and options the node uses: encrypted message writes per
//! second and a 50-message `/history` page with many messages stored, each
//! beside plain RocksDB (same values, comparable keys, no encryption) and a
//! raw age loop, all in the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use libp2p::identity::Keypair;
use palaver_node::store::{Keys, Store};
use palaver_proto::envelope::Envelope;
use serde::Serialize;

use crate::crypto;
use crate::report::{Row, ms, per_s};
use crate::stats::{Latency, ratio};

#[derive(Debug, Clone, Serialize)]
pub struct Writes {
    pub batch: usize,
    pub encrypted_per_s: f64,
    pub plain_rocksdb_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub value_bytes: usize,
    pub age_encrypt_per_s: f64,
    pub writes: Vec<Writes>,
    pub stored: usize,
    pub page: Latency,
    pub plain_rocksdb_page: Latency,
    /// 50 raw age decryptions, one core.
    pub raw_age_decrypt_50: Latency,
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

pub fn run(work: &Path, stored: usize, writes: usize, pages: usize) -> anyhow::Result<Figures> {
    let author = Keypair::generate_ed25519();
    let keys = Keys {
        keypair: Keypair::generate_ed25519(),
        storage: age::x25519::Identity::generate(),
    };
    let envelopes = (0..stored.max(writes) as u64)
        .map(|i| crypto::envelope(&author, i, 75))
        .collect::<anyhow::Result<Vec<Envelope>>>()?;
    let value_bytes = envelopes.first().map_or(0, |e| e.as_bytes().len());

    let recipient = keys.storage.to_public();
    let n = writes.min(5_000);
    let start = Instant::now();
    let sealed = envelopes[..n]
        .iter()
        .map(|e| age::encrypt(&recipient, e.as_bytes()).context("age encrypt"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let age_encrypt_per_s = per_sec(n, start.elapsed());

    let store_dir = work.join("store-writes");
    let plain_dir = work.join("store-plain");
    for d in [&store_dir, &plain_dir] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d)?;
    }
    let store = Store::open(&store_dir, &keys)?;
    let plain = rocksdb::DB::open_default(&plain_dir)?;
    let mut results = Vec::new();
    // As the store thread writes: batches of 64 (a busy room) and of 1 (a quiet one).
    for batch in [64usize, 1] {
        let count = if batch == 1 { writes / 4 } else { writes };
        let slice = if batch == 1 {
            &envelopes[envelopes.len() - count..]
        } else {
            &envelopes[..count]
        };
        let start = Instant::now();
        for chunk in slice.chunks(batch) {
            store.put_messages(chunk)?;
        }
        let encrypted_per_s = per_sec(count, start.elapsed());
        let start = Instant::now();
        for (i, chunk) in slice.chunks(batch).enumerate() {
            let mut wb = rocksdb::WriteBatch::default();
            for (j, e) in chunk.iter().enumerate() {
                wb.put(format!("b{batch}-{i:08}-{j:03}").as_bytes(), e.as_bytes());
            }
            plain.write(wb)?;
        }
        results.push(Writes {
            batch,
            encrypted_per_s,
            plain_rocksdb_per_s: per_sec(count, start.elapsed()),
        });
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&store_dir);

    let page_dir = work.join("store-page");
    let _ = std::fs::remove_dir_all(&page_dir);
    std::fs::create_dir_all(&page_dir)?;
    let store = Store::open(&page_dir, &keys)?;
    for chunk in envelopes[..stored].chunks(256) {
        store.put_messages(chunk)?;
    }
    let room = "bench".parse()?;
    let mut samples = Vec::with_capacity(pages);
    for _ in 0..pages {
        let start = Instant::now();
        let page = store.latest(&room, 50, u64::MAX)?;
        samples.push(start.elapsed());
        if page.messages.len() != 50 || page.corrupt != 0 {
            bail!(
                "a page held {} messages, {} corrupt",
                page.messages.len(),
                page.corrupt
            );
        }
    }
    let mut plain_samples = Vec::with_capacity(pages);
    for _ in 0..pages {
        let start = Instant::now();
        let rows = plain
            .iterator(rocksdb::IteratorMode::End)
            .take(50)
            .collect::<Result<Vec<_>, _>>()?;
        plain_samples.push(start.elapsed());
        if rows.len() != 50 {
            bail!("plain RocksDB gave {} rows", rows.len());
        }
    }
    let mut decrypt_samples = Vec::new();
    for _ in 0..pages.min(100) {
        let start = Instant::now();
        for c in sealed.iter().take(50) {
            std::hint::black_box(age::decrypt(&keys.storage, c).context("age decrypt")?);
        }
        decrypt_samples.push(start.elapsed());
    }
    drop(store);
    drop(plain);
    let _ = std::fs::remove_dir_all(&page_dir);
    let _ = std::fs::remove_dir_all(&plain_dir);
    Ok(Figures {
        value_bytes,
        age_encrypt_per_s,
        writes: results,
        stored,
        page: Latency::of(&samples),
        plain_rocksdb_page: Latency::of(&plain_samples),
        raw_age_decrypt_50: Latency::of(&decrypt_samples),
    })
}

pub fn rows(f: &Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    for w in &f.writes {
        let what = if w.batch == 1 {
            "encrypted writes, one message per write (a quiet room)".to_owned()
        } else {
            format!("encrypted writes, batches of {} (a busy room)", w.batch)
        };
        rows.push(
            Row::new(
                "store",
                format!("{what}, {} B values", f.value_bytes),
                per_s(w.encrypted_per_s, "msg"),
            )
            .against(
                format!(
                    "plain RocksDB {}; raw age, one core {}",
                    per_s(w.plain_rocksdb_per_s, "msg"),
                    per_s(f.age_encrypt_per_s, "enc")
                ),
                ratio(w.encrypted_per_s, w.plain_rocksdb_per_s),
            )
            .target("≥ 12,000/s", w.encrypted_per_s >= 12_000.0),
        );
    }
    rows.push(
        Row::new(
            "store",
            format!("/history page of 50, {} stored, p50 / p99", f.stored),
            format!("{} / {}", ms(f.page.p50_ms), ms(f.page.p99_ms)),
        )
        .against(
            format!(
                "plain RocksDB {}; 50 raw age decrypts, one core {}",
                ms(f.plain_rocksdb_page.p50_ms),
                ms(f.raw_age_decrypt_50.p50_ms)
            ),
            ratio(f.page.p50_ms, f.raw_age_decrypt_50.p50_ms),
        )
        .target("≤ 5 ms", f.page.p99_ms <= 5.0),
    );
    rows
}
