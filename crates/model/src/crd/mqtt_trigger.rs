//! `core.ktwin/v0` MQTTTrigger: the bridges between MQTT devices and the event broker.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Phase, conditions_schema};

/// Default AMQP prefetch of a dispatcher.
pub const DEFAULT_PREFETCH: i32 = 100;
/// Topic exchange of RabbitMQ's MQTT plugin.
pub const DEFAULT_MQTT_EXCHANGE: &str = "amq.topic";

/// Desired state of the MQTT bridge. The original spec carried nothing (`foo`); this one says
/// how the two dispatchers run.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "core.ktwin",
    version = "v0",
    kind = "MQTTTrigger",
    plural = "mqtttriggers",
    shortname = "mqtt",
    category = "ktwin",
    namespaced,
    status = "MQTTTriggerStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Bridges MQTT devices and the event broker: real events in, virtual events out.",
    printcolumn(name = "Queue", type_ = "string", json_path = ".spec.queueType"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MQTTTriggerSpec {
    /// MQTT → CloudEvents: consumes `ktwin.real.#` from the MQTT exchange, publishes to the broker.
    #[serde(default)]
    pub mqtt_dispatcher: DispatcherSpec,
    /// CloudEvents → MQTT: consumes `ktwin.virtual.*` events, publishes to device topics.
    #[serde(default)]
    pub cloud_event_dispatcher: DispatcherSpec,
    /// Type of the two dispatcher queues.
    #[serde(default)]
    pub queue_type: QueueType,
    /// Exchange the MQTT plugin publishes to and subscribes from.
    #[serde(default = "default_exchange")]
    #[schemars(length(min = 1))]
    pub exchange: String,
}

fn default_exchange() -> String {
    DEFAULT_MQTT_EXCHANGE.to_owned()
}

/// What an MQTTTrigger without `spec` (the original's) gets: the serde defaults.
impl Default for MQTTTriggerSpec {
    fn default() -> Self {
        MQTTTriggerSpec {
            mqtt_dispatcher: DispatcherSpec::default(),
            cloud_event_dispatcher: DispatcherSpec::default(),
            queue_type: QueueType::default(),
            exchange: default_exchange(),
        }
    }
}

/// How one dispatcher Deployment runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DispatcherSpec {
    /// Number of dispatcher pods (default 1; 0 stops the dispatcher).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Container image; absent means the operator's configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Requests and limits of the dispatcher container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Unacknowledged messages per consumer (AMQP prefetch).
    #[serde(default = "default_prefetch")]
    #[schemars(range(min = 1, max = 65535))]
    pub prefetch: i32,
}

fn default_replicas() -> i32 {
    1
}

fn default_prefetch() -> i32 {
    DEFAULT_PREFETCH
}

impl Default for DispatcherSpec {
    fn default() -> Self {
        DispatcherSpec {
            replicas: default_replicas(),
            image: None,
            resources: None,
            prefetch: DEFAULT_PREFETCH,
        }
    }
}

/// RabbitMQ queue type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Replicated, durable (the original's choice).
    #[default]
    Quorum,
    /// Single-node classic queue (enough for a one-node broker).
    Classic,
}

impl QueueType {
    /// The `x-queue-type` argument value.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// Observed state of the MQTT bridge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MQTTTriggerStatus {
    /// Coarse lifecycle phase (`Pending`, `Running`, `Failed` or `Unknown`), set by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions the operator reports, `Ready` among them, merged by `type`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Ready replicas of the MQTT → CloudEvents dispatcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_dispatcher_ready_replicas: Option<i32>,
    /// Ready replicas of the CloudEvents → MQTT dispatcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_event_dispatcher_ready_replicas: Option<i32>,
}
