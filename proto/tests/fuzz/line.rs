//! The line protocol's parser ([`palaver_proto::line::parse_line`]): what
//! a script, a bot or a person types on the node's stdin.

use palaver_proto::line::{Command, MAX_LINE_BYTES, parse_line};
use proptest::prelude::*;

use super::mutate::{config, mutated, noise};

/// Every parsed command prints as a line that parses back to it.
fn check(bytes: &[u8]) {
    if let Ok(command) = parse_line(bytes) {
        let line = command.to_string();
        assert_eq!(
            line.parse::<Command>().as_ref(),
            Ok(&command),
            "{:?} parsed, printed as {line:?}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(parse_line(line.as_bytes()).as_ref(), Ok(&command));
    }
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._-]{1,70}",
        "[a-z]{1,8}~[0-9a-f]{6,10}",
        "palaver-invite1-[A-Za-z0-9_-]{0,40}",
        "12D3KooW[1-9A-HJ-NP-Za-km-z]{44}",
        "/ip4/127\\.0\\.0\\.1/tcp/[0-9]{1,5}",
        "[0-9+-]{1,6}",
        "\\PC{1,12}",
        ".{1,8}",
    ]
}

fn space() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just(" ".to_owned()),
        1 => "[ \t]{1,3}",
        1 => prop::sample::select(vec![
            "\u{00A0}", "\u{2003}", "\u{0085}", "\u{3000}", "\u{000B}", "\u{000C}",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Lines shaped like commands: a known (or unknown) name, then words.
fn line() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "/nick", "/join", "/create", "/invite", "/kick", "/promote", "/revoke", "/leave", "/send",
        "/rooms", "/who", "/peers", "/history", "/forget", "/dial", "/id", "/quit", "//", "/", "",
        "/frob",
    ]);
    (
        name,
        prop::collection::vec((space(), word()), 0..4),
        prop::option::of(space()),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(name, words, tail, cr)| {
            let mut line = name.to_owned();
            for (space, word) in words {
                line.push_str(&space);
                line.push_str(&word);
            }
            if let Some(tail) = tail {
                line.push_str(&tail);
            }
            if cr {
                line.push('\r');
            }
            line
        })
}

proptest! {
    #![proptest_config(config(2048, "proptest-regressions/fuzz/line.txt"))]

    #[test]
    fn every_command_shaped_line_parses_to_a_command_that_prints_back(line in line()) {
        check(line.as_bytes());
    }

    #[test]
    fn a_mutated_command_line_never_panics_the_parser(
        bytes in mutated(line().prop_map(String::into_bytes)),
    ) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_line_parser(bytes in noise(MAX_LINE_BYTES + 2)) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics_the_line_parser(line in "\\PC{0,200}|.{0,200}") {
        check(line.as_bytes());
    }
}
