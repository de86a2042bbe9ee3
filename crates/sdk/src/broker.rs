//! Posting events to the broker ingress (`KTWIN_BROKER`) in binary mode, with a timeout per
//! attempt and bounded retries.

use std::time::Duration;

use cloudevents::{AttributesReader, Event};

use crate::error::HandlerError;

/// Converts `event` into the parts of a binary-mode HTTP message: `ce-*` headers plus
/// `Content-Type`, and the data as body.
pub fn to_binary_http(event: Event) -> Result<(http::HeaderMap, Vec<u8>), HandlerError> {
    let id = event.id().to_owned();
    let request: http::Request<Option<Vec<u8>>> = http::Request::try_from(event)
        .map_err(|e| HandlerError::Failed(format!("event {id} cannot be sent over HTTP: {e}")))?;
    let (parts, body) = request.into_parts();
    Ok((parts.headers, body.unwrap_or_default()))
}

/// How [`BrokerClient`] retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per event, at least 1.
    pub attempts: u32,
    /// Delay before the second attempt; doubled after each failure.
    pub first_backoff: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            first_backoff: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Posts events to a CloudEvents broker ingress.
#[derive(Clone)]
pub struct BrokerClient {
    url: String,
    client: reqwest::Client,
    retry: RetryPolicy,
}

impl BrokerClient {
    /// A client of the ingress at `url`.
    pub fn new(url: &str, retry: RetryPolicy) -> Self {
        Self {
            url: url.to_owned(),
            client: crate::http_client::client(retry.timeout, None),
            retry,
        }
    }

    /// Sends `token` as a bearer token (a platform with authentication on).
    pub fn with_token(mut self, token: &str) -> Self {
        self.client = crate::http_client::client(self.retry.timeout, Some(token));
        self
    }

    /// Posts `event`; any 2xx (the broker answers 202) is success. Transport errors, 5xx and
    /// 429 are retried with backoff; other statuses fail at once.
    pub async fn post(&self, event: Event) -> Result<(), HandlerError> {
        let id = event.id().to_owned();
        let (headers, body) = to_binary_http(event)?;
        let mut backoff = self.retry.first_backoff;
        let mut last_error = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            let sent = self
                .client
                .post(&self.url)
                .headers(headers.clone())
                .body(body.clone())
                .send()
                .await;
            let retryable = match sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    last_error = format!(
                        "status {status}: {}",
                        text.chars().take(200).collect::<String>()
                    );
                    status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS
                }
                Err(err) => {
                    last_error = err.to_string();
                    true
                }
            };
            if !retryable || attempt == self.retry.attempts {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        Err(HandlerError::Unavailable(format!(
            "broker {} rejected event {id}: {last_error}",
            self.url
        )))
    }
}
