//! RFC 7807 problem details (`application/problem+json`), the error body of every ktwin
//! service.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// Media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 7807 problem: what went wrong, for humans (`title`, `detail`) and programs
/// (`status`, `type`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI reference identifying the problem type (`about:blank` when only the status
    /// matters).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the problem type (the status reason phrase by default).
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence, naming the offending value.
    pub detail: String,
    /// The request path the problem occurred on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl Problem {
    /// A problem with `status`, its reason phrase as title, and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
        }
    }

    /// Sets the request path the problem occurred on.
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.instance = Some(path.into());
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).expect("problems serialize");
        (self.status(), [(CONTENT_TYPE, PROBLEM_JSON)], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_rfc7807_members() {
        let problem = Problem::new(StatusCode::NOT_FOUND, "no twin x").at("/api/v1/x");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "about:blank", "title": "Not Found", "status": 404,
                               "detail": "no twin x", "instance": "/api/v1/x"})
        );
        let response = problem.into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
    }
}
