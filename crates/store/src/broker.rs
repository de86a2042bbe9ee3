//! Adapter from a ktwin-broker subscription to the store's [`EventFeed`], so the local runtime
//! ingests straight from the bus (no HTTP hop). The coupling stays in this file.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloudevents::Event;
use ktwin_broker::{Delivery, Subscription};

use crate::ingest::{EventFeed, FeedMessage};

/// Told about every event a [`BrokerFeed`] stored, once it is durable and before it is
/// acknowledged (a benchmark measuring latency up to the store, say).
pub trait StoredObserver: Send + Sync {
    /// `event` is durable in the store.
    fn stored(&self, event: &Event);
}

/// A broker subscription read in batches that linger for more deliveries, so batches (and
/// commits) grow under load; see [`Subscription::recv_batch_until_quiet`] for when a batch
/// ends.
pub struct BrokerFeed {
    subscription: Subscription,
    linger: Duration,
    quiet: Duration,
    observer: Option<Arc<dyn StoredObserver>>,
}

impl std::fmt::Debug for BrokerFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerFeed")
            .field("subscription", &self.subscription)
            .field("linger", &self.linger)
            .field("quiet", &self.quiet)
            .field("observed", &self.observer.is_some())
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
            observer: None,
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

    /// Tells `observer` about every event once it is stored.
    #[must_use]
    pub fn observed_by(mut self, observer: Arc<dyn StoredObserver>) -> Self {
        self.observer = Some(observer);
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
                observer: self.observer.clone(),
            })
            .collect()
    }
}

/// A delivery given to the store: acknowledged once stored, requeued on a transient failure,
/// dead-lettered when it can never be stored.
pub struct FedDelivery {
    delivery: Delivery,
    observer: Option<Arc<dyn StoredObserver>>,
}

#[async_trait]
impl FeedMessage for FedDelivery {
    fn event(&self) -> &Event {
        self.delivery.event()
    }

    async fn ack(self) {
        if let Some(observer) = &self.observer {
            observer.stored(self.delivery.event());
        }
        if let Err(err) = self.delivery.ack().await {
            // Unacknowledged means redelivered, and redelivery is idempotent here.
            tracing::warn!(%err, "acknowledging a stored event failed");
        }
    }

    async fn retry(self, reason: &str) {
        if let Err(err) = self.delivery.nack(reason).await {
            tracing::warn!(%err, "requeueing an unstored event failed");
        }
    }

    async fn reject(self, reason: &str) {
        if let Err(err) = self.delivery.dead_letter(reason).await {
            tracing::warn!(%err, "dead-lettering a non-twin event failed");
        }
    }
}
