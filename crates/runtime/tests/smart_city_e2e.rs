//! `ktwin up` on the smart-city example, end to end: 1 neighborhood, the simulated devices at
//! 10× the paper's load model for 60 s over the embedded MQTT broker, the smart-city services
//! mounted in-process, the embedded event store; then checks over the HTTP API that every
//! device message was stored, that the neighborhood's AQI and the parkings' occupancy are what
//! the services' logic implies for the messages sent, and that virtual events reached devices.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ktwin_runtime::up::Platform;
use ktwin_sim::{DeviceType, LoadProfile, Pace, SimConfig, SimWorld};
use ktwin_smart_city_services as services;
use ktwin_store::{LatestState, TwinEvent};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Every stored event, through the paged HTTP API.
async fn all_events(client: &reqwest::Client, base: &str) -> Vec<TwinEvent> {
    ktwin_testkit::all_pages(client, &format!("{base}/api/v1/twin-events?limit=1000")).await
}

/// Latest states of every instance of `interface`, through the paged HTTP API.
async fn twins(client: &reqwest::Client, base: &str, interface: &str) -> Vec<LatestState> {
    ktwin_testkit::all_pages(
        client,
        &format!("{base}/api/v1/twins/{interface}?limit=1000"),
    )
    .await
}

/// Every series a panel of `deploy/grafana/` queries is exported by this `ktwin up`, once a bad
/// device message has been dead-lettered (dead-letter series appear with the first one).
async fn grafana_panels_query_exported_series(
    platform: &Platform,
    client: &reqwest::Client,
    base: &str,
) {
    let rejected = platform.stats().rejected;
    let options = common::device_options(platform, "grafana-check");
    let (mqtt, mut connection) = rumqttc::AsyncClient::new(options, 10);
    mqtt.publish(
        "ktwin/real/ngsi-ld-city-airqualityobserved/not-json",
        rumqttc::QoS::AtLeastOnce,
        false,
        "temperature=8",
    )
    .await
    .unwrap();
    let started = Instant::now();
    while platform.stats().rejected == rejected {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the bad message is not refused: {:?}",
            platform.stats()
        );
        tokio::select! {
            polled = connection.poll() => { polled.unwrap(); }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported = |series: &str| {
        metrics.lines().any(|line| {
            line.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
    };
    let dir = ktwin_testkit::workspace_root().join("deploy/grafana");
    let mut queried = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for series in expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .filter(|word| word.starts_with("ktwin_") || word.starts_with("rabbitmq_"))
                {
                    assert!(
                        exported(series),
                        "{}: panel {:?} queries {series}, which ktwin up does not export",
                        path.display(),
                        panel["title"]
                    );
                    queried += 1;
                }
            }
        }
    }
    assert!(
        queried >= 10,
        "only {queried} series queried in {}",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_city_one_neighborhood_at_10x_for_60s() {
    let dir = tempfile::tempdir().unwrap();
    let platform = common::start_smart_city(dir.path()).await;
    let base = format!("http://{}", platform.http);

    // The devices: the paper's profile at 10× for 60 s, QoS 1 so "sent" means "accepted".
    let world =
        SimWorld::from_graph_json(&platform.planned.graph_json(), "smart-city world").unwrap();
    let mut sim = SimConfig::new(&platform.mqtt.host, platform.mqtt.port);
    sim.credentials = platform.simulator_login();
    sim.qos = rumqttc::QoS::AtLeastOnce;
    sim.pace = Pace::Profile {
        profile: LoadProfile::paper(),
        speedup: 10.0,
        start_at: 0.0,
    };
    sim.duration = Some(Duration::from_secs(60));
    sim.connections = 4;
    // Virtual events reach devices: besides those the device service sends to batteries, a twin
    // service's virtual events are posted to the broker ingress (`KTWIN_BROKER`) as a service
    // would, while the devices run, so at least these reach their devices whatever the
    // batteries' levels.
    let targets: Vec<String> = world
        .devices
        .iter()
        .filter(|d| d.device_type == DeviceType::AirQuality)
        .take(20)
        .map(|d| d.instance.clone())
        .collect();
    let simulation = tokio::spawn(async move {
        ktwin_sim::run(&world, &sim, CancellationToken::new(), |_, _, _| {}).await
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Auth is on by default: the API calls carry the admin token created on first start.
    let client = common::api_client(&platform);
    for instance in &targets {
        let event = <cloudevents::EventBuilderV10 as cloudevents::EventBuilder>::new()
            .id(format!("virtual-{instance}"))
            .ty("ktwin.virtual.ngsi-ld-city-airqualityobserved")
            .source(instance.clone())
            .data(
                "application/json",
                serde_json::json!({"measurementFrequency": 10}),
            );
        let event = cloudevents::EventBuilder::build(event).unwrap();
        assert_eq!(common::post_to_broker(&client, &base, event).await, 202);
    }
    let report = simulation.await.unwrap().expect("simulation runs");
    assert!(
        report.sent > 1000,
        "a minute at 10× sends thousands of messages: {report:?}"
    );
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(
        report.acknowledged, report.sent,
        "QoS 1: every message acknowledged"
    );

    // Everything sent enters the platform, then every queue drains.
    let started = Instant::now();
    while platform.stats().ingested + platform.stats().rejected < report.sent {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ingress stalled: {:?}",
            platform.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        platform.wait_idle(Duration::from_secs(120)).await,
        "queues drain: {:?}",
        platform.stats()
    );
    let stats = platform.stats();
    assert_eq!(
        stats.ingested, report.sent,
        "every device message became an event: {stats:?}"
    );
    assert_eq!(stats.rejected, 0);

    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    grafana_panels_query_exported_series(&platform, &client, &base).await;
    let graph: Value = client
        .get(format!("{base}/api/v1/twin-graph"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        graph["twinInstances"].as_array().unwrap().len(),
        platform.planned.project.instances.len()
    );

    // sent == stored, per device type whose interface persists its real events.
    let events = all_events(&client, &base).await;
    let mut stored_real: HashMap<String, u64> = HashMap::new();
    for event in &events {
        if let Some(interface) = event.event_type.strip_prefix("ktwin.real.") {
            *stored_real.entry(interface.to_owned()).or_default() += 1;
        }
    }
    let mut checked = 0;
    for device_type in DeviceType::ALL {
        let interface = device_type.interface();
        let persisted = platform
            .planned
            .project
            .services
            .get(interface)
            .and_then(|s| s.persist_real_event)
            .unwrap_or(false);
        let sent = report
            .per_type
            .get(device_type.name())
            .map_or(0, |t| t.sent);
        if persisted && sent > 0 {
            assert_eq!(
                stored_real.get(interface).copied().unwrap_or(0),
                sent,
                "{interface}: sent == stored"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "several device types checked, got {checked}");
    // Model time 0–600 s covers the profile's second window, the one in which batteries report.
    assert!(
        report
            .per_type
            .get(DeviceType::Battery.name())
            .is_some_and(|t| t.sent > 0),
        "batteries reported: {report:?}"
    );

    // The neighborhood's AQI: the worst level of the air-quality observations sent (all within
    // the hour), as the air-quality service rates them.
    let worst = events
        .iter()
        .filter(|e| e.event_type == "ktwin.real.ngsi-ld-city-airqualityobserved")
        .filter_map(|e| {
            let densities: services::air_quality::Densities =
                serde_json::from_value(Value::Object(e.event_data.clone().into_map())).ok()?;
            services::air_quality::assess(&densities)
                .overall
                .map(|(_, level)| level)
        })
        .max()
        .expect("air-quality observations were rated");
    let neighborhoods = twins(&client, &base, services::names::NEIGHBORHOOD).await;
    assert_eq!(neighborhoods.len(), 1);
    assert_eq!(
        neighborhoods[0].state["aqiLevel"],
        serde_json::to_value(worst).unwrap(),
        "neighborhood AQI"
    );

    // Parking occupancy: the spots whose last status is "occupied".
    let spots = twins(&client, &base, services::names::PARKING_SPOT).await;
    assert!(!spots.is_empty(), "parking spots reported");
    let mut occupied_by_parking: HashMap<String, u64> = HashMap::new();
    for spot in &spots {
        let parking = platform
            .planned
            .project
            .instance_graph
            .outgoing(&spot.instance_id)
            .iter()
            .find(|r| r.name == services::names::REL_OFF_STREET_PARKING)
            .map(|r| r.instance.clone())
            .expect("every spot belongs to an off-street parking");
        let occupied =
            u64::from(spot.state.get("status").and_then(Value::as_str) == Some("occupied"));
        *occupied_by_parking.entry(parking).or_default() += occupied;
    }
    let parkings = twins(&client, &base, services::names::OFF_STREET_PARKING).await;
    for (parking, occupied) in &occupied_by_parking {
        let state = parkings
            .iter()
            .find(|p| &p.instance_id == parking)
            .map(|p| p.state["occupiedSpotNumber"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        assert_eq!(state, *occupied, "{parking}: occupancy matches its spots");
    }

    // Virtual events reached the devices.
    assert!(
        stats.sent_to_devices >= targets.len() as u64,
        "virtual events were sent: {stats:?}"
    );
    assert_eq!(
        report.received, stats.sent_to_devices,
        "devices received every virtual event: {report:?}"
    );

    let final_stats = platform.shutdown(Duration::from_secs(10)).await;
    assert_eq!(final_stats.ingested, report.sent);
}
