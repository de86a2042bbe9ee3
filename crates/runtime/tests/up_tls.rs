//! `ktwin up` with a certificate (`--tls-cert`/`--tls-key`): its HTTP port and its MQTT device
//! port speak only TLS — a client trusting the certificate gets the APIs and the broker (auth
//! still on), plain HTTP and plain MQTT get nothing; the simulator's loopback port stays plain.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ktwin_auth::tls::TlsFiles;
use ktwin_runtime::up::{MqttChoice, Platform, UpOptions};
use ktwin_runtime::{Console, PlannedProject};
use ktwin_store::BackendChoice;
use ktwin_testkit::tls::SelfSigned;
use reqwest::StatusCode;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};

/// `ktwin up` on the example with a fresh self-signed certificate for `localhost`; the scratch
/// directory (kept alive with the platform), the certificate, the platform.
async fn start_with_tls() -> (tempfile::TempDir, SelfSigned, Platform) {
    let project = ktwin_testkit::example_project();
    let planned = PlannedProject::load(&project, &BTreeMap::new()).expect("the example plans");
    let dir = tempfile::tempdir().unwrap();
    let certificate = ktwin_testkit::tls::self_signed(dir.path(), "up");
    let mut options = UpOptions::new(dir.path());
    options.http_port = 0;
    options.mqtt = MqttChoice::Embedded { port: 0 };
    options.store = BackendChoice::Embedded(dir.path().join("store"));
    options.console = Console::recording();
    options.tls = Some(TlsFiles {
        certificate: certificate.certificate.clone(),
        private_key: certificate.private_key.clone(),
    });
    let platform = Platform::start(planned, options)
        .await
        .expect("platform starts");
    (dir, certificate, platform)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_serves_tls_with_the_given_certificate() {
    let (_dir, certificate, platform) = start_with_tls().await;
    assert!(platform.https);
    assert!(
        platform
            .describe()
            .iter()
            .any(|line| line.contains("https://")),
        "{:?}",
        platform.describe()
    );
    let port = platform.http.port();
    let admin = platform.credentials().expect("auth on").admin_token.clone();

    let client = certificate.client(port);
    let base = format!("https://localhost:{port}");
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let graph = format!("{base}/api/v1/twin-graph");
    let anonymous = client.get(&graph).send().await.unwrap();
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "auth stays on"
    );
    let authorised = client
        .get(&graph)
        .bearer_auth(admin.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(authorised.status(), StatusCode::OK);

    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await;
    assert!(
        plain.map_or(true, |answer| !answer.status().is_success()),
        "plain HTTP is not served on the TLS port"
    );
    platform.shutdown(Duration::from_secs(5)).await;
}

/// A client configuration trusting only `certificate_pem`.
fn trusting(certificate_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(certificate_pem.as_bytes()).expect("a PEM certificate"))
        .expect("a valid certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// What a client's first answer is: the broker's CONNACK, or the connection failing.
async fn first_answer(options: MqttOptions) -> Result<ConnectReturnCode, String> {
    let (_client, mut events) = AsyncClient::new(options, 4);
    let answer = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => {}
                Err(err) => return Err(err.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .expect("the gate answers (CONNACK or a closed connection) instead of hanging")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_connect_over_tls_and_their_messages_are_stored() {
    const SENSOR_INTERFACE: &str = "ngsi-ld-city-airqualityobserved";
    const SENSOR: &str = "ngsi-ld-city-airqualityobserved-nb001-p00001";
    let (_dir, certificate, platform) = start_with_tls().await;
    assert!(platform.mqtts);
    assert!(
        platform
            .describe()
            .iter()
            .any(|line| line.contains("mqtts://")),
        "{:?}",
        platform.describe()
    );
    let (username, password) = platform.simulator_login().expect("auth on");
    let login = |mut options: MqttOptions| {
        options.set_credentials(username.clone(), password.clone());
        options
    };

    // A device trusting the certificate connects to the device port over TLS and publishes.
    let mut tls = login(MqttOptions::new(
        "tls-device",
        "localhost",
        platform.mqtt.port,
    ));
    tls.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        trusting(&certificate.certificate_pem),
    )));
    let (device, mut events) = AsyncClient::new(tls, 16);
    device
        .publish(
            format!("ktwin/real/{SENSOR_INTERFACE}/{SENSOR}"),
            QoS::AtLeastOnce,
            false,
            r#"{"CODensity": 8}"#,
        )
        .await
        .unwrap();
    let puback = async {
        loop {
            match events.poll().await.expect("the TLS connection holds") {
                Event::Incoming(Packet::PubAck(_)) => return,
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), puback)
        .await
        .expect("PUBACK over TLS");

    // The message is stored (the store API, over HTTPS).
    let http = certificate.client(platform.http.port());
    let admin = platform.credentials().expect("auth on").admin_token.clone();
    let history = format!(
        "https://localhost:{}/api/v1/twin-events/{SENSOR_INTERFACE}/{SENSOR}",
        platform.http.port()
    );
    let stored = async {
        loop {
            let events: Vec<serde_json::Value> = http
                .get(&history)
                .bearer_auth(admin.expose())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if !events.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), stored)
        .await
        .expect("the device's message is stored");

    // Plain MQTT on the device port gets no session; the simulator's loopback port, plain,
    // still checks the login.
    let plain = first_answer(login(MqttOptions::new(
        "plain-device",
        "127.0.0.1",
        platform.mqtt.port,
    )))
    .await;
    assert!(
        !matches!(plain, Ok(ConnectReturnCode::Success)),
        "plain MQTT is not served on the TLS port: {plain:?}"
    );
    assert_ne!(platform.mqtt_local.port, platform.mqtt.port);
    let local = |options: MqttOptions| first_answer(options);
    assert_eq!(
        local(login(MqttOptions::new(
            "simulator",
            &platform.mqtt_local.host,
            platform.mqtt_local.port,
        )))
        .await,
        Ok(ConnectReturnCode::Success)
    );
    let mut stranger = MqttOptions::new(
        "stranger",
        &platform.mqtt_local.host,
        platform.mqtt_local.port,
    );
    stranger.set_credentials(username.clone(), "not-the-password");
    assert!(
        !matches!(local(stranger).await, Ok(ConnectReturnCode::Success)),
        "the loopback port checks credentials"
    );
    platform.shutdown(Duration::from_secs(5)).await;
}
