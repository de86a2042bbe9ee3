//! Which instance executes a received command (`ktwin_sdk::dispatch`): the target named by
//! `source` (the Go convention), or, when `source` is a twin of another interface, the sender's
//! related twin (the original Python services' convention), as the Python SDK resolves it
//! (`sdk/python/tests/test_command.py`).

use std::sync::{Arc, Mutex};

use cloudevents::{AttributesReader, Event, EventBuilder as _, EventBuilderV10};
use ktwin_sdk::{
    EventType, HandlerError, MemoryStates, StaticGraph, TwinContext, TwinEvent, TwinHandler,
    async_trait, dispatch, store_event,
};

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
        .data(
            "application/json",
            serde_json::json!({"vehicleEntranceCount": 1}),
        )
        .build()
        .unwrap()
}

async fn run(
    source: &str,
) -> (
    Result<Vec<Event>, HandlerError>,
    Vec<(String, Option<String>)>,
) {
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
    for part in [
        "c-1",
        "s3",
        "ngsi-ld-city-parkingspot",
        "no relationship",
        PARKING,
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
}

#[tokio::test]
async fn a_sender_related_to_several_twins_is_ambiguous() {
    let (result, seen) = run("s2").await;
    assert!(seen.is_empty(), "the handler must not run: {seen:?}");
    let text = result.unwrap_err().to_string();
    assert!(
        text.contains("ambiguous") && text.contains("p1, p2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_source_the_graph_does_not_know_is_the_target() {
    let (result, seen) = run("p9").await;
    assert_eq!(seen, vec![("p9".to_owned(), None)]);
    assert_eq!(result.unwrap()[0].source().as_str(), "p9");
}
