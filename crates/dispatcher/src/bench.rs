//! `ktwin bench dispatch`: MQTT → CloudEvent throughput into the in-memory bus and into
//! RabbitMQ (with confirms), from Mosquitto and on the cluster's path (RabbitMQ's MQTT plugin
//! and its device queue), beside the raw Mosquitto pub→sub rate and a raw AMQP publish loop
//! measured in the same run with the same settings, so the ratios show what the dispatcher
//! costs. Also the MQTT publisher the integration tests use.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use futures::StreamExt;
use ktwin_broker::{
    Broker, MemoryBroker, MemoryBrokerConfig, QueueType, RabbitBroker, RabbitConfig, Subscription,
    SubscriptionSpec, TypeFilter, event_to_amqp,
};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use crate::cli::MqttBrokerArgs;
use crate::ingress::{IngressPolicy, TopicSyntax, validate};
use crate::metrics::DispatchMetrics;
use crate::{
    AmqpQueueSource, AmqpSourceConfig, IngressDispatcher, MemoryDeadLetters, MqttSource,
    MqttSourceConfig,
};
use ktwin_events::{TopicKind, defaults, env};
use ktwin_service::machine::Machine;

/// Output format of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Text,
    /// One JSON object.
    Json,
}

/// `ktwin bench dispatch`.
#[derive(Debug, Args)]
pub struct BenchDispatchArgs {
    /// Messages per measurement.
    #[arg(long, default_value_t = 50_000)]
    pub messages: u64,
    /// Concurrent MQTT publisher connections of the load generator (QoS 1, batched writes).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Unacknowledged QoS 1 messages per publisher connection.
    #[arg(long, default_value_t = 1000)]
    pub publish_window: usize,
    /// MQTT connections sharing the dispatcher's subscription (and the raw subscriber's).
    #[arg(long, default_value_t = MqttSourceConfig::new("", 0, "").connections)]
    pub mqtt_connections: usize,
    /// The MQTT broker (Mosquitto).
    #[command(flatten)]
    pub mqtt: MqttBrokerArgs,
    /// AMQP URI of RabbitMQ.
    #[arg(long, env = env::AMQP_URL, default_value = defaults::AMQP_URL)]
    pub amqp_url: String,
    /// Host of RabbitMQ's MQTT plugin, where devices publish in the cluster.
    #[arg(long, default_value = defaults::MQTT_HOST)]
    pub rabbitmq_mqtt_host: String,
    /// Port of RabbitMQ's MQTT plugin (`scripts/services.sh` enables it on 1884).
    #[arg(long, default_value_t = 1884)]
    pub rabbitmq_mqtt_port: u16,
    /// Unconfirmed events in flight: the dispatcher's pipelining depth, and the raw AMQP
    /// loop's window.
    #[arg(long, default_value_t = 1024)]
    pub in_flight: usize,
    /// Channels publishing to RabbitMQ, for the dispatcher and the raw AMQP loop alike.
    #[arg(long, default_value_t = RabbitConfig::default().publisher_channels)]
    pub amqp_channels: usize,
    /// Type of the RabbitMQ queue the events are routed to.
    #[arg(long, value_enum, default_value_t = BenchQueueType::Quorum)]
    pub queue_type: BenchQueueType,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// [`QueueType`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchQueueType {
    /// Classic durable queue.
    Classic,
    /// Quorum queue (what the ktwin operator declares).
    Quorum,
}

impl From<BenchQueueType> for QueueType {
    fn from(kind: BenchQueueType) -> Self {
        match kind {
            BenchQueueType::Classic => QueueType::Classic,
            BenchQueueType::Quorum => QueueType::Quorum,
        }
    }
}

/// Results in messages per second, each from the first publish to the last message received
/// by a consumer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DispatchBenchResult {
    /// Messages per measurement.
    pub messages: u64,
    /// MQTT (Mosquitto) → dispatcher → in-memory bus (`ktwin up`'s sizing) → consumer.
    pub bus_msgs_per_s: f64,
    /// MQTT (Mosquitto) → dispatcher → RabbitMQ headers exchange, publisher confirms → queue
    /// consumer.
    pub rabbitmq_msgs_per_s: f64,
    /// The cluster's path: MQTT into RabbitMQ's MQTT plugin → the device queue → dispatcher
    /// (AMQP source, as the operator deploys it) → RabbitMQ headers exchange, publisher
    /// confirms → queue consumer.
    pub cluster_msgs_per_s: f64,
    /// Raw Mosquitto: the same QoS 1 load into the same QoS 1 subscription (shared
    /// connections), each message acknowledged on receipt.
    pub mosquitto_raw_msgs_per_s: f64,
    /// Raw AMQP publish loop with confirms, with the dispatcher's topology, messages, channels
    /// and window, the same consumer draining the queue; from the first publish to the last
    /// confirm (so the ratio to it charges the dispatcher's path with the wait for receipt).
    pub amqp_raw_msgs_per_s: f64,
    /// What each dispatcher measurement's consumer received: duplicates and dead letters.
    pub bus_receipt: ReceiptSummary,
    /// The same for RabbitMQ.
    pub rabbitmq_receipt: ReceiptSummary,
    /// The same for the cluster's path.
    pub cluster_receipt: ReceiptSummary,
    /// The ratios the dispatcher is judged by.
    pub ratios: DispatchRatios,
    /// CPU model, cores, load average at the start and the end.
    pub machine: Machine,
}

/// The ratios `ktwin bench dispatch` is judged by, from the same run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DispatchRatios {
    /// In-memory bus ÷ raw Mosquitto pub→sub.
    pub bus_per_mosquitto_raw: f64,
    /// RabbitMQ with confirms ÷ raw AMQP with confirms.
    pub rabbitmq_per_amqp_raw: f64,
    /// The cluster's path ÷ raw AMQP with confirms.
    pub cluster_per_amqp_raw: f64,
}

/// Distinct event ids received, duplicates apart, and dead letters of one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReceiptSummary {
    /// Distinct events the consumer received.
    pub received: u64,
    /// Deliveries of an id already received.
    pub duplicates: u64,
    /// Messages the dispatcher dead-lettered.
    pub dead_letters: u64,
}

/// What a consumer received, counted by event id: a duplicate never stands in for a missing
/// event.
#[derive(Debug, Default)]
pub struct Receipts {
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
    duplicates: AtomicU64,
}

impl Receipts {
    /// One delivery of event `id`.
    pub fn record(&self, id: &str) {
        let first = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned());
        if !first {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Distinct ids received.
    pub fn distinct(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    /// Deliveries of an id already received.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

/// A small device reading of realistic size.
pub fn sample_payload(i: u64) -> Vec<u8> {
    format!(r#"{{"msg_count":{i},"status":"occupied","temperature":21.5,"timestamp":"2024-05-20T10:00:00Z"}}"#)
        .into_bytes()
}

/// Publishes `messages` over MQTT with QoS 1 from one client with a persistent session, and
/// returns once every one was acknowledged by the broker. Survives broker restarts: unacked
/// messages are resent after the reconnect.
pub async fn publish_qos1(
    host: &str,
    port: u16,
    client_id: &str,
    messages: Vec<(String, Vec<u8>)>,
    sent: Option<Arc<AtomicU64>>,
) -> anyhow::Result<()> {
    let total = messages.len() as u64;
    if total == 0 {
        return Ok(());
    }
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(500)
        .set_max_packet_size(8 * 1024 * 1024, 8 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let producer = tokio::spawn(async move {
        for (topic, payload) in messages {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
        }
        anyhow::Ok(client)
    });
    let mut acked = 0u64;
    let mut failures = 0u32;
    while acked < total {
        match tokio::time::timeout(Duration::from_secs(60), eventloop.poll()).await {
            Err(_) => anyhow::bail!("no MQTT progress for 60 s ({acked}/{total} acknowledged)"),
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                acked += 1;
                if let Some(sent) = &sent {
                    sent.store(acked, Ordering::Relaxed);
                }
            }
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => failures = 0,
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                failures += 1;
                anyhow::ensure!(failures < 200, "MQTT publisher gave up: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let client = producer.await??;
    let _ = client.disconnect().await;
    // Let the DISCONNECT go out.
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    Ok(())
}

/// `messages` readings spread over `devices` instances of interface `iface`, MQTT topics.
pub fn device_messages(
    iface: &str,
    devices: u64,
    range: std::ops::Range<u64>,
) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| {
            (
                format!("ktwin/real/{iface}/device-{}", i % devices.max(1)),
                sample_payload(i),
            )
        })
        .collect()
}

/// Largest MQTT packet the load generator reads.
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// Reads from `stream` until a whole MQTT packet is buffered in `incoming`.
async fn next_packet(
    stream: &mut (impl tokio::io::AsyncReadExt + Unpin),
    incoming: &mut bytes::BytesMut,
) -> anyhow::Result<rumqttc::mqttbytes::v4::Packet> {
    loop {
        match rumqttc::mqttbytes::v4::Packet::read(incoming, MAX_PACKET) {
            Ok(packet) => return Ok(packet),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                anyhow::ensure!(
                    stream.read_buf(incoming).await? > 0,
                    "the MQTT broker closed the connection"
                );
            }
            Err(error) => anyhow::bail!("bad packet from the MQTT broker: {error}"),
        }
    }
}

/// The benchmark's load generator for one MQTT connection: QoS 1 PUBLISH packets encoded in
/// batches and written with one system call per batch, at most `window` unacknowledged, until
/// every one is acknowledged. A device-like client such as [`publish_qos1`] (rumqttc) makes one
/// write per message and spends more CPU than Mosquitto does relaying it, so on a small
/// machine it would measure itself rather than the dispatcher. No reconnection: a benchmark
/// run fails instead.
pub async fn publish_qos1_batched(
    host: &str,
    port: u16,
    client_id: &str,
    messages: Vec<(String, Vec<u8>)>,
    window: usize,
) -> anyhow::Result<()> {
    use rumqttc::mqttbytes::v4::{Connect, Disconnect, Packet as Wire, Publish};
    use tokio::io::AsyncWriteExt;

    let window = window.clamp(1, usize::from(u16::MAX));
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connecting to MQTT at {host}:{port}"))?;
    stream.set_nodelay(true)?;
    let mut out = bytes::BytesMut::new();
    let mut connect = Connect::new(client_id);
    connect.keep_alive = 60;
    connect.write(&mut out)?;
    stream.write_all(&out).await?;
    let mut incoming = bytes::BytesMut::with_capacity(64 * 1024);
    match next_packet(&mut stream, &mut incoming).await? {
        Wire::ConnAck(ack) if ack.code == rumqttc::ConnectReturnCode::Success => {}
        other => anyhow::bail!("MQTT broker refused the connection: {other:?}"),
    }
    let total = messages.len();
    let (mut reader, mut writer) = stream.into_split();
    let acked = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut acks = {
        let (acked, progress) = (Arc::clone(&acked), Arc::clone(&progress));
        tokio::spawn(async move {
            let mut count = 0;
            while count < total as u64 {
                if let Wire::PubAck(_) = next_packet(&mut reader, &mut incoming).await? {
                    count += 1;
                    acked.store(count, Ordering::Release);
                    progress.notify_one();
                }
            }
            anyhow::Ok(())
        })
    };
    let mut messages = messages.into_iter().enumerate().peekable();
    while messages.peek().is_some() {
        let in_flight = |sent: usize| sent - acked.load(Ordering::Acquire) as usize;
        let sent = messages.peek().map_or(total, |(i, _)| *i);
        if in_flight(sent) >= window {
            let waiting = progress.notified();
            if in_flight(sent) >= window {
                // The reader's own error (a closed connection, say) is the one to report.
                tokio::select! {
                    () = waiting => {}
                    finished = &mut acks => {
                        finished??;
                        anyhow::bail!("the PUBACK reader stopped before every message was acknowledged");
                    }
                    () = tokio::time::sleep(Duration::from_secs(60)) => {
                        anyhow::bail!("no PUBACK from the MQTT broker for 60 s");
                    }
                }
            }
            continue;
        }
        out.clear();
        let room = window - in_flight(sent);
        for (i, (topic, payload)) in messages.by_ref().take(room.min(256)) {
            let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload);
            // Packet ids cycle over the window; the broker acknowledges in order.
            publish.pkid = (i % window) as u16 + 1;
            publish.write(&mut out)?;
        }
        writer.write_all(&out).await?;
    }
    acks.await??;
    out.clear();
    Disconnect.write(&mut out)?;
    writer.write_all(&out).await?;
    Ok(())
}

/// Publishes the run's messages to the MQTT broker at `to` from `args.publishers` batched
/// connections ([`publish_qos1_batched`]).
async fn publish_parallel(
    args: &BenchDispatchArgs,
    to: &MqttTarget,
    iface: &str,
    run: &str,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for (p, range) in split(args.messages, args.publishers as u64).enumerate() {
        let messages = device_messages(iface, 100, range);
        let (host, port) = (to.host.clone(), to.port);
        let client_id = format!("ktwin-bench-pub-{run}-{p}");
        let window = args.publish_window;
        tasks.push(tokio::spawn(async move {
            publish_qos1_batched(&host, port, &client_id, messages, window).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// `0..total` cut into at most `parts` consecutive ranges of equal length (the last shorter).
fn split(total: u64, parts: u64) -> impl Iterator<Item = std::ops::Range<u64>> {
    let per = total.div_ceil(parts.max(1)).max(1);
    (0..total)
        .step_by(usize::try_from(per).unwrap_or(usize::MAX))
        .map(move |first| first..(first + per).min(total))
}

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// How device messages reach the dispatcher of a measurement, and how deep it pipelines.
struct DevicePath<S> {
    /// Where the load generator publishes.
    from: MqttTarget,
    /// What the dispatcher reads.
    source: S,
    /// What `source` is, for errors.
    source_name: String,
    /// Unconfirmed events in flight (`None`: the dispatcher's default, as `ktwin up`).
    in_flight: Option<usize>,
}

/// An MQTT broker the load generator publishes to.
struct MqttTarget {
    host: String,
    port: u16,
    /// Mosquitto, whose limits `scripts/services.sh` sets (named when a measurement stalls).
    mosquitto: bool,
}

impl std::fmt::Display for MqttTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl MqttTarget {
    fn mosquitto(args: &BenchDispatchArgs) -> Self {
        Self {
            host: args.mqtt.mqtt_host.clone(),
            port: args.mqtt.mqtt_port,
            mosquitto: true,
        }
    }

    fn rabbitmq_plugin(args: &BenchDispatchArgs) -> Self {
        Self {
            host: args.rabbitmq_mqtt_host.clone(),
            port: args.rabbitmq_mqtt_port,
            mosquitto: false,
        }
    }
}

/// The Mosquitto measurements' way in: the load published to Mosquitto, the dispatcher
/// reading a shared QoS 1 subscription there.
fn mosquitto_path(
    args: &BenchDispatchArgs,
    run: &str,
    iface: &str,
    in_flight: Option<usize>,
) -> DevicePath<MqttSource> {
    let from = MqttTarget::mosquitto(args);
    let mut config =
        MqttSourceConfig::new(&from.host, from.port, &format!("ktwin-bench-sub-{run}"));
    config.filters = vec![format!("ktwin/real/{iface}/#")];
    config.persistent_session = false;
    config.buffer = 1024;
    config.connections = args.mqtt_connections;
    DevicePath {
        source_name: format!("a shared MQTT subscription at {from}"),
        from,
        source: MqttSource::start(config),
        in_flight,
    }
}

/// MQTT → `path` → dispatcher → `broker` → `subscription`'s consumer; messages per second
/// from the first publish to the last distinct event received, and what was received.
async fn ingress_rate(
    args: &BenchDispatchArgs,
    run: &str,
    iface: &str,
    path: DevicePath<impl crate::DeviceSource + 'static>,
    broker: Arc<dyn Broker>,
    subscription: Subscription,
) -> anyhow::Result<(f64, ReceiptSummary)> {
    let DevicePath {
        from,
        source,
        source_name,
        in_flight,
    } = path;
    let connected = crate::DeviceSource::connected(&source);
    // As `ktwin up`: only the project's interfaces are accepted.
    let policy = IngressPolicy {
        known_interfaces: Some(std::iter::once(iface.to_owned()).collect()),
        ..IngressPolicy::default()
    };
    let mut dispatcher = IngressDispatcher::new(
        broker,
        Arc::new(MemoryDeadLetters::new(1 << 20)),
        policy,
        DispatchMetrics::ingress("bench", "bench"),
    );
    if let Some(in_flight) = in_flight {
        dispatcher = dispatcher.max_in_flight(in_flight);
    }
    let counters = dispatcher.counters();
    let receipts = Arc::new(Receipts::default());
    let consumer = tokio::spawn(consume(subscription, Arc::clone(&receipts)));
    let stop = CancellationToken::new();
    let task = tokio::spawn(dispatcher.run(source, stop.clone()));
    let measured = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !connected.load(Ordering::Acquire) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the dispatcher's source ({source_name}) did not connect within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A source subscribes right after connecting; give that a moment to be in place.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        publish_parallel(args, &from, iface, run)
            .await
            .with_context(|| format!("publishing to MQTT at {from}"))?;
        let waited = wait_for_progress(
            || receipts.distinct() + counters.dead_lettered(),
            args.messages,
            STALL,
        )
        .await;
        Ok((started.elapsed(), waited))
    }
    .await;
    // Stopped however the measurement ended, so its source no longer consumes when the
    // measurement's queues are deleted.
    stop.cancel();
    task.await?;
    consumer.abort();
    let (elapsed, waited) = measured?;
    let summary = ReceiptSummary {
        received: receipts.distinct(),
        duplicates: receipts.duplicates(),
        dead_letters: counters.dead_lettered(),
    };
    waited.map_err(|got| stalled(args, &from, "events through the dispatcher", got))?;
    Ok((args.messages as f64 / elapsed.as_secs_f64(), summary))
}

/// Receives and acknowledges every delivery of `subscription`, counting ids in `receipts`.
/// A batch's acknowledgements are sent together: one after another, each waiting for the
/// last to be written, this consumer (standing in for a Knative trigger's dispatcher) bounded
/// the dispatcher's measurement, whose clock stops at receipt (docs/benchmarks.md,
/// fourteenth session).
async fn consume(mut subscription: Subscription, receipts: Arc<Receipts>) {
    loop {
        let batch = subscription.recv_batch(1024).await;
        if batch.is_empty() {
            return;
        }
        let acks = batch.into_iter().map(|delivery| {
            receipts.record(cloudevents::AttributesReader::id(delivery.event()));
            delivery.ack()
        });
        futures::future::join_all(acks).await;
    }
}

async fn wait_for(done: impl Fn() -> bool, what: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// How long a measurement may go without progress before it is reported as stalled.
const STALL: Duration = Duration::from_secs(20);

/// Waits until `count()` reaches `target`; `Err(count)` once it made no progress for `stall`.
async fn wait_for_progress(
    count: impl Fn() -> u64,
    target: u64,
    stall: Duration,
) -> Result<(), u64> {
    let mut last = (count(), Instant::now());
    loop {
        let now = count();
        if now >= target {
            return Ok(());
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > stall {
            return Err(now);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The error of a measurement that stalled at `got` of the run's messages, naming the likely
/// cause when its broker is Mosquitto and its limits are not the ones `scripts/services.sh`
/// sets.
fn stalled(args: &BenchDispatchArgs, from: &MqttTarget, what: &str, got: u64) -> anyhow::Error {
    let mut message = format!(
        "{what}: {got} of {} arrived, then nothing for {} s",
        args.messages,
        STALL.as_secs()
    );
    if let Some(missing) = local_mosquitto_limits(args).filter(|_| from.mosquitto) {
        message.push_str(&format!("; {missing}"));
    }
    anyhow::anyhow!(message)
}

/// Which limits `scripts/services.sh` sets that the local Mosquitto's configuration lacks, as
/// a sentence; `None` when they are there or the broker is not local.
fn local_mosquitto_limits(args: &BenchDispatchArgs) -> Option<String> {
    let local = matches!(
        args.mqtt.mqtt_host.as_str(),
        "127.0.0.1" | "localhost" | "::1"
    );
    if !local {
        return None;
    }
    let mut conf = std::fs::read_to_string("/etc/mosquitto/mosquitto.conf").unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/etc/mosquitto/conf.d") {
        for entry in dir.flatten() {
            conf.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            conf.push('\n');
        }
    }
    let missing = missing_mosquitto_limits(&conf, args.messages, args.publish_window);
    (!missing.is_empty()).then(|| {
        format!(
            "the local Mosquitto's configuration (/etc/mosquitto) lacks {}: with its defaults \
             (20 QoS 1 messages in flight per client, 1000 queued) it drops a burst silently; \
             run scripts/services.sh, which sets them and restarts Mosquitto",
            missing.join(", ")
        )
    })
}

/// The Mosquitto settings in `conf` too small for a burst of `messages` from publishers with
/// `window` unacknowledged each (`max_inflight_messages`, `max_queued_messages`,
/// `max_queued_bytes`; 0 means unlimited). A setting given twice counts as its last value.
pub fn missing_mosquitto_limits(conf: &str, messages: u64, window: usize) -> Vec<&'static str> {
    let value = |key: &str| {
        conf.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some(key)).then(|| words.next()?.parse::<u64>().ok())?
            })
            .next_back()
    };
    let enough = |key: &str, needed: u64| value(key).is_some_and(|v| v == 0 || v >= needed);
    let mut missing = Vec::new();
    if !enough("max_inflight_messages", window as u64) {
        missing.push("max_inflight_messages");
    }
    if !enough("max_queued_messages", messages) {
        missing.push("max_queued_messages");
    }
    if value("max_queued_bytes").is_some_and(|v| v != 0) {
        missing.push("max_queued_bytes 0");
    }
    missing
}

/// Through the in-memory bus sized as `ktwin up` sizes it (its queues smaller than the run,
/// so the consumer's pace pushes back on the dispatcher), with `ktwin up`'s in-flight depth.
async fn bus_rate(args: &BenchDispatchArgs) -> anyhow::Result<(f64, ReceiptSummary)> {
    let bus = MemoryBroker::new(MemoryBrokerConfig::default());
    let subscription = bus
        .subscribe(SubscriptionSpec::new(
            "bench",
            TypeFilter::prefix("ktwin.real."),
        ))
        .await?;
    let run = run_id();
    let iface = format!("bench-{run}");
    let path = mosquitto_path(args, &run, &iface, None);
    let rate = ingress_rate(
        args,
        &run,
        &iface,
        path,
        Arc::new(bus.clone()),
        subscription,
    )
    .await;
    bus.delete_subscription("bench").await?;
    rate
}

/// A connection to RabbitMQ named `name`, on run `run`'s exchange, with the benchmark's
/// settings and `publisher_channels` confirm-mode channels for the broker's own publishing
/// (opened at once, so one for a connection that does not publish through the broker).
async fn bench_rabbit_connection(
    args: &BenchDispatchArgs,
    run: &str,
    name: &str,
    publisher_channels: usize,
) -> anyhow::Result<RabbitBroker> {
    RabbitBroker::connect(RabbitConfig {
        uri: args.amqp_url.clone(),
        exchange: format!("ktwin-bench-{run}"),
        queue_type: args.queue_type.into(),
        connection_name: name.into(),
        publisher_channels,
        ..RabbitConfig::default()
    })
    .await
    .with_context(|| format!("connecting to RabbitMQ ({name})"))
}

/// A broker on a fresh exchange for run `run`, with the benchmark's settings and a queue named
/// `queue` bound to the real events of `iface` (as a Knative trigger is), and its consumer:
/// the trigger's side, on a connection of its own.
async fn bench_rabbit_broker(
    args: &BenchDispatchArgs,
    run: &str,
    iface: &str,
    queue: &str,
) -> anyhow::Result<(RabbitBroker, Subscription)> {
    let broker = bench_rabbit_connection(args, run, "ktwin-bench-trigger", 1).await?;
    let subscribed = async {
        let filter = TypeFilter::exact([ktwin_events::EventType::real(iface)?.to_string()]);
        anyhow::Ok(
            broker
                .subscribe(SubscriptionSpec::new(queue, filter))
                .await?,
        )
    }
    .await;
    match subscribed {
        Ok(subscription) => Ok((broker, subscription)),
        Err(error) => {
            broker.close().await;
            Err(error)
        }
    }
}

/// Deletes the benchmark's queue and exchange, and disconnects (also when a deletion failed).
async fn remove_bench_broker(broker: &RabbitBroker, queue: &str) -> anyhow::Result<()> {
    let removed = async {
        broker.delete_subscription(queue).await?;
        let (_, channel) = broker.connector().channel(None).await?;
        let deleted = channel
            .exchange_delete(
                broker.config().exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        // Closed here, not dropped: lapin closes a dropped channel in the background, and
        // the connection's close below then made that fail and lapin log an error.
        let _ = channel.close(200, "exchange deleted".into()).await;
        deleted?;
        anyhow::Ok(())
    }
    .await;
    broker.close().await;
    removed
}

/// Runs `measure` with a connection named `name` of its own to run `run`'s exchange (with
/// `publisher_channels`, see [`bench_rabbit_connection`]), closed after it whatever it
/// returns: in a cluster the dispatcher and the trigger that consumes its events are separate
/// processes, each with its connection.
async fn on_own_connection<T, F: Future<Output = anyhow::Result<T>>>(
    args: &BenchDispatchArgs,
    run: &str,
    (name, publisher_channels): (&str, usize),
    measure: impl FnOnce(RabbitBroker) -> F,
) -> anyhow::Result<T> {
    let connection = bench_rabbit_connection(args, run, name, publisher_channels).await?;
    let measured = measure(connection.clone()).await;
    connection.close().await;
    measured
}

async fn rabbitmq_rate(args: &BenchDispatchArgs) -> anyhow::Result<(f64, ReceiptSummary)> {
    let run = run_id();
    let (iface, queue) = (format!("bench-{run}"), format!("ktwin-bench-{run}"));
    let (broker, subscription) = bench_rabbit_broker(args, &run, &iface, &queue).await?;
    let rate = on_own_connection(args, &run, dispatcher_connection(args), |dispatcher| {
        let path = mosquitto_path(args, &run, &iface, Some(args.in_flight));
        ingress_rate(args, &run, &iface, path, Arc::new(dispatcher), subscription)
    })
    .await;
    let removed = remove_bench_broker(&broker, &queue).await;
    measured_then_removed(rate, removed)
}

/// The dispatcher's connection in the RabbitMQ measurements: its name and publisher channels.
fn dispatcher_connection(args: &BenchDispatchArgs) -> (&'static str, usize) {
    ("ktwin-bench-dispatcher", args.amqp_channels)
}

/// A measurement's result, or its error, before the error of its clean-up.
fn measured_then_removed<T>(
    measured: anyhow::Result<T>,
    removed: anyhow::Result<()>,
) -> anyhow::Result<T> {
    let measured = measured?;
    removed.context("removing the measurement's queues and exchange")?;
    Ok(measured)
}

/// The cluster's path: devices publish to RabbitMQ's MQTT plugin, which routes their messages
/// to a device queue; the dispatcher consumes it with the prefetch the operator gives it (the
/// run's in-flight depth) and publishes the events to the broker's exchange with confirms, on
/// one connection (as `ktwin dispatcher mqtt --source amqp` does), apart from the trigger's.
async fn cluster_rate(args: &BenchDispatchArgs) -> anyhow::Result<(f64, ReceiptSummary)> {
    let run = run_id();
    let (iface, queue) = (format!("bench-{run}"), format!("ktwin-bench-{run}"));
    let devices = format!("ktwin-bench-devices-{run}");
    let (broker, subscription) = bench_rabbit_broker(args, &run, &iface, &queue).await?;
    let prefetch = u16::try_from(args.in_flight.max(1)).unwrap_or(u16::MAX);
    let rate = on_own_connection(args, &run, dispatcher_connection(args), |dispatcher| {
        let (devices, iface, run) = (&devices, &iface, &run);
        async move {
            let config = AmqpSourceConfig {
                queue: devices.clone(),
                declare: true,
                binding_keys: vec![TopicKind::Real.routing_key_pattern(iface)?],
                mqtt_exchange: defaults::MQTT_EXCHANGE.to_owned(),
                prefetch,
                consumer_tag: format!("ktwin-bench-{run}"),
            };
            let source = AmqpQueueSource::start(dispatcher.connector().clone(), config)
                .await
                .context("starting the dispatcher's AMQP source")?;
            let path = DevicePath {
                from: MqttTarget::rabbitmq_plugin(args),
                source,
                source_name: format!("the AMQP device queue {devices}"),
                in_flight: Some(usize::from(prefetch)),
            };
            ingress_rate(args, run, iface, path, Arc::new(dispatcher), subscription).await
        }
    })
    .await;
    // Both removals run, whichever fails; the first error is reported.
    let devices_removed = remove_device_queue(&broker, &devices).await;
    let removed = remove_bench_broker(&broker, &queue).await;
    measured_then_removed(rate, devices_removed.and(removed))
}

/// Deletes the cluster measurement's device queue (its dispatcher, stopped, closed its
/// source: no consumer is left on it).
async fn remove_device_queue(broker: &RabbitBroker, queue: &str) -> anyhow::Result<()> {
    let (_, channel) = broker.connector().channel(None).await?;
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .with_context(|| format!("deleting the device queue {queue}"))?;
    let _ = channel.close(200, "done".into()).await;
    Ok(())
}

/// Mosquitto's own rate with the same load and the same subscription as the dispatcher's
/// measurement (QoS 1 over `mqtt_connections` shared connections), each message acknowledged
/// on receipt instead of after dispatching.
async fn mosquitto_raw_rate(args: &BenchDispatchArgs) -> anyhow::Result<f64> {
    let run = run_id();
    let iface = format!("bench-{run}");
    let received = Arc::new(AtomicU64::new(0));
    let subscribed = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let connections = args.mqtt_connections.max(1);
    let mut subscribers = Vec::new();
    for index in 0..connections {
        let mut options = MqttOptions::new(
            format!("ktwin-bench-raw-{run}-{index}"),
            &args.mqtt.mqtt_host,
            args.mqtt.mqtt_port,
        );
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let filter = format!("ktwin/real/{iface}/#");
        let filter = if connections > 1 {
            format!("$share/ktwin-bench-raw-{run}/{filter}")
        } else {
            filter
        };
        client.subscribe(filter, QoS::AtLeastOnce).await?;
        let (received, subscribed, stop) =
            (Arc::clone(&received), Arc::clone(&subscribed), stop.clone());
        subscribers.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::SubAck(_))) => { subscribed.fetch_add(1, Ordering::Relaxed); }
                        Ok(Event::Incoming(Packet::Publish(_))) => { received.fetch_add(1, Ordering::Relaxed); }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "raw MQTT subscriber error");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                    () = stop.cancelled() => {
                        let _ = client.try_disconnect();
                        return;
                    }
                }
            }
        }));
    }
    wait_for(
        || subscribed.load(Ordering::Relaxed) >= connections as u64,
        "SUBACKs from the MQTT broker",
        Duration::from_secs(10),
    )
    .await?;
    let started = Instant::now();
    publish_parallel(args, &MqttTarget::mosquitto(args), &iface, &run).await?;
    wait_for_progress(|| received.load(Ordering::Relaxed), args.messages, STALL)
        .await
        .map_err(|got| stalled(args, &MqttTarget::mosquitto(args), "raw MQTT messages", got))?;
    let elapsed = started.elapsed();
    stop.cancel();
    for subscriber in subscribers {
        subscriber.await?;
    }
    Ok(args.messages as f64 / elapsed.as_secs_f64())
}

/// The device messages the measurements publish, as the dispatcher encodes them for RabbitMQ.
fn encoded_events(
    iface: &str,
    range: std::ops::Range<u64>,
) -> anyhow::Result<Vec<(lapin::BasicProperties, Vec<u8>)>> {
    device_messages(iface, 100, range)
        .into_iter()
        .map(|(topic, payload)| {
            let policy = IngressPolicy::default();
            let reading = validate(&topic, TopicSyntax::Mqtt, &payload, &policy)?;
            Ok(event_to_amqp(
                &reading.into_event(None, policy.trace_sampler),
            )?)
        })
        .collect()
}

/// Publishes `messages` on a confirm-mode `channel` with at most `window` unconfirmed, as the
/// broker publishes events (`mandatory`), and returns once all are confirmed.
async fn publish_confirmed(
    channel: lapin::Channel,
    exchange: String,
    messages: Vec<(lapin::BasicProperties, Vec<u8>)>,
    window: usize,
) -> anyhow::Result<()> {
    let settle = |confirmation: lapin::Result<lapin::Confirmation>| {
        anyhow::ensure!(
            matches!(confirmation?, lapin::Confirmation::Ack(None)),
            "RabbitMQ refused or returned a message"
        );
        Ok(())
    };
    let mut confirms = futures::stream::FuturesUnordered::new();
    for (properties, body) in messages {
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                "".into(),
                options,
                &body,
                properties,
            )
            .await?;
        confirms.push(confirm);
        if confirms.len() >= window
            && let Some(confirmation) = confirms.next().await
        {
            settle(confirmation)?;
        }
    }
    while let Some(confirmation) = confirms.next().await {
        settle(confirmation)?;
    }
    Ok(())
}

/// RabbitMQ's own confirmed-publish rate with the dispatcher's settings: the same topology (a
/// durable headers exchange, a queue of the same type bound with `x-match: all`), the same
/// encoded events (persistent, `mandatory`), the same number of channels on one connection and
/// the same number of unconfirmed messages in flight; only the dispatcher is left out. The
/// queue and exchange are removed whether the measurement succeeded or not.
async fn amqp_raw_rate(args: &BenchDispatchArgs) -> anyhow::Result<f64> {
    let run = run_id();
    let (iface, queue) = (format!("bench-raw-{run}"), format!("ktwin-bench-raw-{run}"));
    let (broker, subscription) = bench_rabbit_broker(args, &run, &iface, &queue).await?;
    let receipts = Arc::new(Receipts::default());
    let consumer = tokio::spawn(consume(subscription, Arc::clone(&receipts)));
    let rate = on_own_connection(args, &run, ("ktwin-bench-raw", 1), |publisher| async move {
        publish_raw(args, &publisher, &iface, &receipts).await
    })
    .await;
    consumer.abort();
    let removed = remove_bench_broker(&broker, &queue).await;
    measured_then_removed(rate, removed)
}

/// Publishes the run's events straight to the exchange of `publisher` (a connection apart from
/// the consumer's) and returns the rate at which they were confirmed, once `receipts` holds
/// every one of them.
async fn publish_raw(
    args: &BenchDispatchArgs,
    publisher: &RabbitBroker,
    iface: &str,
    receipts: &Receipts,
) -> anyhow::Result<f64> {
    let channels = args.amqp_channels.max(1);
    let window = (args.in_flight / channels).max(1);
    let connection = publisher.connector().connection(None).await?.1;
    let published = async {
        let mut prepared = Vec::new();
        for range in split(args.messages, channels as u64) {
            let messages = encoded_events(iface, range)?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            prepared.push((channel, messages));
        }
        let started = Instant::now();
        let publishers: Vec<_> = prepared
            .into_iter()
            .map(|(channel, messages)| {
                let exchange = publisher.config().exchange.clone();
                tokio::spawn(publish_confirmed(channel, exchange, messages, window))
            })
            .collect();
        for publisher in publishers {
            publisher.await??;
        }
        // The clock stops at the last confirm (raw AMQP with confirms), with the same consumer
        // draining the queue as in the dispatcher's measurement; receipt is checked after.
        anyhow::Ok(started.elapsed())
    }
    .await;
    let elapsed = published?;
    wait_for_progress(|| receipts.distinct(), args.messages, STALL)
        .await
        .map_err(|got| anyhow::anyhow!("raw AMQP: {got} of {} received", args.messages))?;
    Ok(args.messages as f64 / elapsed.as_secs_f64())
}

/// Runs the five measurements in one process and prints them.
pub async fn run(args: BenchDispatchArgs) -> anyhow::Result<ExitCode> {
    let mut machine = Machine::start();
    if let Some(missing) = local_mosquitto_limits(&args) {
        eprintln!("warning: {missing}");
    }
    let progress = indicatif::ProgressBar::new(5);
    if args.format == OutputFormat::Json {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    progress.set_style(
        indicatif::ProgressStyle::with_template("{pos}/{len} {msg}").expect("static template"),
    );
    progress.set_message("raw Mosquitto pub→sub");
    let mosquitto_raw_msgs_per_s = mosquitto_raw_rate(&args)
        .await
        .context("raw Mosquitto measurement")?;
    progress.inc(1);
    progress.set_message("raw AMQP publish loop");
    let amqp_raw_msgs_per_s = amqp_raw_rate(&args).await.context("raw AMQP measurement")?;
    progress.inc(1);
    progress.set_message("MQTT → dispatcher → in-memory bus");
    let (bus_msgs_per_s, bus_receipt) = bus_rate(&args).await.context("bus measurement")?;
    progress.inc(1);
    progress.set_message("MQTT → dispatcher → RabbitMQ");
    let (rabbitmq_msgs_per_s, rabbitmq_receipt) =
        rabbitmq_rate(&args).await.context("RabbitMQ measurement")?;
    progress.inc(1);
    progress.set_message("MQTT → RabbitMQ's MQTT plugin → dispatcher → RabbitMQ");
    let (cluster_msgs_per_s, cluster_receipt) = cluster_rate(&args).await.with_context(|| {
        format!(
            "cluster path measurement (RabbitMQ's MQTT plugin at {}, --rabbitmq-mqtt-host/-port)",
            MqttTarget::rabbitmq_plugin(&args)
        )
    })?;
    progress.finish_and_clear();
    machine.finish();
    let result = DispatchBenchResult {
        messages: args.messages,
        bus_msgs_per_s,
        rabbitmq_msgs_per_s,
        cluster_msgs_per_s,
        mosquitto_raw_msgs_per_s,
        amqp_raw_msgs_per_s,
        bus_receipt,
        rabbitmq_receipt,
        cluster_receipt,
        ratios: DispatchRatios {
            bus_per_mosquitto_raw: bus_msgs_per_s / mosquitto_raw_msgs_per_s,
            rabbitmq_per_amqp_raw: rabbitmq_msgs_per_s / amqp_raw_msgs_per_s,
            cluster_per_amqp_raw: cluster_msgs_per_s / amqp_raw_msgs_per_s,
        },
        machine,
    };
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string(&result)?),
        OutputFormat::Text => print_text(&result),
    }
    let clean = |r: &ReceiptSummary| r.duplicates == 0 && r.dead_letters == 0;
    Ok(
        if clean(&result.bus_receipt)
            && clean(&result.rabbitmq_receipt)
            && clean(&result.cluster_receipt)
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

fn print_text(result: &DispatchBenchResult) {
    println!("messages per measurement: {}", result.messages);
    let rate = |what: &str, rate: f64| println!("{what:<40} {rate:>12.0} msg/s");
    rate("MQTT → CloudEvent → in-memory bus", result.bus_msgs_per_s);
    rate(
        "MQTT → CloudEvent → RabbitMQ (confirms)",
        result.rabbitmq_msgs_per_s,
    );
    rate(
        "raw Mosquitto pub → sub (QoS 1)",
        result.mosquitto_raw_msgs_per_s,
    );
    rate(
        "MQTT plugin → CloudEvent → RabbitMQ",
        result.cluster_msgs_per_s,
    );
    rate("raw AMQP publish (confirms)", result.amqp_raw_msgs_per_s);
    for (what, r) in [
        ("bus", &result.bus_receipt),
        ("RabbitMQ", &result.rabbitmq_receipt),
        ("cluster", &result.cluster_receipt),
    ] {
        println!(
            "{what:<9} received {} distinct, {} duplicates, {} dead letters",
            r.received, r.duplicates, r.dead_letters
        );
    }
    println!(
        "ratios: bus ÷ raw Mosquitto {:.2}, RabbitMQ ÷ raw AMQP {:.2}, cluster path ÷ raw AMQP {:.2}",
        result.ratios.bus_per_mosquitto_raw,
        result.ratios.rabbitmq_per_amqp_raw,
        result.ratios.cluster_per_amqp_raw
    );
    println!("machine: {}", result.machine.describe());
}

#[cfg(test)]
mod tests {
    use super::{Receipts, missing_mosquitto_limits, split};

    #[test]
    fn a_duplicate_receipt_does_not_stand_in_for_a_missing_one() {
        let receipts = Receipts::default();
        for id in ["a", "b", "b", "c", "a"] {
            receipts.record(id);
        }
        assert_eq!((receipts.distinct(), receipts.duplicates()), (3, 2));
    }

    #[test]
    fn mosquitto_limits_of_services_sh_are_enough() {
        let conf = "# ktwin\nmax_inflight_messages 1000\nmax_queued_messages 1000000\nmax_queued_bytes 0\n";
        assert!(missing_mosquitto_limits(conf, 50_000, 1000).is_empty());
        let unlimited = "max_inflight_messages 0\nmax_queued_messages 0\n";
        assert!(missing_mosquitto_limits(unlimited, 50_000, 1000).is_empty());
    }

    #[test]
    fn mosquitto_defaults_are_reported_missing() {
        assert_eq!(
            missing_mosquitto_limits("listener 1883\n", 50_000, 1000),
            ["max_inflight_messages", "max_queued_messages"]
        );
        let small = "max_inflight_messages 20\nmax_queued_messages 1000000\nmax_queued_bytes 4096\n\
                     max_queued_messages 1000\n";
        assert_eq!(
            missing_mosquitto_limits(small, 50_000, 1000),
            [
                "max_inflight_messages",
                "max_queued_messages",
                "max_queued_bytes 0"
            ]
        );
    }

    #[test]
    fn split_covers_every_message_once() {
        assert_eq!(split(10, 3).collect::<Vec<_>>(), [0..4, 4..8, 8..10]);
        assert_eq!(split(4, 8).collect::<Vec<_>>(), [0..1, 1..2, 2..3, 3..4]);
        let whole: Vec<_> = split(5, 0).collect();
        assert_eq!((whole.len(), whole[0].clone()), (1, 0..5));
        assert_eq!(split(0, 4).count(), 0);
    }
}
