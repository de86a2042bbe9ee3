//! The gateway's routes: reads go to the graph service and the event store, writes become
//! CloudEvents posted to the broker.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Method, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ktwin_auth::{RoutePolicy, RoutePolicyBuilder, Scope, TwinParam};
use ktwin_events::trace::TraceSampler;
use ktwin_events::{EventBuilder, EventType, GrammarError};
use ktwin_sdk::{BrokerClient, HandlerError, RetryPolicy};
use ktwin_service::Problem;
use serde_json::{Value, json};

/// Which API groups the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Apis {
    /// The twin graph.
    pub graph: bool,
    /// Twin state and history.
    pub event_store: bool,
    /// Events and commands into the world.
    pub commands: bool,
}

/// Where the platform's services are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstreams {
    /// The graph API (`…/api/v1/twin-graph`).
    pub graph_url: Option<String>,
    /// The event store's root URL.
    pub event_store_url: Option<String>,
    /// The broker ingress.
    pub broker_url: Option<String>,
}

/// What the gateway serves and where it finds it.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// API groups served.
    pub apis: Apis,
    /// Upstream services.
    pub upstreams: Upstreams,
    /// Largest accepted request body.
    pub body_limit: usize,
    /// Time an upstream may take to answer.
    pub upstream_timeout: Duration,
    /// Bearer token sent to the upstream services (a `ktwin up` behind the gateway; in a
    /// cluster the services are reached inside it and need none).
    pub upstream_token: Option<String>,
    /// Which of the traces events posted here start are recorded.
    pub trace_sampler: TraceSampler,
}

struct Gateway {
    config: GatewayConfig,
    http: reqwest::Client,
    broker: Option<BrokerClient>,
}

type Shared = State<Arc<Gateway>>;

/// The API routes, without access control (see [`crate::router`] and [`route_policy`]).
pub fn api(config: GatewayConfig) -> Router {
    let token = config.upstream_token.as_deref();
    let broker = config.upstreams.broker_url.as_deref().map(|url| {
        let client = BrokerClient::new(
            url,
            RetryPolicy {
                timeout: config.upstream_timeout,
                ..RetryPolicy::default()
            },
        );
        match token {
            Some(token) => client.with_token(token),
            None => client,
        }
    });
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(Ok(mut value)) = token.map(|t| HeaderValue::from_str(&format!("Bearer {t}"))) {
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .timeout(config.upstream_timeout)
        .default_headers(headers)
        .build()
        .unwrap_or_default();
    let body_limit = config.body_limit;
    let state = Arc::new(Gateway {
        config,
        http,
        broker,
    });
    Router::new()
        .route("/api/v1/twin-graph", get(whole_graph))
        .route("/api/v1/twin-graph/{interface}", get(interface_graph))
        .route("/api/v1/twin-events/{interface}/{instance}", get(history))
        .route(
            "/api/v1/twin-events/{interface}/{instance}/latest",
            get(latest),
        )
        .route("/api/v1/twins/{interface}", get(twins))
        .route("/api/v1/events/{interface}/{instance}", post(real_event))
        .route(
            "/api/v1/commands/{interface}/{instance}/{command}",
            post(command),
        )
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// What each route of [`api`] needs: `read` on the twins a read returns, `write` on the twin
/// an event or a command is about.
pub fn route_policy() -> RoutePolicyBuilder {
    let twin = TwinParam::Twin {
        interface: "interface",
        instance: "instance",
    };
    RoutePolicy::builder()
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
            "/api/v1/twin-events/{interface}/{instance}",
            Scope::Read,
            twin.clone(),
        )
        .rule(
            &[Method::GET],
            "/api/v1/twin-events/{interface}/{instance}/latest",
            Scope::Read,
            twin.clone(),
        )
        .rule(
            &[Method::GET],
            "/api/v1/twins/{interface}",
            Scope::Read,
            TwinParam::Interface("interface"),
        )
        .rule(
            &[Method::POST],
            "/api/v1/events/{interface}/{instance}",
            Scope::Write,
            twin.clone(),
        )
        .rule(
            &[Method::POST],
            "/api/v1/commands/{interface}/{instance}/{command}",
            Scope::Write,
            twin,
        )
}

fn disabled(what: &str) -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("this gateway does not serve {what}"),
    )
    .into_response()
}

fn unconfigured(what: &str) -> Response {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the gateway has no {what} URL configured"),
    )
    .into_response()
}

impl Gateway {
    /// GETs `url` and relays status, content type and body.
    async fn relay(&self, url: String) -> Response {
        let answer = match self.http.get(&url).send().await {
            Ok(answer) => answer,
            Err(err) => {
                tracing::warn!(%url, %err, "upstream unreachable");
                return Problem::new(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream unreachable: {err}"),
                )
                .into_response();
            }
        };
        let status =
            StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
        let body = match answer.bytes().await {
            Ok(body) => body,
            Err(err) => {
                return Problem::new(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream answer cut: {err}"),
                )
                .into_response();
            }
        };
        let mut response = (status, body).into_response();
        if let Some(value) = content_type.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
        response
    }

    async fn graph(&self, suffix: &str) -> Response {
        if !self.config.apis.graph {
            return disabled("the twin graph");
        }
        match &self.config.upstreams.graph_url {
            Some(base) => {
                self.relay(format!("{}{suffix}", base.trim_end_matches('/')))
                    .await
            }
            None => unconfigured("graph"),
        }
    }

    async fn store(&self, path: &str, query: Option<String>) -> Response {
        if !self.config.apis.event_store {
            return disabled("twin state and history");
        }
        let Some(base) = &self.config.upstreams.event_store_url else {
            return unconfigured("event store");
        };
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        self.relay(format!("{}{path}{query}", base.trim_end_matches('/')))
            .await
    }

    /// Posts an event of `event_type` about `instance` with the JSON `body` as data.
    async fn publish(
        &self,
        event_type: Result<EventType, GrammarError>,
        instance: &str,
        body: &Bytes,
    ) -> Response {
        if !self.config.apis.commands {
            return disabled("events and commands");
        }
        let Some(broker) = &self.broker else {
            return unconfigured("broker");
        };
        let event = match build_event(event_type, instance, body, self.config.trace_sampler) {
            Ok(event) => event,
            Err(problem) => return problem.into_response(),
        };
        let id = cloudevents::AttributesReader::id(&event).to_owned();
        let ty = cloudevents::AttributesReader::ty(&event).to_owned();
        match broker.post(event).await {
            Ok(()) => (
                StatusCode::ACCEPTED,
                axum::Json(json!({"id": id, "type": ty, "source": instance})),
            )
                .into_response(),
            Err(HandlerError::Invalid(detail)) => {
                Problem::new(StatusCode::BAD_REQUEST, detail).into_response()
            }
            Err(err) => Problem::new(StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
        }
    }
}

/// The CloudEvent of a posted body, or the problem with the request.
fn build_event(
    event_type: Result<EventType, GrammarError>,
    instance: &str,
    body: &Bytes,
    sampler: TraceSampler,
) -> Result<cloudevents::Event, Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
    let event_type = event_type.map_err(|e| bad(e.to_string()))?;
    let data: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| bad(format!("the body must be JSON: {e}")))?
    };
    let mut event = EventBuilder::new(event_type, instance)
        .map_err(|e| bad(e.to_string()))?
        .data(data)
        .build();
    // An event sent through the gateway starts a trace, as a device message does.
    ktwin_events::trace::start_trace(&mut event, sampler);
    Ok(event)
}

async fn whole_graph(State(gateway): Shared) -> Response {
    gateway.graph("").await
}

async fn interface_graph(State(gateway): Shared, Path(interface): Path<String>) -> Response {
    gateway.graph(&format!("/{interface}")).await
}

async fn history(
    State(gateway): Shared,
    Path((interface, instance)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    gateway
        .store(
            &format!("/api/v1/twin-events/{interface}/{instance}"),
            query,
        )
        .await
}

async fn latest(
    State(gateway): Shared,
    Path((interface, instance)): Path<(String, String)>,
) -> Response {
    gateway
        .store(
            &format!("/api/v1/twin-events/{interface}/{instance}/latest"),
            None,
        )
        .await
}

async fn twins(
    State(gateway): Shared,
    Path(interface): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    gateway
        .store(&format!("/api/v1/twins/{interface}"), query)
        .await
}

async fn real_event(
    State(gateway): Shared,
    Path((interface, instance)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    gateway
        .publish(EventType::real(&interface), &instance, &body)
        .await
}

async fn command(
    State(gateway): Shared,
    Path((interface, instance, command)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    gateway
        .publish(EventType::command(&interface, &command), &instance, &body)
        .await
}
