//! `ktwin bench e2e`: the whole platform under the paper's peak-window load, measured end to
//! end — device messages/s, internal events/s, device publish → durable-in-store latency,
//! CPU and RSS of the platform (this process and its service processes), beside the raw
//! Mosquitto pub→sub rate measured in the same run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ktwin_sim::{DeviceType, LoadProfile, Pace, SimConfig, SimWorld};
use ktwin_store::BackendChoice;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::console::Console;
use crate::mqtt::MqttAddress;
use crate::project::{Handlers, PlannedProject};
use crate::store_probe::{StoreProbe, TallySummary};
use crate::up::{MqttChoice, Platform, UpOptions};
use ktwin_service::machine::Machine;

pub mod soak;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `ktwin bench e2e`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchE2eArgs {
    /// The project to run (its services run as `ktwin up` runs them).
    #[arg(long, default_value = "examples/smart-city")]
    pub project_dir: PathBuf,
    /// Neighborhoods in the world (the `neighborhoods` world parameter).
    #[arg(long, default_value_t = 1)]
    pub neighborhoods: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Seconds of load before measuring (services start on demand and warm up).
    #[arg(long, default_value_t = 20)]
    pub warmup: u64,
    /// Speed of the load model (1 = the paper's rates).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Seconds to wait, after the load stops, for events still in flight to be stored; an
    /// event not stored by then counts as lost.
    #[arg(long, default_value_t = 60)]
    pub drain_deadline: u64,
    /// Mosquitto for the raw pub→sub reference rate; unreachable → reported as null.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mosquitto: String,
    /// Run the services as child processes of their `command` instead of their built-in
    /// handlers.
    #[arg(long)]
    pub processes: bool,
    /// Replicas per service at most.
    #[arg(long, default_value_t = 4)]
    pub max_replicas: u32,
    /// An external MQTT broker (`mqtt://host:port`) for the devices and the platform instead
    /// of the embedded one behind the gate, to compare brokers side by side: its CPU and memory
    /// count as the platform's. Devices' PUBACKs then come from that broker, not held until
    /// their messages are durable.
    #[arg(long, requires = "broker_pid")]
    pub mqtt: Option<String>,
    /// The process of the broker given with `--mqtt` (e.g. `$(pidof mosquitto)`).
    #[arg(long, requires = "mqtt")]
    pub broker_pid: Option<u32>,
    /// Which traces are recorded, as in `ktwin up`.
    #[command(flatten)]
    pub trace: ktwin_service::cli::TraceArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// What `ktwin bench e2e` measured.
#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    /// Neighborhoods in the world.
    pub neighborhoods: u64,
    /// Device messages entering the platform per second (measured window).
    pub device_msgs_per_s: f64,
    /// Events published on the broker per second (device and emitted events).
    pub events_per_s: f64,
    /// Device publish → durable-in-store latency of every device event of a persisted
    /// interface published in the measured window, however late it was stored (within the
    /// drain deadline); sent / stored (distinct ids) / duplicates / lost over the whole run.
    #[serde(flatten)]
    pub tally: TallySummary,
    /// The share of traces recorded (`--trace-sample`).
    pub trace_sample: f64,
    /// Seconds allowed after the load for the last events to be stored.
    pub drain_deadline_s: u64,
    /// Seconds it took them (the deadline when some were never stored).
    pub drained_in_s: f64,
    /// CPU of the platform and its service processes, percent of one core (the simulated
    /// devices, which run on a thread of their own, excluded).
    pub cpu_percent: f64,
    /// CPU of the simulated devices, percent of one core.
    pub sim_cpu_percent: f64,
    /// Resident memory of the platform and its service processes, MB.
    pub rss_mb: f64,
    /// CPU of the external broker (`--mqtt`), percent of one core, included in `cpu_percent`.
    pub external_broker_cpu_percent: Option<f64>,
    /// Raw Mosquitto pub→sub rate (QoS 0, one publisher, one subscriber) in the same run.
    pub mosquitto_raw_msgs_per_s: Option<f64>,
    /// The ratios the platform is judged by (issue 23), from this run's figures.
    pub ratios: E2eRatios,
    /// CPU model, cores, load average at the start and the end.
    pub machine: Machine,
}

/// The ratios `ktwin bench e2e` is judged by, each from figures of the same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct E2eRatios {
    /// Platform CPU ÷ simulator CPU (the work of relaying and storing a message against the
    /// work of producing it).
    pub platform_cpu_per_sim_cpu: Option<f64>,
    /// Device messages/s ÷ raw Mosquitto pub→sub messages/s.
    pub device_rate_per_mosquitto_raw: Option<f64>,
}

impl E2eRatios {
    fn new(cpu: f64, sim_cpu: f64, device_rate: f64, raw: Option<f64>) -> Self {
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        Self {
            platform_cpu_per_sim_cpu: ratio(cpu, sim_cpu),
            device_rate_per_mosquitto_raw: raw.and_then(|raw| ratio(device_rate, raw)),
        }
    }
}

/// Runs `ktwin bench e2e` with the SDK `handlers` built into the calling binary.
pub async fn run(args: BenchE2eArgs, handlers: Handlers) -> anyhow::Result<ExitCode> {
    let report = e2e(&args, handlers).await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => print_text(&report),
    }
    Ok(if report.tally.lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_text(report: &E2eReport) {
    let t = &report.tally;
    let ratio = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}"));
    println!("neighborhoods            {}", report.neighborhoods);
    println!("device messages/s        {:.1}", report.device_msgs_per_s);
    println!("events/s                 {:.1}", report.events_per_s);
    println!(
        "latency p50 / p99 / max  {:.1} ms / {:.1} ms / {:.1} ms ({} events published in the window, stored whenever)",
        t.p50_ms, t.p99_ms, t.max_ms, t.samples
    );
    println!(
        "sent / stored / dup / lost {} / {} / {} / {} (stored = distinct ids; drained in {:.1} s, deadline {} s)",
        t.sent, t.stored, t.duplicates, t.lost, report.drained_in_s, report.drain_deadline_s
    );
    println!("CPU (one core = 100%)    {:.1}%", report.cpu_percent);
    println!("simulator CPU            {:.1}%", report.sim_cpu_percent);
    println!("RSS                      {:.1} MB", report.rss_mb);
    println!("traces recorded          {}", report.trace_sample);
    if let Some(cpu) = report.external_broker_cpu_percent {
        println!("external broker CPU      {cpu:.1}% (included above)");
    }
    match report.mosquitto_raw_msgs_per_s {
        Some(rate) => println!("raw Mosquitto pub→sub    {rate:.0} msg/s"),
        None => println!("raw Mosquitto pub→sub    (unreachable)"),
    }
    println!(
        "ratios                   platform CPU ÷ simulator CPU {}; device msgs/s ÷ raw Mosquitto {}",
        ratio(report.ratios.platform_cpu_per_sim_cpu),
        ratio(report.ratios.device_rate_per_mosquitto_raw)
    );
    println!("machine                  {}", report.machine.describe());
}

/// The model time at which the busiest window of `profile` starts: the one with the highest
/// total rate over `world`'s devices.
fn peak_window_start(profile: &LoadProfile, world: &SimWorld) -> f64 {
    let counts = world.count_by_type();
    let rate = |window: &ktwin_sim::Window| -> f64 {
        DeviceType::ALL
            .iter()
            .zip(window.periods)
            .filter(|(_, period)| *period > 0.0)
            .map(|(ty, period)| counts.get(ty).copied().unwrap_or(0) as f64 / period)
            .sum()
    };
    let mut start = 0.0;
    let mut best = (f64::MIN, 0.0);
    for window in &profile.windows {
        let r = rate(window);
        if r > best.0 {
            best = (r, start);
        }
        start += window.duration;
    }
    best.1
}

/// The platform under test, with its store in a temporary directory (removed on drop) and the
/// interfaces whose device events it stores.
struct PlatformUnderTest {
    platform: Platform,
    persisted: Vec<String>,
    _store_dir: tempfile::TempDir,
}

async fn start_platform(
    args: &BenchE2eArgs,
    handlers: Handlers,
    probe: Arc<StoreProbe>,
) -> anyhow::Result<PlatformUnderTest> {
    let parameters = BTreeMap::from([("neighborhoods".to_owned(), args.neighborhoods)]);
    let planned = PlannedProject::load(&args.project_dir, &parameters)?;
    let dir = tempfile::tempdir().context("temporary store directory")?;
    let mut options = UpOptions::new(dir.path());
    options.http_port = 0;
    options.mqtt = match &args.mqtt {
        Some(url) => {
            MqttChoice::External(MqttAddress::parse(url).with_context(|| format!("--mqtt {url}"))?)
        }
        None => MqttChoice::Embedded { port: 0 },
    };
    options.store = BackendChoice::Embedded(dir.path().join("store"));
    options.replica_cap = args.max_replicas;
    options.handlers = handlers;
    options.processes = args.processes;
    options.console = Console::plain();
    options.store_probe = Some(probe);
    options.trace_sampler = args.trace.sampler;
    let persisted: Vec<String> = planned
        .project
        .services
        .iter()
        .filter(|(_, s)| s.persist_real_event == Some(true))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(PlatformUnderTest {
        platform: Platform::start(planned, options).await?,
        persisted,
        _store_dir: dir,
    })
}

/// The simulated devices: the busiest window of the paper's profile, QoS 1, for the warm-up
/// and the measured window.
fn sim_config(platform: &Platform, world: &SimWorld, args: &BenchE2eArgs) -> SimConfig {
    let profile = LoadProfile::paper();
    let start_at = peak_window_start(&profile, world);
    let mut sim = SimConfig::new(&platform.mqtt.host, platform.mqtt.port);
    sim.credentials = platform.simulator_login();
    sim.qos = QoS::AtLeastOnce;
    sim.pace = Pace::Profile {
        start_at,
        profile,
        speedup: args.speedup,
    };
    sim.duration = Some(Duration::from_secs(args.warmup + args.duration));
    sim
}

/// Measures the platform under the load `args` describe with the SDK `handlers` built into
/// the calling binary.
pub async fn e2e(args: &BenchE2eArgs, handlers: Handlers) -> anyhow::Result<E2eReport> {
    let mut usage = Usage::new(args.broker_pid)?;
    let mut machine = Machine::start();
    let probe = Arc::new(StoreProbe::default());
    let PlatformUnderTest {
        platform,
        persisted,
        _store_dir,
    } = start_platform(args, handlers, probe.clone()).await?;
    let world = SimWorld::from_graph_json(&platform.planned.graph_json(), "world")?;
    let sim = sim_config(&platform, &world, args);
    let (sim_thread, sim_tid) = spawn_sim_thread(world, sim)?;

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    probe.open_window();
    let (start_cpu, _) = usage.sample();
    let start_broker_cpu = usage.external_cpu_ms();
    let start_sim_cpu = usage.thread_cpu_ms(sim_tid);
    let started = Instant::now();
    let start_stats = platform.stats();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    probe.close_window();
    let wall = started.elapsed().as_secs_f64();
    let end_stats = platform.stats();
    let (end_cpu, end_rss) = usage.sample();
    let end_sim_cpu = usage.thread_cpu_ms(sim_tid);
    let broker_cpu_ms = usage.external_cpu_ms().saturating_sub(start_broker_cpu);

    let report = tokio::task::spawn_blocking(move || sim_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the simulator thread panicked"))??;
    let sim_cpu_ms = end_sim_cpu.saturating_sub(start_sim_cpu);
    let platform_cpu_ms = end_cpu.saturating_sub(start_cpu).saturating_sub(sim_cpu_ms);
    let sent: u64 = DeviceType::ALL
        .iter()
        .filter(|t| persisted.iter().any(|p| p == t.interface()))
        .map(|t| report.per_type.get(t.name()).map_or(0, |r| r.sent))
        .sum();
    let drained_in_s = drain(&probe, sent, Duration::from_secs(args.drain_deadline)).await;
    let tally = probe.summary(sent);
    platform.shutdown(Duration::from_secs(10)).await;

    let mosquitto_raw_msgs_per_s = match MqttAddress::parse(&args.mosquitto) {
        Ok(address) => raw_pub_sub_rate(&address, 50_000).await.ok(),
        Err(_) => None,
    };
    machine.finish();
    let device_msgs_per_s = (end_stats.ingested - start_stats.ingested) as f64 / wall;
    let cpu_percent = platform_cpu_ms as f64 / (wall * 1000.0) * 100.0;
    let sim_cpu_percent = sim_cpu_ms as f64 / (wall * 1000.0) * 100.0;
    let external_broker_cpu_percent = args
        .broker_pid
        .map(|_| broker_cpu_ms as f64 / (wall * 1000.0) * 100.0);
    Ok(E2eReport {
        neighborhoods: args.neighborhoods,
        device_msgs_per_s,
        events_per_s: (end_stats.published - start_stats.published) as f64 / wall,
        tally,
        trace_sample: args.trace.sampler.recorded_share(),
        drain_deadline_s: args.drain_deadline,
        drained_in_s,
        cpu_percent,
        sim_cpu_percent,
        rss_mb: end_rss as f64 / 1e6,
        external_broker_cpu_percent,
        mosquitto_raw_msgs_per_s,
        ratios: E2eRatios::new(
            cpu_percent,
            sim_cpu_percent,
            device_msgs_per_s,
            mosquitto_raw_msgs_per_s,
        ),
        machine,
    })
}

/// Waits until `sent` distinct device events are stored or `deadline` passed; the seconds it
/// waited.
async fn drain(probe: &StoreProbe, sent: u64, deadline: Duration) -> f64 {
    let started = Instant::now();
    while probe.distinct() < sent && started.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed().as_secs_f64()
}

/// The simulated devices' thread, which returns their report.
type SimThread = std::thread::JoinHandle<anyhow::Result<ktwin_sim::SimReport>>;

/// Starts the simulated devices on a thread of their own (with a single-threaded runtime), so
/// that their CPU time can be told apart from the platform's; returns the thread and its Linux
/// thread id.
fn spawn_sim_thread(
    world: SimWorld,
    config: SimConfig,
) -> anyhow::Result<(SimThread, Option<u32>)> {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("ktwin-bench-sim".into())
        .spawn(move || {
            let _ = tid_tx.send(current_thread_id());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("simulator runtime")?;
            let report = runtime.block_on(ktwin_sim::run(
                &world,
                &config,
                CancellationToken::new(),
                |_, _, _| {},
            ))?;
            Ok(report)
        })
        .context("starting the simulator thread")?;
    let tid = tid_rx.recv().ok().flatten();
    Ok((thread, tid))
}

/// The calling thread's Linux thread id (`/proc/thread-self` → `<pid>/task/<tid>`).
fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU time and memory of this process and its descendants (the service processes).
struct Usage {
    system: sysinfo::System,
    /// A process outside the family counted with it (`--broker-pid`).
    external: Option<sysinfo::Pid>,
}

impl Usage {
    fn new(external: Option<u32>) -> anyhow::Result<Self> {
        let mut usage = Self {
            system: sysinfo::System::new()
                .unwrap_or_else(|_| sysinfo::System::new_all().expect("process table")),
            external: external.map(sysinfo::Pid::from_u32),
        };
        usage.sample();
        if let Some(pid) = usage.external {
            anyhow::ensure!(
                usage.system.process(pid).is_some(),
                "--broker-pid {pid}: no such process"
            );
        }
        Ok(usage)
    }

    /// This process and its descendant processes. Threads are left out: sysinfo lists them as
    /// children of their process, each with the whole process's memory, and the process's CPU
    /// time already includes theirs.
    fn family(&mut self) -> Vec<sysinfo::Pid> {
        self.system
            .refresh_processes(sysinfo::ProcessesToUpdate::All, true);
        let root = sysinfo::Pid::from_u32(std::process::id());
        let mut family = vec![root];
        let mut grew = true;
        while grew {
            grew = false;
            for (pid, process) in self.system.processes() {
                if !family.contains(pid)
                    && process.thread_kind().is_none()
                    && process.parent().is_some_and(|p| family.contains(&p))
                {
                    family.push(*pid);
                    grew = true;
                }
            }
        }
        family
    }

    /// CPU time (ms) and resident memory (bytes) of the family, from one scan of the process
    /// table.
    fn sample(&mut self) -> (u64, u64) {
        let mut family = self.family();
        family.extend(self.external.filter(|pid| !family.contains(pid)));
        family
            .iter()
            .filter_map(|pid| self.system.process(*pid))
            .fold((0, 0), |(cpu, rss), process| {
                (cpu + process.accumulated_cpu_time(), rss + process.memory())
            })
    }

    /// CPU time (ms) of the external process as of the last [`Usage::sample`]; 0 without one.
    fn external_cpu_ms(&self) -> u64 {
        self.external
            .and_then(|pid| self.system.process(pid))
            .map_or(0, sysinfo::Process::accumulated_cpu_time)
    }

    /// CPU time (ms) of thread `tid` of this process as of the last [`Usage::sample`] (sysinfo
    /// lists a process's threads too); 0 where unknown.
    fn thread_cpu_ms(&self, tid: Option<u32>) -> u64 {
        tid.and_then(|tid| self.system.process(sysinfo::Pid::from_u32(tid)))
            .map_or(0, sysinfo::Process::accumulated_cpu_time)
    }
}

/// Messages per second from one QoS 0 publisher to one subscriber through the broker at
/// `address` (the reference the platform's own rates are compared with).
pub async fn raw_pub_sub_rate(address: &MqttAddress, messages: u64) -> anyhow::Result<f64> {
    let suffix = std::process::id();
    let topic = format!("ktwin-bench/raw/{suffix}");
    let (subscriber, mut sub_loop) = AsyncClient::new(
        MqttOptions::new(
            format!("ktwin-bench-sub-{suffix}"),
            &address.host,
            address.port,
        ),
        1000,
    );
    subscriber.subscribe(&topic, QoS::AtMostOnce).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), sub_loop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => anyhow::bail!("Mosquitto at {}: {err}", address.url()),
            Err(_) => anyhow::bail!("Mosquitto at {}: no answer", address.url()),
        }
    }
    let (publisher, mut pub_loop) = AsyncClient::new(
        MqttOptions::new(
            format!("ktwin-bench-pub-{suffix}"),
            &address.host,
            address.port,
        ),
        1000,
    );
    let pump = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let started = Instant::now();
    let payload =
        br#"{"CODensity":0.4,"PM10Density":21.0,"timestamp":"2024-05-20T10:00:00Z"}"#.to_vec();
    let producer = tokio::spawn(async move {
        for _ in 0..messages {
            publisher
                .publish(topic.clone(), QoS::AtMostOnce, false, payload.clone())
                .await?;
        }
        anyhow::Ok(publisher)
    });
    let mut received = 0u64;
    while received < messages {
        match tokio::time::timeout(Duration::from_secs(2), sub_loop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => received += 1,
            Ok(Ok(_)) => {}
            // QoS 0 may drop under load: the rate counts what arrived.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = producer.await;
    pump.abort();
    #[allow(clippy::cast_precision_loss)]
    Ok(received as f64 / elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_profile_peaks_in_its_third_window() {
        let world = SimWorld::from_graph(&ktwin_sim::paper_city(1, ""));
        assert!((peak_window_start(&LoadProfile::paper(), &world) - 480.0).abs() < f64::EPSILON);
    }

    #[test]
    fn ratios_from_the_same_run() {
        let ratios = E2eRatios::new(15.0, 5.0, 100.0, Some(1000.0));
        assert_eq!(ratios.platform_cpu_per_sim_cpu, Some(3.0));
        assert_eq!(ratios.device_rate_per_mosquitto_raw, Some(0.1));
        let missing = E2eRatios::new(15.0, 0.0, 100.0, None);
        assert_eq!(missing.platform_cpu_per_sim_cpu, None);
        assert_eq!(missing.device_rate_per_mosquitto_raw, None);
    }

    /// A busy process outside this one's family, killed when dropped: `sh` starts it and
    /// exits, so it is reparented away from this process, as a broker started elsewhere is.
    struct Stranger(u32);

    impl Stranger {
        fn spin() -> Self {
            let output = std::process::Command::new("sh")
                .args(["-c", "yes > /dev/null 2>&1 & echo $!"])
                .output()
                .expect("sh runs");
            let pid = String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .expect("sh prints the busy process's id");
            Self(pid)
        }
    }

    impl Drop for Stranger {
        fn drop(&mut self) {
            let _ = std::process::Command::new("sh")
                .args(["-c", &format!("kill {}", self.0)])
                .status();
        }
    }

    #[test]
    fn an_external_process_is_counted() {
        let stranger = Stranger::spin();
        let mut usage = Usage::new(Some(stranger.0)).expect("the process exists");
        let (family_before, _) = usage.sample();
        let before = usage.external_cpu_ms();
        // Until the kernel has charged it a tick, bounded so a broken reading fails.
        let started = Instant::now();
        let mut now = before;
        while now == before && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
            usage.sample();
            now = usage.external_cpu_ms();
        }
        let (family_after, _) = usage.sample();
        assert!(now > before, "the external process's CPU time is read");
        assert!(
            family_after - family_before >= now - before,
            "and counted with the family's"
        );
    }

    #[test]
    fn a_busy_thread_has_cpu_time() {
        let tid = current_thread_id();
        assert!(tid.is_some(), "/proc/thread-self names this thread");
        let mut usage = Usage::new(None).expect("no external process");
        usage.sample();
        let before = usage.thread_cpu_ms(tid);
        // Spin until the kernel has charged this thread a tick (a loaded machine may take a
        // while to schedule it), bounded so a broken reading fails instead of hanging.
        let started = Instant::now();
        let mut spin = 0u64;
        let mut now = before;
        while now == before && started.elapsed() < Duration::from_secs(60) {
            for _ in 0..1_000_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
            usage.sample();
            now = usage.thread_cpu_ms(tid);
        }
        assert!(now > before, "spinning shows as CPU time");
    }
}
