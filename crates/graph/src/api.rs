//! Routes of the graph service. 503 means the source has never delivered a graph; 404 means
//! the graph has no such interface or instance (the original answered both with 404 or `{}`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ktwin_auth::{RoutePolicy, RoutePolicyBuilder, Scope, TwinParam};
use ktwin_model::InstanceGraph;
use ktwin_service::{PROBLEM_JSON, Problem};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::GraphState;

/// The OpenAPI 3 document of the graph service.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ktwin graph service",
        description = "Twin instances and their relationships"
    ),
    paths(whole_graph, interface_graph, instance),
    components(schemas(InstanceView, RelationshipView, IncomingView, Problem))
)]
pub struct GraphApi;

/// Where [`router`] serves the OpenAPI document (beside its routes, so the graph and the
/// event store can share one port, each with its document).
pub const OPENAPI_PATH: &str = "/api/v1/twin-graph/openapi.json";

/// Routes `/api/v1/twin-graph...` and [`OPENAPI_PATH`]. `/health`, `/ready` and `/metrics`
/// come from [`ktwin_service::ops_router`], mounted once per process.
pub fn router(state: GraphState) -> Router {
    Router::new()
        .route("/api/v1/twin-graph", get(whole_graph))
        .route("/api/v1/twin-graph/{interface}", get(interface_graph))
        .route("/api/v1/twin-graph/instances/{instance}", get(instance))
        .route(OPENAPI_PATH, get(|| async { Json(GraphApi::openapi()) }))
        .with_state(state)
}

/// What each route of [`router`] needs (`ktwin_auth::AuthLayer`): `read` on the twins it
/// returns; the OpenAPI document is public.
pub fn route_policy() -> RoutePolicyBuilder {
    RoutePolicy::builder()
        .public(OPENAPI_PATH)
        .rule(
            &[Method::GET],
            "/api/v1/twin-graph",
            Scope::Read,
            TwinParam::AllTwins,
        )
        .rule(
            &[Method::GET],
            "/api/v1/twin-graph/{interface}",
            Scope::Read,
            TwinParam::Interface("interface"),
        )
        .rule(
            &[Method::GET],
            "/api/v1/twin-graph/instances/{instance}",
            Scope::Read,
            TwinParam::Instance("instance"),
        )
}

fn current(state: &GraphState) -> Result<Arc<InstanceGraph>, Problem> {
    let snapshot = state.snapshot();
    snapshot.graph.ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            match snapshot.error {
                Some(reason) => format!("the twin graph source is unavailable: {reason}"),
                None => "the twin graph source has not delivered a graph yet".to_owned(),
            },
        )
    })
}

fn respond<T: Serialize>(path: &str, result: Result<T, Problem>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(problem) => problem.at(path).into_response(),
    }
}

/// The whole twin graph, instances sorted by name.
#[utoipa::path(
    get,
    path = "/api/v1/twin-graph",
    responses(
        (status = 200, description = "`{\"twinInstances\":[{name, interface, relationships}]}`", body = Object),
        (status = 503, description = "Source unavailable", body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn whole_graph(State(state): State<GraphState>) -> Response {
    respond(
        "/api/v1/twin-graph",
        current(&state).map(|graph| graph.to_json()),
    )
}

/// The instances of one interface (outgoing relationships), sorted by name.
#[utoipa::path(
    get,
    path = "/api/v1/twin-graph/{interface}",
    params(("interface" = String, Path)),
    responses(
        (status = 200, description = "`{\"twinInstances\":[...]}` of that interface", body = Object),
        (status = 404, description = "No instance of that interface", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "Source unavailable", body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn interface_graph(
    State(state): State<GraphState>,
    Path(interface): Path<String>,
) -> Response {
    let path = format!("/api/v1/twin-graph/{interface}");
    let result = current(&state).and_then(|graph| {
        let doc = graph.subgraph(&interface);
        if doc.twin_instances.is_empty() {
            Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!("the twin graph has no instance of interface {interface:?}"),
            ))
        } else {
            Ok(doc)
        }
    });
    respond(&path, result)
}

/// One outgoing relationship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RelationshipView {
    /// Relationship name.
    pub name: String,
    /// Interface of the target.
    pub interface: String,
    /// Target instance.
    pub instance: String,
}

/// One relationship pointing at the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncomingView {
    /// Relationship name.
    pub name: String,
    /// The instance it starts from.
    pub source: String,
    /// Interface of that instance.
    pub source_interface: String,
}

/// A node with its outgoing and incoming relationships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InstanceView {
    /// Instance name.
    pub name: String,
    /// Its interface.
    pub interface: String,
    /// Outgoing relationships.
    pub relationships: Vec<RelationshipView>,
    /// Relationships of other instances pointing at it.
    pub incoming: Vec<IncomingView>,
}

impl InstanceView {
    /// The view of `name` in `graph`, if present.
    pub fn of(graph: &InstanceGraph, name: &str) -> Option<Self> {
        let node = graph.get(name)?;
        Some(Self {
            name: name.to_owned(),
            interface: node.interface.clone(),
            relationships: node
                .relationships
                .iter()
                .map(|r| RelationshipView {
                    name: r.name.clone(),
                    interface: r.interface.clone(),
                    instance: r.instance.clone(),
                })
                .collect(),
            incoming: graph
                .incoming(name)
                .into_iter()
                .map(|r| IncomingView {
                    name: r.name,
                    source: r.source,
                    source_interface: r.source_interface,
                })
                .collect(),
        })
    }
}

/// One instance with its incoming and outgoing relationships.
#[utoipa::path(
    get,
    path = "/api/v1/twin-graph/instances/{instance}",
    params(("instance" = String, Path)),
    responses(
        (status = 200, body = InstanceView),
        (status = 404, description = "No such instance", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "Source unavailable", body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn instance(State(state): State<GraphState>, Path(instance): Path<String>) -> Response {
    let path = format!("/api/v1/twin-graph/instances/{instance}");
    let result = current(&state).and_then(|graph| {
        InstanceView::of(&graph, &instance).ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                format!("the twin graph has no instance {instance:?}"),
            )
        })
    });
    respond(&path, result)
}
