//! `ktwin bench store`: ingest throughput and latest-state read latency of a backend, with
//! PostgreSQL's raw `COPY` rate of the same rows as the yardstick.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use ktwin_events::EventType;
use serde::Serialize;
use serde_json::{Map, json};

use crate::cli::{BackendArgs, BackendKind};
use crate::{Backend, BackendChoice, IngestConfig, Ingestor, InstanceKey, TwinEvent};

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
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Backend measured.
    pub backend: &'static str,
    /// Events ingested.
    pub events: usize,
    /// Instances.
    pub instances: usize,
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
}

/// Deterministic synthetic events: `events` over `instances`, a few fields each, some nested.
pub fn synthetic_events(events: usize, instances: usize) -> Vec<TwinEvent> {
    let event_type = EventType::store("bench-sensor").expect("valid interface");
    let start: DateTime<Utc> = DateTime::from_timestamp(1_700_000_000, 0).expect("valid time");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
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
            TwinEvent::new(
                &event_type,
                &instance,
                format!("{n:012}"),
                start + Duration::from_micros(n as u64 * 10),
                data,
            )
        })
        .collect()
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
    let path = std::env::temp_dir().join(scratch);
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
    let path = std::env::temp_dir().join(format!("{scratch}.redb"));
    let bare_path = std::env::temp_dir().join(format!("{scratch}-bare.redb"));
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
    let events = synthetic_events(args.events, args.instances);
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
    let report = BenchReport::new(&args, measured);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => report.print(),
    }
    Ok(ExitCode::SUCCESS)
}

impl BenchReport {
    fn new(args: &BenchStoreArgs, measured: Measured) -> Self {
        let (events_per_s, ceiling, latest_p50_us, latest_p99_us) = measured;
        BenchReport {
            backend: match args.backend.backend {
                BackendKind::Postgres => "postgres",
                BackendKind::Embedded => "embedded",
                BackendKind::Redb => "redb",
            },
            events: args.events,
            instances: args.instances,
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
    }
}
