//! Property tests of every decoder that reads bytes from another peer, a
//! pasted code or stdin (issue 13): none panics on arbitrary bytes or on
//! mutations of valid encodings (bit flips, changed bytes, cuts, extensions,
//! insertions, deletions); each gives back what was encoded; and whatever it
//! accepts re-encodes to the very bytes it read (one encoding per value), so
//! it decodes to the same value again.
//!
//! Case counts are kept small so that `scripts/test` stays fast; the
//! standard `PROPTEST_CASES` variable raises them (`scripts/fuzz` runs
//! 100 000 cases of each).
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod fuzz {
    pub mod generate;
    pub mod mutate;

    mod envelope;
    mod history;
    mod line;
    mod names;
    mod private;
    mod wire;
}
