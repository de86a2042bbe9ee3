//! `ktwin bench dispatch` without building the whole `ktwin` binary:
//! `cargo run --release -p ktwin-dispatcher --example bench_dispatch -- --format json`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ktwin_dispatcher::cli::BenchDispatchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    ktwin_service::init_tracing();
    ktwin_dispatcher::cli::run_bench(Cli::parse().args).await
}
