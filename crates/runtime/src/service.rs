//! Twin services as the runtime sees them: something events are delivered to (a pool of
//! child processes, or an SDK handler mounted in-process), fed from the service's broker
//! subscription with acknowledgement after success and redelivery after failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use cloudevents::Event;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ktwin_broker::{Broker, Delivery, Subscription};
use ktwin_sdk::{TwinContext, TwinHandler};
use metrics::{Counter, Gauge, Histogram};
use tokio_util::sync::CancellationToken;

use crate::pool::{DeliveryError, PoolStats, ServicePool};

/// Where a twin service's events go.
#[async_trait]
pub trait ServiceEndpoint: Send + Sync {
    /// Handles `event` (shared with the delivery that settles it once handled); returns the
    /// events the service emitted in reply.
    async fn deliver(&self, event: Arc<Event>) -> Result<Vec<Event>, DeliveryError>;
    /// Replicas and load.
    fn stats(&self) -> PoolStats;
    /// Stops after finishing what is in flight.
    async fn shutdown(&self);
}

#[async_trait]
impl ServiceEndpoint for ServicePool {
    async fn deliver(&self, event: Arc<Event>) -> Result<Vec<Event>, DeliveryError> {
        ServicePool::deliver(self, event).await
    }

    fn stats(&self) -> PoolStats {
        ServicePool::stats(self)
    }

    async fn shutdown(&self) {
        ServicePool::shutdown(self).await;
    }
}

/// A twin service built on the SDK, called in-process (no HTTP hop, always one "replica").
pub struct InProcessService {
    name: String,
    handler: Arc<dyn TwinHandler>,
    ctx: TwinContext,
    in_flight: AtomicUsize,
}

impl InProcessService {
    /// Mounts `handler` with the runtime's context (graph and states).
    pub fn new(name: &str, handler: Arc<dyn TwinHandler>, ctx: TwinContext) -> Self {
        Self {
            name: name.to_owned(),
            handler,
            ctx,
            in_flight: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl ServiceEndpoint for InProcessService {
    async fn deliver(&self, event: Arc<Event>) -> Result<Vec<Event>, DeliveryError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = ktwin_sdk::dispatch(self.handler.as_ref(), &self.ctx, event).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        result.map_err(|err| DeliveryError::Rejected {
            replica: format!("{} (in-process)", self.name),
            status: err.status().as_u16(),
            body: err.to_string(),
        })
    }

    fn stats(&self) -> PoolStats {
        PoolStats {
            replicas: 1,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            waiting: 0,
        }
    }

    async fn shutdown(&self) {}
}

/// Names of the metrics the runtime records per twin service (label `service`, the interface).
pub mod metric_names {
    /// Histogram of the seconds from handing an event to the service to its reply events being
    /// published.
    pub const EVENT_SECONDS: &str = "ktwin_service_event_duration_seconds";
    /// Counter of deliveries, label `outcome` (`acked` or `nacked`).
    pub const EVENTS: &str = "ktwin_service_events_total";
    /// Gauge of the service's running replicas.
    pub const REPLICAS: &str = "ktwin_service_replicas";
}

/// Counts of a subscription loop, and the service's Prometheus series.
#[derive(Debug)]
pub struct DeliveryCounters {
    /// Events handled and acknowledged.
    pub acked: AtomicU64,
    /// Failed deliveries (requeued or dead-lettered).
    pub nacked: AtomicU64,
    /// Events emitted by the service and published.
    pub emitted: AtomicU64,
    series: ServiceSeries,
}

/// The series of one service, registered once (a registry look-up per event costs more than an
/// in-process handler's work).
#[derive(Debug)]
struct ServiceSeries {
    seconds: Histogram,
    acked: Counter,
    nacked: Counter,
    replicas: Gauge,
}

impl DeliveryCounters {
    /// Counters of service `service`, whose series exist (at zero) from now on.
    pub fn new(service: &str) -> Self {
        let label = [("service", service.to_owned())];
        let outcome = |outcome: &'static str| {
            metrics::counter!(
                metric_names::EVENTS,
                "service" => service.to_owned(),
                "outcome" => outcome
            )
        };
        Self {
            acked: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            emitted: AtomicU64::new(0),
            series: ServiceSeries {
                seconds: metrics::histogram!(metric_names::EVENT_SECONDS, &label),
                acked: outcome("acked"),
                nacked: outcome("nacked"),
                replicas: metrics::gauge!(metric_names::REPLICAS, &label),
            },
        }
    }
}

/// Feeds `subscription` to `service` with at most `parallelism` events in flight until `stop`
/// fires, then waits for those in flight. A delivery is acknowledged once the service
/// succeeded *and* its reply events are published; otherwise it is nacked (redelivered, or
/// dead-lettered after the subscription's limit).
pub async fn feed_service(
    mut subscription: Subscription,
    service: Arc<dyn ServiceEndpoint>,
    broker: Arc<dyn Broker>,
    parallelism: usize,
    counters: Arc<DeliveryCounters>,
    stop: CancellationToken,
) {
    let parallelism = parallelism.max(1);
    // Deliveries run concurrently inside this task rather than as a task each: a task per
    // event (allocated, scheduled, often stolen by the other worker) cost more than an
    // in-process handler's work, and a batch taken in one wake-up is served in one.
    let mut in_flight = FuturesUnordered::new();
    let mut received = Vec::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        let room = parallelism - in_flight.len();
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            () = stop.cancelled(), if open => open = false,
            n = subscription.recv_into(&mut received, room), if open && room > 0 => {
                if n == 0 {
                    open = false;
                }
                for delivery in received.drain(..) {
                    in_flight.push(serve(delivery, &*service, &*broker, &counters));
                }
            }
        }
    }
}

/// Delivers one event, publishes what the service emitted, then settles the delivery.
async fn serve(
    delivery: Delivery,
    service: &dyn ServiceEndpoint,
    broker: &dyn Broker,
    counters: &DeliveryCounters,
) {
    let started = Instant::now();
    let outcome = match service.deliver(delivery.shared_event()).await {
        Ok(emitted) => {
            let count = emitted.len() as u64;
            match broker.publish_all(emitted).await {
                Ok(_) => {
                    counters.emitted.fetch_add(count, Ordering::Relaxed);
                    Ok(())
                }
                Err(err) => Err(format!("publishing the service's reply events: {err}")),
            }
        }
        Err(err) => Err(err.to_string()),
    };
    let series = &counters.series;
    series.seconds.record(started.elapsed().as_secs_f64());
    series.replicas.set(service.stats().replicas as f64);
    match outcome {
        Ok(()) => {
            counters.acked.fetch_add(1, Ordering::Relaxed);
            series.acked.increment(1);
            if let Err(err) = delivery.ack().await {
                tracing::warn!(%err, "ack failed");
            }
        }
        Err(reason) => {
            counters.nacked.fetch_add(1, Ordering::Relaxed);
            series.nacked.increment(1);
            tracing::warn!(%reason, "delivery failed, requeueing");
            if let Err(err) = delivery.nack(&reason).await {
                tracing::warn!(%err, "nack failed");
            }
        }
    }
}
