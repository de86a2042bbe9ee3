//! The desired platform state: what runs and which event types reach which subscriber. It is
//! realizer-independent: the Kubernetes operator renders it into Knative/RabbitMQ objects and the
//! local runtime routes events in memory from the same description.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{PodTemplateSpec, ResourceRequirements};
use ktwin_events::{DeviceBinding, EventType};
use serde::{Deserialize, Serialize};

/// The autoscaling metric of a twin service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    /// Concurrent requests per instance.
    Concurrency,
    /// Requests per second per instance.
    Rps,
    /// CPU utilisation.
    Cpu,
    /// Memory utilisation.
    Memory,
}

impl ScaleMetric {
    /// The value Knative expects in `autoscaling.knative.dev/metric`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleMetric::Concurrency => "concurrency",
            ScaleMetric::Rps => "rps",
            ScaleMetric::Cpu => "cpu",
            ScaleMetric::Memory => "memory",
        }
    }
}

/// How a service scales; every field is optional so TwinInterface values can be layered over
/// the configured defaults field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Lowest number of instances (0 allows scale to zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_scale: Option<u32>,
    /// Highest number of instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_scale: Option<u32>,
    /// Target value of the metric per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    /// Percentage of the target at which to scale out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_utilization_percentage: Option<u32>,
    /// Events delivered concurrently to the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// The metric scaled on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<ScaleMetric>,
}

impl Autoscaling {
    /// `self`, with each unset field taken from `defaults`.
    pub fn or(&self, defaults: &Autoscaling) -> Autoscaling {
        Autoscaling {
            min_scale: self.min_scale.or(defaults.min_scale),
            max_scale: self.max_scale.or(defaults.max_scale),
            target: self.target.or(defaults.target),
            target_utilization_percentage: self
                .target_utilization_percentage
                .or(defaults.target_utilization_percentage),
            parallelism: self.parallelism.or(defaults.parallelism),
            metric: self.metric.or(defaults.metric),
        }
    }
}

/// A platform endpoint whose address only a realizer knows (a cluster URL, a local port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Endpoint {
    /// Where twin services publish CloudEvents (the broker ingress).
    Broker,
    /// The event store's base URL.
    EventStore,
    /// The twin graph API URL.
    Graph,
    /// The name of the broker's RabbitMQ exchange (for AMQP publishers).
    BrokerExchange,
    /// The AMQP URL of RabbitMQ, with credentials (for the dispatchers).
    Amqp,
}

/// The value of a platform environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EnvValue {
    /// A fixed string.
    Literal(String),
    /// The address of an endpoint, resolved by the realizer.
    Endpoint(Endpoint),
    /// A key of a Secret, passed by reference.
    SecretKey {
        /// Secret name.
        name: String,
        /// Key inside the Secret.
        key: String,
    },
}

/// One environment variable the platform sets; it replaces a user variable of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformEnv {
    /// Variable name.
    pub name: String,
    /// Variable value.
    pub value: EnvValue,
}

impl PlatformEnv {
    /// A literal variable.
    pub fn literal(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: EnvValue::Literal(value.into()),
        }
    }

    /// A variable holding an endpoint address.
    pub fn endpoint(name: &str, endpoint: Endpoint) -> Self {
        Self {
            name: name.to_owned(),
            value: EnvValue::Endpoint(endpoint),
        }
    }
}

/// The service running the virtual twins of one interface (one service serves every instance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinService {
    /// The TwinInterface name.
    pub interface: String,
    /// Namespace of the TwinInterface.
    pub namespace: String,
    /// The user's pod template, unchanged (realizers add [`TwinService::env`] to its containers).
    pub template: PodTemplateSpec,
    /// Autoscaling with defaults applied.
    pub autoscaling: Autoscaling,
    /// Platform variables set on every container, replacing user variables of the same name.
    pub env: Vec<PlatformEnv>,
    /// Node selector entries to add where the user's template has none for the key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// Who receives events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Subscriber {
    /// The twin service of an interface.
    Twin(String),
    /// The event store with this EventStore name.
    EventStore(String),
    /// Devices, over MQTT (the CloudEvent → MQTT dispatcher).
    Devices,
}

impl fmt::Display for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subscriber::Twin(interface) => write!(f, "twin/{interface}"),
            Subscriber::EventStore(name) => write!(f, "event-store/{name}"),
            Subscriber::Devices => f.write_str("devices"),
        }
    }
}

/// Why a route exists; realizers name their objects after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RoutePurpose {
    /// An interface's own real events reach its service.
    Real,
    /// A declared command reaches the interface's service (canonical lower-case name).
    Command(String),
    /// Real events of an `aggregateData` relationship's target reach the parent's service.
    AggregateReal(String),
    /// An interface's virtual events reach its devices.
    Virtual,
    /// Virtual events the parent emits for an aggregated target reach the target's devices.
    AggregateVirtual(String),
    /// Real events are persisted (`persistRealEvent`).
    PersistReal,
    /// Virtual events are persisted (`persistVirtualEvent`).
    PersistVirtual,
    /// `ktwin.store.<iface>` events are persisted.
    Store,
}

/// One route: events of `event_type` are delivered to `subscriber`, on behalf of `owner`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The interface whose declaration asks for the route; deleting it removes only its routes.
    pub owner: String,
    /// Why the route exists.
    pub purpose: RoutePurpose,
    /// The CloudEvent type routed.
    pub event_type: EventType,
    /// Who receives it.
    pub subscriber: Subscriber,
}

/// Device traffic on `ktwin/real/<interface>/#` enters the platform as `ktwin.real.<interface>`
/// events (the MQTT → CloudEvent dispatcher), on behalf of `owner`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttIngress {
    /// The interface asking for the ingress.
    pub owner: String,
    /// [`RoutePurpose::Real`] or [`RoutePurpose::AggregateReal`].
    pub purpose: RoutePurpose,
    /// The interface whose device topics are bridged.
    pub interface: String,
}

/// Everything the platform does for one TwinInterface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfacePlan {
    /// TwinInterface name.
    pub interface: String,
    /// TwinInterface namespace.
    pub namespace: String,
    /// Its service, if it declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<TwinService>,
    /// Event routes it owns, sorted.
    pub routes: Vec<Route>,
    /// Device ingress it owns, sorted.
    pub mqtt_ingress: Vec<MqttIngress>,
    /// The device topics it declares with the DTDL MQTT extension, when the world has
    /// dispatchers: its devices' telemetry topic is bridged in beside
    /// `ktwin/real/<iface>/<instance>`, and its commands also go to the declared command topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceBinding>,
}

/// The event store of a world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventStorePlan {
    /// EventStore name (also the service name).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Container image.
    pub image: String,
    /// Container arguments (the `ktwin` subcommand running the component).
    pub args: Vec<String>,
    /// Autoscaling with defaults applied.
    pub autoscaling: Autoscaling,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Resources of the event delivery component in front of it (Knative trigger dispatcher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatcher_resources: Option<ResourceRequirements>,
    /// Path events are POSTed to.
    pub ingest_path: String,
    /// Where the events are kept, which decides how the store runs.
    pub storage: StoreStorage,
    /// Environment of the store.
    pub env: Vec<PlatformEnv>,
    /// Extra node selector entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// Where an event store keeps its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StoreStorage {
    /// Its embedded database on a persistent volume: exactly one replica, with stable storage.
    Embedded {
        /// Requested volume size (a Kubernetes quantity).
        size: String,
        /// StorageClass; `None` is the cluster's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storage_class: Option<String>,
        /// Where the volume is mounted and the database lives.
        path: String,
    },
    /// PostgreSQL, whose URL is a Secret key: stateless replicas that scale.
    Database {
        /// Secret name.
        secret: String,
        /// Key of the URL in the Secret.
        key: String,
    },
}

/// Which dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DispatcherKind {
    /// MQTT device messages → CloudEvents on the broker.
    Mqtt,
    /// CloudEvents on the broker → MQTT device messages.
    CloudEvent,
}

impl DispatcherKind {
    /// The component name (`mqtt-dispatcher`, `cloud-event-dispatcher`), kept from the original
    /// so an existing cluster's queues are adopted instead of recreated.
    pub fn name(self) -> &'static str {
        match self {
            DispatcherKind::Mqtt => "mqtt-dispatcher",
            DispatcherKind::CloudEvent => "cloud-event-dispatcher",
        }
    }

    /// The queue it consumes, e.g. `mqtt-dispatcher-queue` (the original's names).
    pub fn queue(self) -> String {
        format!("{}-queue", self.name())
    }
}

/// One dispatcher: a queue it consumes and the process consuming it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatcherPlan {
    /// Which dispatcher.
    pub kind: DispatcherKind,
    /// Name of the process and its objects.
    pub name: String,
    /// The queue it consumes (routes to [`Subscriber::Devices`] / MQTT ingress land there).
    pub queue: String,
    /// Container image.
    pub image: String,
    /// Container arguments (the `ktwin` subcommand running the component).
    pub args: Vec<String>,
    /// Replicas.
    pub replicas: u32,
    /// Unacknowledged messages per consumer.
    pub prefetch: u16,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Environment.
    pub env: Vec<PlatformEnv>,
    /// Extra node selector entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// The dispatcher pair created for an MQTTTrigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchersPlan {
    /// MQTTTrigger name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The topic exchange of RabbitMQ's MQTT plugin.
    pub mqtt_exchange: String,
    /// RabbitMQ type of the dispatcher queues (`quorum` or `classic`).
    pub queue_type: String,
    /// MQTT → CloudEvent.
    pub mqtt: DispatcherPlan,
    /// CloudEvent → MQTT.
    pub cloud_event: DispatcherPlan,
    /// The device topics interfaces declare with the DTDL MQTT extension, sorted by interface
    /// (both dispatchers get them as [`ktwin_events::env::DEVICE_BINDINGS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_bindings: Vec<DeviceBinding>,
}

/// The twin graph service (installed once per world by the install bundle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphPlan {
    /// Service name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Container port.
    pub port: u16,
    /// API path.
    pub path: String,
    /// Number of TwinInstances it will serve.
    pub instances: usize,
}

/// Authenticated external access to the platform's HTTP APIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPlan {
    /// Gateway name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Container image.
    pub image: String,
    /// Container arguments (the `ktwin` subcommand running the component).
    pub args: Vec<String>,
    /// Replicas.
    pub replicas: u32,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Port it listens and is exposed on.
    pub port: u16,
    /// Kubernetes Service type (`ClusterIP`, `NodePort`, `LoadBalancer`).
    pub service_type: String,
    /// Environment: which APIs are proxied, upstream endpoints and the bearer token secret.
    pub env: Vec<PlatformEnv>,
    /// The `kubernetes.io/tls` Secret mounted at [`GATEWAY_TLS_DIR`] when it serves HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
}

/// Where a gateway's certificate Secret is mounted (its `tls.crt` and `tls.key`).
pub const GATEWAY_TLS_DIR: &str = "/etc/ktwin/tls";

/// Something in the input the platform could not honour fully (not fatal).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Diagnostic {
    /// `Kind/name` of the object concerned.
    pub object: String,
    /// What happened and what to do.
    pub message: String,
}

/// The desired platform state of one world (a namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Namespace of the world.
    pub namespace: String,
    /// The broker events flow through.
    pub broker: crate::config::ObjectRef,
    /// Per interface, sorted by name.
    pub interfaces: Vec<InterfacePlan>,
    /// The event store, if the world has an EventStore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_store: Option<EventStorePlan>,
    /// The dispatchers, if the world has an MQTTTrigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatchers: Option<DispatchersPlan>,
    /// The twin graph service.
    pub graph: GraphPlan,
    /// Gateways, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<GatewayPlan>,
    /// Non-fatal findings, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

impl Plan {
    /// Every route of every interface.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.interfaces.iter().flat_map(|i| i.routes.iter())
    }

    /// Every MQTT ingress of every interface.
    pub fn mqtt_ingress(&self) -> impl Iterator<Item = &MqttIngress> {
        self.interfaces.iter().flat_map(|i| i.mqtt_ingress.iter())
    }

    /// The plan of one interface.
    pub fn interface(&self, name: &str) -> Option<&InterfacePlan> {
        self.interfaces.iter().find(|i| i.interface == name)
    }

    /// The twin services.
    pub fn services(&self) -> impl Iterator<Item = &TwinService> {
        self.interfaces.iter().filter_map(|i| i.service.as_ref())
    }

    /// Command events that devices receive on their interface's declared MQTT command topic
    /// (through the CloudEvent → MQTT dispatcher, beside any twin service running them).
    pub fn device_commands(&self) -> impl Iterator<Item = EventType> {
        self.dispatchers
            .iter()
            .flat_map(|d| &d.device_bindings)
            .flat_map(DeviceBinding::command_event_types)
    }
}
