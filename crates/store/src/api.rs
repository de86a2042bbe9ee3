//! The event store's REST API (routes of the original KTWIN event store, paged, with problem
//! details and an OpenAPI document generated from these handlers).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderMap, HeaderName, HeaderValue, IF_MATCH,
    IF_NONE_MATCH, LINK,
};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::Event;
use ktwin_auth::{RoutePolicy, RoutePolicyBuilder, Scope, TwinParam};
use ktwin_service::query::decode_pairs;
use ktwin_service::{PROBLEM_JSON, Problem};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::backend::{Backend, EventPosition, HistoryQuery, StoreError};
use crate::changed::NewVersion;
use crate::conditional::{ConditionalAppend, Precondition, StateVersion};
use crate::event::{InstanceKey, LatestState, TwinEvent};
use crate::ingest::Ingestor;
use crate::merge::Version;

pub mod dead_letters;
pub mod state_at;
pub mod traces;

/// Page size when the request names none.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page a request may ask for.
pub const MAX_PAGE: usize = 1000;
/// Where events are posted (by the broker's Trigger in a cluster) and listed.
pub const INGEST_PATH: &str = "/api/v1/twin-events";
/// Header carrying the cursor of the next page (also given as a `Link: rel="next"`).
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// The interfaces of the loaded model; unknown interfaces get 404. Shared, so a runtime can
/// swap the set when the model changes.
#[derive(Debug, Clone, Default)]
pub struct KnownInterfaces(Arc<RwLock<Option<BTreeSet<String>>>>);

impl KnownInterfaces {
    /// Accepts every interface (no model loaded).
    pub fn any() -> Self {
        Self::default()
    }

    /// Accepts only `interfaces`.
    pub fn only(interfaces: impl IntoIterator<Item = String>) -> Self {
        let known = Self::default();
        known.set(Some(interfaces.into_iter().collect()));
        known
    }

    /// Replaces the set (`None` = accept every interface).
    pub fn set(&self, interfaces: Option<BTreeSet<String>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = interfaces;
    }

    fn check(&self, interface: &str) -> Result<(), Problem> {
        let known = self.0.read().unwrap_or_else(|e| e.into_inner());
        match known.as_ref() {
            Some(set) if !set.contains(interface) => Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown twin interface {interface:?}: the loaded model does not declare it"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest accepted request body in bytes (larger → 413).
    pub body_limit: usize,
    /// Interfaces events may be stored for.
    pub known_interfaces: KnownInterfaces,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            known_interfaces: KnownInterfaces::any(),
        }
    }
}

#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
    ingestor: Ingestor,
    config: Arc<ApiConfig>,
}

/// The API routes (`/api/v1/...`), without `/health` etc. (mount
/// [`ktwin_service::ops_router`] beside them).
pub fn router(backend: Arc<dyn Backend>, ingestor: Ingestor, config: ApiConfig) -> Router {
    let state = AppState {
        backend,
        ingestor,
        config: Arc::new(config),
    };
    Router::new()
        .route(INGEST_PATH, get(list_events).post(post_event))
        .route(
            "/api/v1/twin-events/{interface}/{instance}",
            get(history).delete(delete_instance),
        )
        .route(
            "/api/v1/twin-events/{interface}/{instance}/latest",
            get(latest),
        )
        .route(
            "/api/v1/twin-events/{interface}/{instance}/state",
            get(state_at::state_at_route),
        )
        .route("/api/v1/twins/{interface}", get(list_twins))
        .route(
            "/api/v1/dead-letters",
            get(dead_letters::list_dead_letters).delete(dead_letters::purge_dead_letters),
        )
        .route(
            "/api/v1/dead-letters/usage",
            get(dead_letters::dead_letter_usage),
        )
        .route(
            "/api/v1/dead-letters/{seq}",
            axum::routing::delete(dead_letters::delete_dead_letter),
        )
        .route("/api/v1/traces/{id}", get(traces::trace_route))
        .route("/api/v1/openapi.json", get(openapi_json))
        .with_state(state)
}

/// What each route of [`router`] needs (`ktwin_auth::AuthLayer`): reads need `read` on the
/// twins they return, writes `write`; posting events (whose bodies may name any twin) and the
/// dead letters (events of any twin) and a trace (events of any twin) need a grant on every
/// twin, purging dead letters `admin`.
/// The OpenAPI document is public.
pub fn route_policy() -> RoutePolicyBuilder {
    let twin = TwinParam::Twin {
        interface: "interface",
        instance: "instance",
    };
    RoutePolicy::builder()
        .public("/api/v1/openapi.json")
        .rule(
            &[Method::GET],
            INGEST_PATH,
            Scope::Read,
            TwinParam::AllTwins,
        )
        .rule(
            &[Method::POST],
            INGEST_PATH,
            Scope::Write,
            TwinParam::AllTwins,
        )
        .rule(
            &[Method::GET],
            "/api/v1/twin-events/{interface}/{instance}",
            Scope::Read,
            twin.clone(),
        )
        .rule(
            &[Method::DELETE],
            "/api/v1/twin-events/{interface}/{instance}",
            Scope::Write,
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
            "/api/v1/twin-events/{interface}/{instance}/state",
            Scope::Read,
            twin,
        )
        .rule(
            &[Method::GET],
            "/api/v1/twins/{interface}",
            Scope::Read,
            TwinParam::Interface("interface"),
        )
        .rule(
            &[Method::GET],
            "/api/v1/dead-letters",
            Scope::Read,
            TwinParam::AllTwins,
        )
        .rule(
            &[Method::DELETE],
            "/api/v1/dead-letters",
            Scope::Admin,
            TwinParam::AllTwins,
        )
        .rule(
            &[Method::GET],
            "/api/v1/dead-letters/usage",
            Scope::Read,
            TwinParam::NoTwin,
        )
        .rule(
            &[Method::DELETE],
            "/api/v1/dead-letters/{seq}",
            Scope::Admin,
            TwinParam::AllTwins,
        )
        .rule(
            &[Method::GET],
            "/api/v1/traces/{id}",
            Scope::Read,
            TwinParam::AllTwins,
        )
}

/// The OpenAPI 3 document of the event store.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ktwin event store",
        description = "History and latest state of every twin"
    ),
    paths(
        post_event,
        list_events,
        history,
        latest,
        state_at::state_at_route,
        delete_instance,
        list_twins,
        dead_letters::list_dead_letters,
        dead_letters::dead_letter_usage,
        dead_letters::purge_dead_letters,
        dead_letters::delete_dead_letter,
        traces::trace_route
    ),
    components(schemas(
        TwinEvent,
        LatestState,
        Problem,
        Deleted,
        dead_letters::DeadLetterView,
        crate::DeadLetterUsage
    ))
)]
pub struct StoreApi;

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(StoreApi::openapi())
}

fn store_problem(err: StoreError) -> Problem {
    let status = if err.is_transient() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if matches!(err, StoreError::PreconditionFailed { .. }) {
        StatusCode::PRECONDITION_FAILED
    } else if matches!(err, StoreError::Full { .. }) {
        StatusCode::INSUFFICIENT_STORAGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Problem::new(status, err.chain())
}

fn bad_request(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, detail)
}

/// Query string extractor whose rejections are problem details.
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        let invalid = |detail: &dyn std::fmt::Display| {
            bad_request(format!("invalid query string {query:?}: {detail}"))
        };
        let object: serde_json::Map<String, serde_json::Value> = decode_pairs(query)
            .map_err(|e| invalid(&e))?
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        serde_json::from_value(serde_json::Value::Object(object))
            .map(ApiQuery)
            .map_err(|e| invalid(&e))
    }
}

/// Query values are strings; numbers are parsed from them.
fn number_from_str<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    text.map(|t| {
        t.parse().map_err(|_| {
            serde::de::Error::custom(format!("limit {t:?} is not a non-negative integer"))
        })
    })
    .transpose()
}

/// Opaque page cursors: hex of the JSON position, so they survive any URL unescaped.
fn encode_cursor<T: Serialize>(position: &T) -> String {
    let json = serde_json::to_vec(position).expect("positions serialize");
    json.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor<T: DeserializeOwned>(cursor: &str) -> Result<T, Problem> {
    let invalid = || {
        bad_request(format!(
            "invalid cursor {cursor:?}: pass the value of a previous response's {NEXT_CURSOR_HEADER} header"
        ))
    };
    // Pairs of bytes, not of characters: a cursor is ASCII hex, and slicing a string that is not
    // (`a\u{e9}b`) at a byte offset inside a character would panic.
    let bytes: Vec<u8> = cursor
        .as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some(hex_digit(*high)? << 4 | hex_digit(*low)?),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(bad_request(format!(
            "limit is {n}; expected 1 to {MAX_PAGE}"
        ))),
    }
}

/// A JSON array page with `Link: <...>; rel="next"` and [`NEXT_CURSOR_HEADER`] when more follow.
fn page_response<T: Serialize>(uri: &Uri, items: &[T], next: Option<String>) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(cursor) = next {
        let mut query: Vec<String> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
            .map(str::to_owned)
            .collect();
        query.push(format!("cursor={cursor}"));
        let link = format!("<{}?{}>; rel=\"next\"", uri.path(), query.join("&"));
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(LINK, value);
        }
        if let Ok(value) = HeaderValue::from_str(&cursor) {
            headers.insert(HeaderName::from_static(NEXT_CURSOR_HEADER), value);
        }
    }
    (headers, Json(items)).into_response()
}

/// Reads the body, enforcing the limit (413 when exceeded).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Problem> {
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(e) = source {
            if e.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = e.source();
        }
        bad_request(format!("cannot read the request body: {err}"))
    })
}

/// Parses one (binary or structured mode) or several (batch mode) CloudEvents.
fn parse_cloudevents(headers: &HeaderMap, body: Bytes) -> Result<Vec<Event>, Problem> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/cloudevents-batch+json") {
        return serde_json::from_slice(&body)
            .map_err(|err| bad_request(format!("invalid CloudEvents batch: {err}")));
    }
    if !content_type.starts_with("application/cloudevents+json")
        && !headers.contains_key("ce-specversion")
    {
        return Err(bad_request(
            "not a CloudEvent: missing required attribute \"specversion\" (header ce-specversion \
             in binary mode, or Content-Type application/cloudevents+json for structured mode)",
        ));
    }
    cloudevents::binding::http::to_event(headers, body.to_vec())
        .map(|event| vec![event])
        .map_err(|err| bad_request(format!("not a valid CloudEvent: {err}")))
}

fn event_problem(err: crate::event::EventError) -> Problem {
    use crate::event::EventError;
    let status = match err {
        EventError::BadType { .. } | EventError::BadSource { .. } | EventError::BadId { .. } => {
            StatusCode::BAD_REQUEST
        }
        EventError::DataNotJson(_)
        | EventError::DataNotObject { .. }
        | EventError::DataTooDeep { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Problem::new(status, err.to_string())
}

/// The precondition of a conditional write: `If-Match: "<version>"` (the `ETag` of the
/// instance's `latest`) or `If-None-Match: *` (no state stored yet); `None` without either
/// header. Weak tags, `*` in `If-Match` and lists are refused: a writer names the one version
/// it read.
fn precondition(headers: &HeaderMap) -> Result<Option<Precondition>, Problem> {
    let text = |name: HeaderName| {
        headers
            .get(&name)
            .map(|v| {
                v.to_str().map_err(|_| {
                    bad_request(format!(
                        "header {name} is not visible ASCII: expected a quoted version"
                    ))
                })
            })
            .transpose()
    };
    if let Some(value) = text(IF_NONE_MATCH)? {
        return match value.trim() {
            "*" => Ok(Some(Precondition::Absent)),
            other => Err(bad_request(format!(
                "If-None-Match is {other:?}; expected * (store only if the instance has no state)"
            ))),
        };
    }
    let Some(value) = text(IF_MATCH)? else {
        return Ok(None);
    };
    let version = value
        .trim()
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|v| !v.is_empty() && !v.contains(['"', ',']));
    match version {
        Some(version) => Ok(Some(Precondition::At(StateVersion::from_opaque(version)))),
        None => Err(bad_request(format!(
            "If-Match is {value:?}; expected one quoted version, the ETag of \
             GET /api/v1/twin-events/{{interface}}/{{instance}}/latest"
        ))),
    }
}

/// Stores `events` (one event) only if its instance meets `precondition`
/// ([`Backend::append_if`]): `202` when stored or a redelivery, `412` when another write got
/// there first.
async fn post_conditional(
    state: &AppState,
    mut events: Vec<TwinEvent>,
    precondition: &Precondition,
) -> Result<Response, Problem> {
    let sent = events.len();
    let (Some(event), 1) = (events.pop(), sent) else {
        return Err(bad_request(format!(
            "a conditional write (If-Match or If-None-Match) takes one event, not {sent}"
        )));
    };
    if let Some(failure) = state.ingestor.failure() {
        return Err(store_problem(failure));
    }
    let backend = state.backend.name();
    let done = state
        .backend
        .append_if(event, precondition)
        .await
        .map_err(store_problem)?;
    let counter = match done {
        ConditionalAppend::Duplicate => crate::metric_names::DUPLICATES,
        _ => crate::metric_names::STORED,
    };
    metrics::counter!(counter, "backend" => backend).increment(1);
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Header of a `202` to a stored event (or batch) listing, comma-separated, the ids the
/// request's events were stored under as new versions, if any.
pub const NEW_VERSIONS_HEADER: &str = "ktwin-new-versions";

/// Stores a twin event (or a batch); returns once durable. Idempotent by event id and data: an
/// event whose id is stored with the same data is a redelivery, left as it is; one whose id is
/// stored with other data is stored as a new version under `<id>~<16 hex digits of the
/// SHA-256 of its canonical data>`, listed in the `ktwin-new-versions` header of the answer
/// (a header, not a body: a broker delivering to this route would take a body for a reply).
///
/// A conditional write (`If-Match: "<version>"`, the `ETag` of the instance's `latest`, or
/// `If-None-Match: *` for an instance without state) carries one event and is stored only if
/// the instance's latest state is still at that version when it commits, else `412` naming the
/// instance, the expected and the current version; an event already stored with its id and
/// data is a redelivery (`202`, nothing written) whatever the precondition.
#[utoipa::path(
    post,
    path = "/api/v1/twin-events",
    params(
        ("If-Match" = Option<String>, Header, description = "Store only if the instance's latest state is at this version (its ETag); one event"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: store only if the instance has no state yet; one event")
    ),
    request_body(
        content = Object,
        description = "CloudEvent in binary mode (ce-* headers, JSON object data), structured \
                       mode (application/cloudevents+json) or batch mode \
                       (application/cloudevents-batch+json)"
    ),
    responses(
        (status = 202, description = "Stored durably", headers(
            ("ktwin-new-versions" = String, description = "Ids of the request's events stored as new versions (same id, other data), comma-separated; absent when none")
        )),
        (status = 400, description = "Not a CloudEvent or not a twin event type", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Interface unknown to the loaded model", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "Conditional write: the instance's latest state is no longer at the expected version (nothing written)", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body over the limit", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Data is not a JSON object", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "Database unavailable", body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn post_event(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let body = read_body(&headers, body, state.config.body_limit).await?;
        let received = Utc::now();
        let mut events = Vec::new();
        for event in parse_cloudevents(&headers, body)? {
            let event = TwinEvent::from_cloudevent(&event, received).map_err(event_problem)?;
            state.config.known_interfaces.check(&event.interface_id)?;
            events.push(event);
        }
        if let Some(precondition) = precondition(&headers)? {
            return post_conditional(&state, events, &precondition).await;
        }
        let sent = SentEvents::of(&events);
        let report = state.ingestor.submit(events).await.map_err(store_problem)?;
        let versions = sent.own(report.versions);
        let mut response = StatusCode::ACCEPTED.into_response();
        if !versions.is_empty() {
            let ids: Vec<&str> = versions.iter().map(|v| v.stored_id.as_str()).collect();
            // Ids are CloudEvent ids the request carried in a header or a JSON string: a
            // control character makes the header invalid, and the list is then left out.
            if let Ok(value) = HeaderValue::from_str(&ids.join(", ")) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(NEW_VERSIONS_HEADER), value);
            }
        }
        Ok::<_, Problem>(response)
    }
    .await;
    result.unwrap_or_else(|problem| problem.at(uri.path()).into_response())
}

/// Which events a request sent, to pick its own new versions out of its batch's report (a batch
/// joins several requests): a hash per (interface, instance, id), so the common answer costs
/// no copy of the events' names.
struct SentEvents(Vec<u64>);

impl SentEvents {
    fn hash(interface: &str, instance: &str, id: &str) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one((interface, instance, id))
    }

    fn of(events: &[TwinEvent]) -> Self {
        let mut hashes: Vec<u64> = events
            .iter()
            .map(|e| Self::hash(&e.interface_id, &e.instance_id, &e.id))
            .collect();
        hashes.sort_unstable();
        Self(hashes)
    }

    fn own(&self, versions: Vec<NewVersion>) -> Vec<NewVersion> {
        versions
            .into_iter()
            .filter(|v| {
                let hash = Self::hash(&v.interface, &v.instance, &v.id);
                self.0.binary_search(&hash).is_ok()
            })
            .collect()
    }
}

/// Paging of all events.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Page size (1–1000, default 100).
    #[serde(default, deserialize_with = "number_from_str")]
    limit: Option<usize>,
    /// Cursor from the previous page's `x-next-cursor` header.
    cursor: Option<String>,
}

/// Lists all events, ordered by interface, instance, time and id, paged.
#[utoipa::path(
    get,
    path = "/api/v1/twin-events",
    params(PageParams),
    responses(
        (status = 200, description = "One page; more when an x-next-cursor header is present", body = [TwinEvent]),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn list_events(
    State(state): State<AppState>,
    uri: Uri,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Response {
    let result = async {
        let limit = page_limit(params.limit)?;
        let after: Option<EventPosition> =
            params.cursor.as_deref().map(decode_cursor).transpose()?;
        let page = state
            .backend
            .events(after.as_ref(), limit)
            .await
            .map_err(store_problem)?;
        let next = page
            .more
            .then(|| {
                page.items
                    .last()
                    .map(|e| encode_cursor(&EventPosition::of(e)))
            })
            .flatten();
        Ok::<_, Problem>(page_response(&uri, &page.items, next))
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}

/// Window and paging of one instance's history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryParams {
    /// Only events at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Only events at or before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Page size (1–1000, default 100).
    #[serde(default, deserialize_with = "number_from_str")]
    limit: Option<usize>,
    /// Cursor from the previous page's `x-next-cursor` header.
    cursor: Option<String>,
}

/// One instance's history, newest first, paged.
#[utoipa::path(
    get,
    path = "/api/v1/twin-events/{interface}/{instance}",
    params(("interface" = String, Path), ("instance" = String, Path), HistoryParams),
    responses(
        (status = 200, description = "One page, newest first", body = [TwinEvent]),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Interface unknown to the loaded model", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn history(
    State(state): State<AppState>,
    uri: Uri,
    Path((interface, instance)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Response {
    let result = async {
        state.config.known_interfaces.check(&interface)?;
        let query = HistoryQuery {
            since: params.since,
            until: params.until,
            before: params
                .cursor
                .as_deref()
                .map(decode_cursor::<Version>)
                .transpose()?,
            limit: page_limit(params.limit)?,
        };
        let key = InstanceKey::new(interface, instance);
        let page = state
            .backend
            .history(&key, &query)
            .await
            .map_err(store_problem)?;
        let next = page
            .more
            .then(|| page.items.last().map(|e| encode_cursor(&e.version())))
            .flatten();
        Ok::<_, Problem>(page_response(&uri, &page.items, next))
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}

/// The latest state as a binary-mode CloudEvent (`ce-id`, `ce-type`, `ce-source`, `ce-time`
/// of the newest event; body = merged state), with its version as `ETag` (for a conditional
/// write, `If-Match`).
#[utoipa::path(
    get,
    path = "/api/v1/twin-events/{interface}/{instance}/latest",
    params(("interface" = String, Path), ("instance" = String, Path)),
    responses(
        (status = 200, description = "Binary-mode CloudEvent; body is the merged state", body = Object, headers(
            ("ETag" = String, description = "Version of the state, for If-Match on a conditional write")
        )),
        (status = 404, description = "No event for this instance, or unknown interface", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn latest(
    State(state): State<AppState>,
    uri: Uri,
    Path((interface, instance)): Path<(String, String)>,
) -> Response {
    let result = async {
        state.config.known_interfaces.check(&interface)?;
        let key = InstanceKey::new(interface, instance);
        let latest = state
            .backend
            .latest(&key)
            .await
            .map_err(store_problem)?
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no event stored for instance {:?} of interface {:?}",
                        key.instance, key.interface
                    ),
                )
            })?;
        Ok::<_, Problem>(latest_response(&latest))
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}

fn latest_response(latest: &LatestState) -> Response {
    let body = serde_json::to_vec(&latest.state).expect("states serialize");
    let time = latest.time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let mut headers = HeaderMap::new();
    let pairs = [
        ("ce-specversion", ktwin_events::SPEC_VERSION),
        ("ce-id", latest.id.as_str()),
        ("ce-type", latest.event_type.as_str()),
        ("ce-source", latest.instance_id.as_str()),
        ("ce-time", time.as_str()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(ktwin_events::JSON_CONTENT_TYPE),
    );
    if let Ok(etag) = HeaderValue::from_str(&latest.version().etag()) {
        headers.insert(ETAG, etag);
    }
    (StatusCode::OK, headers, body).into_response()
}

/// Result of deleting an instance's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Deleted {
    /// How many events were deleted.
    deleted: u64,
}

/// Deletes one instance's history and latest state.
#[utoipa::path(
    delete,
    path = "/api/v1/twin-events/{interface}/{instance}",
    params(("interface" = String, Path), ("instance" = String, Path)),
    responses(
        (status = 200, description = "Deleted (0 when there was nothing)", body = Deleted),
        (status = 404, description = "Interface unknown to the loaded model", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn delete_instance(
    State(state): State<AppState>,
    uri: Uri,
    Path((interface, instance)): Path<(String, String)>,
) -> Response {
    let result = async {
        state.config.known_interfaces.check(&interface)?;
        let deleted = state
            .backend
            .delete(&InstanceKey::new(interface, instance))
            .await
            .map_err(store_problem)?;
        Ok::<_, Problem>(Json(Deleted { deleted }).into_response())
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}

/// Latest states of every instance of an interface, ordered by instance, paged.
#[utoipa::path(
    get,
    path = "/api/v1/twins/{interface}",
    params(("interface" = String, Path), PageParams),
    responses(
        (status = 200, description = "One page of latest states", body = [LatestState]),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Interface unknown to the loaded model", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn list_twins(
    State(state): State<AppState>,
    uri: Uri,
    Path(interface): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Response {
    let result = async {
        state.config.known_interfaces.check(&interface)?;
        let limit = page_limit(params.limit)?;
        let after: Option<String> = params.cursor.as_deref().map(decode_cursor).transpose()?;
        let page = state
            .backend
            .twins(&interface, after.as_deref(), limit)
            .await
            .map_err(store_problem)?;
        let next = page
            .more
            .then(|| page.items.last().map(|t| encode_cursor(&t.instance_id)))
            .flatten();
        Ok::<_, Problem>(page_response(&uri, &page.items, next))
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let version = Version {
            micros: 42,
            id: "a b/é".into(),
        };
        let cursor = encode_cursor(&version);
        assert!(cursor.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(decode_cursor::<Version>(&cursor).unwrap(), version);
        for bad in ["zz", "abc", "00", "a\u{e9}b", "\u{e9}\u{e9}", "+1"] {
            assert_eq!(decode_cursor::<Version>(bad).unwrap_err().status, 400);
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_limit(Some(0)).unwrap_err().status, 400);
        assert_eq!(page_limit(Some(MAX_PAGE + 1)).unwrap_err().status, 400);
    }

    #[test]
    fn openapi_lists_every_route() {
        let doc = serde_json::to_value(StoreApi::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/api/v1/twin-events",
            "/api/v1/twin-events/{interface}/{instance}",
            "/api/v1/twin-events/{interface}/{instance}/latest",
            "/api/v1/twin-events/{interface}/{instance}/state",
            "/api/v1/twins/{interface}",
            "/api/v1/dead-letters",
            "/api/v1/dead-letters/usage",
            "/api/v1/dead-letters/{seq}",
        ] {
            assert!(paths.contains_key(path), "{path} missing from {paths:?}");
        }
        assert_eq!(doc["openapi"].as_str().unwrap().chars().next(), Some('3'));
    }
}
