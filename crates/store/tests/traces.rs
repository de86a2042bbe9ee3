//! Traces kept with events, on every backend: each stored event keeps the `traceparent` and
//! `tracestate` it carried, the events of one trace are found by its trace id (in time order,
//! bounded, across instances, after a reopen), and the HTTP route answers by trace id or by the
//! id of the device event that started the trace.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::DateTime;
use common::ScratchDb;
use http_body_util::BodyExt;
use ktwin_events::trace::TraceId;
use ktwin_store::{ApiConfig, Backend, BackendChoice, IngestConfig, Ingestor, TwinEvent};
use serde_json::{Map, json};
use tower::ServiceExt;

/// The device event that starts trace [`TRACE`] (its id is the trace id).
const DEVICE_EVENT: &str = "0190f5a2-7b1c-7d3e-8f00-0123456789ab";
const TRACE: &str = "0190f5a27b1c7d3e8f000123456789ab";
const OTHER: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn event(interface: &str, instance: &str, id: &str, second: i64, trace: Option<&str>) -> TwinEvent {
    let mut event = TwinEvent::new(
        &ktwin_events::EventType::store(interface).unwrap(),
        instance,
        id,
        DateTime::from_timestamp(second, 0).unwrap(),
        Map::from_iter([("n".to_owned(), json!(second))]),
    );
    event.traceparent = trace.map(|t| format!("00-{t}-{:016x}-01", second + 1));
    event.tracestate = trace.map(|_| "ktwin=00f067aa0ba902b7".to_owned());
    event
}

fn batch() -> Vec<TwinEvent> {
    vec![
        event("city-pole", "pole-2", "c", 3, Some(TRACE)),
        event("city-pole", "pole-1", "a", 1, Some(TRACE)),
        event("neighborhood", "nb-1", "b", 2, Some(TRACE)),
        event("city-pole", "pole-1", "x", 1, Some(OTHER)),
        event("city-pole", "pole-1", "untraced", 4, None),
    ]
}

async fn ids(backend: &dyn Backend, trace: &str, limit: usize) -> (Vec<String>, bool) {
    let page = backend.trace(trace.parse().unwrap(), limit).await.unwrap();
    (page.items.into_iter().map(|e| e.id).collect(), page.more)
}

async fn check(backend: Arc<dyn Backend>) {
    let report = backend.append(batch()).await.unwrap();
    assert_eq!(report.stored, 5);
    // A redelivery adds nothing to the trace.
    backend.append(batch()).await.unwrap();
    let (all, more) = ids(backend.as_ref(), TRACE, 10).await;
    assert_eq!(
        (all, more),
        (vec!["a".into(), "b".into(), "c".into()], false)
    );
    let (other, _) = ids(backend.as_ref(), OTHER, 10).await;
    assert_eq!(other, vec!["x".to_owned()]);
    let (bounded, more) = ids(backend.as_ref(), TRACE, 2).await;
    assert_eq!((bounded.len(), more), (2, true));
    let (none, _) = ids(backend.as_ref(), &"7".repeat(32), 10).await;
    assert!(none.is_empty());
    // What was sent comes back, in the history too.
    let page = backend.trace(TRACE.parse().unwrap(), 10).await.unwrap();
    let b = page.items.iter().find(|e| e.id == "b").unwrap();
    assert_eq!(b, &batch()[2]);
    let history = backend
        .history(
            &ktwin_store::InstanceKey::new("city-pole", "pole-1"),
            &ktwin_store::HistoryQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let untraced = history.items.iter().find(|e| e.id == "untraced").unwrap();
    assert_eq!(
        (&untraced.traceparent, &untraced.tracestate),
        (&None, &None)
    );
    assert!(history.items.iter().any(|e| e == &batch()[1]));
    // A deleted instance's events leave the trace.
    backend
        .delete(&ktwin_store::InstanceKey::new("city-pole", "pole-2"))
        .await
        .unwrap();
    let (after_delete, _) = ids(backend.as_ref(), TRACE, 10).await;
    assert_eq!(after_delete, vec!["a".to_owned(), "b".to_owned()]);
    route(backend).await;
}

/// `GET /api/v1/traces/{id}` by trace id and by the id of the event that started the trace.
async fn route(backend: Arc<dyn Backend>) {
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    let app = ktwin_store::router(backend, ingestor, ApiConfig::default());
    let get = async |path: String| {
        let response = app
            .clone()
            .oneshot(Request::get(&path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        )
    };
    for id in [TRACE, DEVICE_EVENT] {
        let (status, body) = get(format!("/api/v1/traces/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let ids: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b"], "{id}");
        assert_eq!(
            body[0]["traceparent"],
            format!("00-{TRACE}-0000000000000002-01")
        );
        assert_eq!(body[0]["tracestate"], "ktwin=00f067aa0ba902b7");
    }
    let (status, _) = get("/api/v1/traces/x?limit=0".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(TraceId::of_event_id(DEVICE_EVENT).to_string(), TRACE);
}

#[tokio::test]
async fn traces_on_fjall_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let backend = common::open_embedded(dir.path(), common::FJALL).await;
    backend.append(batch()).await.unwrap();
    drop(backend);
    let reopened = common::open_embedded(dir.path(), common::FJALL).await;
    let (kept, _) = ids(reopened.as_ref(), TRACE, 10).await;
    assert_eq!(kept, ["a", "b", "c"]);
}

#[tokio::test]
async fn traces_on_fjall() {
    let dir = tempfile::tempdir().unwrap();
    check(common::open_embedded(dir.path(), common::FJALL).await).await;
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn traces_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    check(common::open_embedded(dir.path(), common::REDB).await).await;
}

#[tokio::test]
async fn traces_on_postgres() {
    let db = ScratchDb::create("traces").await;
    check(
        BackendChoice::Postgres(db.url.clone())
            .open()
            .await
            .unwrap(),
    )
    .await;
}
