//! A running node fed thousands of malformed lines answers each with one
//! `error` and keeps delivering.

use palaver_testkit::{Node, PROMPT};

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One line (without its newline) that no node may accept, and the error
/// code it must get.
fn bad_line(rng: &mut XorShift) -> (Vec<u8>, &'static str) {
    // Characters outside the room alphabet, and no white space.
    let junk = |rng: &mut XorShift, max: usize| -> String {
        const CHARS: &[u8] = b"!#$%&*+/:;<=>?@[]^`{|}~,";
        let n = 1 + rng.below(max);
        (0..n)
            .map(|_| char::from(CHARS[rng.below(CHARS.len())]))
            .collect()
    };
    match rng.below(16) {
        0 => (b"".to_vec(), "empty_line"),
        1 => (
            format!(
                "/{}",
                ["frob", "JOIN", "joinx", "q", "sendto", "who?"][rng.below(6)]
            )
            .into_bytes(),
            "unknown_command",
        ),
        2 => (format!("/join {}", junk(rng, 10)).into_bytes(), "bad_room"),
        3 => (
            format!("/join {}", "r".repeat(65 + rng.below(100))).into_bytes(),
            "bad_room",
        ),
        4 => (
            format!("/nick {}", "n".repeat(33 + rng.below(50))).into_bytes(),
            "bad_nick",
        ),
        5 => {
            let mut l = b"hello ".to_vec();
            l.extend(rng.bytes(8).iter().map(|b| b | 0x80)); // lone continuation/lead bytes
            l.push(0xff);
            (l, "invalid_utf8")
        }
        6 => {
            let mut l = b"/send lobby a".to_vec();
            l.push(0);
            l.extend_from_slice(b"b");
            (l, "nul_byte")
        }
        7 => (
            vec![b'x'; 16 * 1024 + 1 + rng.below(20_000)],
            "line_too_long",
        ),
        8 => (
            format!("/send lobby {}", "y".repeat(4097 + rng.below(1000))).into_bytes(),
            "text_too_long",
        ),
        9 => (
            format!("/send lobby bell\u{7} {}", rng.next()).into_bytes(),
            "bad_text",
        ),
        10 => (
            format!(
                "/history lobby {}",
                ["0", "-1", "1001", "many", "99999999999"][rng.below(5)]
            )
            .into_bytes(),
            "bad_count",
        ),
        11 => (
            [
                "/join",
                "/send",
                "/send lobby",
                "/nick",
                "/dial",
                "/history",
            ][rng.below(6)]
            .as_bytes()
            .to_vec(),
            "missing_argument",
        ),
        12 => (
            [
                "/rooms x",
                "/peers now",
                "/id me",
                "/quit now",
                "/join a b",
                "/leave a b",
            ][rng.below(6)]
            .as_bytes()
            .to_vec(),
            "unexpected_argument",
        ),
        13 => (
            format!("/dial x{}", junk(rng, 30)).into_bytes(),
            "bad_multiaddr",
        ),
        14 => (
            format!("/send notjoined{} hi", rng.below(1000)).into_bytes(),
            "not_joined",
        ),
        _ => (format!("/who {}", junk(rng, 5)).into_bytes(), "bad_room"),
    }
}

#[test]
fn thousands_of_malformed_lines_each_get_one_error_and_the_node_still_delivers() {
    let mut a = Node::start("malformed", "a", &[]);
    let mut b = Node::start("malformed", "b", &["--bootstrap", &a.addr("quic-v1")]);
    for n in [&mut a, &mut b] {
        assert_eq!(n.command("/join lobby")["event"], "ok");
    }
    a.wait_joined("lobby", &b.peer_id.clone());
    b.wait_joined("lobby", &a.peer_id.clone());

    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    let lines: Vec<(Vec<u8>, &str)> = (0..3000).map(|_| bad_line(&mut rng)).collect();
    // Written from a second thread: the node reads and answers concurrently.
    let mut input = Vec::new();
    for (line, _) in &lines {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    input.extend_from_slice(b"still alive\n");
    a.write_raw(&input);

    for (i, (line, code)) in lines.iter().enumerate() {
        let reply = a.reply();
        assert_eq!(
            reply["event"],
            "error",
            "line {i} {:?}: {reply}",
            String::from_utf8_lossy(&line[..line.len().min(60)])
        );
        assert_eq!(
            reply["code"],
            *code,
            "line {i} {:?}: {reply}",
            String::from_utf8_lossy(&line[..line.len().min(60)])
        );
        let message = reply["message"].as_str().unwrap();
        assert!(!message.is_empty() && message.len() < 1000, "{reply}");
    }
    assert_eq!(a.reply()["event"], "sent");
    b.wait_for("the valid message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "still alive"
    });
    assert!(
        b.messages("lobby").len() == 1,
        "only the valid line was sent"
    );
    // Still serving commands afterwards.
    assert_eq!(a.command("/rooms")["rooms"], serde_json::json!(["lobby"]));
}

#[test]
fn a_line_cut_off_by_end_of_input_still_gets_its_reply() {
    let mut a = Node::start("eof", "a", &[]);
    a.write_raw(b"/join lobby\n/bogus");
    assert_eq!(a.reply()["event"], "ok");
    let status = a.close_and_wait();
    assert!(status.success());
    assert_eq!(a.reply()["code"], "unknown_command");
}
