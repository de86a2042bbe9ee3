//! `core.ktwin/v0` EventStore: the service persisting twin events.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AutoScaling, Phase, conditions_schema};

/// Default request timeout of the event store, in milliseconds (the value of the original
/// deployment; the original crashed when it was absent).
pub const DEFAULT_EVENT_STORE_TIMEOUT: i32 = 3000;

fn default_timeout() -> i32 {
    DEFAULT_EVENT_STORE_TIMEOUT
}

/// Desired state of the event store.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "core.ktwin",
    version = "v0",
    kind = "EventStore",
    plural = "eventstores",
    shortname = "es",
    category = "ktwin",
    namespaced,
    status = "EventStoreStatus",
    derive = "PartialEq",
    doc = "The event store service and the trigger that feeds it.",
    printcolumn(name = "Timeout", type_ = "integer", json_path = ".spec.timeout"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
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
pub struct EventStoreSpec {
    /// Scaling of the store's replicas (with `database`) and parallelism of its feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling: Option<AutoScaling>,
    /// Requests and limits of the event-store container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Requests and limits of the trigger dispatcher feeding the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatcher_resources: Option<ResourceRequirements>,
    /// Request timeout in milliseconds, passed to the store as `TIMEOUT`.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600000))]
    pub timeout: i32,
    /// PostgreSQL holding the events: the store then runs as stateless, scalable replicas.
    /// Absent, the store keeps its events in its embedded database on a PersistentVolumeClaim
    /// and runs as one replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<EventStoreDatabase>,
    /// The volume of the embedded database (ignored with `database`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<EventStoreStorage>,
}

/// A PostgreSQL database: the key of a Secret (in the store's namespace) holding its URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventStoreDatabase {
    /// The Secret holding the PostgreSQL connection URL (with its user and password).
    pub secret_key_ref: DatabaseSecretKey,
}

/// A key of a Secret in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseSecretKey {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[serde(default = "default_database_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Key of the database URL in its Secret when none is named.
pub const DEFAULT_DATABASE_KEY: &str = "url";

fn default_database_key() -> String {
    DEFAULT_DATABASE_KEY.to_owned()
}

/// The PersistentVolumeClaim of the embedded store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventStoreStorage {
    /// Requested size, a Kubernetes quantity.
    #[serde(default = "default_storage_size")]
    #[schemars(length(min = 1))]
    pub size: String,
    /// StorageClass of the claim; absent means the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Size of the embedded store's volume when none is given.
pub const DEFAULT_STORAGE_SIZE: &str = "10Gi";

fn default_storage_size() -> String {
    DEFAULT_STORAGE_SIZE.to_owned()
}

impl Default for EventStoreStorage {
    fn default() -> Self {
        EventStoreStorage {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

impl Default for EventStoreSpec {
    fn default() -> Self {
        EventStoreSpec {
            auto_scaling: None,
            resources: None,
            dispatcher_resources: None,
            timeout: DEFAULT_EVENT_STORE_TIMEOUT,
            database: None,
            storage: None,
        }
    }
}

/// Observed state of the event store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventStoreStatus {
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
    /// URL of the store API, injected into twin services as `KTWIN_EVENT_STORE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}
