//! `core.ktwin/v0` Gateway: authenticated access to the graph and event-store APIs from outside
//! the cluster. The original was an empty scaffold; this one says what to expose and how callers
//! authenticate, and there is no unauthenticated mode.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Phase, conditions_schema};

/// Desired state of a gateway.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "core.ktwin",
    version = "v0",
    kind = "Gateway",
    plural = "gateways",
    shortname = "ktgw",
    category = "ktwin",
    namespaced,
    status = "GatewayStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Authenticated HTTP access to the twin graph and event store APIs.",
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
pub struct GatewaySpec {
    /// Which APIs the gateway proxies.
    #[serde(default)]
    pub apis: GatewayApis,
    /// How callers authenticate (required: a gateway is never open).
    pub auth: GatewayAuth,
    /// How the gateway is exposed: Service type and port (default a ClusterIP on 8080).
    #[serde(default)]
    pub service: GatewayService,
    /// Number of gateway pods (default 1).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Container image; absent means the operator's configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Requests and limits of the gateway container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Serve HTTPS with this certificate; absent, the gateway speaks plain HTTP (put a
    /// TLS-terminating Ingress or load balancer in front of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTls>,
}

/// The certificate a gateway serves: a Secret of type `kubernetes.io/tls` (keys `tls.crt`
/// and `tls.key`, e.g. made by cert-manager) in the gateway's namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTls {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

fn default_replicas() -> i32 {
    1
}

fn yes() -> bool {
    true
}

/// APIs exposed under `/api/v1/...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApis {
    /// `GET /api/v1/twin-graph[/<iface>]`.
    #[serde(default = "yes")]
    pub graph: bool,
    /// `GET /api/v1/twin-events/...` (read only).
    #[serde(default = "yes")]
    pub event_store: bool,
    /// `POST /api/v1/commands/<iface>/<instance>/<command>`: publishes a command event.
    #[serde(default)]
    pub commands: bool,
}

impl Default for GatewayApis {
    fn default() -> Self {
        GatewayApis {
            graph: true,
            event_store: true,
            commands: false,
        }
    }
}

/// Bearer-token authentication: the token is read from a Secret in the gateway's namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAuth {
    /// The Secret key holding the token callers present as `Authorization: Bearer <token>`.
    pub bearer_token_secret: SecretKeyRef,
}

/// A key of a Secret in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret (default `token`).
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_token_key() -> String {
    "token".to_owned()
}

/// How the gateway is exposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayService {
    /// Kubernetes Service type (default `ClusterIP`).
    #[serde(rename = "type", default)]
    pub type_: GatewayServiceType,
    /// Port the Service exposes the gateway on (default 8080).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

fn default_port() -> i32 {
    8080
}

impl Default for GatewayService {
    fn default() -> Self {
        GatewayService {
            type_: GatewayServiceType::default(),
            port: default_port(),
        }
    }
}

/// Kubernetes Service type of the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GatewayServiceType {
    /// Reachable only inside the cluster (the default).
    #[default]
    ClusterIP,
    /// Also exposed on a port of every node.
    NodePort,
    /// Also exposed through a cloud load balancer.
    LoadBalancer,
}

/// Observed state of a gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
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
    /// In-cluster URL of the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}
