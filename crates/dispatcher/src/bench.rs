//! `ktwin bench dispatch`: MQTT → CloudEvent throughput into the in-memory bus and into
//! RabbitMQ (with confirms), beside the raw Mosquitto pub→sub rate and a raw AMQP publish loop
//! measured in the same run. Also the MQTT publisher the integration tests use.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use futures::StreamExt;
use ktwin_broker::{
    Broker, MemoryBroker, MemoryBrokerConfig, QueueType, RabbitBroker, RabbitConfig,
    SubscriptionSpec, TypeFilter,
};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use crate::ingress::IngressPolicy;
use crate::metrics::DispatchMetrics;
use crate::{IngressDispatcher, MemoryDeadLetters, MqttSource, MqttSourceConfig};

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
    /// Concurrent MQTT publishers.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// MQTT broker (Mosquitto) host.
    #[arg(long, env = "KTWIN_MQTT_HOST", default_value = "127.0.0.1")]
    pub mqtt_host: String,
    /// MQTT broker port.
    #[arg(long, env = "KTWIN_MQTT_PORT", default_value_t = 1883)]
    pub mqtt_port: u16,
    /// AMQP URI of RabbitMQ.
    #[arg(
        long,
        env = "KTWIN_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Results in messages per second.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DispatchBenchResult {
    /// Messages per measurement.
    pub messages: u64,
    /// MQTT (Mosquitto) → dispatcher → in-memory bus.
    pub bus_msgs_per_s: f64,
    /// MQTT (Mosquitto) → dispatcher → RabbitMQ headers exchange, publisher confirms.
    pub rabbitmq_msgs_per_s: f64,
    /// Raw Mosquitto QoS 1 publish → subscribe.
    pub mosquitto_raw_msgs_per_s: f64,
    /// Raw AMQP publish loop with confirms into a headers exchange bound to a queue.
    pub amqp_raw_msgs_per_s: f64,
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

async fn publish_parallel(args: &BenchDispatchArgs, iface: &str, run: &str) -> anyhow::Result<()> {
    let publishers = args.publishers.max(1) as u64;
    let per = args.messages / publishers;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let end = if p + 1 == publishers {
            args.messages
        } else {
            (p + 1) * per
        };
        let messages = device_messages(iface, 100, p * per..end);
        let (host, port) = (args.mqtt_host.clone(), args.mqtt_port);
        let client_id = format!("ktwin-bench-pub-{run}-{p}");
        tasks.push(tokio::spawn(async move {
            publish_qos1(&host, port, &client_id, messages, None).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// MQTT → dispatcher → `broker`; messages per second from the first publish to the last
/// confirmed event.
async fn ingress_rate(args: &BenchDispatchArgs, broker: Arc<dyn Broker>) -> anyhow::Result<f64> {
    let run = run_id();
    let iface = format!("bench-{run}");
    let mut config = MqttSourceConfig::new(
        &args.mqtt_host,
        args.mqtt_port,
        &format!("ktwin-bench-sub-{run}"),
    );
    config.filters = vec![format!("ktwin/real/{iface}/#")];
    config.persistent_session = false;
    config.buffer = 1024;
    let source = MqttSource::start(config);
    let connected = crate::DeviceSource::connected(&source);
    let dispatcher = IngressDispatcher::new(
        broker,
        Arc::new(MemoryDeadLetters::new(100)),
        IngressPolicy::default(),
        DispatchMetrics::ingress("bench", "bench"),
    )
    .max_in_flight(1024);
    let counters = dispatcher.counters();
    let stop = CancellationToken::new();
    let task = tokio::spawn(dispatcher.run(source, stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connected.load(Ordering::Acquire) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "cannot reach MQTT at {}:{}",
            args.mqtt_host,
            args.mqtt_port
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The subscription is sent right after CONNACK; give it a moment to be in place.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    publish_parallel(args, &iface, &run).await?;
    wait_for(
        || counters.dispatched() >= args.messages,
        "dispatched events",
        Duration::from_secs(120),
    )
    .await?;
    let elapsed = started.elapsed();
    stop.cancel();
    task.await?;
    Ok(args.messages as f64 / elapsed.as_secs_f64())
}

async fn wait_for(done: impl Fn() -> bool, what: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn bus_rate(args: &BenchDispatchArgs) -> anyhow::Result<f64> {
    let bus = MemoryBroker::new(MemoryBrokerConfig {
        queue_capacity: 65_536,
        ..MemoryBrokerConfig::default()
    });
    let mut subscription = bus
        .subscribe(SubscriptionSpec::new(
            "bench",
            TypeFilter::prefix("ktwin.real."),
        ))
        .await?;
    let consumer = tokio::spawn(async move {
        loop {
            let batch = subscription.recv_batch(1024).await;
            if batch.is_empty() {
                return;
            }
            for delivery in batch {
                let _ = delivery.ack().await;
            }
        }
    });
    let rate = ingress_rate(args, Arc::new(bus.clone())).await;
    bus.delete_subscription("bench").await?;
    consumer.await?;
    rate
}

async fn rabbitmq_rate(args: &BenchDispatchArgs) -> anyhow::Result<f64> {
    let run = run_id();
    let broker = RabbitBroker::connect(RabbitConfig {
        uri: args.amqp_url.clone(),
        exchange: format!("ktwin-bench-{run}"),
        queue_type: QueueType::Classic,
        connection_name: "ktwin-bench".into(),
        ..RabbitConfig::default()
    })
    .await
    .context("connecting to RabbitMQ")?;
    let queue = format!("ktwin-bench-{run}");
    // A bound queue so events are routed and stored, not discarded.
    drop(
        broker
            .subscribe(SubscriptionSpec::new(
                &queue,
                TypeFilter::prefix("ktwin.real."),
            ))
            .await?,
    );
    let rate = ingress_rate(args, Arc::new(broker.clone())).await;
    broker.delete_subscription(&queue).await?;
    let (_, channel) = broker.connector().channel(None).await?;
    channel
        .exchange_delete(
            broker.config().exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await?;
    broker.close().await;
    rate
}

async fn mosquitto_raw_rate(args: &BenchDispatchArgs) -> anyhow::Result<f64> {
    let run = run_id();
    let iface = format!("bench-{run}");
    let mut options = MqttOptions::new(
        format!("ktwin-bench-raw-{run}"),
        &args.mqtt_host,
        args.mqtt_port,
    );
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    // QoS 0 on the subscriber side: one QoS 1 subscription is capped by the broker's
    // per-client in-flight window (Mosquitto drops beyond its queue), which is not the raw rate.
    client
        .subscribe(format!("ktwin/real/{iface}/#"), QoS::AtMostOnce)
        .await?;
    let received = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&received);
    let stop = CancellationToken::new();
    let token = stop.clone();
    let subscribed = Arc::new(tokio::sync::Notify::new());
    let ready = Arc::clone(&subscribed);
    let subscriber = tokio::spawn(async move {
        loop {
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => ready.notify_one(),
                    Ok(Event::Incoming(Packet::Publish(_))) => { count.fetch_add(1, Ordering::Relaxed); }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "raw MQTT subscriber error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = token.cancelled() => return,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed.notified())
        .await
        .context("no SUBACK from the MQTT broker")?;
    let started = Instant::now();
    publish_parallel(args, &iface, &run).await?;
    wait_for(
        || received.load(Ordering::Relaxed) >= args.messages,
        "raw MQTT messages",
        Duration::from_secs(120),
    )
    .await?;
    let elapsed = started.elapsed();
    stop.cancel();
    subscriber.await?;
    let _ = client.disconnect().await;
    Ok(args.messages as f64 / elapsed.as_secs_f64())
}

async fn amqp_raw_rate(args: &BenchDispatchArgs) -> anyhow::Result<f64> {
    let run = run_id();
    let connection =
        lapin::Connection::connect(&args.amqp_url, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let exchange = format!("ktwin-bench-raw-{run}");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Headers,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            exchange.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            exchange.as_str().into(),
            exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let started = Instant::now();
    let window = 1024;
    let mut confirms = futures::stream::FuturesOrdered::new();
    for i in 0..args.messages {
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                &sample_payload(i),
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        confirms.push_back(confirm);
        if confirms.len() >= window
            && let Some(confirmation) = confirms.next().await
        {
            anyhow::ensure!(confirmation?.is_ack(), "RabbitMQ refused a message");
        }
    }
    while let Some(confirmation) = confirms.next().await {
        anyhow::ensure!(confirmation?.is_ack(), "RabbitMQ refused a message");
    }
    let elapsed = started.elapsed();
    channel
        .queue_delete(exchange.as_str().into(), QueueDeleteOptions::default())
        .await?;
    channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(args.messages as f64 / elapsed.as_secs_f64())
}

/// Runs the four measurements in one process and prints them.
pub async fn run(args: BenchDispatchArgs) -> anyhow::Result<ExitCode> {
    let progress = indicatif::ProgressBar::new(4);
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
    let bus_msgs_per_s = bus_rate(&args).await.context("bus measurement")?;
    progress.inc(1);
    progress.set_message("MQTT → dispatcher → RabbitMQ");
    let rabbitmq_msgs_per_s = rabbitmq_rate(&args).await.context("RabbitMQ measurement")?;
    progress.finish_and_clear();
    let result = DispatchBenchResult {
        messages: args.messages,
        bus_msgs_per_s,
        rabbitmq_msgs_per_s,
        mosquitto_raw_msgs_per_s,
        amqp_raw_msgs_per_s,
    };
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string(&result)?),
        OutputFormat::Text => {
            println!("messages per measurement: {}", result.messages);
            println!(
                "{:<40} {:>12.0} msg/s",
                "MQTT → CloudEvent → in-memory bus", result.bus_msgs_per_s
            );
            println!(
                "{:<40} {:>12.0} msg/s",
                "MQTT → CloudEvent → RabbitMQ (confirms)", result.rabbitmq_msgs_per_s
            );
            println!(
                "{:<40} {:>12.0} msg/s",
                "raw Mosquitto pub → sub (QoS 1)", result.mosquitto_raw_msgs_per_s
            );
            println!(
                "{:<40} {:>12.0} msg/s",
                "raw AMQP publish (confirms)", result.amqp_raw_msgs_per_s
            );
            println!(
                "ratios: bus/mosquitto {:.2}, rabbitmq/amqp-raw {:.2}",
                result.bus_msgs_per_s / result.mosquitto_raw_msgs_per_s,
                result.rabbitmq_msgs_per_s / result.amqp_raw_msgs_per_s
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
