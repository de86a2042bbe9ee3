//! Dead letters in the store, on the embedded store and PostgreSQL: kept durably with reason,
//! payload and headers, listed in order and paged over HTTP, bounded by bytes with each
//! overflow policy, deleted one by one or all at once.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::ScratchDb;
use http_body_util::BodyExt;
use ktwin_broker::{DeadLetterSink, NewDeadLetter};
use ktwin_store::api::dead_letters::DeadLetterView;
use ktwin_store::broker::StoreDeadLetters;
use ktwin_store::{
    ApiConfig, Backend, BackendChoice, DeadLetterLimits, DeadLetterUsage, IngestConfig, Ingestor,
    LetterSelection, OverflowPolicy, StoreError,
};
use serde_json::Value;
use tower::ServiceExt;

fn letter(n: usize, payload: &[u8]) -> NewDeadLetter {
    NewDeadLetter {
        origin: "ingress".into(),
        reason: format!("payload {n} is not JSON"),
        headers: vec![
            (
                "x-ktwin-topic".into(),
                format!("ktwin/real/city-pole/pole-{n}"),
            ),
            ("x-ktwin-reject-kind".into(), "not_json".into()),
        ],
        payload: payload.to_vec(),
    }
}

async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Every letter over HTTP, following the pages.
async fn listed(app: &Router) -> Vec<DeadLetterView> {
    let mut letters = Vec::new();
    let mut uri = "/api/v1/dead-letters?limit=2".to_owned();
    loop {
        let (status, headers, body) = call(app, "GET", &uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        letters.extend(serde_json::from_value::<Vec<DeadLetterView>>(body).unwrap());
        match headers.get("x-next-cursor") {
            Some(cursor) => {
                uri = format!(
                    "/api/v1/dead-letters?limit=2&cursor={}",
                    cursor.to_str().unwrap()
                );
            }
            None => return letters,
        }
    }
}

async fn usage(app: &Router) -> DeadLetterUsage {
    let (status, _, body) = call(app, "GET", "/api/v1/dead-letters/usage").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).unwrap()
}

/// Keeps, lists, bounds and deletes letters on `backend`; returns the numbers still kept.
async fn exercise(backend: Arc<dyn Backend>) -> Vec<u64> {
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    let app = ktwin_store::router(backend.clone(), ingestor, ApiConfig::default());
    let one = letter(0, b"not json").size() as u64;
    let limits = DeadLetterLimits {
        max_bytes: 3 * one,
        overflow: OverflowPolicy::DropOldest,
    };
    let sink = StoreDeadLetters::new(backend.clone(), limits);
    // Five letters in a budget of three: the two oldest are evicted, and counted.
    for n in 0..4 {
        sink.put(letter(n, b"not json")).await.unwrap();
    }
    sink.put(letter(4, &[0xff, 0xfe, b'{'])).await.unwrap();
    let letters = listed(&app).await;
    let numbers: Vec<u64> = letters.iter().map(|l| l.seq).collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert_eq!(letters[0].reason, "payload 2 is not JSON");
    assert_eq!(letters[0].origin, "ingress");
    assert_eq!(
        letters[0].headers["x-ktwin-topic"],
        "ktwin/real/city-pole/pole-2"
    );
    assert_eq!(letters[0].payload.as_deref(), Some("not json"));
    // A payload that is not text comes back byte for byte.
    assert_eq!(letters[2].payload, None);
    assert_eq!(letters[2].payload_bytes().unwrap(), [0xff, 0xfe, b'{']);
    let used = usage(&app).await;
    assert_eq!((used.count, used.evicted), (3, 2));
    assert!(used.bytes <= limits.max_bytes, "{used:?}");

    // Refuse-new keeps what is there and says so.
    let refusing = DeadLetterLimits {
        overflow: OverflowPolicy::RefuseNew,
        ..limits
    };
    let store = backend.dead_letters().unwrap();
    let refused = store
        .put(letter(5, b"not json"), refusing)
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Full { .. }), "{refused}");
    assert_eq!(usage(&app).await.count, 3);
    // A letter larger than the whole budget is kept with its payload cut, marked.
    let huge = store
        .put(letter(6, &vec![b'x'; 10 * one as usize]), limits)
        .await
        .unwrap();
    assert!(huge.truncated && huge.evicted == 3, "{huge:?}");
    let kept = listed(&app).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].headers["x-ktwin-payload-truncated-from"],
        (10 * one).to_string()
    );
    // Deleting one, then everything.
    for n in 7..10 {
        sink.put(letter(n, b"not json")).await.unwrap();
    }
    let first = listed(&app).await[0].seq;
    let (status, _, body) = call(&app, "DELETE", &format!("/api/v1/dead-letters/{first}")).await;
    assert_eq!(
        (status, body["deleted"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let remaining: Vec<u64> = listed(&app).await.iter().map(|l| l.seq).collect();
    assert_eq!(remaining.len(), 2);
    assert!(!remaining.contains(&first));
    let (status, _, body) = call(&app, "DELETE", "/api/v1/dead-letters/x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        store
            .remove(LetterSelection::Numbers(vec![u64::MAX]))
            .await
            .unwrap(),
        0
    );
    remaining
}

#[tokio::test]
async fn the_embedded_store_keeps_dead_letters_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let choice = BackendChoice::Embedded(dir.path().join("store"));
    let remaining = exercise(choice.open().await.unwrap()).await;
    // Reopened: the same letters and counts, and new letters numbered after them.
    let backend = choice.open().await.unwrap();
    let store = backend.dead_letters().unwrap();
    let page = store.list(None, 10).await.unwrap();
    assert_eq!(
        page.items.iter().map(|l| l.seq).collect::<Vec<_>>(),
        remaining
    );
    let usage = store.usage().await.unwrap();
    assert_eq!((usage.count, usage.evicted), (2, 6));
    let next = store
        .put(letter(9, b"x"), DeadLetterLimits::default())
        .await
        .unwrap();
    assert!(next.seq > remaining[1]);
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    let app = ktwin_store::router(backend, ingestor, ApiConfig::default());
    let (status, _, body) = call(&app, "DELETE", "/api/v1/dead-letters").await;
    assert_eq!(
        (status, body["deleted"].as_u64()),
        (StatusCode::OK, Some(3))
    );
    assert_eq!(usage_of(&app).await, (0, 0));
}

async fn usage_of(app: &Router) -> (u64, u64) {
    let used = usage(app).await;
    (used.count, used.bytes)
}

#[tokio::test]
async fn postgres_keeps_dead_letters() {
    let db = ScratchDb::create("dead_letters").await;
    let remaining = exercise(
        BackendChoice::Postgres(db.url.clone())
            .open()
            .await
            .unwrap(),
    )
    .await;
    let backend = BackendChoice::Postgres(db.url.clone())
        .open()
        .await
        .unwrap();
    let store = backend.dead_letters().unwrap();
    let page = store.list(None, 10).await.unwrap();
    assert_eq!(
        page.items.iter().map(|l| l.seq).collect::<Vec<_>>(),
        remaining
    );
    assert_eq!(store.remove(LetterSelection::All).await.unwrap(), 2);
    assert_eq!(store.usage().await.unwrap().bytes, 0);
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn the_legacy_engine_says_it_keeps_none() {
    let dir = tempfile::tempdir().unwrap();
    let backend = BackendChoice::Redb(dir.path().join("store.redb"))
        .open()
        .await
        .unwrap();
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    let app = ktwin_store::router(backend, ingestor, ApiConfig::default());
    let (status, _, body) = call(&app, "GET", "/api/v1/dead-letters").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
}
