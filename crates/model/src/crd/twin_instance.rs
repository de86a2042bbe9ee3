//! `dtd.ktwin/v0` TwinInstance: one concrete twin and its relationships.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Phase, conditions_schema};

/// Desired state of a TwinInstance (v0 field names).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dtd.ktwin",
    version = "v0",
    kind = "TwinInstance",
    plural = "twininstances",
    shortname = "tin",
    category = "ktwin",
    namespaced,
    status = "TwinInstanceStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "One twin: an instance of a TwinInterface with named relationships to other instances.",
    printcolumn(name = "Interface", type_ = "string", json_path = ".spec.interface"),
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
pub struct TwinInstanceSpec {
    /// The TwinInterface this instance belongs to. Optional in the schema, as in the original
    /// v0 API (its samples have an empty spec); an instance without one is reported in its
    /// status, not refused by the API server.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 63))]
    pub interface: String,
    /// Deprecated v0 field, never populated by ktwin: endpoints are reported in the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_settings: Option<TwinInstanceEndpointSettings>,
    /// Initial property and telemetry values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<TwinInstanceData>,
    /// Outgoing relationships.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub twin_instance_relationships: Vec<TwinInstanceRelationship>,
}

/// One outgoing relationship: relationship `name` (declared on the interface or a parent) to
/// `instance`, whose interface is `interface` (or derives from the relationship target).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct TwinInstanceRelationship {
    /// Relationship name, declared on the instance's interface or one of its parents.
    #[schemars(length(min = 1))]
    pub name: String,
    /// TwinInterface of the target instance.
    #[schemars(length(min = 1, max = 63))]
    pub interface: String,
    /// Name of the target TwinInstance (in the same namespace).
    #[schemars(length(min = 1, max = 63))]
    pub instance: String,
}

/// v0 `data`: values of properties and telemetries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TwinInstanceData {
    /// Values of properties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<TwinInstanceDataValue>,
    /// Values of telemetries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telemetries: Vec<TwinInstanceDataValue>,
}

/// One value (`value` is required, as in v0).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TwinInstanceDataValue {
    /// DTMI of the property or telemetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name of the property or telemetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The value, as a string (the original CLI wrote `""`).
    pub value: String,
}

/// Deprecated v0 endpoint settings, accepted so old YAML applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinInstanceEndpointSettings {
    /// Deprecated HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_endpoint: Option<HttpEndpoint>,
    /// Deprecated MQTT endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_endpoint: Option<TopicEndpoint>,
    /// Deprecated AMQP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp_endpoint: Option<TopicEndpoint>,
}

/// An HTTP endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpEndpoint {
    /// Endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A publish/subscribe endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicEndpoint {
    /// Broker URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Topic the twin publishes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_topic: Option<String>,
    /// Topic the twin subscribes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_topic: Option<String>,
}

/// Observed state of a TwinInstance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinInstanceStatus {
    /// Coarse lifecycle phase (`Pending`, `Running`, `Failed` or `Unknown`), set by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `InterfaceResolved`, `RelationshipsResolved`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Relationships whose target instance does not exist or has the wrong interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dangling_relationships: Vec<TwinInstanceRelationship>,
    /// MQTT topic the device publishes real events on (`ktwin/real/<iface>/<instance>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_publish_topic: Option<String>,
    /// MQTT topic the device receives virtual events on (`ktwin/virtual/<iface>/<instance>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_subscribe_topic: Option<String>,
}
