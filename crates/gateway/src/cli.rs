//! `ktwin gateway`: run the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgAction;
use ktwin_auth::{
    AuthLayer, AuthLimits, Authenticator, DEFAULT_RELOAD_INTERVAL, OidcConfig, OidcValidator,
    RateLimit, Reloading, Scope, SecretDigest, TokenEntry, TokenFile, TokenSet, TwinGrant,
};
use ktwin_events::env;
use ktwin_service::Readiness;
use tokio_util::sync::CancellationToken;

use crate::{Apis, GatewayConfig, Upstreams, route_policy, router};

/// Name of the `--token` credential in the access log.
const STATIC_TOKEN_NAME: &str = "gateway-token";

/// Runs the gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = env::GATEWAY_LISTEN, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// One bearer token callers may present, with `write` scope on every twin (the Gateway
    /// resource's Secret). Prefer --tokens-file for scoped, per-caller tokens.
    #[arg(long, env = env::GATEWAY_TOKEN, hide_env_values = true)]
    pub token: Option<String>,
    /// Token file (`ktwin-auth` format: names, scopes, twin grants, SHA-256 of each token),
    /// reloaded when it changes (a mounted Secret).
    #[arg(long, env = env::GATEWAY_TOKENS_FILE, value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,
    /// Also accept JWTs of this OIDC issuer (needs --oidc-audience and --oidc-jwks-url).
    #[arg(long, env = env::OIDC_ISSUER, requires_all = ["oidc_audience", "oidc_jwks_url"])]
    pub oidc_issuer: Option<String>,
    /// The audience JWTs must name.
    #[arg(long, env = env::OIDC_AUDIENCE, requires = "oidc_issuer")]
    pub oidc_audience: Option<String>,
    /// The issuer's key set (JWKS) URL.
    #[arg(long, env = env::OIDC_JWKS_URL, requires = "oidc_issuer")]
    pub oidc_jwks_url: Option<String>,
    /// Requests per second one credential may make, sustained (bursts of twice that); over
    /// it: 429 with Retry-After. 0 = no limit.
    #[arg(long, env = env::GATEWAY_RATE_LIMIT, default_value_t = 50)]
    pub rate_limit: u32,
    /// Serve without authentication; only allowed on a loopback address.
    #[arg(long, conflicts_with_all = ["token", "tokens_file", "oidc_issuer"])]
    pub insecure: bool,
    /// Graph API URL (`…/api/v1/twin-graph`).
    #[arg(long, env = env::GRAPH_URL)]
    pub graph_url: Option<String>,
    /// Event store root URL.
    #[arg(long, env = env::EVENT_STORE)]
    pub event_store_url: Option<String>,
    /// Broker ingress URL events and commands are posted to.
    #[arg(long, env = env::BROKER)]
    pub broker_url: Option<String>,
    /// Serve the twin graph.
    #[arg(long, env = env::GATEWAY_GRAPH, default_value_t = true, action = ArgAction::Set)]
    pub graph: bool,
    /// Serve twin state and history.
    #[arg(long, env = env::GATEWAY_EVENT_STORE, default_value_t = true, action = ArgAction::Set)]
    pub event_store: bool,
    /// Accept events and commands.
    #[arg(long, env = env::GATEWAY_COMMANDS, default_value_t = false, action = ArgAction::Set)]
    pub commands: bool,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub body_limit: usize,
    /// Seconds an upstream service may take to answer.
    #[arg(long, default_value_t = 10)]
    pub upstream_timeout_secs: u64,
    /// Bearer token sent to the upstream services (a `ktwin up` behind the gateway).
    #[arg(long, env = env::TOKEN, hide_env_values = true)]
    pub upstream_token: Option<String>,
}

/// The token set of `--token`: one `write` token on every twin.
fn static_token(token: &str) -> anyhow::Result<TokenSet> {
    anyhow::ensure!(
        !token.trim().is_empty(),
        "an empty --token ({}) would let anyone in",
        env::GATEWAY_TOKEN
    );
    let file = TokenFile {
        tokens: vec![TokenEntry {
            name: STATIC_TOKEN_NAME.to_owned(),
            sha256: SecretDigest::of(token).to_hex(),
            scope: Scope::Write,
            grant: TwinGrant::all(),
            expires: None,
        }],
    };
    Ok(TokenSet::new(&file)?)
}

/// Who may call, from the arguments: `None` for --insecure (on loopback only).
fn authenticator(
    args: &GatewayArgs,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Authenticator>> {
    if args.insecure {
        anyhow::ensure!(
            args.listen.ip().is_loopback(),
            "--insecure serves without authentication, so only on a loopback address; --listen {} is not one",
            args.listen
        );
        return Ok(None);
    }
    let mut authenticator = match &args.tokens_file {
        Some(path) => {
            let (tokens, _watcher) =
                Reloading::watch(path, DEFAULT_RELOAD_INTERVAL, TokenSet::parse, stop.clone())
                    .with_context(|| format!("reading the token file {}", path.display()))?;
            Authenticator::new(tokens)
        }
        None => Authenticator::new(Reloading::fixed(TokenSet::default())),
    };
    if let Some(token) = &args.token {
        authenticator = authenticator.with_own_tokens(static_token(token)?);
    }
    if let (Some(issuer), Some(audience), Some(jwks)) =
        (&args.oidc_issuer, &args.oidc_audience, &args.oidc_jwks_url)
    {
        let config = OidcConfig::new(issuer, audience, jwks);
        authenticator = authenticator.with_oidc(Arc::new(OidcValidator::new(config)));
    }
    anyhow::ensure!(
        args.token.is_some() || args.tokens_file.is_some() || args.oidc_issuer.is_some(),
        "the gateway needs credentials to check: --token, --tokens-file or --oidc-issuer \
         (or --insecure on a loopback address)"
    );
    Ok(Some(authenticator))
}

/// Serves the gateway until Ctrl-C or SIGTERM.
pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let shutdown = ktwin_service::shutdown_token();
    let policy = route_policy().build()?;
    let auth = match authenticator(&args, &shutdown)? {
        Some(authenticator) => AuthLayer::with_limits(
            authenticator,
            policy,
            AuthLimits {
                per_principal: RateLimit::new(args.rate_limit, args.rate_limit.saturating_mul(2)),
                failures_per_address: RateLimit::new(5, 20),
            },
        ),
        None => {
            eprintln!("warning: --insecure: the gateway serves without authentication");
            AuthLayer::insecure(policy)
        }
    };
    let config = GatewayConfig {
        apis: Apis {
            graph: args.graph,
            event_store: args.event_store,
            commands: args.commands,
        },
        upstreams: Upstreams {
            graph_url: args.graph_url,
            event_store_url: args.event_store_url,
            broker_url: args.broker_url,
        },
        body_limit: args.body_limit,
        upstream_timeout: Duration::from_secs(args.upstream_timeout_secs),
        upstream_token: args.upstream_token.filter(|token| !token.trim().is_empty()),
    };
    let readiness = Readiness::new();
    let app = router(config, auth, readiness.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    println!("ktwin gateway listening on http://{address}");
    readiness.set_ready(true);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    .context("serving HTTP")?;
    Ok(ExitCode::SUCCESS)
}
