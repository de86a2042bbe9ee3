//! Plumbing shared by every ktwin network service: `/health`, `/ready` and `/metrics`
//! endpoints, the Prometheus recorder, tracing set-up (spans over OTLP when asked:
//! [`telemetry`]), and shutdown on Ctrl-C or SIGTERM.
//!
//! It owns nothing about twins or storage, and of events only how the trace one carries
//! becomes an exported span ([`telemetry::record_event`]); services mount [`ops_router`]
//! beside their own routes, serve the whole app [`with_service_layers`] (trace, timeout, panic
//! catching, problem details for bare errors), and flip their [`Readiness`] when their
//! dependencies are up.
//!
//! ```
//! use ktwin_service::{Readiness, ops_router};
//!
//! let readiness = Readiness::new();
//! let app: axum::Router = ops_router(readiness.clone());
//! readiness.set_ready(true);
//! # let _ = app;
//! ```

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

#[cfg(feature = "cli")]
pub mod cli;
mod http;
#[cfg(feature = "bench")]
pub mod machine;
mod problem;
pub mod query;
pub mod telemetry;
mod upkeep;

pub use http::{
    PANICS, REFUSED_IN_FLIGHT, REQUEST_TIMEOUT, ServiceLimits, with_service_layers,
    with_service_layers_limited,
};
pub use problem::{PROBLEM_JSON, Problem};

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Whether a service can take traffic: its dependencies (broker, database, source of truth)
/// are reachable. Liveness (`/health`) is separate: a live but unready process is not restarted.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Not ready until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the service ready or not.
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the service is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The process-wide Prometheus recorder, installed on first use.
///
/// `metrics` has one global recorder per process, and several services may share a process
/// (`ktwin up`), so every caller gets the same handle.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .expect("bucket list is not empty")
            // Dispatch latencies keep the original KTWIN dashboard's unit (ms) and buckets.
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_dispatch_latencies".into()),
                &[
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
                    10000.0,
                ],
            )
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if let Err(err) = upkeep::spawn_upkeep(handle.clone(), upkeep::UPKEEP_INTERVAL) {
            tracing::warn!(%err, "no metrics upkeep thread: histograms grow until scraped");
        }
        // Fails only if another recorder was installed first; metrics then go there instead.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// Routes `/health` (always 200 while the process serves), `/ready` (200 or 503) and
/// `/metrics` (Prometheus text format).
pub fn ops_router(readiness: Readiness) -> Router {
    prometheus();
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    if readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn render_metrics() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}

/// `error` and its causes, `: `-separated: the whole story for a log line or a problem's
/// detail (an error's `Display` says only its own part).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Log filter when `RUST_LOG` is unset. The embedded MQTT broker logs every connection at info
/// and every client that hangs up or misbehaves at error, which would drown what ktwin itself
/// says; its own failures (binding the port) reach ktwin as errors, and device-side problems
/// show in the ingress dispatcher's metrics and dead letters. `RUST_LOG=rumqttd=info` brings
/// its logs back. The embedded store's engine (fjall, lsm-tree) narrates its housekeeping at
/// info; its warnings and errors still show.
const DEFAULT_LOG_FILTER: &str = "info,rumqttd=off,fjall=warn,lsm_tree=warn";

/// Sets up `tracing` to stderr, filtered by `RUST_LOG` (default `DEFAULT_LOG_FILTER`), and
/// the export of spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`telemetry`]).
/// Safe to call twice.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let (tracer, failed) = match telemetry::start_from_env() {
        Ok(tracer) => (tracer, None),
        Err(err) => (None, Some(err)),
    };
    let exporting = tracer.is_some();
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(tracer.map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer)))
        .try_init();
    if let Some(err) = failed {
        tracing::warn!(err = %error_chain(&err), "spans are not exported");
    } else if exporting {
        tracing::info!(
            endpoint = ?std::env::var_os(telemetry::OTLP_ENDPOINT),
            "exporting spans over OTLP/HTTP"
        );
    }
}

/// A token cancelled on Ctrl-C or SIGTERM: services stop accepting work when it fires and
/// drain what is in flight.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested, draining in-flight work");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_status(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_the_flag() {
        let readiness = Readiness::new();
        let app = ops_router(readiness.clone());
        assert_eq!(get_status(app.clone(), "/health").await.0, StatusCode::OK);
        assert_eq!(
            get_status(app.clone(), "/ready").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set_ready(true);
        assert_eq!(get_status(app, "/ready").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_render_recorded_values() {
        let app = ops_router(Readiness::new());
        metrics::counter!("ktwin_service_test_total").increment(3);
        let (status, body) = get_status(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("ktwin_service_test_total 3"), "{body}");
    }
}
