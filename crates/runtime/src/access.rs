//! Who may use a running platform: the route policy of everything `ktwin up` serves on its
//! HTTP port, the local credentials (an admin token and the simulator's MQTT password, created
//! on first start in the project's state directory), the tokens the platform gives its own
//! parts for one run (one per twin service process, the browser session of the dashboard), and
//! the layers that enforce them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use http::Method;
use ktwin_auth::local::{BrowserSession, LocalCredentials, SESSION_COOKIE};
use ktwin_auth::{
    AuthLayer, AuthLimits, Authenticator, DEFAULT_RELOAD_INTERVAL, RateLimit, Reloading,
    RoutePolicy, RoutePolicyBuilder, Scope, Secret, TokenFile, TokenSet, TwinGrant, TwinParam,
};
use tokio_util::sync::CancellationToken;

use crate::bus::BROKER_PATH;
use crate::error::UpError;
use crate::event_stream::{STREAM_OPENAPI_PATH, STREAM_PATH};

/// Who may use the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpAuth {
    /// Credentials kept in this directory (created on first start; `<project>/.ktwin/auth`).
    Local(PathBuf),
    /// No authentication: refused unless every listener is on loopback.
    Insecure,
}

/// Name of the browser session's token in the access log.
const BROWSER_SESSION: &str = "dashboard-session";

/// The route policy of the platform's HTTP port: the event store's, the graph's, the broker
/// ingress (`write` on every twin: a posted event may be about any twin), the event stream
/// (`read` on every twin), the models and commands of the dashboard, and public health, readiness, metrics, OpenAPI documents and the
/// dashboard's page and assets. Routes it does not name need `admin`.
pub fn route_policy() -> RoutePolicyBuilder {
    RoutePolicy::builder()
        .merge(ktwin_store::route_policy())
        .merge(ktwin_graph::route_policy())
        .merge(crate::model_api::route_policy())
        .rule(
            &[Method::POST],
            BROKER_PATH,
            Scope::Write,
            TwinParam::AllTwins,
        )
        .rule(
            &[Method::GET],
            STREAM_PATH,
            Scope::Read,
            TwinParam::AllTwins,
        )
        .public(STREAM_OPENAPI_PATH)
        .public("/health")
        .public("/ready")
        .public("/metrics")
        .public("/")
        .public("/index.html")
        .public("/assets/{*file}")
}

/// The platform's access control, ready to wrap its HTTP app.
pub struct PlatformAccess {
    /// The local credentials (none with [`UpAuth::Insecure`]).
    pub credentials: Option<LocalCredentials>,
    layer: AuthLayer,
    session: Option<BrowserSession>,
    service_tokens: BTreeMap<String, Secret>,
}

impl std::fmt::Debug for PlatformAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformAccess")
            .field("authenticating", &self.credentials.is_some())
            .field("services", &self.service_tokens.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PlatformAccess {
    /// Prepares the credentials `auth` asks for: the simulator's covers `device_interfaces`,
    /// and each of `services` gets a token for this run. The token file is reloaded while
    /// `stop` is not cancelled, so tokens added or revoked take effect without a restart.
    pub fn prepare(
        auth: &UpAuth,
        device_interfaces: &BTreeSet<String>,
        services: &[String],
        stop: &CancellationToken,
    ) -> Result<Self, UpError> {
        let policy = route_policy().build().map_err(UpError::Policy)?;
        let UpAuth::Local(dir) = auth else {
            return Ok(Self {
                credentials: None,
                layer: AuthLayer::insecure(policy).with_debug_access_log(),
                session: None,
                service_tokens: BTreeMap::new(),
            });
        };
        let credentials_error = |source| UpError::Credentials {
            dir: dir.clone(),
            source,
        };
        let credentials =
            LocalCredentials::ensure(dir, device_interfaces).map_err(credentials_error)?;
        let (tokens, _watcher) = Reloading::watch(
            &credentials.tokens_file(),
            DEFAULT_RELOAD_INTERVAL,
            TokenSet::parse,
            stop.clone(),
        )
        .map_err(|source| credentials_error(source.into()))?;
        let mut own = TokenFile::default();
        let mut issue = |name: &str, scope| {
            own.issue(name, scope, TwinGrant::all(), None)
                .map_err(UpError::OwnTokens)
        };
        let session_token = issue(BROWSER_SESSION, Scope::Admin)?;
        let mut service_tokens = BTreeMap::new();
        for service in services {
            let token = issue(&format!("service/{service}"), Scope::Write)?;
            service_tokens.insert(service.clone(), token);
        }
        let authenticator = Authenticator::new(tokens)
            .with_own_tokens(TokenSet::new(&own).map_err(UpError::OwnTokens)?)
            .with_session_cookie(SESSION_COOKIE);
        let layer = AuthLayer::with_limits(
            authenticator,
            policy,
            AuthLimits {
                // Local users are not rate-limited; tokens are 256 random bits, so the limit on
                // failures only keeps a misbehaving client from burning the machine's CPU.
                per_principal: None,
                failures_per_address: RateLimit::new(50, 500),
            },
        )
        // A line per API call would drown the console people watch; RUST_LOG=ktwin::access=debug
        // shows them.
        .with_debug_access_log();
        Ok(Self {
            credentials: Some(credentials),
            layer,
            session: BrowserSession::new(&session_token),
            service_tokens,
        })
    }

    /// The token of a twin service's processes (`KTWIN_TOKEN`), if auth is on.
    pub fn service_token(&self, service: &str) -> Option<&Secret> {
        self.service_tokens.get(service)
    }

    /// `api` (every route but the dashboard's) and the `dashboard` behind the auth layer; the
    /// dashboard's page hands the local browser its session.
    pub fn protect(&self, api: Router, dashboard: Router) -> Router {
        let dashboard = match &self.session {
            Some(session) => dashboard.layer(axum::middleware::from_fn_with_state(
                Arc::new(session.clone()),
                BrowserSession::offer,
            )),
            None => dashboard,
        };
        api.merge(dashboard).layer(self.layer.clone())
    }
}
