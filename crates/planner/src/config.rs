//! Platform configuration the planner needs and must not hard-code: where the broker, RabbitMQ
//! cluster and credentials are, which images to run, optional node selectors and defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::Autoscaling;

/// A reference to a namespaced object; `namespace: None` means "the namespace of the twin world
/// being planned" (so several worlds can coexist, each with its own broker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Object name.
    pub name: String,
    /// Object namespace, or `None` for the world's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ObjectRef {
    /// A reference resolved in the world's namespace.
    pub fn local(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: None,
        }
    }

    /// The namespace of the referent when the world lives in `world_namespace`.
    pub fn namespace_in<'a>(&'a self, world_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(world_namespace)
    }
}

/// The image every platform component runs from when the configuration names none: the one
/// `ktwin` image of this build (each component is a subcommand of the binary).
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/ktwin/ktwin:", env!("CARGO_PKG_VERSION"));

/// Container images of the platform components, as full references (`registry/name:tag`).
/// Every component is a subcommand of the `ktwin` binary, so one image serves them all:
/// [`Images::default`] names it, and a component's own entry overrides it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    /// The `ktwin` image; absent means the operator's own image (`KTWIN_IMAGE`), else
    /// [`DEFAULT_IMAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The event store service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_store: Option<String>,
    /// The MQTT → CloudEvent dispatcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_dispatcher: Option<String>,
    /// The CloudEvent → MQTT dispatcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_event_dispatcher: Option<String>,
    /// The gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Twin services running a handler built into `ktwin` (`ktwin service <handler>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin_service: Option<String>,
}

impl Images {
    fn pick<'a>(&'a self, own: &'a Option<String>) -> &'a str {
        own.as_deref()
            .or(self.default.as_deref())
            .unwrap_or(DEFAULT_IMAGE)
    }

    /// The `ktwin` image.
    pub fn ktwin(&self) -> &str {
        self.pick(&None)
    }

    /// Image of the event store.
    pub fn event_store(&self) -> &str {
        self.pick(&self.event_store)
    }

    /// Image of the MQTT → CloudEvent dispatcher.
    pub fn mqtt_dispatcher(&self) -> &str {
        self.pick(&self.mqtt_dispatcher)
    }

    /// Image of the CloudEvent → MQTT dispatcher.
    pub fn cloud_event_dispatcher(&self) -> &str {
        self.pick(&self.cloud_event_dispatcher)
    }

    /// Image of the gateway.
    pub fn gateway(&self) -> &str {
        self.pick(&self.gateway)
    }

    /// Image of twin services that run a built-in handler.
    pub fn twin_service(&self) -> &str {
        self.pick(&self.twin_service)
    }
}

/// Arguments of each component's container: all components are subcommands of one binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentArgs {
    /// The event store.
    pub event_store: Vec<String>,
    /// The MQTT → CloudEvent dispatcher.
    pub mqtt_dispatcher: Vec<String>,
    /// The CloudEvent → MQTT dispatcher.
    pub cloud_event_dispatcher: Vec<String>,
    /// The gateway.
    pub gateway: Vec<String>,
}

impl Default for ComponentArgs {
    fn default() -> Self {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        Self {
            event_store: args(&["store"]),
            mqtt_dispatcher: args(&["dispatcher", "mqtt"]),
            cloud_event_dispatcher: args(&["dispatcher", "cloudevent"]),
            gateway: args(&["gateway"]),
        }
    }
}

/// Node selectors; empty by default (the original forced `ktwin-node` labels, so pods never
/// scheduled on unlabelled clusters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectors {
    /// Added to twin services (the user's own selector wins on conflicts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub twin_services: BTreeMap<String, String>,
    /// Added to core components: event store and dispatchers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub core: BTreeMap<String, String>,
}

/// Where the dispatchers read their RabbitMQ credentials: keys of one Secret, always passed by
/// `secretKeyRef` (never copied into the Deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RabbitmqSecret {
    /// Secret name (in the dispatchers' namespace).
    pub name: String,
    /// Key holding the AMQP host.
    pub host_key: String,
    /// Key holding the AMQP port.
    pub port_key: String,
    /// Key holding the user name.
    pub username_key: String,
    /// Key holding the password.
    pub password_key: String,
}

impl Default for RabbitmqSecret {
    /// The Secret the RabbitMQ cluster operator creates for cluster `rabbitmq`.
    fn default() -> Self {
        Self {
            name: "rabbitmq-default-user".into(),
            host_key: "host".into(),
            port_key: "port".into(),
            username_key: "username".into(),
            password_key: "password".into(),
        }
    }
}

/// The key of a Secret holding the platform's API token: the token the event store and the
/// graph accept (`write` on every twin) and twin services and gateways present to them. Passed
/// only by `secretKeyRef`; ktwin never writes it into a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenSecret {
    /// Secret name (in the world's namespace; `ktwin install` documents creating it).
    pub name: String,
    /// Key holding the token.
    pub key: String,
}

impl Default for ApiTokenSecret {
    fn default() -> Self {
        Self {
            name: "ktwin-api-token".into(),
            key: "token".into(),
        }
    }
}

/// Everything about the platform the planner must be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KtwinConfig {
    /// The Knative Broker events are published to. It must be in the twins' namespace (a
    /// `namespace` naming another one is refused by planning: eventing-rabbitmq looks a
    /// Trigger's broker up only in the Trigger's namespace).
    pub broker: ObjectRef,
    /// The RabbitmqCluster holding the broker's exchanges and ktwin's queues.
    pub rabbitmq_cluster: ObjectRef,
    /// The RabbitMQ virtual host.
    pub vhost: String,
    /// The topic exchange of RabbitMQ's MQTT plugin.
    pub mqtt_exchange: String,
    /// Dispatcher credentials.
    pub rabbitmq_secret: RabbitmqSecret,
    /// The platform's API token (event store and graph).
    #[serde(default)]
    pub api_token_secret: ApiTokenSecret,
    /// The EventStore twins persist to, when several exist in a world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_store: Option<String>,
    /// The MQTTTrigger whose dispatchers carry device traffic, when several exist in a world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_trigger: Option<String>,
    /// Component images.
    #[serde(default)]
    pub images: Images,
    /// Component container arguments.
    #[serde(default)]
    pub args: ComponentArgs,
    /// Optional node selectors.
    #[serde(default)]
    pub node_selectors: NodeSelectors,
    /// Autoscaling used where a TwinInterface leaves a field unset.
    pub default_autoscaling: Autoscaling,
    /// Name of the twin graph service.
    pub graph_service: String,
    /// Port the graph, event store and dispatchers listen on.
    pub service_port: u16,
    /// Path of the graph API on the graph service.
    pub graph_path: String,
    /// Path of the event-ingest API on the event store.
    pub event_store_path: String,
    /// DNS suffix of in-cluster service names.
    pub cluster_domain: String,
}

impl Default for KtwinConfig {
    /// The layout of the original KTWIN deployment, made explicit.
    fn default() -> Self {
        Self {
            broker: ObjectRef::local("ktwin"),
            rabbitmq_cluster: ObjectRef::local("rabbitmq"),
            vhost: "/".into(),
            mqtt_exchange: "amq.topic".into(),
            rabbitmq_secret: RabbitmqSecret::default(),
            api_token_secret: ApiTokenSecret::default(),
            event_store: None,
            mqtt_trigger: None,
            images: Images::default(),
            args: ComponentArgs::default(),
            node_selectors: NodeSelectors::default(),
            default_autoscaling: Autoscaling {
                min_scale: None,
                max_scale: Some(20),
                target: Some(10),
                target_utilization_percentage: Some(65),
                parallelism: Some(100),
                metric: Some(crate::plan::ScaleMetric::Concurrency),
            },
            graph_service: "ktwin-graph".into(),
            service_port: 8080,
            graph_path: "/api/v1/twin-graph".into(),
            event_store_path: "/api/v1/twin-events".into(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

impl KtwinConfig {
    /// `name` from the platform's API-token Secret.
    pub fn api_token(&self, name: &str) -> crate::plan::PlatformEnv {
        crate::plan::PlatformEnv {
            name: name.to_owned(),
            value: crate::plan::EnvValue::SecretKey {
                name: self.api_token_secret.name.clone(),
                key: self.api_token_secret.key.clone(),
            },
        }
    }

    /// The in-cluster URL of service `name` in `namespace` on the HTTP port 80 (Knative and
    /// the install bundle's Services both expose port 80).
    pub fn service_url(&self, name: &str, namespace: &str) -> String {
        format!("http://{name}.{namespace}.svc.{}", self.cluster_domain)
    }
}
