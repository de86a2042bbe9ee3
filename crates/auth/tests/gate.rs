//! The MQTT gate in front of a real embedded rumqttd: devices authenticate, each publishes and
//! subscribes only within its rights, refusals are counted, another device is unaffected, the
//! broker behind cannot be reached without the gate's secret, and with a PUBACK hold a device's
//! acknowledgement waits until the platform reports its message durable; with a direct feed
//! the gate delivers ingested messages to the platform itself, bypassing the broker.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;

use common::{WAIT, connect, publish_own_and_forged};
use ktwin_auth::Reloading;
use ktwin_auth::Secret;
use ktwin_auth::mqtt::gate::{MqttGate, Upstream};
use ktwin_auth::mqtt::{
    DeclaredTopics, DeviceCredentialFile, DeviceGrant, DeviceRegistry, DirectFeed, DirectMessages,
    MessageKey, PubAckHold, direct_feed,
};
use rumqttc::SubscribeReasonCode;
use tokio_util::sync::CancellationToken;

const GATE_USER: &str = "ktwin-gate";

/// rumqttd on a free loopback port, accepting only the gate's credentials.
fn start_rumqttd(password: &Secret) -> SocketAddr {
    let listen = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = rumqttd::ServerSettings {
        name: "gated".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 1024 * 1024,
            max_inflight_count: 100,
            auth: Some(HashMap::from([(
                GATE_USER.to_owned(),
                password.expose().to_owned(),
            )])),
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 100,
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::spawn(move || {
        if let Err(err) = broker.start() {
            panic!("rumqttd stopped: {err}");
        }
    });
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(started.elapsed() < WAIT, "rumqttd did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    listen
}

struct Setup {
    gate_port: u16,
    broker: SocketAddr,
    gate_password: Secret,
    p1: Secret,
    p2: Secret,
    gate: Arc<MqttGate>,
    stop: CancellationToken,
}

async fn setup() -> Setup {
    setup_with(None, None).await
}

/// A gate holding PUBACKs in `hold`, and delivering to `direct`, if given.
async fn setup_with(hold: Option<Arc<PubAckHold>>, direct: Option<DirectFeed>) -> Setup {
    let mut file = DeviceCredentialFile::default();
    let p1 = file.issue("p1", DeviceGrant::device("pole", "p1")).unwrap();
    let p2 = file.issue("p2", DeviceGrant::device("pole", "p2")).unwrap();
    let gate_password = Secret::generate("gate_");
    let broker = start_rumqttd(&gate_password);
    let upstream = Upstream {
        address: broker,
        username: GATE_USER.to_owned(),
        password: gate_password.clone(),
    };
    let registry = Reloading::fixed(DeviceRegistry::new(&file).unwrap());
    let mut gate = MqttGate::new(upstream, registry, DeclaredTopics::default(), 1024 * 1024);
    if let Some(hold) = hold {
        gate = gate.with_ack_hold(hold);
    }
    if let Some(direct) = direct {
        gate = gate.with_direct_feed(direct);
    }
    let gate = Arc::new(gate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gate_port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    tokio::spawn(Arc::clone(&gate).serve(listener, stop.clone()));
    Setup {
        gate_port,
        broker,
        gate_password,
        p1,
        p2,
        gate,
        stop,
    }
}

#[tokio::test]
async fn devices_stay_within_their_rights_and_refusals_are_counted() {
    let s = setup().await;
    let refusals = s.gate.refusals();
    let mut platform = platform(&s).await;

    let mut p1 = connect(s.gate_port, "dev-1", "p1", s.p1.expose())
        .await
        .unwrap();
    let mut p2 = connect(s.gate_port, "dev-2", "p2", s.p2.expose())
        .await
        .unwrap();

    // Publishing: own topic delivered, another device's dropped and counted.
    publish_own_and_forged(&p1, &p2, &mut platform).await;
    assert_eq!(refusals.publish.load(Ordering::Relaxed), 1);

    // Subscribing: another device's virtual topic or a wildcard is refused with a failure.
    assert_eq!(
        p1.subscribe("ktwin/virtual/pole/p2").await,
        Some(SubscribeReasonCode::Failure)
    );
    assert_eq!(
        p1.subscribe("ktwin/virtual/#").await,
        Some(SubscribeReasonCode::Failure)
    );
    assert_eq!(refusals.subscribe.load(Ordering::Relaxed), 2);
    assert!(matches!(
        p1.subscribe("ktwin/virtual/pole/p1").await,
        Some(SubscribeReasonCode::Success(_))
    ));
    assert!(matches!(
        p2.subscribe("ktwin/virtual/pole/p2").await,
        Some(SubscribeReasonCode::Success(_))
    ));
    platform.publish("ktwin/virtual/pole/p2", "for p2").await;
    platform.publish("ktwin/virtual/pole/p1", "for p1").await;
    assert_eq!(
        p1.next_message(WAIT).await,
        Some(("ktwin/virtual/pole/p1".to_owned(), "for p1".to_owned()))
    );
    assert_eq!(
        p2.next_message(WAIT).await,
        Some(("ktwin/virtual/pole/p2".to_owned(), "for p2".to_owned()))
    );
    assert_eq!(p1.next_message(Duration::from_millis(300)).await, None);
    s.stop.cancel();
}

#[tokio::test]
async fn bad_credentials_are_refused_and_the_broker_cannot_be_reached_around_the_gate() {
    let s = setup().await;
    let refusals = s.gate.refusals();
    assert!(
        connect(s.gate_port, "x", "p1", s.p2.expose())
            .await
            .is_err()
    );
    assert!(
        connect(s.gate_port, "x", "nobody", s.p1.expose())
            .await
            .is_err()
    );
    assert_eq!(refusals.authentication.load(Ordering::Relaxed), 2);
    // The device's own password does not open the broker behind the gate.
    assert!(
        connect(s.broker.port(), "x", "p1", s.p1.expose())
            .await
            .is_err()
    );
    assert!(
        connect(s.broker.port(), "x", GATE_USER, s.p1.expose())
            .await
            .is_err()
    );
    s.stop.cancel();
}

#[tokio::test]
async fn a_client_id_reused_by_another_credential_does_not_take_over_the_session() {
    let s = setup().await;
    let mut platform = platform(&s).await;
    let mut p1 = connect(s.gate_port, "shared-id", "p1", s.p1.expose())
        .await
        .unwrap();
    assert!(matches!(
        p1.subscribe("ktwin/virtual/pole/p1").await,
        Some(SubscribeReasonCode::Success(_))
    ));
    let _p2 = connect(s.gate_port, "shared-id", "p2", s.p2.expose())
        .await
        .unwrap();
    platform
        .publish("ktwin/virtual/pole/p1", "still here")
        .await;
    assert_eq!(
        p1.next_message(WAIT).await,
        Some(("ktwin/virtual/pole/p1".to_owned(), "still here".to_owned()))
    );
    let _ = platform.closed_within(Duration::from_millis(1)).await;
    s.stop.cancel();
}

/// The platform's side: subscribed to device messages on the broker behind the gate.
async fn platform(s: &Setup) -> common::Device {
    let mut platform = connect(
        s.broker.port(),
        "platform",
        GATE_USER,
        s.gate_password.expose(),
    )
    .await
    .unwrap();
    assert!(matches!(
        platform.subscribe("ktwin/real/#").await,
        Some(SubscribeReasonCode::Success(_))
    ));
    platform
}

/// A gate holding PUBACKs of messages on `ingested`, the platform subscribed behind it, and
/// device p1 connected.
async fn held(ingested: &str) -> (Arc<PubAckHold>, Setup, common::Device, common::Device) {
    let hold = Arc::new(PubAckHold::new([ingested.to_owned()]));
    let s = setup_with(Some(Arc::clone(&hold)), None).await;
    let platform = platform(&s).await;
    let p1 = connect(s.gate_port, "dev-1", "p1", s.p1.expose())
        .await
        .unwrap();
    (hold, s, platform, p1)
}

/// Waits (polling, within [`WAIT`]) until the hold keeps `count` PUBACKs.
async fn until_withheld(hold: &PubAckHold, count: usize) {
    let started = std::time::Instant::now();
    while hold.withheld() != count {
        assert!(
            started.elapsed() < WAIT,
            "the gate holds {} PUBACKs, not {count}",
            hold.withheld()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_puback_waits_until_the_platform_reports_the_message_durable() {
    let (hold, s, mut platform, mut p1) = held("ktwin/real/#").await;
    p1.publish("ktwin/real/pole/p1", "r1").await;
    let (topic, payload) = platform.next_message(WAIT).await.unwrap();
    // The broker acknowledged it to the gate, which keeps the PUBACK from the device.
    until_withheld(&hold, 1).await;
    assert_eq!(p1.pubacks_so_far(), Vec::<u16>::new());
    hold.durable(&MessageKey::of(topic.as_bytes(), payload.as_bytes()));
    assert!(p1.next_puback(WAIT).await.is_some());
    assert_eq!(hold.withheld(), 0);
    s.stop.cancel();
}

#[tokio::test]
async fn messages_the_platform_never_reports_are_acknowledged_at_once() {
    // The platform ingests only p2's topic here.
    let (hold, s, mut platform, mut p1) = held("ktwin/real/pole/p2").await;
    // Refused by the ACL: the gate answers for the broker.
    p1.publish("ktwin/real/pole/p2", "forged").await;
    assert!(p1.next_puback(WAIT).await.is_some());
    relayed_at_once(&hold, &mut platform, &mut p1).await;
    s.stop.cancel();
}

/// A message of `p1` on a topic the platform does not ingest (`ktwin/real/pole/p1`) goes
/// through the broker, and the broker's PUBACK passes at once.
async fn relayed_at_once(
    hold: &PubAckHold,
    platform: &mut common::Device,
    p1: &mut common::Device,
) {
    p1.publish("ktwin/real/pole/p1", "not ingested").await;
    assert!(p1.next_puback(WAIT).await.is_some());
    assert_eq!(
        platform.next_message(WAIT).await,
        Some(("ktwin/real/pole/p1".to_owned(), "not ingested".to_owned()))
    );
    assert_eq!(hold.withheld(), 0);
}

#[tokio::test]
async fn a_held_puback_is_forgotten_with_its_connection() {
    let (hold, s, mut platform, p1) = held("ktwin/real/#").await;
    p1.publish("ktwin/real/pole/p1", "gone").await;
    platform.next_message(WAIT).await.unwrap();
    until_withheld(&hold, 1).await;
    // The device goes away without its PUBACK: nothing stays held for it.
    p1.client.disconnect().await.unwrap();
    until_withheld(&hold, 0).await;

    s.stop.cancel();
}

/// A gate holding PUBACKs of messages on `ingested` and delivering them to the feed it
/// returns, the platform subscribed to device messages on the broker behind the gate as well
/// (it must see none of the delivered ones), and device p1 connected.
async fn direct(
    ingested: &str,
) -> (
    Arc<PubAckHold>,
    DirectMessages,
    Setup,
    common::Device,
    common::Device,
) {
    let hold = Arc::new(PubAckHold::new([ingested.to_owned()]));
    let (feed, messages) = direct_feed(1024 * 1024);
    let s = setup_with(Some(Arc::clone(&hold)), Some(feed)).await;
    let platform = platform(&s).await;
    let p1 = connect(s.gate_port, "dev-1", "p1", s.p1.expose())
        .await
        .unwrap();
    (hold, messages, s, platform, p1)
}

#[tokio::test]
async fn a_delivered_message_skips_the_broker_and_its_puback_waits_until_durable() {
    let (hold, mut messages, s, mut platform, mut p1) = direct("ktwin/real/#").await;
    p1.publish("ktwin/real/pole/p1", "r1").await;
    let message = tokio::time::timeout(WAIT, messages.recv())
        .await
        .expect("the gate delivered the message")
        .unwrap();
    assert_eq!(
        (message.topic.as_str(), message.payload.as_ref()),
        ("ktwin/real/pole/p1", b"r1".as_slice())
    );
    // The gate made the PUBACK and holds it; the broker never saw the message.
    until_withheld(&hold, 1).await;
    assert_eq!(p1.pubacks_so_far(), Vec::<u16>::new());
    hold.durable(&MessageKey::of(message.topic.as_bytes(), &message.payload));
    assert!(p1.next_puback(WAIT).await.is_some());
    assert_eq!(hold.withheld(), 0);
    assert_eq!(
        platform.next_message(Duration::from_millis(300)).await,
        None,
        "a delivered message also went through the broker"
    );
    // QoS 0 is delivered too, with nothing to acknowledge.
    p1.client
        .publish("ktwin/real/pole/p1", rumqttc::QoS::AtMostOnce, false, "r0")
        .await
        .unwrap();
    let message = tokio::time::timeout(WAIT, messages.recv()).await.unwrap();
    assert_eq!(message.unwrap().payload.as_ref(), b"r0");
    s.stop.cancel();
}

#[tokio::test]
async fn retained_and_uningested_messages_still_go_through_the_broker() {
    let (hold, mut messages, s, mut platform, mut p1) = direct("ktwin/real/pole/p2").await;
    relayed_at_once(&hold, &mut platform, &mut p1).await;
    s.stop.cancel();

    // Retained on an ingested topic: the broker keeps it for later subscribers.
    let (hold, mut messages_all, s, mut platform, p1) = direct("ktwin/real/#").await;
    p1.client
        .publish(
            "ktwin/real/pole/p1",
            rumqttc::QoS::AtLeastOnce,
            true,
            "kept",
        )
        .await
        .unwrap();
    assert_eq!(
        platform.next_message(WAIT).await,
        Some(("ktwin/real/pole/p1".to_owned(), "kept".to_owned()))
    );
    until_withheld(&hold, 1).await;
    for feed in [&mut messages, &mut messages_all] {
        let delivered = tokio::time::timeout(Duration::from_millis(300), feed.recv()).await;
        assert!(delivered.is_err(), "a message was delivered: {delivered:?}");
    }
    s.stop.cancel();
}

#[tokio::test]
async fn with_the_feed_closed_messages_go_through_the_broker() {
    let (hold, messages, s, mut platform, p1) = direct("ktwin/real/#").await;
    drop(messages);
    p1.publish("ktwin/real/pole/p1", "late").await;
    assert_eq!(
        platform.next_message(WAIT).await,
        Some(("ktwin/real/pole/p1".to_owned(), "late".to_owned()))
    );
    // Held as any relayed message until durable.
    until_withheld(&hold, 1).await;
    s.stop.cancel();
}

/// A device that publishes sends no PINGREQ (MQTT 3.1.1 asks for one only when the client
/// sent nothing else; libmosquitto and Paho skip it). While the gate delivers its messages
/// itself the broker hears nothing from the device's connection, so the gate pings the broker
/// on its behalf, and the device never sees the answers.
#[tokio::test]
async fn a_device_that_only_publishes_keeps_its_connection() {
    use rumqttc::mqttbytes::v4::{Connect, Login, Publish};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let hold = Arc::new(PubAckHold::new(["ktwin/real/#".to_owned()]));
    let (feed, mut messages) = direct_feed(1024 * 1024);
    let s = setup_with(Some(Arc::clone(&hold)), Some(feed)).await;
    let mut device = tokio::net::TcpStream::connect(("127.0.0.1", s.gate_port))
        .await
        .unwrap();
    let mut connect = Connect::new("quiet-1");
    connect.keep_alive = 1; // the broker closes a connection silent for 1.5 s
    connect.login = Some(Login::new("p1", s.p1.expose()));
    let mut bytes = BytesMut::new();
    connect.write(&mut bytes).unwrap();
    device.write_all(&bytes).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, device.read_exact(&mut connack))
        .await
        .expect("a CONNACK")
        .unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "accepted");

    // QoS 0 every 200 ms for 3.6 s: more than twice what the broker lets a connection be silent.
    let readings = 18;
    for n in 0..readings {
        let publish = Publish::new(
            "ktwin/real/pole/p1",
            rumqttc::QoS::AtMostOnce,
            n.to_string(),
        );
        let mut bytes = BytesMut::new();
        publish.write(&mut bytes).unwrap();
        device.write_all(&bytes).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in 0..readings {
        let message = tokio::time::timeout(WAIT, messages.recv())
            .await
            .unwrap_or_else(|_| panic!("reading {n} was not delivered"))
            .unwrap();
        assert_eq!(message.payload.as_ref(), n.to_string().as_bytes());
    }
    // Still connected, and nothing came back: no PINGRESP it did not ask for, no close.
    let mut unexpected = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_millis(500), device.read(&mut unexpected)).await;
    assert!(
        read.is_err(),
        "the device got {read:?} (0 bytes: the gate closed its connection)"
    );
    s.stop.cancel();
}
