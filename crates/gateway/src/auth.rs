//! Who may call the gateway: a bearer token, checked by one middleware layer.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ktwin_service::Problem;

/// The gateway's access rule.
#[derive(Clone)]
pub enum Access {
    /// Callers must send `Authorization: Bearer <token>`.
    Token(String),
    /// Anyone may call (only for a gateway reachable from loopback; `ktwin gateway --insecure`).
    Open,
}

impl std::fmt::Debug for Access {
    // The token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Token(_) => f.write_str("Token(***)"),
            Access::Open => f.write_str("Open"),
        }
    }
}

/// Byte-wise comparison whose time does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses requests without the configured bearer token (401 with `WWW-Authenticate`).
pub async fn require_bearer(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let Access::Token(token) = access.as_ref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if same(presented.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => {
            let detail = match presented {
                None => "missing bearer token: send `Authorization: Bearer <token>`",
                Some(_) => "the bearer token is not valid",
            };
            let mut response = Problem::new(StatusCode::UNAUTHORIZED, detail)
                .at(request.uri().path())
                .into_response();
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"ktwin\""),
            );
            response
        }
    }
}
