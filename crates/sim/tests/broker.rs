//! The simulator against the real Mosquitto of the test environment (`ktwin_testkit::servers`):
//! per-type rates of the load model at `--speedup 1`, virtual-topic messages applied, and an
//! unreachable broker not being fatal. Mosquitto is required: without it these tests fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ktwin_sdk::{Relationship, TwinGraph, TwinNode};
use ktwin_sim::{DeviceType, LoadProfile, Pace, SimConfig, SimWorld, run};
use ktwin_testkit::servers::MqttServer;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

/// The test broker, which must be running (`scripts/test.sh` starts it).
fn mosquitto() -> MqttServer {
    let server = ktwin_testkit::servers::mosquitto();
    if let Err(err) = std::net::TcpStream::connect((server.host.as_str(), server.port)) {
        panic!(
            "no MQTT broker on {}:{} (scripts/test.sh starts Mosquitto): {err}",
            server.host, server.port
        );
    }
    server
}

fn node(ty: DeviceType, name: String, device: Option<&str>) -> TwinNode {
    TwinNode {
        name,
        interface: ty.interface().into(),
        relationships: device
            .map(|d| Relationship {
                name: "refDevice".into(),
                interface: DeviceType::Battery.interface().into(),
                instance: d.into(),
            })
            .into_iter()
            .collect(),
    }
}

/// Counts messages per interface on `ktwin/real/#` whose instance ends with `suffix`.
async fn count_at_broker(
    server: &MqttServer,
    suffix: String,
) -> (Arc<Mutex<HashMap<String, u64>>>, AsyncClient) {
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let mut options = MqttOptions::new(
        format!("sim-test-counter{suffix}"),
        &server.host,
        server.port,
    );
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client
        .subscribe("ktwin/real/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sink = counts.clone();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let parts: Vec<&str> = p.topic.split('/').collect();
                    if parts.len() == 4 && parts[3].ends_with(&suffix) {
                        *sink.lock().unwrap().entry(parts[2].to_owned()).or_insert(0) += 1;
                    }
                }
                _ => {}
            }
        }
    });
    ready_rx.await.unwrap();
    (counts, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speedup_one_reproduces_the_per_type_rates_of_the_load_model() {
    let server = mosquitto();
    let suffix = format!("-t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    // 30 devices of each type (phases i/30, so publish times are not round numbers); window
    // 2 of the paper (from 480 s): periods 10, 10, 10, 5, 5, 2, 5 s, streetlights and
    // batteries silent.
    let per_type = 30;
    let graph = TwinGraph {
        twin_instances: DeviceType::ALL
            .into_iter()
            .flat_map(|ty| {
                let suffix = suffix.clone();
                (0..per_type).map(move |i| node(ty, format!("{}-{i:03}{suffix}", ty.name()), None))
            })
            .collect(),
    };
    let world = SimWorld::from_graph(&graph);
    let (counts, counter) = count_at_broker(&server, suffix.clone()).await;

    let mut config = SimConfig::new(&server.host, server.port);
    config.qos = QoS::AtLeastOnce;
    config.pace = Pace::Profile {
        profile: LoadProfile::paper(),
        speedup: 1.0,
        start_at: 480.0,
    };
    config.duration = Some(Duration::from_secs(12));
    config.connections = 8;
    config.client_prefix = format!("sim-test{suffix}");
    let report = run(&world, &config, CancellationToken::new(), |_, _, _| {})
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = counter.disconnect().await;

    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(
        report.acknowledged, report.sent,
        "QoS 1: every message acknowledged"
    );
    let counts = counts.lock().unwrap().clone();
    let profile = LoadProfile::paper();
    for ty in DeviceType::ALL {
        let received = counts.get(ty.interface()).copied().unwrap_or(0) as f64;
        let expected = profile.expected_messages(ty, per_type, 480.0, 480.0 + report.elapsed_s);
        if expected == 0.0 {
            assert_eq!(received, 0.0, "{ty} is silent in window 2");
            continue;
        }
        let (rate, model_rate) = (received / report.elapsed_s, expected / report.elapsed_s);
        assert!(
            (rate - model_rate).abs() <= 0.05 * model_rate,
            "{ty}: {rate:.2} msg/s at the broker ({received} messages), model {model_rate:.2} msg/s"
        );
        assert_eq!(report.per_type[ty.name()].sent as f64, received, "{ty}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_measurement_frequency_reaches_the_controlled_sensor() {
    let server = mosquitto();
    let suffix = format!("-v{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let device = format!("ngsi-ld-city-device-aqo{suffix}");
    let graph = TwinGraph {
        twin_instances: vec![
            node(DeviceType::Battery, device.clone(), None),
            node(DeviceType::AirQuality, format!("aq{suffix}"), Some(&device)),
        ],
    };
    let world = SimWorld::from_graph(&graph);
    let mut config = SimConfig::new(&server.host, server.port);
    // Window 2: the air-quality sensor publishes every 10 s, the battery is silent.
    config.pace = Pace::Profile {
        profile: LoadProfile::paper(),
        speedup: 1.0,
        start_at: 480.0,
    };
    config.duration = Some(Duration::from_secs(5));
    config.client_prefix = format!("sim-test{suffix}");

    let (counts, platform) = count_at_broker(&server, suffix.clone()).await;
    let send_virtual = {
        let platform = platform.clone();
        let topic = format!("ktwin/virtual/ngsi-ld-city-device/{device}");
        async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            platform
                .publish(
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    br#"{"measurementFrequency":0.5}"#.to_vec(),
                )
                .await
                .unwrap();
        }
    };
    let (report, ()) = tokio::join!(
        run(&world, &config, CancellationToken::new(), |_, _, _| {}),
        send_virtual
    );
    let report = report.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = platform.disconnect().await;

    assert_eq!(report.received, 1, "{report:?}");
    let aq = counts
        .lock()
        .unwrap()
        .get(DeviceType::AirQuality.interface())
        .copied()
        .unwrap_or(0);
    // 1 message at the start, then every 0.5 s for the last ~3.5 s (≈ 7) instead of none.
    assert!(
        aq >= 5,
        "air-quality sent {aq} messages: the new frequency was not applied"
    );
    assert_eq!(
        report.per_type["battery"].sent, 0,
        "the battery stays silent in window 2"
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_retried_not_fatal() {
    let graph = TwinGraph {
        twin_instances: vec![node(DeviceType::Noise, "noise-unreachable".into(), None)],
    };
    let mut config = SimConfig::new("127.0.0.1", 9);
    config.pace = Pace::Rate(100.0);
    config.duration = Some(Duration::from_millis(800));
    let report = run(
        &SimWorld::from_graph(&graph),
        &config,
        CancellationToken::new(),
        |_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.sent, 0);
    assert!(
        report.errors >= 2,
        "connection attempts are retried: {report:?}"
    );
}
