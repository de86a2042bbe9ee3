//! Ingestion with group commit: every producer (HTTP requests, broker subscriptions) hands
//! events to one [`Ingestor`], whose task appends whatever has queued up as one batch (one
//! transaction, one fsync) and acknowledges each producer only after that commit.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use chrono::Utc;
use cloudevents::{AttributesReader, Event};
use ktwin_events::trace::{EventTrace, SpanId};
use ktwin_service::telemetry::{self, ProducedSpan};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::{AppendReport, Backend, StoreError};
use crate::event::TwinEvent;
use crate::metric_names;

/// Tuning of the ingest task.
#[derive(Debug, Clone, Copy)]
pub struct IngestConfig {
    /// Events per transaction, at most (a single larger submission is still one transaction).
    pub max_batch: usize,
    /// Submissions waiting for the ingest task, at most; producers wait beyond (backpressure).
    pub queue: usize,
    /// Batches being committed at once, at most (and at most what the backend can run, see
    /// [`Backend::concurrent_appends`]). Latest states do not depend on commit order (see
    /// [`crate::MergeTree`]), so batches may commit concurrently.
    pub concurrency: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch: 20_000,
            queue: 1024,
            concurrency: 2,
        }
    }
}

struct Submission {
    events: Vec<TwinEvent>,
    done: oneshot::Sender<Result<AppendReport, StoreError>>,
}

/// Handle to the ingest task; cheap to clone. The task ends once every handle is dropped and
/// the queue is drained.
///
/// A commit that fails permanently ([`StoreError::is_transient`] false) halts ingestion:
/// every later submission is refused with that error, feeds stop taking events (they stay with
/// their source), and [`failure`](Self::failure) reports it until the process restarts.
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Submission>,
    halt: Arc<Halt>,
}

/// The permanent failure that halted ingestion, once there is one.
#[derive(Default)]
struct Halt {
    failure: std::sync::OnceLock<StoreError>,
    halted: CancellationToken,
}

impl Halt {
    fn halt(&self, err: &StoreError) {
        if self.failure.set(err.clone()).is_ok() {
            metrics::gauge!(metric_names::HALTED).set(1.0);
            tracing::error!(
                error = %err.chain(),
                "the event store failed permanently: ingestion is halted (nothing is acknowledged \
                 or dropped; sources keep their events) until the store is repaired and restarted"
            );
            self.halted.cancel();
        }
    }
}

impl Ingestor {
    /// Starts the ingest task over `backend`.
    pub fn spawn(backend: Arc<dyn Backend>, config: IngestConfig) -> (Self, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(config.queue.max(1));
        let halt = Arc::new(Halt::default());
        let task = tokio::spawn(run(backend, receiver, config, Arc::clone(&halt)));
        (Self { queue, halt }, task)
    }

    /// The permanent failure that halted ingestion, if one did.
    pub fn failure(&self) -> Option<StoreError> {
        self.halt.failure.get().cloned()
    }

    /// Completes once ingestion is halted by a permanent failure.
    pub async fn halted(&self) {
        self.halt.halted.cancelled().await;
    }

    /// Stores `events`; returns once they are durable (or failed together). Submissions queued
    /// together are committed as one batch, and the report counts that whole batch.
    pub async fn submit(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        if events.is_empty() {
            return Ok(AppendReport::default());
        }
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        let (done, receipt) = oneshot::channel();
        self.queue
            .send(Submission { events, done })
            .await
            .map_err(|_| StoreError::Unavailable {
                context: "the store is shutting down".into(),
                source: None,
            })?;
        receipt.await.map_err(|_| StoreError::Unavailable {
            context: "the ingest task stopped".into(),
            source: None,
        })?
    }
}

async fn run(
    backend: Arc<dyn Backend>,
    mut receiver: mpsc::Receiver<Submission>,
    config: IngestConfig,
    halt: Arc<Halt>,
) {
    let max_batch = config.max_batch.max(1);
    let concurrency = config.concurrency.min(backend.concurrent_appends()).max(1);
    let mut committing = tokio::task::JoinSet::new();
    while let Some(first) = receiver.recv().await {
        let mut events = first.events;
        let mut waiting = vec![first.done];
        while events.len() < max_batch {
            match receiver.try_recv() {
                Ok(next) => {
                    waiting.push(next.done);
                    events.extend(next.events);
                }
                Err(_) => break,
            }
        }
        while committing.len() >= concurrency {
            committing.join_next().await;
        }
        committing.spawn(commit(backend.clone(), events, waiting, Arc::clone(&halt)));
    }
    while committing.join_next().await.is_some() {}
}

#[tracing::instrument(level = "debug", skip_all, fields(backend = backend.name(), events = events.len()))]
async fn commit(
    backend: Arc<dyn Backend>,
    events: Vec<TwinEvent>,
    waiting: Vec<oneshot::Sender<Result<AppendReport, StoreError>>>,
    halt: Arc<Halt>,
) {
    let count = events.len();
    let started = Instant::now();
    let spans = telemetry::enabled().then(|| store_spans(&events, backend.name()));
    let result = backend.append(events).await;
    if let (Ok(_), Some(spans)) = (&result, spans) {
        let start = SystemTime::now()
            .checked_sub(started.elapsed())
            .unwrap_or_else(SystemTime::now);
        for mut span in spans {
            span.start = start;
            telemetry::record(span);
        }
    }
    metrics::histogram!(metric_names::COMMIT_SECONDS, "backend" => backend.name())
        .record(started.elapsed().as_secs_f64());
    match &result {
        Ok(report) => {
            metrics::counter!(metric_names::STORED, "backend" => backend.name())
                .increment(report.stored as u64);
            metrics::counter!(metric_names::DUPLICATES, "backend" => backend.name())
                .increment(report.duplicates as u64);
            metrics::counter!(metric_names::NEW_VERSIONS, "backend" => backend.name())
                .increment(report.versions.len() as u64);
        }
        Err(err) => {
            metrics::counter!(metric_names::FAILED_BATCHES, "backend" => backend.name())
                .increment(1);
            if err.is_transient() {
                tracing::warn!(error = %err.chain(), events = count, "storing a batch failed; it is retried");
            } else {
                halt.halt(err);
            }
        }
    }
    // Every producer in the batch learns the batch's outcome (counts are the batch's).
    for done in waiting {
        let _ = done.send(result.clone());
    }
}

/// The spans of storing `events` (exported over OTLP when that is on): one per event that
/// carries a trace, a child of the event's span, its own id derived from the event's span.
fn store_spans(events: &[TwinEvent], backend: &'static str) -> Vec<ProducedSpan> {
    events
        .iter()
        .filter_map(|event| {
            let traceparent = event.traceparent.as_deref()?;
            let trace = EventTrace::parse(traceparent, None)?;
            Some(ProducedSpan {
                name: format!("store {}", event.event_type),
                trace_id: trace.parent.trace_id.to_bytes(),
                span_id: SpanId::derived(&format!("{traceparent}/store")).to_bytes(),
                parent: Some(trace.parent.span_id.to_bytes()),
                start: SystemTime::UNIX_EPOCH,
                attributes: vec![
                    ("cloudevents.event_id", event.id.clone()),
                    ("ktwin.store.backend", backend.to_owned()),
                ],
            })
        })
        .collect()
}

/// How often [`keep_readiness`] asks the backend whether it answers.
const READINESS_PROBE: Duration = Duration::from_secs(5);

/// Keeps `readiness` true while the backend answers and ingestion is not halted, until
/// `shutdown` (then false: a draining service takes no new traffic). A store that cannot
/// commit must not get traffic; a halt turns it false at once.
pub async fn keep_readiness(
    backend: Arc<dyn Backend>,
    ingestor: Ingestor,
    readiness: ktwin_service::Readiness,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let answers = backend.check().await.is_ok();
        readiness.set_ready(answers && ingestor.failure().is_none());
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = ingestor.halted() => readiness.set_ready(false),
            () = tokio::time::sleep(READINESS_PROBE) => {}
        }
    }
    readiness.set_ready(false);
}

/// A subscription the store can consume events from, e.g. a broker queue. Kept this small so
/// any transport can be adapted (a ktwin-broker subscription, a test channel).
#[async_trait]
pub trait EventFeed: Send {
    /// One received message.
    type Message: FeedMessage;
    /// Waits for at least one message and returns those available, at most `max`; empty once
    /// the feed is closed.
    async fn next_batch(&mut self, max: usize) -> Vec<Self::Message>;
}

/// A message of an [`EventFeed`], settled after its event was stored.
#[async_trait]
pub trait FeedMessage: Send + 'static {
    /// The CloudEvent carried.
    fn event(&self) -> &Event;
    /// The CloudEvent carried, shared: the store reads its data in place until it is stored.
    /// A feed whose messages hold their events in an `Arc` hands out that one; by default the
    /// event is copied.
    fn shared_event(&self) -> Arc<Event> {
        Arc::new(self.event().clone())
    }
    /// Stored: the feed may forget it.
    async fn ack(self);
    /// Not stored (the store is shutting down, or halted): deliver again later. Not a failed
    /// delivery: it must never count towards dead-lettering.
    async fn retry(self, reason: &str);
    /// Never storable (not a twin event): dead-letter it.
    async fn reject(self, reason: &str);
}

/// The first pause before a batch whose commit failed transiently is tried again; it doubles
/// up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// The longest pause between two attempts to store a batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Stores one batch of a feed and settles its messages: acknowledged once stored. A transient
/// failure is retried, with backoff, for as long as it lasts: the messages stay unsettled
/// meanwhile (so the feed's slots fill and the source pushes back), and are never
/// dead-lettered for it. On shutdown or a permanent failure they are released unstored, for
/// their source to deliver again.
async fn store_batch<M: FeedMessage>(
    ingestor: &Ingestor,
    mut events: Vec<TwinEvent>,
    accepted: Vec<M>,
    received: chrono::DateTime<Utc>,
    cancel: &CancellationToken,
) {
    let mut delay = FIRST_RETRY_DELAY;
    let released = loop {
        let err = match ingestor.submit(events).await {
            Ok(_) => {
                for message in accepted {
                    message.ack().await;
                }
                return;
            }
            Err(err) => err,
        };
        if !err.is_transient() {
            // The ingestor halted on it (and said so); hold the messages until shutdown.
            cancel.cancelled().await;
            break err;
        }
        metrics::counter!(metric_names::RETRIED_BATCHES).increment(1);
        tokio::select! {
            () = cancel.cancelled() => break err,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RETRY_DELAY);
        // The same events again; they were accepted once, so they convert again.
        events = accepted
            .iter()
            .filter_map(|m| TwinEvent::from_shared_cloudevent(m.shared_event(), received).ok())
            .collect();
    };
    let reason = released.chain();
    for message in accepted {
        message.retry(&reason).await;
    }
}

/// Batches of one feed being stored at once, at most: one commits while the next is collected
/// (a feed that waited for each commit before collecting again added the commit time to every
/// event's latency).
const FEED_BATCHES_IN_FLIGHT: u32 = 2;

/// Consumes `feed` until it closes or `cancel` fires, storing batches through `ingestor` and
/// acknowledging each message only after its batch committed. Returns once the batches taken
/// are settled.
pub async fn ingest_feed<F: EventFeed>(
    mut feed: F,
    ingestor: Ingestor,
    max_batch: usize,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(FEED_BATCHES_IN_FLIGHT as usize));
    loop {
        if ingestor.failure().is_some() {
            // Halted: take nothing more, so the source keeps its events (and pushes back on
            // its producers) until the operator restarts the repaired store.
            cancel.cancelled().await;
            break;
        }
        let slot = tokio::select! {
            () = cancel.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
        };
        let batch = tokio::select! {
            () = cancel.cancelled() => break,
            batch = feed.next_batch(max_batch.max(1)) => batch,
        };
        if batch.is_empty() {
            break;
        }
        let received = Utc::now();
        let mut events = Vec::with_capacity(batch.len());
        let mut accepted = Vec::with_capacity(batch.len());
        for message in batch {
            match TwinEvent::from_shared_cloudevent(message.shared_event(), received) {
                Ok(event) => {
                    events.push(event);
                    accepted.push(message);
                }
                Err(err) => {
                    metrics::counter!(metric_names::REJECTED, "reason" => "invalid").increment(1);
                    tracing::warn!(id = message.event().id(), %err, "rejecting a non-twin event");
                    message.reject(&err.to_string()).await;
                }
            }
        }
        let (ingestor, cancel) = (ingestor.clone(), cancel.clone());
        tokio::spawn(async move {
            store_batch(&ingestor, events, accepted, received, &cancel).await;
            drop(slot);
        });
    }
    // Every slot back means every batch taken is settled.
    let _ = slots.acquire_many(FEED_BATCHES_IN_FLIGHT).await;
}
