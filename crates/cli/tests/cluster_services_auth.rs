//! The standalone services a cluster runs (`ktwin store`, `ktwin graph`) behind the same access
//! control as `ktwin up` and the gateway, run as the real binary: every route of each, with API
//! tokens from a token file and JWTs of an OIDC issuer (a local one serving its key set) — no
//! credential, an unknown or expired token, an expired or forged JWT → 401; a scope below the
//! route's or a grant on other twins → 403; a credential with every right gets through. The
//! tables must name exactly the routes of each service's policy. And the safe defaults: no
//! credentials configured → refuses to start; `--insecure` only on loopback; the store's
//! `--open-ingest` opens posting events and nothing else. With `--tls-cert`/`--tls-key` each
//! serves HTTPS only.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser as _;
use ktwin_auth::{Scope, TokenFile, TwinGrant};
use ktwin_testkit::oidc::{AUDIENCE, TestIssuer};
use ktwin_testkit::route_auth::{
    Credentials, assert_covers, check_routes, graph_routes, store_routes,
};
use reqwest::StatusCode;

/// A `ktwin` child process, killed when dropped.
struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ktwin <args>` and waits for the line saying where it listens.
fn start(args: &[&str]) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ktwin"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines, listening) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, address)) = line.split_once(" listening on ") {
                let _ = lines.send(address.to_owned());
            }
        }
    });
    let base = listening
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("ktwin {args:?} did not say where it listens"));
    Service { child, base }
}

/// Runs `ktwin <args>`, which must refuse to start; its stderr.
fn refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ktwin"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "ktwin {args:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A token file with the check's credentials, and the credentials (JWTs for the reader and the
/// outsider, API tokens for the others: both paths are checked).
fn credentials(dir: &Path, issuer: &TestIssuer) -> (String, Credentials) {
    let mut file = TokenFile::default();
    let mut issue = |name: &str, scope, grant, expires| {
        file.issue(name, scope, grant, expires)
            .unwrap()
            .expose()
            .to_owned()
    };
    let admin = issue("admin", Scope::Admin, TwinGrant::all(), None);
    let writer = issue("writer", Scope::Write, TwinGrant::all(), None);
    let expired = issue(
        "expired",
        Scope::Admin,
        TwinGrant::all(),
        Some(chrono::Utc::now() - chrono::Duration::hours(1)),
    );
    let path = dir.join("tokens.yaml");
    file.save(&path).unwrap();
    let mut outsider = issuer.claims("mallory", "ktwin:admin");
    outsider["ktwin_interfaces"] = serde_json::json!(["no-such-interface"]);
    let credentials = Credentials {
        admin,
        reader: issuer.sign(&issuer.claims("reader", "ktwin:read")),
        writer,
        outsider: issuer.sign(&outsider),
        invalid: vec![
            ("an unknown token", "ktwin_0123456789abcdef".to_owned()),
            ("an expired token", expired),
            ("an expired JWT", issuer.expired("alice", "ktwin:admin")),
            (
                "a JWT signed with an unpublished key",
                issuer.forge(&issuer.claims("alice", "ktwin:admin")),
            ),
        ],
    };
    (path.to_str().unwrap().to_owned(), credentials)
}

fn oidc_args(issuer: &TestIssuer) -> Vec<String> {
    vec![
        "--oidc-issuer".into(),
        issuer.issuer.clone(),
        "--oidc-audience".into(),
        AUDIENCE.into(),
        "--oidc-jwks-url".into(),
        issuer.jwks_url.clone(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_of_the_standalone_store_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start().await;
    let (tokens, credentials) = credentials(dir.path(), &issuer);
    let store_path = dir.path().join("store");
    let mut args = vec![
        "store".to_owned(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--path".into(),
        store_path.to_str().unwrap().into(),
        "--tokens-file".into(),
        tokens,
    ];
    args.extend(oidc_args(&issuer));
    let store = start(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let cases = store_routes("city-pole", "pole-1");
    let policy = ktwin_store::cli::standalone_policy(false).build().unwrap();
    assert_covers(&cases, policy.paths());
    check_routes(&store.base, &cases, &credentials).await;
    for path in ["/health", "/ready", "/metrics"] {
        let answer = reqwest::get(format!("{}{path}", store.base)).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path} stays open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_of_the_standalone_graph_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start().await;
    let (tokens, credentials) = credentials(dir.path(), &issuer);
    let project = ktwin_testkit::example_project();
    let mut args = vec![
        "graph".to_owned(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--project".into(),
        project.to_str().unwrap().into(),
        "--tokens-file".into(),
        tokens,
    ];
    args.extend(oidc_args(&issuer));
    let graph = start(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let mut cases = graph_routes("city-pole", "pole-1");
    cases.push(ktwin_testkit::route_auth::RouteCase::public(
        ktwin_graph::cli::ROOT_OPENAPI_PATH,
        ktwin_graph::cli::ROOT_OPENAPI_PATH,
    ));
    let policy = ktwin_graph::cli::standalone_policy().build().unwrap();
    assert_covers(&cases, policy.paths());
    check_routes(&graph.base, &cases, &credentials).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_ingest_opens_posting_events_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let store = start(&[
        "store",
        "--listen",
        "127.0.0.1:0",
        "--path",
        store_path.to_str().unwrap(),
        "--token",
        "a-platform-token",
        "--open-ingest",
    ]);
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/twin-events", store.base);
    let posted = client
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "open-ingest-1")
        .header("ce-type", "ktwin.store.city-pole")
        .header("ce-source", "pole-1")
        .header("ce-time", chrono::Utc::now().to_rfc3339())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "posted: {}", posted.status());
    let listed = client.get(&url).send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::UNAUTHORIZED);
    let with_token = client
        .get(&url)
        .bearer_auth("a-platform-token")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);
}

#[test]
fn the_services_refuse_unsafe_starts_and_listen_on_loopback_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let store_path = store_path.to_str().unwrap();
    let everywhere = refused(&[
        "store",
        "--insecure",
        "--listen",
        "0.0.0.0:0",
        "--path",
        store_path,
    ]);
    assert!(everywhere.contains("loopback"), "{everywhere}");
    let no_credentials = refused(&["store", "--listen", "127.0.0.1:0", "--path", store_path]);
    assert!(
        no_credentials.contains("needs credentials"),
        "{no_credentials}"
    );
    let graph = refused(&["graph", "--listen", "127.0.0.1:0", "--project", store_path]);
    assert!(graph.contains("needs credentials"), "{graph}");

    let cli = ktwin::Cli::try_parse_from(["ktwin", "store"]).unwrap();
    let ktwin::Command::Store(store) = cli.command else {
        panic!("not the store command")
    };
    assert!(store.listen.ip().is_loopback(), "{}", store.listen);
    let cli = ktwin::Cli::try_parse_from(["ktwin", "graph"]).unwrap();
    let ktwin::Command::Graph(graph) = cli.command else {
        panic!("not the graph command")
    };
    assert!(graph.listen.ip().is_loopback(), "{}", graph.listen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_store_and_graph_serve_https_with_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = ktwin_testkit::tls::self_signed(dir.path(), "services");
    let (cert, key) = (
        certificate.certificate.to_str().unwrap(),
        certificate.private_key.to_str().unwrap(),
    );
    let store_path = dir.path().join("store");
    let project = ktwin_testkit::example_project();
    let token = ["--token", "a-platform-token"];
    let tls = ["--tls-cert", cert, "--tls-key", key];
    let listen = ["--listen", "127.0.0.1:0"];
    let store_args = [
        &["store", "--path", store_path.to_str().unwrap()][..],
        &listen,
        &token,
        &tls,
    ];
    let graph_args = [
        &["graph", "--project", project.to_str().unwrap()][..],
        &listen,
        &token,
        &tls,
    ];
    let store = start(&store_args.concat());
    let graph = start(&graph_args.concat());
    // The gateway's upstreams are never called here: only its own listener is under test.
    let gateway_args = [&["gateway"][..], &listen, &token, &tls];
    let gateway = start(&gateway_args.concat());

    let services = [
        ("store", &store, "/api/v1/twin-events"),
        ("graph", &graph, "/api/v1/twin-graph"),
        ("gateway", &gateway, "/api/v1/twin-graph"),
    ];
    for (name, service, protected) in services {
        let port: u16 = service.base.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            service.base.starts_with("https://"),
            "{name}: {}",
            service.base
        );
        let client = certificate.client(port);
        let health = client
            .get(format!("https://localhost:{port}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{name} over HTTPS");
        let unauthenticated = client
            .get(format!("https://localhost:{port}{protected}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            unauthenticated.status(),
            StatusCode::UNAUTHORIZED,
            "{name}: auth stays on over HTTPS"
        );
        let plain = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
        assert!(
            plain.is_err() || !plain.unwrap().status().is_success(),
            "{name} answered plain HTTP on its TLS port"
        );
    }
}
