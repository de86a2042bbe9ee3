//! Device acknowledgements held until the platform has made the message durable.
//!
//! An embedded broker acknowledges a QoS 1 PUBLISH as soon as it holds the message in memory;
//! a crash then loses what the device already let go of. The [`MqttGate`](super::gate::MqttGate)
//! sees every device packet, so with a [`PubAckHold`] it keeps the broker's PUBACK for a
//! message on an ingested topic until the platform calls [`PubAckHold::durable`] with that
//! message's [`MessageKey`] (its topic and a digest of its payload: the broker hands the
//! platform the message without the device's packet id, so content is what pairs them).
//!
//! Messages with the same key pair first-registered first: they are the same reading, so
//! whichever copy became durable, a copy of that content is kept. A message the platform will
//! never report (its topic is not ingested, the gate refused it) is not held. What stays held
//! is bounded by each device's in-flight window (at most the 65,535 packet ids of one
//! connection) and is forgotten when the connection ends: the device, which got no PUBACK,
//! sends it again. PUBACKs may reach a device in another order than its PUBLISHes when its
//! messages become durable out of order; clients pair them by packet id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};

use super::filter::is_within_any;

/// Gauge of broker PUBACKs the gate holds until their messages are durable.
pub const WITHHELD_PUBACKS: &str = "ktwin_mqtt_pubacks_withheld";

/// Identifies a device message by content: its topic and the SHA-256 of topic and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageKey([u8; 32]);

impl MessageKey {
    /// The key of a message on `topic` with `payload`.
    pub fn of(topic: &[u8], payload: &[u8]) -> Self {
        let mut digest = Sha256::new();
        // The topic's length first, so no topic/payload split collides with another.
        digest.update((topic.len() as u64).to_be_bytes());
        digest.update(topic);
        digest.update(payload);
        Self(digest.finalize().into())
    }
}

/// What the gate does with a QoS 1 PUBLISH it is about to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Withhold {
    /// Forward it; its PUBACK waits for durability.
    Registered,
    /// A DUP resend of a message still in flight: drop it, the first copy's PUBACK will come.
    Resent,
    /// The packet id of a message still in flight, without DUP: a protocol violation.
    Reused,
}

/// Which topics the platform ingests, and the PUBACKs waiting for durability; shared by the
/// gate and the platform.
#[derive(Debug)]
pub struct PubAckHold {
    ingested: Vec<String>,
    state: Mutex<HoldState>,
}

#[derive(Debug, Default)]
struct HoldState {
    next_connection: u64,
    connections: HashMap<u64, Connection>,
    /// Messages waiting for durability by key, oldest first: (connection, packet id).
    by_key: HashMap<MessageKey, VecDeque<(u64, u16)>>,
}

#[derive(Debug)]
struct Connection {
    released: mpsc::UnboundedSender<Bytes>,
    pending: HashMap<u16, Pending>,
    settled: watch::Sender<usize>,
}

#[derive(Debug)]
struct Pending {
    key: MessageKey,
    durable: bool,
    /// The broker's acknowledgement, once it came.
    broker_ack: Option<Bytes>,
}

impl PubAckHold {
    /// Holds PUBACKs of messages whose topic one of `ingested` (MQTT filters: what the
    /// platform subscribes to) matches.
    pub fn new(ingested: impl IntoIterator<Item = String>) -> Self {
        Self {
            ingested: ingested.into_iter().collect(),
            state: Mutex::default(),
        }
    }

    /// Whether the platform reads messages on `topic`. Like the broker, no wildcard matches a
    /// `$` topic; a topic with wildcards is no topic.
    pub fn is_ingested(&self, topic: &str) -> bool {
        !topic.starts_with('$')
            && !topic.contains(['+', '#'])
            && is_within_any(topic, &self.ingested)
    }

    /// The message with `key` is durable (stored, or kept as a dead letter), or was settled
    /// with nothing to keep: the PUBACK of the oldest message waiting with that key goes to
    /// its device once the broker has given it.
    pub fn durable(&self, key: &MessageKey) {
        let mut state = self.lock();
        let Some(waiting) = state.by_key.get_mut(key) else {
            return;
        };
        let Some((connection, pkid)) = waiting.pop_front() else {
            return;
        };
        if waiting.is_empty() {
            state.by_key.remove(key);
        }
        let Some(connection) = state.connections.get_mut(&connection) else {
            return;
        };
        let Some(pending) = connection.pending.get_mut(&pkid) else {
            return;
        };
        match pending.broker_ack.take() {
            Some(ack) => {
                connection.pending.remove(&pkid);
                metrics::gauge!(WITHHELD_PUBACKS).decrement(1.0);
                // The connection may be ending; then the device gets it never, and resends.
                let _ = connection.released.send(ack);
                connection.settled.send_replace(connection.pending.len());
            }
            None => pending.durable = true,
        }
    }

    /// PUBACKs held now (broker acknowledged, not yet durable).
    pub fn withheld(&self) -> usize {
        self.lock()
            .connections
            .values()
            .flat_map(|c| c.pending.values())
            .filter(|p| p.broker_ack.is_some())
            .count()
    }

    /// A connection's share of the hold; its released PUBACKs come out of the receiver.
    pub(crate) fn connection(self: &Arc<Self>) -> (ConnectionHold, mpsc::UnboundedReceiver<Bytes>) {
        let (released, receiver) = mpsc::unbounded_channel();
        let (settled, _) = watch::channel(0);
        let mut state = self.lock();
        let id = state.next_connection;
        state.next_connection += 1;
        state.connections.insert(
            id,
            Connection {
                released,
                pending: HashMap::new(),
                settled,
            },
        );
        let hold = ConnectionHold {
            hold: Arc::clone(self),
            id,
        };
        (hold, receiver)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HoldState> {
        // The state stays consistent between statements: a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One device connection's messages in a [`PubAckHold`]; forgotten when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionHold {
    hold: Arc<PubAckHold>,
    id: u64,
}

impl ConnectionHold {
    /// Whether a message on `topic` waits for durability.
    pub(crate) fn holds(&self, topic: &str) -> bool {
        self.hold.is_ingested(topic)
    }

    /// Registers the QoS 1 message `pkid` with `key`, before it is forwarded to the broker.
    pub(crate) fn register(&self, pkid: u16, key: MessageKey, dup: bool) -> Withhold {
        let mut state = self.hold.lock();
        let Some(connection) = state.connections.get_mut(&self.id) else {
            return Withhold::Registered;
        };
        if connection.pending.contains_key(&pkid) {
            return if dup {
                Withhold::Resent
            } else {
                Withhold::Reused
            };
        }
        connection.pending.insert(
            pkid,
            Pending {
                key,
                durable: false,
                broker_ack: None,
            },
        );
        connection.settled.send_replace(connection.pending.len());
        state
            .by_key
            .entry(key)
            .or_default()
            .push_back((self.id, pkid));
        Withhold::Registered
    }

    /// The broker acknowledged `pkid` with `ack` (or, for a message the gate delivered to the
    /// platform itself, the gate made `ack`): returned to forward now, or kept until the
    /// message is durable.
    pub(crate) fn broker_acked(&self, pkid: u16, ack: Bytes) -> Option<Bytes> {
        let mut state = self.hold.lock();
        let Some(connection) = state.connections.get_mut(&self.id) else {
            return Some(ack);
        };
        let Some(pending) = connection.pending.get_mut(&pkid) else {
            return Some(ack);
        };
        if pending.durable {
            connection.pending.remove(&pkid);
            connection.settled.send_replace(connection.pending.len());
            return Some(ack);
        }
        pending.broker_ack = Some(ack);
        metrics::gauge!(WITHHELD_PUBACKS).increment(1.0);
        None
    }

    /// Resolves once no message of this connection waits for durability.
    pub(crate) async fn settled(&self) {
        let mut settled = match self.hold.lock().connections.get(&self.id) {
            Some(connection) => connection.settled.subscribe(),
            None => return,
        };
        let _ = settled.wait_for(|pending| *pending == 0).await;
    }
}

impl Drop for ConnectionHold {
    fn drop(&mut self) {
        let mut state = self.hold.lock();
        let Some(connection) = state.connections.remove(&self.id) else {
            return;
        };
        for (pkid, pending) in connection.pending {
            if pending.broker_ack.is_some() {
                metrics::gauge!(WITHHELD_PUBACKS).decrement(1.0);
            }
            if let Some(waiting) = state.by_key.get_mut(&pending.key) {
                waiting.retain(|&entry| entry != (self.id, pkid));
                if waiting.is_empty() {
                    state.by_key.remove(&pending.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(pkid: u16) -> Bytes {
        let [high, low] = pkid.to_be_bytes();
        Bytes::from(vec![0x40, 2, high, low])
    }

    fn hold() -> Arc<PubAckHold> {
        Arc::new(PubAckHold::new(["ktwin/real/#".to_owned()]))
    }

    #[test]
    fn ingested_topics_follow_the_filters_and_never_match_dollar_or_wildcards() {
        let hold = hold();
        assert!(hold.is_ingested("ktwin/real/pole/p1"));
        assert!(!hold.is_ingested("ktwin/virtual/pole/p1"));
        assert!(!hold.is_ingested("ktwin/real/+/p1"));
        let everything = PubAckHold::new(["#".to_owned()]);
        assert!(!everything.is_ingested("$SYS/x"));
        assert!(everything.is_ingested("a/b"));
    }

    #[test]
    fn a_puback_waits_for_durability_whichever_comes_first() {
        let hold = hold();
        let (connection, mut released) = hold.connection();
        let key = MessageKey::of(b"ktwin/real/pole/p1", b"{}");
        assert_eq!(connection.register(1, key, false), Withhold::Registered);
        assert_eq!(connection.broker_acked(1, ack(1)), None);
        assert_eq!(hold.withheld(), 1);
        hold.durable(&key);
        assert_eq!(released.try_recv().unwrap(), ack(1));
        assert_eq!(hold.withheld(), 0);
        // Durable before the broker's acknowledgement: forwarded as it comes.
        assert_eq!(connection.register(2, key, false), Withhold::Registered);
        hold.durable(&key);
        assert_eq!(connection.broker_acked(2, ack(2)), Some(ack(2)));
        assert!(released.try_recv().is_err());
        // Not registered: forwarded at once; a key nobody waits for changes nothing.
        assert_eq!(connection.broker_acked(3, ack(3)), Some(ack(3)));
        hold.durable(&MessageKey::of(b"ktwin/real/pole/p1", b"other"));
        assert!(hold.lock().by_key.is_empty());
    }

    #[test]
    fn same_content_pairs_in_order_and_a_closed_connection_is_forgotten() {
        let hold = hold();
        let (first, mut first_released) = hold.connection();
        let (second, mut second_released) = hold.connection();
        let key = MessageKey::of(b"ktwin/real/pole/p1", b"same");
        assert_eq!(first.register(7, key, false), Withhold::Registered);
        assert_eq!(second.register(7, key, false), Withhold::Registered);
        assert_eq!(first.broker_acked(7, ack(7)), None);
        assert_eq!(second.broker_acked(7, ack(7)), None);
        hold.durable(&key);
        assert_eq!(first_released.try_recv().unwrap(), ack(7));
        assert!(second_released.try_recv().is_err());
        drop(second);
        assert_eq!(hold.withheld(), 0);
        assert!(hold.lock().by_key.is_empty());
        hold.durable(&key);
        assert!(first_released.try_recv().is_err());
    }

    #[test]
    fn a_packet_id_in_flight_is_resent_or_reused() {
        let hold = hold();
        let (connection, _released) = hold.connection();
        let key = MessageKey::of(b"t", b"p");
        assert_eq!(connection.register(1, key, false), Withhold::Registered);
        assert_eq!(connection.register(1, key, true), Withhold::Resent);
        assert_eq!(connection.register(1, key, false), Withhold::Reused);
    }

    #[test]
    fn keys_differ_by_topic_and_payload_boundary() {
        assert_ne!(MessageKey::of(b"ab", b"c"), MessageKey::of(b"a", b"bc"));
        assert_eq!(MessageKey::of(b"a", b"bc"), MessageKey::of(b"a", b"bc"));
    }
}
