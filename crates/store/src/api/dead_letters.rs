//! `/api/v1/dead-letters`: what the platform gave up on, with why, listed in the order it was
//! kept; deleted one by one (after a replay, say) or all at once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ktwin_service::{PROBLEM_JSON, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    ApiQuery, AppState, Deleted, PageParams, decode_cursor, encode_cursor, page_limit,
    page_response, store_problem,
};
use crate::dead_letters::{DeadLetterStore, DeadLetterUsage, LetterSelection, StoredDeadLetter};

/// A kept dead letter as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    /// Its number (delete it with `DELETE /api/v1/dead-letters/{seq}`).
    pub seq: u64,
    /// When it was kept.
    pub at: DateTime<Utc>,
    /// Who gave up on it: a subscription, or `ingress` for a refused device message.
    pub origin: String,
    /// Why.
    pub reason: String,
    /// The original headers (`ce-*` and `content-type` of a CloudEvent; `x-ktwin-topic` and
    /// `x-ktwin-reject-kind` of a device message).
    #[schema(value_type = Object)]
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// The original payload, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The original payload in standard base64, when it is not UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

impl DeadLetterView {
    /// How the API shows `stored`.
    pub fn of(stored: StoredDeadLetter) -> Self {
        let letter = stored.letter;
        let (payload, payload_base64) = match String::from_utf8(letter.payload) {
            Ok(text) => (Some(text), None),
            Err(err) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(err.as_bytes())),
            ),
        };
        Self {
            seq: stored.seq,
            at: stored.at,
            origin: letter.origin,
            reason: letter.reason,
            headers: letter
                .headers
                .into_iter()
                .map(|(name, value)| (name, serde_json::Value::String(value)))
                .collect(),
            payload,
            payload_base64,
        }
    }

    /// The original payload's bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match (&self.payload, &self.payload_base64) {
            (Some(text), _) => Ok(text.as_bytes().to_vec()),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD.decode(encoded),
            (None, None) => Ok(Vec::new()),
        }
    }
}

fn dead_letters(state: &AppState) -> Result<&dyn DeadLetterStore, Problem> {
    state.backend.dead_letters().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "the {} backend keeps no dead letters (the embedded fjall store and PostgreSQL do)",
                state.backend.name()
            ),
        )
    })
}

/// Dead letters in the order they were kept, paged.
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    params(PageParams),
    responses(
        (status = 200, description = "One page; more when an x-next-cursor header is present", body = [DeadLetterView]),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 501, description = "The backend keeps no dead letters", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
pub(super) async fn list_dead_letters(
    State(state): State<AppState>,
    uri: Uri,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Response {
    let result = async {
        let limit = page_limit(params.limit)?;
        let after: Option<u64> = params.cursor.as_deref().map(decode_cursor).transpose()?;
        let page = dead_letters(&state)?
            .list(after, limit)
            .await
            .map_err(store_problem)?;
        let next = page
            .more
            .then(|| page.items.last().map(|l| encode_cursor(&l.seq)))
            .flatten();
        let views: Vec<DeadLetterView> = page.items.into_iter().map(DeadLetterView::of).collect();
        Ok::<_, Problem>(page_response(&uri, &views, next))
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}

/// How many dead letters are kept, their bytes, and how many were evicted to make room.
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters/usage",
    responses(
        (status = 200, body = DeadLetterUsage),
        (status = 501, body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
pub(super) async fn dead_letter_usage(State(state): State<AppState>, uri: Uri) -> Response {
    let result = async {
        let usage = dead_letters(&state)?.usage().await.map_err(store_problem)?;
        Ok::<_, Problem>(Json(usage).into_response())
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}

/// Deletes every dead letter.
#[utoipa::path(
    delete,
    path = "/api/v1/dead-letters",
    responses(
        (status = 200, body = Deleted),
        (status = 501, body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
pub(super) async fn purge_dead_letters(State(state): State<AppState>, uri: Uri) -> Response {
    remove(&state, &uri, LetterSelection::All).await
}

/// Deletes one dead letter (0 deleted when there is none of that number).
#[utoipa::path(
    delete,
    path = "/api/v1/dead-letters/{seq}",
    params(("seq" = u64, Path)),
    responses(
        (status = 200, body = Deleted),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 501, body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON)
    )
)]
pub(super) async fn delete_dead_letter(
    State(state): State<AppState>,
    uri: Uri,
    Path(seq): Path<String>,
) -> Response {
    match seq.parse::<u64>() {
        Ok(seq) => remove(&state, &uri, LetterSelection::Numbers(vec![seq])).await,
        Err(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            format!("dead letter number {seq:?} is not a non-negative integer"),
        )
        .at(uri.path())
        .into_response(),
    }
}

async fn remove(state: &AppState, uri: &Uri, selection: LetterSelection) -> Response {
    let result = async {
        let deleted = dead_letters(state)?
            .remove(selection)
            .await
            .map_err(store_problem)?;
        Ok::<_, Problem>(Json(Deleted { deleted }).into_response())
    };
    result
        .await
        .unwrap_or_else(|p| p.at(uri.path()).into_response())
}
