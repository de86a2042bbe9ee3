//! `ktwin sim` without the rest of the CLI, for benchmarking the simulator alone:
//! `cargo run --release -p ktwin-sim --example sim -- --neighborhoods 2 --rate 50000 --duration 10`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "sim")]
struct Cli {
    #[command(flatten)]
    args: ktwin_sim::cli::SimArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ktwin_service::init_tracing();
    match ktwin_sim::cli::run_cli(Cli::parse().args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
