//! HTTPS with a certificate from PEM files: a client trusting the (self-signed) certificate
//! talks to the router; a wrong key or an empty file is refused naming the file.

use std::path::Path;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use ktwin_auth::tls::{TlsError, TlsFiles, serve_https};
use ktwin_testkit::tls::SelfSigned;
use tokio_util::sync::CancellationToken;

/// A self-signed certificate for `localhost` in `dir`, as the listener's files.
fn write_pair(dir: &Path, name: &str) -> (TlsFiles, SelfSigned) {
    let certificate = ktwin_testkit::tls::self_signed(dir, name);
    let files = TlsFiles {
        certificate: certificate.certificate.clone(),
        private_key: certificate.private_key.clone(),
    };
    (files, certificate)
}

#[tokio::test]
async fn a_router_serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (files, certificate) = write_pair(dir.path(), "server");
    let acceptor = files.acceptor().unwrap();
    let app = Router::new().route(
        "/health",
        get(
            |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>| async move {
                format!("ok from {}", peer.ip())
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve_https(listener, acceptor, app, stop.clone()));

    let client = certificate.client(port);
    let body = client
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "ok from 127.0.0.1");

    // A client that does not trust the certificate cannot talk to it.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("https://localhost:{port}/health"))
            .send()
            .await
            .is_err()
    );

    stop.cancel();
    server.await.unwrap();
}

#[test]
fn mismatched_or_missing_material_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (one, _) = write_pair(dir.path(), "one");
    let (two, _) = write_pair(dir.path(), "two");
    let mismatched = TlsFiles {
        certificate: one.certificate.clone(),
        private_key: two.private_key.clone(),
    };
    assert!(matches!(
        mismatched.server_config(),
        Err(TlsError::Config(_))
    ));

    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    let err = TlsFiles {
        certificate: empty,
        private_key: one.private_key.clone(),
    }
    .server_config()
    .unwrap_err();
    assert!(err.to_string().contains("empty.crt"), "{err}");

    let err = TlsFiles {
        certificate: one.certificate,
        private_key: dir.path().join("missing.key"),
    }
    .server_config()
    .unwrap_err();
    assert!(err.to_string().contains("missing.key"), "{err}");
}
