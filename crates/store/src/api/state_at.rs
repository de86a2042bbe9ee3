//! Time travel: `GET /api/v1/twin-events/{interface}/{instance}/state?at=T`, a twin's state as
//! of `T`, computed from its history with the store's own merge.
//!
//! The history up to `T` is read page by page (newest first) and folded into a [`MergeTree`],
//! whose merge is commutative and idempotent: the pages' order does not matter, and memory
//! holds one page and the state, not the whole history. The result is what the latest state
//! was right after the newest event at or before `T`, out-of-order arrivals included (an event
//! that arrived after `T` with a time before it counts: states are ordered by event time).

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use ktwin_service::{PROBLEM_JSON, Problem};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiQuery, AppState, MAX_PAGE, latest_response, store_problem};
use crate::backend::{Backend, HistoryQuery, StoreError};
use crate::event::{InstanceKey, LatestState};
use crate::merge::MergeTree;

/// The moment of a time-travel read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AtParams {
    /// The moment (RFC 3339); events with a time at or before it are merged.
    at: Option<DateTime<Utc>>,
}

/// The state of `key` as of `at`: its events with a time at or before `at`, merged as the
/// latest state is; `None` when it had none.
pub async fn state_at(
    backend: &dyn Backend,
    key: &InstanceKey,
    at: DateTime<Utc>,
) -> Result<Option<LatestState>, StoreError> {
    let mut tree = MergeTree::new();
    let mut newest = None;
    let mut count = 0_i64;
    let mut query = HistoryQuery {
        until: Some(at),
        limit: MAX_PAGE,
        ..HistoryQuery::default()
    };
    loop {
        let page = backend.history(key, &query).await?;
        for event in &page.items {
            tree.apply_members(&event.version(), &event.event_data);
        }
        count += page.items.len() as i64;
        if newest.is_none() {
            newest = page.items.first().cloned();
        }
        match page.items.last() {
            Some(last) if page.more => query.before = Some(last.version()),
            _ => break,
        }
    }
    Ok(newest.map(|event| LatestState {
        interface_id: key.interface.clone(),
        instance_id: key.instance.clone(),
        id: event.id,
        event_type: event.event_type,
        time: event.time,
        event_count: count,
        state: tree.materialize(),
    }))
}

/// A twin's state as of a moment, computed from its history with the same merge as the
/// latest state; a binary-mode CloudEvent like `…/latest` (`ce-id`, `ce-type`, `ce-time` of
/// the newest event at or before the moment).
#[utoipa::path(
    get,
    path = "/api/v1/twin-events/{interface}/{instance}/state",
    params(("interface" = String, Path), ("instance" = String, Path), AtParams),
    responses(
        (status = 200, description = "Binary-mode CloudEvent; body is the state as of `at`", body = Object),
        (status = 400, description = "`at` missing or not RFC 3339", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No event at or before `at`, or unknown interface", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
pub(super) async fn state_at_route(
    State(state): State<AppState>,
    uri: Uri,
    Path((interface, instance)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<AtParams>,
) -> Response {
    let result = async {
        state.config.known_interfaces.check(&interface)?;
        let at = params.at.ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "query parameter \"at\" is required: the moment, in RFC 3339 (e.g. 2024-05-01T12:00:00Z)",
            )
        })?;
        let key = InstanceKey::new(interface, instance);
        let found = state_at(state.backend.as_ref(), &key, at)
            .await
            .map_err(store_problem)?
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no event stored for instance {:?} of interface {:?} at or before {}",
                        key.instance,
                        key.interface,
                        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                    ),
                )
            })?;
        Ok::<_, Problem>(latest_response(&found))
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}
