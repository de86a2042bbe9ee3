//! Adapter from a ktwin-broker subscription to the store's [`EventFeed`], so the local runtime
//! ingests straight from the bus (no HTTP hop). The coupling stays in this file.

use std::time::Duration;

use async_trait::async_trait;
use cloudevents::Event;
use ktwin_broker::{Delivery, Subscription};

use crate::ingest::{EventFeed, FeedMessage};

/// A broker subscription read in batches: after the first delivery it waits up to `linger`
/// for more, so batches (and commits) grow under load.
#[derive(Debug)]
pub struct BrokerFeed {
    subscription: Subscription,
    linger: Duration,
}

impl BrokerFeed {
    /// Feeds from `subscription`, lingering `linger` to fill batches.
    pub fn new(subscription: Subscription, linger: Duration) -> Self {
        Self {
            subscription,
            linger,
        }
    }
}

#[async_trait]
impl EventFeed for BrokerFeed {
    type Message = Delivery;

    async fn next_batch(&mut self, max: usize) -> Vec<Delivery> {
        self.subscription.recv_batch_linger(max, self.linger).await
    }
}

#[async_trait]
impl FeedMessage for Delivery {
    fn event(&self) -> &Event {
        Delivery::event(self)
    }

    async fn ack(self) {
        if let Err(err) = Delivery::ack(self).await {
            // Unacknowledged means redelivered, and redelivery is idempotent here.
            tracing::warn!(%err, "acknowledging a stored event failed");
        }
    }

    async fn retry(self, reason: &str) {
        if let Err(err) = Delivery::nack(self, reason).await {
            tracing::warn!(%err, "requeueing an unstored event failed");
        }
    }

    async fn reject(self, reason: &str) {
        if let Err(err) = Delivery::dead_letter(self, reason).await {
            tracing::warn!(%err, "dead-lettering a non-twin event failed");
        }
    }
}
