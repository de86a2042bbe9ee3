//! `ktwin gateway`: run the gateway.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::ArgAction;
use ktwin_auth::service_args::{ServiceAuthArgs, TlsArgs};
use ktwin_auth::{AuthLimits, RateLimit};
use ktwin_events::env;
use ktwin_service::Readiness;

use crate::{Apis, GatewayConfig, Upstreams, route_policy, router};

/// Runs the gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = env::GATEWAY_LISTEN, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Who may call.
    #[command(flatten)]
    pub auth: ServiceAuthArgs,
    /// The certificate clients see (HTTPS when given).
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Requests per second one credential may make, sustained (bursts of twice that); over
    /// it: 429 with Retry-After. 0 = no limit.
    #[arg(long, env = env::GATEWAY_RATE_LIMIT, default_value_t = 50)]
    pub rate_limit: u32,
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
    /// Which traces are recorded.
    #[command(flatten)]
    pub trace: ktwin_service::cli::TraceArgs,
}

/// Serves the gateway until Ctrl-C or SIGTERM.
pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let shutdown = ktwin_service::shutdown_token();
    let policy = route_policy().build()?;
    let limits = AuthLimits {
        per_principal: RateLimit::new(args.rate_limit, args.rate_limit.saturating_mul(2)),
        failures_per_address: RateLimit::new(5, 20),
    };
    let auth = args
        .auth
        .layer("the gateway", args.listen, policy, limits, &shutdown)?;
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
        trace_sampler: args.trace.sampler,
    };
    let readiness = Readiness::new();
    let app = router(config, auth, readiness.clone());
    readiness.set_ready(true);
    args.tls
        .serve("gateway", args.listen, app, shutdown)
        .await?;
    Ok(ExitCode::SUCCESS)
}
