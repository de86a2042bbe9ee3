//! `ktwin up` with a certificate (`--tls-cert`/`--tls-key`): its HTTP port speaks only TLS —
//! a client trusting the certificate gets the APIs (auth still on), plain HTTP gets nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use ktwin_auth::tls::TlsFiles;
use ktwin_runtime::up::{MqttChoice, Platform, UpOptions};
use ktwin_runtime::{Console, PlannedProject};
use ktwin_store::BackendChoice;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_serves_tls_with_the_given_certificate() {
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

    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certificate.certificate_pem.as_bytes()).unwrap(),
        )
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
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
