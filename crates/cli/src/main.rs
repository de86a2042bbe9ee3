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
enum Command {}

#[tokio::main]
async fn main() -> ExitCode {
    ktwin_service::init_tracing();
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {};
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
