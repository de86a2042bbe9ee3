//! `ktwin bench soak`: the scenario under `ktwin up`'s platform for minutes, with faults
//! injected in rounds — the store refusing commits, the embedded broker's link stalled, a
//! service replica killed, a burst of malformed and oversized device messages — then counted:
//! what the devices sent against what the store holds (by distinct event id), duplicates,
//! dead letters, and resident memory at the start and the end. Nothing acknowledged may be
//! lost or stored twice: the command fails when it was.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ktwin_sim::{DeviceType, LoadProfile, Pace, SimConfig, SimReport, SimWorld};
use ktwin_store::{Backend, BackendChoice, EventPosition};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;

use super::{Format, Usage, peak_window_start, spawn_sim_thread};
use crate::console::Console;
use crate::faults::Faults;
use crate::project::{Handlers, PlannedProject};
use crate::up::{MqttChoice, Platform, UpOptions};

/// Arguments of `ktwin bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchSoakArgs {
    /// The project to run (its services run in-process, as `ktwin up` runs them).
    #[arg(long, default_value = "examples/smart-city")]
    pub project_dir: PathBuf,
    /// Neighborhoods in the world (the `neighborhoods` world parameter).
    #[arg(long, default_value_t = 20)]
    pub neighborhoods: u64,
    /// Minutes of load (the paper's profile from its busiest window, at real time).
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Seconds of one round of faults: each fault comes once per round.
    #[arg(long, default_value_t = 300)]
    pub fault_round: u64,
    /// Seconds the store stays down, and the link stalled, in each round.
    #[arg(long, default_value_t = 10)]
    pub outage: u64,
    /// The service whose replica is killed.
    #[arg(long, default_value = "ngsi-ld-city-airqualityobserved")]
    pub victim: String,
    /// Seconds a killed replica takes to come back.
    #[arg(long, default_value_t = 2)]
    pub restart: u64,
    /// Replicas per service at most.
    #[arg(long, default_value_t = 4)]
    pub max_replicas: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// What `ktwin bench soak` counted.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Neighborhoods in the world.
    pub neighborhoods: u64,
    /// Minutes of load.
    pub minutes: f64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Device messages of persisted interfaces the simulated devices sent.
    pub sent: u64,
    /// Distinct device events of those interfaces in the store.
    pub stored: u64,
    /// Stored more than once: extra rows of one event id, plus distinct ids beyond `sent`.
    pub duplicates: u64,
    /// `sent - stored`.
    pub lost: u64,
    /// Malformed and oversized device messages the bursts published (all acknowledged).
    pub bad_sent: u64,
    /// Dead letters the platform recorded (kept and evicted).
    pub dead_letters: u64,
    /// Device messages the embedded broker dropped before its link read them.
    pub link_dropped: u64,
    /// Store commits refused during the outages.
    pub refused_commits: u64,
    /// Deliveries that failed because their replica was killed.
    pub killed_deliveries: u64,
    /// Resident memory of the platform after the first third of the load (its bounded buffers
    /// filled), MB.
    pub rss_start_mb: f64,
    /// Resident memory of the platform at the end of the load, MB.
    pub rss_end_mb: f64,
    /// `rss_end / rss_start - 1`, percent.
    pub rss_growth_percent: f64,
    /// Growth from `rss_start` to the end by a least-squares line through the samples taken
    /// in between (every 5 s), percent of the line's value at the start: the two end points
    /// alone move with the store's flushes and compactions by a tenth either way.
    pub rss_trend_percent: f64,
    /// Highest resident memory sampled during the load, MB.
    pub rss_peak_mb: f64,
}

impl SoakReport {
    /// Whether nothing acknowledged was lost or stored twice.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicates == 0
    }

    fn print_text(&self) {
        println!(
            "neighborhoods / minutes  {} / {}",
            self.neighborhoods, self.minutes
        );
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("faults                   {}", faults.join(", "));
        println!(
            "sent / stored / lost     {} / {} / {}",
            self.sent, self.stored, self.lost
        );
        println!("duplicates stored        {}", self.duplicates);
        println!(
            "bad sent / dead letters  {} / {}",
            self.bad_sent, self.dead_letters
        );
        println!("link dropped             {}", self.link_dropped);
        println!("refused commits          {}", self.refused_commits);
        println!("killed deliveries        {}", self.killed_deliveries);
        println!(
            "RSS start / end / peak   {:.1} / {:.1} / {:.1} MB ({:+.1} %; trend {:+.1} %)",
            self.rss_start_mb,
            self.rss_end_mb,
            self.rss_peak_mb,
            self.rss_growth_percent,
            self.rss_trend_percent
        );
    }
}

/// Runs `ktwin bench soak` with the SDK `handlers` built into the calling binary; fails (exit
/// code 1) when anything acknowledged was lost or stored twice.
pub async fn run(args: BenchSoakArgs, handlers: Handlers) -> anyhow::Result<ExitCode> {
    let report = soak(&args, handlers).await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => report.print_text(),
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the soak and counts.
pub async fn soak(args: &BenchSoakArgs, handlers: Handlers) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(
        args.minutes > 0.0 && args.minutes.is_finite(),
        "--minutes must be a positive number, not {}",
        args.minutes
    );
    let faults = Faults::new(&args.victim, Duration::from_secs(args.restart));
    let store_dir = tempfile::tempdir().context("temporary store directory")?;
    let platform = start_platform(args, handlers, &faults, store_dir.path()).await?;
    let persisted = persisted_interfaces(&platform.planned);
    anyhow::ensure!(
        platform
            .planned
            .plan
            .services()
            .any(|s| s.interface == args.victim),
        "--victim {}: the project has no such service",
        args.victim
    );
    let world = SimWorld::from_graph_json(&platform.planned.graph_json(), "world")?;
    let burst_topic = burst_topic(&world, &persisted)?;
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let sim = sim_config(&platform, &world, duration);
    let (sim_thread, _) = spawn_sim_thread(world, sim)?;

    let burst = Burst::new(&platform, burst_topic);
    let load = run_schedule(args, &platform, &faults, &burst, duration).await?;
    let sim = tokio::task::spawn_blocking(move || sim_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the simulator thread panicked"))??;
    drain(&platform, &sim, load.bad_sent).await;
    let counts = count_stored(platform.backend().as_ref(), &persisted).await?;
    let dead_letters = dead_letters(platform.backend().as_ref()).await?;
    let link_dropped = platform.link_dropped();
    platform.shutdown(Duration::from_secs(30)).await;

    let sent = sent_of(&sim, &persisted);
    let surplus = counts.distinct.saturating_sub(sent);
    Ok(SoakReport {
        neighborhoods: args.neighborhoods,
        minutes: args.minutes,
        faults: load.faults,
        sent,
        stored: counts.distinct,
        duplicates: counts.rows - counts.distinct + surplus,
        lost: sent.saturating_sub(counts.distinct),
        bad_sent: load.bad_sent,
        dead_letters,
        link_dropped,
        refused_commits: faults.refused_appends(),
        killed_deliveries: faults.killed_deliveries(),
        rss_start_mb: load.rss_start as f64 / 1e6,
        rss_end_mb: load.rss_end as f64 / 1e6,
        rss_growth_percent: (load.rss_end as f64 / load.rss_start.max(1) as f64 - 1.0) * 100.0,
        rss_peak_mb: load.rss_peak as f64 / 1e6,
        rss_trend_percent: trend_percent(&load.rss_samples),
    })
}

async fn start_platform(
    args: &BenchSoakArgs,
    handlers: Handlers,
    faults: &Faults,
    dir: &std::path::Path,
) -> anyhow::Result<Platform> {
    let parameters = BTreeMap::from([("neighborhoods".to_owned(), args.neighborhoods)]);
    let planned = PlannedProject::load(&args.project_dir, &parameters)?;
    let mut options = UpOptions::new(dir);
    options.http_port = 0;
    options.mqtt = MqttChoice::Embedded { port: 0 };
    options.store = BackendChoice::Embedded(dir.join("store"));
    options.replica_cap = args.max_replicas;
    options.handlers = handlers;
    options.console = Console::plain();
    options.faults = Some(faults.clone());
    Ok(Platform::start(planned, options).await?)
}

/// The interfaces whose device events the store keeps.
fn persisted_interfaces(planned: &PlannedProject) -> Vec<String> {
    planned
        .project
        .services
        .iter()
        .filter(|(_, s)| s.persist_real_event == Some(true))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The topic of the first device of a persisted interface: the bursts publish there.
fn burst_topic(world: &SimWorld, persisted: &[String]) -> anyhow::Result<String> {
    world
        .devices
        .iter()
        .find(|d| persisted.iter().any(|p| p == d.device_type.interface()))
        .map(|d| format!("ktwin/real/{}/{}", d.device_type.interface(), d.instance))
        .context("the world has no device of a persisted interface")
}

/// The simulated devices: the paper's profile from its busiest window, at real time, QoS 1.
fn sim_config(platform: &Platform, world: &SimWorld, duration: Duration) -> SimConfig {
    let profile = LoadProfile::paper();
    let mut sim = SimConfig::new(&platform.mqtt.host, platform.mqtt.port);
    sim.credentials = platform.simulator_login();
    sim.qos = QoS::AtLeastOnce;
    sim.pace = Pace::Profile {
        start_at: peak_window_start(&profile, world),
        profile,
        speedup: 1.0,
    };
    sim.duration = Some(duration);
    sim
}

/// Device messages of `persisted` interfaces the devices sent.
fn sent_of(report: &SimReport, persisted: &[String]) -> u64 {
    DeviceType::ALL
        .iter()
        .filter(|t| persisted.iter().any(|p| p == t.interface()))
        .map(|t| report.per_type.get(t.name()).map_or(0, |r| r.sent))
        .sum()
}

/// One fault at a time within a round, at a fraction of the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    StoreDown,
    StoreUp,
    LinkStalled,
    LinkFlowing,
    KillReplica,
    Burst,
}

impl Step {
    /// The faults a step starts, by the name the report counts them under.
    fn fault(self) -> Option<&'static str> {
        match self {
            Step::StoreDown => Some("store_outage"),
            Step::LinkStalled => Some("link_stall"),
            Step::KillReplica => Some("replica_kill"),
            Step::Burst => Some("bad_message_burst"),
            Step::StoreUp | Step::LinkFlowing => None,
        }
    }
}

/// Every step of the run, in time order: per round of `round`, the store goes down at a tenth
/// of it for `outage`, the link stalls at four tenths for `outage`, a replica is killed at six
/// tenths and a burst comes at eight. Steps past `duration` are left out, except the ends of
/// an outage or a stall begun before it.
fn schedule(round: Duration, outage: Duration, duration: Duration) -> Vec<(Duration, Step)> {
    let mut steps = Vec::new();
    let mut start = Duration::ZERO;
    while !round.is_zero() && start < duration {
        let at = |tenths: u32| start + round * tenths / 10;
        for (begin, step, end) in [
            (at(1), Step::StoreDown, Some(Step::StoreUp)),
            (at(4), Step::LinkStalled, Some(Step::LinkFlowing)),
            (at(6), Step::KillReplica, None),
            (at(8), Step::Burst, None),
        ] {
            if begin >= duration {
                continue;
            }
            steps.push((begin, step));
            if let Some(end) = end {
                steps.push((begin + outage, end));
            }
        }
        start += round;
    }
    steps.sort_by_key(|(at, _)| *at);
    steps
}

/// What the load phase measured.
struct LoadFigures {
    faults: BTreeMap<&'static str, u64>,
    bad_sent: u64,
    rss_start: u64,
    rss_end: u64,
    rss_peak: u64,
    /// (seconds since the load started, RSS bytes) from `rss_start` on.
    rss_samples: Vec<(f64, f64)>,
}

/// Injects the faults on schedule while the devices publish, sampling memory; returns once the
/// load's duration passed and every fault is over.
async fn run_schedule(
    args: &BenchSoakArgs,
    platform: &Platform,
    faults: &Faults,
    burst: &Burst,
    duration: Duration,
) -> anyhow::Result<LoadFigures> {
    let steps = schedule(
        Duration::from_secs(args.fault_round),
        Duration::from_secs(args.outage),
        duration,
    );
    let started = tokio::time::Instant::now();
    // Memory once the platform took the load for a while (queues, caches, the broker's log
    // filled): growth from there is what a long run adds. The embedded broker keeps up to
    // `MessageLog::default()` bytes per subscription filter, which at N = 20 takes minutes to
    // fill, so the reference is taken after a third of the run rather than a fixed minute.
    let settle = (duration / 3).max(Duration::from_secs(5));
    let mut usage = Usage::new(None)?;
    let mut figures = LoadFigures {
        faults: BTreeMap::new(),
        bad_sent: 0,
        rss_start: 0,
        rss_end: 0,
        rss_peak: 0,
        rss_samples: Vec::new(),
    };
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    let mut next = steps.into_iter().peekable();
    let end = started + duration;
    loop {
        let due = next.peek().map_or(end, |(at, _)| started + *at);
        tokio::select! {
            _ = ticks.tick() => {
                let rss = usage.sample().1;
                figures.rss_peak = figures.rss_peak.max(rss);
                if figures.rss_start == 0 && started.elapsed() >= settle {
                    figures.rss_start = rss;
                }
                if figures.rss_start != 0 {
                    figures.rss_samples.push((started.elapsed().as_secs_f64(), rss as f64));
                }
                progress(started.elapsed(), duration, rss, platform);
            }
            () = tokio::time::sleep_until(due) => {
                let Some((_, step)) = next.next() else { break };
                if let Some(fault) = step.fault() {
                    *figures.faults.entry(fault).or_default() += 1;
                }
                match step {
                    Step::StoreDown => faults.set_store_down(true),
                    Step::StoreUp => faults.set_store_down(false),
                    Step::LinkStalled => faults.set_link_stalled(true),
                    Step::LinkFlowing => faults.set_link_stalled(false),
                    Step::KillReplica => faults.kill_replica(),
                    Step::Burst => figures.bad_sent += burst.publish().await?,
                }
            }
        }
    }
    figures.rss_end = usage.sample().1;
    if figures.rss_start == 0 {
        figures.rss_start = figures.rss_end;
    }
    Ok(figures)
}

/// The change from the first to the last sample's time along the least-squares line through
/// `samples` (time, value), percent of the line's value at the first; 0 with fewer than two.
fn trend_percent(samples: &[(f64, f64)]) -> f64 {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return 0.0;
    };
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_v = samples.iter().map(|(_, v)| v).sum::<f64>() / n;
    let spread: f64 = samples.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    if spread == 0.0 {
        return 0.0;
    }
    let slope = samples
        .iter()
        .map(|(t, v)| (t - mean_t) * (v - mean_v))
        .sum::<f64>()
        / spread;
    let at_first = mean_v + slope * (first.0 - mean_t);
    if at_first <= 0.0 {
        return 0.0;
    }
    slope * (last.0 - first.0) / at_first * 100.0
}

/// A line on standard error about once a minute: long work shows progress, and whether the
/// platform keeps up (events queued, messages the link lost).
fn progress(elapsed: Duration, duration: Duration, rss: u64, platform: &Platform) {
    if elapsed.as_secs() % 60 < 5 {
        let stats = platform.stats();
        eprintln!(
            "soak: {:.1} of {:.1} min, RSS {:.1} MB, {} device messages in, {} events queued, {} dropped by the link",
            elapsed.as_secs_f64() / 60.0,
            duration.as_secs_f64() / 60.0,
            rss as f64 / 1e6,
            stats.ingested + stats.rejected,
            stats.queued(),
            platform.link_dropped()
        );
    }
}

/// Malformed and oversized device messages, published as a device would (QoS 1).
struct Burst {
    host: String,
    port: u16,
    login: Option<(String, String)>,
    topic: String,
}

impl Burst {
    fn new(platform: &Platform, topic: String) -> Self {
        Self {
            host: platform.mqtt.host.clone(),
            port: platform.mqtt.port,
            login: platform.simulator_login(),
            topic,
        }
    }

    /// The messages of one burst: broken JSON, JSON that is no object, bytes that are no
    /// UTF-8, and objects above the dispatcher's payload limit (below the broker's).
    fn payloads() -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        for i in 0..10 {
            payloads.push(format!("{{\"broken\": {i}").into_bytes());
            payloads.push(format!("[{i}, 2, 3]").into_bytes());
            payloads.push(vec![0xff, 0xfe, b'{', i]);
        }
        let padding = "x".repeat(ktwin_dispatcher::ingress::DEFAULT_MAX_PAYLOAD_BYTES + 1024);
        for i in 0..2 {
            payloads.push(format!("{{\"n\": {i}, \"pad\": \"{padding}\"}}").into_bytes());
        }
        payloads
    }

    /// Publishes one burst and waits for every acknowledgement; returns how many there were.
    async fn publish(&self) -> anyhow::Result<u64> {
        let client_id = format!("ktwin-soak-burst-{}", uuid::Uuid::now_v7().simple());
        let mut options = MqttOptions::new(client_id, &self.host, self.port);
        options.set_max_packet_size(
            crate::mqtt::MAX_PAYLOAD + 65_536,
            crate::mqtt::MAX_PAYLOAD + 65_536,
        );
        if let Some((username, password)) = &self.login {
            options.set_credentials(username, password);
        }
        let (client, mut events) = AsyncClient::new(options, 100);
        let payloads = Self::payloads();
        let total = payloads.len() as u64;
        for payload in payloads {
            client
                .publish(self.topic.as_str(), QoS::AtLeastOnce, false, payload)
                .await?;
        }
        let mut acked = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked < total {
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                Ok(Err(err)) => anyhow::bail!("the burst's MQTT connection failed: {err}"),
                Err(_) => anyhow::bail!("only {acked} of {total} burst messages acknowledged"),
            }
        }
        let _ = client.disconnect().await;
        Ok(acked)
    }
}

/// Waits (bounded) until the platform took in what the devices and bursts sent and went idle.
async fn drain(platform: &Platform, sim: &SimReport, bad_sent: u64) {
    let expected = (sim.sent + bad_sent).saturating_sub(platform.link_dropped());
    let started = Instant::now();
    loop {
        let stats = platform.stats();
        if stats.ingested + stats.rejected >= expected
            || started.elapsed() > Duration::from_secs(120)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    platform.wait_idle(Duration::from_secs(300)).await;
}

/// Device events of `persisted` interfaces in the store: rows and distinct ids.
struct StoredCounts {
    rows: u64,
    distinct: u64,
}

async fn count_stored(backend: &dyn Backend, persisted: &[String]) -> anyhow::Result<StoredCounts> {
    let mut ids = HashSet::new();
    let mut rows = 0u64;
    let mut after: Option<EventPosition> = None;
    loop {
        let page = backend.events(after.as_ref(), 1000).await?;
        for event in &page.items {
            if event.event_type.starts_with("ktwin.real.")
                && persisted.contains(&event.interface_id)
            {
                rows += 1;
                ids.insert(event.id.clone());
            }
        }
        match (page.more, page.items.last()) {
            (true, Some(last)) => after = Some(EventPosition::of(last)),
            _ => break,
        }
    }
    Ok(StoredCounts {
        rows,
        distinct: ids.len() as u64,
    })
}

/// Dead letters recorded: those kept and those evicted to make room.
async fn dead_letters(backend: &dyn Backend) -> anyhow::Result<u64> {
    let store = backend
        .dead_letters()
        .context("the store keeps no dead letters")?;
    let usage = store.usage().await?;
    Ok(usage.count + usage.evicted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_brings_every_fault_once() {
        let round = Duration::from_secs(60);
        let outage = Duration::from_secs(10);
        let steps = schedule(round, outage, Duration::from_secs(120));
        let count = |step: Step| steps.iter().filter(|(_, s)| *s == step).count();
        for step in [
            Step::StoreDown,
            Step::StoreUp,
            Step::LinkStalled,
            Step::LinkFlowing,
            Step::KillReplica,
            Step::Burst,
        ] {
            assert_eq!(count(step), 2, "{step:?}");
        }
        assert!(steps.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
        assert_eq!(steps[0], (Duration::from_secs(6), Step::StoreDown));
        assert_eq!(steps[1], (Duration::from_secs(16), Step::StoreUp));
    }

    #[test]
    fn a_short_run_keeps_the_faults_that_begin_in_it() {
        let steps = schedule(
            Duration::from_secs(300),
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        assert_eq!(
            steps,
            vec![
                (Duration::from_secs(30), Step::StoreDown),
                (Duration::from_secs(40), Step::StoreUp),
            ]
        );
    }

    #[test]
    fn the_trend_follows_the_line_not_the_end_points() {
        assert_eq!(trend_percent(&[]), 0.0);
        assert_eq!(trend_percent(&[(5.0, 100.0)]), 0.0);
        // Around 100 from a low first to a high last sample: the end points say +22 %, the
        // line +4 %.
        let noisy = [
            (0.0, 90.0),
            (10.0, 115.0),
            (20.0, 100.0),
            (30.0, 85.0),
            (40.0, 110.0),
        ];
        let trend = trend_percent(&noisy);
        assert!((trend - 4.08).abs() < 0.01, "{trend}");
        // Growing 1 a second from 100 over 100 s: +100 %.
        let growing: Vec<(f64, f64)> = (0..=100)
            .map(|t| (f64::from(t), 100.0 + f64::from(t)))
            .collect();
        assert!((trend_percent(&growing) - 100.0).abs() < 1e-6);
    }
}
