//! The composition of `ktwin up`: project → plan → the platform's pieces, wired in one process.
//!
//! Events flow: devices → MQTT (embedded rumqttd or external) → ingress dispatcher →
//! in-memory broker → one subscription per planned subscriber (twin services, the event
//! store, the egress dispatcher back to devices). Twin services answer over HTTP or in-process;
//! what they emit goes back on the broker. One HTTP port serves the store and graph APIs, the
//! broker ingress for child services, the dashboard (`/`), `/health`, `/ready` and `/metrics`,
//! all behind the access control of [`crate::access`]; devices reach the embedded MQTT broker
//! through `ktwin_auth`'s gate, which checks their credentials and topics.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ktwin_broker::{Broker, MemoryBroker, MemoryBrokerConfig, Subscription, SubscriptionSpec};
use ktwin_dispatcher::egress::PayloadFormat;
use ktwin_dispatcher::ingress::IngressPolicy;
use ktwin_dispatcher::metrics::DispatchMetrics;
use ktwin_dispatcher::{
    EgressCounters, EgressDispatcher, IngressCounters, IngressDispatcher, MqttSink, MqttSource,
    MqttSourceConfig,
};
use ktwin_events::DeviceBindings;
use ktwin_events::trace::TraceSampler;
use ktwin_planner::{Endpoint, EnvValue, Subscriber, TwinService};
use ktwin_sdk::{StaticGraph, TwinContext};
use ktwin_service::Readiness;
use ktwin_store::broker::{BrokerFeed, StoreDeadLetters};
use ktwin_store::{
    ApiConfig, Backend, BackendChoice, DeadLetterLimits, IngestConfig, Ingestor, KnownInterfaces,
};
use tokio_util::sync::CancellationToken;

use ktwin_auth::local::LocalCredentials;
use ktwin_auth::mqtt::gate::{MqttGate, Upstream};
use ktwin_auth::mqtt::{DeclaredTopics, DeviceRegistry, InterfaceTopics, Refusals, TopicPattern};
use ktwin_auth::tls::TlsFiles;
use ktwin_auth::{DEFAULT_RELOAD_INTERVAL, Reloading, Secret};

use crate::access::{PlatformAccess, UpAuth};
use crate::autoscale::ScalePolicy;
use crate::bus::{BROKER_PATH, CountingBroker, StoreProbe, StoreStates, ingress_router};
use crate::console::Console;
use crate::error::UpError;
use crate::mqtt::{
    DeviceAcks, EmbeddedMqtt, LinkSource, MAX_PAYLOAD, MqttAddress, MqttError, start_embedded,
};
use crate::pool::{PoolConfig, PoolStats, ServicePool};
use crate::process::ProcessLauncher;
use crate::project::{Handlers, LOCAL_EVENT_STORE, PlannedProject, Runner};
use crate::service::{DeliveryCounters, InProcessService, ServiceEndpoint, feed_service};
use crate::tasks::TaskGroup;

/// How long the event store's feed waits to fill a batch (one commit) after its first event.
/// A commit costs a journal write and an `fdatasync` whatever its size, so at a few thousand
/// events a second fewer, larger commits save CPU for a little more median latency
/// (`docs/benchmarks.md`, "ktwin up (end to end)", stop 13).
const STORE_LINGER: Duration = Duration::from_millis(25);

/// A store batch ends early once no event came for this long: at low rates the whole linger
/// only delayed each event, while under load events come far more often than this (same
/// section of `docs/benchmarks.md`).
const STORE_QUIET: Duration = Duration::from_millis(10);

/// Which MQTT broker devices use.
#[derive(Debug, Clone)]
pub enum MqttChoice {
    /// Start rumqttd on this loopback port (0 = any free port).
    Embedded {
        /// The port.
        port: u16,
    },
    /// Use the broker at this address.
    External(MqttAddress),
}

/// How to run the platform.
pub struct UpOptions {
    /// World parameters (`neighborhoods=1`).
    pub parameters: BTreeMap<String, u64>,
    /// HTTP port of the APIs (0 = any free port), on 127.0.0.1.
    pub http_port: u16,
    /// The MQTT broker.
    pub mqtt: MqttChoice,
    /// The event store backend.
    pub store: BackendChoice,
    /// Replicas per service at most on this machine.
    pub replica_cap: u32,
    /// How long a child replica may take to serve HTTP after start (first `cargo run` builds).
    pub ready_timeout: Duration,
    /// SDK handlers built into this binary, which services naming them run in-process.
    pub handlers: Handlers,
    /// Run every service as its `command` child processes, even when its handler is built in.
    pub processes: bool,
    /// Output of services and the status line.
    pub console: Console,
    /// Observes what the store makes durable (benchmarks).
    pub store_probe: Option<Arc<StoreProbe>>,
    /// Who may use the platform.
    pub auth: UpAuth,
    /// Serve the HTTP port, and the MQTT gate's device port, over TLS with this certificate
    /// (the platform's own services and simulator then use second, plain listeners on free
    /// loopback ports).
    pub tls: Option<TlsFiles>,
    /// Which of the traces started here (device messages, events posted without a trace,
    /// commands) are recorded.
    pub trace_sampler: TraceSampler,
    /// Faults a soak injects (store outage, link stall, replica kill).
    #[cfg(feature = "bench")]
    pub faults: Option<crate::faults::Faults>,
}

impl std::fmt::Debug for UpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpOptions")
            .field("http_port", &self.http_port)
            .field("mqtt", &self.mqtt)
            .field("store", &self.store)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("processes", &self.processes)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("trace_sampler", &self.trace_sampler)
            .finish_non_exhaustive()
    }
}

impl UpOptions {
    /// Defaults for `project_dir`: embedded MQTT on the MQTT port, embedded store and
    /// credentials under `<project>/.ktwin/`, HTTP on 8080, at most 4 replicas per service.
    pub fn new(project_dir: &Path) -> Self {
        Self {
            parameters: BTreeMap::new(),
            http_port: 8080,
            mqtt: MqttChoice::Embedded {
                port: ktwin_events::MQTT_PORT,
            },
            store: BackendChoice::Embedded(project_dir.join(".ktwin").join("store")),
            replica_cap: 4,
            ready_timeout: Duration::from_secs(300),
            handlers: Handlers::new(),
            processes: false,
            console: Console::plain(),
            store_probe: None,
            auth: UpAuth::Local(project_dir.join(".ktwin").join("auth")),
            tls: None,
            trace_sampler: TraceSampler::default(),
            #[cfg(feature = "bench")]
            faults: None,
        }
    }
}

/// One running service of the platform.
struct RunningService {
    name: String,
    subscription: String,
    endpoint: Arc<dyn ServiceEndpoint>,
    counters: Arc<DeliveryCounters>,
    kind: &'static str,
}

/// Live figures of the platform (the status line, tests, the e2e benchmark).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlatformStats {
    /// Events published on the broker so far (device events, emitted events).
    pub published: u64,
    /// Device messages turned into events.
    pub ingested: u64,
    /// Device messages dead-lettered by the ingress dispatcher.
    pub rejected: u64,
    /// Events sent to devices.
    pub sent_to_devices: u64,
    /// Events waiting or unacknowledged per subscription.
    pub queue_depths: BTreeMap<String, usize>,
    /// Per service: replicas, in-flight and waiting events.
    pub services: BTreeMap<String, PoolStats>,
    /// Failed deliveries to services (each one redelivered or dead-lettered).
    pub failed_deliveries: u64,
}

impl PlatformStats {
    /// Services with at least one replica.
    pub fn services_up(&self) -> usize {
        self.services.values().filter(|s| s.replicas > 0).count()
    }

    /// Events held by all subscriptions.
    pub fn queued(&self) -> usize {
        self.queue_depths.values().sum()
    }
}

/// The running platform.
pub struct Platform {
    /// Where the HTTP APIs listen.
    pub http: SocketAddr,
    /// Whether [`Platform::http`] speaks TLS.
    pub https: bool,
    /// Where devices connect.
    pub mqtt: MqttAddress,
    /// Whether devices connect to [`Platform::mqtt`] over TLS.
    pub mqtts: bool,
    /// Where the platform's own simulator connects: [`Platform::mqtt`], or with TLS a plain
    /// loopback listener of the gate (same credentials and topic rights).
    pub mqtt_local: MqttAddress,
    /// The planned project.
    pub planned: PlannedProject,
    access: PlatformAccess,
    mqtt_refusals: Option<Arc<Refusals>>,
    broker: MemoryBroker,
    bus: Arc<CountingBroker>,
    backend: Arc<dyn Backend>,
    services: Vec<RunningService>,
    store_subscription: Option<String>,
    ingress: Arc<IngressCounters>,
    egress: Arc<EgressCounters>,
    /// Device messages the embedded broker dropped before its link read them.
    link_dropped: Option<Arc<AtomicU64>>,
    readiness: Readiness,
    stages: Stages,
}

/// The platform's tasks by the stage of shutdown that stops them, in that order: device
/// messages in, then the subscriptions' consumers, then the HTTP APIs, then the store's writer
/// (which ends once every handle on the ingestor is gone).
struct Stages {
    stop_ingress: CancellationToken,
    ingress: TaskGroup,
    stop_consumers: CancellationToken,
    consumers: TaskGroup,
    stop_http: CancellationToken,
    http: TaskGroup,
    ingest: TaskGroup,
}

impl Stages {
    fn new() -> Self {
        Self {
            stop_ingress: CancellationToken::new(),
            ingress: TaskGroup::new("ingress"),
            stop_consumers: CancellationToken::new(),
            consumers: TaskGroup::new("consumers"),
            stop_http: CancellationToken::new(),
            http: TaskGroup::new("http"),
            ingest: TaskGroup::new("store writer"),
        }
    }
}

/// The platform while [`Platform::start`] assembles it: what each `start_*` step wires into.
struct Assembly<'a> {
    planned: &'a PlannedProject,
    options: &'a UpOptions,
    broker: MemoryBroker,
    bus: Arc<CountingBroker>,
    stages: Stages,
}

impl Platform {
    /// Starts everything for `planned`; returns once devices can publish and the APIs answer.
    pub async fn start(planned: PlannedProject, options: UpOptions) -> Result<Self, UpError> {
        let mut parts = Assembly::new(&planned, &options);
        let access = parts.prepare_access()?;
        let mqtt = parts.start_mqtt(&access).await?;
        #[cfg(feature = "bench")]
        let mut mqtt = mqtt;
        #[cfg(feature = "bench")]
        if let (Some(faults), Some(link)) = (&options.faults, mqtt.link.as_mut()) {
            link.stalled_by(faults.link_stall());
        }
        let link_dropped = mqtt.link.as_ref().map(LinkSource::dropped);
        let (backend, ingestor) = parts.start_store().await?;
        let readiness = Readiness::new();
        // HTTP first: child services are pointed at it.
        let (http, internal_http) = parts
            .start_http(&backend, &ingestor, &readiness, &access)
            .await?;
        if access.credentials.is_none() {
            let mut listeners = vec![http, internal_http];
            listeners.extend(mqtt.embedded_listener);
            ktwin_auth::local::loopback_only(&listeners)?;
        }
        // Readiness follows the event store: false once a permanent failure halts ingestion.
        tokio::spawn(ktwin_store::keep_readiness(
            backend.clone(),
            ingestor.clone(),
            readiness.clone(),
            parts.stages.stop_ingress.clone(),
        ));
        let store_subscription = parts
            .start_store_feed(ingestor, mqtt.device_acks.clone())
            .await?;
        let egress = parts.start_egress(&mqtt).await?;
        let services = parts
            .start_services(&backend, &format!("http://{internal_http}"), &access)
            .await?;
        let ingress = parts.start_ingress(&mqtt.platform, mqtt.link);
        readiness.set_ready(true);
        let Assembly {
            broker,
            bus,
            stages,
            ..
        } = parts;
        Ok(Self {
            http,
            https: options.tls.is_some(),
            mqtts: mqtt.local_devices.is_some(),
            mqtt_local: mqtt.local_devices.unwrap_or_else(|| mqtt.devices.clone()),
            mqtt: mqtt.devices,
            planned,
            access,
            mqtt_refusals: mqtt.refusals,
            broker,
            bus,
            backend,
            services,
            store_subscription,
            ingress,
            egress,
            link_dropped,
            readiness,
            stages,
        })
    }
}

/// A listener on 127.0.0.1:`port` (0 = any free port) and its address.
async fn bind_loopback(port: u16) -> Result<(tokio::net::TcpListener, SocketAddr), UpError> {
    let bind_error = |source| UpError::HttpBind { port, source };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    Ok((listener, address))
}

/// Username of the MQTT gate (and the platform's own clients) at the embedded broker.
const GATE_USERNAME: &str = "ktwin-gate";

/// Room for a PUBLISH's header (topic, packet id) above the largest payload at the gate.
const GATE_HEADER_ROOM: usize = 64 * 1024;

/// The MQTT broker as the platform uses it.
struct MqttSetup {
    /// Where devices connect: the gate, or the broker itself.
    devices: MqttAddress,
    /// With TLS on the device port, the gate's plain loopback listener for the simulator.
    local_devices: Option<MqttAddress>,
    /// Where the platform's own clients connect, and with which login.
    platform: MqttAddress,
    platform_login: Option<(String, Secret)>,
    /// With the embedded broker, device messages come over an in-process link.
    link: Option<LinkSource>,
    /// The embedded broker's device listener (checked by `--insecure`).
    embedded_listener: Option<SocketAddr>,
    /// What the gate refused.
    refusals: Option<Arc<Refusals>>,
    /// Behind the gate, what tells it that a device message is durable (the store's feed
    /// reports to it).
    device_acks: Option<Arc<DeviceAcks>>,
}

/// Starts the embedded broker on a blocking thread, accepting only `login` if given.
/// Device messages come over its in-process link, subscribed to the fixed grammar and to the
/// `declared` telemetry filters of the project's DTDL MQTT extensions.
async fn start_embedded_broker(
    port: u16,
    login: Option<(String, Secret)>,
    declared: &[String],
) -> Result<EmbeddedMqtt, UpError> {
    let declared = declared.to_vec();
    tokio::task::spawn_blocking(move || {
        let login = login.as_ref();
        start_embedded(
            port,
            login.map(|(user, password)| (user.as_str(), password.expose())),
            &declared,
        )
    })
    .await
    .map_err(|source| UpError::Join {
        what: "embedded MQTT broker",
        source,
    })?
    .map_err(UpError::Mqtt)
}

/// What devices of each interface may use beyond ktwin's own topics: the telemetry and command
/// topics its DTDL MQTT extension declares (`{modelId}` is the interface's DTMI there).
fn declared_topics(bindings: &DeviceBindings) -> DeclaredTopics {
    let mut declared = DeclaredTopics::default();
    for binding in bindings.bindings() {
        let pattern = |topic: &Option<String>| {
            let topic = topic.as_deref()?.replace("{modelId}", &binding.model_id);
            TopicPattern::parse(&topic)
                .inspect_err(|err| {
                    tracing::warn!(interface = %binding.interface, %err, "the MQTT gate cannot allow this declared topic");
                })
                .ok()
        };
        declared.0.insert(
            binding.interface.clone(),
            InterfaceTopics {
                publish: pattern(&binding.telemetry_topic).into_iter().collect(),
                subscribe: pattern(&binding.command_topic).into_iter().collect(),
            },
        );
    }
    declared
}

impl Assembly<'_> {
    /// The route policy, local credentials and the tokens of this run.
    fn prepare_access(&self) -> Result<PlatformAccess, UpError> {
        let interfaces: BTreeSet<String> = self
            .planned
            .project
            .interfaces
            .iter()
            .filter_map(|i| i.metadata.name.clone())
            .collect();
        let services: Vec<String> = self
            .planned
            .plan
            .services()
            .map(|service| service.interface.clone())
            .collect();
        PlatformAccess::prepare(
            &self.options.auth,
            &interfaces,
            &services,
            &self.stages.stop_http,
        )
    }

    /// The MQTT broker: external, embedded and open (`--insecure`), or embedded behind the
    /// gate, which checks each device's credentials and topics against the devices file.
    async fn start_mqtt(&mut self, access: &PlatformAccess) -> Result<MqttSetup, UpError> {
        let port = match &self.options.mqtt {
            MqttChoice::External(address) => {
                return Ok(MqttSetup {
                    devices: address.clone(),
                    local_devices: None,
                    platform: address.clone(),
                    platform_login: None,
                    link: None,
                    embedded_listener: None,
                    refusals: None,
                    device_acks: None,
                });
            }
            MqttChoice::Embedded { port } => *port,
        };
        let bindings = self.planned.device_bindings();
        let declared = bindings.telemetry_filters();
        let Some(credentials) = &access.credentials else {
            let embedded = start_embedded_broker(port, None, &declared).await?;
            return Ok(MqttSetup {
                devices: embedded.address(),
                local_devices: None,
                platform: embedded.address(),
                platform_login: None,
                embedded_listener: Some(embedded.v4),
                link: Some(embedded.link),
                refusals: None,
                device_acks: None,
            });
        };
        // The gate takes the device port; the broker listens on a free port behind it.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| UpError::Mqtt(MqttError::PortTaken { port, source }))?;
        let gate_address = listener
            .local_addr()
            .map_err(|source| UpError::Mqtt(MqttError::PortTaken { port, source }))?;
        let login = (GATE_USERNAME.to_owned(), Secret::generate("gate_"));
        let mut embedded = start_embedded_broker(0, Some(login.clone()), &declared).await?;
        let stored_types = self
            .planned
            .routes
            .subscription(&Subscriber::EventStore(LOCAL_EVENT_STORE.into()))
            .map(|route| route.filter());
        let (hold, device_acks) = embedded.link.acknowledge_durably(stored_types);
        let direct = embedded.link.direct_feed();
        let devices_file = credentials.devices_file();
        let (registry, _watcher) = Reloading::watch(
            &devices_file,
            DEFAULT_RELOAD_INTERVAL,
            DeviceRegistry::parse,
            self.stages.stop_ingress.clone(),
        )
        .map_err(|source| UpError::Credentials {
            dir: credentials.dir.clone(),
            source: source.into(),
        })?;
        let upstream = Upstream {
            address: embedded.v4,
            username: login.0.clone(),
            password: login.1.clone(),
        };
        let mut gate = MqttGate::new(
            upstream,
            registry,
            declared_topics(&bindings),
            MAX_PAYLOAD + GATE_HEADER_ROOM,
        )
        .with_ack_hold(hold)
        .with_direct_feed(direct);
        if let Some(files) = &self.options.tls {
            gate = gate.with_tls(files.acceptor().map_err(UpError::Tls)?);
        }
        let gate = Arc::new(gate);
        let refusals = gate.refusals();
        let local_devices = self.start_gate_loopback(&gate).await?;
        self.stages.ingress.spawn(
            "MQTT gate",
            gate.serve(listener, self.stages.stop_ingress.clone()),
        );
        Ok(MqttSetup {
            devices: MqttAddress {
                host: gate_address.ip().to_string(),
                port: gate_address.port(),
            },
            local_devices,
            platform: embedded.address(),
            platform_login: Some(login),
            embedded_listener: Some(gate_address),
            link: Some(embedded.link),
            refusals: Some(refusals),
            device_acks: Some(device_acks),
        })
    }

    /// With TLS on the device port, a plain listener of `gate` on a free loopback port for the
    /// platform's own simulator.
    async fn start_gate_loopback(
        &mut self,
        gate: &Arc<MqttGate>,
    ) -> Result<Option<MqttAddress>, UpError> {
        if self.options.tls.is_none() {
            return Ok(None);
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .and_then(|listener| Ok((listener.local_addr()?, listener)));
        let (address, listener) =
            listener.map_err(|source| UpError::Mqtt(MqttError::PortTaken { port: 0, source }))?;
        self.stages.ingress.spawn(
            "MQTT gate (loopback)",
            Arc::clone(gate).serve_loopback(listener, self.stages.stop_ingress.clone()),
        );
        Ok(Some(MqttAddress {
            host: address.ip().to_string(),
            port: address.port(),
        }))
    }
}

impl<'a> Assembly<'a> {
    fn new(planned: &'a PlannedProject, options: &'a UpOptions) -> Self {
        let broker = MemoryBroker::new(MemoryBrokerConfig::default());
        let bus = Arc::new(CountingBroker::new(Arc::new(broker.clone())));
        Self {
            planned,
            options,
            broker,
            bus,
            stages: Stages::new(),
        }
    }

    /// The bus every publisher uses (it counts what is published).
    fn shared_bus(&self) -> Arc<dyn Broker> {
        self.bus.clone()
    }

    /// Subscribes `subscriber`'s planned route, if the plan has one.
    async fn subscribe(&self, subscriber: &Subscriber) -> Result<Option<Subscription>, UpError> {
        let Some(route) = self.planned.routes.subscription(subscriber) else {
            return Ok(None);
        };
        self.broker
            .subscribe(SubscriptionSpec::new(route.name.clone(), route.filter()))
            .await
            .map(Some)
            .map_err(|source| UpError::Subscribe {
                subscription: route.name.clone(),
                source,
            })
    }

    /// Opens the event store and starts its writer.
    async fn start_store(&mut self) -> Result<(Arc<dyn Backend>, Ingestor), UpError> {
        let choice = &self.options.store;
        let backend = choice.open().await.map_err(|source| UpError::Store {
            choice: format!("{choice:?}"),
            source,
        })?;
        #[cfg(feature = "bench")]
        let backend = match &self.options.faults {
            Some(faults) => faults.store(backend),
            None => backend,
        };
        let dead_letters = StoreDeadLetters::new(backend.clone(), DeadLetterLimits::default());
        self.broker.keep_dead_letters_in(Arc::new(dead_letters));
        let (ingestor, writer) = Ingestor::spawn(backend.clone(), IngestConfig::default());
        self.stages.ingest.adopt("store writer", writer);
        Ok((backend, ingestor))
    }

    /// Serves the store and graph APIs, the broker ingress and the ops routes; returns where
    /// (the port asked for, and where the platform's own services call: the same, or with TLS
    /// a plain listener on a free loopback port).
    async fn start_http(
        &mut self,
        backend: &Arc<dyn Backend>,
        ingestor: &Ingestor,
        readiness: &Readiness,
        access: &PlatformAccess,
    ) -> Result<(SocketAddr, SocketAddr), UpError> {
        let acceptor = match &self.options.tls {
            Some(files) => Some(files.acceptor().map_err(UpError::Tls)?),
            None => None,
        };
        let port = self.options.http_port;
        let (listener, http) = bind_loopback(port).await?;
        let app = self.http_app(backend, ingestor, readiness, access).await?;
        let Some(acceptor) = acceptor else {
            self.serve_plain(listener, app.clone());
            return Ok((http, http));
        };
        let (internal, internal_http) = bind_loopback(0).await?;
        self.serve_plain(internal, app.clone());
        let stop = self.stages.stop_http.clone();
        self.stages.http.spawn(
            "HTTPS server",
            ktwin_auth::tls::serve_https(listener, acceptor, app, stop),
        );
        Ok((http, internal_http))
    }

    /// Every route of the HTTP port, behind the access layer and the service layers.
    async fn http_app(
        &self,
        backend: &Arc<dyn Backend>,
        ingestor: &Ingestor,
        readiness: &Readiness,
        access: &PlatformAccess,
    ) -> Result<axum::Router, UpError> {
        let interfaces = self
            .planned
            .project
            .interfaces
            .iter()
            .filter_map(|i| i.metadata.name.clone());
        let api = ktwin_store::router(
            backend.clone(),
            ingestor.clone(),
            ApiConfig {
                known_interfaces: KnownInterfaces::only(interfaces),
                ..ApiConfig::default()
            },
        )
        .merge(ingress_router(
            self.shared_bus(),
            self.options.trace_sampler,
        ))
        .merge(graph_router(self.planned))
        .merge(crate::event_stream::router(Arc::new(self.broker.clone())))
        .merge(
            crate::model_api::router(self.planned, self.shared_bus(), self.options.trace_sampler)
                .map_err(UpError::Models)?,
        )
        .merge(ktwin_service::ops_router(readiness.clone()));
        // The limits, timeout and problem details every ktwin service wears, outside the auth
        // layer: its refusals get problem bodies too, and a panic anywhere (dashboard included)
        // is answered and counted as `runtime`.
        Ok(ktwin_service::with_service_layers(
            "runtime",
            access.protect(api, ktwin_dashboard::router()),
        ))
    }

    fn serve_plain(&mut self, listener: tokio::net::TcpListener, app: axum::Router) {
        let stop = self.stages.stop_http.clone();
        self.stages.http.spawn("HTTP server", async move {
            if let Err(err) = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            {
                tracing::error!(%err, "HTTP server stopped");
            }
        });
    }

    /// The event store's subscription, fed to the store in batches; returns its name.
    async fn start_store_feed(
        &mut self,
        ingestor: Ingestor,
        device_acks: Option<Arc<DeviceAcks>>,
    ) -> Result<Option<String>, UpError> {
        let Some(subscription) = self
            .subscribe(&Subscriber::EventStore(LOCAL_EVENT_STORE.into()))
            .await?
        else {
            return Ok(None);
        };
        let name = subscription.name().to_owned();
        let feed = BrokerFeed::new(subscription, STORE_LINGER).quiet(STORE_QUIET);
        let feed = match self.options.store_probe.clone() {
            Some(probe) => feed.observed_by(probe),
            None => feed,
        };
        let feed = match device_acks {
            Some(acks) => feed.observed_by(acks),
            None => feed,
        };
        self.stages.consumers.spawn(
            format!("store feed {name}"),
            ktwin_store::ingest_feed(
                feed,
                ingestor,
                IngestConfig::default().max_batch,
                self.stages.stop_consumers.clone(),
            ),
        );
        Ok(Some(name))
    }

    /// Devices: virtual events back over MQTT.
    async fn start_egress(&mut self, mqtt: &MqttSetup) -> Result<Arc<EgressCounters>, UpError> {
        let login = mqtt
            .platform_login
            .as_ref()
            .map(|(user, password)| (user.clone(), password.expose().to_owned()));
        let egress = EgressDispatcher::new(
            Arc::new(MqttSink::start(
                &mqtt.platform.host,
                mqtt.platform.port,
                &format!("ktwin-up-egress-{}", std::process::id()),
                login,
            )),
            PayloadFormat::Data,
            DispatchMetrics::egress("ktwin-up", "memory"),
        )
        .bindings(self.planned.device_bindings());
        let counters = egress.counters();
        if let Some(subscription) = self.subscribe(&Subscriber::Devices).await? {
            self.stages.consumers.spawn(
                "egress to devices",
                egress.run(subscription, self.stages.stop_consumers.clone()),
            );
        }
        Ok(counters)
    }

    /// Twin services: each one's endpoint fed from its subscription.
    async fn start_services(
        &mut self,
        backend: &Arc<dyn Backend>,
        base_url: &str,
        access: &PlatformAccess,
    ) -> Result<Vec<RunningService>, UpError> {
        let graph = StaticGraph::from_json(&self.planned.graph_json()).map_err(UpError::Graph)?;
        let in_process_ctx =
            TwinContext::new(Arc::new(graph), Arc::new(StoreStates(backend.clone())));
        let mut services = Vec::new();
        for service in self.planned.plan.services() {
            let name = service.interface.clone();
            let subscriber = Subscriber::Twin(name.clone());
            if self.planned.routes.subscription(&subscriber).is_none() {
                continue;
            }
            let token = access.service_token(&name);
            let Some((endpoint, kind)) = self.endpoint(service, &in_process_ctx, base_url, token)
            else {
                continue;
            };
            #[cfg(feature = "bench")]
            let endpoint = match &self.options.faults {
                Some(faults) => faults.service(&name, endpoint),
                None => endpoint,
            };
            let Some(subscription) = self.subscribe(&subscriber).await? else {
                continue;
            };
            let counters = Arc::new(DeliveryCounters::new(&name));
            let parallelism = service.autoscaling.parallelism.unwrap_or(100) as usize;
            let subscription_name = subscription.name().to_owned();
            self.stages.consumers.spawn(
                format!("service {name}"),
                feed_service(
                    subscription,
                    endpoint.clone(),
                    self.shared_bus(),
                    parallelism,
                    counters.clone(),
                    self.stages.stop_consumers.clone(),
                ),
            );
            services.push(RunningService {
                name,
                subscription: subscription_name,
                endpoint,
                counters,
                kind,
            });
        }
        Ok(services)
    }

    /// Where `service`'s events go: its handler in-process, or a pool of its command's
    /// processes; `None` (with a warning) when it cannot run here.
    fn endpoint(
        &self,
        service: &TwinService,
        in_process_ctx: &TwinContext,
        base_url: &str,
        token: Option<&Secret>,
    ) -> Option<(Arc<dyn ServiceEndpoint>, &'static str)> {
        let name = &service.interface;
        let options = self.options;
        match self
            .planned
            .runner(name, &options.handlers, options.processes)
        {
            Runner::InProcess { handler, .. } => Some((
                Arc::new(InProcessService::new(name, handler, in_process_ctx.clone())),
                "in-process",
            )),
            Runner::Process(command) => {
                let mut env = platform_env(service, base_url);
                if let Some(token) = token {
                    env.push((
                        ktwin_events::env::TOKEN.to_owned(),
                        token.expose().to_owned(),
                    ));
                }
                let mut launcher =
                    ProcessLauncher::new(name, command, env, options.console.clone());
                launcher.ready_timeout = options.ready_timeout;
                let config = PoolConfig {
                    policy: ScalePolicy::from_autoscaling(
                        &service.autoscaling,
                        options.replica_cap,
                    ),
                    wait_timeout: options.ready_timeout + Duration::from_secs(30),
                    ..PoolConfig::default()
                };
                Some((
                    Arc::new(ServicePool::start(name, Arc::new(launcher), config)),
                    "process",
                ))
            }
            Runner::Missing(reason) => {
                options.console.print(&format!(
                    "warning: service {name}: {reason}; its events are not delivered"
                ));
                None
            }
        }
    }

    /// Devices in: MQTT → events.
    fn start_ingress(
        &mut self,
        mqtt: &MqttAddress,
        device_link: Option<LinkSource>,
    ) -> Arc<IngressCounters> {
        let known_interfaces: HashSet<String> =
            self.planned.routes.mqtt_ingress.iter().cloned().collect();
        let ingress = IngressDispatcher::new(
            self.shared_bus(),
            self.broker
                .dead_letter_sink()
                .expect("set when the store opened"),
            IngressPolicy {
                known_interfaces: Some(known_interfaces),
                bindings: self.planned.device_bindings(),
                trace_sampler: self.options.trace_sampler,
                ..IngressPolicy::default()
            },
            DispatchMetrics::ingress("ktwin-up", "memory"),
        );
        let counters = ingress.counters();
        let stop = self.stages.stop_ingress.clone();
        match device_link {
            Some(link) => self
                .stages
                .ingress
                .spawn("ingress (embedded link)", ingress.run(link, stop)),
            None => {
                let mut source_config = MqttSourceConfig::new(
                    &mqtt.host,
                    mqtt.port,
                    &format!("ktwin-up-ingress-{}", std::process::id()),
                );
                source_config.persistent_session = false;
                source_config
                    .filters
                    .extend(self.planned.device_bindings().telemetry_filters());
                self.stages.ingress.spawn(
                    "ingress (MQTT client)",
                    ingress.run(MqttSource::start(source_config), stop),
                );
            }
        }
        counters
    }
}

impl Platform {
    /// What started and where, for the start-up output.
    pub fn describe(&self) -> Vec<String> {
        let scheme = if self.https { "https" } else { "http" };
        let base = format!("{scheme}://{}", self.http);
        let mut lines = vec![
            format!(
                "project {} ({} interfaces, {} twins)",
                self.planned.project.file.name,
                self.planned.project.interfaces.len(),
                self.planned.project.instances.len()
            ),
            format!(
                "MQTT broker      {}://{}:{}  (devices publish on ktwin/real/<interface>/<instance>{})",
                if self.mqtts { "mqtts" } else { "mqtt" },
                self.mqtt.host,
                self.mqtt.port,
                match &self.access.credentials {
                    Some(credentials) if self.mqtt_refusals.is_some() => format!(
                        "; they log in with credentials of {}",
                        credentials.devices_file().display()
                    ),
                    _ => String::new(),
                }
            ),
            format!(
                "event store      {base}/api/v1/twin-events  ({} backend)",
                self.backend.name()
            ),
            format!("twin graph       {base}/api/v1/twin-graph"),
        ];
        for binding in self.planned.device_bindings().bindings() {
            let topics = [
                ("telemetry", &binding.telemetry_topic),
                ("commands", &binding.command_topic),
            ];
            let declared: Vec<String> = topics
                .iter()
                .filter_map(|(what, topic)| Some(format!("{what} on {}", topic.as_deref()?)))
                .collect();
            let refused = if binding.is_json() {
                ""
            } else {
                "; not JSON, so its messages are refused"
            };
            lines.push(format!(
                "device topics    {}: {} (payloadFormat {}{refused})",
                binding.interface,
                declared.join(", "),
                binding.payload_format
            ));
        }
        lines.extend([
            format!("dashboard        {base}/"),
            format!("broker ingress   {base}{BROKER_PATH}"),
            format!("health, metrics  {base}/health  {base}/metrics"),
        ]);
        lines.push(match &self.access.credentials {
            Some(credentials) => credentials.usage(&base),
            None => "auth OFF (--insecure): anyone on this machine may read and change the world"
                .to_owned(),
        });
        for service in &self.services {
            lines.push(format!(
                "service          {} ({}, subscription {})",
                service.name, service.kind, service.subscription
            ));
        }
        lines
    }

    /// Live figures.
    pub fn stats(&self) -> PlatformStats {
        let mut queue_depths = BTreeMap::new();
        for name in self
            .services
            .iter()
            .map(|s| s.subscription.clone())
            .chain(self.store_subscription.clone())
            .chain(
                self.planned
                    .routes
                    .subscription(&Subscriber::Devices)
                    .map(|d| d.name.clone()),
            )
        {
            if let Some(depth) = self.broker.depth(&name) {
                queue_depths.insert(name, depth);
            }
        }
        PlatformStats {
            queue_depths,
            services: self
                .services
                .iter()
                .map(|s| (s.name.clone(), s.endpoint.stats()))
                .collect(),
            failed_deliveries: self
                .services
                .iter()
                .map(|s| s.counters.nacked.load(Ordering::Relaxed))
                .sum(),
            ..self.flow()
        }
    }

    /// The counts of what flowed through the platform (no queue or service figures).
    fn flow(&self) -> PlatformStats {
        PlatformStats {
            published: self.bus.published(),
            ingested: self.ingress.dispatched(),
            rejected: self.ingress.dead_lettered(),
            sent_to_devices: self.egress.sent.load(Ordering::Relaxed),
            ..PlatformStats::default()
        }
    }

    /// The local credentials (none when auth is off).
    pub fn credentials(&self) -> Option<&LocalCredentials> {
        self.access.credentials.as_ref()
    }

    /// The simulator's MQTT login (`SimConfig::credentials`), when devices must log in.
    pub fn simulator_login(&self) -> Option<(String, String)> {
        self.credentials().map(|credentials| {
            let (username, password) = &credentials.simulator;
            (username.clone(), password.expose().to_owned())
        })
    }

    /// What the MQTT gate refused so far (none without the gate).
    pub fn mqtt_refusals(&self) -> Option<Arc<Refusals>> {
        self.mqtt_refusals.clone()
    }

    /// Device messages the embedded broker dropped before its link read them (0 with an
    /// external broker, whose own metrics tell).
    pub fn link_dropped(&self) -> u64 {
        self.link_dropped
            .as_ref()
            .map_or(0, |dropped| dropped.load(Ordering::Relaxed))
    }

    /// The event store backend (tests and benchmarks read states from it directly).
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// Waits until no subscription holds an event (or `timeout` passes); returns whether the
    /// platform went idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        // Idle twice in a row: an event being handled is still counted in its queue, but one
        // just emitted may not be published yet.
        let mut idle_checks = 0;
        while started.elapsed() < timeout {
            if self.stats().queued() == 0 {
                idle_checks += 1;
                if idle_checks >= 3 {
                    return true;
                }
            } else {
                idle_checks = 0;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Whether every service and store subscription is empty.
    fn drained(&self) -> bool {
        self.services
            .iter()
            .map(|s| s.subscription.as_str())
            .chain(self.store_subscription.as_deref())
            .all(|name| self.broker.depth(name).unwrap_or(0) == 0)
    }

    /// Stops cleanly: no new device messages, lets queued events finish (up to `drain`), stops
    /// services (replicas finish what they hold), keeps what is still queued as dead letters
    /// (reason [`SHUTDOWN_REASON`]; `ktwin dead-letters replay` brings them back), flushes the
    /// store, closes the APIs.
    pub async fn shutdown(mut self, drain: Duration) -> PlatformStats {
        self.readiness.set_ready(false);
        self.stages.stop_ingress.cancel();
        self.stages.ingress.join().await;
        let started = Instant::now();
        while !self.drained() && started.elapsed() < drain {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let drained = self.drained();
        // Second handles on the subscriptions, so that their queues outlive the consumers.
        let keepers = if drained {
            Vec::new()
        } else {
            self.keep_queues().await
        };
        let stats = self.flow();
        self.stages.stop_consumers.cancel();
        // Deliveries waiting for a replica fail now (and go back to their queues) rather than
        // when their wait times out.
        futures::future::join_all(self.services.iter().map(|s| s.endpoint.shutdown())).await;
        self.stages.consumers.join().await;
        if !drained {
            keep_as_dead_letters(&self.broker, keepers, drain).await;
        }
        self.stages.stop_http.cancel();
        self.stages.http.join().await;
        self.stages.ingest.join().await;
        stats
    }

    /// A second handle on every service and store subscription.
    async fn keep_queues(&self) -> Vec<Subscription> {
        let names: HashSet<&str> = self
            .services
            .iter()
            .map(|s| s.subscription.as_str())
            .chain(self.store_subscription.as_deref())
            .collect();
        let mut keepers = Vec::new();
        for route in &self.planned.routes.subscriptions {
            if !names.contains(route.name.as_str()) {
                continue;
            }
            let spec = SubscriptionSpec::new(route.name.clone(), route.filter());
            match self.broker.subscribe(spec).await {
                Ok(keeper) => keepers.push(keeper),
                Err(err) => {
                    tracing::error!(subscription = %route.name, %err, "cannot keep the subscription's queue at shutdown")
                }
            }
        }
        keepers
    }
}

/// Reason of the dead letters [`Platform::shutdown`] keeps the events still queued in.
pub const SHUTDOWN_REASON: &str = "shutdown";

/// Counter of the events [`Platform::shutdown`] kept as dead letters, by subscription.
pub const SHUTDOWN_DEAD_LETTERS_METRIC: &str = "ktwin_up_shutdown_dead_letters_total";

/// Dead-letters every event still queued in `keepers` (into the store: the broker's sink),
/// counted and logged; what the store refuses (the sink puts it back in its queue) is logged
/// as lost.
async fn keep_as_dead_letters(broker: &MemoryBroker, keepers: Vec<Subscription>, drain: Duration) {
    use futures::FutureExt as _;
    for mut keeper in keepers {
        let mut queued = Vec::new();
        // Everything is settled by now: what is queued is ready at once.
        while keeper
            .recv_into(&mut queued, usize::MAX)
            .now_or_never()
            .is_some_and(|n| n > 0)
        {}
        if queued.is_empty() {
            continue;
        }
        let name = keeper.name().to_owned();
        let total = queued.len();
        for delivery in queued {
            if let Err(err) = delivery.dead_letter(SHUTDOWN_REASON).await {
                tracing::error!(subscription = %name, %err, "dead-lettering an event queued at shutdown failed");
            }
        }
        let lost = broker.depth(&name).unwrap_or(0);
        let kept = total.saturating_sub(lost);
        metrics::counter!(SHUTDOWN_DEAD_LETTERS_METRIC, "subscription" => name.clone())
            .increment(kept as u64);
        tracing::warn!(
            subscription = %name,
            kept,
            ?drain,
            "events still queued after the drain period are kept as dead letters (reason \"shutdown\"): `ktwin dead-letters replay` delivers them again"
        );
        if lost > 0 {
            tracing::error!(subscription = %name, lost, "events queued at shutdown that the store did not take as dead letters are lost");
        }
    }
}

/// The planned platform variables of a service, with endpoints resolved to this runtime.
pub fn platform_env(service: &TwinService, base_url: &str) -> Vec<(String, String)> {
    service
        .env
        .iter()
        .filter_map(|var| {
            let value = match &var.value {
                EnvValue::Literal(value) => value.clone(),
                EnvValue::Endpoint(Endpoint::Broker) => format!("{base_url}{BROKER_PATH}"),
                EnvValue::Endpoint(Endpoint::EventStore) => base_url.to_owned(),
                EnvValue::Endpoint(Endpoint::Graph) => format!("{base_url}/api/v1/twin-graph"),
                EnvValue::Endpoint(Endpoint::BrokerExchange) => "memory".to_owned(),
                // No RabbitMQ locally: AMQP clients have nothing to connect to.
                EnvValue::Endpoint(Endpoint::Amqp) => return None,
                EnvValue::SecretKey { name, key } => {
                    tracing::warn!(variable = %var.name, secret = %name, %key, "secrets do not exist locally; variable not set");
                    return None;
                }
            };
            Some((var.name.clone(), value))
        })
        .collect()
}

/// The twin graph API (`ktwin-graph`) over the project's instances.
fn graph_router(planned: &PlannedProject) -> axum::Router {
    let state = ktwin_graph::GraphState::new();
    state.publish(planned.project.instance_graph.clone());
    ktwin_graph::router(state)
}
