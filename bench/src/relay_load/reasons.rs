//! Why things failed, counted by reason (a bounded number of distinct ones)
//! for the figures and for error messages.

use std::collections::BTreeMap;

/// Most distinct failure reasons kept.
const MAX_REASONS: usize = 24;

/// Failure reasons and how often each came.
#[derive(Debug, Default)]
pub(super) struct Reasons(BTreeMap<String, usize>);

impl Reasons {
    pub(super) fn add(&mut self, why: impl Into<String>) {
        let why = why.into();
        if self.0.len() < MAX_REASONS || self.0.contains_key(&why) {
            *self.0.entry(why).or_default() += 1;
        }
    }

    pub(super) fn merge(&mut self, other: &Reasons) {
        for (why, n) in &other.0 {
            if self.0.len() < MAX_REASONS || self.0.contains_key(why) {
                *self.0.entry(why.clone()).or_default() += n;
            }
        }
    }

    pub(super) fn list(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(why, n)| format!("{n}× {why}"))
            .collect()
    }
}
