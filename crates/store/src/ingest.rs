//! Ingestion with group commit: every producer (HTTP requests, broker subscriptions) hands
//! events to one [`Ingestor`], whose task appends whatever has queued up as one batch (one
//! transaction, one fsync) and acknowledges each producer only after that commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use cloudevents::{AttributesReader, Event};
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
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Submission>,
}

impl Ingestor {
    /// Starts the ingest task over `backend`.
    pub fn spawn(backend: Arc<dyn Backend>, config: IngestConfig) -> (Self, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(config.queue.max(1));
        let task = tokio::spawn(run(backend, receiver, config));
        (Self { queue }, task)
    }

    /// Stores `events`; returns once they are durable (or failed together). Submissions queued
    /// together are committed as one batch, and the report counts that whole batch.
    pub async fn submit(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        if events.is_empty() {
            return Ok(AppendReport::default());
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
        committing.spawn(commit(backend.clone(), events, waiting));
    }
    while committing.join_next().await.is_some() {}
}

#[tracing::instrument(level = "debug", skip_all, fields(backend = backend.name(), events = events.len()))]
async fn commit(
    backend: Arc<dyn Backend>,
    events: Vec<TwinEvent>,
    waiting: Vec<oneshot::Sender<Result<AppendReport, StoreError>>>,
) {
    let count = events.len();
    let started = Instant::now();
    let result = backend.append(events).await;
    metrics::histogram!(metric_names::COMMIT_SECONDS, "backend" => backend.name())
        .record(started.elapsed().as_secs_f64());
    match &result {
        Ok(report) => {
            metrics::counter!(metric_names::STORED, "backend" => backend.name())
                .increment(report.stored as u64);
            metrics::counter!(metric_names::DUPLICATES, "backend" => backend.name())
                .increment(report.duplicates as u64);
        }
        Err(err) => {
            metrics::counter!(metric_names::FAILED_BATCHES, "backend" => backend.name())
                .increment(1);
            tracing::error!(%err, events = count, "storing a batch failed");
        }
    }
    // Every producer in the batch learns the batch's outcome (counts are the batch's).
    for done in waiting {
        let _ = done.send(result.clone());
    }
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
    /// Stored: the feed may forget it.
    async fn ack(self);
    /// Not stored because of a transient failure: deliver again.
    async fn retry(self, reason: &str);
    /// Never storable (not a twin event): dead-letter it.
    async fn reject(self, reason: &str);
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
            match TwinEvent::from_cloudevent(message.event(), received) {
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
            match ingestor.submit(events).await {
                Ok(_) => {
                    for message in accepted {
                        message.ack().await;
                    }
                }
                Err(err) => {
                    let reason = err.to_string();
                    for message in accepted {
                        message.retry(&reason).await;
                    }
                    // Give the database a moment instead of spinning on redeliveries: the slot
                    // stays taken meanwhile.
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
            drop(slot);
        });
    }
    // Every slot back means every batch taken is settled.
    let _ = slots.acquire_many(FEED_BATCHES_IN_FLIGHT).await;
}
