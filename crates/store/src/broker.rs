//! Adapters between ktwin-broker and the store: a subscription as the store's [`EventFeed`], so
//! the local runtime ingests straight from the bus (no HTTP hop), and the store's dead letters
//! as the bus's [`DeadLetterSink`]. The coupling stays in this file.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};
use ktwin_broker::{BrokerError, DeadLetterSink, Delivery, NewDeadLetter, Subscription};

use crate::backend::Backend;
use crate::dead_letters::DeadLetterLimits;
use crate::ingest::{EventFeed, FeedMessage};

/// Told about every event a [`BrokerFeed`] stored, once it is durable and before it is
/// acknowledged (a benchmark measuring latency up to the store, say; the local runtime
/// releasing a device's PUBACK).
pub trait StoredObserver: Send + Sync {
    /// `event` is durable in the store.
    fn stored(&self, event: &Event);

    /// `event` will never be stored (not a twin event); its dead letter is kept.
    fn dead_lettered(&self, _event: &Event) {}
}

/// A broker subscription read in batches that linger for more deliveries, so batches (and
/// commits) grow under load; see [`Subscription::recv_batch_until_quiet`] for when a batch
/// ends.
pub struct BrokerFeed {
    subscription: Subscription,
    linger: Duration,
    quiet: Duration,
    observers: Arc<[Arc<dyn StoredObserver>]>,
}

impl std::fmt::Debug for BrokerFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerFeed")
            .field("subscription", &self.subscription)
            .field("linger", &self.linger)
            .field("quiet", &self.quiet)
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl BrokerFeed {
    /// Feeds from `subscription`, lingering `linger` to fill batches.
    pub fn new(subscription: Subscription, linger: Duration) -> Self {
        Self {
            subscription,
            linger,
            quiet: linger,
            observers: Arc::new([]),
        }
    }

    /// Ends a batch early once no event came for `quiet` (see
    /// [`Subscription::recv_batch_until_quiet`]), so a lone event is not held for the whole
    /// linger.
    #[must_use]
    pub fn quiet(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// Tells `observer` (too) about every event once it is stored.
    #[must_use]
    pub fn observed_by(mut self, observer: Arc<dyn StoredObserver>) -> Self {
        self.observers = self.observers.iter().cloned().chain([observer]).collect();
        self
    }
}

#[async_trait]
impl EventFeed for BrokerFeed {
    type Message = FedDelivery;

    async fn next_batch(&mut self, max: usize) -> Vec<FedDelivery> {
        self.subscription
            .recv_batch_until_quiet(max, self.linger, self.quiet)
            .await
            .into_iter()
            .map(|delivery| FedDelivery {
                delivery,
                observers: Arc::clone(&self.observers),
            })
            .collect()
    }
}

/// A delivery given to the store: acknowledged once stored, requeued on a transient failure,
/// dead-lettered when it can never be stored.
pub struct FedDelivery {
    delivery: Delivery,
    observers: Arc<[Arc<dyn StoredObserver>]>,
}

#[async_trait]
impl FeedMessage for FedDelivery {
    fn event(&self) -> &Event {
        self.delivery.event()
    }

    fn shared_event(&self) -> Arc<Event> {
        self.delivery.shared_event()
    }

    async fn ack(self) {
        for observer in self.observers.iter() {
            observer.stored(self.delivery.event());
        }
        if let Err(err) = self.delivery.ack().await {
            // Unacknowledged means redelivered, and redelivery is idempotent here.
            tracing::warn!(%err, "acknowledging a stored event failed");
        }
    }

    async fn retry(self, reason: &str) {
        // Dropped unsettled, a delivery is requeued without counting as a failed delivery: the
        // store's trouble is no fault of the event's, and must not dead-letter it.
        tracing::debug!(%reason, id = %self.delivery.event().id(), "releasing an unstored event");
        drop(self.delivery);
    }

    async fn reject(self, reason: &str) {
        let event = self.delivery.shared_event();
        match self.delivery.dead_letter(reason).await {
            Ok(()) => {
                for observer in self.observers.iter() {
                    observer.dead_lettered(&event);
                }
            }
            Err(err) => tracing::warn!(%err, "dead-lettering a non-twin event failed"),
        }
    }
}

/// A [`DeadLetterSink`] keeping letters in the store's database (see [`crate::dead_letters`]),
/// durable before `put` returns.
#[derive(Clone)]
pub struct StoreDeadLetters {
    backend: Arc<dyn Backend>,
    limits: DeadLetterLimits,
}

impl std::fmt::Debug for StoreDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreDeadLetters")
            .field("backend", &self.backend.name())
            .field("limits", &self.limits)
            .finish()
    }
}

impl StoreDeadLetters {
    /// Keeps letters in `backend` within `limits`.
    pub fn new(backend: Arc<dyn Backend>, limits: DeadLetterLimits) -> Self {
        Self { backend, limits }
    }
}

#[async_trait]
impl DeadLetterSink for StoreDeadLetters {
    async fn put(&self, letter: NewDeadLetter) -> Result<(), BrokerError> {
        let Some(store) = self.backend.dead_letters() else {
            // Only the legacy redb engine keeps none: refusing would hold the message forever.
            metrics::counter!(crate::metric_names::DEAD_LETTERS_UNKEPT).increment(1);
            tracing::error!(
                backend = self.backend.name(),
                origin = %letter.origin,
                reason = %letter.reason,
                "this backend keeps no dead letters: the letter is dropped (counted in {})",
                crate::metric_names::DEAD_LETTERS_UNKEPT
            );
            return Ok(());
        };
        store
            .put(letter, self.limits)
            .await
            .map(drop)
            .map_err(|err| {
                BrokerError::Unavailable(format!("keeping a dead letter: {}", err.chain()))
            })
    }
}
