//! The HTTP client every platform client of the SDK uses: a timeout, and the service's bearer
//! token (`KTWIN_TOKEN`) on every request when the platform requires one.

use std::time::Duration;

use http::HeaderValue;
use http::header::AUTHORIZATION;

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
