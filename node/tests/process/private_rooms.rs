//! Private rooms between real node processes: created, joined by an invite
//! code alone, chatted in, kept apart from a public room of the same name,
//! a member removed, and a connected stranger that learns nothing.

use std::sync::mpsc as std_mpsc;

use futures::StreamExt;
use libp2p::gossipsub;
use libp2p::identity::Keypair;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use palaver_proto::history::{Refusal, Request, Response};
use palaver_testkit::raw_peer::{RawBehaviourEvent, RawPeerOptions, raw_swarm};
use palaver_testkit::{Node, PROMPT};
use serde_json::Value;
use tokio::sync::mpsc;

/// `/create NAME` on `node`: the room's handle and its first invite code.
fn create(node: &mut Node, name: &str) -> (String, String) {
    let reply = node.command(&format!("/create {name}"));
    assert_eq!(reply["event"], "invite", "{reply}");
    let room = reply["room"].as_str().unwrap().to_owned();
    assert!(room.starts_with(&format!("{name}~")), "{room}");
    (room, reply["code"].as_str().unwrap().to_owned())
}

/// `/invite ROOM` on `node`: a fresh code.
fn invite(node: &mut Node, room: &str) -> String {
    let reply = node.command(&format!("/invite {room}"));
    assert_eq!(reply["event"], "invite", "{reply}");
    assert_eq!(reply["room"], room);
    reply["code"].as_str().unwrap().to_owned()
}

fn join_with(node: &mut Node, code: &str) -> Value {
    node.command(&format!("/join {code}"))
}

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["event"], "error", "{reply}");
    reply["code"].as_str().unwrap()
}

/// Waits for `text` in `room` on `node`, from `from`.
fn wait_message(node: &mut Node, room: &str, from: &str, text: &str) -> Value {
    let what = format!("{text:?} in {room}");
    node.wait_for(&what, PROMPT, |v| {
        v["event"] == "message" && v["room"] == room && v["text"] == text && v["from"] == from
    })
}

#[test]
fn a_private_room_is_joined_by_its_code_alone_and_chatted_in_apart_from_a_public_room_of_its_name()
{
    let test = "private-chat";
    let mut alice = Node::start(test, "alice", &[]);
    // Bob knows nobody: no --bootstrap, no mDNS. The code is all he has.
    let mut bob = Node::start(test, "bob", &[]);
    let (room, code) = create(&mut alice, "team");

    assert_eq!(
        join_with(&mut bob, &code),
        serde_json::json!({"event": "ok", "cmd": "join"})
    );
    alice.wait_joined(&room, &bob.peer_id);
    bob.wait_joined(&room, &alice.peer_id);

    // A public room named like it, which both join too.
    for n in [&mut alice, &mut bob] {
        assert_eq!(n.command("/join team")["event"], "ok");
    }
    alice.wait_joined("team", &bob.peer_id);

    assert_eq!(
        alice.command(&format!("/send {room} secret plans"))["event"],
        "sent"
    );
    assert_eq!(
        bob.command(&format!("/send {room} agreed"))["event"],
        "sent"
    );
    assert_eq!(bob.command("/send team hello everyone")["event"], "sent");
    let got = wait_message(&mut bob, &room, &alice.peer_id, "secret plans");
    assert_eq!(got["nick"], "alice");
    assert_eq!(got["replay"], false);
    wait_message(&mut alice, &room, &bob.peer_id, "agreed");
    wait_message(&mut alice, "team", &bob.peer_id, "hello everyone");
    // Nothing crossed between the two rooms.
    for n in [&alice, &bob] {
        for m in n.messages("team") {
            assert_ne!(m["text"], "secret plans", "{}: {m}", n.name);
            assert_ne!(m["text"], "agreed", "{}: {m}", n.name);
        }
        for m in n.messages(&room) {
            assert_ne!(m["text"], "hello everyone", "{}: {m}", n.name);
        }
    }

    // /rooms, /id and /who say which rooms are private.
    let rooms = bob.command("/rooms");
    assert_eq!(rooms["private"], serde_json::json!([room]), "{rooms}");
    assert!(
        rooms["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "team")
    );
    let id = alice.command("/id");
    assert_eq!(id["private"], serde_json::json!([room]), "{id}");
    let who = alice.command(&format!("/who {room}"));
    let mut members: Vec<&str> = who["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["peer_id"].as_str().unwrap())
        .collect();
    members.sort_unstable();
    let mut expected = [alice.peer_id.as_str(), bob.peer_id.as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected, "{who}");

    // /history of the private room holds its messages only.
    let history = bob.command(&format!("/history {room}"));
    let mut texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    texts.sort_unstable();
    assert_eq!(texts, ["agreed", "secret plans"], "{history}");

    // The code admitted one person, once.
    let mut carol = Node::start(test, "carol", &[]);
    assert_eq!(error_code(&join_with(&mut carol, &code)), "invite_used");
    // A handle is no way in.
    assert_eq!(
        error_code(&carol.command(&format!("/join {room}"))),
        "needs_invite"
    );
}

#[test]
fn invite_codes_that_are_malformed_revoked_or_unreachable_are_refused_with_their_own_codes() {
    let test = "private-misuse";
    let mut alice = Node::start(test, "alice", &[]);
    let mut bob = Node::start(test, "bob", &[]);
    let (room, code) = create(&mut alice, "club");

    // Cut, altered and foreign codes.
    let cut = &code[..code.len() - 10];
    assert_eq!(error_code(&join_with(&mut bob, cut)), "bad_invite");
    // A character of the token changed: the member knows no such invite.
    let mut altered = code.clone().into_bytes();
    let at = "palaver-invite1-".len() + 30;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(error_code(&join_with(&mut bob, &altered)), "invite_unknown");
    assert_eq!(
        error_code(&join_with(&mut bob, "palaver-invite1-!!!")),
        "bad_invite"
    );

    // Revoked before use.
    assert_eq!(alice.command(&format!("/revoke {code}"))["event"], "ok");
    assert_eq!(error_code(&join_with(&mut bob, &code)), "invite_revoked");
    // Revoking what is not this node's.
    assert_eq!(
        error_code(&bob.command(&format!("/revoke {code}"))),
        "invite_unknown"
    );

    // /invite and /kick of a public room, /kick by a non-admin.
    assert_eq!(alice.command("/join lobby")["event"], "ok");
    assert_eq!(error_code(&alice.command("/invite lobby")), "not_private");
    let fresh = invite(&mut alice, &room);
    assert_eq!(join_with(&mut bob, &fresh)["event"], "ok");
    let kick = bob.command(&format!("/kick {room} {}", alice.peer_id));
    assert_eq!(error_code(&kick), "not_admin");
    let stranger = PeerId::random();
    assert_eq!(
        error_code(&alice.command(&format!("/kick {room} {stranger}"))),
        "not_a_member"
    );

    // A code whose member is gone.
    let last_code = invite(&mut alice, &room);
    assert_eq!(alice.command("/quit")["event"], "ok");
    alice.wait_exit();
    let mut carol = Node::start(test, "carol", &[]);
    assert_eq!(
        error_code(&join_with(&mut carol, &last_code)),
        "invite_unreachable"
    );
}

#[test]
fn a_removed_member_is_told_reads_nothing_after_and_its_codes_do_not_bring_it_back() {
    let test = "private-kick";
    let mut alice = Node::start(test, "alice", &[]);
    let mut bob = Node::start(test, "bob", &[]);
    let mut carol = Node::start(test, "carol", &[]);
    let (room, code) = create(&mut alice, "crew");
    assert_eq!(join_with(&mut bob, &code)["event"], "ok");
    let for_carol = invite(&mut alice, &room);
    assert_eq!(join_with(&mut carol, &for_carol)["event"], "ok");
    // A spare code carol got before she is removed.
    let spare = invite(&mut alice, &room);
    let ids = [
        alice.peer_id.clone(),
        bob.peer_id.clone(),
        carol.peer_id.clone(),
    ];
    for n in [&mut alice, &mut bob, &mut carol] {
        let me = n.peer_id.clone();
        for other in ids.iter().filter(|i| **i != me) {
            n.wait_joined(&room, other);
        }
    }
    assert_eq!(
        carol.command(&format!("/send {room} before"))["event"],
        "sent"
    );
    wait_message(&mut bob, &room, &carol.peer_id, "before");

    let kick = alice.command(&format!("/kick {room} {}", carol.peer_id));
    assert_eq!(kick, serde_json::json!({"event": "ok", "cmd": "kick"}));
    let carol_id = carol.peer_id.clone();
    carol.wait_for("carol told she is removed", PROMPT, |v| {
        v["event"] == "left"
            && v["room"] == room
            && v["peer_id"] == carol_id
            && v["reason"] == "removed"
    });
    bob.wait_for("bob told carol is removed", PROMPT, |v| {
        v["event"] == "left"
            && v["room"] == room
            && v["peer_id"] == carol_id
            && v["reason"] == "removed"
    });
    assert_eq!(carol.command("/rooms")["rooms"], serde_json::json!([]));

    // After the new key reached bob, alice speaks; bob reads it, carol not.
    assert_eq!(
        alice.command(&format!("/send {room} after"))["event"],
        "sent"
    );
    wait_message(&mut bob, &room, &alice.peer_id, "after");
    assert_eq!(
        bob.command(&format!("/send {room} after too"))["event"],
        "sent"
    );
    wait_message(&mut alice, &room, &bob.peer_id, "after too");
    carol.drain();
    assert!(
        carol
            .messages(&room)
            .iter()
            .all(|m| m["text"] != "after" && m["text"] != "after too"),
        "{:#?}",
        &carol.messages(&room)
    );

    // Her old codes do not bring her back.
    assert_eq!(
        error_code(&join_with(&mut carol, &for_carol)),
        "invite_used"
    );
    assert_eq!(error_code(&join_with(&mut carol, &spare)), "invite_revoked");
}

#[test]
fn a_private_room_comes_back_after_a_restart_and_catches_up_what_was_missed() {
    let test = "private-restart";
    let mut alice = Node::start(test, "alice", &[]);
    let mut bob = Node::start(test, "bob", &[]);
    let (room, code) = create(&mut alice, "den");
    assert_eq!(join_with(&mut bob, &code)["event"], "ok");
    alice.wait_joined(&room, &bob.peer_id);
    assert_eq!(bob.command("/quit")["event"], "ok");
    bob.wait_exit();
    assert_eq!(
        alice.command(&format!("/send {room} while you were out"))["event"],
        "sent"
    );

    let data_dir = bob.data_dir.clone();
    let alice_addr = alice.addr("quic-v1");
    let mut bob = Node::spawn(
        "bob",
        data_dir,
        &[
            "--json",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--bootstrap",
            &alice_addr,
        ],
    );
    let ready = bob.wait_for("ready", PROMPT, |v| v["event"] == "ready");
    assert_eq!(ready["rooms"], serde_json::json!([room]), "{ready}");
    let got = wait_message(&mut bob, &room, &alice.peer_id, "while you were out");
    assert_eq!(got["replay"], true);
    assert_eq!(bob.command(&format!("/send {room} back"))["event"], "sent");
    wait_message(&mut alice, &room, &bob.peer_id, "back");
}

// ---- a stranger connected to the members ----

/// What a stranger saw.
#[derive(Debug, Default)]
struct Seen {
    topics: Vec<String>,
    data: Vec<Vec<u8>>,
    /// The answers to its catch-up requests, by room asked.
    answers: Vec<(String, String)>,
}

/// A raw peer that dials `addrs`, listens on every topic it sees anyone
/// subscribe to, and when told asks `node` for the history of each room it
/// is given.
fn stranger(
    addrs: Vec<Multiaddr>,
    node: PeerId,
) -> (mpsc::UnboundedSender<Vec<String>>, std_mpsc::Receiver<Seen>) {
    let (ask_tx, mut ask) = mpsc::unbounded_channel::<Vec<String>>();
    let (done_tx, done) = std_mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let options = RawPeerOptions {
                catch_up: true,
                ..RawPeerOptions::default()
            };
            let mut swarm = raw_swarm(Keypair::generate_ed25519(), options).unwrap();
            for addr in addrs {
                swarm.dial(addr).unwrap();
            }
            let mut seen = Seen::default();
            let mut waiting = 0usize;
            let mut asked: Vec<(request_response::OutboundRequestId, String)> = Vec::new();
            loop {
                tokio::select! {
                    Some(rooms) = ask.recv() => {
                        for room in rooms {
                            let request = Request::Fetch { room: room.parse().unwrap(), refs: Vec::new() };
                            if let Some(c) = swarm.behaviour_mut().catch_up.as_mut() {
                                asked.push((c.send_request(&node, request), room));
                                waiting += 1;
                            }
                        }
                    }
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(e)) => match e {
                            gossipsub::Event::Subscribed { topic, .. } => {
                                let t = gossipsub::IdentTopic::new(topic.as_str());
                                let _ = swarm.behaviour_mut().gossipsub.subscribe(&t);
                                seen.topics.push(topic.into_string());
                            }
                            gossipsub::Event::Message { message, .. } => seen.data.push(message.data),
                            _ => {}
                        },
                        SwarmEvent::Behaviour(RawBehaviourEvent::CatchUp(e)) => {
                            let (id, answer) = match e {
                                request_response::Event::Message {
                                    message: request_response::Message::Response { request_id, response },
                                    ..
                                } => (request_id, match response {
                                    Response::Refused(Refusal::Unavailable) => "unavailable",
                                    Response::Refused(Refusal::NotMember) => "not_member",
                                    Response::Refused(Refusal::Busy) => "busy",
                                    Response::Envelopes(_) => "envelopes",
                                    Response::Reconcile(_) => "reconcile",
                                }),
                                request_response::Event::OutboundFailure { request_id, .. } => (request_id, "failed"),
                                _ => continue,
                            };
                            if let Some((_, room)) = asked.iter().find(|(r, _)| *r == id) {
                                seen.answers.push((room.clone(), answer.to_owned()));
                                waiting -= 1;
                                if waiting == 0 {
                                    let _ = done_tx.send(std::mem::take(&mut seen));
                                    return;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        });
    });
    (ask_tx, done)
}

#[test]
fn a_connected_stranger_learns_no_room_name_nick_or_text_and_no_history() {
    let test = "private-stranger";
    let mut alice = Node::start(test, "alicewonder", &[]);
    let mut bob = Node::start(test, "bobbuilder", &[]);
    let (room, code) = create(&mut alice, "hushhush");
    assert_eq!(join_with(&mut bob, &code)["event"], "ok");
    alice.wait_joined(&room, &bob.peer_id);
    let alice_id: PeerId = alice.peer_id.parse().unwrap();
    let addrs = vec![
        alice.addr("quic-v1").parse().unwrap(),
        bob.addr("quic-v1").parse().unwrap(),
    ];
    let (ask, done) = stranger(addrs, alice_id);
    alice.wait_for("the stranger connected", PROMPT, |v| {
        v["event"] == "peer_connected" && v["peer_id"] != bob.peer_id.as_str()
    });
    // Members chat, rotate (a new member), and chat on.
    let mut carol = Node::start(test, "carolsinger", &[]);
    let for_carol = invite(&mut alice, &room);
    for i in 0..5 {
        assert_eq!(
            alice.command(&format!("/send {room} zebra crossing {i}"))["event"],
            "sent"
        );
    }
    assert_eq!(join_with(&mut carol, &for_carol)["event"], "ok");
    bob.wait_joined(&room, &carol.peer_id);
    for i in 0..5 {
        assert_eq!(
            bob.command(&format!("/send {room} quokka smile {i}"))["event"],
            "sent"
        );
    }
    wait_message(&mut carol, &room, &bob.peer_id, "quokka smile 4");
    wait_message(&mut alice, &room, &bob.peer_id, "quokka smile 4");

    // The stranger asks alice for the private room and for a room that
    // does not exist: the answers are alike.
    ask.send(vec![room.clone(), "nosuch~0badc0de".to_owned()])
        .unwrap();
    let seen = done.recv_timeout(PROMPT).expect("the stranger's answers");
    assert_eq!(
        seen.answers
            .iter()
            .map(|(_, a)| a.as_str())
            .collect::<Vec<_>>(),
        ["unavailable", "unavailable"],
        "{:?}",
        seen.answers
    );
    assert!(
        !seen.data.is_empty(),
        "the stranger listened on the room's topics and got frames"
    );
    for t in &seen.topics {
        assert!(!t.contains("hushhush"), "a topic names the room: {t}");
    }
    let secrets: [&[u8]; 6] = [
        b"hushhush",
        b"alicewonder",
        b"bobbuilder",
        b"carolsinger",
        b"zebra",
        b"quokka",
    ];
    for d in &seen.data {
        for s in secrets {
            assert!(
                !d.windows(s.len()).any(|w| w == s),
                "a frame holds {:?}",
                String::from_utf8_lossy(s)
            );
        }
    }
}

/// Starts `name` again on its data dir, bootstrapping from `peer`.
fn restart(name: &str, data_dir: std::path::PathBuf, peer: &str) -> Node {
    let mut node = Node::spawn(
        name,
        data_dir,
        &[
            "--json",
            "--no-mdns",
            "--anti-entropy-secs",
            "5",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--bootstrap",
            peer,
        ],
    );
    node.wait_for("ready", PROMPT, |v| v["event"] == "ready");
    node
}

#[test]
fn a_member_killed_while_a_new_key_goes_out_comes_back_on_one_key_with_the_others() {
    let test = "private-crash";
    let mut alice = Node::start(test, "alice", &["--anti-entropy-secs", "5"]);
    let mut bob = Node::start(test, "bob", &["--anti-entropy-secs", "5"]);
    let (room, code) = create(&mut alice, "vault");
    assert_eq!(join_with(&mut bob, &code)["event"], "ok");
    alice.wait_joined(&room, &bob.peer_id);
    let bob_addr = bob.addr("quic-v1");
    for cycle in 0..4u64 {
        let mut x = Node::start(test, &format!("x{cycle}"), &[]);
        let for_x = invite(&mut alice, &room);
        assert_eq!(join_with(&mut x, &for_x)["event"], "ok", "cycle {cycle}");
        // Killed at a different point of the removal each cycle: before it
        // is read, while it is sealed and published, once answered.
        alice.send_line(&format!("/kick {room} {}", x.peer_id));
        match cycle {
            0 => {}
            1 => std::thread::sleep(std::time::Duration::from_millis(3)),
            2 => std::thread::sleep(std::time::Duration::from_millis(15)),
            _ => assert_eq!(alice.reply()["event"], "ok"),
        }
        alice.kill();
        alice.wait_exit();
        let data_dir = alice.data_dir.clone();
        alice = restart("alice", data_dir, &bob_addr);
        let rooms = alice.command("/rooms");
        assert_eq!(
            rooms["private"],
            serde_json::json!([room]),
            "cycle {cycle}: {rooms}"
        );
        // Both ways, whichever key each holds after the kill: the one
        // ahead sends the other its key again, catch-up brings the rest.
        let to_bob = format!("alice after crash {cycle}");
        assert_eq!(
            alice.command(&format!("/send {room} {to_bob}"))["event"],
            "sent"
        );
        let to_alice = format!("bob after crash {cycle}");
        assert_eq!(
            bob.command(&format!("/send {room} {to_alice}"))["event"],
            "sent"
        );
        let alice_id = alice.peer_id.clone();
        let bob_id = bob.peer_id.clone();
        bob.wait_for(&to_bob, PROMPT, |v| {
            v["event"] == "message"
                && v["text"] == to_bob.as_str()
                && v["from"] == alice_id.as_str()
        });
        alice.wait_for(&to_alice, PROMPT, |v| {
            v["event"] == "message"
                && v["text"] == to_alice.as_str()
                && v["from"] == bob_id.as_str()
        });
        let history = alice.command(&format!("/history {room}"));
        assert_eq!(history["corrupt"], 0, "cycle {cycle}: {history}");
        x.kill();
    }
}

#[test]
fn two_admins_removing_two_members_at_once_both_end_out_and_the_rest_on_one_key() {
    let test = "private-concurrent";
    let mut alice = Node::start(test, "alice", &[]);
    let mut bob = Node::start(test, "bob", &[]);
    let mut carol = Node::start(test, "carol", &[]);
    let mut dave = Node::start(test, "dave", &[]);
    let (room, code) = create(&mut alice, "board");
    assert_eq!(join_with(&mut bob, &code)["event"], "ok");
    for n in [&mut carol, &mut dave] {
        let code = invite(&mut alice, &room);
        assert_eq!(join_with(n, &code)["event"], "ok");
    }
    let ids = [
        alice.peer_id.clone(),
        bob.peer_id.clone(),
        carol.peer_id.clone(),
        dave.peer_id.clone(),
    ];
    for n in [&mut alice, &mut bob, &mut carol, &mut dave] {
        let me = n.peer_id.clone();
        for other in ids.iter().filter(|i| **i != me) {
            n.wait_joined(&room, other);
        }
    }
    // Bob is made an admin; he knows once the new key reaches him.
    let mark = bob.mark();
    let promote = alice.command(&format!("/promote {room} {}", bob.peer_id));
    assert_eq!(
        promote,
        serde_json::json!({"event": "ok", "cmd": "promote"})
    );
    bob.wait_for_since(mark, "the key that makes bob an admin", PROMPT, |v| {
        v["event"] == "rekeyed" && v["room"] == room && v["members"] == 4
    });
    assert_eq!(
        error_code(&carol.command(&format!("/promote {room} {}", dave.peer_id))),
        "not_admin"
    );

    // At once: alice removes carol, bob removes dave.
    let (alice_mark, bob_mark) = (alice.mark(), bob.mark());
    alice.send_line(&format!("/kick {room} {}", carol.peer_id));
    bob.send_line(&format!("/kick {room} {}", dave.peer_id));
    assert_eq!(alice.reply()["event"], "ok");
    assert_eq!(bob.reply()["event"], "ok");
    for (n, gone) in [(&mut carol, ids[2].clone()), (&mut dave, ids[3].clone())] {
        n.wait_for("told it is removed", PROMPT, |v| {
            v["event"] == "left"
                && v["room"] == room
                && v["peer_id"] == gone.as_str()
                && v["reason"] == "removed"
        });
    }
    // Both converge on a key for the two of them.
    alice.wait_for_since(alice_mark, "alice on a key for two", PROMPT, |v| {
        v["event"] == "rekeyed" && v["room"] == room && v["members"] == 2
    });
    bob.wait_for_since(bob_mark, "bob on a key for two", PROMPT, |v| {
        v["event"] == "rekeyed" && v["room"] == room && v["members"] == 2
    });
    assert_eq!(
        alice.command(&format!("/send {room} just us"))["event"],
        "sent"
    );
    assert_eq!(
        bob.command(&format!("/send {room} indeed"))["event"],
        "sent"
    );
    wait_message(&mut bob, &room, &ids[0], "just us");
    wait_message(&mut alice, &room, &ids[1], "indeed");
    for n in [&mut carol, &mut dave] {
        n.drain();
        assert!(
            n.messages(&room)
                .iter()
                .all(|m| m["text"] != "just us" && m["text"] != "indeed"),
            "{}",
            n.name
        );
    }
}
