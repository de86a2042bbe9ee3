//! The tower layer in front of a service's routes: authenticate, authorise by the service's
//! [`AccessPolicy`], rate-limit per principal, log one access line, and hand the
//! [`Principal`] to handlers in the request's extensions.
//!
//! ```
//! use axum::{Extension, Router, routing::get};
//! use ktwin_auth::{AuthLayer, Authenticator, Principal, Reloading, RoutePolicy, Scope, TokenSet, TwinParam};
//!
//! let policy = RoutePolicy::builder()
//!     .public("/health")
//!     .rule(&[], "/api/v1/things/{interface}", Scope::Read, TwinParam::Interface("interface"))
//!     .build()
//!     .unwrap();
//! let tokens = Reloading::fixed(TokenSet::default());
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .route("/api/v1/things/{interface}", get(|Extension(who): Extension<Principal>| async move { who.name }))
//!     .layer(AuthLayer::new(Authenticator::new(tokens), policy));
//! # let _ = app;
//! ```

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, StatusCode};
use ktwin_service::Problem;
use tower::{Layer, Service};

use crate::authn::{AuthError, Authenticator};
use crate::oidc::{JwtError, truncate};
use crate::policy::{Access, AccessPolicy};
use crate::principal::Principal;
use crate::ratelimit::{KeyedLimiter, RateLimit, retry_after_seconds};

/// `tracing` target of the access log: one line per request, with method, path (no query: it
/// may carry secrets), status, principal name and duration; never a header or a token.
pub const ACCESS_LOG_TARGET: &str = "ktwin::access";

/// Longest path written to the access log.
const MAX_LOGGED_PATH: usize = 256;

/// Rate limits of an [`AuthLayer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthLimits {
    /// Per principal (token name or JWT subject); over it: 429 with `Retry-After`.
    pub per_principal: Option<RateLimit>,
    /// Failed authentications per client address; over it: 429 before any token is checked.
    pub failures_per_address: Option<RateLimit>,
}

struct Guard {
    authenticator: Option<Authenticator>,
    policy: Box<dyn AccessPolicy>,
    per_principal: Option<KeyedLimiter<String>>,
    failures: Option<KeyedLimiter<Option<IpAddr>>>,
}

/// Authentication and authorisation in front of a router (see the module docs).
#[derive(Clone)]
pub struct AuthLayer {
    guard: Arc<Guard>,
    access_log: tracing::Level,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("authenticating", &self.guard.authenticator.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// Requests need what `policy` says, proven by a credential `authenticator` accepts.
    pub fn new(authenticator: Authenticator, policy: impl AccessPolicy) -> Self {
        Self::build(Some(authenticator), policy, AuthLimits::default())
    }

    /// As [`AuthLayer::new`], with rate limits.
    pub fn with_limits(
        authenticator: Authenticator,
        policy: impl AccessPolicy,
        limits: AuthLimits,
    ) -> Self {
        Self::build(Some(authenticator), policy, limits)
    }

    /// No authentication: every request is [`Principal::anonymous`] (still access-logged).
    /// Only for a platform whose listeners are all on loopback.
    pub fn insecure(policy: impl AccessPolicy) -> Self {
        Self::build(None, policy, AuthLimits::default())
    }

    fn build(
        authenticator: Option<Authenticator>,
        policy: impl AccessPolicy,
        limits: AuthLimits,
    ) -> Self {
        Self {
            guard: Arc::new(Guard {
                authenticator,
                policy: Box::new(policy),
                per_principal: limits.per_principal.map(KeyedLimiter::new),
                failures: limits.failures_per_address.map(KeyedLimiter::new),
            }),
            access_log: tracing::Level::INFO,
        }
    }

    /// Writes the access log at debug level instead of info: for a local platform whose
    /// console is for people (`ktwin up`), not for an audit trail (the gateway keeps info).
    pub fn with_debug_access_log(mut self) -> Self {
        self.access_log = tracing::Level::DEBUG;
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            guard: Arc::clone(&self.guard),
            access_log: self.access_log,
        }
    }
}

/// The service [`AuthLayer`] wraps around a router.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    guard: Arc<Guard>,
    access_log: tracing::Level,
}

impl<S> Service<Request<Body>> for AuthService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request; a fresh clone takes its place.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let guard = Arc::clone(&self.guard);
        let access_log = self.access_log;
        Box::pin(async move { Ok(guard.handle(request, inner, access_log).await) })
    }
}

/// A request answered by the checks: the response, and who was refused if they authenticated.
struct Refused {
    principal: Option<String>,
    response: Response,
}

impl From<Response> for Box<Refused> {
    fn from(response: Response) -> Self {
        Box::new(Refused {
            principal: None,
            response,
        })
    }
}

/// The outcome of the checks: go on as this principal (none on public routes), or answer now.
type Verdict = Result<Option<Principal>, Box<Refused>>;

impl Guard {
    async fn handle<S>(
        &self,
        mut request: Request<Body>,
        mut inner: S,
        access_log: tracing::Level,
    ) -> Response
    where
        S: Service<Request<Body>, Response = Response, Error = Infallible>,
    {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        // Only what the checks need is taken from the request (the body is not `Sync`).
        let caller = Caller {
            authorization: self.credential(&request),
            address: client_address(&request),
        };
        let verdict = self.check(caller, &method, &path).await;
        let (principal_name, response) = match verdict {
            Ok(principal) => {
                let name = principal.as_ref().map(|p| p.name.clone());
                if let Some(principal) = principal {
                    request.extensions_mut().insert(principal);
                }
                let response = match inner.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                (name, response)
            }
            Err(refused) => (refused.principal, refused.response),
        };
        let path = truncate(&path, MAX_LOGGED_PATH);
        let status = response.status().as_u16();
        let principal = principal_name.as_deref().unwrap_or("-");
        let elapsed_us = started.elapsed().as_micros() as u64;
        // `tracing` fixes a callsite's level at compile time: one callsite per level.
        if access_log == tracing::Level::DEBUG {
            tracing::debug!(target: ACCESS_LOG_TARGET, method = %method, path = %path, status, principal, elapsed_us);
        } else {
            tracing::info!(target: ACCESS_LOG_TARGET, method = %method, path = %path, status, principal, elapsed_us);
        }
        response
    }

    async fn check(&self, caller: Caller, method: &http::Method, path: &str) -> Verdict {
        let (scope, target) = match self.policy.access(method, path) {
            Access::Public => return Ok(None),
            Access::Requires { scope, target } => (scope, target),
        };
        let principal = self.authenticate(caller, path).await?;
        let refuse = |response| {
            Err(Box::new(Refused {
                principal: Some(principal.name.clone()),
                response,
            }))
        };
        if !principal.scope.includes(scope) {
            return refuse(forbidden(
                path,
                format!(
                    "{:?} has scope {}; {method} {path} needs {scope}",
                    principal.name, principal.scope
                ),
            ));
        }
        if !principal.grant.allows(&target) {
            return refuse(forbidden(
                path,
                format!("{:?} may not touch {target}", principal.name),
            ));
        }
        if let Some(limiter) = &self.per_principal
            && let Err(wait) = limiter.check(&principal.name)
        {
            metrics::counter!("ktwin_auth_rate_limited_total").increment(1);
            return refuse(too_many_requests(path, wait, "for this credential"));
        }
        Ok(Some(principal))
    }

    async fn authenticate(&self, caller: Caller, path: &str) -> Result<Principal, Box<Refused>> {
        let Some(authenticator) = &self.authenticator else {
            return Ok(Principal::anonymous());
        };
        match authenticator
            .authenticate(caller.authorization.as_ref())
            .await
        {
            Ok(principal) => Ok(principal),
            Err(err) => {
                metrics::counter!("ktwin_auth_refused_total", "reason" => refusal_reason(&err))
                    .increment(1);
                if let Some(limiter) = &self.failures
                    && let Err(wait) = limiter.check(&caller.address)
                {
                    return Err(
                        too_many_requests(path, wait, "after failed authentications").into(),
                    );
                }
                Err(refusal(path, &err).into())
            }
        }
    }
}

impl Guard {
    /// The `Authorization` header, or else the session cookie as a bearer credential when the
    /// authenticator accepts one and the request may use it.
    fn credential(&self, request: &Request<Body>) -> Option<HeaderValue> {
        let headers = request.headers();
        if let Some(header) = headers.get(AUTHORIZATION) {
            return Some(header.clone());
        }
        let name = self.authenticator.as_ref()?.session_cookie()?;
        let token = cookie(headers, name)?;
        if !request.method().is_safe() && !same_origin(headers) {
            // A cookie travels with requests other sites make the browser send; only the
            // page's own scripts may change something with it.
            tracing::debug!(target: ACCESS_LOG_TARGET, "session cookie ignored on a cross-site request");
            return None;
        }
        HeaderValue::from_str(&format!("Bearer {token}")).ok()
    }
}

/// The value of the cookie `name`, from any `Cookie` header.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether the browser says the request comes from a page of this origin: `Sec-Fetch-Site:
/// same-origin`, or an `Origin` whose host and port are this request's `Host`.
fn same_origin(headers: &http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return site == "same-origin";
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        _ => false,
    }
}

/// Who is calling, as far as the checks need to know.
struct Caller {
    authorization: Option<HeaderValue>,
    address: Option<IpAddr>,
}

fn client_address(request: &Request<Body>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

fn refusal_reason(err: &AuthError) -> &'static str {
    match err {
        AuthError::Missing => "missing",
        AuthError::NotBearer => "not_bearer",
        AuthError::Token(_) => "token",
        AuthError::Jwt(_) | AuthError::NoIssuer => "jwt",
    }
}

/// 401 with an RFC 6750 challenge, 403 for a valid token without ktwin rights, 503 when the
/// issuer's keys cannot be had.
fn refusal(path: &str, err: &AuthError) -> Response {
    match err {
        AuthError::Jwt(JwtError::NoScope(_)) => return forbidden(path, err.to_string()),
        AuthError::Jwt(JwtError::Jwks(_)) => {
            return Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the token: the identity provider's keys are unavailable",
            )
            .at(path)
            .into_response();
        }
        _ => {}
    }
    let mut challenge = String::from("Bearer realm=\"ktwin\"");
    if let Some(code) = err.bearer_error() {
        // Descriptions are ktwin's own words, never the presented token.
        let description = err.to_string().replace('"', "'");
        challenge.push_str(&format!(
            ", error=\"{code}\", error_description=\"{description}\""
        ));
    }
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, err.to_string())
        .at(path)
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

fn forbidden(path: &str, detail: String) -> Response {
    Problem::new(StatusCode::FORBIDDEN, detail)
        .at(path)
        .into_response()
}

fn too_many_requests(path: &str, wait: std::time::Duration, what: &str) -> Response {
    let seconds = retry_after_seconds(wait);
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("rate limit exceeded {what}; retry in {seconds} s"),
    )
    .at(path)
    .into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}
