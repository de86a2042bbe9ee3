//! `ktwin sim`: run a world's devices against an MQTT broker.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rumqttc::QoS;

use crate::engine::{Pace, SimConfig, SimReport, run};
use crate::load::LoadProfile;
use crate::world::{SimWorld, paper_city};

/// Output format of the final report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A human-readable table.
    Text,
    /// The report as JSON.
    Json,
}

/// Simulate the devices of a world over MQTT with the paper's load model, or at a constant
/// rate for benchmarks.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Twin graph file (`{"twinInstances":[...]}`, e.g. a saved `GET /api/v1/twin-graph`):
    /// every instance of a device interface is simulated.
    #[arg(long, value_name = "FILE", required_unless_present = "neighborhoods")]
    pub world: Option<PathBuf>,
    /// Simulate the paper's device population for this many neighborhoods instead.
    #[arg(long, value_name = "N", conflicts_with = "world")]
    pub neighborhoods: Option<usize>,
    /// MQTT broker host.
    #[arg(long, default_value = "127.0.0.1", env = ktwin_events::env::MQTT_HOST)]
    pub host: String,
    /// MQTT broker port.
    #[arg(long, default_value_t = ktwin_events::MQTT_PORT, env = ktwin_events::env::MQTT_PORT)]
    pub port: u16,
    /// MQTT user name (with --password).
    #[arg(long, env = ktwin_events::env::MQTT_USERNAME, requires = "password")]
    pub username: Option<String>,
    /// MQTT password (with --username).
    #[arg(
        long,
        env = ktwin_events::env::MQTT_PASSWORD,
        requires = "username",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// QoS of published messages.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Run the load model this many times faster than real time.
    #[arg(long, default_value_t = 1.0, conflicts_with = "rate")]
    pub speedup: f64,
    /// Start this many model seconds into the profile (e.g. 480 = the third window).
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "SECONDS",
        conflicts_with = "rate"
    )]
    pub start_at: f64,
    /// Ignore the load model and publish this many messages per second in total.
    #[arg(long, value_name = "MSG_PER_S")]
    pub rate: Option<f64>,
    /// Wall-clock seconds to run (default: one profile cycle; required with --rate).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// MQTT connections to spread the devices over.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Seed of the readings' random walks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Do not subscribe to the devices' virtual topics.
    #[arg(long)]
    pub no_virtual: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

impl SimArgs {
    fn world(&self) -> anyhow::Result<SimWorld> {
        match (&self.world, self.neighborhoods) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading world {}", path.display()))?;
                Ok(SimWorld::from_graph_json(
                    &text,
                    &path.display().to_string(),
                )?)
            }
            (None, Some(n)) if n > 0 => Ok(SimWorld::from_graph(&paper_city(n, ""))),
            _ => anyhow::bail!("--neighborhoods: expected at least 1 (or pass --world FILE)"),
        }
    }

    fn config(&self) -> anyhow::Result<SimConfig> {
        let mut config = SimConfig::new(&self.host, self.port);
        config.credentials = self.username.clone().zip(self.password.clone());
        config.qos = if self.qos == 1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        config.pace = match self.rate {
            Some(rate) => Pace::Rate(rate),
            None => Pace::Profile {
                profile: LoadProfile::paper(),
                speedup: self.speedup,
                start_at: self.start_at,
            },
        };
        config.duration = match self.duration {
            Some(d) if d > 0.0 && d.is_finite() => Some(Duration::from_secs_f64(d)),
            Some(d) => anyhow::bail!("--duration {d}: expected seconds > 0"),
            None if self.rate.is_some() => anyhow::bail!("--rate needs --duration SECONDS"),
            None => None,
        };
        config.connections = self.connections;
        config.seed = self.seed;
        config.subscribe_virtual = !self.no_virtual;
        Ok(config)
    }
}

/// Runs `ktwin sim`.
pub async fn run_cli(args: SimArgs) -> anyhow::Result<ExitCode> {
    let world = args.world()?;
    let config = args.config()?;
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .expect("valid template"),
    );
    let shutdown = ktwin_service::shutdown_token();
    let report = run(&world, &config, shutdown, |totals, elapsed, total| {
        let fraction = elapsed.as_secs_f64() / total.as_secs_f64().max(1e-9);
        bar.set_position((fraction.min(1.0) * 1000.0) as u64);
        bar.set_message(format!(
            "sent {} ({:.0}/s), acked {}, errors {}",
            totals.sent(),
            totals.sent() as f64 / elapsed.as_secs_f64().max(1e-3),
            totals.acknowledged(),
            totals.errors()
        ));
    })
    .await?;
    bar.finish_and_clear();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", render(&report)),
    }
    Ok(if report.sent > 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: nothing was sent to {}:{}", args.host, args.port);
        ExitCode::FAILURE
    })
}

/// The text form of a report.
pub fn render(report: &SimReport) -> String {
    let mut out = format!(
        "devices {}  connections {}  QoS {}  elapsed {:.1} s\n\
         sent {}  acknowledged {}  received {}  errors {}  rate {:.0} msg/s\n\n",
        report.devices,
        report.connections,
        report.qos,
        report.elapsed_s,
        report.sent,
        report.acknowledged,
        report.received,
        report.errors,
        report.rate_per_s
    );
    out.push_str(&format!(
        "{:<14} {:>8} {:>10} {:>10} {:>10}\n",
        "type", "devices", "sent", "msg/s", "model/s"
    ));
    for (name, t) in &report.per_type {
        let model = t
            .model_rate_per_s
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        out.push_str(&format!(
            "{name:<14} {:>8} {:>10} {:>10.2} {model:>10}\n",
            t.devices, t.sent, t.rate_per_s
        ));
    }
    out
}
