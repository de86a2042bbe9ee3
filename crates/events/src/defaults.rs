//! Default endpoints and names of the platform, each written once (the MQTT port is
//! [`crate::MQTT_PORT`]).

/// MQTT broker host when none is given.
pub const MQTT_HOST: &str = "127.0.0.1";
/// RabbitMQ on this machine with its default user.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The exchange RabbitMQ's MQTT plugin publishes to.
pub const MQTT_EXCHANGE: &str = "amq.topic";
/// PostgreSQL on this machine, trust authentication.
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Address a service's HTTP API listens on in a container (Knative's port 8080).
pub const HTTP_LISTEN: &str = "0.0.0.0:8080";
/// Address a standalone service with an API of twin data (`ktwin store`, `ktwin graph`) listens
/// on unless configured: this machine only. A cluster's manifests set [`HTTP_LISTEN`].
pub const LOOPBACK_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// The HTTP API of `ktwin up` on this machine (its default port), which command-line clients
/// (`ktwin dead-letters`) talk to when given no URL.
pub const PLATFORM_URL: &str = "http://127.0.0.1:8080";
