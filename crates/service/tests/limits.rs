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

async fn serve(gate: Arc<Gate>, limits: ServiceLimits) -> String {
    let echo_gate = Arc::clone(&gate);
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
        .route(
            "/slow-echo",
            post({
                let gate = echo_gate;
                move |body: Bytes| {
                    let gate = Arc::clone(&gate);
                    async move {
                        gate.entered.fetch_add(1, Ordering::SeqCst);
                        let mut open = gate.open.clone();
                        let _ = open.wait_for(|open| *open).await;
                        body.len().to_string()
                    }
                }
            }),
        )
        .route("/fast", get(|| async { "ok" }));
    let app = with_service_layers_limited("limits-test", app, limits);
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
    let limits = ServiceLimits {
        max_in_flight: MAX_IN_FLIGHT,
        max_body: MAX_BODY,
        ..ServiceLimits::default()
    };
    let base = serve(Arc::clone(&gate), limits).await;
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

/// Bodies in flight are bounded by their bytes as well: with one large body held, another is
/// refused with a reason and `Retry-After` while a small one and bodiless requests are served;
/// a body of unknown length counts as the ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_of_bodies_in_flight_are_bounded() {
    let (open, opened) = watch::channel(false);
    let gate = Arc::new(Gate {
        entered: AtomicUsize::new(0),
        open: opened,
    });
    let limits = ServiceLimits {
        max_in_flight: 10,
        max_body: MAX_BODY,
        max_body_bytes_in_flight: 1_500,
    };
    let base = serve(Arc::clone(&gate), limits).await;
    let client = reqwest::Client::new();
    let held = tokio::spawn(
        client
            .post(format!("{base}/slow-echo"))
            .body(vec![b'x'; 1_000])
            .send(),
    );
    while gate.entered.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let echo = |bytes: usize| client.post(format!("{base}/echo")).body(vec![b'x'; bytes]);
    let refused = echo(1_000).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("bytes in flight"),
        "{problem}"
    );
    assert_eq!(echo(400).send().await.unwrap().status(), StatusCode::OK);
    let bodiless = client.get(format!("{base}/fast")).send().await.unwrap();
    assert_eq!(bodiless.status(), StatusCode::OK);
    assert_eq!(
        chunked_status(&base).await,
        "503",
        "a body of unknown length counts as the ceiling"
    );
    open.send(true).unwrap();
    assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(
        echo(1_000).send().await.unwrap().status(),
        StatusCode::OK,
        "bytes are given back"
    );
}

/// The status code answered to a chunked POST to `/echo` (a body of unknown length).
async fn chunked_status(base: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0; 12];
    stream.read_exact(&mut head).await.unwrap();
    String::from_utf8_lossy(&head[9..12]).into_owned()
}
