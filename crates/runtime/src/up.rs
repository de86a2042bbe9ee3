//! The composition of `ktwin up`: project → plan → the platform's pieces, wired in one process.
//!
//! Events flow: devices → MQTT (embedded rumqttd or external) → ingress dispatcher →
//! in-memory broker → one subscription per planned subscriber (twin services, the event
//! store, the egress dispatcher back to devices). Twin services answer over HTTP or in-process;
//! what they emit goes back on the broker. One HTTP port serves the store and graph APIs, the
//! broker ingress for child services, the dashboard (`/`), `/health`, `/ready` and `/metrics`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ktwin_broker::{Broker, MemoryBroker, MemoryBrokerConfig, SubscriptionSpec};
use ktwin_dispatcher::egress::PayloadFormat;
use ktwin_dispatcher::ingress::IngressPolicy;
use ktwin_dispatcher::metrics::DispatchMetrics;
use ktwin_dispatcher::{
    EgressCounters, EgressDispatcher, IngressCounters, IngressDispatcher, MemoryDeadLetters,
    MqttSink, MqttSource, MqttSourceConfig,
};
use ktwin_model::crd::{EventStore, MQTTTrigger};
use ktwin_model::project::{LoadOptions, Project};
use ktwin_planner::{Endpoint, EnvValue, KtwinConfig, Plan, PlanInput, Subscriber, TwinService};
use ktwin_sdk::{StaticGraph, TwinContext, TwinHandler};
use ktwin_service::Readiness;
use ktwin_store::broker::BrokerFeed;
use ktwin_store::{ApiConfig, Backend, BackendChoice, IngestConfig, Ingestor, KnownInterfaces};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::autoscale::ScalePolicy;
use crate::bus::{BROKER_PATH, CountingBroker, StoreProbe, StoreStates, ingress_router};
use crate::console::Console;
use crate::mqtt::{MqttAddress, start_embedded};
use crate::pool::{PoolConfig, PoolStats, ServicePool};
use crate::process::{ProcessLauncher, ServiceCommand};
use crate::routes::LocalRoutes;
use crate::service::{DeliveryCounters, InProcessService, ServiceEndpoint, feed_service};

/// Name of the EventStore the local platform provides.
pub const LOCAL_EVENT_STORE: &str = "ktwin-event-store";
/// Name of the MQTTTrigger the local platform provides.
pub const LOCAL_MQTT_TRIGGER: &str = "ktwin-mqtt";

/// How long the event store's feed waits to fill a batch (one commit) after its first event.
/// A commit costs a journal write and an `fdatasync` whatever its size, so at a few thousand
/// events a second fewer, larger commits save CPU: 25 ms instead of 10 ms used about 7 % less
/// of the platform's CPU at 20 neighborhoods, for some 8 ms more median latency
/// (`docs/benchmarks.md`).
const STORE_LINGER: Duration = Duration::from_millis(25);

/// A store batch ends early once no event came for this long: at a hundred events a second
/// the whole linger only delayed each event (1 neighborhood: median 28 ms with it, 13 ms with
/// this), while at 20 neighborhoods events come far more often than this.
const STORE_QUIET: Duration = Duration::from_millis(10);

/// A project loaded and planned, ready to run or to report on (`--check`).
#[derive(Debug, Clone)]
pub struct PlannedProject {
    /// The loaded project.
    pub project: Project,
    /// Its plan, with the local event store and dispatchers.
    pub plan: Plan,
    /// The plan's routing as local broker subscriptions.
    pub routes: LocalRoutes,
}

impl PlannedProject {
    /// Loads `dir` with world `parameters` (e.g. `neighborhoods=1`) and plans it with one
    /// event store and one pair of dispatchers, as the local platform has.
    pub fn load(dir: &Path, parameters: &BTreeMap<String, u64>) -> anyhow::Result<Self> {
        let project = Project::load_with(
            dir,
            &LoadOptions {
                parameters: parameters.clone(),
            },
        )
        .with_context(|| format!("loading project {}", dir.display()))?;
        let plan = ktwin_planner::plan(&plan_input(&project)?, &KtwinConfig::default())
            .with_context(|| format!("planning project {}", dir.display()))?;
        let routes = LocalRoutes::realize(&plan);
        Ok(Self {
            project,
            plan,
            routes,
        })
    }

    /// The local command of `interface`'s service, if the project gives one.
    pub fn command(&self, interface: &str) -> Option<ServiceCommand> {
        let settings = self.project.services.get(interface)?;
        let (program, args) = settings.command.split_first()?;
        let program = if program.contains('/') {
            self.project.root.join(program)
        } else {
            PathBuf::from(program)
        };
        let mut command = ServiceCommand::new(program)
            .args(args.iter().cloned())
            .cwd(&self.project.root);
        for (name, value) in &settings.env {
            command = command.env(name, value);
        }
        Some(command)
    }

    /// The twin graph as the graph API serves it (`{"twinInstances":[…]}`).
    pub fn graph_json(&self) -> String {
        serde_json::to_string(&self.project.instance_graph.to_json()).expect("graphs serialize")
    }

    /// How `ktwin up` runs `interface`'s service, given the `handlers` built into this binary:
    /// the project's `handler` in-process when available (unless `processes`), else its
    /// `command` as child processes.
    pub fn runner(&self, interface: &str, handlers: &Handlers, processes: bool) -> Runner {
        let settings = self.project.services.get(interface);
        let wanted = settings.and_then(|s| s.handler.as_deref());
        if let Some((name, handler)) = wanted
            .filter(|_| !processes)
            .and_then(|name| Some((name, handlers.get(name)?)))
        {
            return Runner::InProcess {
                handler_name: name.to_owned(),
                handler: handler.clone(),
            };
        }
        match self.command(interface) {
            Some(command) => Runner::Process(command),
            None => Runner::Missing(match wanted {
                Some(name) if processes => format!(
                    "--processes runs services as their `command`, and it has none (handler {name:?})"
                ),
                Some(name) => format!(
                    "this ktwin binary has no handler {name:?} (it has: {}) and the service has no `command`",
                    handler_list(handlers)
                ),
                None => format!(
                    "no `handler` or `command` in {}: it will not run locally",
                    ktwin_model::project::PROJECT_FILE
                ),
            }),
        }
    }

    /// What `--check` reports: one line per finding.
    pub fn check_report(&self, handlers: &Handlers, processes: bool) -> Vec<String> {
        let mut lines = vec![format!(
            "project {:?}: {} interfaces, {} instances, {} services, {} routes, {} subscriptions",
            self.project.file.name,
            self.project.interfaces.len(),
            self.project.instances.len(),
            self.plan.services().count(),
            self.plan.routes().count(),
            self.routes.subscriptions.len(),
        )];
        for service in self.plan.services() {
            let name = &service.interface;
            match self.runner(name, handlers, processes) {
                Runner::InProcess { handler_name, .. } => {
                    lines.push(format!("service {name}: in-process handler {handler_name}"));
                }
                Runner::Process(command) => {
                    lines.push(format!("service {name}: `{}`", command.display()));
                }
                Runner::Missing(reason) => lines.push(format!("warning: service {name}: {reason}")),
            }
            if let Some(note) = ScalePolicy::metric_note(&service.autoscaling) {
                lines.push(format!("warning: service {name}: {note}"));
            }
        }
        for diagnostic in &self.plan.diagnostics {
            lines.push(format!(
                "note: {}: {}",
                diagnostic.object, diagnostic.message
            ));
        }
        for problem in self
            .project
            .instance_graph
            .problems(&self.project.interface_graph)
        {
            lines.push(format!("warning: {problem}"));
        }
        lines
    }
}

/// SDK handlers built into a binary, by the name a project's `handler` setting uses.
pub type Handlers = BTreeMap<String, Arc<dyn TwinHandler>>;

fn handler_list(handlers: &Handlers) -> String {
    if handlers.is_empty() {
        "none".to_owned()
    } else {
        handlers.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// How one twin service runs locally.
pub enum Runner {
    /// An SDK handler mounted in the platform's process.
    InProcess {
        /// The handler's registered name.
        handler_name: String,
        /// The handler.
        handler: Arc<dyn TwinHandler>,
    },
    /// Child processes of this command, autoscaled.
    Process(ServiceCommand),
    /// Neither: why.
    Missing(String),
}

/// The planner's input for a project run locally: its interfaces and instances, plus the one
/// event store and MQTT trigger `ktwin up` always provides.
pub fn plan_input(project: &Project) -> anyhow::Result<PlanInput> {
    let namespace = project.file.namespace.clone();
    let object = |api: &str, kind: &str, name: &str| {
        serde_json::json!({
            "apiVersion": api,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {},
        })
    };
    let event_store: EventStore =
        serde_json::from_value(object("core.ktwin/v0", "EventStore", LOCAL_EVENT_STORE))?;
    let mqtt_trigger: MQTTTrigger =
        serde_json::from_value(object("core.ktwin/v0", "MQTTTrigger", LOCAL_MQTT_TRIGGER))?;
    Ok(PlanInput {
        namespace: namespace.clone(),
        interfaces: project.interfaces.clone(),
        instances: project.instances.clone(),
        event_stores: vec![event_store],
        mqtt_triggers: vec![mqtt_trigger],
        gateways: Vec::new(),
    })
}

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
}

impl std::fmt::Debug for UpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpOptions")
            .field("http_port", &self.http_port)
            .field("mqtt", &self.mqtt)
            .field("store", &self.store)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("processes", &self.processes)
            .finish_non_exhaustive()
    }
}

impl UpOptions {
    /// Defaults for `project_dir`: embedded MQTT on 1883, embedded store under
    /// `<project>/.ktwin/`, HTTP on 8080, at most 4 replicas per service.
    pub fn new(project_dir: &Path) -> Self {
        Self {
            parameters: BTreeMap::new(),
            http_port: 8080,
            mqtt: MqttChoice::Embedded { port: 1883 },
            store: BackendChoice::Embedded(project_dir.join(".ktwin").join("store")),
            replica_cap: 4,
            ready_timeout: Duration::from_secs(300),
            handlers: Handlers::new(),
            processes: false,
            console: Console::plain(),
            store_probe: None,
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
    /// Where devices connect.
    pub mqtt: MqttAddress,
    /// The planned project.
    pub planned: PlannedProject,
    broker: MemoryBroker,
    bus: Arc<CountingBroker>,
    backend: Arc<dyn Backend>,
    services: Vec<RunningService>,
    store_subscription: Option<String>,
    ingress: Arc<IngressCounters>,
    egress: Arc<EgressCounters>,
    readiness: Readiness,
    stop_ingress: CancellationToken,
    stop_consumers: CancellationToken,
    stop_http: CancellationToken,
    ingress_task: JoinHandle<()>,
    consumer_tasks: Vec<JoinHandle<()>>,
    http_task: JoinHandle<()>,
    ingest_task: JoinHandle<()>,
}

impl Platform {
    /// Starts everything for `planned`; returns once devices can publish and the APIs answer.
    pub async fn start(planned: PlannedProject, options: UpOptions) -> anyhow::Result<Self> {
        let console = options.console.clone();
        // With the embedded broker, device messages come over an in-process link.
        let (mqtt, device_link) = match &options.mqtt {
            MqttChoice::Embedded { port } => {
                let port = *port;
                let embedded = tokio::task::spawn_blocking(move || start_embedded(port))
                    .await?
                    .map_err(anyhow::Error::msg)?;
                (embedded.address(), Some(embedded.link))
            }
            MqttChoice::External(address) => (address.clone(), None),
        };

        let broker = MemoryBroker::new(MemoryBrokerConfig::default());
        let bus = Arc::new(CountingBroker::new(Arc::new(broker.clone())));
        let shared_bus: Arc<dyn Broker> = bus.clone();

        let backend = options
            .store
            .open()
            .await
            .with_context(|| format!("opening the event store ({:?})", options.store))?;
        let (ingestor, ingest_task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
        let interfaces: BTreeSet<String> = planned
            .project
            .interfaces
            .iter()
            .filter_map(|i| i.metadata.name.clone())
            .collect();

        // HTTP first: child services are pointed at it.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.http_port))
            .await
            .with_context(|| format!("binding the HTTP port 127.0.0.1:{}", options.http_port))?;
        let http = listener.local_addr()?;
        let readiness = Readiness::new();
        let app = ktwin_store::router(
            backend.clone(),
            ingestor.clone(),
            ApiConfig {
                known_interfaces: KnownInterfaces::only(interfaces.iter().cloned()),
                ..ApiConfig::default()
            },
        )
        .merge(ingress_router(shared_bus.clone()))
        .merge(graph_router(&planned))
        .merge(ktwin_dashboard::router())
        .merge(ktwin_service::ops_router(readiness.clone()));
        let stop_http = CancellationToken::new();
        let http_stop = stop_http.clone();
        let http_task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(http_stop.cancelled_owned())
                .await
            {
                tracing::error!(%err, "HTTP server stopped");
            }
        });
        let base = format!("http://{http}");

        let stop_consumers = CancellationToken::new();
        let mut consumer_tasks = Vec::new();

        // The event store's subscription.
        let mut store_subscription = None;
        if let Some(store) = planned
            .routes
            .subscription(&Subscriber::EventStore(LOCAL_EVENT_STORE.into()))
        {
            let subscription = broker
                .subscribe(SubscriptionSpec::new(store.name.clone(), store.filter()))
                .await?;
            store_subscription = Some(store.name.clone());
            let feed = BrokerFeed::new(subscription, STORE_LINGER).quiet(STORE_QUIET);
            consumer_tasks.push(tokio::spawn(ktwin_store::ingest_feed(
                match options.store_probe.clone() {
                    Some(probe) => feed.observed_by(probe),
                    None => feed,
                },
                ingestor.clone(),
                IngestConfig::default().max_batch,
                stop_consumers.clone(),
            )));
        }
        drop(ingestor);

        // Devices: virtual events back over MQTT.
        let egress = EgressDispatcher::new(
            Arc::new(MqttSink::start(
                &mqtt.host,
                mqtt.port,
                &format!("ktwin-up-egress-{}", std::process::id()),
                None,
            )),
            PayloadFormat::Data,
            DispatchMetrics::egress("ktwin-up", "memory"),
        );
        let egress_counters = egress.counters();
        if let Some(devices) = planned.routes.subscription(&Subscriber::Devices) {
            let subscription = broker
                .subscribe(SubscriptionSpec::new(
                    devices.name.clone(),
                    devices.filter(),
                ))
                .await?;
            consumer_tasks.push(tokio::spawn(
                egress.run(subscription, stop_consumers.clone()),
            ));
        }

        // Twin services.
        let in_process_ctx = TwinContext::new(
            Arc::new(StaticGraph::from_json(&planned.graph_json()).context("twin graph")?),
            Arc::new(StoreStates(backend.clone())),
        );
        let mut services = Vec::new();
        for service in planned.plan.services() {
            let name = service.interface.clone();
            let Some(routes) = planned.routes.subscription(&Subscriber::Twin(name.clone())) else {
                continue;
            };
            let (endpoint, kind): (Arc<dyn ServiceEndpoint>, &'static str) =
                match planned.runner(&name, &options.handlers, options.processes) {
                    Runner::InProcess { handler, .. } => (
                        Arc::new(InProcessService::new(
                            &name,
                            handler,
                            in_process_ctx.clone(),
                        )),
                        "in-process",
                    ),
                    Runner::Process(command) => {
                        let mut launcher = ProcessLauncher::new(
                            &name,
                            command,
                            platform_env(service, &base),
                            console.clone(),
                        );
                        launcher.ready_timeout = options.ready_timeout;
                        let policy = ScalePolicy::from_autoscaling(
                            &service.autoscaling,
                            options.replica_cap,
                        );
                        let config = PoolConfig {
                            policy,
                            wait_timeout: options.ready_timeout + Duration::from_secs(30),
                            ..PoolConfig::default()
                        };
                        (
                            Arc::new(ServicePool::start(&name, Arc::new(launcher), config)),
                            "process",
                        )
                    }
                    Runner::Missing(reason) => {
                        console.print(&format!(
                            "warning: service {name}: {reason}; its events are not delivered"
                        ));
                        continue;
                    }
                };
            let subscription = broker
                .subscribe(SubscriptionSpec::new(routes.name.clone(), routes.filter()))
                .await?;
            let counters = Arc::new(DeliveryCounters::default());
            let parallelism = service.autoscaling.parallelism.unwrap_or(100) as usize;
            consumer_tasks.push(tokio::spawn(feed_service(
                subscription,
                endpoint.clone(),
                shared_bus.clone(),
                parallelism,
                counters.clone(),
                stop_consumers.clone(),
            )));
            services.push(RunningService {
                name,
                subscription: routes.name.clone(),
                endpoint,
                counters,
                kind,
            });
        }

        // Devices in: MQTT → events.
        let ingress = IngressDispatcher::new(
            shared_bus.clone(),
            Arc::new(MemoryDeadLetters::new(10_000)),
            IngressPolicy {
                known_interfaces: Some(
                    planned
                        .routes
                        .mqtt_ingress
                        .iter()
                        .cloned()
                        .collect::<HashSet<_>>(),
                ),
                ..IngressPolicy::default()
            },
            DispatchMetrics::ingress("ktwin-up", "memory"),
        );
        let ingress_counters = ingress.counters();
        let stop_ingress = CancellationToken::new();
        let ingress_task = match device_link {
            Some(link) => tokio::spawn(ingress.run(link, stop_ingress.clone())),
            None => {
                let mut source_config = MqttSourceConfig::new(
                    &mqtt.host,
                    mqtt.port,
                    &format!("ktwin-up-ingress-{}", std::process::id()),
                );
                source_config.persistent_session = false;
                tokio::spawn(ingress.run(MqttSource::start(source_config), stop_ingress.clone()))
            }
        };
        readiness.set_ready(true);

        Ok(Self {
            http,
            mqtt,
            planned,
            broker,
            bus,
            backend,
            services,
            store_subscription,
            ingress: ingress_counters,
            egress: egress_counters,
            readiness,
            stop_ingress,
            stop_consumers,
            stop_http,
            ingress_task,
            consumer_tasks,
            http_task,
            ingest_task,
        })
    }

    /// What started and where, for the start-up output.
    pub fn describe(&self) -> Vec<String> {
        let base = format!("http://{}", self.http);
        let mut lines = vec![
            format!(
                "project {} ({} interfaces, {} twins)",
                self.planned.project.file.name,
                self.planned.project.interfaces.len(),
                self.planned.project.instances.len()
            ),
            format!(
                "MQTT broker      mqtt://{}:{}  (devices publish on ktwin/real/<interface>/<instance>)",
                self.mqtt.host, self.mqtt.port
            ),
            format!(
                "event store      {base}/api/v1/twin-events  ({} backend)",
                self.backend.name()
            ),
            format!("twin graph       {base}/api/v1/twin-graph"),
            format!("dashboard        {base}/"),
            format!("broker ingress   {base}{BROKER_PATH}"),
            format!("health, metrics  {base}/health  {base}/metrics"),
        ];
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
            published: self.bus.published(),
            ingested: self.ingress.dispatched(),
            rejected: self.ingress.dead_lettered(),
            sent_to_devices: self.egress.sent.load(std::sync::atomic::Ordering::Relaxed),
            queue_depths,
            services: self
                .services
                .iter()
                .map(|s| (s.name.clone(), s.endpoint.stats()))
                .collect(),
            failed_deliveries: self
                .services
                .iter()
                .map(|s| s.counters.nacked.load(std::sync::atomic::Ordering::Relaxed))
                .sum(),
        }
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

    /// Stops cleanly: no new device messages, lets queued events finish (up to `drain`), stops
    /// services (replicas finish what they hold), flushes the store, closes the APIs.
    pub async fn shutdown(self, drain: Duration) -> PlatformStats {
        self.readiness.set_ready(false);
        self.stop_ingress.cancel();
        let _ = self.ingress_task.await;
        if !self_wait_idle(
            &self.broker,
            &self.services,
            self.store_subscription.as_deref(),
            drain,
        )
        .await
        {
            tracing::warn!(
                ?drain,
                "events still queued after the drain period; they are dropped"
            );
        }
        let stats = PlatformStats {
            published: self.bus.published(),
            ingested: self.ingress.dispatched(),
            rejected: self.ingress.dead_lettered(),
            sent_to_devices: self.egress.sent.load(std::sync::atomic::Ordering::Relaxed),
            ..PlatformStats::default()
        };
        self.stop_consumers.cancel();
        for task in self.consumer_tasks {
            let _ = task.await;
        }
        futures::future::join_all(self.services.iter().map(|s| s.endpoint.shutdown())).await;
        self.stop_http.cancel();
        let _ = self.http_task.await;
        let _ = self.ingest_task.await;
        stats
    }
}

/// [`Platform::wait_idle`] over parts, for use while the platform is being taken apart.
async fn self_wait_idle(
    broker: &MemoryBroker,
    services: &[RunningService],
    store: Option<&str>,
    timeout: Duration,
) -> bool {
    let names: Vec<&str> = services
        .iter()
        .map(|s| s.subscription.as_str())
        .chain(store)
        .collect();
    let started = Instant::now();
    while started.elapsed() < timeout {
        if names
            .iter()
            .all(|name| broker.depth(name).unwrap_or(0) == 0)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
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
