//! The broker ingress twin services post events to (`/api/v1/broker`), over HTTP: a posted
//! event reaches its subscribers, and a type longer than any of the grammar's is refused with
//! a reason before anything keeps it.

use std::sync::Arc;

use cloudevents::AttributesReader as _;

use ktwin_broker::{Broker, MemoryBroker, SubscriptionSpec, TypeFilter};
use ktwin_events::MAX_EVENT_TYPE_LEN;
use ktwin_events::trace::TraceSampler;
use ktwin_runtime::bus::{BROKER_PATH, ingress_router};
use reqwest::StatusCode;

/// Posts a binary-mode CloudEvent of type `ty` to the ingress at `url`.
async fn post(client: &reqwest::Client, url: &str, ty: &str) -> reqwest::Response {
    client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "e-1")
        .header("ce-source", "pole-1")
        .header("ce-type", ty)
        .header("content-type", "application/json")
        .body(r#"{"aqi": 42}"#)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn types_longer_than_the_grammar_allows_are_refused() {
    let broker = MemoryBroker::default();
    let mut everything = broker
        .subscribe(SubscriptionSpec::new("all", TypeFilter::prefix("ktwin.")))
        .await
        .unwrap();
    let app = ingress_router(Arc::new(broker.clone()), TraceSampler::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{BROKER_PATH}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();

    let accepted = post(&client, &url, "ktwin.real.city-pole").await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let delivery = everything.recv().await.unwrap();
    assert_eq!(delivery.event().id(), "e-1");
    delivery.ack().await.unwrap();

    let long = format!("ktwin.real.{}", "x".repeat(MAX_EVENT_TYPE_LEN));
    let refused = post(&client, &url, &long).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let problem: serde_json::Value = refused.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("event type") && detail.contains(&MAX_EVENT_TYPE_LEN.to_string()),
        "{problem}"
    );
    assert_eq!(
        broker.depth("all"),
        Some(0),
        "nothing refused is on the bus"
    );
}
