//! The CloudEvent → MQTT dispatcher: `ktwin.virtual.*` events from a broker subscription out to
//! device topics, acknowledging each event only after the device transport confirmed it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cloudevents::AttributesReader;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ktwin_broker::{AmqpConnector, BrokerError, ConfirmedPublisher, Delivery, Subscription};
use lapin::BasicProperties;
use tokio_util::sync::CancellationToken;

use crate::TransportError;
use crate::egress::{DeviceMessage, PayloadFormat, to_device_message};
use crate::metrics::{DispatchMetrics, ResponseCode};
use ktwin_events::DeviceBindings;

/// Delivers messages to devices.
#[async_trait]
pub trait DeviceSink: Send + Sync {
    /// Sends one message; returns once the transport confirmed it.
    async fn send(&self, message: &DeviceMessage) -> Result<(), TransportError>;
    /// Whether the transport is connected (for readiness).
    fn is_connected(&self) -> bool;
}

/// The original topology: publish to RabbitMQ's `amq.topic` with routing key
/// `ktwin.virtual.<iface>.<instance>`; the MQTT plugin delivers to subscribers of
/// `ktwin/virtual/<iface>/<instance>`. Publisher confirms on.
#[derive(Debug)]
pub struct AmqpTopicSink {
    publisher: ConfirmedPublisher,
    connector: AmqpConnector,
    exchange: String,
}

impl AmqpTopicSink {
    /// Publishes to `exchange` (normally `amq.topic`).
    pub fn new(connector: AmqpConnector, exchange: &str) -> Self {
        Self {
            publisher: ConfirmedPublisher::new(
                connector.clone(),
                None,
                Duration::from_secs(30),
                Duration::from_secs(5),
            ),
            connector,
            exchange: exchange.to_owned(),
        }
    }
}

#[async_trait]
impl DeviceSink for AmqpTopicSink {
    async fn send(&self, message: &DeviceMessage) -> Result<(), TransportError> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        self.publisher
            .publish(
                &self.exchange,
                &message.routing_key(),
                false,
                &properties,
                &message.payload,
            )
            .await?;
        Ok(())
    }

    fn is_connected(&self) -> bool {
        self.connector.is_connected()
    }
}

/// Live counts of an egress dispatcher.
#[derive(Debug, Default)]
pub struct EgressCounters {
    /// Events confirmed by the device transport.
    pub sent: AtomicU64,
    /// Events dead-lettered (not virtual events, unusable sources), once the broker holds them.
    pub dead_lettered: AtomicU64,
    /// Failed sends (nacked for redelivery).
    pub failures: AtomicU64,
}

/// A CloudEvent → MQTT dispatcher.
pub struct EgressDispatcher {
    sink: Arc<dyn DeviceSink>,
    format: PayloadFormat,
    bindings: Arc<DeviceBindings>,
    metrics: DispatchMetrics,
    max_in_flight: usize,
    counters: Arc<EgressCounters>,
}

impl std::fmt::Debug for EgressDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressDispatcher")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl EgressDispatcher {
    /// A dispatcher sending through `sink` in `format`.
    pub fn new(sink: Arc<dyn DeviceSink>, format: PayloadFormat, metrics: DispatchMetrics) -> Self {
        Self {
            sink,
            format,
            bindings: Arc::default(),
            metrics,
            max_in_flight: 256,
            counters: Arc::default(),
        }
    }

    /// Sends the commands of interfaces declaring an MQTT command topic there (the
    /// subscription must carry those `ktwin.command.*` events too).
    pub fn bindings(mut self, bindings: DeviceBindings) -> Self {
        self.bindings = Arc::new(bindings);
        self
    }

    /// Sends in flight at most.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// The live counters.
    pub fn counters(&self) -> Arc<EgressCounters> {
        Arc::clone(&self.counters)
    }

    /// Dispatches until `shutdown` fires (then drains what is in flight) or the subscription
    /// closes.
    pub async fn run(self, mut subscription: Subscription, shutdown: CancellationToken) {
        let mut in_flight = FuturesUnordered::new();
        let mut open = true;
        loop {
            let accepting =
                open && !shutdown.is_cancelled() && in_flight.len() < self.max_in_flight;
            if !accepting && in_flight.is_empty() && (!open || shutdown.is_cancelled()) {
                break;
            }
            tokio::select! {
                biased;
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                delivery = subscription.recv(), if accepting => match delivery {
                    Some(delivery) => in_flight.push(self.dispatch(delivery)),
                    None => open = false,
                },
                () = shutdown.cancelled(), if open && !shutdown.is_cancelled() => {}
            }
        }
        tracing::info!(
            sent = self.counters.sent.load(Ordering::Relaxed),
            "cloudevent dispatcher drained"
        );
    }

    fn dispatch(&self, delivery: Delivery) -> impl Future<Output = ()> + Send + 'static {
        let sink = Arc::clone(&self.sink);
        let metrics = self.metrics.clone();
        let counters = Arc::clone(&self.counters);
        let format = self.format;
        let bindings = Arc::clone(&self.bindings);
        async move {
            let started = Instant::now();
            let ty = delivery.event().ty().to_owned();
            let settled = match to_device_message(delivery.event(), format, &bindings) {
                Err(error) => {
                    tracing::warn!(%error, "dead-lettering an event devices cannot get");
                    metrics.dead_letter(error.as_label());
                    metrics.observe(&ty, ResponseCode::BadRequest, started.elapsed());
                    let settled = delivery.dead_letter(&error.to_string()).await;
                    // Counted once the broker holds the dead letter, as the ingress counts.
                    if settled.is_ok() {
                        counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    }
                    settled
                }
                Ok(message) => match sink.send(&message).await {
                    Ok(()) => {
                        metrics.observe(&ty, ResponseCode::Accepted, started.elapsed());
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        delivery.ack().await
                    }
                    Err(error) => {
                        metrics.observe(&ty, ResponseCode::Failed, started.elapsed());
                        counters.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, topic = %message.topic, "device send failed");
                        delivery
                            .nack(&format!(
                                "device send failed: {}",
                                ktwin_service::error_chain(&error)
                            ))
                            .await
                            .map(drop)
                    }
                },
            };
            if let Err(error) = settled {
                log_settle_error(&error);
            }
        }
    }
}

fn log_settle_error(error: &BrokerError) {
    tracing::warn!(%error, "settling a delivery failed; the broker will redeliver it");
}
