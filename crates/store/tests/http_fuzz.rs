//! Every route of the event store, fuzzed in-process on the app `ktwin store` serves (the API
//! behind the auth layer, the ops routes, the service layers) over a real fjall store, with
//! auth on (a valid token on most requests) and off: nothing panics, and every answer is a
//! success or a 4xx problem (`ktwin_testkit::http_fuzz`). Regressions found by it are pinned
//! in `found_inputs_stay_fixed`.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use ktwin_auth::{AuthLayer, Authenticator, Reloading, Scope, TokenFile, TokenSet, TwinGrant};
use ktwin_service::{Readiness, ops_router, with_service_layers};
use ktwin_store::{ApiConfig, BackendChoice, IngestConfig, Ingestor, KnownInterfaces};
use ktwin_testkit::http_fuzz;

/// The store's route templates (as its router spells them), ops routes included.
const TEMPLATES: &[&str] = &[
    "/api/v1/twin-events",
    "/api/v1/twin-events/{interface}/{instance}",
    "/api/v1/twin-events/{interface}/{instance}/latest",
    "/api/v1/twin-events/{interface}/{instance}/state",
    "/api/v1/twins/{interface}",
    "/api/v1/dead-letters",
    "/api/v1/dead-letters/usage",
    "/api/v1/dead-letters/{seq}",
    "/api/v1/openapi.json",
    "/health",
    "/ready",
    "/metrics",
];

/// The app `ktwin store` serves over a fresh fjall store in `dir`, behind `auth`.
async fn app(dir: &std::path::Path, auth: AuthLayer) -> Router {
    let backend = BackendChoice::Embedded(dir.join("store"))
        .open()
        .await
        .expect("a fjall store opens");
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    let config = ApiConfig {
        known_interfaces: KnownInterfaces::only(["city-pole".to_owned()]),
        ..ApiConfig::default()
    };
    let readiness = Readiness::new();
    readiness.set_ready(true);
    let api = ktwin_store::router(backend, ingestor, config).layer(auth);
    with_service_layers("store", api.merge(ops_router(readiness)))
}

fn policy() -> ktwin_auth::RoutePolicy {
    ktwin_store::route_policy()
        .public("/health")
        .public("/ready")
        .public("/metrics")
        .build()
        .expect("the store's policy builds")
}

/// An auth layer accepting one admin token, and the token.
fn auth_with_token() -> (AuthLayer, String) {
    let mut file = TokenFile::default();
    let token = file
        .issue("fuzzer", Scope::Admin, TwinGrant::all(), None)
        .expect("a token is issued");
    let tokens = TokenSet::new(&file).expect("the token set builds");
    let layer = AuthLayer::new(Authenticator::new(Reloading::fixed(tokens)), policy());
    (layer, token.expose().to_owned())
}

#[test]
fn every_route_answers_with_success_or_a_problem_with_auth() {
    let runtime = http_fuzz::runtime();
    let dir = tempfile::tempdir().unwrap();
    let (auth, token) = auth_with_token();
    let app = runtime.block_on(app(dir.path(), auth));
    http_fuzz::fuzz_router(&runtime, &app, TEMPLATES, Some(&token));
}

#[test]
fn every_route_answers_with_success_or_a_problem_without_auth() {
    let runtime = http_fuzz::runtime();
    let dir = tempfile::tempdir().unwrap();
    let app = runtime.block_on(app(dir.path(), AuthLayer::insecure(policy())));
    http_fuzz::fuzz_router(&runtime, &app, TEMPLATES, None);
}

/// Inputs the fuzzer found, each answered as a problem since its fix.
#[test]
fn found_inputs_stay_fixed() {
    let runtime = http_fuzz::runtime();
    let dir = tempfile::tempdir().unwrap();
    let app = runtime.block_on(app(dir.path(), AuthLayer::insecure(policy())));
    let cases: &[(&str, &str)] = &[
        (
            "GET",
            "/api/v1/twin-events/city-pole/pole-1?cursor=a%C3%A9b",
        ),
        ("GET", "/api/v1/twin-events?cursor=%FF"),
        ("GET", "/api/v1/twins/city-pole?cursor=%E2%82"),
    ];
    for (method, target) in cases {
        let request = Request::builder()
            .method(*method)
            .uri(*target)
            .body(Body::empty())
            .unwrap();
        runtime
            .block_on(http_fuzz::send(&app, request))
            .unwrap_or_else(|why| panic!("{method} {target}: {why}"));
    }
}
