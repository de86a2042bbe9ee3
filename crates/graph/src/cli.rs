//! `ktwin graph`: run the graph service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use ktwin_service::{Readiness, ops_router, with_service_layers};

use crate::{GraphState, LocalSource, router, watch_kubernetes, watch_local};

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
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = ktwin_events::env::GRAPH_LISTEN, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
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
    let app = with_service_layers(
        "graph",
        router(state)
            .route(
                "/api/v1/openapi.json",
                axum::routing::get(|| async {
                    axum::Json(<crate::GraphApi as utoipa::OpenApi>::openapi())
                }),
            )
            .merge(ops_router(readiness)),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    println!("ktwin graph listening on http://{address}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("serving HTTP")?;
    shutdown.cancel();
    if let Err(err) = source_task.await {
        tracing::error!(%err, "the graph source task failed");
    }
    ready_task.abort();
    Ok(ExitCode::SUCCESS)
}
