//! The platform's contract with its components beyond events: the environment variables the
//! operator and `ktwin up` set and the services read, and the default endpoints. Writer and
//! reader use these constants, so a renamed variable or a moved default changes in one place.

/// Names of environment variables (one module for the whole platform).
pub use crate::env;

/// Default endpoints and names.
pub mod defaults {
    /// MQTT's registered port.
    pub const MQTT_PORT: u16 = 1883;
    /// MQTT broker host when none is given.
    pub const MQTT_HOST: &str = "127.0.0.1";
    /// RabbitMQ on this machine with its default user.
    pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
    /// The exchange RabbitMQ's MQTT plugin publishes to.
    pub const MQTT_EXCHANGE: &str = "amq.topic";
    /// PostgreSQL on this machine, trust authentication.
    pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
    /// Port of a service's HTTP API (Knative's default).
    pub const HTTP_PORT: u16 = 8080;
    /// Address a service's HTTP API listens on in a container.
    pub const HTTP_LISTEN: &str = "0.0.0.0:8080";
}
