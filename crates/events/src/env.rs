//! Names of the environment variables through which the platform configures its components.
//!
//! The planner and the operator write them into containers; the components' command lines
//! (clap `env = …`) and the SDK read them. Both sides name them through these constants, so a
//! renamed variable cannot leave a writer and a reader disagreeing.

/// Broker ingress URL twin services post CloudEvents to.
pub const BROKER: &str = "KTWIN_BROKER";
/// Root URL of the event store API.
pub const EVENT_STORE: &str = "KTWIN_EVENT_STORE";
/// URL of the twin graph API (`…/api/v1/twin-graph`).
pub const GRAPH_URL: &str = "KTWIN_GRAPH_URL";
/// A whole twin graph as JSON, used by a twin service instead of the graph service.
pub const GRAPH_JSON: &str = "KTWIN_GRAPH";
/// The TwinInterface a twin service serves.
pub const INTERFACE: &str = "KTWIN_INTERFACE";
/// The namespace of the twin world.
pub const NAMESPACE: &str = "KTWIN_NAMESPACE";
/// Whether a twin service puts one emitted event in its HTTP reply.
pub const REPLY: &str = "KTWIN_REPLY";
/// Events a twin service handles at once.
pub const MAX_CONCURRENCY: &str = "KTWIN_MAX_CONCURRENCY";
/// The port of the Knative container contract.
pub const PORT: &str = "PORT";

/// Where the graph service reads TwinInstances from (`kubernetes` or `local`).
pub const GRAPH_SOURCE: &str = "KTWIN_GRAPH_SOURCE";
/// Listen address of the graph service.
pub const GRAPH_LISTEN: &str = "KTWIN_GRAPH_LISTEN";

/// Event store backend (`embedded`, `postgres`, `redb`).
pub const STORE_BACKEND: &str = "KTWIN_STORE_BACKEND";
/// PostgreSQL URL of the event store.
pub const STORE_DATABASE_URL: &str = "KTWIN_STORE_DATABASE_URL";
/// Data directory of the embedded event store.
pub const STORE_PATH: &str = "KTWIN_STORE_PATH";
/// Listen address of the event store.
pub const STORE_LISTEN: &str = "KTWIN_STORE_LISTEN";
/// Request timeout of the event store, in milliseconds (the original's `TIMEOUT`).
pub const STORE_TIMEOUT: &str = "TIMEOUT";

/// AMQP URL of RabbitMQ, with credentials.
pub const AMQP_URL: &str = "KTWIN_AMQP_URL";
/// AMQP user name (from a Secret; expanded into [`AMQP_URL`] by the kubelet).
pub const AMQP_USERNAME: &str = "KTWIN_AMQP_USERNAME";
/// AMQP password (from a Secret).
pub const AMQP_PASSWORD: &str = "KTWIN_AMQP_PASSWORD";
/// AMQP host (from a Secret).
pub const AMQP_HOST: &str = "KTWIN_AMQP_HOST";
/// AMQP port (from a Secret).
pub const AMQP_PORT: &str = "KTWIN_AMQP_PORT";
/// The broker's headers exchange the dispatchers publish to (the original's name).
pub const PUBLISHER_EXCHANGE: &str = "PUBLISHER_EXCHANGE";
/// Whether a dispatcher declares the broker exchange (the original's name).
pub const DECLARE_EXCHANGE: &str = "DECLARE_EXCHANGE";
/// Whether the MQTT dispatcher declares and binds its queue (the original's name).
pub const DECLARE_QUEUE: &str = "DECLARE_QUEUE";
/// The queue a dispatcher consumes (the original's name).
pub const SUBSCRIBER_QUEUE: &str = "SUBSCRIBER_QUEUE";
/// The topic exchange of RabbitMQ's MQTT plugin.
pub const MQTT_EXCHANGE: &str = "KTWIN_MQTT_EXCHANGE";
/// AMQP prefetch of a dispatcher.
pub const PREFETCH: &str = "KTWIN_PREFETCH";
/// Where the MQTT dispatcher reads device messages (`amqp` or `mqtt`).
pub const SOURCE: &str = "KTWIN_SOURCE";
/// Where the CloudEvent dispatcher sends device messages (`amqp` or `mqtt`).
pub const SINK: &str = "KTWIN_SINK";
/// Consumer tag, connection name and metric label of a dispatcher (the original's name).
pub const SERVICE_NAME: &str = "SERVICE_NAME";

/// Listen address of the gateway.
pub const GATEWAY_LISTEN: &str = "KTWIN_GATEWAY_LISTEN";
/// Bearer token callers of the gateway present.
pub const GATEWAY_TOKEN: &str = "KTWIN_GATEWAY_TOKEN";
/// Whether the gateway serves the twin graph.
pub const GATEWAY_GRAPH: &str = "KTWIN_GATEWAY_GRAPH";
/// Whether the gateway serves twin state and history.
pub const GATEWAY_EVENT_STORE: &str = "KTWIN_GATEWAY_EVENT_STORE";
/// Whether the gateway accepts events and commands.
pub const GATEWAY_COMMANDS: &str = "KTWIN_GATEWAY_COMMANDS";

/// Name of the pod (downward API), the operator's identity in its leader Lease.
pub const POD_NAME: &str = "POD_NAME";
/// Namespace of the pod (downward API), where the operator keeps its Lease.
pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
/// The `ktwin` image the operator runs platform components from when its configuration
/// names none.
pub const IMAGE: &str = "KTWIN_IMAGE";
