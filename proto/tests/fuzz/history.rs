//! Catch-up messages ([`palaver_proto::history`]) and the reconciliation
//! rounds inside them ([`palaver_proto::history::reconcile`]).

use std::collections::BTreeSet;

use palaver_proto::history::reconcile::{Items, NEGENTROPY_VERSION};
use palaver_proto::history::{
    MAX_RECONCILE_BYTES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, MessageRef, Request, Response,
};
use proptest::prelude::*;

use super::generate;
use super::mutate::{apply, config, mutated, mutations, noise};

fn check_request(bytes: &[u8]) {
    if let Ok(r) = Request::decode(bytes) {
        assert_eq!(r.encode(), bytes, "a request accepted in another encoding");
        assert_eq!(Request::decode(&r.encode()), Ok(r));
    }
}

fn check_response(bytes: &[u8]) {
    if let Ok(r) = Response::decode(bytes) {
        assert_eq!(r.encode(), bytes, "a response accepted in another encoding");
        assert_eq!(Response::decode(&r.encode()), Ok(r));
    }
}

/// Sets of up to `max` messages, with timestamps close enough to collide.
fn refs(max: usize) -> impl Strategy<Value = BTreeSet<MessageRef>> {
    prop::collection::btree_set(
        (0u64..64, any::<[u8; 16]>()).prop_map(|(ts, id)| MessageRef { ts, id }),
        0..max,
    )
}

proptest! {
    #![proptest_config(config(512, "proptest-regressions/fuzz/history.txt"))]

    #[test]
    fn every_request_decodes_to_itself(r in generate::history_request()) {
        let bytes = r.encode();
        prop_assert!(bytes.len() <= MAX_REQUEST_BYTES);
        prop_assert_eq!(Request::decode(&bytes), Ok(r));
    }

    #[test]
    fn every_response_decodes_to_itself(r in generate::history_response()) {
        let bytes = r.encode();
        prop_assert!(bytes.len() <= MAX_RESPONSE_BYTES);
        prop_assert_eq!(Response::decode(&bytes), Ok(r));
    }

    #[test]
    fn a_mutated_request_never_panics_and_decodes_only_as_its_own_encoding(
        bytes in mutated(generate::history_request().prop_map(|r| r.encode())),
    ) {
        check_request(&bytes);
    }

    #[test]
    fn a_mutated_response_never_panics_and_decodes_only_as_its_own_encoding(
        bytes in mutated(generate::history_response().prop_map(|r| r.encode())),
    ) {
        check_response(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_catch_up_decoders(bytes in noise(4096)) {
        check_request(&bytes);
        check_response(&bytes);
    }
}

proptest! {
    #![proptest_config(config(64, "proptest-regressions/fuzz/history.txt"))]

    /// Whatever two members hold, the rounds end, each frame within its
    /// limit, and the asker learns exactly what it lacks.
    #[test]
    fn reconciliation_tells_the_asker_exactly_what_it_lacks(
        shared in refs(80),
        mine in refs(40),
        theirs in refs(40),
    ) {
        let asker = Items::from_refs(shared.iter().chain(&mine).copied());
        let answerer = Items::from_refs(shared.iter().chain(&theirs).copied());
        let mut message = asker.initiate().unwrap();
        let mut need = BTreeSet::new();
        for _ in 0..100 {
            prop_assert!(message.len() <= MAX_RECONCILE_BYTES);
            let answer = answerer.answer(&message).unwrap();
            prop_assert!(answer.len() <= MAX_RECONCILE_BYTES);
            let step = asker.step(&answer).unwrap();
            need.extend(step.need);
            match step.next {
                Some(next) => message = next,
                None => break,
            }
        }
        let lacks: BTreeSet<MessageRef> = answerer
            .refs()
            .filter(|r| !asker.contains(r))
            .collect();
        prop_assert_eq!(need, lacks);
    }

    /// A lying peer's rounds, made from genuine ones, never panic either side.
    #[test]
    fn mutated_reconciliation_rounds_never_panic_either_side(
        asker in refs(80),
        answerer in refs(80),
        first in mutations(),
        second in mutations(),
    ) {
        let asker = Items::from_refs(asker);
        let answerer = Items::from_refs(answerer);
        let message = asker.initiate().unwrap();
        let _ = answerer.answer(&apply(message.clone(), &first));
        if let Ok(answer) = answerer.answer(&message)
            && let Ok(step) = asker.step(&apply(answer, &second))
        {
            for r in &step.need {
                prop_assert!(!asker.contains(r));
            }
        }
    }

    #[test]
    fn arbitrary_reconciliation_rounds_never_panic_either_side(
        set in refs(80),
        mut bytes in noise(2048),
    ) {
        let set = Items::from_refs(set);
        if let Some(b) = bytes.first_mut() {
            *b = NEGENTROPY_VERSION;
        }
        let _ = set.answer(&bytes);
        let _ = set.step(&bytes);
    }
}
