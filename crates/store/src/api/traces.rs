//! `/api/v1/traces/{id}`: the stored events of one trace (W3C trace context the events carried,
//! see `ktwin_events::trace`), so the chain of events one device message caused can be
//! followed.

use axum::extract::{Path, State};
use axum::http::header::{HeaderName, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ktwin_events::trace::TraceId;
use ktwin_service::{PROBLEM_JSON, Problem};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiQuery, AppState, MAX_PAGE, page_limit, store_problem};

/// Header of a trace answer that leaves events out (more than the limit).
pub const TRACE_TRUNCATED_HEADER: &str = "ktwin-trace-truncated";

/// How many events of a trace to return.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TraceParams {
    /// At most this many events (1–1000, default 1000).
    #[serde(default, deserialize_with = "super::number_from_str")]
    limit: Option<usize>,
}

/// The trace an id names: a trace id (32 lower-case hex digits), else the id of the event that
/// started the trace (a device message's event; see `TraceId::of_event_id`).
pub fn trace_of(id: &str) -> TraceId {
    id.parse().unwrap_or_else(|_| TraceId::of_event_id(id))
}

/// The stored events of one trace, in time order; each carries its `traceparent` (its span)
/// and `tracestate` (whose `ktwin` entry lists the spans of its causes, nearest first).
#[utoipa::path(
    get,
    path = "/api/v1/traces/{id}",
    params(
        ("id" = String, Path, description = "A trace id (32 lower-case hex digits), or the id of the event that started the trace (a device message's event)"),
        TraceParams
    ),
    responses(
        (status = 200, description = "The trace's stored events in time order (empty when none)", body = [crate::TwinEvent], headers(
            ("ktwin-trace-truncated" = String, description = "`true` when the trace has more events than the limit")
        )),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
pub(super) async fn trace_route(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    ApiQuery(params): ApiQuery<TraceParams>,
) -> Response {
    let result = async {
        let limit = page_limit(Some(params.limit.unwrap_or(MAX_PAGE)))?;
        if id.is_empty() || id.chars().any(char::is_control) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                format!("trace {id:?}: expected a trace id or an event id"),
            ));
        }
        let page = state
            .backend
            .trace(trace_of(&id), limit)
            .await
            .map_err(store_problem)?;
        let mut response = axum::Json(&page.items).into_response();
        if page.more {
            response.headers_mut().insert(
                HeaderName::from_static(TRACE_TRUNCATED_HEADER),
                HeaderValue::from_static("true"),
            );
        }
        Ok::<_, Problem>(response)
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_trace_or_the_trace_it_started() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_of(trace).to_string(), trace);
        let device_event = "0190f5a2-7b1c-7d3e-8f00-0123456789ab";
        assert_eq!(
            trace_of(device_event).to_string(),
            "0190f5a27b1c7d3e8f000123456789ab"
        );
        assert_eq!(trace_of("reading-1"), TraceId::of_event_id("reading-1"));
    }
}
