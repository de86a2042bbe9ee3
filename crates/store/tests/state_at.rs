//! Time travel (`state?at=T`) against the store's own merge: on random histories appended in
//! random order and batches, the state as of any moment equals a plain RFC 7386 merge of the
//! events up to that moment in (time, id) order; as of the newest event it equals the latest
//! state the store keeps; and histories longer than a page are read whole.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, TimeZone, Utc};
use http_body_util::BodyExt as _;
use ktwin_events::EventType;
use ktwin_store::api::state_at::state_at;
use ktwin_store::{ApiConfig, Backend, IngestConfig, Ingestor, InstanceKey, TwinEvent};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;

fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (0..5i64).prop_map(Value::from),
        "[a-c]".prop_map(Value::from),
    ]
}

/// Patches over a few shared member names, nested one level, with removals (`null`).
fn patch() -> impl Strategy<Value = Map<String, Value>> {
    let member = prop_oneof![
        3 => leaf(),
        1 => prop::collection::btree_map("[xy]", leaf(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ];
    prop::collection::btree_map("[abc]", member, 0..4).prop_map(|m| m.into_iter().collect())
}

/// Events as (second of their time, patch): seconds collide, so ties are broken by id.
type RawEvents = Vec<(i64, Map<String, Value>)>;

/// Events, their arrival order, the second to read the state at, and how many commits.
fn history() -> impl Strategy<Value = (RawEvents, Vec<usize>, i64, usize)> {
    prop::collection::vec((0..12i64, patch()), 1..25).prop_flat_map(|events| {
        let n = events.len();
        (
            Just(events),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            -1..14i64,
            1..5usize,
        )
    })
}

fn event(instance: &str, index: usize, second: i64, data: &Map<String, Value>) -> TwinEvent {
    TwinEvent::new(
        &EventType::store("city-pole").unwrap(),
        instance,
        format!("e{index:03}"),
        epoch() + Duration::seconds(second),
        data.clone(),
    )
}

/// The reference: events at or before `at`, in (time, id) order, merged onto `{}`.
fn expected(events: &[TwinEvent], at: DateTime<Utc>) -> Option<(Value, String)> {
    let mut upto: Vec<&TwinEvent> = events.iter().filter(|e| e.time <= at).collect();
    upto.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    let newest = upto.last()?.id.clone();
    let state = upto.iter().fold(json!({}), |state, e| {
        common::reference_merge(state, &Value::Object(e.event_data.clone().into_map()))
    });
    Some((state, newest))
}

#[test]
fn state_at_equals_a_merge_of_the_history_up_to_then() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = runtime.block_on(common::open_embedded(dir.path(), common::FJALL));
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&history(), |(raw, order, at_second, batches)| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let instance = format!("city-pole-case{n:04}");
            let events: Vec<TwinEvent> = raw
                .iter()
                .enumerate()
                .map(|(i, (second, data))| event(&instance, i, *second, data))
                .collect();
            let arrival: Vec<TwinEvent> = order.iter().map(|&i| events[i].clone()).collect();
            let key = InstanceKey::new("city-pole", instance.as_str());
            let at = epoch() + Duration::seconds(at_second);
            runtime.block_on(async {
                // Out-of-order arrivals, in several commits.
                let chunk = arrival.len().div_ceil(batches);
                for batch in arrival.chunks(chunk) {
                    backend.append(batch.to_vec()).await.unwrap();
                }
                let found = state_at(backend.as_ref(), &key, at).await.unwrap();
                let found = found.map(|s| (Value::Object(s.state), s.id));
                prop_assert_eq!(found, expected(&events, at));
                // As of the newest event, the store's own latest state.
                let latest = backend.latest(&key).await.unwrap().unwrap();
                let newest = state_at(backend.as_ref(), &key, latest.time)
                    .await
                    .unwrap()
                    .unwrap();
                prop_assert_eq!(newest.state, latest.state);
                prop_assert_eq!(newest.id, latest.id);
                prop_assert_eq!(newest.event_count, latest.event_count);
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test]
async fn histories_longer_than_a_page_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let backend = common::open_embedded(dir.path(), common::FJALL).await;
    let instance = "city-pole-long";
    // 2,500 events: counter i at second i, and `first` set once by the oldest.
    let mut events: Vec<TwinEvent> = (0..2500)
        .map(|i| {
            let mut data = Map::new();
            data.insert("counter".into(), json!(i));
            event(instance, i, i as i64, &data)
        })
        .collect();
    events[0].event_data.insert("first".into(), json!(true));
    for batch in events.chunks(700).rev() {
        backend.append(batch.to_vec()).await.unwrap();
    }
    let key = InstanceKey::new("city-pole", instance);
    let at = epoch() + Duration::seconds(2200);
    let state = state_at(backend.as_ref(), &key, at).await.unwrap().unwrap();
    assert_eq!(
        Value::Object(state.state),
        json!({"counter": 2200, "first": true})
    );
    assert_eq!(state.event_count, 2201);
    assert_eq!(state.id, "e2200");
    assert!(
        state_at(backend.as_ref(), &key, epoch() - Duration::seconds(1))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_route_answers_like_latest_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = common::open_embedded(dir.path(), common::FJALL).await;
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    let mut first = Map::new();
    first.insert("aqiLevel".into(), json!("GOOD"));
    let mut second = Map::new();
    second.insert("aqiLevel".into(), json!("HAZARDOUS"));
    backend
        .append(vec![event("p1", 1, 0, &first), event("p1", 2, 10, &second)])
        .await
        .unwrap();
    let app = ktwin_store::router(backend, ingestor, ApiConfig::default());
    let get = |uri: String| {
        let app = app.clone();
        async move {
            let response = app
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                headers,
                serde_json::from_slice::<Value>(&body).unwrap(),
            )
        }
    };
    let path = "/api/v1/twin-events/city-pole/p1/state";
    let (status, headers, body) = get(format!("{path}?at=2024-05-01T12:00:05Z")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"aqiLevel": "GOOD"}));
    assert_eq!(headers["ce-id"], "e001");
    assert_eq!(headers["ce-time"], "2024-05-01T12:00:00Z");
    let (_, headers, body) = get(format!("{path}?at=2024-05-01T12:00:10Z")).await;
    assert_eq!(
        (body, &headers["ce-id"]),
        (json!({"aqiLevel": "HAZARDOUS"}), &"e002".parse().unwrap())
    );
    let (status, _, body) = get(format!("{path}?at=2024-05-01T11:00:00Z")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("no event stored"),
        "{body}"
    );
    let (status, _, body) = get(path.to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("\"at\""),
        "{body}"
    );
    let (status, _, body) = get(format!("{path}?at=yesterday")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("yesterday"),
        "{body}"
    );
}
