//! `ktwin dead-letters` against a live HTTP API: the event store's routes (embedded store) on a
//! loopback port, Mosquitto for device letters, and a broker ingress that records what it gets.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use clap::Parser;
use ktwin_broker::{DeadLetterSink, NewDeadLetter};
use ktwin_dispatcher::dead_letters_cli::{DeadLettersArgs, run};
use ktwin_dispatcher::device_dead_letter;
use ktwin_store::broker::StoreDeadLetters;
use ktwin_store::{ApiConfig, Backend, BackendChoice, DeadLetterLimits, IngestConfig, Ingestor};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: DeadLettersArgs,
}

async fn dead_letters(args: &[&str]) -> std::process::ExitCode {
    let cli =
        Cli::try_parse_from(std::iter::once("dead-letters").chain(args.iter().copied())).unwrap();
    run(cli.args).await.unwrap()
}

/// Serves the store API and a broker ingress recording binary-mode posts; returns the base URL.
async fn serve(backend: Arc<dyn Backend>, posted: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) -> String {
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    let ingress = axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
        posted.lock().unwrap().push((headers, body));
        axum::http::StatusCode::ACCEPTED
    });
    let app = ktwin_store::router(backend, ingestor, ApiConfig::default())
        .route("/api/v1/broker", ingress);
    ktwin_testkit::serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_are_listed_replayed_the_way_they_came_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let backend = BackendChoice::Embedded(dir.path().join("store"))
        .open()
        .await
        .unwrap();
    let posted = Arc::new(Mutex::new(Vec::new()));
    let url = serve(backend.clone(), posted.clone()).await;
    let sink = StoreDeadLetters::new(backend.clone(), DeadLetterLimits::default());
    let suffix = common::suffix();
    let topic = format!("ktwin/real/it-replay-{suffix}/pole-1");
    sink.put(device_dead_letter(
        &topic,
        b"{\"level\":3",
        "not_json",
        "not JSON",
    ))
    .await
    .unwrap();
    let event = ktwin_testkit::cloud_event(
        "e-1",
        "ktwin.real.city-pole",
        "pole-2",
        serde_json::json!({"level": 4}),
    );
    sink.put(NewDeadLetter::of_event(
        "city-pole",
        "handler failed",
        &event,
    ))
    .await
    .unwrap();
    sink.put(device_dead_letter(&topic, b"kept", "not_json", "not JSON"))
        .await
        .unwrap();
    let store = backend.dead_letters().unwrap();
    let numbers: Vec<u64> = store
        .list(None, 10)
        .await
        .unwrap()
        .items
        .iter()
        .map(|l| l.seq)
        .collect();

    assert_eq!(
        dead_letters(&["list", "--url", &url]).await,
        std::process::ExitCode::SUCCESS
    );

    // Replay the first two: the device message goes back to its topic, the event to the ingress.
    let server = common::mosquitto();
    let mut options = MqttOptions::new(format!("replay-watch-{suffix}"), &server.host, server.port);
    options.set_clean_session(true);
    let (watcher, mut watch) = AsyncClient::new(options, 16);
    watcher.subscribe(&topic, QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = watch.poll().await.unwrap() {
            break;
        }
    }
    let port = server.port.to_string();
    let replay = [
        "replay",
        "--url",
        &url,
        "--mqtt-host",
        &server.host,
        "--mqtt-port",
        &port,
        "--seq",
        &numbers[0].to_string(),
        "--seq",
        &numbers[1].to_string(),
    ];
    assert_eq!(dead_letters(&replay).await, std::process::ExitCode::SUCCESS);
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = watch.poll().await.unwrap() {
                return p;
            }
        }
    })
    .await
    .expect("the device letter was published again");
    assert_eq!(
        (received.topic.as_str(), &received.payload[..]),
        (topic.as_str(), &b"{\"level\":3"[..])
    );
    let posted = posted.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    let replayed =
        cloudevents::binding::http::to_event(&posted[0].0, posted[0].1.to_vec()).unwrap();
    // The same attributes, and the same data byte for byte (the ingress sees binary data).
    assert_eq!(
        NewDeadLetter::of_event("", "", &replayed),
        NewDeadLetter::of_event("", "", &event),
        "the event comes back as it was"
    );
    // Replayed letters are gone; the third stays until purged.
    let left: Vec<u64> = store
        .list(None, 10)
        .await
        .unwrap()
        .items
        .iter()
        .map(|l| l.seq)
        .collect();
    assert_eq!(left, [numbers[2]]);
    assert_eq!(
        dead_letters(&["purge", "--url", &url, "--all"]).await,
        std::process::ExitCode::SUCCESS
    );
    assert!(store.list(None, 10).await.unwrap().items.is_empty());
}
