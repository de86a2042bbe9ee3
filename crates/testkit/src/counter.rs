//! A twin service that counts each instance's events in its own `OwnedStates`, for the tests
//! that check owned state stays exact over several replicas and redeliveries. Only with the
//! `sdk` feature: the one part of the testkit that knows a ktwin crate.

use std::sync::Arc;

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use ktwin_sdk::{
    Emitter, EventType, HandlerError, OwnedStates, TwinContext, TwinEvent, TwinHandler,
    async_trait, store_event,
};
use serde::{Deserialize, Serialize};

/// The interface whose real events the counter counts.
pub const COUNTER_INTERFACE: &str = "counter";

/// An instance's count, as the counter keeps it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Count {
    /// Events counted.
    pub n: u64,
}

/// Counts the real events of each instance; its reply is a store event with the count (`n`)
/// and the replica that counted (`replica`).
pub struct Counter {
    replica: String,
    counts: OwnedStates<Count>,
}

impl Counter {
    /// A counter named `replica`, with nothing counted yet.
    pub fn new(replica: impl Into<String>) -> Self {
        Self {
            replica: replica.into(),
            counts: OwnedStates::new(),
        }
    }

    /// This counter served as a twin service over `ctx`: it replies with its events and is
    /// ready at once.
    pub fn router(self, ctx: TwinContext) -> axum::Router {
        let emitter = Emitter {
            reply: true,
            broker: None,
        };
        let readiness = ktwin_service::Readiness::new();
        readiness.set_ready(true);
        ktwin_sdk::router(Arc::new(self), ctx, emitter, readiness, 64)
    }
}

#[async_trait]
impl TwinHandler for Counter {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real(COUNTER_INTERFACE).expect("a valid interface")]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        let n = self
            .counts
            .update(
                ctx,
                COUNTER_INTERFACE,
                event.instance(),
                event.id(),
                |count| {
                    let n = count.map_or(0, |c| c.n) + 1;
                    Ok((Count { n }, n))
                },
            )
            .await?;
        let data = serde_json::json!({"n": n, "replica": self.replica});
        Ok(vec![store_event(
            COUNTER_INTERFACE,
            event.instance(),
            data,
        )?])
    }
}

/// A real event of the counter's `instance` with `id`, carrying `reading`.
pub fn counter_reading(instance: &str, id: &str, reading: u64) -> Event {
    EventBuilderV10::new()
        .id(id)
        .ty(format!("ktwin.real.{COUNTER_INTERFACE}"))
        .source(instance)
        .data(
            "application/json",
            serde_json::json!({ "reading": reading }),
        )
        .build()
        .expect("a valid event")
}
