//! Why the local platform could not be planned or started.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why an MQTT address is unusable or the embedded MQTT broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// The URL's scheme is not `mqtt://` or `tcp://`.
    #[error(
        "MQTT URL {url:?}: unsupported scheme; expected mqtt://host[:port] (TLS is not supported locally)"
    )]
    UnsupportedScheme {
        /// The URL given.
        url: String,
    },
    /// The URL's port is not a number in 0–65535.
    #[error("MQTT URL {url:?}: port {port:?} is not a TCP port number")]
    BadPort {
        /// The URL given.
        url: String,
        /// Its port part.
        port: String,
        /// Why it does not parse.
        #[source]
        source: std::num::ParseIntError,
    },
    /// The URL has no host.
    #[error("MQTT URL {url:?}: no host; expected mqtt://host[:port]")]
    NoHost {
        /// The URL given.
        url: String,
    },
    /// The embedded broker's port is taken (by a Mosquitto already running, say).
    #[error(
        "cannot use 127.0.0.1:{port} for the embedded MQTT broker; another broker may be running there: pass --mqtt mqtt://127.0.0.1:{port} to use it, or --mqtt-port to pick another port"
    )]
    PortTaken {
        /// The port asked for.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded broker refused the platform's in-process connection.
    #[error("the embedded MQTT broker refused the platform's link {client_id:?}")]
    LinkRefused {
        /// The link's client id.
        client_id: String,
        /// rumqttd's reason (boxed: it carries whole packets).
        #[source]
        source: Box<rumqttd::local::LinkError>,
    },
    /// The broker's thread could not be started.
    #[error("cannot start the embedded MQTT broker thread")]
    Thread(#[source] std::io::Error),
    /// The broker did not accept connections in time.
    #[error("the embedded MQTT broker did not listen on {addr} within {timeout:?}")]
    NotListening {
        /// The listener's address.
        addr: SocketAddr,
        /// How long it was given.
        timeout: Duration,
    },
}

/// Why a project could not be planned or the platform could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpError {
    /// The project does not load.
    #[error("loading project {}", dir.display())]
    Project {
        /// The project directory.
        dir: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ktwin_model::project::ProjectError,
    },
    /// The project loads but cannot be planned.
    #[error("planning project {}", dir.display())]
    Plan {
        /// The project directory.
        dir: PathBuf,
        /// What the planner refused (boxed: it is large and rare).
        #[source]
        source: Box<ktwin_planner::PlanError>,
    },
    /// The local event store or MQTT trigger resource could not be built.
    #[error("building the local {kind} resource")]
    LocalResource {
        /// `EventStore` or `MQTTTrigger`.
        kind: &'static str,
        /// The deserialisation error.
        #[source]
        source: serde_json::Error,
    },
    /// The MQTT broker could not be started.
    #[error("starting the embedded MQTT broker")]
    Mqtt(#[source] MqttError),
    /// The event store could not be opened.
    #[error("opening the event store ({choice})")]
    Store {
        /// Which store.
        choice: String,
        /// The store's error.
        #[source]
        source: ktwin_store::StoreError,
    },
    /// The HTTP port is taken or not allowed.
    #[error("binding the HTTP port 127.0.0.1:{port}")]
    HttpBind {
        /// The port asked for.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key of the HTTP listener cannot be used.
    #[error("TLS for the HTTP port")]
    Tls(#[source] ktwin_auth::tls::TlsError),
    /// The project's twin graph does not serialise for the in-process services.
    #[error("the twin graph of in-process services")]
    Graph(#[source] serde_json::Error),
    /// A subscription of the in-memory broker could not be created.
    #[error("subscribing {subscription:?} on the in-memory broker")]
    Subscribe {
        /// The subscription.
        subscription: String,
        /// The broker's error.
        #[source]
        source: ktwin_broker::BrokerError,
    },
    /// The project's models could not be read again for `GET /api/v1/models`.
    #[error("serving the project's DTDL models")]
    Models(#[source] crate::model_api::ModelApiError),
    /// The platform's credentials could not be prepared.
    #[error("preparing the platform's credentials in {}", dir.display())]
    Credentials {
        /// Where they are kept.
        dir: PathBuf,
        /// Why.
        #[source]
        source: ktwin_auth::local::LocalAuthError,
    },
    /// The credentials the platform issues to its own parts could not be made.
    #[error("issuing the platform's own tokens")]
    OwnTokens(#[source] ktwin_auth::TokenFileError),
    /// The route policy of the platform's APIs is not well formed.
    #[error("the platform's route policy")]
    Policy(#[source] ktwin_auth::PolicyError),
    /// `--insecure` with a listener that is not on loopback.
    #[error(transparent)]
    Insecure(#[from] ktwin_auth::local::InsecureError),
    /// A start-up step on a blocking thread failed to run.
    #[error("start-up task {what} did not complete")]
    Join {
        /// The step.
        what: &'static str,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
}
