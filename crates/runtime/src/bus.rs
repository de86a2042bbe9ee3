//! Adapters around the in-memory broker: a publish counter for the status line, the HTTP
//! broker ingress twin services post to (`KTWIN_BROKER`, which starts a trace for an event
//! that carries none), a probe of what the store made durable ([`StoreProbe`], re-exported),
//! and the twins' latest states read straight from the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cloudevents::{AttributesReader as _, Event};
use ktwin_broker::{
    Broker, BrokerError, DeadLetter, PublishOutcome, Subscription, SubscriptionSpec,
};
use ktwin_events::trace::TraceSampler;
use ktwin_sdk::{LookupError, StateLookup};
use ktwin_service::Problem;
use ktwin_store::{Backend, InstanceKey};

pub use crate::store_probe::StoreProbe;

/// Path of the broker ingress on the runtime's HTTP port.
pub const BROKER_PATH: &str = "/api/v1/broker";

/// A [`Broker`] that counts what is published through it (events/s on the status line).
pub struct CountingBroker {
    inner: Arc<dyn Broker>,
    published: AtomicU64,
}

impl CountingBroker {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Broker>) -> Self {
        Self {
            inner,
            published: AtomicU64::new(0),
        }
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Broker for CountingBroker {
    async fn publish(&self, event: Event) -> Result<PublishOutcome, BrokerError> {
        self.publish_shared(Arc::new(event)).await
    }

    async fn publish_shared(&self, event: Arc<Event>) -> Result<PublishOutcome, BrokerError> {
        let outcome = self.inner.publish_shared(event).await?;
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn publish_all(&self, events: Vec<Event>) -> Result<Vec<PublishOutcome>, BrokerError> {
        let outcomes = self.inner.publish_all(events).await?;
        self.published
            .fetch_add(outcomes.len() as u64, Ordering::Relaxed);
        Ok(outcomes)
    }

    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, BrokerError> {
        self.inner.subscribe(spec).await
    }

    async fn delete_subscription(&self, name: &str) -> Result<(), BrokerError> {
        self.inner.delete_subscription(name).await
    }

    async fn take_dead_letters(
        &self,
        name: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        self.inner.take_dead_letters(name, max).await
    }
}

/// `POST /api/v1/broker`: a binary or structured CloudEvent → published, `202 Accepted`
/// (the Knative broker ingress contract twin services expect behind `KTWIN_BROKER`).
/// An event posted without a trace starts one, recorded when `sampler` samples it.
pub fn ingress_router(broker: Arc<dyn Broker>, sampler: TraceSampler) -> Router {
    Router::new()
        .route(BROKER_PATH, post(receive))
        .with_state((broker, sampler))
}

async fn receive(
    State((broker, sampler)): State<(Arc<dyn Broker>, TraceSampler)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut event = match cloudevents::binding::http::to_event(&headers, body.to_vec()) {
        Ok(event) => event,
        Err(err) => {
            return Problem::new(StatusCode::BAD_REQUEST, format!("not a CloudEvent: {err}"))
                .at(BROKER_PATH)
                .into_response();
        }
    };
    let type_len = event.ty().len();
    if type_len > ktwin_events::MAX_EVENT_TYPE_LEN {
        let detail = format!(
            "event type is {type_len} bytes long; a ktwin type has at most {}",
            ktwin_events::MAX_EVENT_TYPE_LEN
        );
        return Problem::new(StatusCode::BAD_REQUEST, detail)
            .at(BROKER_PATH)
            .into_response();
    }
    // A service that does not propagate traces (the original's) posts events without one:
    // each starts a trace, so every event on the bus carries a traceparent.
    ktwin_events::trace::start_trace(&mut event, sampler);
    match broker.publish(event).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(err @ BrokerError::Backpressure { .. }) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
                .at(BROKER_PATH)
                .into_response()
        }
        Err(err) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
            .at(BROKER_PATH)
            .into_response(),
    }
}

/// Latest states for in-process services, read from the store backend without HTTP.
pub struct StoreStates(pub Arc<dyn Backend>);

#[async_trait]
impl StateLookup for StoreStates {
    async fn latest(&self, interface: &str, instance: &str) -> Result<Option<Event>, LookupError> {
        let key = InstanceKey::new(interface, instance);
        let latest = self.0.latest(&key).await.map_err(|err| {
            LookupError::new(format!("latest state of {interface}/{instance}"), err)
        })?;
        Ok(latest.map(|state| {
            use cloudevents::{EventBuilder as _, EventBuilderV10};
            EventBuilderV10::new()
                .id(state.id)
                .ty(state.event_type)
                .source(state.instance_id)
                .time(state.time)
                .data(
                    ktwin_events::JSON_CONTENT_TYPE,
                    serde_json::Value::Object(state.state),
                )
                .build()
                .expect("id, type and source are set")
        }))
    }
}
