//! The handler trait every twin service implements, and the dispatch step shared by the HTTP
//! contract and the in-process runtime.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use cloudevents::{AttributesReader, AttributesWriter, Event};
use ktwin_events::trace::{SpanId, continue_trace};
use ktwin_events::{EventKind, EventType};
use sha2::{Digest, Sha256};

use crate::command::resolve_target;
use crate::context::TwinContext;
use crate::error::HandlerError;
use crate::event::TwinEvent;

/// A twin service: receives events of the types it subscribes to and returns the events to
/// emit. Mounted either behind HTTP ([`crate::serve`]) or in-process by the local runtime,
/// which calls [`dispatch`] directly.
///
/// Handlers may be called again with the same event (at-least-once delivery); [`dispatch`]
/// gives emitted events ids derived from the received one, so a redelivery emits the same ids
/// and consumers can deduplicate.
#[async_trait]
pub trait TwinHandler: Send + Sync + 'static {
    /// The event types this handler takes (real events of its interface, its commands). The
    /// runtime routes by them; [`dispatch`] acknowledges anything else without calling the
    /// handler.
    fn subscriptions(&self) -> Vec<EventType>;

    /// Processes one event.
    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError>;
}

#[async_trait]
impl<H: TwinHandler + ?Sized> TwinHandler for Arc<H> {
    fn subscriptions(&self) -> Vec<EventType> {
        (**self).subscriptions()
    }

    async fn handle(
        &self,
        event: &TwinEvent,
        ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        (**self).handle(event, ctx).await
    }
}

/// Parses `event`, calls `handler` if it subscribes to the event's type, and returns the
/// events to emit with ids derived from the received event's id and source, each a child of
/// the received event in its trace (W3C `traceparent`, see [`ktwin_events::trace`]).
///
/// A command whose `source` is a twin of another interface is taken as sent in the original
/// Python convention (`source` = the sender): the handler sees the related instance of the
/// command's interface as [`TwinEvent::instance`], and [`HandlerError::Invalid`] is returned
/// when the sender has no such relationship or several.
pub async fn dispatch(
    handler: &dyn TwinHandler,
    ctx: &TwinContext,
    event: impl Into<Arc<Event>>,
) -> Result<Vec<Event>, HandlerError> {
    let mut twin_event = TwinEvent::new(event)?;
    if !handler.subscriptions().contains(twin_event.event_type()) {
        tracing::debug!(event_type = %twin_event.event_type(), "not subscribed, skipping");
        return Ok(Vec::new());
    }
    if twin_event.kind() == EventKind::Command {
        twin_event = resolve_target(twin_event, ctx).await?;
    }
    let started = Instant::now();
    let mut emitted = handler.handle(&twin_event, ctx).await?;
    for (index, out) in emitted.iter_mut().enumerate() {
        let (id, span) = derived_identity(&twin_event, index);
        out.set_id(id);
        continue_trace(twin_event.cloud_event(), out, span);
        ktwin_service::telemetry::record_event(out, "handle", started);
    }
    Ok(emitted)
}

/// A UUID-shaped id and a span id from the received event's source and id and the emitted
/// event's position: a redelivery emits the same ids in the same trace positions.
fn derived_identity(received: &TwinEvent, index: usize) -> (String, SpanId) {
    let mut digest = Sha256::new();
    digest.update(received.cloud_event().source().as_str());
    digest.update([0]);
    digest.update(received.id());
    digest.update([0]);
    digest.update(index.to_le_bytes());
    let hash = digest.finalize();
    let (id, rest) = hash
        .split_first_chunk::<16>()
        .expect("SHA-256 has 32 bytes");
    let span = rest.first_chunk::<8>().expect("SHA-256 has 32 bytes");
    // The hash's first 16 bytes as lowercase hex in UUID groups (not a versioned UUID), the
    // next 8 as span id.
    (
        uuid::Uuid::from_bytes(*id).hyphenated().to_string(),
        SpanId::from_bytes(*span),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::store_event;
    use crate::graph::StaticGraph;
    use crate::state::MemoryStates;
    use cloudevents::{EventBuilder as _, EventBuilderV10};

    struct Echo;

    #[async_trait]
    impl TwinHandler for Echo {
        fn subscriptions(&self) -> Vec<EventType> {
            vec![EventType::real("city-pole").unwrap()]
        }

        async fn handle(
            &self,
            event: &TwinEvent,
            _ctx: &TwinContext,
        ) -> Result<Vec<Event>, HandlerError> {
            Ok(vec![
                store_event(event.interface(), event.instance(), event.json()?)?,
                store_event(event.interface(), event.instance(), event.json()?)?,
            ])
        }
    }

    fn incoming(ty: &str, id: &str) -> Event {
        EventBuilderV10::new()
            .id(id)
            .ty(ty)
            .source("pole-1")
            .data("application/json", serde_json::json!({"a": 1}))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn redelivery_emits_the_same_ids() {
        let ctx = TwinContext::in_memory(StaticGraph::default(), Arc::new(MemoryStates::new()));
        let first = dispatch(&Echo, &ctx, incoming("ktwin.real.city-pole", "e-1"))
            .await
            .unwrap();
        let again = dispatch(&Echo, &ctx, incoming("ktwin.real.city-pole", "e-1"))
            .await
            .unwrap();
        let other = dispatch(&Echo, &ctx, incoming("ktwin.real.city-pole", "e-2"))
            .await
            .unwrap();
        let ids = |events: &[Event]| events.iter().map(|e| e.id().to_owned()).collect::<Vec<_>>();
        assert_eq!(ids(&first), ids(&again));
        assert_ne!(ids(&first)[0], ids(&first)[1]);
        assert_ne!(ids(&first), ids(&other));
        assert_eq!(ids(&first)[0].len(), 36);
        // The second emitted event's id: the first 16 bytes of SHA-256("pole-1", 0, "e-1", 0,
        // 1 as 8 little-endian bytes) in UUID groups; ids must not change between releases.
        assert_eq!(ids(&first)[1], "9bfb6287-0014-7209-ba9c-2ec19e8e2728");
    }

    #[tokio::test]
    async fn emitted_events_continue_the_trace_of_the_received_one() {
        use ktwin_events::trace::{EventTrace, TRACEPARENT};
        let ctx = TwinContext::in_memory(StaticGraph::default(), Arc::new(MemoryStates::new()));
        let mut received = incoming("ktwin.real.city-pole", "e-1");
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        received.set_extension(TRACEPARENT, traceparent);
        let parent = EventTrace::of(&received).unwrap().parent;
        let emitted = dispatch(&Echo, &ctx, received.clone()).await.unwrap();
        let traces: Vec<EventTrace> = emitted
            .iter()
            .map(|e| EventTrace::of(e).expect("a traceparent"))
            .collect();
        for trace in &traces {
            assert_eq!(trace.parent.trace_id, parent.trace_id);
            assert_eq!(trace.causes, vec![parent.span_id]);
            assert_ne!(trace.parent.span_id, parent.span_id);
        }
        assert_ne!(traces[0].parent.span_id, traces[1].parent.span_id);
        // A redelivery takes the same places in the trace.
        let again = dispatch(&Echo, &ctx, received).await.unwrap();
        assert_eq!(EventTrace::of(&again[1]).unwrap(), traces[1]);
    }

    #[tokio::test]
    async fn unsubscribed_types_are_acknowledged_without_calling_the_handler() {
        let ctx = TwinContext::in_memory(StaticGraph::default(), Arc::new(MemoryStates::new()));
        let out = dispatch(&Echo, &ctx, incoming("ktwin.real.other", "e-1"))
            .await
            .unwrap();
        assert!(out.is_empty());
        let err = dispatch(&Echo, &ctx, incoming("ktwin.real", "e-1"))
            .await
            .unwrap_err();
        assert!(matches!(err, HandlerError::Invalid(_)));
    }
}
