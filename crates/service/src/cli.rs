//! Command-line options every command that starts traces shares (`ktwin up`, `ktwin
//! dispatcher mqtt`, `ktwin gateway`, `ktwin bench e2e`), said once.

use ktwin_events::trace::TraceSampler;

/// Which of the traces started here are recorded.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// Ratio (0 to 1) of the traces started here (device messages, commands, events posted
    /// without a trace) that are recorded: the event store keeps their events for `ktwin
    /// trace`, and their spans are exported over OTLP. 1 records every trace; 0 turns tracing
    /// off (events still carry their trace context, which costs about nothing).
    #[arg(
        long = "trace-sample",
        env = ktwin_events::env::TRACE_SAMPLE,
        value_name = "RATIO",
        default_value_t = TraceSampler::DEFAULT
    )]
    pub sampler: TraceSampler,
}
