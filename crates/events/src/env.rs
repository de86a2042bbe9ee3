//! Names of the environment variables through which the platform configures its parts: written
//! once here, used both where they are set (the planner, the operator's manifests, `ktwin up`)
//! and where they are read (the SDK's server, the services' command lines).

/// The TCP port a twin service listens on (Knative's container contract).
pub const PORT: &str = "PORT";
/// URL twin services POST emitted CloudEvents to (the broker ingress).
pub const BROKER: &str = "KTWIN_BROKER";
/// Base URL of the event store's REST API.
pub const EVENT_STORE: &str = "KTWIN_EVENT_STORE";
/// URL of the twin graph (`GET` returns `{"twinInstances":[…]}`).
pub const GRAPH_URL: &str = "KTWIN_GRAPH_URL";
/// The twin graph itself, as JSON, for services run without a graph service.
pub const GRAPH: &str = "KTWIN_GRAPH";
/// The TwinInterface a service serves.
pub const INTERFACE: &str = "KTWIN_INTERFACE";
/// The namespace of the twins.
pub const NAMESPACE: &str = "KTWIN_NAMESPACE";
/// Whether a service answers with the last emitted event in its HTTP reply (Knative reply).
pub const REPLY: &str = "KTWIN_REPLY";
/// Events a service handles at once at most.
pub const MAX_CONCURRENCY: &str = "KTWIN_MAX_CONCURRENCY";
/// The graph service's listen address.
pub const GRAPH_LISTEN: &str = "KTWIN_GRAPH_LISTEN";
/// Where the graph service reads the graph from (`kubernetes` or `local`).
pub const GRAPH_SOURCE: &str = "KTWIN_GRAPH_SOURCE";
/// MQTT broker host of devices and dispatchers.
pub const MQTT_HOST: &str = "KTWIN_MQTT_HOST";
/// MQTT broker port of devices and dispatchers.
pub const MQTT_PORT: &str = "KTWIN_MQTT_PORT";
/// MQTT user name.
pub const MQTT_USERNAME: &str = "KTWIN_MQTT_USERNAME";
/// MQTT password.
pub const MQTT_PASSWORD: &str = "KTWIN_MQTT_PASSWORD";
/// PostgreSQL URL `ktwin up` stores events in instead of its embedded store.
pub const STORE_URL: &str = "KTWIN_STORE_URL";
