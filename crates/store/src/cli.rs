//! `ktwin store` (run the event-store service) and `ktwin bench store`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::Method;
use ktwin_auth::service_args::{self, ServiceAuthArgs, TlsArgs};
use ktwin_auth::{AuthLimits, RoutePolicy, RoutePolicyBuilder};
use ktwin_events::{defaults, env};
use ktwin_service::{Readiness, ops_router, with_service_layers};

use crate::{
    ApiConfig, BackendChoice, INGEST_PATH, IngestConfig, Ingestor, KnownInterfaces, route_policy,
    router,
};

#[cfg(feature = "bench")]
pub use crate::bench::{BenchStoreArgs, run_bench};

/// Which storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// PostgreSQL (`--database-url`).
    Postgres,
    /// Embedded store (`--path`): a fjall database directory, or a redb file for a path ending
    /// in `.redb`.
    Embedded,
    /// Embedded redb file (`--path`), the embedded engine before fjall.
    Redb,
}

/// Where the store keeps its data.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Storage backend.
    #[arg(
        long,
        value_enum,
        default_value = "embedded",
        env = env::STORE_BACKEND
    )]
    pub backend: BackendKind,
    /// PostgreSQL connection URL (backend postgres).
    #[arg(
        long,
        env = env::STORE_DATABASE_URL,
        default_value = defaults::POSTGRES_URL
    )]
    pub database_url: String,
    /// Database directory, or file ending in `.redb` (backends embedded and redb). A directory
    /// that does not exist beside an existing `<path>.redb` file opens that file.
    #[arg(long, env = env::STORE_PATH, default_value = ".ktwin/store")]
    pub path: PathBuf,
}

impl BackendArgs {
    /// The backend these arguments select.
    pub fn choice(&self) -> BackendChoice {
        match self.backend {
            BackendKind::Postgres => BackendChoice::Postgres(self.database_url.clone()),
            BackendKind::Embedded => BackendChoice::Embedded(self.path.clone()),
            BackendKind::Redb => BackendChoice::Redb(self.path.clone()),
        }
    }
}

/// Runs the event-store service.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed). This
    /// machine only unless configured (a cluster's manifests listen on every address).
    #[arg(long, env = env::STORE_LISTEN, default_value = defaults::LOOPBACK_HTTP_LISTEN)]
    pub listen: SocketAddr,
    /// Who may call.
    #[command(flatten)]
    pub auth: ServiceAuthArgs,
    /// The certificate callers see (HTTPS when given).
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Accept posted events (`POST /api/v1/twin-events`) without a credential: for a Knative
    /// Trigger, which cannot present one; every other route still needs one.
    #[arg(long, env = env::STORE_OPEN_INGEST, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub open_ingest: bool,
    /// Where the store keeps its data.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = ApiConfig::default().body_limit)]
    pub body_limit: usize,
    /// Known twin interface (repeat); events of other interfaces get 404. None = accept all.
    #[arg(long = "interface")]
    pub interfaces: Vec<String>,
    /// Events per transaction, at most.
    #[arg(long, default_value_t = IngestConfig::default().max_batch)]
    pub max_batch: usize,
    /// Milliseconds an API request may take before it is answered 503 (the EventStore's
    /// `timeout`, passed as `TIMEOUT`).
    #[arg(long, env = env::STORE_TIMEOUT, default_value_t = 30_000)]
    pub request_timeout_ms: u64,
}

/// The standalone store's route policy: [`route_policy`], with posted events open to anyone
/// when `open_ingest`.
pub fn standalone_policy(open_ingest: bool) -> RoutePolicyBuilder {
    let open = RoutePolicy::builder();
    let open = if open_ingest {
        open.public_for(&[Method::POST], INGEST_PATH)
    } else {
        open
    };
    open.merge(route_policy())
}

/// Serves the store until Ctrl-C or SIGTERM, then drains in-flight requests and the ingest
/// queue.
pub async fn run(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let choice = args.backend.choice();
    let backend = choice
        .open()
        .await
        .with_context(|| format!("opening the {choice:?} backend"))?;
    let (ingestor, ingest_task) = Ingestor::spawn(
        backend.clone(),
        IngestConfig {
            max_batch: args.max_batch,
            ..IngestConfig::default()
        },
    );
    let known_interfaces = if args.interfaces.is_empty() {
        KnownInterfaces::any()
    } else {
        KnownInterfaces::only(args.interfaces.iter().cloned())
    };
    let config = ApiConfig {
        body_limit: args.body_limit,
        known_interfaces,
    };
    let shutdown = ktwin_service::shutdown_token();
    let auth = args.auth.layer(
        "the event store",
        args.listen,
        standalone_policy(args.open_ingest).build()?,
        AuthLimits {
            per_principal: None,
            failures_per_address: service_args::failure_limit(),
        },
        &shutdown,
    )?;
    if args.open_ingest {
        eprintln!("note: --open-ingest: POST {INGEST_PATH} accepts events without a credential");
    }
    let readiness = Readiness::new();
    readiness.set_ready(true);
    let watcher = tokio::spawn(crate::keep_readiness(
        backend.clone(),
        ingestor.clone(),
        readiness.clone(),
        shutdown.clone(),
    ));
    // The EventStore's `timeout` bounds the API's requests; the probes keep the shared limit.
    let api = router(backend, ingestor, config).layer(
        tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(args.request_timeout_ms.max(1)),
        ),
    );
    let app = with_service_layers("store", api.layer(auth).merge(ops_router(readiness)));
    tracing::info!(backend = ?args.backend.backend, "event store starting");
    args.tls
        .serve("store", args.listen, app, shutdown.clone())
        .await?;
    // The router (and its ingestor handles) is gone: the ingest task drains and ends.
    ingest_task.await.context("ingest task")?;
    watcher.abort();
    Ok(ExitCode::SUCCESS)
}
