//! The limits every service wears, over real HTTP: a body over the ceiling is 413, more headers
//! than hyper accepts is 431, and a request beyond the in-flight bound is 503 with
//! `Retry-After` while the others are served — each answer saying why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use ktwin_service::{ServiceLimits, with_service_layers_limited};
use reqwest::StatusCode;
use tokio::sync::watch;

const MAX_IN_FLIGHT: usize = 3;
const MAX_BODY: usize = 1024;

/// Requests to `/slow` wait until the gate opens.
struct Gate {
    entered: AtomicUsize,
    open: watch::Receiver<bool>,
}

async fn serve(gate: Arc<Gate>) -> String {
    let app = Router::new()
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/slow",
            get(move || {
                let gate = Arc::clone(&gate);
                async move {
                    gate.entered.fetch_add(1, Ordering::SeqCst);
                    let mut open = gate.open.clone();
                    let _ = open.wait_for(|open| *open).await;
                    "done"
                }
            }),
        )
        .route("/fast", get(|| async { "ok" }));
    let app = with_service_layers_limited(
        "limits-test",
        app,
        ServiceLimits {
            max_in_flight: MAX_IN_FLIGHT,
            max_body: MAX_BODY,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_headers_and_requests_in_flight_are_bounded_with_a_reason() {
    let (open, opened) = watch::channel(false);
    let gate = Arc::new(Gate {
        entered: AtomicUsize::new(0),
        open: opened,
    });
    let base = serve(Arc::clone(&gate)).await;
    let client = reqwest::Client::new();

    let small = client
        .post(format!("{base}/echo"))
        .body(vec![b'x'; MAX_BODY])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), StatusCode::OK);
    let large = client
        .post(format!("{base}/echo"))
        .body(vec![b'x'; MAX_BODY + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let problem: serde_json::Value = large.json().await.unwrap();
    assert_eq!(problem["status"], 413, "{problem}");

    let mut crowded = client.get(format!("{base}/fast"));
    for n in 0..200 {
        crowded = crowded.header(format!("x-header-{n}"), "v");
    }
    let crowded = crowded.send().await.unwrap();
    assert_eq!(
        crowded.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    // Fill every slot with a request that waits; then one more is refused at once.
    let slow: Vec<_> = (0..MAX_IN_FLIGHT)
        .map(|_| tokio::spawn(client.get(format!("{base}/slow")).send()))
        .collect();
    while gate.entered.load(Ordering::SeqCst) < MAX_IN_FLIGHT {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let refused = client.get(format!("{base}/fast")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("in flight"),
        "{problem}"
    );
    open.send(true).unwrap();
    for request in slow {
        assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let after = client.get(format!("{base}/fast")).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK, "slots are given back");
}
