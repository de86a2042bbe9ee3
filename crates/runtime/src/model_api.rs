//! The project's DTDL model and its twins' commands over HTTP, for the dashboard and for scripts:
//!
//! - `GET /api/v1/models`: every interface as `ktwin-dtdl` resolves it (inherited contents
//!   flattened in, schemas inlined) with its ktwin name, and the parser's findings;
//! - `POST /api/v1/commands/{interface}/{instance}/{command}`: the JSON body, checked against
//!   the command's DTDL request schema, published as the command's CloudEvent on the platform's
//!   bus — the path a twin service's command takes through the broker ingress — so the twin's
//!   service runs it and stores what it changes.
//!
//! The command route is the one the gateway serves on a cluster (`ktwin-gateway`), with the same
//! answer (`202` and the event's id, type and source), plus the schema check the local platform
//! can make because it holds the model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use ktwin_broker::{Broker, BrokerError};
use ktwin_dtdl::{CommandDef, ContentKind, Diagnostic, Interface, ParseOptions};
use ktwin_events::trace::TraceSampler;
use ktwin_events::{EventBuilder, EventType};
use ktwin_model::InstanceGraph;
use ktwin_service::{PROBLEM_JSON, Problem};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::PlannedProject;
use crate::payload;

/// Path of the model document.
pub const MODELS_PATH: &str = "/api/v1/models";
/// Path template of the command route.
pub const COMMAND_PATH: &str = "/api/v1/commands/{interface}/{instance}/{command}";
/// Path of this API's OpenAPI document.
pub const MODELS_OPENAPI_PATH: &str = "/api/v1/models/openapi.json";
/// Largest command body accepted.
pub const COMMAND_BODY_LIMIT: usize = 256 * 1024;

/// Why the project's models could not be read again for the model API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelApiError {
    /// A model file could not be read.
    #[error(transparent)]
    Load(#[from] ktwin_dtdl::LoadError),
    /// The models no longer parse (changed since the project was loaded).
    #[error("the project's DTDL models do not parse")]
    Parse(#[source] ktwin_dtdl::ParseError),
}

/// One interface of the model document: its ktwin name and the resolved DTDL interface.
#[derive(Debug, Serialize)]
struct NamedInterface {
    name: String,
    #[serde(flatten)]
    interface: Interface,
}

/// `GET /api/v1/models`.
#[derive(Debug, Serialize)]
struct ModelDoc {
    interfaces: Vec<NamedInterface>,
    diagnostics: Vec<Diagnostic>,
}

/// What a sent command became.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAccepted {
    /// The CloudEvent's id.
    id: String,
    /// Its type, `ktwin.command.<interface>.<command>`.
    #[serde(rename = "type")]
    event_type: String,
    /// Its source: the instance that runs the command.
    source: String,
    /// Its time (RFC 3339): what the twin stores as a result is timed after it.
    time: String,
}

struct ModelApi {
    /// The model document, serialised once.
    doc: Bytes,
    /// Resolved interfaces by ktwin name.
    interfaces: BTreeMap<String, Interface>,
    instances: InstanceGraph,
    /// Command types some service subscribes to.
    routed: BTreeSet<EventType>,
    bus: Arc<dyn Broker>,
    /// Which of the traces commands start are recorded.
    trace_sampler: TraceSampler,
}

/// Who may use these routes: the models to readers, a command to writers of its twin; the
/// OpenAPI document is public like the platform's others.
pub fn route_policy() -> ktwin_auth::RoutePolicyBuilder {
    use ktwin_auth::{RoutePolicy, Scope, TwinParam};
    RoutePolicy::builder()
        .rule(
            &[http::Method::GET],
            MODELS_PATH,
            Scope::Read,
            TwinParam::NoTwin,
        )
        .rule(
            &[http::Method::POST],
            COMMAND_PATH,
            Scope::Write,
            TwinParam::Twin {
                interface: "interface",
                instance: "instance",
            },
        )
        .public(MODELS_OPENAPI_PATH)
}

/// [`MODELS_PATH`], [`COMMAND_PATH`] and [`MODELS_OPENAPI_PATH`] for `planned`, publishing
/// commands on `bus` (each starts a trace, recorded when `trace_sampler` samples it).
pub fn router(
    planned: &PlannedProject,
    bus: Arc<dyn Broker>,
    trace_sampler: TraceSampler,
) -> Result<Router, ModelApiError> {
    let project = &planned.project;
    let paths: Vec<PathBuf> = project
        .file
        .models
        .iter()
        .map(|m| project.root.join(m))
        .collect();
    let documents = ktwin_dtdl::load_documents(&paths)?;
    let options = ParseOptions {
        lenient_ids: project.file.lenient_ids,
        ..ParseOptions::default()
    };
    let models = ktwin_dtdl::parse(&documents, &options).map_err(ModelApiError::Parse)?;
    let name_of: BTreeMap<&str, &str> = project
        .interfaces
        .iter()
        .filter_map(|i| Some((i.spec.dtmi.as_deref()?, i.metadata.name.as_deref()?)))
        .collect();
    let interfaces: BTreeMap<String, Interface> = models
        .iter()
        .filter_map(|i| Some((name_of.get(i.id.as_str())?.to_string(), i.clone())))
        .collect();
    let doc = ModelDoc {
        interfaces: interfaces
            .iter()
            .map(|(name, interface)| NamedInterface {
                name: name.clone(),
                interface: interface.clone(),
            })
            .collect(),
        diagnostics: models.warnings.clone(),
    };
    // Strings, numbers, lists and maps: serialising cannot fail.
    let doc = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    let routed = planned
        .routes
        .subscriptions
        .iter()
        .flat_map(|s| s.event_types.iter().cloned())
        .collect();
    let api = Arc::new(ModelApi {
        doc,
        interfaces,
        instances: project.instance_graph.clone(),
        routed,
        bus,
        trace_sampler,
    });
    Ok(Router::new()
        .route(MODELS_PATH, get(models_doc))
        .route(COMMAND_PATH, post(send_command))
        .route(
            MODELS_OPENAPI_PATH,
            get(|| async { axum::Json(ModelApiDoc::openapi()) }),
        )
        .layer(DefaultBodyLimit::max(COMMAND_BODY_LIMIT))
        .with_state(api))
}

/// The project's DTDL interfaces, resolved (inherited contents flattened in, each with its
/// `origin`; schemas inlined), each with its ktwin `name`, and the parser's warnings.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    responses(
        (status = 200, description = "`{\"interfaces\": [...], \"diagnostics\": [...]}`", body = Object, content_type = "application/json")
    )
)]
async fn models_doc(State(api): State<Arc<ModelApi>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        api.doc.clone(),
    )
        .into_response()
}

/// Sends a command to a twin: the JSON body is its request payload, checked against the
/// command's DTDL request schema, and becomes a `ktwin.command.<interface>.<command>` event whose
/// source is the instance. The twin's service runs it; what it stores is timed after the event.
#[utoipa::path(
    post,
    path = "/api/v1/commands/{interface}/{instance}/{command}",
    params(
        ("interface" = String, Path, description = "The twin's interface (`s4city-city-neighborhood`)"),
        ("instance" = String, Path, description = "The twin that runs the command"),
        ("command" = String, Path, description = "The command's DTDL name (case-insensitive)")
    ),
    request_body(content = Object, description = "The request payload (JSON); empty or `null` when the command takes none", content_type = "application/json"),
    responses(
        (status = 202, description = "Published", body = CommandAccepted),
        (status = 400, description = "Not JSON, or not an instance of the request schema: the problem names the field, its value and what was expected", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such interface, twin or command", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "No service runs this interface's commands", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is larger than 256 KiB"),
        (status = 503, description = "The twin's service is not keeping up", body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn send_command(
    State(api): State<Arc<ModelApi>>,
    Path((interface, instance, command)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let at = format!("/api/v1/commands/{interface}/{instance}/{command}");
    match api.command(&interface, &instance, &command, &body).await {
        Ok(accepted) => (StatusCode::ACCEPTED, axum::Json(accepted)).into_response(),
        Err(problem) => problem.at(at).into_response(),
    }
}

impl ModelApi {
    async fn command(
        &self,
        interface: &str,
        instance: &str,
        command: &str,
        body: &[u8],
    ) -> Result<CommandAccepted, Problem> {
        let (name, def) = self.find_command(interface, instance, command)?;
        let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
        let event_type = EventType::command(interface, name).map_err(|e| bad(e.to_string()))?;
        if !self.routed.contains(&event_type) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "no service runs {interface}'s commands: give the interface a service in the project to send {event_type}"
                ),
            ));
        }
        let payload = request_payload(name, def, body)?;
        let time = Utc::now();
        let mut event = EventBuilder::new(event_type, instance)
            .map_err(|e| bad(e.to_string()))?
            .time(time)
            .data(payload)
            .build();
        // A command sent by a person starts a trace of its own, as a device message does.
        ktwin_events::trace::start_trace(&mut event, self.trace_sampler);
        let accepted = accepted(&event, time);
        match self.bus.publish(event).await {
            Ok(_) => Ok(accepted),
            Err(err @ BrokerError::Backpressure { .. }) => Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                err.to_string(),
            )),
            Err(err) => Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                err.to_string(),
            )),
        }
    }

    /// The command `command` of twin `instance` of `interface`: its DTDL name and definition.
    fn find_command(
        &self,
        interface: &str,
        instance: &str,
        command: &str,
    ) -> Result<(&str, &CommandDef), Problem> {
        let missing = |detail: String| Problem::new(StatusCode::NOT_FOUND, detail);
        let model = self
            .interfaces
            .get(interface)
            .ok_or_else(|| missing(format!("no interface {interface:?} in this project")))?;
        match self.instances.get(instance) {
            None => return Err(missing(format!("no twin {instance:?} in this project"))),
            Some(node) if node.interface != interface => {
                return Err(missing(format!(
                    "twin {instance:?} is a {}, not a {interface}",
                    node.interface
                )));
            }
            Some(_) => {}
        }
        let commands: Vec<(&str, &CommandDef)> = model
            .contents
            .iter()
            .filter_map(|c| match &c.kind {
                ContentKind::Command(def) => Some((c.name.as_str(), def)),
                _ => None,
            })
            .collect();
        commands
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(command))
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = commands.iter().map(|(name, _)| *name).collect();
                missing(if names.is_empty() {
                    format!("{interface} declares no command (asked for {command:?})")
                } else {
                    format!(
                        "{interface} declares no command {command:?}; it declares {}",
                        names.join(", ")
                    )
                })
            })
    }
}

/// The event data of a command: the body, checked against the request schema.
fn request_payload(
    command: &str,
    def: &CommandDef,
    body: &[u8],
) -> Result<serde_json::Value, Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| bad(format!("the body must be JSON (the request payload): {e}")))?
    };
    match (&def.request, value) {
        (None, serde_json::Value::Null) => Ok(serde_json::json!({})),
        (None, other) => Err(bad(format!(
            "command {command} takes no request payload, and the body is {other}"
        ))),
        (Some(request), serde_json::Value::Null) if request.nullable => Ok(serde_json::Value::Null),
        (Some(request), serde_json::Value::Null) => Err(bad(format!(
            "command {command} needs its request payload {:?}; the body is empty or null",
            request.name
        ))),
        (Some(request), value) => match payload::check(&request.schema, &value) {
            Ok(()) => Ok(value),
            Err(err) => Err(bad(format!(
                "request {:?} of command {command}: {err}",
                request.name
            ))),
        },
    }
}

fn accepted(event: &cloudevents::Event, time: DateTime<Utc>) -> CommandAccepted {
    use cloudevents::AttributesReader as _;
    CommandAccepted {
        id: event.id().to_owned(),
        event_type: event.ty().to_owned(),
        source: event.source().to_string(),
        time: time.to_rfc3339_opts(SecondsFormat::Micros, true),
    }
}

/// The OpenAPI document of the model and command routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ktwin models and commands",
        description = "The project's DTDL interfaces, and commands sent to twins"
    ),
    paths(models_doc, send_command),
    components(schemas(Problem, CommandAccepted))
)]
pub struct ModelApiDoc;
