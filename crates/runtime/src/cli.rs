//! `ktwin up`: run a project locally. (`ktwin bench e2e` lives in [`crate::bench`].)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ktwin_sim::{LoadProfile, Pace, SimConfig, SimWorld};
use ktwin_store::BackendChoice;
use tokio_util::sync::CancellationToken;

use crate::access::UpAuth;
use crate::console::Console;
use crate::mqtt::MqttAddress;
use crate::project::{Handlers, PlannedProject};
use crate::up::{MqttChoice, Platform, PlatformStats, UpOptions};

/// Arguments of `ktwin up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// The project directory (with `ktwin.yaml`).
    #[arg(default_value = ".")]
    pub project_dir: PathBuf,
    /// Also run the world's simulated devices (the paper's load model).
    #[arg(long)]
    pub sim: bool,
    /// Speed of the simulated devices' load model (10 = ten times real time).
    #[arg(long, default_value_t = 1.0, requires = "sim")]
    pub speedup: f64,
    /// Validate the project (models, world, services, routes) and exit.
    #[arg(long)]
    pub check: bool,
    /// Use this MQTT broker (`mqtt://host:port`) instead of the embedded one.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// Port of the embedded MQTT broker [default: 1883, or a free port when 1883 is taken,
    /// e.g. by a local Mosquitto].
    #[arg(long, conflicts_with = "mqtt")]
    pub mqtt_port: Option<u16>,
    /// Store events in PostgreSQL (`postgres://…`) instead of the embedded store under
    /// `PROJECT_DIR/.ktwin/`.
    #[arg(long, value_name = "URL", env = ktwin_events::env::STORE_URL)]
    pub store: Option<String>,
    /// HTTP port of the store and graph APIs, `/metrics` and `/health` (on 127.0.0.1).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A world parameter, e.g. `--set neighborhoods=3` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = ktwin_model::parse_parameter)]
    pub parameters: Vec<(String, u64)>,
    /// Replicas per twin service at most on this machine.
    #[arg(long, default_value_t = 4)]
    pub max_replicas: u32,
    /// How long a service replica may take to answer HTTP after starting (a first
    /// `cargo run` compiles).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub ready_timeout: u64,
    /// Run every service as its `command` child processes, even when this binary has the
    /// service's `handler` built in (which `ktwin up` otherwise mounts in-process).
    #[arg(long)]
    pub processes: bool,
    /// How long Ctrl-C waits for queued events to be handled.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub drain_timeout: u64,
    /// Turn authentication off (APIs and MQTT); refused unless every listener is on
    /// loopback. By default the APIs need a bearer token and devices MQTT credentials, both
    /// created on first start under PROJECT_DIR/.ktwin/auth/.
    #[arg(long)]
    pub insecure: bool,
    /// The certificate of the HTTP port and the MQTT device port (TLS on both when given).
    #[command(flatten)]
    pub tls: ktwin_auth::service_args::TlsArgs,
    /// Which traces are recorded.
    #[command(flatten)]
    pub trace: ktwin_service::cli::TraceArgs,
}

/// The MQTT standard port when it is free; otherwise a free port chosen by the OS, so that
/// `ktwin up` works beside a Mosquitto already listening on 1883. The devices started by `--sim`
/// and the start-up banner use whichever port this returns.
fn default_mqtt_port() -> anyhow::Result<u16> {
    const MQTT_PORT: u16 = ktwin_events::MQTT_PORT;
    if std::net::TcpListener::bind(("127.0.0.1", MQTT_PORT)).is_ok() {
        return Ok(MQTT_PORT);
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("finding a free port for the embedded MQTT broker")?;
    let port = listener.local_addr()?.port();
    eprintln!(
        "MQTT port {MQTT_PORT} is taken (another broker?); the embedded broker uses {port} \
         (pass --mqtt-port or --mqtt URL to choose)"
    );
    Ok(port)
}

impl UpArgs {
    fn parameters(&self) -> BTreeMap<String, u64> {
        self.parameters.iter().cloned().collect()
    }

    fn options(&self, console: Console, handlers: Handlers) -> anyhow::Result<UpOptions> {
        let mut options = UpOptions::new(&self.project_dir);
        options.handlers = handlers;
        options.processes = self.processes;
        options.parameters = self.parameters();
        options.http_port = self.port;
        options.replica_cap = self.max_replicas;
        options.ready_timeout = Duration::from_secs(self.ready_timeout);
        options.console = console;
        if self.insecure {
            options.auth = UpAuth::Insecure;
        }
        options.tls = self.tls.files();
        options.trace_sampler = self.trace.sampler;
        if let Some(url) = &self.mqtt {
            options.mqtt = MqttChoice::External(MqttAddress::parse(url)?);
        } else {
            let port = match self.mqtt_port {
                Some(port) => port,
                None => default_mqtt_port()?,
            };
            options.mqtt = MqttChoice::Embedded { port };
        }
        if let Some(url) = &self.store {
            anyhow::ensure!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "--store {url:?}: expected a postgres:// URL (the embedded store needs no flag)"
            );
            options.store = BackendChoice::Postgres(url.clone());
        } else {
            let dir = self.project_dir.join(".ktwin");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(options)
    }
}

/// Runs `ktwin up`, with the SDK `handlers` built into the calling binary (services whose
/// `handler` setting names one of them run in-process).
///
/// A binary of your own can embed your services the same way the `ktwin` binary embeds the
/// smart-city ones:
///
/// ```no_run
/// # async fn my_main(args: ktwin_runtime::cli::UpArgs) -> anyhow::Result<std::process::ExitCode> {
/// let handlers = ktwin_runtime::Handlers::new(); // insert("my/pole".into(), Arc::new(…))
/// ktwin_runtime::cli::run(args, handlers).await
/// # }
/// ```
pub async fn run(args: UpArgs, handlers: Handlers) -> anyhow::Result<ExitCode> {
    let planned = PlannedProject::load(&args.project_dir, &args.parameters())?;
    if args.check {
        for line in planned.check_report(&handlers, args.processes) {
            println!("{line}");
        }
        println!("ok: {} is a valid project", args.project_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let console = Console::with_status_line();
    let options = args.options(console.clone(), handlers)?;
    let shutdown = ktwin_service::shutdown_token();
    let platform = Platform::start(planned, options).await?;
    for line in platform.describe() {
        console.print(&line);
    }
    let sim = if args.sim {
        Some(start_sim(
            &platform,
            args.speedup,
            shutdown.clone(),
            console.clone(),
        )?)
    } else {
        None
    };
    console.print("ready; Ctrl-C stops (queued events are handled first)");
    let status = tokio::spawn(status_loop(
        Arc::new(platform),
        console.clone(),
        shutdown.clone(),
    ));
    shutdown.cancelled().await;
    let platform = status.await?;
    if let Some(sim) = sim {
        match sim.await? {
            Ok(report) => console.print(&format!(
                "simulator: {} devices, sent {}, received {} virtual messages, errors {}",
                report.devices, report.sent, report.received, report.errors
            )),
            Err(err) => console.print(&format!("simulator: {err}")),
        }
    }
    console.finish();
    let Ok(platform) = Arc::try_unwrap(platform) else {
        anyhow::bail!("the platform is still in use at shutdown");
    };
    eprintln!(
        "stopping: draining queued events (up to {} s)",
        args.drain_timeout
    );
    let stats = platform
        .shutdown(Duration::from_secs(args.drain_timeout))
        .await;
    eprintln!(
        "stopped: {} device messages in, {} events published, {} sent to devices, {} rejected",
        stats.ingested, stats.published, stats.sent_to_devices, stats.rejected
    );
    Ok(ExitCode::SUCCESS)
}

/// Starts the world's simulated devices against the platform's MQTT broker.
fn start_sim(
    platform: &Platform,
    speedup: f64,
    shutdown: CancellationToken,
    console: Console,
) -> anyhow::Result<tokio::task::JoinHandle<Result<ktwin_sim::SimReport, ktwin_sim::SimError>>> {
    let world = SimWorld::from_graph_json(&platform.planned.graph_json(), "the project's world")?;
    let mut config = SimConfig::new(&platform.mqtt_local.host, platform.mqtt_local.port);
    config.credentials = platform.simulator_login();
    config.pace = Pace::Profile {
        profile: LoadProfile::paper(),
        speedup,
        start_at: 0.0,
    };
    console.print(&format!(
        "simulator        {} devices at {speedup}× the paper's load model",
        world.devices.len()
    ));
    Ok(tokio::spawn(async move {
        ktwin_sim::run(&world, &config, shutdown, |_, _, _| {}).await
    }))
}

/// Refreshes the status line every second until `shutdown`; returns the platform.
async fn status_loop(
    platform: Arc<Platform>,
    console: Console,
    shutdown: CancellationToken,
) -> Arc<Platform> {
    let mut last = (Instant::now(), platform.stats().published);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last_log = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let stats = platform.stats();
        let now = Instant::now();
        let rate =
            (stats.published - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, stats.published);
        let line = status_line(&stats, rate);
        if console.has_status_line() {
            console.set_status(line);
        } else if last_log.elapsed() >= Duration::from_secs(10) {
            // No terminal: a status line every 10 s in the log instead.
            last_log = now;
            console.print(&line);
        }
    }
    platform
}

/// `events/s 123.4 | queued 7 (twin/city-pole 5) | services up 3/12 | devices in 456 out 7`.
pub fn status_line(stats: &PlatformStats, events_per_s: f64) -> String {
    let busiest = stats
        .queue_depths
        .iter()
        .filter(|(_, depth)| **depth > 0)
        .max_by_key(|(_, depth)| **depth)
        .map(|(name, depth)| format!(" ({name} {depth})"))
        .unwrap_or_default();
    format!(
        "events/s {events_per_s:.1} | queued {}{busiest} | services up {}/{} | devices in {} out {} rejected {}",
        stats.queued(),
        stats.services_up(),
        stats.services.len(),
        stats.ingested,
        stats.sent_to_devices,
        stats.rejected,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolStats;

    #[test]
    fn status_line_names_the_busiest_queue() {
        let stats = PlatformStats {
            ingested: 10,
            queue_depths: BTreeMap::from([
                ("twin/a".into(), 2),
                ("twin/b".into(), 5),
                ("devices".into(), 0),
            ]),
            services: BTreeMap::from([
                (
                    "a".into(),
                    PoolStats {
                        replicas: 1,
                        ..PoolStats::default()
                    },
                ),
                ("b".into(), PoolStats::default()),
            ]),
            ..PlatformStats::default()
        };
        assert_eq!(
            status_line(&stats, 12.34),
            "events/s 12.3 | queued 7 (twin/b 5) | services up 1/2 | devices in 10 out 0 rejected 0"
        );
    }
}
