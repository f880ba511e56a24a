//! Store benchmark: encrypted message writes per second and the time to load
//! a 50-message `/history` page with 100,000 messages stored, each beside
//! plain RocksDB (same keys and values, no encryption, no signature check)
//! and a raw age encrypt/decrypt loop, all measured in the same run.
//!
//! `cargo bench -p palaver-node --bench store [-- --quick] [-- --json FILE]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at the first fault"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use palaver_node::store::{Keys, Store};
use palaver_proto::envelope::Envelope;
use palaver_proto::wire::{Body, Payload};

struct Args {
    stored: usize,
    writes: usize,
    pages: usize,
    json: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        stored: 100_000,
        writes: 20_000,
        pages: 300,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {
                a.stored = 5_000;
                a.writes = 2_000;
                a.pages = 50;
            }
            "--json" => a.json = it.next().map(PathBuf::from),
            _ => {}
        }
    }
    a
}

fn envelope(key: &Keypair, i: usize) -> Envelope {
    let payload = Payload {
        room: "bench".parse().unwrap(),
        nick: "bencher".parse().unwrap(),
        ts: 1_700_000_000_000 + i as u64,
        session: 1,
        seq: i as u64,
        body: Body::Chat(
            format!("message {i}: a line of chat about as long as a typical one, give or take")
                .parse()
                .unwrap(),
        ),
    };
    Envelope::seal(key, payload).unwrap()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palaver-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let args = args();
    let author = Keypair::generate_ed25519();
    let keys = Keys {
        keypair: Keypair::generate_ed25519(),
        storage: age::x25519::Identity::generate(),
    };
    let envelopes: Vec<Envelope> = (0..args.stored.max(args.writes))
        .map(|i| envelope(&author, i))
        .collect();
    let value_len = envelopes[0].as_bytes().len();

    // Signatures: sealing (one ed25519 signature) and opening (one verification) an envelope.
    let n = 5_000.min(envelopes.len());
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(envelope(&author, i));
    }
    let seal_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let start = Instant::now();
    for e in &envelopes[..n] {
        std::hint::black_box(Envelope::open(e.as_bytes()).unwrap());
    }
    let open_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;

    // Raw age: one X25519 encryption (and decryption) per value, one core.
    let recipient = keys.storage.to_public();
    let n = args.writes.min(5_000);
    let start = Instant::now();
    let sealed: Vec<Vec<u8>> = envelopes[..n]
        .iter()
        .map(|e| age::encrypt(&recipient, e.as_bytes()).unwrap())
        .collect();
    let age_encrypt = per_sec(n, start.elapsed());
    let start = Instant::now();
    for c in &sealed {
        age::decrypt(&keys.storage, c).unwrap();
    }
    let age_decrypt = per_sec(n, start.elapsed());

    // Writes, as the store thread does them: batches of 64 (a busy room) and of 1.
    let store_dir = temp("store");
    let store = Store::open(&store_dir, &keys).unwrap();
    let plain_dir = temp("plain");
    let plain = rocksdb::DB::open_default(&plain_dir).unwrap();
    let mut results = Vec::new();
    for batch in [64usize, 1] {
        let count = if batch == 1 {
            args.writes / 4
        } else {
            args.writes
        };
        // Messages not stored yet (batch 1 takes them from the end).
        let slice = if batch == 1 {
            &envelopes[envelopes.len() - count..]
        } else {
            &envelopes[..count]
        };
        let start = Instant::now();
        for chunk in slice.chunks(batch) {
            store.put_messages(chunk).unwrap();
        }
        let encrypted = per_sec(count, start.elapsed());
        let start = Instant::now();
        for (i, chunk) in slice.chunks(batch).enumerate() {
            let mut wb = rocksdb::WriteBatch::default();
            for (j, e) in chunk.iter().enumerate() {
                let key = format!("b{batch}-{i:08}-{j:03}");
                wb.put(key.as_bytes(), e.as_bytes());
            }
            plain.write(wb).unwrap();
        }
        let raw = per_sec(count, start.elapsed());
        results.push((batch, encrypted, raw));
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&store_dir);

    // A history page with many messages stored.
    let page_dir = temp("page");
    let store = Store::open(&page_dir, &keys).unwrap();
    for chunk in envelopes[..args.stored].chunks(256) {
        store.put_messages(chunk).unwrap();
    }
    let room = "bench".parse().unwrap();
    let mut samples = Vec::with_capacity(args.pages);
    for _ in 0..args.pages {
        let start = Instant::now();
        let page = store.latest(&room, 50).unwrap();
        samples.push(start.elapsed());
        assert_eq!(page.messages.len(), 50);
    }
    let page_p50 = percentile(&mut samples, 0.5);
    let page_p99 = percentile(&mut samples, 0.99);
    let mut raw_samples = Vec::with_capacity(args.pages);
    for _ in 0..args.pages {
        let start = Instant::now();
        let rows: Vec<_> = plain
            .iterator(rocksdb::IteratorMode::End)
            .take(50)
            .map(|r| r.unwrap())
            .collect();
        raw_samples.push(start.elapsed());
        assert_eq!(rows.len(), 50);
    }
    let raw_page_p50 = percentile(&mut raw_samples, 0.5);
    let mut decrypt_samples = Vec::with_capacity(args.pages.min(100));
    for _ in 0..args.pages.min(100) {
        let start = Instant::now();
        for c in sealed.iter().take(50) {
            age::decrypt(&keys.storage, c).unwrap();
        }
        decrypt_samples.push(start.elapsed());
    }
    let decrypt50_p50 = percentile(&mut decrypt_samples, 0.5);
    drop(store);
    drop(plain);
    let _ = std::fs::remove_dir_all(&page_dir);
    let _ = std::fs::remove_dir_all(&plain_dir);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("store benchmark ({cores} cores, values of {value_len} bytes)");
    println!("  envelope, one core: seal (sign) {seal_us:.1} us, open (verify) {open_us:.1} us");
    println!("  raw age, one core: encrypt {age_encrypt:.0}/s, decrypt {age_decrypt:.0}/s");
    for (batch, encrypted, raw) in &results {
        println!(
            "  writes, batches of {batch:>2}: encrypted store {encrypted:.0}/s; plain RocksDB {raw:.0}/s ({:.1}x); vs raw age encrypt {:.2}x",
            raw / encrypted,
            encrypted / age_encrypt
        );
    }
    println!(
        "  50-message page, {} stored: p50 {:.2} ms, p99 {:.2} ms; plain RocksDB p50 {:.3} ms; 50 raw age decrypts (one core) p50 {:.2} ms",
        args.stored,
        page_p50.as_secs_f64() * 1e3,
        page_p99.as_secs_f64() * 1e3,
        raw_page_p50.as_secs_f64() * 1e3,
        decrypt50_p50.as_secs_f64() * 1e3,
    );
    if let Some(path) = args.json {
        let writes: Vec<String> = results
            .iter()
            .map(|(b, e, r)| {
                format!(
                    "{{\"batch\":{b},\"encrypted_per_s\":{e:.0},\"plain_rocksdb_per_s\":{r:.0}}}"
                )
            })
            .collect();
        let json = format!(
            "{{\"cores\":{cores},\"value_bytes\":{value_len},\"seal_us\":{seal_us:.2},\"open_us\":{open_us:.2},\"age_encrypt_per_s\":{age_encrypt:.0},\"age_decrypt_per_s\":{age_decrypt:.0},\"writes\":[{}],\"page\":{{\"stored\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"plain_rocksdb_p50_ms\":{:.4},\"raw_age_decrypt_50_p50_ms\":{:.3}}}}}\n",
            writes.join(","),
            args.stored,
            page_p50.as_secs_f64() * 1e3,
            page_p99.as_secs_f64() * 1e3,
            raw_page_p50.as_secs_f64() * 1e3,
            decrypt50_p50.as_secs_f64() * 1e3,
        );
        std::fs::write(path, json).unwrap();
    }
}
