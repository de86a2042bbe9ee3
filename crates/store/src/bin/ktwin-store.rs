//! The event store as a standalone binary (same as `ktwin store`), for process-level tests
//! and minimal images.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "ktwin-store", version, about = "The ktwin event store")]
struct Args {
    #[command(flatten)]
    store: ktwin_store::cli::StoreArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    ktwin_service::init_tracing();
    match ktwin_store::cli::run(Args::parse().store).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
