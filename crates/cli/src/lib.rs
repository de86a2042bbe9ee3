//! `ktwin`: the command line of the ktwin digital-twin platform.
//!
//! Thin: every subcommand lives in the library crate that owns it (`<crate>::cli`, behind that
//! crate's `cli` feature); this crate only wires them together. It is a library beside the
//! binary so tests parse the commands the platform renders into containers with the very
//! parser the image runs ([`Cli`]).

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod events;
mod service;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use service::ServiceArgs;

/// The `ktwin` command line.
#[derive(Parser)]
#[command(
    name = "ktwin",
    version,
    about = "Serverless, Kubernetes-native digital twins from DTDL models"
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[allow(missing_docs)]
#[derive(Subcommand)]
pub enum Command {
    /// Parse and validate DTDL models.
    Dtdl(ktwin_dtdl::cli::DtdlArgs),
    /// Run the event store: history and latest state of every twin over REST.
    Store(ktwin_store::cli::StoreArgs),
    /// Run the graph service: twin instances and their relationships over REST.
    Graph(ktwin_graph::cli::GraphArgs),
    /// Measure components.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Bridge devices and twins: MQTT → CloudEvents (`mqtt`), CloudEvents → MQTT (`cloudevent`).
    Dispatcher(Box<ktwin_dispatcher::cli::DispatcherArgs>),
    /// Run the Kubernetes operator (controllers for the ktwin resources).
    Operator(ktwin_operator::cli::OperatorArgs),
    /// Print offline what the operator would apply for a project.
    Plan(ktwin_operator::cli::PlanArgs),
    /// Install ktwin on a cluster (`--render` prints the bundle).
    Install(ktwin_operator::cli::InstallArgs),
    /// Print the ktwin CRDs (TwinInterface, TwinInstance, EventStore, MQTTTrigger, Gateway).
    Crds(ktwin_model::cli::CrdsArgs),
    /// Compile DTDL models into TwinInterface resources.
    Compile(ktwin_model::cli::CompileArgs),
    /// Expand a world description into TwinInstances (or the twin-graph JSON).
    Instances(ktwin_model::cli::InstancesArgs),
    /// Simulate a world's devices over MQTT with the paper's load model (or `--rate`).
    Sim(ktwin_sim::cli::SimArgs),
    /// Run a project locally: the whole platform in one process (MQTT, broker, store, graph, services).
    Up(ktwin_runtime::cli::UpArgs),
    /// Print the event grammar (types, topics, routing keys) of names, for SDKs in other languages.
    Events(events::EventsArgs),
    /// Serve a built-in twin service handler over the Knative HTTP contract (e.g. `smart-city/pole`).
    Service(ServiceArgs),
    /// Run the gateway: twin state, history and graph, events and commands, authenticated.
    Gateway(ktwin_gateway::cli::GatewayArgs),
    /// Create, scope, rotate and revoke API tokens and device credentials.
    Auth(ktwin_auth::cli::AuthArgs),
    /// List, replay or purge the dead letters of a running platform.
    DeadLetters(ktwin_dispatcher::dead_letters_cli::DeadLettersArgs),
    /// Print the chain of events one device message caused (its trace, from the event store).
    Trace(ktwin_store::trace_cli::TraceArgs),
}

/// `ktwin bench` subcommands.
#[allow(missing_docs)]
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Event-store ingest throughput and latest-state read latency.
    Store(ktwin_store::cli::BenchStoreArgs),
    /// MQTT → CloudEvent dispatch throughput (bus, RabbitMQ) beside raw Mosquitto and AMQP rates.
    Dispatch(ktwin_dispatcher::cli::BenchDispatchArgs),
    /// The whole platform end to end under the paper's peak-window load.
    E2e(ktwin_runtime::bench::BenchE2eArgs),
    /// The scenario for minutes with faults injected; fails when anything acknowledged is lost.
    Soak(ktwin_runtime::bench::soak::BenchSoakArgs),
}

/// The SDK handlers this binary embeds, which `ktwin up` mounts in-process for services whose
/// `handler` names them and `ktwin service <handler>` serves on a cluster: the smart-city
/// reference services, so that the README's first command runs the whole scenario in one
/// process and the smart-city example deploys them from the one `ktwin` image.
pub fn built_in_handlers() -> ktwin_runtime::Handlers {
    ktwin_smart_city_services::handlers().into_iter().collect()
}

/// Runs a parsed command line to completion: the exit code of the process.
pub fn main(cli: Cli) -> ExitCode {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // The platform runs threads of its own beside the runtime's (see
    // `platform_worker_threads`); tokio's own setting still wins when given.
    let hosts_platform = matches!(
        cli.command,
        Command::Up(_) | Command::Bench(BenchCommand::E2e(_) | BenchCommand::Soak(_))
    );
    if hosts_platform && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(ktwin_runtime::platform_worker_threads());
    }
    let result = match runtime.build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(err) => Err(anyhow::Error::new(err).context("starting the async runtime")),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dtdl(args) => ktwin_dtdl::cli::run(args).await,
        Command::Store(args) => ktwin_store::cli::run(args).await,
        Command::Graph(args) => ktwin_graph::cli::run(args).await,
        Command::Bench(BenchCommand::Store(args)) => ktwin_store::cli::run_bench(args).await,
        Command::Bench(BenchCommand::Dispatch(args)) => {
            ktwin_dispatcher::cli::run_bench(args).await
        }
        Command::Dispatcher(args) => ktwin_dispatcher::cli::run(*args).await,
        Command::Operator(args) => ktwin_operator::cli::run_operator(args).await,
        Command::Plan(args) => ktwin_operator::cli::run_plan(args).await,
        Command::Install(args) => ktwin_operator::cli::run_install(args).await,
        Command::Crds(args) => ktwin_model::cli::run_crds(args).await,
        Command::Compile(args) => ktwin_model::cli::run_compile(args).await,
        Command::Instances(args) => ktwin_model::cli::run_instances(args).await,
        Command::Sim(args) => ktwin_sim::cli::run_cli(args).await,
        Command::Up(args) => ktwin_runtime::cli::run(args, built_in_handlers()).await,
        Command::Bench(BenchCommand::E2e(args)) => {
            ktwin_runtime::bench::run(args, built_in_handlers()).await
        }
        Command::Bench(BenchCommand::Soak(args)) => {
            ktwin_runtime::bench::soak::run(args, built_in_handlers()).await
        }
        Command::Events(args) => events::run(&args),
        Command::Service(args) => service::run(args).await,
        Command::Gateway(args) => ktwin_gateway::cli::run(args).await,
        Command::Auth(args) => ktwin_auth::cli::run(args),
        Command::DeadLetters(args) => ktwin_dispatcher::dead_letters_cli::run(args).await,
        Command::Trace(args) => ktwin_store::trace_cli::run_trace(args).await,
    }
}
