//! Nothing accepted is lost when `ktwin up` stops before its queues drain: with a
//! `--processes` service that never answers (its process never listens), the events still
//! queued when the drain period ends are kept as dead letters (reason `shutdown`) in the store,
//! where `ktwin dead-letters replay` finds them after the restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cloudevents::{EventBuilder, EventBuilderV10};
use ktwin_runtime::up::{MqttChoice, Platform, SHUTDOWN_REASON, UpOptions};
use ktwin_runtime::{Console, PlannedProject};
use ktwin_store::BackendChoice;
use reqwest::StatusCode;

const EVENTS: usize = 30;

/// The mqtt-device example with its service run as a process that never listens on `PORT`.
fn project(dir: &std::path::Path) -> std::path::PathBuf {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mqtt-device");
    let project = dir.join("project");
    std::fs::create_dir_all(project.join("models")).unwrap();
    std::fs::copy(example.join("world.yaml"), project.join("world.yaml")).unwrap();
    std::fs::copy(
        example.join("models/vehicle.json"),
        project.join("models/vehicle.json"),
    )
    .unwrap();
    std::fs::write(
        project.join("ktwin.yaml"),
        "name: mqtt-device\nnamespace: ktwin\nmodels: [models]\nstripPrefix: \"dtmi:example:\"\n\
         world: world.yaml\nservices:\n  vehicle:\n    command: [sleep, \"600\"]\n",
    )
    .unwrap();
    project
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_at_the_drain_timeout_are_kept_as_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let planned = PlannedProject::load(&project(dir.path()), &BTreeMap::new())
        .expect("the project loads and plans");
    let store = dir.path().join("store");
    let mut options = UpOptions::new(dir.path());
    options.http_port = 0;
    options.mqtt = MqttChoice::Embedded { port: 0 };
    options.store = BackendChoice::Embedded(store.clone());
    options.processes = true;
    options.ready_timeout = Duration::from_secs(120);
    options.console = Console::recording();
    let platform = Platform::start(planned, options)
        .await
        .expect("platform starts");
    let base = format!("http://{}", platform.http);
    let client = common::api_client(&platform);
    let mut sent = BTreeSet::new();
    for i in 0..EVENTS {
        let id = format!("queued-{i}");
        let event = EventBuilderV10::new()
            .id(&id)
            .ty("ktwin.real.vehicle")
            .source("vehicle-car1")
            .data("application/json", serde_json::json!({"speed": i}))
            .build()
            .unwrap();
        let status = common::post_to_broker(&client, &base, event).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        sent.insert(id);
    }
    let started = Instant::now();
    while platform.stats().queued() < EVENTS {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the service's queue holds the events: {:?}",
            platform.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = Instant::now();
    platform.shutdown(Duration::from_millis(500)).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(60),
        "shutdown does not wait for the replica that never starts: {:?}",
        stopping.elapsed()
    );

    let backend = BackendChoice::Embedded(store).open().await.unwrap();
    let letters = backend
        .dead_letters()
        .expect("the embedded store keeps dead letters")
        .list(None, 1000)
        .await
        .unwrap()
        .items;
    let kept: BTreeSet<String> = letters
        .iter()
        .filter(|l| l.letter.reason == SHUTDOWN_REASON && l.letter.origin == "twin/vehicle")
        .filter_map(|l| l.letter.header("ce-id").map(str::to_owned))
        .collect();
    assert_eq!(
        kept, sent,
        "every queued event is a dead letter: {letters:?}"
    );
}
