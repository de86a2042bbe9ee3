//! The event bus of ktwin: publish CloudEvents, consume subscriptions filtered on the event
//! `type`, with at-least-once acknowledgements and dead-lettering.
//!
//! Two implementations of one [`Broker`] trait:
//! - [`MemoryBroker`]: in-process, for the local runtime; a bounded queue per subscription,
//!   publishers wait when a matching queue is full (backpressure), nothing grows unbounded;
//! - [`RabbitBroker`]: RabbitMQ through lapin with the Knative RabbitMQ broker's topology and
//!   message format (headers exchange, unprefixed CloudEvent attribute headers, `x-match: all`
//!   bindings), so ktwin components interoperate with eventing-rabbitmq in a cluster.
//!
//! It knows CloudEvents and transports only: nothing about twins, models, MQTT or storage (the
//! ktwin event grammar lives in `ktwin-events`).
//!
//! ```
//! # tokio_test_block_on(async {
//! use ktwin_broker::{Broker, MemoryBroker, SubscriptionSpec, TypeFilter};
//! use cloudevents::{EventBuilder, EventBuilderV10};
//!
//! let broker = MemoryBroker::default();
//! let mut sub = broker
//!     .subscribe(SubscriptionSpec::new("pole-service", TypeFilter::prefix("ktwin.real.")))
//!     .await
//!     .unwrap();
//! let event = EventBuilderV10::new().id("1").ty("ktwin.real.city-pole").source("pole-1").build().unwrap();
//! broker.publish(event).await.unwrap();
//! let delivery = sub.recv().await.unwrap();
//! assert_eq!(delivery.event().id(), "1");
//! delivery.ack().await.unwrap();
//! # });
//! # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! # use cloudevents::AttributesReader;
//! ```

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod amqp_codec;
mod dead_letter;
mod delivery;
mod filter;
mod memory;
mod rabbitmq;

use async_trait::async_trait;
use cloudevents::Event;

pub use amqp_codec::{
    DEAD_LETTER_REASON_HEADER, DecodeError, event_from_amqp, event_to_amqp, header_string,
};
pub use dead_letter::{DeadLetterSink, NewDeadLetter};
pub use delivery::{
    DEFAULT_MAX_DELIVERIES, DeadLetter, Delivery, NackOutcome, Subscription, SubscriptionSpec,
};
pub use filter::TypeFilter;
pub use memory::{MemoryBroker, MemoryBrokerConfig, held_bytes};
pub use rabbitmq::{
    AmqpConnector, ConfirmedPublisher, QueueType, RabbitBroker, RabbitConfig, cancel_consumer,
    next_delivery,
};

/// What happened to a published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// At least one subscription received it (RabbitMQ: routed to a queue and confirmed).
    Routed,
    /// No subscription matches its type; the broker accepted and discarded it (Knative
    /// semantics: an event no trigger wants is not an error). Counted in
    /// `ktwin_broker_unroutable_events_total`.
    Unroutable,
}

/// Errors of broker operations.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A matching subscription stayed full for longer than the publish timeout.
    #[error(
        "subscription {subscription:?} stayed full for {waited:?}; its consumer is not keeping up"
    )]
    Backpressure {
        /// The full subscription.
        subscription: String,
        /// How long the publisher waited.
        waited: std::time::Duration,
    },
    /// The broker is shut down or unreachable for longer than the retry budget.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// RabbitMQ refused the publish (negative confirm).
    #[error("RabbitMQ refused event {id:?} (negative publisher confirm)")]
    Nacked {
        /// The refused event's id.
        id: String,
    },
    /// The event cannot be put on the wire.
    #[error("event {id:?} cannot be encoded: {reason}")]
    Encode {
        /// The event's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A subscription specification is unusable.
    #[error("invalid subscription {name:?}: {reason}")]
    InvalidSubscription {
        /// The subscription name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An AMQP operation failed.
    #[error("AMQP error during {operation}: {source}")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// The lapin error.
        #[source]
        source: lapin::Error,
    },
}

/// A CloudEvent bus with type-filtered, acknowledged subscriptions (at-least-once).
///
/// Object safe: share it as `Arc<dyn Broker>`.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Publishes `event`. Returns once the broker is responsible for it: enqueued into every
    /// matching subscription (in-memory; waits while one is full) or confirmed by RabbitMQ
    /// (retried across reconnects within the configured budget, always with the same event id).
    async fn publish(&self, event: Event) -> Result<PublishOutcome, BrokerError>;

    /// Publishes `event` as [`publish`](Self::publish) does while the caller keeps it (to
    /// publish it again after a failure, say). The in-memory broker shares it with its queues
    /// and RabbitMQ encodes it where it is, so neither copies it; this default copies it.
    async fn publish_shared(
        &self,
        event: std::sync::Arc<Event>,
    ) -> Result<PublishOutcome, BrokerError> {
        self.publish(Event::clone(&event)).await
    }

    /// Publishes several events, pipelined where the transport allows (RabbitMQ: all publishes
    /// go out before the confirms are awaited). Outcomes are in input order.
    async fn publish_all(&self, events: Vec<Event>) -> Result<Vec<PublishOutcome>, BrokerError> {
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            outcomes.push(self.publish(event).await?);
        }
        Ok(outcomes)
    }

    /// Creates the subscription `spec.name` if needed (declaring its filter) and starts
    /// consuming it.
    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, BrokerError>;

    /// Deletes a subscription and its dead-letter queue; events in it are discarded.
    async fn delete_subscription(&self, name: &str) -> Result<(), BrokerError>;

    /// Removes and returns up to `max` dead letters of subscription `name`, oldest first.
    async fn take_dead_letters(
        &self,
        name: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError>;
}

/// Metric names the broker records (Prometheus through the `metrics` facade).
pub mod metric_names {
    /// Counter of published events no subscription matched, label `event_type` (bounded: see
    /// [`count_unroutable`]).
    pub const UNROUTABLE: &str = "ktwin_broker_unroutable_events_total";
    /// Counter of dead-lettered events, label `subscription`.
    pub const DEAD_LETTERS: &str = "ktwin_broker_dead_letters_total";
    /// Counter of in-memory dead letters discarded over their byte bound, label `subscription`.
    pub const DEAD_LETTERS_DISCARDED: &str = "ktwin_broker_dead_letters_discarded_total";
    /// Counter of RabbitMQ reconnections.
    pub const RECONNECTS: &str = "ktwin_broker_reconnects_total";

    /// Counts an unroutable event of type `event_type`. Unroutable types are the ones nobody
    /// subscribed to, which anyone posting events can invent: past
    /// [`ktwin_events::DEFAULT_EVENT_TYPE_LABELS`] distinct types they share the `other` label.
    pub fn count_unroutable(event_type: &str) {
        static LABELS: std::sync::LazyLock<ktwin_events::EventTypeLabels> =
            std::sync::LazyLock::new(ktwin_events::EventTypeLabels::default);
        metrics::counter!(UNROUTABLE, "event_type" => LABELS.label(event_type)).increment(1);
    }
}
