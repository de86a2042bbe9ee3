//! The platform's own connection to the embedded MQTT broker: a rumqttd in-process link
//! instead of a TCP client.
//!
//! Devices and the ingress dispatcher share one process in `ktwin up`, so a socket between
//! them only costs system calls: every device message was read from a loopback socket and
//! acknowledged with a write of its own, and the broker's network thread woke for both. The
//! link hands messages over in memory, in batches (one wake-up per batch, not per message).
//! It subscribes at QoS 0: an acknowledgement between two parts of one process guards against
//! nothing, since both go down together. Behind the MQTT gate, the messages the platform
//! ingests (QoS 0 and 1, not retained) do not reach the broker at all: the gate delivers them
//! over its byte-bounded feed ([`LinkSource::direct_feed`]), read beside the broker's, and
//! makes their PUBACK itself; a full feed holds devices back, nothing is dropped. Devices get
//! their QoS 1 acknowledgement from the gate (or from the broker, through the gate), held
//! until the message is durable when the link acknowledges durably
//! ([`LinkSource::acknowledge_durably`], [`crate::device_acks`]). What still goes through the
//! broker (retained messages, QoS 2, devices without the gate) is bounded as follows. The
//! broker keeps each message in its log until the link has read it and
//! pauses the link while its buffer is full; a link more than the whole log behind
//! ([`crate::mqtt::MessageLog`]) misses the oldest messages. rumqttd does not hold its
//! publishers back for a slow subscriber, so the link finds such a loss by the gap in the log
//! offsets it reads, counts it (`ktwin_mqtt_link_dropped_total`) and logs it, at most every
//! [`DROP_LOG_INTERVAL`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ktwin_auth::mqtt::{DirectFeed, DirectMessage, DirectMessages, PubAckHold};
use ktwin_broker::TypeFilter;
use ktwin_dispatcher::ingress::TopicSyntax;
use ktwin_dispatcher::{DeviceSource, SourceAck, SourceMessage};
use ktwin_events::TopicKind;
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};

use crate::device_acks::DeviceAcks;
use crate::error::MqttError;

/// Counter of device messages the embedded broker dropped before the link read them.
pub const DROPPED_METRIC: &str = "ktwin_mqtt_link_dropped_total";

/// The link logs its drops at most this often (each line counts those since the last).
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The bytes of device messages the MQTT gate may queue for the link before its connections
/// wait ([`LinkSource::direct_feed`]): a few seconds of the largest loads measured, far below
/// the broker's message log.
pub const DIRECT_FEED_BYTES: usize = 16 * 1024 * 1024;

/// Device messages (`ktwin/real/#`, and the telemetry topics models declare) read from the
/// embedded broker over an in-process link, and from the MQTT gate's direct feed.
pub struct LinkSource {
    // Kept so the broker keeps the connection (dropping either half disconnects it), and to
    // subscribe to declared topics.
    tx: LinkTx,
    client_id: String,
    rx: LinkRx,
    connected: Arc<AtomicBool>,
    gaps: LogGaps,
    dropped: Arc<AtomicU64>,
    drop_log: DropLog,
    /// Reports each message's durability to the MQTT gate, when devices' PUBACKs wait for it.
    acks: Option<Arc<DeviceAcks>>,
    /// The messages the MQTT gate delivers itself, read beside the broker's.
    direct: Option<DirectMessages>,
    /// While it reads true, the link reads nothing (a soak's injected stall).
    #[cfg(feature = "bench")]
    stall: Option<tokio::sync::watch::Receiver<bool>>,
}

impl LinkSource {
    /// Connects to `broker` as `client_id` and subscribes to device messages. Blocks until the
    /// broker's router accepted the connection.
    pub fn connect(broker: &rumqttd::Broker, client_id: &str) -> Result<Self, MqttError> {
        let refused = |source| MqttError::LinkRefused {
            client_id: client_id.to_owned(),
            source: Box::new(source),
        };
        let (mut tx, rx) = broker.link(client_id).map_err(refused)?;
        let mut gaps = LogGaps::default();
        for filter in TopicKind::Real.mqtt_filters() {
            tx.subscribe(filter.clone()).map_err(refused)?;
            // Subscribed before the broker runs: its log starts empty, at offset 0.
            gaps.add(filter, Some(0));
        }
        Ok(Self {
            tx,
            client_id: client_id.to_owned(),
            rx,
            connected: Arc::new(AtomicBool::new(true)),
            gaps,
            dropped: Arc::new(AtomicU64::new(0)),
            drop_log: DropLog::default(),
            acks: None,
            direct: None,
            #[cfg(feature = "bench")]
            stall: None,
        })
    }

    /// Reads nothing while `stall` reads true (fault injection, feature `bench`).
    #[cfg(feature = "bench")]
    pub(crate) fn stalled_by(&mut self, stall: tokio::sync::watch::Receiver<bool>) {
        self.stall = Some(stall);
    }

    /// Acknowledges each device message once it is durable: returns the hold for the MQTT gate
    /// (on this link's subscriptions, so subscribe first) and the observer the store's feed
    /// reports to. Events of `stored_types` wait for the store; others are released once on
    /// the bus.
    pub fn acknowledge_durably(
        &mut self,
        stored_types: Option<TypeFilter>,
    ) -> (Arc<PubAckHold>, Arc<DeviceAcks>) {
        let filters = self.gaps.filters.iter().map(|(filter, _)| filter.clone());
        let hold = Arc::new(PubAckHold::new(filters));
        let acks = DeviceAcks::new(Arc::clone(&hold), stored_types);
        self.acks = Some(Arc::clone(&acks));
        (hold, acks)
    }

    /// The feed the MQTT gate delivers the messages the hold waits for to, bypassing the broker
    /// (`MqttGate::with_direct_feed`); the link reads it beside the broker's messages.
    pub fn direct_feed(&mut self) -> DirectFeed {
        let (feed, messages) = ktwin_auth::mqtt::direct_feed(DIRECT_FEED_BYTES);
        self.direct = Some(messages);
        feed
    }

    /// Device messages the broker dropped before this link read them (also the
    /// `ktwin_mqtt_link_dropped_total` counter).
    pub fn dropped(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.dropped)
    }

    /// Counts and logs what the broker dropped before the message at `offset` of `topic`'s log.
    fn check_gap(&mut self, topic: &str, offset: u64) {
        let missed = self.gaps.observe(topic, offset);
        if missed == 0 {
            return;
        }
        self.dropped.fetch_add(missed, Ordering::Relaxed);
        metrics::counter!(DROPPED_METRIC).increment(missed);
        if let Some(count) = self.drop_log.record(missed, Instant::now()) {
            tracing::error!(
                dropped = count,
                total = self.dropped.load(Ordering::Relaxed),
                "the embedded MQTT broker dropped device messages it had acknowledged: the platform fell further behind than the broker's message log (see docs/architecture.md, \"MQTT link backlog\")"
            );
        }
    }
}

impl LinkSource {
    /// Also receives the messages of `filter` (a telemetry topic a model declares with the DTDL
    /// MQTT extension).
    pub fn subscribe(&mut self, filter: &str) -> Result<(), MqttError> {
        self.tx
            .subscribe(filter)
            .map_err(|source| MqttError::LinkRefused {
                client_id: self.client_id.clone(),
                source: Box::new(source),
            })?;
        // Devices may already publish on it: where its log starts shows with the first message.
        self.gaps.add(filter.to_owned(), None);
        Ok(())
    }
}

/// The next log offset the link expects per subscription filter: rumqttd keeps one log per
/// filter, numbers its messages without a gap, and hands each to the link with its offset.
#[derive(Debug, Default)]
struct LogGaps {
    filters: Vec<(String, Option<u64>)>,
}

impl LogGaps {
    fn add(&mut self, filter: String, next: Option<u64>) {
        if !self.filters.iter().any(|(known, _)| *known == filter) {
            self.filters.push((filter, next));
        }
    }

    /// Records the message at `offset` of the log of a filter `topic` matches; returns how many
    /// messages of that log were skipped before it. A topic matching several filters is in
    /// each of their logs: the copy is taken for the log that expects this very offset, else
    /// for the one with the smallest skip.
    fn observe(&mut self, topic: &str, offset: u64) -> u64 {
        // How far ahead of what a log expects this offset is; a log already past it cannot be
        // its source, and one whose start is unknown ranks after an exact match.
        let distance = |next: Option<u64>| match next {
            Some(next) if offset >= next => (offset - next, false),
            Some(_) => (u64::MAX, false),
            None => (0, true),
        };
        let Some((_, next)) = self
            .filters
            .iter_mut()
            .filter(|(filter, _)| rumqttd::protocol::matches(topic, filter))
            .min_by_key(|(_, next)| distance(*next))
        else {
            return 0;
        };
        let missed = next.map_or(0, |next| offset.saturating_sub(next));
        *next = Some(offset + 1);
        missed
    }
}

/// When to log drops: the first at once, later ones at most every [`DROP_LOG_INTERVAL`],
/// summed.
#[derive(Debug, Default)]
struct DropLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl DropLog {
    /// Adds `missed` drops at `now`; returns the drops to log now, if it is time.
    fn record(&mut self, missed: u64, now: Instant) -> Option<u64> {
        self.unlogged += missed;
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= DROP_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// What the link's source read next.
// Only ever a temporary on one call's stack: boxing the broker's notification would cost an
// allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
enum Received {
    Direct(Option<DirectMessage>),
    Broker(Result<Option<Notification>, rumqttd::local::LinkError>),
}

impl LinkSource {
    /// A message the gate delivered, acknowledged as the broker's are.
    fn direct_message(&self, message: DirectMessage) -> SourceMessage {
        let ack = self.ack_for(message.topic.as_bytes(), &message.payload);
        SourceMessage::new(message.topic, message.payload, false, ack)
    }

    /// How a device message on `topic` with `payload` is acknowledged.
    fn ack_for(&self, topic: &[u8], payload: &[u8]) -> Box<dyn SourceAck> {
        match &self.acks {
            Some(acks) => acks.ack_for(topic, payload),
            None => Box::new(NoAck),
        }
    }
}

/// Messages of an in-process QoS 0 link need no acknowledgement.
struct NoAck;

#[async_trait]
impl SourceAck for NoAck {
    async fn ack(self: Box<Self>) -> Result<(), ktwin_dispatcher::TransportError> {
        Ok(())
    }
}

#[async_trait]
impl DeviceSource for LinkSource {
    fn syntax(&self) -> TopicSyntax {
        TopicSyntax::Mqtt
    }

    async fn next(&mut self) -> Option<SourceMessage> {
        loop {
            #[cfg(feature = "bench")]
            if let Some(stall) = &mut self.stall {
                // A closed switch (the soak is gone) stalls nothing.
                let _ = stall.wait_for(|stalled| !stalled).await;
            }
            let notification = match &mut self.direct {
                Some(direct) => tokio::select! {
                    message = direct.recv() => Received::Direct(message),
                    notification = self.rx.next() => Received::Broker(notification),
                },
                None => Received::Broker(self.rx.next().await),
            };
            let notification = match notification {
                Received::Direct(Some(message)) => return Some(self.direct_message(message)),
                // Every gate is gone: only the broker's messages are left.
                Received::Direct(None) => {
                    self.direct = None;
                    continue;
                }
                Received::Broker(notification) => notification,
            };
            match notification {
                Ok(Some(Notification::Forward(forward))) => {
                    let publish = forward.publish;
                    // Not UTF-8 cannot be a valid topic: the dispatcher dead-letters it by name.
                    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                    if let Some((_, offset)) = forward.cursor {
                        self.check_gap(&topic, offset);
                    }
                    let ack = self.ack_for(&publish.topic, &publish.payload);
                    return Some(SourceMessage::new(topic, publish.payload, false, ack));
                }
                // The router paused this link because its buffer was full; everything it handed
                // over is in hand now, so it may send more.
                Ok(Some(Notification::Unschedule)) => {
                    if self.rx.wake().await.is_err() {
                        break;
                    }
                }
                // Acknowledgements of the link's own subscription, and empty wake-ups.
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(%err, "the embedded MQTT broker's link closed");
                    break;
                }
            }
        }
        self.connected
            .store(false, std::sync::atomic::Ordering::Release);
        None
    }

    fn connected(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.connected)
    }

    /// The broker hands each message to the link once; there is no reconnect.
    fn redelivers(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_offset_counts_as_dropped() {
        let mut gaps = LogGaps::default();
        gaps.add("ktwin/real/#".to_owned(), Some(0));
        gaps.add("+".to_owned(), Some(0));
        assert_eq!(gaps.observe("ktwin/real/pole/p1", 0), 0);
        assert_eq!(gaps.observe("ktwin/real/pole/p1", 1), 0);
        assert_eq!(gaps.observe("ktwin/real/pole/p1", 5), 3);
        // Another filter's log has offsets of its own.
        assert_eq!(gaps.observe("pole", 0), 0);
        assert_eq!(gaps.observe("ktwin/real/pole/p2", 6), 0);
        // A filter subscribed late starts where its first message is.
        gaps.add("sensors/+/temp".to_owned(), None);
        assert_eq!(gaps.observe("sensors/a/temp", 40), 0);
        assert_eq!(gaps.observe("sensors/a/temp", 42), 1);
        assert_eq!(gaps.observe("unsubscribed/topic", 9), 0);
    }

    #[test]
    fn a_topic_in_two_logs_is_counted_against_the_log_expecting_it() {
        let mut gaps = LogGaps::default();
        gaps.add("ktwin/real/#".to_owned(), Some(10));
        gaps.add("ktwin/real/pole/+".to_owned(), Some(3));
        assert_eq!(gaps.observe("ktwin/real/pole/p1", 3), 0);
        assert_eq!(gaps.observe("ktwin/real/pole/p1", 10), 0);
        assert_eq!(gaps.observe("ktwin/real/pole/p1", 4), 0);
        assert_eq!(gaps.observe("ktwin/real/pole/p1", 11), 0);
    }

    #[test]
    fn drops_are_logged_at_once_then_at_most_every_interval() {
        let mut log = DropLog::default();
        let start = Instant::now();
        assert_eq!(log.record(3, start), Some(3));
        assert_eq!(log.record(2, start + Duration::from_secs(1)), None);
        assert_eq!(log.record(4, start + Duration::from_secs(2)), None);
        assert_eq!(log.record(1, start + DROP_LOG_INTERVAL), Some(7));
    }
}
