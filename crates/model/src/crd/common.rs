//! Pieces shared by several ktwin resources: phases, conditions, autoscaling and schema helpers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Coarse lifecycle phase, kept because the original v0 API exposed one; the conditions carry
/// the detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted, children not ready yet.
    Pending,
    /// The controller could not tell (e.g. a dependency is unreachable).
    Unknown,
    /// Every child is ready.
    Running,
    /// Reconciliation failed; see the conditions.
    Failed,
}

/// Knative autoscaler metric (`autoscaling.knative.dev/metric`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutoScalerMetric {
    /// In-flight requests per pod (the Knative default).
    #[default]
    Concurrency,
    /// Requests per second per pod.
    Rps,
    /// CPU utilisation (HPA class).
    Cpu,
    /// Memory utilisation (HPA class).
    Memory,
}

/// Autoscaling of a serverless twin service or of the event store (Knative annotations plus
/// the eventing-rabbitmq dispatcher parallelism). Absent fields keep the platform defaults;
/// unlike the original, setting one field does not silently force `maxScale: 1`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.minScale) || !has(self.maxScale) || self.maxScale == 0 || self.minScale <= self.maxScale"
).message("minScale must be less than or equal to maxScale"))]
pub struct AutoScaling {
    /// Minimum number of pods (0 allows scale to zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_scale: Option<i32>,
    /// Maximum number of pods (0 means unbounded, as in Knative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_scale: Option<i32>,
    /// Target value of the metric per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target: Option<i32>,
    /// Percentage of the target at which to scale up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_utilization_percentage: Option<i32>,
    /// Concurrent deliveries of the trigger dispatcher (prefetch); eventing-rabbitmq's webhook
    /// accepts 1–1000 (`pkg/apis/eventing/v1alpha1/trigger_validation.go`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: Option<i32>,
    /// Scaling metric; Knative's default is `concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<AutoScalerMetric>,
}

/// Condition type every ktwin resource reports: the resource is fully reconciled and usable.
pub const CONDITION_READY: &str = "Ready";

/// Adds the Kubernetes list-map markers to a `conditions` array so server-side apply merges
/// conditions by `type` instead of replacing the list.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
