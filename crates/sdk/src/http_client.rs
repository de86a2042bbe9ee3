//! The HTTP client every platform client of the SDK uses: a timeout, and the service's bearer
//! token (`KTWIN_TOKEN`) on every request when the platform requires one.

use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::error::LookupError;

/// A client whose requests time out after `timeout` and carry `Authorization: Bearer <token>`
/// when `token` is given. The header is marked sensitive, so no debug output shows it.
pub(crate) fn client(timeout: Duration, token: Option<&str>) -> reqwest::Client {
    let mut headers = http::HeaderMap::new();
    if let Some(Ok(mut value)) = token.map(|t| HeaderValue::from_str(&format!("Bearer {t}"))) {
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()
        .unwrap_or_default()
}

/// Sends a lookup's request: `404` is `None` (not found is no error), a success its headers and
/// body; a failed request or another status is a [`LookupError`] about `what()`, with the
/// start of the body.
pub(crate) async fn get_found(
    request: reqwest::RequestBuilder,
    what: impl Fn() -> String,
) -> Result<Option<(HeaderMap, Bytes)>, LookupError> {
    let response = request
        .send()
        .await
        .map_err(|e| LookupError::new(what(), e))?;
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(LookupError::new(
            what(),
            format!(
                "status {status}: {}",
                body.chars().take(200).collect::<String>()
            ),
        ));
    }
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| LookupError::new(what(), e))?;
    Ok(Some((headers, body)))
}
