//! Addresses of the real servers the tests use. `scripts/test.sh` exports these variables (and
//! `scripts/services.sh` starts the servers); each falls back to the loopback default the
//! machine's services listen on, so `cargo test` alone works too.

/// Names of the environment variables, written once for the script and the tests.
pub mod env {
    /// PostgreSQL URL of a superuser (trust auth): scratch databases are created through it.
    pub const POSTGRES_URL: &str = "KTWIN_TEST_POSTGRES_URL";
    /// AMQP URL of the RabbitMQ server.
    pub const AMQP_URL: &str = "KTWIN_TEST_AMQP_URL";
    /// `host:port` of the Mosquitto MQTT broker.
    pub const MQTT_ADDR: &str = "KTWIN_TEST_MQTT_ADDR";
    /// `host:port` of RabbitMQ's MQTT plugin.
    pub const RABBITMQ_MQTT_ADDR: &str = "KTWIN_TEST_RABBITMQ_MQTT_ADDR";
}

/// Runs `rabbitmqctl` with `args` on the test machine's RabbitMQ (to stop and start its app,
/// add users, …).
///
/// # Panics
/// When it cannot run or fails: the test cannot go on.
pub fn rabbitmqctl(args: &[&str]) {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (scripts/services.sh installs RabbitMQ)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn var_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// PostgreSQL superuser URL (`KTWIN_TEST_POSTGRES_URL`).
pub fn postgres_url() -> String {
    var_or(
        env::POSTGRES_URL,
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

/// RabbitMQ AMQP URL (`KTWIN_TEST_AMQP_URL`).
pub fn amqp_url() -> String {
    var_or(env::AMQP_URL, "amqp://guest:guest@127.0.0.1:5672/%2f")
}

/// Mosquitto's `host:port` (`KTWIN_TEST_MQTT_ADDR`).
pub fn mqtt_addr() -> String {
    var_or(env::MQTT_ADDR, "127.0.0.1:1883")
}

/// RabbitMQ MQTT plugin's `host:port` (`KTWIN_TEST_RABBITMQ_MQTT_ADDR`).
pub fn rabbitmq_mqtt_addr() -> String {
    var_or(env::RABBITMQ_MQTT_ADDR, "127.0.0.1:1884")
}

/// Splits a `host:port` address as MQTT clients take it.
///
/// # Panics
/// When the address has no numeric port: a misconfigured test environment.
pub fn host_port(addr: &str) -> (String, u16) {
    let (host, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("test server address {addr:?} is not host:port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("test server address {addr:?} has no numeric port"));
    (host.to_owned(), port)
}

/// An MQTT server's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttServer {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// The Mosquitto broker (`KTWIN_TEST_MQTT_ADDR`).
pub fn mosquitto() -> MqttServer {
    mqtt_server(&mqtt_addr())
}

/// RabbitMQ's MQTT plugin (`KTWIN_TEST_RABBITMQ_MQTT_ADDR`).
pub fn rabbitmq_mqtt() -> MqttServer {
    mqtt_server(&rabbitmq_mqtt_addr())
}

fn mqtt_server(addr: &str) -> MqttServer {
    let (host, port) = host_port(addr);
    MqttServer { host, port }
}
