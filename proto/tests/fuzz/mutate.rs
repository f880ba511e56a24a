//! Mutations of valid encodings, and the test configuration. Mutating a
//! valid input reaches far deeper into a decoder than random bytes do: the
//! version, the kind and the lengths are right, and the one thing wrong is
//! somewhere inside.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence};

/// A run of `default_cases` cases, unless `PROPTEST_CASES` says otherwise.
/// A failing case's seed is kept in `proptest-regressions/MODULE.txt`
/// (beside `src/`, committed) and tried first on every later run.
pub fn config(default_cases: u32, regressions: &'static str) -> Config {
    let mut config = Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

/// One change to an encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips one bit of one byte.
    FlipBit(Index, u8),
    /// Sets one byte (length and count fields included) to any value.
    SetByte(Index, u8),
    /// Sets one byte to a value lengths and counts fear most.
    SetExtreme(Index, u8),
    /// Cuts the encoding short.
    Truncate(Index),
    /// Adds bytes at the end.
    Extend(Vec<u8>),
    /// Adds bytes somewhere inside.
    Insert(Index, Vec<u8>),
    /// Takes out a few bytes from inside.
    Remove(Index, usize),
    /// Copies a run of bytes over another place (a field moved).
    Copy(Index, Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        2 => (any::<Index>(), prop::sample::select(vec![0u8, 1, 0x7f, 0x80, 0xfe, 0xff]))
            .prop_map(|(i, b)| Mutation::SetExtreme(i, b)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<Index>(), any::<Index>(), 1usize..16)
            .prop_map(|(from, to, n)| Mutation::Copy(from, to, n)),
    ]
}

/// One to four mutations, applied in turn.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..=4)
}

/// `bytes` with `mutations` applied.
pub fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::FlipBit(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << bit,
            Mutation::SetByte(i, b) | Mutation::SetExtreme(i, b) if len > 0 => {
                bytes[i.index(len)] = *b;
            }
            Mutation::Truncate(i) if len > 0 => bytes.truncate(i.index(len)),
            Mutation::Extend(more) => bytes.extend_from_slice(more),
            Mutation::Insert(i, more) => {
                let at = i.index(len + 1);
                bytes.splice(at..at, more.iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let at = i.index(len);
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Copy(from, to, n) if len > 0 => {
                let (from, to) = (from.index(len), to.index(len));
                let n = (*n).min(len - from).min(len - to);
                bytes.copy_within(from..from + n, to);
            }
            _ => {}
        }
    }
    bytes
}

/// Valid encodings from `valid`, each with one to four mutations.
pub fn mutated(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (valid, mutations()).prop_map(|(bytes, m)| apply(bytes, &m))
}

/// Arbitrary bytes: short ones mostly, some as long as the largest message.
pub fn noise(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..=max),
    ]
}
