//! `ktwin`: the command line of the ktwin digital-twin platform (see the library, `ktwin::Cli`).

use std::process::ExitCode;

use clap::Parser;

// mimalloc, not glibc malloc: the store's batches allocate and free many small JSON values,
// and glibc's free-chunk consolidation cost about a tenth of the ingest (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ktwin_service::init_tracing();
    let code = ktwin::main(ktwin::Cli::parse());
    ktwin_service::telemetry::shutdown();
    code
}
