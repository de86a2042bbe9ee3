//! The twin service app (`ktwin_sdk::router`), fuzzed in-process: arbitrary paths, methods,
//! headers and bodies (binary and structured CloudEvents, broken ones) reach a handler that
//! reads the event's JSON data and stores it; nothing panics, and every answer is a success or
//! a 4xx problem (`ktwin_testkit::http_fuzz`).

use std::sync::Arc;

use ktwin_sdk::{
    Emitter, EventType, HandlerError, MemoryStates, StaticGraph, TwinContext, TwinEvent,
    TwinHandler, async_trait, router, store_event,
};
use ktwin_service::Readiness;
use ktwin_testkit::http_fuzz;

/// Stores each reading of a pole (one event: it fits in the reply).
struct StoreReading;

#[async_trait]
impl TwinHandler for StoreReading {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![EventType::real("city-pole").unwrap()]
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        _ctx: &TwinContext,
    ) -> Result<Vec<cloudevents::Event>, HandlerError> {
        let data = event.json()?;
        Ok(vec![store_event(
            event.interface(),
            event.instance(),
            &data,
        )?])
    }
}

#[test]
fn any_request_is_answered_with_success_or_a_problem() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async {
        let ctx = TwinContext::in_memory(StaticGraph::default(), Arc::new(MemoryStates::new()));
        let readiness = Readiness::new();
        readiness.set_ready(true);
        let emitter = Emitter {
            reply: true,
            broker: None,
        };
        router(Arc::new(StoreReading), ctx, emitter, readiness, 16)
    });
    http_fuzz::fuzz_router(
        &runtime,
        &app,
        &["/", "/{path}", "/health", "/ready", "/metrics"],
        None,
    );
}
