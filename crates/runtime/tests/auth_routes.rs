//! Every route `ktwin up` serves, against the running platform with auth on (the default): no
//! token, an unknown token, an expired or a forged JWT → 401; a scope below the route's or a
//! grant on other twins → 403; the admin token gets through. The table must name exactly the
//! routes of the platform's route policy (the event store's, the graph's, the broker ingress,
//! the event stream, the dashboard and the ops routes). And devices: the embedded MQTT broker
//! is behind the gate, so a device logs in and stays within its topics.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ktwin_auth::local::{DEVICES_FILE, TOKENS_FILE};
use ktwin_auth::mqtt::{DeviceCredentialFile, DeviceGrant};
use ktwin_auth::{Scope, TokenFile, TwinGrant};
use ktwin_runtime::up::{MqttChoice, Platform, UpOptions};
use ktwin_runtime::{Console, PlannedProject, UpAuth};
use ktwin_store::BackendChoice;
use ktwin_testkit::oidc::TestIssuer;
use ktwin_testkit::route_auth::{Credentials, Needs, RouteCase, assert_covers, check_routes};
use reqwest::Method;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};

/// The table: every route of the platform, with a concrete path on twin `interface/instance`.
fn routes(interface: &str, instance: &str) -> Vec<RouteCase> {
    let twin = format!("/api/v1/twin-events/{interface}/{instance}");
    let case = RouteCase::new;
    vec![
        case(
            Method::GET,
            "/api/v1/twin-events",
            "/api/v1/twin-events",
            Needs::Read,
            true,
        ),
        case(
            Method::POST,
            "/api/v1/twin-events",
            "/api/v1/twin-events",
            Needs::Write,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-events/{interface}/{instance}",
            &twin,
            Needs::Read,
            true,
        ),
        case(
            Method::DELETE,
            "/api/v1/twin-events/{interface}/{instance}",
            &twin,
            Needs::Write,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-events/{interface}/{instance}/latest",
            &format!("{twin}/latest"),
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-events/{interface}/{instance}/state",
            &format!("{twin}/state"),
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twins/{interface}",
            &format!("/api/v1/twins/{interface}"),
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/dead-letters",
            "/api/v1/dead-letters",
            Needs::Read,
            true,
        ),
        case(
            Method::DELETE,
            "/api/v1/dead-letters",
            "/api/v1/dead-letters",
            Needs::Admin,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/dead-letters/usage",
            "/api/v1/dead-letters/usage",
            Needs::Read,
            false,
        ),
        case(
            Method::DELETE,
            "/api/v1/dead-letters/{seq}",
            "/api/v1/dead-letters/1",
            Needs::Admin,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/traces/{id}",
            "/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736",
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-graph",
            "/api/v1/twin-graph",
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-graph/{interface}",
            &format!("/api/v1/twin-graph/{interface}"),
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/twin-graph/instances/{instance}",
            &format!("/api/v1/twin-graph/instances/{instance}"),
            Needs::Read,
            true,
        ),
        case(
            Method::POST,
            "/api/v1/broker",
            "/api/v1/broker",
            Needs::Write,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/events/stream",
            "/api/v1/events/stream",
            Needs::Read,
            true,
        ),
        case(
            Method::GET,
            "/api/v1/models",
            "/api/v1/models",
            Needs::Read,
            false,
        ),
        case(
            Method::POST,
            "/api/v1/commands/{interface}/{instance}/{command}",
            &format!("/api/v1/commands/{interface}/{instance}/anyCommand"),
            Needs::Write,
            true,
        ),
        RouteCase::public("/api/v1/models/openapi.json", "/api/v1/models/openapi.json"),
        RouteCase::public("/api/v1/openapi.json", "/api/v1/openapi.json"),
        RouteCase::public(ktwin_graph::OPENAPI_PATH, ktwin_graph::OPENAPI_PATH),
        RouteCase::public("/api/v1/events/openapi.json", "/api/v1/events/openapi.json"),
        RouteCase::public("/health", "/health"),
        RouteCase::public("/ready", "/ready"),
        RouteCase::public("/metrics", "/metrics"),
        RouteCase::public("/", "/"),
        RouteCase::public("/index.html", "/index.html"),
        RouteCase::public("/assets/{*file}", "/assets/missing.js"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_of_ktwin_up_refuses_what_it_must() {
    let project = ktwin_testkit::example_project();
    let planned = PlannedProject::load(&project, &BTreeMap::new()).expect("the example plans");
    let twin = planned
        .project
        .instances
        .first()
        .expect("the example has twins");
    let (interface, instance) = (
        twin.spec.interface.clone(),
        twin.metadata.name.clone().expect("named"),
    );

    // Tokens a user added to the token file before starting; the platform adds its admin token.
    let dir = tempfile::tempdir().unwrap();
    let auth_dir = dir.path().join(".ktwin").join("auth");
    let mut file = TokenFile::default();
    let mut issue = |name: &str, scope, grant| file.issue(name, scope, grant, None).unwrap();
    let reader = issue("reader", Scope::Read, TwinGrant::all());
    let writer = issue("writer", Scope::Write, TwinGrant::all());
    let outsider = issue(
        "outsider",
        Scope::Admin,
        TwinGrant {
            interfaces: ["no-such-interface".to_owned()].into(),
            instance_prefixes: vec![],
        },
    );
    file.save(&auth_dir.join(TOKENS_FILE)).unwrap();

    let mut options = UpOptions::new(dir.path());
    assert_eq!(
        options.auth,
        UpAuth::Local(auth_dir),
        "auth is on by default"
    );
    options.http_port = 0;
    options.mqtt = MqttChoice::Embedded { port: 0 };
    options.store = BackendChoice::Embedded(dir.path().join("store"));
    options.handlers = ktwin_smart_city_services::handlers().into_iter().collect();
    options.console = Console::recording();
    let platform = Platform::start(planned, options)
        .await
        .expect("platform starts");
    let admin = platform.credentials().expect("auth on").admin_token.clone();

    let issuer = TestIssuer::start().await;
    let credentials = Credentials {
        admin: admin.expose().to_owned(),
        reader: reader.expose().to_owned(),
        writer: writer.expose().to_owned(),
        outsider: outsider.expose().to_owned(),
        invalid: vec![
            ("an unknown token", "ktwin_0123456789abcdef".to_owned()),
            ("a token that is not ktwin's", "s3cret".to_owned()),
            ("an expired JWT", issuer.expired("alice", "ktwin:admin")),
            (
                "a JWT signed with an unpublished key",
                issuer.forge(&issuer.claims("alice", "ktwin:admin")),
            ),
        ],
    };
    let cases = routes(&interface, &instance);
    let policy = ktwin_runtime::access::route_policy().build().unwrap();
    assert_covers(&cases, policy.paths());
    check_routes(&format!("http://{}", platform.http), &cases, &credentials).await;
    platform.shutdown(Duration::from_secs(5)).await;
}

/// Connects to `port` as `client_id` with `login`; the CONNACK's code, and the connection when
/// it was accepted.
async fn mqtt_connect(
    port: u16,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> (ConnectReturnCode, Option<(AsyncClient, EventLoop)>) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    if let Some((username, password)) = login {
        options.set_credentials(username, password);
    }
    let (client, mut events) = AsyncClient::new(options, 16);
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return ack.code,
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
                Err(err) => panic!("MQTT connection failed: {err}"),
            }
        }
    })
    .await
    .expect("a CONNACK");
    let accepted = (code == ConnectReturnCode::Success).then_some((client, events));
    (code, accepted)
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_log_in_to_the_embedded_broker_and_stay_within_their_topics() {
    let project = ktwin_testkit::example_project();
    let planned = PlannedProject::load(&project, &BTreeMap::new()).expect("the example plans");
    let twin = planned
        .project
        .instances
        .first()
        .expect("the example has twins");
    let interface = twin.spec.interface.clone();
    let instance = twin.metadata.name.clone().expect("named");

    // A device credential added before the start; the platform adds the simulator's.
    let dir = tempfile::tempdir().unwrap();
    let mut devices = DeviceCredentialFile::default();
    let password = devices
        .issue("device-1", DeviceGrant::device(&interface, &instance))
        .unwrap();
    devices
        .save(&dir.path().join(".ktwin").join("auth").join(DEVICES_FILE))
        .unwrap();
    let mut options = UpOptions::new(dir.path());
    options.http_port = 0;
    options.mqtt = MqttChoice::Embedded { port: 0 };
    options.store = BackendChoice::Embedded(dir.path().join("store"));
    options.console = Console::recording();
    let platform = Platform::start(planned, options)
        .await
        .expect("platform starts");
    let port = platform.mqtt.port;
    let refusals = platform.mqtt_refusals().expect("the gate is in front");

    for (login, expected) in [
        (None, ConnectReturnCode::NotAuthorized),
        (
            Some(("device-1", "wrong")),
            ConnectReturnCode::BadUserNamePassword,
        ),
    ] {
        let (code, _) = mqtt_connect(port, "intruder", login).await;
        assert_eq!(code, expected, "{login:?}");
    }
    let (code, device) =
        mqtt_connect(port, "device-1", Some(("device-1", password.expose()))).await;
    assert_eq!(code, ConnectReturnCode::Success);
    let (device, mut events) = device.unwrap();
    tokio::spawn(async move { while events.poll().await.is_ok() {} });

    // Its own topic reaches the platform; another twin's topic and a wildcard do not.
    let own = format!("ktwin/real/{interface}/{instance}");
    let forged = format!("ktwin/real/{interface}/{instance}-forged");
    device
        .publish(&forged, QoS::AtLeastOnce, false, "{}")
        .await
        .unwrap();
    device
        .subscribe("ktwin/virtual/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    device
        .publish(&own, QoS::AtLeastOnce, false, "{}")
        .await
        .unwrap();
    wait_for("the device's own message", || {
        platform.stats().ingested >= 1
    })
    .await;
    wait_for("the refusals", || {
        refusals.publish.load(Ordering::Relaxed) == 1
            && refusals.subscribe.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(refusals.authentication.load(Ordering::Relaxed), 2);
    assert_eq!(
        platform.stats().ingested,
        1,
        "the forged message was not ingested"
    );
    platform.shutdown(Duration::from_secs(5)).await;
}
