//! `ktwin trace <id>`: the chain of events one device message caused, from the event store's
//! trace route (`/api/v1/traces/{id}`) of a running platform.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use ktwin_events::{defaults, env};

use crate::TwinEvent;
use crate::api::traces::{TRACE_TRUNCATED_HEADER, trace_of};
use crate::trace_chain::CausalChain;

/// Prints the causal chain of one trace.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// The id of a device message's event (the root of its trace), or a trace id (32 hex
    /// digits: the second field of any event's `traceparent`).
    id: String,
    /// Base URL of the platform's HTTP API (`ktwin up`, or the event store in a cluster).
    #[arg(long, env = env::PLATFORM_URL, default_value = defaults::PLATFORM_URL)]
    url: String,
    /// Bearer token for the API (`read` scope on every twin).
    #[arg(long, env = env::TOKEN, hide_env_values = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Asks the store for the trace's events and prints their chain; exit code 1 when the store
/// keeps no event of it.
pub async fn run_trace(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let base = args.url.trim_end_matches('/');
    let url = format!("{base}/api/v1/traces/{}", percent_encode(&args.id));
    let mut request = reqwest::Client::new().get(&url);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("reaching {base}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("asking {url} for the trace: HTTP {status}: {body}");
    }
    let truncated = response.headers().contains_key(TRACE_TRUNCATED_HEADER);
    let events: Vec<TwinEvent> = response
        .json()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    let chain = CausalChain::build(trace_of(&args.id), events);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&chain)?),
        Format::Text => print!("{}", chain.render()),
    }
    if truncated {
        eprintln!("the trace has more events than the store returned (its limit)");
    }
    if chain.links.is_empty() {
        eprintln!(
            "the store keeps no event of trace {}: pass the id of a device message's event \
             or a trace id (the second field of an event's traceparent); only sampled traces \
             are recorded (by default {} of them: `ktwin up --trace-sample 1`, or {}=1, \
             records every one)",
            chain.trace_id,
            ktwin_events::trace::TraceSampler::DEFAULT.recorded_share(),
            ktwin_events::env::TRACE_SAMPLE
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// An id as one URL path segment.
fn percent_encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(percent_encode("0190f5a2-7b1c"), "0190f5a2-7b1c");
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
    }
}
