//! Every route `ktwin up` serves on its HTTP port (event store, graph, broker ingress, event
//! stream, models and commands, dashboard, ops), fuzzed over HTTP on a running smart-city
//! platform with auth on (the admin token on most requests) and off: nothing panics, and every
//! answer is a success or a 4xx problem (`ktwin_testkit::http_fuzz`).

mod common;

use std::time::Duration;

use ktwin_runtime::UpAuth;
use ktwin_runtime::up::Platform;
use ktwin_testkit::http_fuzz;

const TEMPLATES: &[&str] = &[
    "/api/v1/twin-events",
    "/api/v1/twin-events/{interface}/{instance}",
    "/api/v1/twin-events/{interface}/{instance}/latest",
    "/api/v1/twin-events/{interface}/{instance}/state",
    "/api/v1/twins/{interface}",
    "/api/v1/dead-letters",
    "/api/v1/dead-letters/{seq}",
    "/api/v1/twin-graph",
    "/api/v1/twin-graph/{interface}",
    "/api/v1/twin-graph/instances/{instance}",
    "/api/v1/broker",
    "/api/v1/broker",
    ktwin_runtime::event_stream::STREAM_PATH,
    ktwin_runtime::model_api::MODELS_PATH,
    ktwin_runtime::model_api::COMMAND_PATH,
    "/",
    "/assets/{*file}",
    "/health",
    "/metrics",
];

fn start(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, auth: UpAuth) -> Platform {
    let mut options = common::up_options(dir);
    options.auth = auth;
    runtime
        .block_on(Platform::start(common::smart_city(), options))
        .expect("platform starts")
}

/// Fuzzes a fresh platform, with its local credentials when `auth_on`.
fn fuzz(auth_on: bool) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth = if auth_on {
        UpAuth::Local(dir.path().join("auth"))
    } else {
        UpAuth::Insecure
    };
    let platform = start(&runtime, dir.path(), auth);
    let token = platform
        .credentials()
        .map(|credentials| credentials.admin_token.expose().to_owned());
    let base = format!("http://{}", platform.http);
    // A fresh connection per request: a server may close a connection after answering early
    // without reading a large body, and a pooled client would then send the next request on
    // that closed connection.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    http_fuzz::fuzz(TEMPLATES, |request| {
        runtime.block_on(http_fuzz::send_http(
            &client,
            &base,
            request,
            token.as_deref(),
        ))
    });
    runtime.block_on(platform.shutdown(Duration::from_secs(10)));
}

#[test]
fn every_route_answers_with_success_or_a_problem_with_auth() {
    fuzz(true);
}

#[test]
fn every_route_answers_with_success_or_a_problem_without_auth() {
    fuzz(false);
}
