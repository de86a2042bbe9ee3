//! The Knative contract of a twin service: HTTP on `$PORT` (default 8080), any path, binary
//! or structured CloudEvents in, `2xx` when done and non-`2xx` to ask for redelivery. Emitted
//! events go back in the reply (Knative reply semantics: the broker routes a CloudEvent in a
//! `2xx` reply like any other event) or are posted to `KTWIN_BROKER`. An event without a
//! `traceparent` attribute takes the plain `traceparent` HTTP header Knative's dispatchers send.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cloudevents::Event;
use ktwin_events::env;
use ktwin_events::trace::{TRACEPARENT, TRACESTATE, adopt_transport_trace};
use ktwin_service::{Problem, Readiness, ops_router, shutdown_token};
use tokio_util::sync::CancellationToken;

use crate::broker::{BrokerClient, RetryPolicy, to_binary_http};
use crate::context::{OWNER_EPOCH_HEADER, TwinContext};
use crate::error::HandlerError;
use crate::graph::{GraphCachePolicy, HttpGraph, StaticGraph};
use crate::handler::{TwinHandler, dispatch};
use crate::state::{HttpEventStore, MemoryStates};

/// Where a service's emitted events go.
#[derive(Clone, Default)]
pub struct Emitter {
    /// Put one emitted event in the HTTP reply (the others are posted to the broker).
    pub reply: bool,
    /// The broker ingress, if known.
    pub broker: Option<BrokerClient>,
}

impl Emitter {
    /// Sends `events`; returns the event for the reply, if any.
    async fn emit(&self, mut events: Vec<Event>) -> Result<Option<Event>, HandlerError> {
        let reply = if self.reply { events.pop() } else { None };
        if events.is_empty() {
            return Ok(reply);
        }
        let Some(broker) = &self.broker else {
            return Err(HandlerError::Failed(format!(
                "{} event(s) to post but KTWIN_BROKER is not set{}",
                events.len(),
                if self.reply {
                    " (only one fits in the reply)"
                } else {
                    ""
                }
            )));
        };
        for event in events {
            broker.post(event).await?;
        }
        Ok(reply)
    }
}

/// Configuration of [`serve`], from the environment the operator injects.
#[derive(Clone)]
pub struct ServeConfig {
    /// `PORT`, default 8080.
    pub port: u16,
    /// `KTWIN_BROKER`: broker ingress URL.
    pub broker: Option<String>,
    /// `KTWIN_EVENT_STORE`: event store root URL.
    pub event_store: Option<String>,
    /// `KTWIN_GRAPH_URL`: graph service URL (`…/api/v1/twin-graph`).
    pub graph_url: Option<String>,
    /// `KTWIN_GRAPH`: a whole graph as JSON, used instead of the graph service.
    pub graph_json: Option<String>,
    /// `KTWIN_REPLY` (default `true`): put one emitted event in the HTTP reply.
    pub reply: bool,
    /// `KTWIN_MAX_CONCURRENCY` (default 64): events handled at once; more wait.
    pub max_concurrency: usize,
    /// `KTWIN_TOKEN`: bearer token sent to the broker, event store and graph service.
    pub token: Option<String>,
}

impl std::fmt::Debug for ServeConfig {
    // The token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("port", &self.port)
            .field("broker", &self.broker)
            .field("event_store", &self.event_store)
            .field("graph_url", &self.graph_url)
            .field("graph_json", &self.graph_json.as_ref().map(String::len))
            .field("reply", &self.reply)
            .field("max_concurrency", &self.max_concurrency)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A configuration variable with an unusable value.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?}: expected {expected}")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    expected: &'static str,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ServeConfig {
    /// Reads the variables through `var` (the environment, or a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn parse<T: std::str::FromStr>(
            var: &impl Fn(&str) -> Option<String>,
            name: &'static str,
            default: T,
            expected: &'static str,
        ) -> Result<T, ConfigError> {
            match var(name).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(value) => value.parse().map_err(|_| ConfigError {
                    name,
                    value,
                    expected,
                    source: None,
                }),
            }
        }
        let non_empty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        Ok(Self {
            port: parse(&var, env::PORT, 8080, "a TCP port number")?,
            broker: non_empty(env::BROKER),
            event_store: non_empty(env::EVENT_STORE),
            graph_url: non_empty(env::GRAPH_URL),
            graph_json: non_empty(env::GRAPH),
            reply: parse(&var, env::REPLY, true, "true or false")?,
            max_concurrency: parse(&var, env::MAX_CONCURRENCY, 64, "a positive integer")?.max(1),
            token: non_empty(env::TOKEN),
        })
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The handler context this configuration describes: the graph from `KTWIN_GRAPH` or
    /// `KTWIN_GRAPH_URL`, states from `KTWIN_EVENT_STORE`. Missing ones become empty in-memory
    /// stand-ins (logged), so a service can run alone for development.
    pub fn context(&self) -> Result<TwinContext, ConfigError> {
        let graph: Arc<dyn crate::GraphLookup> = match (&self.graph_json, &self.graph_url) {
            (Some(json), _) => {
                Arc::new(StaticGraph::from_json(json).map_err(|err| ConfigError {
                    name: env::GRAPH,
                    value: json.chars().take(80).collect(),
                    expected: "a twin graph as JSON ({\"twinInstances\":[...]})",
                    source: Some(Box::new(err)),
                })?)
            }
            (None, Some(url)) => {
                let graph = HttpGraph::new(url, GraphCachePolicy::default());
                Arc::new(match &self.token {
                    Some(token) => graph.with_token(token),
                    None => graph,
                })
            }
            (None, None) => {
                tracing::warn!("neither KTWIN_GRAPH nor KTWIN_GRAPH_URL set: empty twin graph");
                Arc::new(StaticGraph::default())
            }
        };
        let states: Arc<dyn crate::StateLookup> = match &self.event_store {
            Some(url) => {
                let store = HttpEventStore::new(url, Duration::from_secs(5));
                Arc::new(match &self.token {
                    Some(token) => store.with_token(token),
                    None => store,
                })
            }
            None => {
                tracing::warn!("KTWIN_EVENT_STORE not set: no stored states");
                Arc::new(MemoryStates::new())
            }
        };
        Ok(TwinContext::new(graph, states))
    }

    /// Where emitted events go.
    pub fn emitter(&self) -> Emitter {
        Emitter {
            reply: self.reply,
            broker: self.broker.as_deref().map(|url| {
                let broker = BrokerClient::new(url, RetryPolicy::default());
                match &self.token {
                    Some(token) => broker.with_token(token),
                    None => broker,
                }
            }),
        }
    }
}

struct AppState {
    handler: Arc<dyn TwinHandler>,
    ctx: TwinContext,
    emitter: Emitter,
}

/// The HTTP app of a twin service: `/health`, `/ready`, `/metrics`, and events on any other
/// path and method, at most `max_concurrency` at once.
pub fn router(
    handler: Arc<dyn TwinHandler>,
    ctx: TwinContext,
    emitter: Emitter,
    readiness: Readiness,
    max_concurrency: usize,
) -> Router {
    let state = Arc::new(AppState {
        handler,
        ctx,
        emitter,
    });
    let events = Router::new()
        .fallback(receive)
        .with_state(state)
        .layer(tower::limit::ConcurrencyLimitLayer::new(max_concurrency));
    ktwin_service::with_service_layers(SERVICE_LABEL, ops_router(readiness).merge(events))
}

/// The `service` label of this app in the shared HTTP metrics (`ktwin_http_panics_total`).
const SERVICE_LABEL: &str = "twin-service";

async fn receive(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let ctx = match owner_epoch(&headers) {
        Some(epoch) => app.ctx.clone().with_owner_epoch(epoch),
        // Nothing partitions the deliveries: other replicas may hold the same instances.
        None => app.ctx.clone().unpartitioned(),
    };
    let ctx = &ctx;
    let result = match cloudevents::binding::http::to_event(&headers, body.to_vec()) {
        Err(err) => Err(HandlerError::Invalid(format!("not a CloudEvent: {err}"))),
        Ok(mut event) => {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            adopt_transport_trace(&mut event, header(TRACEPARENT), header(TRACESTATE));
            match dispatch(app.handler.as_ref(), ctx, event).await {
                Ok(events) => app.emitter.emit(events).await,
                Err(err) => Err(err),
            }
        }
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(HandlerError::Invalid(_)) => "invalid",
        Err(HandlerError::Unavailable(_)) => "unavailable",
        Err(HandlerError::Failed(_)) => "failed",
    };
    metrics::counter!("ktwin_sdk_events_total", "outcome" => outcome).increment(1);
    metrics::histogram!("ktwin_sdk_event_duration_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(None) => StatusCode::OK.into_response(),
        Ok(Some(reply)) => match to_binary_http(reply) {
            Ok((headers, body)) => (StatusCode::OK, headers, body).into_response(),
            Err(err) => Problem::new(err.status(), err.to_string()).into_response(),
        },
        Err(err) => {
            tracing::warn!(%err, "event not processed");
            Problem::new(err.status(), err.to_string()).into_response()
        }
    }
}

/// The [`OWNER_EPOCH_HEADER`] of a delivery; absent or not a number: none (a platform that
/// does not partition, whose deliveries never move an instance between replicas).
fn owner_epoch(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(OWNER_EPOCH_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The environment is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding or serving failed.
    #[error("serving on port {port}: {source}")]
    Io {
        /// The port.
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs `handler` as a twin service configured from the environment until Ctrl-C or SIGTERM,
/// then drains in-flight events.
pub async fn serve(handler: impl TwinHandler) -> Result<(), ServeError> {
    ktwin_service::init_tracing();
    let config = ServeConfig::from_env()?;
    let ctx = config.context()?;
    let served = serve_with(Arc::new(handler), &config, ctx, shutdown_token()).await;
    ktwin_service::telemetry::shutdown();
    served
}

/// Runs `handler` with an explicit configuration and context until `shutdown` fires.
pub async fn serve_with(
    handler: Arc<dyn TwinHandler>,
    config: &ServeConfig,
    ctx: TwinContext,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let io = |source| ServeError::Io {
        port: config.port,
        source,
    };
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .map_err(io)?;
    let readiness = Readiness::new();
    let app = router(
        handler,
        ctx,
        config.emitter(),
        readiness.clone(),
        config.max_concurrency,
    );
    tracing::info!(port = config.port, "twin service listening");
    readiness.set_ready(true);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(io)
}
