//! What the runtime's platform tests share: `ktwin up` on the smart-city example, and clients
//! that log in as `ktwin up` expects (auth is on by default).

#![allow(
    dead_code,
    reason = "each test binary including this module uses a part of it"
)]

use std::collections::BTreeMap;
use std::path::Path;

use ktwin_runtime::up::{MqttChoice, Platform, UpOptions};
use ktwin_runtime::{Console, PlannedProject};
use ktwin_store::BackendChoice;

/// The smart-city example (in the workspace, like its services) planned with one neighborhood.
pub fn smart_city() -> PlannedProject {
    let project = ktwin_testkit::example_project();
    PlannedProject::load(&project, &BTreeMap::from([("neighborhoods".to_owned(), 1)]))
        .expect("the smart-city example loads and plans")
}

/// Options of `ktwin up` for tests, everything under `dir`: an ephemeral HTTP port, the
/// embedded MQTT broker and event store, the smart-city services in-process, a console that
/// records instead of printing; auth on (the default).
pub fn up_options(dir: &Path) -> UpOptions {
    let mut options = UpOptions::new(dir);
    options.http_port = 0;
    options.mqtt = MqttChoice::Embedded { port: 0 };
    options.store = BackendChoice::Embedded(dir.join("store"));
    options.handlers = ktwin_smart_city_services::handlers().into_iter().collect();
    options.console = Console::recording();
    options
}

/// [`smart_city`] started with [`up_options`].
pub async fn start_smart_city(dir: &Path) -> Platform {
    Platform::start(smart_city(), up_options(dir))
        .await
        .expect("platform starts")
}

/// An HTTP client sending the admin token `ktwin up` created on first start.
pub fn api_client(platform: &Platform) -> reqwest::Client {
    let admin = &platform.credentials().expect("auth is on").admin_token;
    let mut bearer: reqwest::header::HeaderValue = format!("Bearer {}", admin.expose())
        .parse()
        .expect("a token is a valid header value");
    bearer.set_sensitive(true);
    reqwest::Client::builder()
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            bearer,
        )]))
        .build()
        .expect("an HTTP client")
}

/// MQTT options of a client logged in with the simulator's credential (it speaks for every
/// device of the project).
pub fn device_options(platform: &Platform, client_id: &str) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(client_id, &platform.mqtt.host, platform.mqtt.port);
    let (username, password) = platform.simulator_login().expect("auth is on");
    options.set_credentials(username, password);
    options
}

/// Posts `event` to the platform's broker ingress as a twin service would; returns the status.
pub async fn post_to_broker(
    client: &reqwest::Client,
    base: &str,
    event: cloudevents::Event,
) -> reqwest::StatusCode {
    let (headers, body) = ktwin_sdk::to_binary_http(event).expect("an event encodes");
    client
        .post(format!("{base}/api/v1/broker"))
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("the broker ingress answers")
        .status()
}

/// A replica served in-process: an HTTP server task on its own port (pool tests).
pub struct ServerReplica {
    /// Where events are posted.
    pub url: String,
    /// Its name in logs.
    pub label: String,
    /// The server; aborting it kills the replica.
    pub server: tokio::task::JoinHandle<()>,
}

impl ServerReplica {
    /// Serves `app` on a free loopback port.
    pub async fn serve(label: String, app: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!("http://{}/", listener.local_addr().expect("bound"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, label, server }
    }
}

#[async_trait::async_trait]
impl ktwin_runtime::Replica for ServerReplica {
    fn url(&self) -> &str {
        &self.url
    }
    fn label(&self) -> &str {
        &self.label
    }
    async fn is_alive(&self) -> bool {
        !self.server.is_finished()
    }
    async fn stop(self: Box<Self>) {
        self.server.abort();
    }
}

/// The JSON answer of `GET url`, which must succeed.
pub async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str) -> T {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response
        .json()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: not the JSON expected: {err}"))
}
