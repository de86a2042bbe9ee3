//! The MQTT → CloudEvent dispatcher: device messages in, CloudEvents on the broker out,
//! acknowledging each source message only after its event is confirmed or dead-lettered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cloudevents::AttributesReader;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use ktwin_broker::{Broker, held_bytes};
use tokio_util::sync::CancellationToken;

use crate::dead_letter::device_dead_letter;

use crate::ingress::{
    DeviceReading, DuplicateTracker, EventIdentity, FirstSeen, IngressPolicy, RejectKind, validate,
};
use crate::metrics::{DispatchMetrics, ResponseCode};
use crate::source::{DeviceSource, SourceMessage};
use ktwin_broker::DeadLetterSink;
use ktwin_events::trace::TraceSampler;

/// Log lines about refused device messages, at most 10 a second (bursts of 20).
static REFUSAL_LOG_BUDGET: std::sync::LazyLock<governor::DefaultDirectRateLimiter> =
    std::sync::LazyLock::new(|| {
        let per_second = std::num::NonZeroU32::new(10).unwrap_or(std::num::NonZeroU32::MIN);
        governor::RateLimiter::direct(
            governor::Quota::per_second(per_second).allow_burst(
                per_second.saturating_mul(
                    std::num::NonZeroU32::new(2).unwrap_or(std::num::NonZeroU32::MIN),
                ),
            ),
        )
    });

/// Live counts of an ingress dispatcher (for tests, benchmarks and progress bars).
#[derive(Debug, Default)]
pub struct IngressCounters {
    /// Events confirmed by the broker.
    pub dispatched: AtomicU64,
    /// Messages dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Failed publish attempts (retried).
    pub publish_failures: AtomicU64,
}

impl IngressCounters {
    /// Events confirmed so far.
    pub fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::Relaxed)
    }

    /// Messages dead-lettered so far.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}

/// An MQTT → CloudEvent dispatcher, to run over any [`DeviceSource`].
pub struct IngressDispatcher {
    broker: Arc<dyn Broker>,
    dead_letters: Arc<dyn DeadLetterSink>,
    policy: IngressPolicy,
    metrics: DispatchMetrics,
    max_in_flight: usize,
    max_in_flight_bytes: usize,
    counters: Arc<IngressCounters>,
}

impl std::fmt::Debug for IngressDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressDispatcher")
            .field("policy", &self.policy)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_in_flight_bytes", &self.max_in_flight_bytes)
            .finish_non_exhaustive()
    }
}

impl IngressDispatcher {
    /// A dispatcher publishing to `broker` and dead-lettering to `dead_letters`.
    pub fn new(
        broker: Arc<dyn Broker>,
        dead_letters: Arc<dyn DeadLetterSink>,
        policy: IngressPolicy,
        metrics: DispatchMetrics,
    ) -> Self {
        Self {
            broker,
            dead_letters,
            policy,
            metrics,
            max_in_flight: 512,
            max_in_flight_bytes: 64 * 1024 * 1024,
            counters: Arc::default(),
        }
    }

    /// Messages being published at once, at most (pipelining depth).
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// Bytes of messages being published at once (each message's payload and its event's
    /// [`held_bytes`]): no message is taken while they reach this, so at most one message more.
    /// Device payloads of up to megabytes would otherwise let [`max_in_flight`](Self::max_in_flight)
    /// messages take gigabytes while the broker pushes back.
    pub fn max_in_flight_bytes(mut self, max: usize) -> Self {
        self.max_in_flight_bytes = max.max(1);
        self
    }

    /// The live counters.
    pub fn counters(&self) -> Arc<IngressCounters> {
        Arc::clone(&self.counters)
    }

    /// Dispatches until `shutdown` fires (then stops taking messages and drains those in
    /// flight) or the source ends; closes the source ([`DeviceSource::close`]) before it returns.
    pub async fn run(self, mut source: impl DeviceSource, shutdown: CancellationToken) {
        let syntax = source.syntax();
        // Far more than can be in flight, so a redelivery after a reconnect is still known;
        // none for a source that never redelivers.
        let mut tracker = source
            .redelivers()
            .then(|| DuplicateTracker::new(self.max_in_flight.max(1024) * 64));
        // A device on a topic nothing matches publishes again and again: warn once per topic.
        let mut unmatched = FirstSeen::new(1024);
        // Each message's future yields the bytes it was charged.
        let mut in_flight = FuturesOrdered::new();
        let mut in_flight_bytes = 0;
        let mut source_open = true;
        loop {
            let accepting = source_open
                && !shutdown.is_cancelled()
                && in_flight.len() < self.max_in_flight
                && in_flight_bytes < self.max_in_flight_bytes;
            if !accepting && in_flight.is_empty() && (!source_open || shutdown.is_cancelled()) {
                break;
            }
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => in_flight_bytes -= done,
                message = source.next(), if accepting => match message {
                    Some(message) => {
                        let started = Instant::now();
                        match validate(&message.topic, syntax, &message.payload, &self.policy) {
                            Ok(reading) => {
                                let event = match tracker.as_mut() {
                                    Some(tracker) => identify(tracker, &message, reading, self.policy.trace_sampler),
                                    None => reading.into_event(None, self.policy.trace_sampler),
                                };
                                let bytes = held_bytes(&event) + message.payload.len();
                                in_flight_bytes += bytes;
                                in_flight.push_back(self.publish(event, message, started, shutdown.clone()).map(move |()| bytes).boxed());
                            }
                            Err(rejection) => {
                                let warn = rejection.kind != RejectKind::BadTopic || unmatched.first(&message.topic);
                                let bytes = message.topic.len() + message.payload.len();
                                in_flight_bytes += bytes;
                                in_flight.push_back(self.dead_letter(message, rejection, warn, started, shutdown.clone()).map(move |()| bytes).boxed());
                            }
                        }
                    }
                    None => source_open = false,
                },
                () = shutdown.cancelled(), if source_open && !shutdown.is_cancelled() => {}
            }
        }
        // Nothing consumes for this dispatcher once it returns.
        source.close().await;
        tracing::info!(
            dispatched = self.counters.dispatched(),
            dead_lettered = self.counters.dead_lettered(),
            "ingress dispatcher drained"
        );
    }

    /// Publishes until confirmed, then acks the source message. While shutting down a failed
    /// publish is abandoned unacknowledged: the source redelivers it.
    fn publish(
        &self,
        event: cloudevents::Event,
        mut message: SourceMessage,
        started: Instant,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        message.publishing(&event);
        // Shared with the broker rather than copied for each attempt: a retry needs it again.
        let event = Arc::new(event);
        let broker = Arc::clone(&self.broker);
        let metrics = self.metrics.clone();
        let counters = Arc::clone(&self.counters);
        async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match broker.publish_shared(Arc::clone(&event)).await {
                    Ok(_) => {
                        metrics.observe(event.ty(), ResponseCode::Accepted, started.elapsed());
                        ktwin_service::telemetry::record_event(&event, "ingress", started);
                        counters.dispatched.fetch_add(1, Ordering::Relaxed);
                        if let Err(error) = message.ack().await {
                            tracing::warn!(%error, "source ack failed; the message will be redelivered with the same event id");
                        }
                        return;
                    }
                    Err(error) => {
                        metrics.observe(event.ty(), ResponseCode::Failed, started.elapsed());
                        counters.publish_failures.fetch_add(1, Ordering::Relaxed);
                        if shutdown.is_cancelled() {
                            tracing::warn!(%error, id = event.id(), "publish failed during shutdown; leaving the message to be redelivered");
                            return;
                        }
                        tracing::warn!(%error, id = event.id(), ?delay, "publish failed, retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    fn dead_letter(
        &self,
        message: SourceMessage,
        rejection: crate::ingress::Rejection,
        warn: bool,
        started: Instant,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let sink = Arc::clone(&self.dead_letters);
        let metrics = self.metrics.clone();
        let counters = Arc::clone(&self.counters);
        async move {
            // A device refused in a loop must not flood the log: beyond a few lines a second the
            // refusals are only counted.
            if warn && REFUSAL_LOG_BUDGET.check().is_ok() {
                tracing::warn!(topic = %message.topic, reason = %rejection, "dead-lettering device message");
            } else {
                tracing::debug!(topic = %message.topic, reason = %rejection, "dead-lettering device message (already reported, or over the log budget)");
            }
            let letter = device_dead_letter(
                &message.topic,
                &message.payload,
                rejection.kind.as_label(),
                rejection.detail.clone(),
            );
            let mut delay = Duration::from_millis(100);
            loop {
                match sink.put(letter.clone()).await {
                    Ok(()) => break,
                    Err(error) if shutdown.is_cancelled() => {
                        tracing::warn!(%error, "dead-letter store failed during shutdown; leaving the message to be redelivered");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, ?delay, "dead-letter store failed, retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            metrics.dead_letter(rejection.kind.as_label());
            metrics.observe("invalid", ResponseCode::BadRequest, started.elapsed());
            counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = message.ack().await {
                tracing::warn!(%error, "source ack of a dead letter failed");
            }
        }
    }
}

/// The event of a validated message, with the identity its first copy got when it is a
/// redelivery; remembers the identity it is dispatched with.
fn identify(
    tracker: &mut DuplicateTracker,
    message: &SourceMessage,
    reading: DeviceReading,
    sampler: TraceSampler,
) -> cloudevents::Event {
    let fingerprint = DuplicateTracker::fingerprint(&message.topic, &message.payload);
    let identity = tracker
        .identity_for(fingerprint, message.redelivered)
        .cloned();
    let event = reading.into_event(identity.as_ref(), sampler);
    tracker.remember(
        fingerprint,
        EventIdentity {
            id: event.id().to_owned(),
            time: event.time().copied().unwrap_or_else(chrono::Utc::now),
        },
    );
    event
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use async_trait::async_trait;
    use bytes::Bytes;
    use ktwin_broker::{MemoryBroker, MemoryBrokerConfig, SubscriptionSpec, TypeFilter};

    use super::*;
    use crate::dead_letter::MemoryDeadLetters;
    use crate::error::TransportError;
    use crate::ingress::TopicSyntax;
    use crate::source::SourceAck;

    /// Device readings of one large payload each, as many as asked for; counts those taken.
    struct LargeReadings {
        payload: Bytes,
        taken: Arc<AtomicUsize>,
    }

    struct Unacked;

    #[async_trait]
    impl SourceAck for Unacked {
        async fn ack(self: Box<Self>) -> Result<(), TransportError> {
            Ok(())
        }
    }

    #[async_trait]
    impl DeviceSource for LargeReadings {
        fn syntax(&self) -> TopicSyntax {
            TopicSyntax::Mqtt
        }

        async fn next(&mut self) -> Option<SourceMessage> {
            let n = self.taken.fetch_add(1, Ordering::SeqCst);
            Some(SourceMessage::new(
                format!("ktwin/real/city-pole/pole-{n}"),
                self.payload.clone(),
                false,
                Box::new(Unacked),
            ))
        }

        fn connected(&self) -> Arc<AtomicBool> {
            Arc::new(AtomicBool::new(true))
        }

        fn redelivers(&self) -> bool {
            false
        }
    }

    /// With the broker pushing back, the dispatcher stops taking large messages at its byte
    /// bound, far below its message count bound.
    #[tokio::test]
    async fn messages_in_flight_are_bounded_by_bytes() {
        let text = "x".repeat(100_000);
        let payload = Bytes::from(serde_json::json!({ "text": text }).to_string());
        // A subscription nobody reads, full after one event: every publish after it waits.
        let broker = MemoryBroker::new(MemoryBrokerConfig {
            queue_capacity: 1,
            publish_timeout: None,
            ..MemoryBrokerConfig::default()
        });
        let _held = broker
            .subscribe(SubscriptionSpec::new("held", TypeFilter::all()))
            .await
            .unwrap();
        let taken = Arc::new(AtomicUsize::new(0));
        let source = LargeReadings {
            payload: payload.clone(),
            taken: Arc::clone(&taken),
        };
        let dispatcher = IngressDispatcher::new(
            Arc::new(broker),
            Arc::new(MemoryDeadLetters::new(1 << 20)),
            IngressPolicy::default(),
            DispatchMetrics::ingress("bytes-bound", "ktwin"),
        )
        .max_in_flight_bytes(10 * payload.len());
        let stop = CancellationToken::new();
        let run = tokio::spawn(dispatcher.run(source, stop.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        // One event is on the bus; each one in flight is charged its payload and its event's
        // bytes (more than twice the payload), so at most 5 are in flight.
        let taken_now = taken.load(Ordering::SeqCst);
        assert!(
            (2..=7).contains(&taken_now),
            "{taken_now} messages taken, the message bound being 512"
        );
        stop.cancel();
        run.abort();
    }
}
