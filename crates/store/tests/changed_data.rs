//! Same CloudEvent id, different data (what the original KTWIN's services post back to the
//! store), against every backend: a redelivery stays a duplicate, a change is stored as a new
//! version under a derived id that wins over the event it changes, and a redelivered change is
//! a duplicate too.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::ScratchDb;
use http_body_util::BodyExt;
use ktwin_store::{
    AppendReport, Backend, BackendChoice, HistoryQuery, IngestConfig, Ingestor, InstanceKey,
    NewVersion, TwinEvent, version_id,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const ID: &str = "0193b4a2-7c1e-7d4f-9a50-3f1c2b8e6d01";

fn reading(id: &str, micros: i64, data: Value) -> TwinEvent {
    TwinEvent {
        id: id.into(),
        time: chrono::DateTime::from_timestamp_micros(micros).unwrap(),
        source: "device-1".into(),
        event_type: "ktwin.real.air-sensor".into(),
        instance_id: "device-1".into(),
        interface_id: "air-sensor".into(),
        event_data: data.as_object().unwrap().clone().into(),
        traceparent: None,
        tracestate: None,
    }
}

fn key() -> InstanceKey {
    InstanceKey::new("air-sensor", "device-1")
}

fn version(id: &str, data: &Value) -> NewVersion {
    NewVersion {
        interface: "air-sensor".into(),
        instance: "device-1".into(),
        id: id.into(),
        stored_id: version_id(id, data.as_object().unwrap()),
    }
}

fn report(stored: usize, duplicates: usize, versions: Vec<NewVersion>) -> AppendReport {
    AppendReport {
        stored,
        duplicates,
        versions,
    }
}

async fn history_ids(backend: &dyn Backend) -> Vec<String> {
    let query = HistoryQuery {
        limit: 100,
        ..HistoryQuery::default()
    };
    let page = backend.history(&key(), &query).await.unwrap();
    page.items.into_iter().map(|e| e.id).collect()
}

async fn same_id_other_data(backend: Arc<dyn Backend>) {
    let original = json!({"batteryLevel": 12, "co2": 400});
    let changed = json!({"batteryLevel": 12, "co2": 400, "dateObserved": "2024-05-20T10:00:00Z"});
    let first = backend
        .append(vec![reading(ID, 1_000, original.clone())])
        .await
        .unwrap();
    assert_eq!(first, report(1, 0, vec![]));

    // A true redelivery, members in another order: a duplicate.
    let redelivery = reading(ID, 1_000, json!({"co2": 400, "batteryLevel": 12}));
    let again = backend.append(vec![redelivery]).await.unwrap();
    assert_eq!(again, report(0, 1, vec![]));

    // Same id, same time, other data: a new version, newer than the event it changes.
    let update = backend
        .append(vec![reading(ID, 1_000, changed.clone())])
        .await
        .unwrap();
    let expected = version(ID, &changed);
    assert_eq!(update, report(1, 0, vec![expected.clone()]));
    let latest = backend.latest(&key()).await.unwrap().unwrap();
    assert_eq!(Value::Object(latest.state), changed);
    assert_eq!(latest.id, expected.stored_id);
    assert_eq!(latest.event_count, 2);
    assert_eq!(
        history_ids(&*backend).await,
        [expected.stored_id.clone(), ID.to_owned()]
    );
    let stored = backend
        .history(
            &key(),
            &HistoryQuery {
                limit: 1,
                ..HistoryQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        Value::Object(stored.items[0].event_data.clone().into_map()),
        changed
    );

    // The change redelivered, alone and beside a new event: a duplicate.
    let again = backend
        .append(vec![reading(ID, 1_000, changed.clone())])
        .await
        .unwrap();
    assert_eq!(again, report(0, 1, vec![]));
    let beside_new = backend
        .append(vec![
            reading("next", 2_000, json!({"co2": 410})),
            reading(ID, 1_000, changed.clone()),
            reading(ID, 1_000, original.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(beside_new, report(1, 2, vec![]));
    assert_eq!(
        backend.latest(&key()).await.unwrap().unwrap().event_count,
        3
    );

    // A second change of a stored event and changes inside one batch.
    let second = json!({"co2": 999});
    let in_batch = json!({"co2": 5});
    let mixed = backend
        .append(vec![
            reading(ID, 1_000, second.clone()),
            reading("fresh", 3_000, json!({"co2": 1})),
            reading("fresh", 3_000, in_batch.clone()),
            reading("fresh", 3_000, in_batch.clone()),
            reading("fresh", 3_000, json!({"co2": 1})),
        ])
        .await
        .unwrap();
    let mut versions = mixed.versions.clone();
    versions.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        (mixed.stored, mixed.duplicates, versions),
        (
            3,
            2,
            vec![version(ID, &second), version("fresh", &in_batch)]
        )
    );
    let latest = backend.latest(&key()).await.unwrap().unwrap();
    assert_eq!(
        latest.id,
        version_id("fresh", in_batch.as_object().unwrap())
    );
    assert_eq!(latest.state["co2"], json!(5));
    assert_eq!(latest.event_count, 6);

    // A new id and its change in one batch (PostgreSQL copies such a batch).
    let one = json!({"pm10": 1});
    let two = json!({"pm10": 2});
    let both = backend
        .append(vec![
            reading("other", 500, one.clone()),
            reading("other", 500, two.clone()),
            reading("other", 500, one),
        ])
        .await
        .unwrap();
    assert_eq!(both, report(2, 1, vec![version("other", &two)]));
    assert_eq!(
        backend.latest(&key()).await.unwrap().unwrap().event_count,
        8
    );
}

#[tokio::test]
async fn changed_data_on_fjall() {
    let dir = tempfile::tempdir().unwrap();
    same_id_other_data(common::open_embedded(dir.path(), common::FJALL).await).await;
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn changed_data_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    same_id_other_data(common::open_embedded(dir.path(), common::REDB).await).await;
}

#[tokio::test]
async fn changed_data_on_postgres() {
    let db = ScratchDb::create("changed").await;
    let backend = BackendChoice::Postgres(db.url.clone())
        .open()
        .await
        .unwrap();
    same_id_other_data(backend).await;
}

/// The ingest answer lists the request's new versions, and the metric counts them.
async fn answered_and_counted(backend: Arc<dyn Backend>) {
    let name = backend.name();
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    let app = ktwin_store::router(backend, ingestor, ktwin_store::ApiConfig::default());
    let post = |data: &str| {
        Request::post("/api/v1/twin-events")
            .header("ce-specversion", "1.0")
            .header("ce-id", ID)
            .header("ce-type", "ktwin.real.air-sensor")
            .header("ce-source", "device-1")
            .header("ce-time", "2024-05-20T10:00:00Z")
            .header("content-type", "application/json")
            .body(Body::from(data.to_owned()))
            .unwrap()
    };
    let answer = async |request: Request<Body>| {
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let versions = response.headers().get(ktwin_store::NEW_VERSIONS_HEADER);
        let versions = versions.map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "a body would read as a reply to a broker");
        versions
    };
    assert_eq!(answer(post(r#"{"co2": 400}"#)).await, None);
    assert_eq!(answer(post(r#"{"co2": 400}"#)).await, None);
    let changed = json!({"co2": 400, "dateObserved": "2024-05-20T10:00:00Z"});
    let expected = version_id(ID, changed.as_object().unwrap());
    assert_eq!(answer(post(&changed.to_string())).await, Some(expected));
    assert_eq!(answer(post(&changed.to_string())).await, None);
    let metrics = ktwin_service::prometheus().render();
    let line = format!(
        "{}{{backend=\"{name}\"}} 1",
        ktwin_store::metric_names::NEW_VERSIONS
    );
    assert!(
        metrics.lines().any(|l| l == line),
        "no {line:?} in\n{metrics}"
    );
}

#[tokio::test]
async fn new_versions_are_answered_and_counted_on_fjall() {
    ktwin_service::prometheus();
    let dir = tempfile::tempdir().unwrap();
    answered_and_counted(common::open_embedded(dir.path(), common::FJALL).await).await;
}

#[tokio::test]
async fn new_versions_are_answered_and_counted_on_postgres() {
    ktwin_service::prometheus();
    let db = ScratchDb::create("changed_http").await;
    let backend = BackendChoice::Postgres(db.url.clone())
        .open()
        .await
        .unwrap();
    answered_and_counted(backend).await;
}
