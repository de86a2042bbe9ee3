//! The platform's contract with its components beyond events: the environment variables the
//! operator and `ktwin up` set and the services read, and the default endpoints. Writer and
//! reader use these constants, so a renamed variable or a moved default changes in one place.

/// Names of environment variables.
pub mod env {
    /// URL services POST the events they emit to (the broker ingress).
    pub const BROKER: &str = "KTWIN_BROKER";
    /// Base URL of the event store's API.
    pub const EVENT_STORE: &str = "KTWIN_EVENT_STORE";
    /// Base URL of the graph service's API.
    pub const GRAPH_URL: &str = "KTWIN_GRAPH_URL";
    /// The twin interface a service implements.
    pub const INTERFACE: &str = "KTWIN_INTERFACE";
    /// The Kubernetes namespace of the twins.
    pub const NAMESPACE: &str = "KTWIN_NAMESPACE";
    /// The port a service listens on (Knative's contract).
    pub const PORT: &str = "PORT";
    /// The component's name, as the original dispatchers read it.
    pub const SERVICE_NAME: &str = "SERVICE_NAME";
    /// AMQP URL of RabbitMQ.
    pub const AMQP_URL: &str = "KTWIN_AMQP_URL";
    /// Password of the AMQP URL, when it is kept apart from it.
    pub const AMQP_PASSWORD: &str = "KTWIN_AMQP_PASSWORD";
    /// Exchange RabbitMQ's MQTT plugin publishes device messages to.
    pub const MQTT_EXCHANGE: &str = "KTWIN_MQTT_EXCHANGE";
    /// Host of the MQTT broker devices use.
    pub const MQTT_HOST: &str = "KTWIN_MQTT_HOST";
    /// Port of the MQTT broker devices use.
    pub const MQTT_PORT: &str = "KTWIN_MQTT_PORT";
    /// MQTT user name.
    pub const MQTT_USERNAME: &str = "KTWIN_MQTT_USERNAME";
    /// MQTT password.
    pub const MQTT_PASSWORD: &str = "KTWIN_MQTT_PASSWORD";
    /// The event store's backend (`embedded`, `postgres`, `redb`).
    pub const STORE_BACKEND: &str = "KTWIN_STORE_BACKEND";
    /// The event store's PostgreSQL URL.
    pub const STORE_DATABASE_URL: &str = "KTWIN_STORE_DATABASE_URL";
    /// The embedded event store's path.
    pub const STORE_PATH: &str = "KTWIN_STORE_PATH";
    /// Address the event store listens on.
    pub const STORE_LISTEN: &str = "KTWIN_STORE_LISTEN";
    /// Address a dispatcher's health and metrics endpoints listen on.
    pub const LISTEN: &str = "KTWIN_LISTEN";
}

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
