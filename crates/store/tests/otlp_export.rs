//! Spans over OTLP: the `ktwin-store` binary started with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing
//! at an OTLP/HTTP receiver (an HTTP server in this test that keeps what it is sent) exports,
//! by its shutdown at the latest, the span of storing a traced event — in the event's trace, a
//! child of the event's span.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP receiver: keeps the bodies posted to `/v1/traces`; returns its base URL.
async fn receiver(bodies: Arc<Mutex<Vec<Bytes>>>) -> String {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| async move {
            bodies.lock().unwrap().push(body);
            axum::http::StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_exports_the_span_of_storing_a_traced_event() {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let endpoint = receiver(bodies.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ktwin-store"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--backend",
            "embedded",
            "--path",
        ])
        .arg(dir.path().join("store"))
        .env("RUST_LOG", "warn")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", "store-under-test")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("store binary starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        base.starts_with("http://"),
        "unexpected first line {line:?}"
    );

    let posted = reqwest::Client::new()
        .post(format!("{base}/api/v1/twin-events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "traced-1")
        .header("ce-type", "ktwin.store.city-pole")
        .header("ce-source", "pole-1")
        .header("ce-traceparent", format!("00-{TRACE}-{SPAN}-01"))
        .header("content-type", "application/json")
        .body(r#"{"aqi": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    // SIGTERM: the store drains, and the exporter sends what it holds before the process ends.
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    let bodies = bodies.lock().unwrap();
    let spans: Vec<_> = bodies
        .iter()
        .map(|body| ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf"))
        .flat_map(|request| request.resource_spans)
        .inspect(|resource| {
            let service = resource.resource.as_ref().and_then(|r| {
                r.attributes
                    .iter()
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.clone())
            });
            assert!(
                format!("{service:?}").contains("store-under-test"),
                "{service:?}"
            );
        })
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans)
        .collect();
    let stored = spans
        .iter()
        .find(|span| span.name == "store ktwin.store.city-pole")
        .unwrap_or_else(|| panic!("no span of storing the event among {spans:?}"));
    assert_eq!(hex(&stored.trace_id), TRACE);
    assert_eq!(hex(&stored.parent_span_id), SPAN);
    assert_ne!(hex(&stored.span_id), SPAN);
    assert!(stored.end_time_unix_nano >= stored.start_time_unix_nano);
}
