//! Subscriptions, deliveries and their settlement (ack, requeue, dead-letter).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cloudevents::Event;
use futures::FutureExt;

use crate::{BrokerError, TypeFilter};

/// Default number of deliveries after which a failing event is dead-lettered.
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;

/// What to subscribe to.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// Durable name of the subscription (the RabbitMQ queue name). Several [`Subscription`]s with
    /// the same name compete for its events.
    pub name: String,
    /// Which event types the subscription receives.
    pub filter: TypeFilter,
    /// After this many failed deliveries ([`Delivery::nack`]) an event is dead-lettered.
    pub max_deliveries: u32,
    /// Deliveries handed out but not yet settled, at most (RabbitMQ prefetch).
    pub prefetch: u16,
}

impl SubscriptionSpec {
    /// A subscription named `name` receiving `filter`, with default limits.
    pub fn new(name: impl Into<String>, filter: TypeFilter) -> Self {
        Self {
            name: name.into(),
            filter,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            prefetch: 256,
        }
    }

    /// Sets the delivery limit (at least 1).
    pub fn max_deliveries(mut self, max: u32) -> Self {
        self.max_deliveries = max.max(1);
        self
    }

    /// Sets the prefetch (at least 1).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }
}

/// How a delivery was settled by the broker implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settlement {
    Ack,
    Requeue,
    DeadLetter(String),
}

/// The implementation side of a delivery: settles it on its broker.
#[async_trait]
pub(crate) trait Settle: Send + Sync {
    /// Settles the delivery of `event` (handed back so requeues need no copy).
    async fn settle(
        self: Box<Self>,
        event: Arc<Event>,
        settlement: Settlement,
    ) -> Result<(), BrokerError>;
    /// Called when a delivery is dropped unsettled: it must come back (at-least-once).
    fn requeue_on_drop(self: Box<Self>, event: Arc<Event>);
}

/// What [`Delivery::nack`] did with the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackOutcome {
    /// It will be delivered again.
    Requeued,
    /// It reached the delivery limit and went to the dead-letter queue.
    DeadLettered,
}

/// One event handed to a subscriber. Settle it with [`ack`](Self::ack) once handled, or
/// [`nack`](Self::nack) / [`dead_letter`](Self::dead_letter); a delivery dropped unsettled is
/// requeued.
pub struct Delivery {
    /// Always `Some` until settled. Shared, not copied, with every queue the event was
    /// published to and with the handler it is delivered to.
    event: Option<Arc<Event>>,
    delivery_count: u32,
    max_deliveries: u32,
    settle: Option<Box<dyn Settle>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("event", &self.event)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub(crate) fn new(
        event: Arc<Event>,
        delivery_count: u32,
        max_deliveries: u32,
        settle: Box<dyn Settle>,
    ) -> Self {
        Self {
            event: Some(event),
            delivery_count,
            max_deliveries,
            settle: Some(settle),
        }
    }

    /// The event.
    pub fn event(&self) -> &Event {
        self.event.as_ref().expect("present until settled")
    }

    /// The event, shared: a handler that needs it beyond a borrow of the delivery (while the
    /// delivery waits to be settled) holds it without copying it.
    pub fn shared_event(&self) -> Arc<Event> {
        Arc::clone(self.event.as_ref().expect("present until settled"))
    }

    /// How many times this event has been delivered, this time included (1 = first time).
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// Whether this is a redelivery (the handler may have seen the event before).
    pub fn is_redelivery(&self) -> bool {
        self.delivery_count > 1
    }

    async fn settle(mut self, settlement: Settlement) -> Result<(), BrokerError> {
        match (self.settle.take(), self.event.take()) {
            (Some(settle), Some(event)) => settle.settle(event, settlement).await,
            _ => Ok(()),
        }
    }

    /// The handler succeeded: the event is done.
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.settle(Settlement::Ack).await
    }

    /// The handler failed with `reason`: deliver again later, unless the delivery limit is
    /// reached, in which case the event is dead-lettered with `reason`.
    pub async fn nack(self, reason: &str) -> Result<NackOutcome, BrokerError> {
        if self.delivery_count >= self.max_deliveries {
            let reason = format!(
                "failed {} deliveries (limit {}); last error: {reason}",
                self.delivery_count, self.max_deliveries
            );
            self.settle(Settlement::DeadLetter(reason)).await?;
            Ok(NackOutcome::DeadLettered)
        } else {
            self.settle(Settlement::Requeue).await?;
            Ok(NackOutcome::Requeued)
        }
    }

    /// The event can never be handled (poison): move it to the dead-letter queue with `reason`.
    pub async fn dead_letter(self, reason: &str) -> Result<(), BrokerError> {
        self.settle(Settlement::DeadLetter(reason.to_owned())).await
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let (Some(settle), Some(event)) = (self.settle.take(), self.event.take()) {
            settle.requeue_on_drop(event);
        }
    }
}

/// An event a subscription gave up on, with why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The subscription it was dead-lettered from.
    pub subscription: String,
    /// Why (delivery limit reached, undecodable message, handler verdict).
    pub reason: String,
    /// The event, when it could be decoded.
    pub event: Option<Event>,
    /// The raw message body, when the event could not be decoded.
    pub raw: Option<Vec<u8>>,
    /// When it was dead-lettered.
    pub at: DateTime<Utc>,
}

/// The receiving side of a subscription, implemented per broker.
#[async_trait]
pub(crate) trait DeliverySource: Send {
    /// Waits for at least one delivery and appends up to `max` to `out`; returns 0 when the
    /// subscription is closed.
    async fn recv_many(&mut self, out: &mut Vec<Delivery>, max: usize) -> usize;
}

/// A live subscription: receive deliveries one at a time or in batches. Dropping it stops
/// consuming; unsettled deliveries are requeued.
pub struct Subscription {
    name: String,
    source: Box<dyn DeliverySource>,
    /// When a receive last returned (or the subscription was made): whatever arrived since
    /// arrived after it; only what a batch capped at its maximum left behind is older.
    last_received: tokio::time::Instant,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(name: String, source: Box<dyn DeliverySource>) -> Self {
        Self {
            name,
            source,
            last_received: tokio::time::Instant::now(),
        }
    }

    /// The subscription name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next delivery; `None` once the subscription is closed.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let mut out = Vec::with_capacity(1);
        self.recv_into(&mut out, 1).await;
        out.pop()
    }

    /// Waits for at least one delivery and returns those available, at most `max`; empty once
    /// the subscription is closed.
    pub async fn recv_batch(&mut self, max: usize) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(max.min(1024));
        self.recv_into(&mut out, max).await;
        out
    }

    /// Like [`recv_batch`](Self::recv_batch), into a buffer the caller reuses: waits for at
    /// least one delivery, appends those available (at most `max`) to `out` and returns how
    /// many; 0 once the subscription is closed. Cancel safe: a cancelled call received nothing.
    pub async fn recv_into(&mut self, out: &mut Vec<Delivery>, max: usize) -> usize {
        let received = self.source.recv_many(out, max.max(1)).await;
        self.last_received = tokio::time::Instant::now();
        received
    }

    /// Like [`recv_batch`](Self::recv_batch), but after the first delivery keeps collecting for
    /// up to `linger` until `max` are gathered (larger batches for batch writers).
    pub async fn recv_batch_linger(&mut self, max: usize, linger: Duration) -> Vec<Delivery> {
        self.recv_batch_until_quiet(max, linger, linger).await
    }

    /// Like [`recv_batch_linger`](Self::recv_batch_linger), but also stops collecting once
    /// nothing arrived for `quiet`: a batch waits out `linger` only while events keep coming,
    /// so a lone event is not held back for the whole linger.
    ///
    /// The linger does not count from the call. When events are already queued, it counts from
    /// the previous receive's return, the earliest the first of them can have arrived (or
    /// earlier, for what a batch capped at `max` left behind): a backlog that queued up while
    /// the caller was busy (a slow commit, say) for longer than `linger` is returned at once
    /// instead of lingering on top of the time it already waited. Otherwise it counts from the
    /// first event's arrival.
    pub async fn recv_batch_until_quiet(
        &mut self,
        max: usize,
        linger: Duration,
        quiet: Duration,
    ) -> Vec<Delivery> {
        let max = max.max(1);
        let mut out = Vec::with_capacity(max.min(1024));
        // Unconstrained: with the task's scheduling budget spent, a source would report nothing
        // queued even when something is.
        let queued = tokio::task::unconstrained(self.source.recv_many(&mut out, max));
        let first_arrival = match queued.now_or_never() {
            // Already queued: it arrived after the previous receive returned, at the earliest.
            Some(_) => self.last_received,
            // Cancelled while pending, so nothing was taken: wait for the next arrival.
            None => {
                self.source.recv_many(&mut out, max).await;
                tokio::time::Instant::now()
            }
        };
        let deadline = first_arrival + linger;
        while !out.is_empty() && out.len() < max {
            let wanted = max - out.len();
            let until = deadline.min(tokio::time::Instant::now() + quiet);
            match tokio::time::timeout_at(until, self.source.recv_many(&mut out, wanted)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.last_received = tokio::time::Instant::now();
        out
    }
}
