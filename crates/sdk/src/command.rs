//! Which instance executes a received command: the original platform had two conventions for a
//! command's `source`, and ktwin answers both as the original did.
//!
//! - The Go SDK (and ktwin's SDKs) send the **target** as `source`: the source is an instance
//!   of the command's interface, and it executes the command.
//! - The original Python SDK sent the **sender** as `source`; its receiver found its target as
//!   the instance of the command's interface the sender has a relationship to
//!   (`get_twin_graph_by_relation(<command interface>, <source>)`), and failed when there was
//!   none.
//!
//! The twin graph tells them apart: a source that is an instance of the command's interface is
//! the target; a source that is a twin of another interface is the sender, and the target is
//! the one instance of the command's interface it is related to. A sender related to none, or
//! to several (the original took the first; which one is then arbitrary), is
//! [`HandlerError::Invalid`] naming the command, the sender and what it relates to: the event
//! is dead-lettered rather than applied to a twin named after its sender. A source the graph
//! does not know is taken as the target, as before this module existed.

use std::collections::BTreeSet;

use crate::context::TwinContext;
use crate::error::HandlerError;
use crate::event::TwinEvent;

/// `command` with its executing instance resolved (see the module's documentation).
pub(crate) async fn resolve_target(
    command: TwinEvent,
    ctx: &TwinContext,
) -> Result<TwinEvent, HandlerError> {
    let interface = command.interface();
    let source = command.instance();
    let graph = ctx.graph();
    if graph.twin(interface, source).await?.is_some() {
        return Ok(command);
    }
    let Some(sender) = graph.instance(source).await? else {
        return Ok(command);
    };
    if sender.interface.is_empty() || sender.interface == interface {
        return Ok(command);
    }
    let targets: BTreeSet<&str> = sender
        .relationships
        .iter()
        .filter(|r| r.interface == interface)
        .map(|r| r.instance.as_str())
        .collect();
    let what = || {
        format!(
            "command {} ({}): its source {source} is a twin of {}, not of {interface}; taken \
             as the sender (the original Python convention), it",
            command.id(),
            command.event_type(),
            sender.interface
        )
    };
    let mut found = targets.iter();
    match (found.next(), found.next()) {
        (Some(target), None) => {
            let target = (*target).to_owned();
            tracing::debug!(%source, %target, "command in the sender convention");
            Ok(command.sent_to(target))
        }
        (None, _) => Err(HandlerError::Invalid(format!(
            "{} has no relationship to a twin of {interface}",
            what()
        ))),
        (Some(_), Some(_)) => Err(HandlerError::Invalid(format!(
            "{} is related to several twins of {interface} ({}), so the target is ambiguous",
            what(),
            targets.iter().copied().collect::<Vec<_>>().join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use cloudevents::{AttributesReader, Event, EventBuilder as _, EventBuilderV10};
    use ktwin_events::EventType;

    use crate::emit::store_event;
    use crate::graph::StaticGraph;
    use crate::handler::{TwinHandler, dispatch};
    use crate::state::MemoryStates;
    use crate::{HandlerError, TwinContext, TwinEvent};

    const PARKING: &str = "ngsi-ld-city-offstreetparking";

    /// The parking service's shape: records who executes and who sent, stores for the executor.
    #[derive(Default)]
    struct Parking {
        seen: Mutex<Vec<(String, Option<String>)>>,
    }

    #[async_trait]
    impl TwinHandler for Parking {
        fn subscriptions(&self) -> Vec<EventType> {
            vec![EventType::command(PARKING, "updatevehiclecount").unwrap()]
        }

        async fn handle(
            &self,
            event: &TwinEvent,
            _ctx: &TwinContext,
        ) -> Result<Vec<Event>, HandlerError> {
            self.seen.lock().unwrap().push((
                event.instance().to_owned(),
                event.sender().map(str::to_owned),
            ));
            Ok(vec![store_event(
                event.interface(),
                event.instance(),
                serde_json::json!({"occupiedSpotNumber": 1}),
            )?])
        }
    }

    fn ctx() -> TwinContext {
        let graph = StaticGraph::from_json(
            r#"{"twinInstances":[
            {"name":"p1","interface":"ngsi-ld-city-offstreetparking"},
            {"name":"p2","interface":"ngsi-ld-city-offstreetparking"},
            {"name":"s1","interface":"ngsi-ld-city-parkingspot","relationships":[
                {"name":"refOffStreetParking","interface":"ngsi-ld-city-offstreetparking","instance":"p1"},
                {"name":"refDevice","interface":"ngsi-ld-city-device","instance":"d1"}]},
            {"name":"s2","interface":"ngsi-ld-city-parkingspot","relationships":[
                {"name":"refOffStreetParking","interface":"ngsi-ld-city-offstreetparking","instance":"p1"},
                {"name":"refOther","interface":"ngsi-ld-city-offstreetparking","instance":"p2"}]},
            {"name":"s3","interface":"ngsi-ld-city-parkingspot"},
            {"name":"s4","interface":"ngsi-ld-city-parkingspot","relationships":[
                {"name":"refOffStreetParking","interface":"ngsi-ld-city-offstreetparking","instance":"p2"},
                {"name":"refAgain","interface":"ngsi-ld-city-offstreetparking","instance":"p2"}]}]}"#,
        )
        .unwrap();
        TwinContext::in_memory(graph, Arc::new(MemoryStates::new()))
    }

    fn command(source: &str) -> Event {
        EventBuilderV10::new()
            .id("c-1")
            .ty("ktwin.command.ngsi-ld-city-offstreetparking.updateVehicleCount")
            .source(source)
            .data("application/json", serde_json::json!({"vehicleEntranceCount": 1}))
            .build()
            .unwrap()
    }

    async fn run(source: &str) -> (Result<Vec<Event>, HandlerError>, Vec<(String, Option<String>)>) {
        let parking = Parking::default();
        let result = dispatch(&parking, &ctx(), command(source)).await;
        let seen = parking.seen.lock().unwrap().clone();
        (result, seen)
    }

    #[tokio::test]
    async fn a_source_of_the_command_interface_is_the_target() {
        let (result, seen) = run("p1").await;
        assert_eq!(seen, vec![("p1".to_owned(), None)]);
        assert_eq!(result.unwrap()[0].source().as_str(), "p1");
    }

    #[tokio::test]
    async fn a_sender_source_reaches_its_related_twin() {
        let (result, seen) = run("s1").await;
        assert_eq!(seen, vec![("p1".to_owned(), Some("s1".to_owned()))]);
        let emitted = result.unwrap();
        assert_eq!(emitted[0].source().as_str(), "p1");
        assert_eq!(emitted[0].ty(), "ktwin.store.ngsi-ld-city-offstreetparking");
        // Ids still derive from the received event as sent (its source), like the Python SDK.
        let (again, _) = run("s1").await;
        assert_eq!(again.unwrap()[0].id(), emitted[0].id());
        // Two relationships to the same twin are one target.
        let (_, seen) = run("s4").await;
        assert_eq!(seen, vec![("p2".to_owned(), Some("s4".to_owned()))]);
    }

    #[tokio::test]
    async fn a_sender_without_a_relationship_is_invalid_not_misfiled() {
        let (result, seen) = run("s3").await;
        assert!(seen.is_empty(), "the handler must not run: {seen:?}");
        let err = result.unwrap_err();
        assert!(matches!(err, HandlerError::Invalid(_)), "{err}");
        let text = err.to_string();
        for part in ["c-1", "s3", "ngsi-ld-city-parkingspot", "no relationship", PARKING] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
    }

    #[tokio::test]
    async fn a_sender_related_to_several_twins_is_ambiguous() {
        let (result, seen) = run("s2").await;
        assert!(seen.is_empty(), "the handler must not run: {seen:?}");
        let text = result.unwrap_err().to_string();
        assert!(text.contains("ambiguous") && text.contains("p1, p2"), "{text}");
    }

    #[tokio::test]
    async fn a_source_the_graph_does_not_know_is_the_target() {
        let (result, seen) = run("p9").await;
        assert_eq!(seen, vec![("p9".to_owned(), None)]);
        assert_eq!(result.unwrap()[0].source().as_str(), "p9");
    }
}
