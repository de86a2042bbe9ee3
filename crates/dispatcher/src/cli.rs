//! `ktwin dispatcher mqtt`, `ktwin dispatcher cloudevent` and `ktwin bench dispatch`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use ktwin_broker::{Broker, QueueType, RabbitBroker, RabbitConfig, SubscriptionSpec, TypeFilter};
use ktwin_events::{DeviceBinding, DeviceBindings, EventKind, routing_key_of_mqtt_topic};
use ktwin_events::{defaults, env};
use ktwin_service::Readiness;
use tokio_util::sync::CancellationToken;

use crate::egress::PayloadFormat;
use crate::ingress::{DEFAULT_MAX_PAYLOAD_BYTES, IngressPolicy};
use crate::metrics::DispatchMetrics;
use crate::{
    AmqpDeadLetters, AmqpQueueSource, AmqpSourceConfig, AmqpTopicSink, DeviceSink,
    EgressDispatcher, IngressDispatcher, MqttSink, MqttSource, MqttSourceConfig,
};

/// `ktwin dispatcher`: bridges between devices (MQTT) and twins (CloudEvents).
#[derive(Debug, Args)]
pub struct DispatcherArgs {
    #[command(subcommand)]
    command: DispatcherCommand,
}

#[derive(Debug, Subcommand)]
enum DispatcherCommand {
    /// Device messages (MQTT) → `ktwin.real.<iface>` CloudEvents on the broker exchange.
    Mqtt(MqttArgs),
    /// `ktwin.virtual.<iface>` CloudEvents → MQTT topic `ktwin/virtual/<iface>/<instance>`.
    Cloudevent(CloudEventArgs),
}

/// Connection to RabbitMQ and the broker exchange, shared by both dispatchers.
#[derive(Debug, Clone, Args)]
pub struct AmqpArgs {
    /// AMQP URI of RabbitMQ.
    #[arg(
        long,
        env = env::AMQP_URL,
        default_value = defaults::AMQP_URL
    )]
    pub amqp_url: String,
    /// The broker's headers exchange (the Knative broker exchange in a cluster).
    #[arg(long, env = ktwin_events::env::PUBLISHER_EXCHANGE, default_value = "ktwin-broker")]
    pub exchange: String,
    /// Declare the broker exchange (durable headers); off when the operator owns it.
    #[arg(long, env = ktwin_events::env::DECLARE_EXCHANGE, default_value_t = true, action = clap::ArgAction::Set)]
    pub declare_exchange: bool,
    /// Unacknowledged messages per consumer (prefetch).
    #[arg(long, env = ktwin_events::env::PREFETCH, default_value_t = 512)]
    pub prefetch: u16,
    /// Channels publishing to RabbitMQ in parallel (each is one Erlang process on the server);
    /// one source's events always share a channel, so their order is kept.
    #[arg(long, env = "KTWIN_PUBLISHER_CHANNELS", default_value_t = RabbitConfig::default().publisher_channels)]
    pub publisher_channels: usize,
}

/// Operational endpoints.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Address of `/health`, `/ready` and `/metrics`.
    #[arg(long, env = env::LISTEN, default_value = defaults::HTTP_LISTEN)]
    pub listen: SocketAddr,
    /// Consumer tag, connection name and `container_name` metric label.
    #[arg(long, env = env::SERVICE_NAME)]
    pub service_name: Option<String>,
    /// `broker_name` metric label.
    #[arg(long, env = "KTWIN_BROKER_NAME", default_value = "ktwin")]
    pub broker_name: String,
}

/// The device topics interfaces declare with the DTDL MQTT extension.
#[derive(Debug, Clone, Args)]
pub struct DeviceBindingsArgs {
    /// JSON array of device bindings (`interface`, `modelId`, `payloadFormat`,
    /// `telemetryTopic`, `commandTopic`, `commands`), as the planner writes it.
    #[arg(long, env = env::DEVICE_BINDINGS)]
    pub device_bindings: Option<String>,
}

impl DeviceBindingsArgs {
    /// The bindings, checked (none when unset).
    pub fn load(&self) -> anyhow::Result<DeviceBindings> {
        let Some(json) = &self.device_bindings else {
            return Ok(DeviceBindings::default());
        };
        let list: Vec<DeviceBinding> = serde_json::from_str(json).with_context(|| {
            format!(
                "--device-bindings ({}) is not a JSON array of device bindings",
                env::DEVICE_BINDINGS
            )
        })?;
        Ok(DeviceBindings::new(list)?)
    }
}

/// The command event types sent to devices on declared command topics.
fn device_command_types(bindings: &DeviceBindings) -> Vec<String> {
    bindings
        .bindings()
        .flat_map(DeviceBinding::command_event_types)
        .map(|ty| ty.to_string())
        .collect()
}

/// Where device messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// An AMQP queue fed by RabbitMQ's MQTT plugin (the original cluster topology).
    Amqp,
    /// A direct MQTT subscription to `ktwin/real/#` (any MQTT 3.1.1 broker).
    Mqtt,
}

/// Where the MQTT broker listens.
#[derive(Debug, Clone, Args)]
pub struct MqttBrokerArgs {
    /// MQTT broker host.
    #[arg(long, env = env::MQTT_HOST, default_value = defaults::MQTT_HOST)]
    pub mqtt_host: String,
    /// MQTT broker port.
    #[arg(long, env = env::MQTT_PORT, default_value_t = ktwin_events::MQTT_PORT)]
    pub mqtt_port: u16,
}

/// MQTT broker connection.
#[derive(Debug, Clone, Args)]
pub struct MqttConnArgs {
    /// Where the MQTT broker listens.
    #[command(flatten)]
    pub broker: MqttBrokerArgs,
    /// MQTT client id (a persistent session is kept under it).
    #[arg(long, env = "KTWIN_MQTT_CLIENT_ID")]
    pub mqtt_client_id: Option<String>,
    /// MQTT user name.
    #[arg(long, env = env::MQTT_USERNAME, requires = "mqtt_password")]
    pub mqtt_username: Option<String>,
    /// MQTT password.
    #[arg(long, env = env::MQTT_PASSWORD, hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// Parallel MQTT connections sharing the subscription (`$share/…`); widens the window of
    /// unacknowledged QoS 1 messages the broker allows (`--source mqtt`).
    #[arg(long, env = "KTWIN_MQTT_CONNECTIONS", default_value_t = 16)]
    pub mqtt_connections: usize,
}

impl MqttConnArgs {
    fn credentials(&self) -> Option<(String, String)> {
        Some((self.mqtt_username.clone()?, self.mqtt_password.clone()?))
    }
}

/// `ktwin dispatcher mqtt`.
#[derive(Debug, Args)]
pub struct MqttArgs {
    /// Where device messages come from.
    #[arg(long, env = ktwin_events::env::SOURCE, value_enum, default_value_t = SourceKind::Amqp)]
    pub source: SourceKind,
    /// RabbitMQ and the broker exchange.
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Queue of device messages (`--source amqp`).
    #[arg(
        long,
        env = ktwin_events::env::SUBSCRIBER_QUEUE,
        default_value = "mqtt-dispatcher-queue"
    )]
    pub queue: String,
    /// Declare the device queue (quorum) and bind it to the MQTT exchange with `ktwin.real.#`.
    #[arg(long, env = ktwin_events::env::DECLARE_QUEUE, default_value_t = true, action = clap::ArgAction::Set)]
    pub declare_queue: bool,
    /// Exchange RabbitMQ's MQTT plugin publishes to.
    #[arg(long, env = env::MQTT_EXCHANGE, default_value = defaults::MQTT_EXCHANGE)]
    pub mqtt_exchange: String,
    /// The MQTT broker connection.
    #[command(flatten)]
    pub mqtt: MqttConnArgs,
    /// Largest accepted payload in bytes.
    #[arg(long, env = "KTWIN_MAX_PAYLOAD_BYTES", default_value_t = DEFAULT_MAX_PAYLOAD_BYTES)]
    pub max_payload_bytes: usize,
    /// Which traces are recorded.
    #[command(flatten)]
    pub trace: ktwin_service::cli::TraceArgs,
    /// Interfaces of the loaded model (comma-separated); others are dead-lettered.
    #[arg(long, env = "KTWIN_KNOWN_INTERFACES", value_delimiter = ',')]
    pub known_interfaces: Vec<String>,
    /// File with one known interface per line (`#` comments allowed).
    #[arg(long, env = "KTWIN_INTERFACES_FILE")]
    pub interfaces_file: Option<PathBuf>,
    /// Device topics declared with the DTDL MQTT extension.
    #[command(flatten)]
    pub bindings: DeviceBindingsArgs,
    /// Durable queue receiving refused device messages, reason in a header.
    #[arg(
        long,
        env = "KTWIN_DEAD_LETTER_QUEUE",
        default_value = "mqtt-dispatcher-dead-letters"
    )]
    pub dead_letter_queue: String,
    /// Health, readiness and metrics endpoints.
    #[command(flatten)]
    pub ops: OpsArgs,
}

impl MqttArgs {
    /// The ingress policy: size limit and, if any interface is given, the known interfaces.
    pub fn policy(&self) -> anyhow::Result<IngressPolicy> {
        let mut known: HashSet<String> = self
            .known_interfaces
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(path) = &self.interfaces_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --interfaces-file {}", path.display()))?;
            for (number, line) in text.lines().enumerate() {
                let name = line.split('#').next().unwrap_or("").trim();
                if name.is_empty() {
                    continue;
                }
                ktwin_events::validate_name("interface", name).with_context(|| {
                    format!(
                        "{}:{}: expected one interface name per line",
                        path.display(),
                        number + 1
                    )
                })?;
                known.insert(name.to_owned());
            }
        }
        Ok(IngressPolicy {
            max_payload_bytes: self.max_payload_bytes,
            known_interfaces: (!known.is_empty()).then_some(known),
            bindings: self.bindings.load()?,
            trace_sampler: self.trace.sampler,
        })
    }
}

/// Where virtual events are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// RabbitMQ `amq.topic` with routing key `ktwin.virtual.<iface>.<instance>` (original).
    Amqp,
    /// Directly to an MQTT broker, QoS 1.
    Mqtt,
}

/// `ktwin dispatcher cloudevent`.
#[derive(Debug, Args)]
pub struct CloudEventArgs {
    /// RabbitMQ and the broker exchange.
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Subscription (queue) of virtual events on the broker.
    #[arg(
        long,
        env = ktwin_events::env::SUBSCRIBER_QUEUE,
        default_value = "cloud-event-dispatcher-queue"
    )]
    pub queue: String,
    /// Where device messages go.
    #[arg(long, env = ktwin_events::env::SINK, value_enum, default_value_t = SinkKind::Amqp)]
    pub sink: SinkKind,
    /// Topic exchange of RabbitMQ's MQTT plugin (`--sink amqp`).
    #[arg(long, env = env::MQTT_EXCHANGE, default_value = defaults::MQTT_EXCHANGE)]
    pub topic_exchange: String,
    /// The MQTT broker connection.
    #[command(flatten)]
    pub mqtt: MqttConnArgs,
    /// Payload sent to devices: the event data (compatible) or the whole structured CloudEvent.
    #[arg(long, env = "KTWIN_PAYLOAD_FORMAT", value_enum, default_value_t = PayloadFormat::Data)]
    pub format: PayloadFormat,
    /// Device topics declared with the DTDL MQTT extension (commands go to their command
    /// topics).
    #[command(flatten)]
    pub bindings: DeviceBindingsArgs,
    /// Failed sends before an event is dead-lettered.
    #[arg(long, env = "KTWIN_MAX_DELIVERIES", default_value_t = ktwin_broker::DEFAULT_MAX_DELIVERIES)]
    pub max_deliveries: u32,
    /// Health, readiness and metrics endpoints.
    #[command(flatten)]
    pub ops: OpsArgs,
}

/// Runs `ktwin dispatcher …` until SIGTERM/Ctrl-C, then drains.
pub async fn run(args: DispatcherArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DispatcherCommand::Mqtt(args) => run_mqtt(args).await,
        DispatcherCommand::Cloudevent(args) => run_cloudevent(args).await,
    }
}

async fn connect_broker(amqp: &AmqpArgs, name: &str) -> anyhow::Result<RabbitBroker> {
    RabbitBroker::connect(RabbitConfig {
        uri: amqp.amqp_url.clone(),
        exchange: amqp.exchange.clone(),
        declare_exchange: amqp.declare_exchange,
        queue_type: QueueType::Quorum,
        connection_name: name.to_owned(),
        publisher_channels: amqp.publisher_channels,
        ..RabbitConfig::default()
    })
    .await
    .with_context(|| format!("connecting to RabbitMQ at {}", redact(&amqp.amqp_url)))
}

/// The URI without its password, for messages.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &uri[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &uri[..scheme + 3], &uri[at..])
        }
        _ => uri.to_owned(),
    }
}

/// Serves the ops endpoints and keeps `/ready` in line with `checks` until `shutdown`.
fn serve_ops(
    listen: SocketAddr,
    checks: Vec<Arc<dyn Fn() -> bool + Send + Sync>>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let readiness = Readiness::new();
    let probe = readiness.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            probe.set_ready(!stop.is_cancelled() && checks.iter().all(|check| check()));
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = stop.cancelled() => { probe.set_ready(false); return; }
            }
        }
    });
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding --listen {listen}"))?;
        tracing::info!(%listen, "serving /health, /ready and /metrics");
        let app =
            ktwin_service::with_service_layers("dispatcher", ktwin_service::ops_router(readiness));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        Ok(())
    })
}

async fn run_mqtt(args: MqttArgs) -> anyhow::Result<ExitCode> {
    let policy = args.policy()?;
    let declared_filters = policy.bindings.telemetry_filters();
    let name = args
        .ops
        .service_name
        .clone()
        .unwrap_or_else(|| "mqtt-dispatcher".into());
    let shutdown = ktwin_service::shutdown_token();
    let broker = connect_broker(&args.amqp, &name).await?;
    let dead_letters =
        AmqpDeadLetters::new(broker.connector().clone(), &args.dead_letter_queue).await?;
    let dispatcher = IngressDispatcher::new(
        Arc::new(broker.clone()),
        Arc::new(dead_letters),
        policy,
        DispatchMetrics::ingress(&name, &args.ops.broker_name),
    )
    .max_in_flight(usize::from(args.amqp.prefetch));
    let broker_check = broker.clone();
    let mut checks: Vec<Arc<dyn Fn() -> bool + Send + Sync>> =
        vec![Arc::new(move || broker_check.is_connected())];
    let ops;
    match args.source {
        SourceKind::Amqp => {
            let source = AmqpQueueSource::start(
                broker.connector().clone(),
                AmqpSourceConfig {
                    queue: args.queue.clone(),
                    declare: args.declare_queue,
                    // RabbitMQ's MQTT plugin makes `/` a `.` and `+` a `*`.
                    binding_keys: [
                        crate::REAL_ROUTING_KEY_PATTERN.to_owned(),
                        crate::DOTTED_TOPIC_ROUTING_KEY_PATTERN.to_owned(),
                    ]
                    .into_iter()
                    .chain(
                        declared_filters
                            .iter()
                            .map(|f| routing_key_of_mqtt_topic(f)),
                    )
                    .collect(),
                    mqtt_exchange: args.mqtt_exchange.clone(),
                    prefetch: args.amqp.prefetch,
                    consumer_tag: name.clone(),
                },
            )
            .await?;
            let connected = crate::DeviceSource::connected(&source);
            checks.push(Arc::new(move || connected.load(Ordering::Acquire)));
            ops = serve_ops(args.ops.listen, checks, shutdown.clone());
            dispatcher.run(source, shutdown.clone()).await;
        }
        SourceKind::Mqtt => {
            let mut config = MqttSourceConfig::new(
                &args.mqtt.broker.mqtt_host,
                args.mqtt.broker.mqtt_port,
                args.mqtt.mqtt_client_id.as_deref().unwrap_or(&name),
            );
            config.credentials = args.mqtt.credentials();
            config.filters.extend(declared_filters);
            config.connections = args.mqtt.mqtt_connections.max(1);
            config.buffer = usize::from(args.amqp.prefetch);
            config.max_packet_bytes = config
                .max_packet_bytes
                .max(args.max_payload_bytes.saturating_mul(2));
            let source = MqttSource::start(config);
            let connected: Arc<AtomicBool> = crate::DeviceSource::connected(&source);
            checks.push(Arc::new(move || connected.load(Ordering::Acquire)));
            ops = serve_ops(args.ops.listen, checks, shutdown.clone());
            dispatcher.run(source, shutdown.clone()).await;
        }
    }
    shutdown.cancel();
    broker.close().await;
    ops.await??;
    Ok(ExitCode::SUCCESS)
}

async fn run_cloudevent(args: CloudEventArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .ops
        .service_name
        .clone()
        .unwrap_or_else(|| "cloud-event-dispatcher".into());
    let bindings = args.bindings.load()?;
    let filter = device_command_types(&bindings).into_iter().fold(
        TypeFilter::prefix(EventKind::Virtual.type_prefix()),
        |f, ty| f.or_type(ty),
    );
    let shutdown = ktwin_service::shutdown_token();
    let broker = connect_broker(&args.amqp, &name).await?;
    let sink: Arc<dyn DeviceSink> = match args.sink {
        SinkKind::Amqp => Arc::new(AmqpTopicSink::new(
            broker.connector().clone(),
            &args.topic_exchange,
        )),
        SinkKind::Mqtt => Arc::new(MqttSink::start(
            &args.mqtt.broker.mqtt_host,
            args.mqtt.broker.mqtt_port,
            args.mqtt.mqtt_client_id.as_deref().unwrap_or(&name),
            args.mqtt.credentials(),
        )),
    };
    let subscription = broker
        .subscribe(
            SubscriptionSpec::new(&args.queue, filter)
                .max_deliveries(args.max_deliveries)
                .prefetch(args.amqp.prefetch),
        )
        .await?;
    let broker_check = broker.clone();
    let sink_check = Arc::clone(&sink);
    let ops = serve_ops(
        args.ops.listen,
        vec![
            Arc::new(move || broker_check.is_connected()),
            Arc::new(move || sink_check.is_connected()),
        ],
        shutdown.clone(),
    );
    EgressDispatcher::new(
        sink,
        args.format,
        DispatchMetrics::egress(&name, &args.ops.broker_name),
    )
    .bindings(bindings)
    .max_in_flight(usize::from(args.amqp.prefetch))
    .run(subscription, shutdown.clone())
    .await;
    shutdown.cancel();
    broker.close().await;
    ops.await??;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "bench")]
pub use crate::bench::BenchDispatchArgs;

/// Runs `ktwin bench dispatch`.
#[cfg(feature = "bench")]
pub async fn run_bench(args: BenchDispatchArgs) -> anyhow::Result<ExitCode> {
    crate::bench::run(args).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: DispatcherCommand,
    }

    #[test]
    fn flags_parse_and_interfaces_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("ktwin-ifaces-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, "city-pole # poles\n\nngsi-ld-city-device\n").unwrap();
        let cli = Cli::try_parse_from([
            "x",
            "mqtt",
            "--source",
            "mqtt",
            "--known-interfaces",
            "a,b",
            "--interfaces-file",
            dir.to_str().unwrap(),
            "--max-payload-bytes",
            "10",
        ])
        .unwrap();
        let DispatcherCommand::Mqtt(args) = cli.command else {
            panic!("mqtt expected")
        };
        assert_eq!(args.source, SourceKind::Mqtt);
        let policy = args.policy().unwrap();
        assert_eq!(policy.max_payload_bytes, 10);
        let known = policy.known_interfaces.unwrap();
        for name in ["a", "b", "city-pole", "ngsi-ld-city-device"] {
            assert!(known.contains(name), "{name}");
        }
        std::fs::write(&dir, "bad.name\n").unwrap();
        let err = args.policy().unwrap_err();
        assert!(
            format!("{err:#}").contains(":1: expected one interface name per line"),
            "{err:#}"
        );
        std::fs::remove_file(&dir).unwrap();

        let cli = Cli::try_parse_from([
            "x",
            "cloudevent",
            "--format",
            "structured",
            "--sink",
            "mqtt",
        ])
        .unwrap();
        let DispatcherCommand::Cloudevent(args) = cli.command else {
            panic!("cloudevent expected")
        };
        assert_eq!(args.format, PayloadFormat::Structured);
        assert_eq!(args.sink, SinkKind::Mqtt);
    }

    #[test]
    fn device_bindings_come_as_json_and_are_checked() {
        let json = r#"[{"interface":"vehicle","modelId":"dtmi:example:Vehicle;1","payloadFormat":"Json/ecma/404","telemetryTopic":"vehicles/{senderId}","commandTopic":"cmd/{executorId}/{commandName}","commands":["setColor"]}]"#;
        let args = DeviceBindingsArgs {
            device_bindings: Some(json.into()),
        };
        let bindings = args.load().unwrap();
        assert_eq!(bindings.telemetry_filters(), ["vehicles/+"]);
        assert_eq!(
            device_command_types(&bindings),
            ["ktwin.command.vehicle.setcolor"]
        );
        let bad = DeviceBindingsArgs {
            device_bindings: Some(json.replace("{senderId}", "{sender}")),
        };
        let err = format!("{:#}", bad.load().unwrap_err());
        assert!(err.contains("{sender}"), "{err}");
        let junk = DeviceBindingsArgs {
            device_bindings: Some("{".into()),
        };
        let err = format!("{:#}", junk.load().unwrap_err());
        assert!(err.contains(env::DEVICE_BINDINGS), "{err}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host"), "amqp://host");
    }
}
