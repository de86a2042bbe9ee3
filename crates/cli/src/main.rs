//! `ktwin`: the command line of the ktwin digital-twin platform.
//!
//! A thin binary: every subcommand lives in the library crate that owns it (`<crate>::cli`);
//! this file only wires them together.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ktwin",
    version,
    about = "Serverless, Kubernetes-native digital twins from DTDL models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate DTDL models.
    Dtdl(ktwin_dtdl::cli::DtdlArgs),
    /// Run the event store: history and latest state of every twin over REST.
    Store(ktwin_store::cli::StoreArgs),
    /// Measure components.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Event-store ingest throughput and latest-state read latency.
    Store(ktwin_store::cli::BenchStoreArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    ktwin_service::init_tracing();
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Dtdl(args) => ktwin_dtdl::cli::run(args).await,
        Command::Store(args) => ktwin_store::cli::run(args).await,
        Command::Bench(BenchCommand::Store(args)) => ktwin_store::cli::run_bench(args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
