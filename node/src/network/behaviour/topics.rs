//! Which gossipsub subscriptions of a peer a node takes note of: topics of
//! Palaver's rooms only, and at most [`MAX_TOPICS_PER_PEER`] per peer.
//!
//! gossipsub keeps every topic a peer says it is subscribed to; without a
//! filter a peer could make a node hold any number of made-up topics. An RPC
//! that would take a peer beyond the limit is ignored whole (gossipsub's
//! count filter): an honest node listens on at most
//! `MAX_ROOMS × LISTENED_EPOCHS` topics, well below it, so only a peer
//! breaking the contract loses its subscriptions.

use libp2p::gossipsub::{MaxCountSubscriptionFilter, TopicHash, TopicSubscriptionFilter};
use palaver_proto::contract::{self, MAX_TOPICS_PER_PEER};

/// Public and private rooms' topics.
#[derive(Debug, Default, Clone)]
pub struct RoomTopics;

/// The subscription filter of a node's gossipsub.
pub type Filter = MaxCountSubscriptionFilter<RoomTopics>;

/// [`RoomTopics`], at most [`MAX_TOPICS_PER_PEER`] per peer and per RPC.
pub fn filter() -> Filter {
    MaxCountSubscriptionFilter {
        filter: RoomTopics,
        max_subscribed_topics: MAX_TOPICS_PER_PEER,
        max_subscriptions_per_request: MAX_TOPICS_PER_PEER,
    }
}

/// Whether a topic is a room's, public or private.
pub fn is_room_topic(topic: &TopicHash) -> bool {
    let t = topic.as_str();
    contract::room_of_topic(t).is_some() || palaver_proto::private::is_private_topic(t)
}

impl TopicSubscriptionFilter for RoomTopics {
    fn can_subscribe(&mut self, topic: &TopicHash) -> bool {
        is_room_topic(topic)
    }
}

// The rooms core and the contract agree on how many rooms a node may be in,
// and a node never listens on more topics than its peers take note of.
const _: () = assert!(crate::rooms::MAX_ROOMS == contract::MAX_ROOMS);
const _: () = assert!(
    contract::MAX_ROOMS * crate::private::LISTENED_EPOCHS + contract::MAX_ROOMS
        <= MAX_TOPICS_PER_PEER
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_and_private_room_topics_pass() {
        let private = format!(
            "{}{}",
            palaver_proto::private::PRIVATE_TOPIC_PREFIX,
            "ab".repeat(16)
        );
        for (topic, passes) in [
            (format!("{}lobby", contract::TOPIC_PREFIX), true),
            (private.clone(), true),
            ("some/other/app".to_owned(), false),
            (
                format!("{}{}", contract::TOPIC_PREFIX, "x".repeat(100)),
                false,
            ),
            (format!("{private}0"), false),
        ] {
            assert_eq!(
                RoomTopics.can_subscribe(&TopicHash::from_raw(&topic)),
                passes,
                "{topic}"
            );
        }
    }
}
