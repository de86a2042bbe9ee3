//! `ktwin gateway`: run the gateway.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgAction;
use ktwin_events::env;
use ktwin_service::Readiness;

use crate::{Access, Apis, GatewayConfig, Upstreams, router};

/// Runs the gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = env::GATEWAY_LISTEN, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Bearer token callers must present.
    #[arg(long, env = env::GATEWAY_TOKEN, hide_env_values = true, required_unless_present = "insecure")]
    pub token: Option<String>,
    /// Serve without a token; only allowed on a loopback address.
    #[arg(long, conflicts_with = "token")]
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
}

/// Serves the gateway until Ctrl-C or SIGTERM.
pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let access = match (&args.token, args.insecure) {
        (Some(token), _) if !token.is_empty() => Access::Token(token.clone()),
        (_, true) if args.listen.ip().is_loopback() => Access::Open,
        (_, true) => anyhow::bail!(
            "--insecure serves without authentication, so only on a loopback address; --listen {} is not one",
            args.listen
        ),
        _ => anyhow::bail!(
            "an empty --token ({}) would let anyone in",
            env::GATEWAY_TOKEN
        ),
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
    };
    let readiness = Readiness::new();
    let app = router(config, access, readiness.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    println!("ktwin gateway listening on http://{address}");
    readiness.set_ready(true);
    let shutdown = ktwin_service::shutdown_token();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serving HTTP")?;
    Ok(ExitCode::SUCCESS)
}
