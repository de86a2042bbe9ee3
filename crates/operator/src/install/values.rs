//! The installation's values: one structure read by `ktwin install` and written as the Helm
//! chart's `values.yaml`, so both expose the same settings with the same defaults.
//!
//! The bundle is built against a [`Source`] of values: [`Source::Values`] yields them,
//! [`Source::Chart`] yields Helm template expressions naming them, which is how the chart's
//! templates are generated from the same code as `ktwin install --render`.

use std::cell::RefCell;

use k8s_openapi::api::core::v1::ResourceRequirements;
use ktwin_model::crd::{EventStoreSpec, MQTTTriggerSpec};
use ktwin_planner::KtwinConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The operator's namespace when none is given.
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "ktwin-system";
/// The twin world's namespace when none is given.
pub const DEFAULT_WORLD_NAMESPACE: &str = "ktwin";

/// Everything an installation can set (the chart's `values.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstallValues {
    /// Namespace of the twin world: broker, twin services, event store, dispatchers, graph.
    pub namespace: String,
    /// Create the world's namespace (leave false when it exists or is the release namespace).
    pub create_namespace: bool,
    /// The `ktwin` image: the operator, and every component the configuration names no image for.
    pub image: ImageValues,
    /// The operator Deployment.
    pub operator: OperatorValues,
    /// The twin graph service.
    pub graph: GraphValues,
    /// The world's EventStore.
    pub event_store: EventStoreValues,
    /// The world's MQTTTrigger.
    pub mqtt_trigger: MqttTriggerValues,
    /// The NetworkPolicy admitting only the platform's own flows to the world's pods.
    pub network_policy: NetworkPolicyValues,
    /// The platform configuration the operator plans with (images, broker, RabbitMQ, defaults).
    pub config: KtwinConfig,
}

/// A container image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageValues {
    /// Registry and name, e.g. `ghcr.io/ktwin/ktwin`.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// `imagePullPolicy` of every platform container.
    pub pull_policy: String,
}

impl ImageValues {
    /// `repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// The operator Deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorValues {
    /// Replicas; one holds the leader Lease and reconciles, the others stand by (all Ready).
    pub replicas: u32,
    /// Hold a Lease before reconciling (required with more than one replica).
    pub leader_elect: bool,
    /// Container resources.
    pub resources: ResourceRequirements,
}

/// The twin graph service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GraphValues {
    /// Replicas (each watches the TwinInstances itself).
    pub replicas: u32,
    /// Container resources.
    pub resources: ResourceRequirements,
}

/// The world's EventStore resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventStoreValues {
    /// Create it.
    pub enabled: bool,
    /// Its name (also its Service's).
    pub name: String,
    /// Its spec: without `database` the store is embedded (one replica on a volume); with
    /// `database.secretKeyRef` naming a Secret holding a PostgreSQL URL, it scales.
    pub spec: EventStoreSpec,
}

/// The world's MQTTTrigger resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MqttTriggerValues {
    /// Create it.
    pub enabled: bool,
    /// Its name.
    pub name: String,
    /// Its spec (dispatcher replicas, images, resources, queue type).
    pub spec: MQTTTriggerSpec,
}

/// The world's NetworkPolicy: every pod of the world's namespace except gateways (labelled
/// [`crate::names::LABEL_PUBLIC`]) and RabbitMQ's (devices connect to them from outside) accepts
/// connections only from pods of that namespace and of `allowNamespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyValues {
    /// Create it.
    pub enabled: bool,
    /// Other namespaces whose pods may connect: Knative's activator and the eventing
    /// dispatchers by default; add Prometheus' namespace to scrape `/metrics`.
    pub allow_namespaces: Vec<String>,
}

impl Default for NetworkPolicyValues {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_namespaces: vec!["knative-serving".into(), "knative-eventing".into()],
        }
    }
}

fn resources(cpu: (&str, &str), memory: (&str, &str)) -> ResourceRequirements {
    serde_json::from_value(json!({
        "requests": {"cpu": cpu.0, "memory": memory.0},
        "limits": {"cpu": cpu.1, "memory": memory.1},
    }))
    .unwrap_or_default()
}

impl Default for InstallValues {
    fn default() -> Self {
        let image = ktwin_planner::DEFAULT_IMAGE;
        let (repository, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        Self {
            namespace: DEFAULT_WORLD_NAMESPACE.into(),
            create_namespace: true,
            image: ImageValues {
                repository: repository.into(),
                tag: tag.into(),
                pull_policy: "IfNotPresent".into(),
            },
            operator: OperatorValues {
                replicas: 2,
                leader_elect: true,
                resources: resources(("100m", "500m"), ("128Mi", "256Mi")),
            },
            graph: GraphValues {
                replicas: 1,
                resources: resources(("50m", "500m"), ("64Mi", "256Mi")),
            },
            event_store: EventStoreValues {
                enabled: true,
                name: "event-store".into(),
                spec: EventStoreSpec::default(),
            },
            mqtt_trigger: MqttTriggerValues {
                enabled: true,
                name: "mqtt".into(),
                spec: MQTTTriggerSpec::default(),
            },
            network_policy: NetworkPolicyValues::default(),
            config: KtwinConfig::default(),
        }
    }
}

/// Where the bundle's values come from.
#[derive(Debug)]
pub enum Source<'a> {
    /// Concrete values, for `ktwin install`; the operator runs in `operator_namespace`.
    Values {
        /// The values.
        values: &'a InstallValues,
        /// The operator's namespace.
        operator_namespace: &'a str,
    },
    /// Helm template expressions, for the chart: each value is a marker replaced by its
    /// expression once the objects are serialised.
    Chart(RefCell<Vec<String>>),
}

/// A value path that names nothing in [`InstallValues`]: a bug in the bundle, caught by tests.
#[derive(Debug, thiserror::Error)]
#[error("install values have no field {0:?}")]
pub struct UnknownValue(pub String);

impl<'a> Source<'a> {
    /// A source of Helm expressions.
    pub fn chart() -> Self {
        Source::Chart(RefCell::new(Vec::new()))
    }

    fn marker(&self, expression: String) -> Value {
        match self {
            Source::Chart(expressions) => {
                let mut expressions = expressions.borrow_mut();
                expressions.push(expression);
                json!(marker(expressions.len() - 1))
            }
            Source::Values { .. } => Value::Null,
        }
    }

    fn lookup(&self, path: &str) -> Result<Value, UnknownValue> {
        let Source::Values { values, .. } = self else {
            return Ok(Value::Null);
        };
        let tree = serde_json::to_value(values).map_err(|_| UnknownValue(path.into()))?;
        let pointer = format!("/{}", path.replace('.', "/"));
        tree.pointer(&pointer)
            .cloned()
            .ok_or_else(|| UnknownValue(path.into()))
    }

    /// The value at `path` (dotted, as in the chart: `operator.replicas`).
    pub fn get(&self, path: &str) -> Result<Value, UnknownValue> {
        match self {
            Source::Values { .. } => self.lookup(path),
            Source::Chart(_) => Ok(self.marker(format!("toJson .Values.{path}"))),
        }
    }

    /// The value at `path` as a string (a container argument or variable).
    pub fn string(&self, path: &str) -> Result<Value, UnknownValue> {
        match self {
            Source::Values { .. } => Ok(match self.lookup(path)? {
                Value::String(s) => json!(s),
                other => json!(other.to_string()),
            }),
            Source::Chart(_) => Ok(self.marker(format!(".Values.{path} | toString | toJson"))),
        }
    }

    /// The value at `path` serialised as JSON text (a ConfigMap entry).
    pub fn json_text(&self, path: &str) -> Result<Value, UnknownValue> {
        match self {
            Source::Values { .. } => Ok(json!(self.lookup(path)?.to_string())),
            Source::Chart(_) => Ok(self.marker(format!(".Values.{path} | toJson | toJson"))),
        }
    }

    /// Whether the boolean at `path` holds; `None` for the chart (the object is conditional).
    pub fn enabled(&self, path: &str) -> Result<Option<bool>, UnknownValue> {
        match self {
            Source::Values { .. } => Ok(Some(self.lookup(path)? == Value::Bool(true))),
            Source::Chart(_) => Ok(None),
        }
    }

    /// The `ktwin` image reference.
    pub fn image(&self) -> Value {
        match self {
            Source::Values { values, .. } => json!(values.image.reference()),
            Source::Chart(_) => self.marker(
                r#"printf "%s:%s" .Values.image.repository .Values.image.tag | toJson"#.into(),
            ),
        }
    }

    /// The operator's namespace.
    pub fn operator_namespace(&self) -> Value {
        match self {
            Source::Values {
                operator_namespace, ..
            } => json!(operator_namespace),
            Source::Chart(_) => self.marker(".Release.Namespace | toJson".into()),
        }
    }

    /// The Helm expression of each marker, in marker order.
    pub fn expressions(&self) -> Vec<String> {
        match self {
            Source::Chart(expressions) => expressions.borrow().clone(),
            Source::Values { .. } => Vec::new(),
        }
    }
}

/// The text standing for expression `index` until the serialised template replaces it.
pub fn marker(index: usize) -> String {
    format!("__ktwin_helm_value_{index}__")
}
