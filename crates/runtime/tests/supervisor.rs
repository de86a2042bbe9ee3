//! The service supervisor against real child processes and real HTTP: start on demand,
//! readiness, prefixed output, environment, reply events, nack on non-2xx, concurrency limits,
//! scale out, scale to zero, graceful stop.
//!
//! The child service is this test binary itself, re-run with `--ignored --exact child_service`
//! and `KTWIN_TEST_CHILD=1`: no extra binary to build, and it is a real process with a real port.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use ktwin_runtime::{
    Console, DeliveryError, LaunchError, Launcher, PoolConfig, ProcessLauncher, Replica,
    ScalePolicy, ServiceCommand, ServicePool,
};

const CHILD_FLAG: &str = "KTWIN_TEST_CHILD";

fn event(ty: &str, data: serde_json::Value) -> Event {
    EventBuilderV10::new()
        .id(uuid_like())
        .ty(ty)
        .source("pole-1")
        .data("application/json", data)
        .build()
        .unwrap()
}

fn uuid_like() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("event-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn child_command() -> ServiceCommand {
    ServiceCommand::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_service",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_FLAG, "1")
        .env("KTWIN_BROKER", "http://user-value-is-replaced.invalid")
}

fn platform_env() -> Vec<(String, String)> {
    vec![
        ("KTWIN_BROKER".into(), "http://127.0.0.1:9/broker".into()),
        ("KTWIN_INTERFACE".into(), "city-pole".into()),
    ]
}

fn fast_policy() -> ScalePolicy {
    ScalePolicy {
        min_scale: 0,
        max_scale: 1,
        target: 4,
        target_utilization: 1.0,
        replica_concurrency: 4,
        stable_window: Duration::from_millis(500),
        panic_window: Duration::from_millis(200),
        scale_to_zero_after: Duration::from_millis(500),
    }
}

fn fast_config(policy: ScalePolicy) -> PoolConfig {
    PoolConfig {
        policy,
        queue_capacity: 64,
        request_timeout: Duration::from_secs(10),
        wait_timeout: Duration::from_secs(30),
        tick: Duration::from_millis(50),
    }
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn child_process_replica_starts_serves_logs_and_stops_gracefully() {
    let console = Console::recording();
    let launcher = ProcessLauncher::new(
        "city-pole",
        child_command(),
        platform_env(),
        console.clone(),
    );
    let replica = launcher.launch(0).await.expect("child starts");
    assert_eq!(replica.label(), "city-pole-0");
    assert!(replica.is_alive().await);

    let client = reqwest::Client::new();
    let (headers, body) =
        ktwin_sdk::to_binary_http(event("ktwin.real.city-pole", serde_json::json!({"v": 1})))
            .unwrap();
    let response = client
        .post(replica.url())
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply_headers = response.headers().clone();
    let reply_body = response.bytes().await.unwrap().to_vec();
    let reply = cloudevents::binding::http::to_event(&reply_headers, reply_body)
        .expect("reply is a CloudEvent");
    let data: serde_json::Value = match reply.data() {
        Some(cloudevents::Data::Json(v)) => v.clone(),
        Some(cloudevents::Data::Binary(b)) => serde_json::from_slice(b).unwrap(),
        other => panic!("unexpected data {other:?}"),
    };
    // The platform's variables win over the command's own.
    assert_eq!(data["broker"], "http://127.0.0.1:9/broker");
    assert_eq!(data["interface"], "city-pole");
    assert_eq!(
        data["port"],
        replica
            .url()
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
    );

    replica.stop().await;
    let lines = console.recorded();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[city-pole-0] ") && l.contains("child listening on")),
        "prefixed stdout: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[city-pole-0] ") && l.contains("child stopping gracefully")),
        "SIGTERM, not SIGKILL: {lines:?}"
    );
}

#[tokio::test]
async fn a_command_that_exits_early_is_a_launch_error_naming_it() {
    let launcher = ProcessLauncher::new(
        "broken",
        ServiceCommand::new(std::env::current_exe().unwrap())
            .args(["--exact", "no_such_test_name"]),
        Vec::new(),
        Console::recording(),
    );
    let err = launcher
        .launch(0)
        .await
        .err()
        .expect("no server ever answers");
    let message = err.to_string();
    assert!(message.contains("exited"), "{message}");
    let missing = ProcessLauncher::new(
        "missing",
        ServiceCommand::new("/nonexistent/ktwin-service"),
        Vec::new(),
        Console::recording(),
    );
    let err = missing.launch(0).await.err().unwrap().to_string();
    assert!(err.contains("/nonexistent/ktwin-service"), "{err}");
}

#[tokio::test]
async fn pool_starts_on_demand_nacks_failures_and_scales_to_zero() {
    let console = Console::recording();
    let launcher = Arc::new(ProcessLauncher::new(
        "svc",
        child_command(),
        platform_env(),
        console.clone(),
    ));
    let pool = ServicePool::start("svc", launcher, fast_config(fast_policy()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        pool.stats().replicas,
        0,
        "scale to zero: nothing runs before demand"
    );

    let replies = pool
        .deliver(event("ktwin.real.city-pole", serde_json::json!({"v": 2})))
        .await
        .expect("first event starts a replica and is delivered");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].ty(), "ktwin.store.city-pole");
    assert_eq!(pool.stats().replicas, 1);

    let err = pool
        .deliver(event(
            "ktwin.real.city-pole",
            serde_json::json!({"fail": true}),
        ))
        .await
        .expect_err("non-2xx is a failed delivery");
    assert!(
        matches!(err, DeliveryError::Rejected { status: 500, .. }),
        "{err:?}"
    );

    let none = pool
        .deliver(event("ktwin.command.city-pole.noop", serde_json::json!({})))
        .await
        .unwrap();
    assert!(none.is_empty(), "a 2xx without a CloudEvent emits nothing");

    wait_until("scale to zero", Duration::from_secs(10), || {
        pool.stats().replicas == 0
    })
    .await;
    // And back on demand.
    pool.deliver(event("ktwin.real.city-pole", serde_json::json!({"v": 3})))
        .await
        .unwrap();
    pool.shutdown().await;
    assert_eq!(pool.stats().replicas, 0);
    let lines = console.recorded();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[svc-1] ") && l.contains("child listening")),
        "{lines:?}"
    );
}

/// An in-process replica counting concurrent requests, so the pool's limits are observable.
struct CountingLauncher {
    launched: AtomicUsize,
    current: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    delay: Duration,
}

#[async_trait]
impl Launcher for CountingLauncher {
    async fn launch(&self, index: u32) -> Result<Box<dyn Replica>, LaunchError> {
        self.launched.fetch_add(1, Ordering::Relaxed);
        let (current, peak, delay) = (
            Arc::clone(&self.current),
            Arc::clone(&self.peak),
            self.delay,
        );
        let app = axum::Router::new().fallback(move || {
            let (current, peak) = (Arc::clone(&current), Arc::clone(&peak));
            async move {
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                current.fetch_sub(1, Ordering::SeqCst);
                StatusCode::ACCEPTED
            }
        });
        let label = format!("counting-{index}");
        Ok(Box::new(common::ServerReplica::serve(label, app).await))
    }
}

fn counting(delay: Duration) -> Arc<CountingLauncher> {
    Arc::new(CountingLauncher {
        launched: AtomicUsize::new(0),
        current: Arc::new(AtomicUsize::new(0)),
        peak: Arc::new(AtomicUsize::new(0)),
        delay,
    })
}

#[tokio::test]
async fn one_replica_never_gets_more_than_its_concurrency() {
    let launcher = counting(Duration::from_millis(100));
    let policy = ScalePolicy {
        max_scale: 1,
        replica_concurrency: 3,
        ..fast_policy()
    };
    let pool = Arc::new(ServicePool::start(
        "limited",
        launcher.clone(),
        fast_config(policy),
    ));
    let deliveries: Vec<_> = (0..12)
        .map(|i| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.deliver(event("ktwin.real.x", serde_json::json!({"i": i})))
                    .await
            })
        })
        .collect();
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
    assert_eq!(launcher.peak.load(Ordering::SeqCst), 3);
    assert_eq!(launcher.launched.load(Ordering::Relaxed), 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn sustained_concurrency_over_the_target_scales_out() {
    let launcher = counting(Duration::from_millis(300));
    let policy = ScalePolicy {
        max_scale: 3,
        target: 2,
        replica_concurrency: 2,
        ..fast_policy()
    };
    let pool = Arc::new(ServicePool::start(
        "scaled",
        launcher.clone(),
        fast_config(policy),
    ));
    let deliveries: Vec<_> = (0..60)
        .map(|i| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.deliver(event("ktwin.real.x", serde_json::json!({"i": i})))
                    .await
            })
        })
        .collect();
    let mut peak_replicas = 0;
    for delivery in deliveries {
        peak_replicas = peak_replicas.max(pool.stats().replicas);
        delivery.await.unwrap().unwrap();
    }
    assert!(launcher.launched.load(Ordering::Relaxed) >= 2, "scaled out");
    assert!(peak_replicas <= 3, "max_scale respected: {peak_replicas}");
    assert!(launcher.peak.load(Ordering::SeqCst) <= 6, "3 replicas × 2");
    pool.shutdown().await;
}

/// The child service run by the tests above (not a test by itself).
#[test]
#[ignore = "helper: run as a child process by the supervisor tests"]
fn child_service() {
    if std::env::var(CHILD_FLAG).is_err() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        println!("child listening on {port}");
        let app = axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .fallback(child_receive);
        let shutdown = ktwin_service::shutdown_token();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .unwrap();
        println!("child stopping gracefully");
    });
}

async fn child_receive(headers: HeaderMap, body: axum::body::Bytes) -> axum::response::Response {
    let Ok(received) = cloudevents::binding::http::to_event(&headers, body.to_vec()) else {
        return (StatusCode::BAD_REQUEST, "not a CloudEvent").into_response();
    };
    let data: serde_json::Value = match received.data() {
        Some(cloudevents::Data::Json(v)) => v.clone(),
        Some(cloudevents::Data::Binary(b)) => serde_json::from_slice(b).unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    if data["fail"] == true {
        return (StatusCode::INTERNAL_SERVER_ERROR, "asked to fail").into_response();
    }
    if received.ty().starts_with("ktwin.command.") {
        return StatusCode::OK.into_response();
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let reply = EventBuilderV10::new()
        .id(format!("reply-{}", received.id()))
        .ty(received.ty().replace("ktwin.real.", "ktwin.store."))
        .source(received.source().clone())
        .data(
            "application/json",
            serde_json::json!({
                "broker": var("KTWIN_BROKER"),
                "interface": var("KTWIN_INTERFACE"),
                "port": var("PORT"),
            }),
        )
        .build()
        .unwrap();
    let (headers, body) = ktwin_sdk::to_binary_http(reply).unwrap();
    (StatusCode::OK, headers, body).into_response()
}
