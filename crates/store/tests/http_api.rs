//! The REST API in process, against both backends: compatibility routes, paging, latest as a
//! binary CloudEvent, deletion of the right instance, and bad input as problem+json.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::ScratchDb;
use http_body_util::BodyExt;
use ktwin_store::{ApiConfig, Backend, BackendChoice, IngestConfig, Ingestor, KnownInterfaces};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn assert_problem(&self, status: StatusCode, detail_mentions: &str) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let problem = self.json();
        assert_eq!(problem["status"], status.as_u16());
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(detail_mentions),
            "{detail:?} does not mention {detail_mentions:?}"
        );
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn binary_event(id: &str, ty: &str, source: &str, time: &str, data: &str) -> Request<Body> {
    Request::post("/api/v1/twin-events")
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-type", ty)
        .header("ce-source", source)
        .header("ce-time", time)
        .header("content-type", "application/json")
        .body(Body::from(data.to_owned()))
        .unwrap()
}

fn app(backend: Arc<dyn Backend>, config: ApiConfig) -> Router {
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    ktwin_store::router(backend, ingestor, config)
}

async fn exercise_routes(backend: Arc<dyn Backend>) {
    let app = app(backend, ApiConfig::default());
    let pole = "ktwin.store.city-pole";
    // Out of order: e3 is the newest but arrives first.
    for (id, time, data) in [
        (
            "e3",
            "2024-05-20T10:00:03Z",
            r#"{"aqi": 30, "status": {"lamp": "ok"}}"#,
        ),
        (
            "e1",
            "2024-05-20T10:00:01Z",
            r#"{"aqi": 10, "battery": 90, "status": {"lamp": "broken", "door": "closed"}}"#,
        ),
        (
            "e2",
            "2024-05-20T10:00:02Z",
            r#"{"battery": null, "aqi": 20}"#,
        ),
    ] {
        assert_eq!(
            send(&app, binary_event(id, pole, "pole-a", time, data))
                .await
                .status,
            StatusCode::ACCEPTED
        );
    }
    // A redelivery (same id and data, members in another order) is accepted and stored once.
    let again = binary_event(
        "e1",
        pole,
        "pole-a",
        "2024-05-20T10:00:01Z",
        r#"{"status": {"door": "closed", "lamp": "broken"}, "battery": 90, "aqi": 10}"#,
    );
    let again = send(&app, again).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.header("ktwin-new-versions"), None);
    // Structured mode, and an instance named like its interface (the original's DELETE hit it).
    let structured = json!({"specversion": "1.0", "id": "s1", "type": pole, "source": "city-pole",
                            "time": "2024-05-20T09:00:00Z", "datacontenttype": "application/json",
                            "data": {"aqi": 1}});
    let request = Request::post("/api/v1/twin-events")
        .header("content-type", "application/cloudevents+json")
        .body(Body::from(structured.to_string()))
        .unwrap();
    assert_eq!(send(&app, request).await.status, StatusCode::ACCEPTED);
    // Batch mode.
    let batch = json!([
        {"specversion": "1.0", "id": "b1", "type": pole, "source": "pole-b", "data": {"aqi": 5}},
        {"specversion": "1.0", "id": "b2", "type": "ktwin.real.city-pole", "source": "pole-c", "data": {"aqi": 6}}
    ]);
    let request = Request::post("/api/v1/twin-events")
        .header("content-type", "application/cloudevents-batch+json")
        .body(Body::from(batch.to_string()))
        .unwrap();
    assert_eq!(send(&app, request).await.status, StatusCode::ACCEPTED);

    let latest = get(&app, "/api/v1/twin-events/city-pole/pole-a/latest").await;
    assert_eq!(latest.status, StatusCode::OK);
    assert_eq!(
        latest.json(),
        json!({"aqi": 30, "status": {"lamp": "ok", "door": "closed"}})
    );
    assert_eq!(latest.header("ce-id"), Some("e3"));
    assert_eq!(latest.header("ce-type"), Some(pole));
    assert_eq!(latest.header("ce-source"), Some("pole-a"));
    assert_eq!(latest.header("ce-time"), Some("2024-05-20T10:00:03Z"));
    assert_eq!(latest.header("ce-specversion"), Some("1.0"));
    let missing = get(&app, "/api/v1/twin-events/city-pole/nobody/latest").await;
    missing.assert_problem(StatusCode::NOT_FOUND, "nobody");

    // History: newest first, paged with a cursor, windowed by time.
    let first = get(&app, "/api/v1/twin-events/city-pole/pole-a?limit=2").await;
    assert_eq!(first.status, StatusCode::OK);
    let ids: Vec<_> = first
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!("e3"), json!("e2")]);
    assert_eq!(
        first.json()[0]["eventData"],
        json!({"aqi": 30, "status": {"lamp": "ok"}})
    );
    let cursor = first.header("x-next-cursor").unwrap().to_owned();
    assert!(
        first
            .header("link")
            .unwrap()
            .contains(&format!("cursor={cursor}"))
    );
    let second = get(
        &app,
        &format!("/api/v1/twin-events/city-pole/pole-a?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(second.json().as_array().unwrap().len(), 1);
    assert_eq!(second.json()[0]["id"], "e1");
    assert!(second.header("x-next-cursor").is_none());
    let window = get(&app, "/api/v1/twin-events/city-pole/pole-a?since=2024-05-20T10:00:02Z&until=2024-05-20T10:00:02Z").await;
    assert_eq!(window.json().as_array().unwrap().len(), 1);
    assert_eq!(window.json()[0]["id"], "e2");

    // Latest states of the interface, paged.
    let twins = get(&app, "/api/v1/twins/city-pole?limit=2").await;
    let names: Vec<_> = twins
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["instanceId"].clone())
        .collect();
    assert_eq!(names, [json!("city-pole"), json!("pole-a")]);
    let rest = get(
        &app,
        &format!(
            "/api/v1/twins/city-pole?limit=2&cursor={}",
            twins.header("x-next-cursor").unwrap()
        ),
    )
    .await;
    let names: Vec<_> = rest
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["instanceId"].clone())
        .collect();
    assert_eq!(names, [json!("pole-b"), json!("pole-c")]);
    assert_eq!(rest.json()[0]["eventCount"], 1);

    // All events, paged: 3 + 1 + 2 = 6 distinct.
    let all = get(&app, "/api/v1/twin-events?limit=1000").await;
    assert_eq!(all.json().as_array().unwrap().len(), 6);
    // Walking pages of 2 across instances gives the same list.
    let mut walked = Vec::new();
    let mut page = get(&app, "/api/v1/twin-events?limit=2").await;
    loop {
        walked.extend(page.json().as_array().unwrap().clone());
        let Some(cursor) = page.header("x-next-cursor") else {
            break;
        };
        page = get(
            &app,
            &format!("/api/v1/twin-events?limit=2&cursor={cursor}"),
        )
        .await;
    }
    assert_eq!(json!(walked), all.json());

    // DELETE removes exactly that instance.
    let delete = send(
        &app,
        Request::delete("/api/v1/twin-events/city-pole/pole-a")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(delete.status, StatusCode::OK);
    assert_eq!(delete.json(), json!({"deleted": 3}));
    assert_eq!(
        get(&app, "/api/v1/twin-events/city-pole/pole-a/latest")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/api/v1/twin-events/city-pole/pole-a")
            .await
            .json(),
        json!([])
    );
    assert_eq!(
        get(&app, "/api/v1/twin-events/city-pole/city-pole/latest")
            .await
            .status,
        StatusCode::OK
    );
    // The deleted instance starts afresh with its next event.
    let reborn = binary_event(
        "e9",
        pole,
        "pole-a",
        "2024-05-20T10:00:09Z",
        r#"{"aqi": 90}"#,
    );
    assert_eq!(send(&app, reborn).await.status, StatusCode::ACCEPTED);
    let latest = get(&app, "/api/v1/twin-events/city-pole/pole-a/latest").await;
    assert_eq!(latest.status, StatusCode::OK);
    assert_eq!(latest.json(), json!({"aqi": 90}));

    let openapi = get(&app, "/api/v1/openapi.json").await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(
        openapi.json()["paths"]["/api/v1/twin-events/{interface}/{instance}/latest"].is_object()
    );
}

async fn routes_on_embedded(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    exercise_routes(common::open_embedded(dir.path(), name).await).await;
}

#[tokio::test]
async fn routes_on_fjall() {
    routes_on_embedded(common::FJALL).await;
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn routes_on_redb() {
    routes_on_embedded(common::REDB).await;
}

#[tokio::test]
async fn routes_on_postgres() {
    let db = ScratchDb::create("http").await;
    let backend = BackendChoice::Postgres(db.url.clone())
        .open()
        .await
        .unwrap();
    exercise_routes(backend).await;
}

#[tokio::test]
async fn bad_input_gets_problem_details() {
    let dir = tempfile::tempdir().unwrap();
    let backend = common::open_embedded(dir.path(), common::FJALL).await;
    let config = ApiConfig {
        body_limit: 1024,
        known_interfaces: KnownInterfaces::only(["city-pole".to_owned()]),
    };
    let app = app(backend, config);

    let plain = Request::post("/api/v1/twin-events")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"aqi": 1}"#))
        .unwrap();
    send(&app, plain)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "specversion");

    let no_id = Request::post("/api/v1/twin-events")
        .header("ce-specversion", "1.0")
        .header("ce-type", "ktwin.store.city-pole")
        .header("ce-source", "pole-1")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    send(&app, no_id)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "id");

    let bad_type = binary_event(
        "x",
        "com.example.thing",
        "pole-1",
        "2024-05-20T10:00:00Z",
        "{}",
    );
    send(&app, bad_type)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "com.example.thing");

    let array = binary_event(
        "x",
        "ktwin.store.city-pole",
        "pole-1",
        "2024-05-20T10:00:00Z",
        "[1, 2]",
    );
    send(&app, array)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "an array");

    let unknown = binary_event(
        "x",
        "ktwin.store.city-lamp",
        "lamp-1",
        "2024-05-20T10:00:00Z",
        "{}",
    );
    send(&app, unknown)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "city-lamp");
    get(&app, "/api/v1/twin-events/city-lamp/lamp-1/latest")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "city-lamp");

    let big = format!(r#"{{"blob": "{}"}}"#, "x".repeat(2000));
    let too_large = binary_event(
        "x",
        "ktwin.store.city-pole",
        "pole-1",
        "2024-05-20T10:00:00Z",
        &big,
    );
    send(&app, too_large)
        .await
        .assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "1024");

    get(&app, "/api/v1/twin-events/city-pole/pole-1?limit=0")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "limit");
    get(&app, "/api/v1/twin-events/city-pole/pole-1?since=yesterday")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "since=yesterday");
    get(&app, "/api/v1/twin-events?cursor=nothex")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "cursor");
    // A cursor with a character of two bytes used to be sliced inside it, panicking the
    // handler (issue 18).
    for listing in [
        "/api/v1/twin-events",
        "/api/v1/twin-events/city-pole/pole-1",
        "/api/v1/twins/city-pole",
    ] {
        get(&app, &format!("{listing}?cursor=a%C3%A9b"))
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "cursor");
    }
}
