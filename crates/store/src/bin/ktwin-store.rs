//! The event store as a standalone binary (same as `ktwin store`, and `ktwin-store bench` as
//! `ktwin bench store`), for process-level tests and minimal images.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ktwin-store",
    version,
    about = "The ktwin event store",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    store: ktwin_store::cli::StoreArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark a backend (as `ktwin bench store`).
    #[cfg(feature = "bench")]
    Bench(ktwin_store::cli::BenchStoreArgs),
}

// mimalloc, not glibc malloc: the store's batches allocate and free many small JSON values,
// and glibc's free-chunk consolidation cost about a tenth of the ingest (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    ktwin_service::init_tracing();
    let args = Args::parse();
    let result = match args.command {
        #[cfg(feature = "bench")]
        Some(Command::Bench(bench)) => ktwin_store::cli::run_bench(bench).await,
        None => ktwin_store::cli::run(args.store).await,
    };
    ktwin_service::telemetry::shutdown();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
