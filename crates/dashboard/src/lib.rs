//! The ktwin web dashboard: the front end built from `web/dashboard` (committed in `assets/`,
//! rebuilt and compared by CI), embedded in the binary and served by [`router`] at `/`.
//!
//! It owns only the assets and how they are served (content types, caching, security
//! headers). It must not know the store, the graph, the broker or the runtime: the dashboard
//! is a client of their public HTTP API, mounted beside it so that it calls the same origin.
//!
//! ```
//! let app: axum::Router = ktwin_dashboard::router();
//! assert!(ktwin_dashboard::asset("index.html").is_some());
//! # let _ = app;
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue,
    IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::{EmbeddedFile, RustEmbed};

/// The built dashboard (`npm run build` in `web/dashboard` writes it).
#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The page the dashboard starts from.
pub const INDEX: &str = "index.html";

/// Where the bundler puts scripts and styles; their names carry a content hash.
const HASHED_DIR: &str = "assets/";

/// What the dashboard may load and call: its own origin only. Styles allow inline `style`
/// attributes, which the graph and chart libraries set.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'self'; form-action 'self'";

/// An embedded file by its path under the assets folder (`index.html`, `assets/index-….js`).
pub fn asset(path: &str) -> Option<EmbeddedFile> {
    Assets::get(path)
}

/// Paths of every embedded file.
pub fn asset_paths() -> impl Iterator<Item = String> {
    Assets::iter().map(|path| path.into_owned())
}

/// `GET /` (the page) and `GET /assets/{file}` (scripts and styles). Merge it beside the API
/// routes; it claims no `/api` path.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve(INDEX, &headers) }),
        )
        .route(
            "/index.html",
            get(|headers: HeaderMap| async move { serve(INDEX, &headers) }),
        )
        .route(
            "/assets/{*file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&format!("{HASHED_DIR}{file}"), &headers)
            }),
        )
}

/// The file at `path` with its headers; 304 when the client holds this version, 404 when
/// there is no such file.
fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("the dashboard has no file {path:?}"),
        )
            .into_response();
    };
    let etag = etag_of(&file);
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, etag.clone());
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache_policy(path)));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if path == INDEX {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if request.get(IF_NONE_MATCH).is_some_and(|held| {
        held.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii() == etag.as_bytes())
    }) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(CONTENT_TYPE, content_type(&file));
    (StatusCode::OK, headers, file.data.into_owned()).into_response()
}

/// Hashed files never change under their name; the page is revalidated on every load, so a
/// new build is picked up at once.
fn cache_policy(path: &str) -> &'static str {
    if path.starts_with(HASHED_DIR) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

fn etag_of(file: &EmbeddedFile) -> HeaderValue {
    let hash = file.metadata.sha256_hash();
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn content_type(file: &EmbeddedFile) -> HeaderValue {
    let mime = file.metadata.mimetype();
    let value = if mime.starts_with("text/") || mime.ends_with("javascript") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}
