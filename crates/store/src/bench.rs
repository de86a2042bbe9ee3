//! `ktwin bench store`: ingest throughput and latest-state read latency of a backend, with
//! PostgreSQL's raw `COPY` rate of the same rows as the yardstick.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use ktwin_events::EventType;
use ktwin_events::trace::{SpanId, TRACESTATE_KEY, TraceParent};
use serde::Serialize;
use serde_json::{Map, json};

use crate::cli::{BackendArgs, BackendKind};
use crate::{Backend, BackendChoice, IngestConfig, Ingestor, InstanceKey, TwinEvent};
use ktwin_service::machine::Machine;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human readable lines.
    Text,
    /// One JSON object.
    Json,
}

/// Benchmarks the event store on a scratch database.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchStoreArgs {
    /// Where the store keeps its data.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Events to ingest.
    #[arg(long, default_value_t = 500_000)]
    pub events: usize,
    /// Instances they are spread over.
    #[arg(long, default_value_t = 5_000)]
    pub instances: usize,
    /// Events per submission.
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
    /// Events per transaction at most: the ingest task commits queued submissions together up
    /// to this many (group commit).
    #[arg(long, default_value_t = IngestConfig::default().max_batch)]
    pub max_batch: usize,
    /// Latest-state reads to time.
    #[arg(long, default_value_t = 20_000)]
    pub reads: usize,
    /// How event ids are made: random (hash-derived, the realistic case for the id index) or
    /// sequential (the best case).
    #[arg(long, value_enum, default_value_t = IdKind::Random)]
    pub ids: IdKind,
    /// Event times in arrival order: out of order (up to `LATE_BY` late, as devices with
    /// their own clocks and retries deliver them) or monotonic (the best case).
    #[arg(long, value_enum, default_value_t = Arrival::OutOfOrder)]
    pub arrival: Arrival,
    /// Events carry a W3C trace (`traceparent`, and a `tracestate` naming one cause), as every
    /// event on a running platform does; the store keeps it and indexes it by trace id.
    #[arg(long)]
    pub traces: bool,
    /// Directory for the embedded backends' scratch store.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub scratch_dir: std::path::PathBuf,
    /// Measure on tmpfs anyway (where `fdatasync` costs nothing, so the figures flatter).
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// How the synthetic events' ids are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdKind {
    /// UUID-shaped ids from a hash of the sequence number: no order for an index to exploit.
    Random,
    /// Zero-padded sequence numbers: every insert at the end of the id index.
    Sequential,
}

/// The order of the synthetic events' times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrival {
    /// Each event up to [`LATE_BY`] older than its predecessor allows.
    OutOfOrder,
    /// Every event later than the one before.
    Monotonic,
}

/// How late an out-of-order event arrives at most.
pub const LATE_BY: Duration = Duration::from_secs(1);

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Backend measured.
    pub backend: &'static str,
    /// Events ingested.
    pub events: usize,
    /// Instances.
    pub instances: usize,
    /// How ids were made.
    pub ids: IdKind,
    /// Order of the event times.
    pub arrival: Arrival,
    /// Whether the events carried a trace.
    pub traces: bool,
    /// Filesystem of the scratch directory (embedded backends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
    /// Ingest throughput through the [`Ingestor`] (group commit), events per second.
    pub events_per_s: f64,
    /// Raw `COPY` of the same rows into a table shaped like the history (PostgreSQL only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_events_per_s: Option<f64>,
    /// Bare redb inserts of the same history and idempotency entries, in transactions of the
    /// same size (redb only): the raw write ceiling of that layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redb_insert_events_per_s: Option<f64>,
    /// Median latest-state read latency in process, microseconds.
    pub latest_p50_us: f64,
    /// 99th percentile latest-state read latency in process, microseconds.
    pub latest_p99_us: f64,
    /// The ratio the store is judged by: ingest ÷ raw `COPY` of the same rows in the same run
    /// (PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_per_copy: Option<f64>,
    /// CPU model, cores, load average at the start and the end.
    pub machine: Machine,
}

/// Deterministic synthetic events: `events` over `instances`, a few fields each, some nested,
/// with ids and times as `ids` and `arrival` say, each in a trace of its own if `traces`.
pub fn synthetic_events(
    events: usize,
    instances: usize,
    ids: IdKind,
    arrival: Arrival,
    traces: bool,
) -> Vec<TwinEvent> {
    let event_type = EventType::store("bench-sensor").expect("valid interface");
    let start: DateTime<Utc> = DateTime::from_timestamp(1_700_000_000, 0).expect("valid time");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let late_by_us = LATE_BY.as_micros() as u64;
    (0..events)
        .map(|n| {
            let instance = format!("sensor-{:06}", n % instances.max(1));
            let mut data = Map::new();
            data.insert("temperature".into(), json!((next() % 400) as f64 / 10.0));
            data.insert("seq".into(), json!(n));
            if next() % 3 == 0 {
                data.insert(
                    "status".into(),
                    json!({"battery": next() % 100, "ok": true}),
                );
            }
            let id = match ids {
                IdKind::Sequential => format!("{n:012}"),
                IdKind::Random => uuid::Uuid::from_u64_pair(next(), next()).to_string(),
            };
            let late = match arrival {
                Arrival::Monotonic => 0,
                Arrival::OutOfOrder => next() % late_by_us,
            };
            let time = start + Duration::from_micros(n as u64 * 10 + late_by_us)
                - Duration::from_micros(late);
            let mut event = TwinEvent::new(&event_type, &instance, id, time, data);
            if traces {
                trace_as_a_child(&mut event);
            }
            event
        })
        .collect()
}

/// Gives `event` the trace attributes of an event a service emitted: a trace named by its id,
/// a span of its own, and one cause.
fn trace_as_a_child(event: &mut TwinEvent) {
    let root = TraceParent::root(&event.id);
    let cause = SpanId::derived(&format!("{}/cause", event.id));
    event.traceparent = Some(root.to_string());
    event.tracestate = Some(format!("{TRACESTATE_KEY}={cause}"));
}

/// The filesystem type mounted at the longest mount point containing `path`, from the text
/// of `/proc/mounts` (`device mountpoint type options …` per line; spaces escaped as `\040`).
pub fn filesystem_of(mounts: &str, path: &std::path::Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            let point = point.replace("\\040", " ");
            path.starts_with(&point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

/// The filesystem of the scratch directory; refuses tmpfs (where `fdatasync` is free) unless
/// allowed.
fn scratch_filesystem(args: &BenchStoreArgs) -> anyhow::Result<Option<String>> {
    let dir = std::fs::canonicalize(&args.scratch_dir)
        .with_context(|| format!("scratch directory {}", args.scratch_dir.display()))?;
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let filesystem = filesystem_of(&mounts, &dir);
    refuse_tmpfs(filesystem.as_deref(), args.allow_tmpfs, &dir)?;
    Ok(filesystem)
}

fn refuse_tmpfs(
    filesystem: Option<&str>,
    allowed: bool,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        allowed || !matches!(filesystem, Some("tmpfs" | "ramfs")),
        "the scratch directory {} is on {}, where fdatasync costs nothing and the figures \
         flatter: pass --scratch-dir on a disk, or --allow-tmpfs to measure anyway",
        dir.display(),
        filesystem.unwrap_or_default()
    );
    Ok(())
}

async fn ingest_all(
    backend: Arc<dyn Backend>,
    events: Vec<TwinEvent>,
    batch: usize,
    max_batch: usize,
) -> anyhow::Result<f64> {
    let total = events.len();
    let (ingestor, task) = Ingestor::spawn(
        backend,
        IngestConfig {
            max_batch,
            queue: 64,
            ..IngestConfig::default()
        },
    );
    let started = Instant::now();
    let mut chunks: Vec<Vec<TwinEvent>> = Vec::new();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        chunks.push(events.by_ref().take(batch.max(1)).collect());
    }
    // Several producers keep the ingest queue non-empty, as concurrent requests would.
    let mut producers = tokio::task::JoinSet::new();
    let per_producer = chunks.len().div_ceil(4).max(1);
    while !chunks.is_empty() {
        let mine: Vec<_> = chunks.drain(..per_producer.min(chunks.len())).collect();
        let ingestor = ingestor.clone();
        producers.spawn(async move {
            for chunk in mine {
                ingestor.submit(chunk).await?;
            }
            Ok::<_, crate::StoreError>(())
        });
    }
    while let Some(result) = producers.join_next().await {
        result.context("producer task")??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(ingestor);
    task.await.context("ingest task")?;
    Ok(total as f64 / elapsed)
}

#[cfg(feature = "postgres")]
/// Binary `COPY` of the same rows into a table shaped like the history, with the same indexes
/// (instance keys numbered as `twin_latest` would number them).
async fn copy_rate(url: &str, events: &[TwinEvent]) -> anyhow::Result<f64> {
    use std::collections::HashMap;
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{Json, Type};

    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE copy_probe (LIKE twin_event INCLUDING ALL)")
        .await?;
    let mut instance_keys: HashMap<&str, i64> = HashMap::new();
    let started = Instant::now();
    let sink = client
        .copy_in("COPY copy_probe (instance_key, id, type, time, data) FROM STDIN (FORMAT binary)")
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::JSONB,
        ],
    );
    futures::pin_mut!(writer);
    for e in events {
        let next = instance_keys.len() as i64 + 1;
        let instance_key = *instance_keys.entry(&e.instance_id).or_insert(next);
        writer
            .as_mut()
            .write(&[
                &instance_key,
                &e.id,
                &e.event_type,
                &e.time,
                &Json(&e.event_data),
            ])
            .await?;
    }
    writer.as_mut().finish().await?;
    let elapsed = started.elapsed().as_secs_f64();
    client.batch_execute("DROP TABLE copy_probe").await?;
    Ok(events.len() as f64 / elapsed)
}

async fn read_latencies(
    backend: &dyn Backend,
    instances: usize,
    reads: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut micros = Vec::with_capacity(reads);
    let mut seed = 12345_u64;
    for _ in 0..reads {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = InstanceKey::new(
            "bench-sensor",
            format!("sensor-{:06}", (seed >> 33) as usize % instances.max(1)),
        );
        let started = Instant::now();
        let found = backend.latest(&key).await?;
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            found.is_some(),
            "latest state of {key:?} missing after ingest"
        );
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 - 1.0) * q).round() as usize];
    Ok((at(0.50), at(0.99)))
}

/// Ingest rate, then latest-read p50 and p99 of `backend`.
async fn measure(
    backend: Arc<dyn Backend>,
    events: Vec<TwinEvent>,
    args: &BenchStoreArgs,
) -> anyhow::Result<(f64, f64, f64)> {
    let rate = ingest_all(backend.clone(), events, args.batch, args.max_batch).await?;
    let (p50, p99) = read_latencies(backend.as_ref(), args.instances, args.reads).await?;
    Ok((rate, p50, p99))
}

/// The raw write rate of the same rows measured beside the ingest.
enum Ceiling {
    /// PostgreSQL binary `COPY` into a table shaped like the history.
    Copy(f64),
    /// Bare redb inserts of the history and idempotency entries.
    RedbInsert(f64),
}

/// What one backend's run measured: ingest rate, the ceiling beside it, latest-read p50, p99.
type Measured = (f64, Option<Ceiling>, f64, f64);

#[cfg(feature = "postgres")]
async fn bench_postgres(
    args: &BenchStoreArgs,
    events: Vec<TwinEvent>,
    scratch: &str,
) -> anyhow::Result<Measured> {
    use crate::backend::postgres::{create_database, drop_database};
    let admin = &args.backend.database_url;
    let url = create_database(admin, scratch).await?;
    let result = async {
        let backend = BackendChoice::Postgres(url.clone()).open().await?;
        let copy = copy_rate(&url, &events).await?;
        let (rate, p50, p99) = measure(backend, events, args).await?;
        Ok::<_, anyhow::Error>((rate, Some(Ceiling::Copy(copy)), p50, p99))
    }
    .await;
    drop_database(admin, scratch).await?;
    result
}

#[cfg(not(feature = "postgres"))]
async fn bench_postgres(
    _: &BenchStoreArgs,
    _: Vec<TwinEvent>,
    _: &str,
) -> anyhow::Result<Measured> {
    Err(crate::StoreError::Unsupported {
        backend: "postgres",
    }
    .into())
}

async fn bench_embedded(
    args: &BenchStoreArgs,
    events: Vec<TwinEvent>,
    scratch: &str,
) -> anyhow::Result<Measured> {
    let path = args.scratch_dir.join(scratch);
    let result = async {
        let backend = BackendChoice::Embedded(path.clone()).open().await?;
        let (rate, p50, p99) = measure(backend, events, args).await?;
        Ok::<_, anyhow::Error>((rate, None, p50, p99))
    }
    .await;
    let _ = std::fs::remove_dir_all(&path);
    result
}

#[cfg(feature = "redb")]
async fn bench_redb(
    args: &BenchStoreArgs,
    events: Vec<TwinEvent>,
    scratch: &str,
) -> anyhow::Result<Measured> {
    use crate::backend::redb::bare_insert_rate;
    let path = args.scratch_dir.join(format!("{scratch}.redb"));
    let bare_path = args.scratch_dir.join(format!("{scratch}-bare.redb"));
    let result = async {
        let (events, bare) = tokio::task::spawn_blocking({
            let (bare_path, batch) = (bare_path.clone(), args.max_batch);
            move || {
                let rate = bare_insert_rate(&bare_path, &events, batch);
                (events, rate)
            }
        })
        .await?;
        // A failed ceiling run fails the benchmark before the long ingest, not after.
        let bare = bare?;
        let backend = BackendChoice::Redb(path.clone()).open().await?;
        let (rate, p50, p99) = measure(backend, events, args).await?;
        Ok::<_, anyhow::Error>((rate, Some(Ceiling::RedbInsert(bare)), p50, p99))
    }
    .await;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&bare_path);
    result
}

#[cfg(not(feature = "redb"))]
async fn bench_redb(_: &BenchStoreArgs, _: Vec<TwinEvent>, _: &str) -> anyhow::Result<Measured> {
    Err(crate::StoreError::Unsupported { backend: "redb" }.into())
}

/// Runs the benchmark on a scratch database (dropped afterwards).
pub async fn run_bench(args: BenchStoreArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.events > 0 && args.instances > 0 && args.reads > 0,
        "--events, --instances and --reads must be positive"
    );
    let mut machine = Machine::start();
    let filesystem = match args.backend.backend {
        BackendKind::Postgres => None,
        BackendKind::Embedded | BackendKind::Redb => scratch_filesystem(&args)?,
    };
    let events = synthetic_events(
        args.events,
        args.instances,
        args.ids,
        args.arrival,
        args.traces,
    );
    let scratch = format!("ktwin_bench_{}", uuid::Uuid::new_v4().simple());
    eprintln!(
        "ingesting {} events over {} instances into {:?}…",
        args.events, args.instances, args.backend.backend
    );
    let measured = match args.backend.backend {
        BackendKind::Postgres => bench_postgres(&args, events, &scratch).await?,
        BackendKind::Embedded => bench_embedded(&args, events, &scratch).await?,
        BackendKind::Redb => bench_redb(&args, events, &scratch).await?,
    };
    machine.finish();
    let report = BenchReport::new(&args, measured, filesystem, machine);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => report.print(),
    }
    Ok(ExitCode::SUCCESS)
}

impl BenchReport {
    fn new(
        args: &BenchStoreArgs,
        measured: Measured,
        filesystem: Option<String>,
        machine: Machine,
    ) -> Self {
        let (events_per_s, ceiling, latest_p50_us, latest_p99_us) = measured;
        let ingest_per_copy = match ceiling {
            Some(Ceiling::Copy(copy)) if copy > 0.0 => {
                Some((events_per_s / copy * 100.0).round() / 100.0)
            }
            _ => None,
        };
        BenchReport {
            backend: match args.backend.backend {
                BackendKind::Postgres => "postgres",
                BackendKind::Embedded => "embedded",
                BackendKind::Redb => "redb",
            },
            events: args.events,
            instances: args.instances,
            ids: args.ids,
            arrival: args.arrival,
            traces: args.traces,
            filesystem,
            events_per_s: events_per_s.round(),
            copy_events_per_s: match ceiling {
                Some(Ceiling::Copy(rate)) => Some(rate.round()),
                _ => None,
            },
            redb_insert_events_per_s: match ceiling {
                Some(Ceiling::RedbInsert(rate)) => Some(rate.round()),
                _ => None,
            },
            latest_p50_us: (latest_p50_us * 10.0).round() / 10.0,
            latest_p99_us: (latest_p99_us * 10.0).round() / 10.0,
            ingest_per_copy,
            machine,
        }
    }

    fn print(&self) {
        println!("backend            {}", self.backend);
        println!(
            "events             {} over {} instances",
            self.events, self.instances
        );
        println!("ingest             {} events/s", self.events_per_s);
        if let Some(copy) = self.copy_events_per_s {
            println!("raw COPY           {copy} events/s");
        }
        if let Some(bare) = self.redb_insert_events_per_s {
            println!("bare redb inserts  {bare} events/s");
        }
        println!("latest read p50    {} µs", self.latest_p50_us);
        println!("latest read p99    {} µs", self.latest_p99_us);
        println!(
            "ids / arrival      {:?} / {:?}{}",
            self.ids,
            self.arrival,
            if self.traces { ", traced" } else { "" }
        );
        if let Some(filesystem) = &self.filesystem {
            println!("scratch filesystem {filesystem}");
        }
        if let Some(ratio) = self.ingest_per_copy {
            println!("ratio              ingest ÷ COPY {ratio:.2}");
        }
        println!("machine            {}", self.machine.describe());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::Path;

    #[test]
    fn traced_events_carry_a_valid_trace_named_by_their_id() {
        let events = synthetic_events(100, 10, IdKind::Random, Arrival::Monotonic, true);
        for event in &events {
            let trace_id = event.trace_id().expect("a valid traceparent");
            assert_eq!(
                trace_id,
                ktwin_events::trace::TraceId::of_event_id(&event.id)
            );
            assert!(event.tracestate.as_deref().unwrap().starts_with("ktwin="));
        }
        let untraced = synthetic_events(10, 10, IdKind::Random, Arrival::Monotonic, false);
        assert!(untraced.iter().all(|e| e.traceparent.is_none()));
    }

    #[test]
    fn random_ids_are_distinct_and_unordered() {
        let events = synthetic_events(1000, 10, IdKind::Random, Arrival::Monotonic, false);
        let ids: HashSet<_> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(events.windows(2).any(|w| w[0].id > w[1].id), "not sorted");
        let sequential = synthetic_events(1000, 10, IdKind::Sequential, Arrival::Monotonic, false);
        assert!(sequential.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn out_of_order_times_stay_within_the_lateness_bound() {
        let events = synthetic_events(1000, 10, IdKind::Random, Arrival::OutOfOrder, false);
        assert!(
            events.windows(2).any(|w| w[0].time > w[1].time),
            "some arrive late"
        );
        let latest = events.iter().map(|e| e.time).max().expect("events");
        let monotonic = synthetic_events(1000, 10, IdKind::Random, Arrival::Monotonic, false);
        assert!(monotonic.windows(2).all(|w| w[0].time < w[1].time));
        for (late, on_time) in events.iter().zip(&monotonic) {
            assert!(late.time <= on_time.time);
            assert!(on_time.time - late.time < chrono::Duration::from_std(LATE_BY).expect("small"));
        }
        assert!(latest <= monotonic.last().expect("events").time);
    }

    const MOUNTS: &str = "/dev/root / ext4 rw,relatime 0 0\n\
        tmpfs /tmp tmpfs rw,nosuid 0 0\n\
        /dev/sdb1 /tmp/disk xfs rw 0 0\n\
        /dev/sdc1 /mnt/my\\040disk btrfs rw 0 0\n";

    #[test]
    fn the_filesystem_of_the_longest_mount_point() {
        assert_eq!(
            filesystem_of(MOUNTS, Path::new("/work/x")).as_deref(),
            Some("ext4")
        );
        assert_eq!(
            filesystem_of(MOUNTS, Path::new("/tmp/x")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(
            filesystem_of(MOUNTS, Path::new("/tmp/disk/x")).as_deref(),
            Some("xfs")
        );
        assert_eq!(
            filesystem_of(MOUNTS, Path::new("/tmpfoo")).as_deref(),
            Some("ext4")
        );
        assert_eq!(
            filesystem_of(MOUNTS, Path::new("/mnt/my disk/a")).as_deref(),
            Some("btrfs")
        );
        assert_eq!(filesystem_of("", Path::new("/x")), None);
    }

    #[test]
    fn tmpfs_is_refused_unless_allowed() {
        let dir = Path::new("/tmp");
        let refused = refuse_tmpfs(Some("tmpfs"), false, dir).expect_err("tmpfs refused");
        assert!(refused.to_string().contains("--allow-tmpfs"), "{refused}");
        assert!(refuse_tmpfs(Some("tmpfs"), true, dir).is_ok());
        assert!(refuse_tmpfs(Some("ext4"), false, dir).is_ok());
        assert!(refuse_tmpfs(None, false, dir).is_ok());
    }
}
