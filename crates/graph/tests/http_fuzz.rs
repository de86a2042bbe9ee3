//! Every route of the graph service, fuzzed in-process on the app `ktwin graph` serves (the
//! routes behind the auth layer, the ops routes, the service layers) over a published graph,
//! with auth on (a valid token on most requests) and off: nothing panics, and every answer is
//! a success or a 4xx problem (`ktwin_testkit::http_fuzz`).

use axum::Router;
use ktwin_auth::{AuthLayer, Authenticator, Reloading, Scope, TokenFile, TokenSet, TwinGrant};
use ktwin_graph::{GraphState, router};
use ktwin_model::{GraphJson, InstanceGraph};
use ktwin_service::{Readiness, ops_router, with_service_layers};
use ktwin_testkit::http_fuzz;
use serde_json::json;

const TEMPLATES: &[&str] = &[
    "/api/v1/twin-graph",
    "/api/v1/twin-graph/{interface}",
    "/api/v1/twin-graph/instances/{instance}",
    ktwin_graph::OPENAPI_PATH,
    "/health",
    "/ready",
    "/metrics",
];

fn app(auth: AuthLayer) -> Router {
    let doc = json!({"twinInstances": [
        {"name": "pole-1", "interface": "city-pole",
         "relationships": [{"name": "refNeighborhood", "interface": "neighborhood", "instance": "nb-1"}]},
        {"name": "nb-1", "interface": "neighborhood"}
    ]});
    let state = GraphState::new();
    state.publish(InstanceGraph::from_json(
        &serde_json::from_value::<GraphJson>(doc).expect("a graph document"),
    ));
    let readiness = Readiness::new();
    readiness.set_ready(true);
    with_service_layers(
        "graph",
        router(state).layer(auth).merge(ops_router(readiness)),
    )
}

fn policy() -> ktwin_auth::RoutePolicy {
    ktwin_graph::route_policy()
        .build()
        .expect("the graph's policy builds")
}

#[test]
fn every_route_answers_with_success_or_a_problem_with_auth() {
    let mut file = TokenFile::default();
    let token = file
        .issue("fuzzer", Scope::Admin, TwinGrant::all(), None)
        .expect("a token is issued");
    let tokens = TokenSet::new(&file).expect("the token set builds");
    let auth = AuthLayer::new(Authenticator::new(Reloading::fixed(tokens)), policy());
    let runtime = http_fuzz::runtime();
    let app = runtime.block_on(async { app(auth) });
    http_fuzz::fuzz_router(&runtime, &app, TEMPLATES, Some(token.expose()));
}

#[test]
fn every_route_answers_with_success_or_a_problem_without_auth() {
    let runtime = http_fuzz::runtime();
    let app = runtime.block_on(async { app(AuthLayer::insecure(policy())) });
    http_fuzz::fuzz_router(&runtime, &app, TEMPLATES, None);
}
