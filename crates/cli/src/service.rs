//! `ktwin service <handler>`: one built-in twin service handler over the Knative HTTP contract,
//! so the one `ktwin` image runs any of them on a cluster.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::ArgAction;
use ktwin_events::env;
use ktwin_sdk::{ServeConfig, serve_with};

/// Serves a built-in handler.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// The handler, e.g. `smart-city/pole` (`--list` prints them).
    #[arg(required_unless_present = "list")]
    pub handler: Option<String>,
    /// Print the built-in handlers and exit.
    #[arg(long)]
    pub list: bool,
    /// Port to listen on (Knative sets it).
    #[arg(long, env = env::PORT, default_value_t = 8080)]
    pub port: u16,
    /// Broker ingress URL emitted events are posted to.
    #[arg(long, env = env::BROKER)]
    pub broker: Option<String>,
    /// Event store root URL (latest states).
    #[arg(long, env = env::EVENT_STORE)]
    pub event_store: Option<String>,
    /// Graph API URL (`…/api/v1/twin-graph`).
    #[arg(long, env = env::GRAPH_URL)]
    pub graph_url: Option<String>,
    /// A whole twin graph as JSON, instead of the graph service.
    #[arg(long, env = env::GRAPH)]
    pub graph: Option<String>,
    /// The TwinInterface served (for logs; the handler knows its own types).
    #[arg(long, env = env::INTERFACE)]
    pub interface: Option<String>,
    /// The world's namespace (for logs).
    #[arg(long, env = env::NAMESPACE)]
    pub namespace: Option<String>,
    /// Put one emitted event in the HTTP reply (Knative routes it like any other).
    #[arg(long, env = env::REPLY, default_value_t = true, action = ArgAction::Set)]
    pub reply: bool,
    /// Events handled at once; more wait.
    #[arg(long, env = env::MAX_CONCURRENCY, default_value_t = 64)]
    pub max_concurrency: usize,
    /// Bearer token for the broker, event store and graph service (`ktwin up` gives each
    /// service process one).
    #[arg(long, env = env::TOKEN, hide_env_values = true)]
    pub token: Option<String>,
}

/// Runs `ktwin service`.
pub async fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    let handlers = crate::built_in_handlers();
    if args.list {
        for name in handlers.keys() {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.handler.clone().unwrap_or_default();
    let Some(handler) = handlers.get(&name).cloned() else {
        let known: Vec<&str> = handlers.keys().map(String::as_str).collect();
        anyhow::bail!(
            "no built-in handler {name:?}; this binary has: {}",
            known.join(", ")
        );
    };
    let config = ServeConfig {
        port: args.port,
        broker: args.broker,
        event_store: args.event_store,
        graph_url: args.graph_url,
        graph_json: args.graph,
        reply: args.reply,
        max_concurrency: args.max_concurrency.max(1),
        token: args.token.filter(|token| !token.trim().is_empty()),
    };
    let ctx = config.context().context("configuring the service")?;
    tracing::info!(handler = %name, interface = ?args.interface, namespace = ?args.namespace, "serving");
    serve_with(handler, &config, ctx, ktwin_service::shutdown_token())
        .await
        .with_context(|| format!("serving {name}"))?;
    Ok(ExitCode::SUCCESS)
}
