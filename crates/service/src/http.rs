//! The layers every ktwin HTTP service wears, in one place so they are the same everywhere: a
//! trace span per request, a last-line catch of handler panics (answered with a problem and
//! counted), a bound on requests in flight (503 with `Retry-After` beyond it), a ceiling on
//! request bodies (413), a request timeout, and problem details for errors answered with a bare
//! status (unknown routes, wrong methods, the timeout itself). Header count and size are
//! bounded by hyper (100 headers, ~400 KiB: 431).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::Problem;

/// How long a request may take before it is answered with 503: longer than any store commit
/// or graph query under load, shorter than a client's patience.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Counter of requests whose handler panicked, labelled `service` (the app that caught it: a
/// fixed name per binary). No label comes from a request: paths come from strangers, and a
/// label per path would grow the series without bound.
pub const PANICS: &str = "ktwin_http_panics_total";

/// Bounds every service applies to what callers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Requests being handled at once; one more is answered 503 with `Retry-After` (a long
    /// event stream holds its slot while it is open).
    pub max_in_flight: usize,
    /// Largest request body in bytes, whatever the route (413 beyond it); routes set lower
    /// limits of their own.
    pub max_body: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            max_body: 8 * 1024 * 1024,
        }
    }
}

/// `router` with the layers every service wears (see the module documentation); `service`
/// names the app in the panic counter. Apply it once, to the whole app a listener serves, as
/// its last (outermost) layers.
pub fn with_service_layers(service: &'static str, router: Router) -> Router {
    with_service_layers_limited(service, router, ServiceLimits::default())
}

/// [`with_service_layers`] with other [`ServiceLimits`].
pub fn with_service_layers_limited(
    service: &'static str,
    router: Router,
    limits: ServiceLimits,
) -> Router {
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(limits.max_body))
        .layer(axum::middleware::from_fn_with_state(in_flight, bounded))
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .layer(CatchPanicLayer::custom(move |panic| panic_problem(service, panic)))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
            }),
        )
}

/// Counter of requests refused because too many were in flight.
pub const REFUSED_IN_FLIGHT: &str = "ktwin_http_refused_in_flight_total";

/// Runs the request if a slot is free, else answers 503 at once (queueing would only make a
/// flood wait longer and hold its memory). Liveness (`/health`) is never refused: an overloaded
/// service is not a dead one.
async fn bounded(
    axum::extract::State(in_flight): axum::extract::State<Arc<Semaphore>>,
    request: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let Ok(_slot) = in_flight.try_acquire_owned() else {
        metrics::counter!(REFUSED_IN_FLIGHT).increment(1);
        let mut response = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry in 1 s",
        )
        .at(request.uri().path())
        .into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    next.run(request).await
}

/// An error answered without a body (or with a plain-text one: axum's own rejections) gets a
/// problem-details body naming its status.
async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(crate::PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let detail = match std::str::from_utf8(&text).map(str::trim) {
        Ok(text) if !text.is_empty() => text.to_owned(),
        _ => bare_status_detail(status),
    };
    let mut problem = Problem::new(status, detail).into_response();
    // Headers such as `Allow` of a 405 stay.
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

fn bare_status_detail(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such route".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".to_owned(),
        StatusCode::SERVICE_UNAVAILABLE => {
            format!("the request took longer than {REQUEST_TIMEOUT:?}, or the service is not ready")
        }
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned(),
    }
}

fn panic_problem(service: &'static str, panic: Box<dyn Any + Send + 'static>) -> Response {
    metrics::counter!(PANICS, "service" => service).increment(1);
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(service, panic = message, "a request handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the service failed on this request; it is logged and counted",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn answer(app: Router, request: Request<Body>) -> (StatusCode, String, String) {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    async fn boom() -> &'static str {
        panic!("kaboom")
    }

    #[tokio::test]
    async fn bare_errors_and_panics_become_problems() {
        let app = with_service_layers(
            "layers-test",
            Router::new()
                .route("/ok", get(|| async { "fine" }))
                .route("/boom", get(boom)),
        );
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        let (status, _, body) = answer(app.clone(), get("/ok")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "fine"));
        let (status, content_type, body) = answer(app.clone(), get("/nowhere")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(content_type, crate::PROBLEM_JSON);
        assert!(body.contains("no such route"), "{body}");
        let post = Request::post("/ok").body(Body::empty()).unwrap();
        let (status, content_type, _) = answer(app.clone(), post).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(content_type, crate::PROBLEM_JSON);
        let panics = |rendered: &str| {
            rendered
                .lines()
                .find(|line| line.starts_with(&format!("{PANICS}{{service=\"layers-test\"}}")))
                .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let panics_before = panics(&crate::prometheus().render());
        let (status, content_type, body) = answer(app, get("/boom")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, crate::PROBLEM_JSON);
        assert!(
            !body.contains("kaboom"),
            "panic messages stay in the log: {body}"
        );
        let rendered = crate::prometheus().render();
        assert_eq!(panics(&rendered), panics_before + 1, "{rendered}");
    }
}
