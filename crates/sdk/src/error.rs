//! Errors of twin handlers and of the lookups they make.

use http::StatusCode;

/// Why a handler did not process an event. The HTTP contract maps it to a status code that
/// tells Knative whether redelivering can help.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event itself is wrong (bad type, bad data): redelivering the same bytes cannot
    /// succeed, so it is answered `400` (Knative does not retry 400; it goes to the dead-letter
    /// sink if one is configured).
    #[error("invalid event: {0}")]
    Invalid(String),
    /// A dependency (event store, graph, broker) failed: answered `503`, Knative redelivers.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// Anything else: answered `500`, Knative redelivers.
    #[error("handler failed: {0}")]
    Failed(String),
}

impl HandlerError {
    /// The HTTP status of the Knative contract.
    pub fn status(&self) -> StatusCode {
        match self {
            HandlerError::Invalid(_) => StatusCode::BAD_REQUEST,
            HandlerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HandlerError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A lookup (graph, latest state) that could not be answered. "Not found" is not an error:
/// lookups return `Ok(None)` for it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct LookupError {
    /// What was looked up, e.g. `latest state of city-pole/pole-1`.
    pub what: String,
    /// Why it failed.
    pub reason: String,
}

impl LookupError {
    /// A lookup error about `what`.
    pub fn new(what: impl Into<String>, reason: impl ToString) -> Self {
        Self {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<LookupError> for HandlerError {
    fn from(err: LookupError) -> Self {
        HandlerError::Unavailable(err.to_string())
    }
}
