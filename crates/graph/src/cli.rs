//! `ktwin graph`: run the graph service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use ktwin_auth::service_args::{self, ServiceAuthArgs, TlsArgs};
use ktwin_auth::{AuthLimits, RoutePolicyBuilder};
use ktwin_service::{Readiness, ops_router, with_service_layers};

use crate::{GraphState, LocalSource, route_policy, router, watch_kubernetes, watch_local};

/// Where the standalone service also serves the OpenAPI document (the path of `ktwin store`'s).
pub const ROOT_OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The standalone service's route policy: [`route_policy`] and its second OpenAPI path.
pub fn standalone_policy() -> RoutePolicyBuilder {
    route_policy().public(ROOT_OPENAPI_PATH)
}

/// Where the twin graph comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// TwinInstance resources, watched in the current Kubernetes cluster.
    Kubernetes,
    /// Files: a project directory (`--project`) or a graph document (`--graph-file`).
    Local,
}

/// Runs the graph service.
#[derive(Debug, Clone, clap::Args)]
pub struct GraphArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed). This
    /// machine only unless configured (a cluster's manifests listen on every address).
    #[arg(long, env = ktwin_events::env::GRAPH_LISTEN, default_value = ktwin_events::defaults::LOOPBACK_HTTP_LISTEN)]
    pub listen: SocketAddr,
    /// Who may call.
    #[command(flatten)]
    pub auth: ServiceAuthArgs,
    /// The certificate callers see (HTTPS when given).
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Source of truth.
    #[arg(long, value_enum, default_value = "local", env = ktwin_events::env::GRAPH_SOURCE)]
    pub source: SourceKind,
    /// Project directory (local source).
    #[arg(long, default_value = ".", conflicts_with = "graph_file")]
    pub project: PathBuf,
    /// Graph document in the original `ktwin_graph.json` format (local source).
    #[arg(long)]
    pub graph_file: Option<PathBuf>,
    /// Namespace of the TwinInstances (Kubernetes source); all namespaces when absent.
    #[arg(long, env = ktwin_events::env::NAMESPACE)]
    pub namespace: Option<String>,
}

/// Serves the graph until Ctrl-C or SIGTERM.
pub async fn run(args: GraphArgs) -> anyhow::Result<ExitCode> {
    let state = GraphState::new();
    let shutdown = ktwin_service::shutdown_token();
    let auth = args.auth.layer(
        "the graph service",
        args.listen,
        standalone_policy().build()?,
        AuthLimits {
            per_principal: None,
            failures_per_address: service_args::failure_limit(),
        },
        &shutdown,
    )?;
    let source_task = match args.source {
        SourceKind::Kubernetes => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to Kubernetes (in-cluster config or kubeconfig)")?;
            tokio::spawn(watch_kubernetes(
                client,
                args.namespace.clone(),
                state.clone(),
                shutdown.clone(),
            ))
        }
        SourceKind::Local => {
            let source = match &args.graph_file {
                Some(file) => LocalSource::GraphFile(file.clone()),
                None => LocalSource::Project(args.project.clone()),
            };
            watch_local(source.clone(), state.clone(), shutdown.clone())
                .await
                .with_context(|| format!("watching {source:?}"))?
        }
    };
    let readiness = Readiness::new();
    let ready_task = {
        let (mut changes, readiness) = (state.subscribe(), readiness.clone());
        tokio::spawn(async move {
            loop {
                readiness.set_ready(changes.borrow_and_update().graph.is_some());
                if changes.changed().await.is_err() {
                    break;
                }
            }
        })
    };
    let api = router(state).route(
        ROOT_OPENAPI_PATH,
        axum::routing::get(|| async {
            axum::Json(<crate::GraphApi as utoipa::OpenApi>::openapi())
        }),
    );
    let app = with_service_layers("graph", api.layer(auth).merge(ops_router(readiness)));
    args.tls
        .serve("graph", args.listen, app, shutdown.clone())
        .await?;
    shutdown.cancel();
    if let Err(err) = source_task.await {
        tracing::error!(%err, "the graph source task failed");
    }
    ready_task.abort();
    Ok(ExitCode::SUCCESS)
}
