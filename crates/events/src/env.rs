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

/// Event store backend (`embedded`, `postgres`, `redb`).
pub const STORE_BACKEND: &str = "KTWIN_STORE_BACKEND";
/// PostgreSQL URL of the event store.
pub const STORE_DATABASE_URL: &str = "KTWIN_STORE_DATABASE_URL";
/// Data directory of the embedded event store.
pub const STORE_PATH: &str = "KTWIN_STORE_PATH";
/// Listen address of the event store.
pub const STORE_LISTEN: &str = "KTWIN_STORE_LISTEN";
/// Whether the event store accepts posted events (`POST /api/v1/twin-events`) without a
/// credential: a Knative Trigger delivering them cannot present one (the NetworkPolicy of the
/// store then admits only the broker's dispatcher and the platform's pods).
pub const STORE_OPEN_INGEST: &str = "KTWIN_STORE_OPEN_INGEST";
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
/// The device topics interfaces declare with the DTDL MQTT extension, as a JSON array of
/// [`crate::DeviceBinding`]s (the dispatchers match and send on them).
pub const DEVICE_BINDINGS: &str = "KTWIN_DEVICE_BINDINGS";
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
/// The bearer token (`write` on every twin) callers of a standalone service (gateway, event
/// store, graph) present: the platform's token, passed from a Secret by `secretKeyRef`.
pub const API_TOKEN: &str = "KTWIN_API_TOKEN";
/// Token file (names, scopes, grants, hashes) of a standalone service's callers, reloaded on
/// change.
pub const TOKENS_FILE: &str = "KTWIN_TOKENS_FILE";
/// PEM certificate chain a service (gateway, event store, graph, `ktwin up`) serves TLS with.
pub const TLS_CERT: &str = "KTWIN_TLS_CERT";
/// The PEM private key of [`TLS_CERT`].
pub const TLS_KEY: &str = "KTWIN_TLS_KEY";
/// The ratio (0 to 1) of the traces a process starts that are recorded (the event store
/// indexes their events, spans are exported); see `ktwin_events::trace::TraceSampler`.
pub const TRACE_SAMPLE: &str = "KTWIN_TRACE_SAMPLE";
/// Requests per second one credential may make of the gateway (sustained).
pub const GATEWAY_RATE_LIMIT: &str = "KTWIN_GATEWAY_RATE_LIMIT";
/// OIDC issuer (`iss`) whose JWTs a service accepts.
pub const OIDC_ISSUER: &str = "KTWIN_OIDC_ISSUER";
/// Audience (`aud`) JWTs must name.
pub const OIDC_AUDIENCE: &str = "KTWIN_OIDC_AUDIENCE";
/// The OIDC issuer's key set URL.
pub const OIDC_JWKS_URL: &str = "KTWIN_OIDC_JWKS_URL";
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
/// The ktwin image the operator deploys for a component whose resource names none.
pub const IMAGE: &str = "KTWIN_IMAGE";
/// Address a dispatcher's health and metrics endpoints listen on.
pub const LISTEN: &str = "KTWIN_LISTEN";
/// Bearer token command-line clients send to the platform's HTTP API.
pub const TOKEN: &str = "KTWIN_TOKEN";
/// Base URL of the platform's HTTP API for command-line clients (`ktwin dead-letters`).
pub const PLATFORM_URL: &str = "KTWIN_URL";
