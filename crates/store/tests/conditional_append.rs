//! Conditional appends (`If-Match` on the version `latest` gives as `ETag`), through the REST
//! API on fjall and PostgreSQL: a stale version is refused with `412` and nothing is written, a
//! current one commits, the same event again is a no-op whatever the version; and concurrent
//! read-modify-write counters lose no update.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::ScratchDb;
use http_body_util::BodyExt;
use ktwin_store::{ApiConfig, Backend, BackendChoice, IngestConfig, Ingestor};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn etag(&self) -> String {
        let etag = self.headers.get("etag").expect("latest has an ETag");
        etag.to_str().unwrap().to_owned()
    }

    fn detail(&self) -> String {
        let problem: Value = serde_json::from_slice(&self.body).unwrap();
        problem["detail"].as_str().unwrap().to_owned()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: body.to_vec(),
    }
}

/// A counter event of `instance` in binary mode, with `precondition` (header, value).
fn counter(
    instance: &str,
    id: &str,
    second: u32,
    n: u64,
    precondition: Option<(&str, &str)>,
) -> Request<Body> {
    let mut request = Request::post("/api/v1/twin-events")
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-type", "ktwin.store.counter")
        .header("ce-source", instance)
        .header("ce-time", format!("2024-05-20T10:00:{second:02}Z"))
        .header("content-type", "application/json");
    if let Some((name, value)) = precondition {
        request = request.header(name, value);
    }
    request
        .body(Body::from(json!({ "n": n }).to_string()))
        .unwrap()
}

async fn latest(app: &Router, instance: &str) -> Reply {
    let uri = format!("/api/v1/twin-events/counter/{instance}/latest");
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn history_len(app: &Router, instance: &str) -> usize {
    let uri = format!("/api/v1/twin-events/counter/{instance}");
    let reply = send(app, Request::get(uri).body(Body::empty()).unwrap()).await;
    let events: Vec<Value> = serde_json::from_slice(&reply.body).unwrap();
    events.len()
}

fn app(backend: Arc<dyn Backend>) -> Router {
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    ktwin_store::router(backend, ingestor, ApiConfig::default())
}

async fn preconditions_decide_what_is_written(backend: Arc<dyn Backend>) {
    let app = app(backend);
    // No state yet: `If-None-Match: *` creates it, and only once.
    let create = counter("c1", "e1", 1, 1, Some(("if-none-match", "*")));
    assert_eq!(send(&app, create).await.status, StatusCode::ACCEPTED);
    let again = counter("c1", "e1b", 1, 7, Some(("if-none-match", "*")));
    let refused = send(&app, again).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    assert!(refused.detail().contains("\"c1\""), "{}", refused.detail());
    assert!(refused.detail().contains("expected no stored state"));

    let read = latest(&app, "c1").await;
    let v1 = read.etag();
    assert!(
        v1.starts_with('"') && v1.ends_with('"') && v1.len() == 34,
        "{v1}"
    );
    let next = counter("c1", "e2", 2, 2, Some(("if-match", &v1)));
    assert_eq!(send(&app, next).await.status, StatusCode::ACCEPTED);
    let v2 = latest(&app, "c1").await.etag();
    assert_ne!(v1, v2);

    // A writer that read v1 lost the race: refused, naming both versions, nothing written.
    let stale = counter("c1", "e3", 3, 2, Some(("if-match", &v1)));
    let refused = send(&app, stale).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    let detail = refused.detail();
    for part in [
        "\"c1\"",
        "\"counter\"",
        v1.trim_matches('"'),
        v2.trim_matches('"'),
    ] {
        assert!(detail.contains(part), "{detail:?} lacks {part}");
    }
    assert_eq!(history_len(&app, "c1").await, 2);
    let read = latest(&app, "c1").await;
    assert_eq!(read.etag(), v2);
    let state: Value = serde_json::from_slice(&read.body).unwrap();
    assert_eq!(state, json!({"n": 2}));

    // The same event again (a writer whose first answer was lost) is a no-op success, even
    // with its now stale version.
    let resent = counter("c1", "e2", 2, 2, Some(("if-match", &v1)));
    assert_eq!(send(&app, resent).await.status, StatusCode::ACCEPTED);
    assert_eq!(history_len(&app, "c1").await, 2);
    assert_eq!(latest(&app, "c1").await.etag(), v2);

    // Any event stored for the instance, even without a precondition, moves the version.
    let plain = counter("c1", "late", 0, 0, None);
    assert_eq!(send(&app, plain).await.status, StatusCode::ACCEPTED);
    let v3 = latest(&app, "c1").await.etag();
    assert_ne!(
        v3, v2,
        "an older event merged into the state changes its version"
    );
    let stale = counter("c1", "e4", 4, 3, Some(("if-match", &v2)));
    assert_eq!(
        send(&app, stale).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    // A precondition on an instance without state fails too.
    let unknown = counter("c2", "x", 1, 1, Some(("if-match", &v3)));
    let refused = send(&app, unknown).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        refused.detail().contains("no stored state"),
        "{}",
        refused.detail()
    );
    assert_eq!(history_len(&app, "c2").await, 0);
}

async fn bad_preconditions_are_refused(backend: Arc<dyn Backend>) {
    let app = app(backend);
    for (name, value, mentions) in [
        ("if-match", "*", "one quoted version"),
        ("if-match", "abc", "one quoted version"),
        ("if-match", "\"a\", \"b\"", "one quoted version"),
        ("if-match", "W/\"a\"", "one quoted version"),
        ("if-none-match", "\"a\"", "expected *"),
    ] {
        let reply = send(&app, counter("c9", "e1", 1, 1, Some((name, value)))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}: {value}");
        assert!(reply.detail().contains(mentions), "{}", reply.detail());
    }
    let batch = json!([
        {"specversion": "1.0", "id": "b1", "type": "ktwin.store.counter", "source": "c9", "data": {"n": 1}},
        {"specversion": "1.0", "id": "b2", "type": "ktwin.store.counter", "source": "c9", "data": {"n": 2}}
    ]);
    let request = Request::post("/api/v1/twin-events")
        .header("content-type", "application/cloudevents-batch+json")
        .header("if-none-match", "*")
        .body(Body::from(batch.to_string()))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.detail().contains("takes one event, not 2"));
    assert_eq!(history_len(&app, "c9").await, 0);
}

/// Writers that each read the counter and write it plus one, retrying on `412`, never lose an
/// increment: the final count is the number of increments.
async fn concurrent_counters_lose_no_update(backend: Arc<dyn Backend>) {
    const WRITERS: usize = 6;
    const INCREMENTS: usize = 15;
    let app = app(backend);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for i in 0..INCREMENTS {
                    loop {
                        let read = latest(&app, "shared").await;
                        let (n, precondition) = if read.status == StatusCode::NOT_FOUND {
                            (0, ("if-none-match", "*".to_owned()))
                        } else {
                            let state: Value = serde_json::from_slice(&read.body).unwrap();
                            (state["n"].as_u64().unwrap(), ("if-match", read.etag()))
                        };
                        let id = format!("w{writer}-{i}");
                        let request = Request::post("/api/v1/twin-events")
                            .header("ce-specversion", "1.0")
                            .header("ce-id", id)
                            .header("ce-type", "ktwin.store.counter")
                            .header("ce-source", "shared")
                            .header("content-type", "application/json")
                            .header(precondition.0, precondition.1)
                            .body(Body::from(json!({ "n": n + 1 }).to_string()))
                            .unwrap();
                        let reply = send(&app, request).await;
                        match reply.status {
                            StatusCode::ACCEPTED => break,
                            StatusCode::PRECONDITION_FAILED => conflicts += 1,
                            other => panic!("{other}: {}", String::from_utf8_lossy(&reply.body)),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let state: Value = serde_json::from_slice(&latest(&app, "shared").await.body).unwrap();
    assert_eq!(
        state["n"],
        (WRITERS * INCREMENTS) as u64,
        "{conflicts} conflicts"
    );
    assert_eq!(history_len(&app, "shared").await, WRITERS * INCREMENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_appends_on_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let open = || common::open_embedded(dir.path(), common::FJALL);
    preconditions_decide_what_is_written(open().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_appends_on_postgres() {
    let db = ScratchDb::create("conditional").await;
    let backend = BackendChoice::Postgres(db.url.clone())
        .open()
        .await
        .unwrap();
    preconditions_decide_what_is_written(backend.clone()).await;
    bad_preconditions_are_refused(backend.clone()).await;
    concurrent_counters_lose_no_update(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_preconditions_and_concurrent_counters_on_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let backend = common::open_embedded(dir.path(), common::FJALL).await;
    bad_preconditions_are_refused(backend.clone()).await;
    concurrent_counters_lose_no_update(backend).await;
}
