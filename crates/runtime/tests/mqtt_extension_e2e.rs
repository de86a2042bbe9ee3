//! `ktwin up` on `examples/mqtt-device`, whose vehicle model declares its own MQTT topics with
//! the DTDL MQTT extension: a real MQTT client publishes on the declared telemetry topic and the
//! twin's state is read from the store API; a command sent to the twin reaches the device on the
//! declared command topic; a topic that matches nothing is counted, not lost.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ktwin_runtime::up::{MqttChoice, Platform, UpOptions};
use ktwin_runtime::{Console, PlannedProject};
use ktwin_sdk::cloudevents::Event;
use ktwin_sdk::{EventType, HandlerError, TwinContext, TwinEvent, TwinHandler, async_trait};
use ktwin_store::{BackendChoice, LatestState};
use rumqttc::{AsyncClient, EventLoop, Packet, QoS};

const TELEMETRY: &str = "vehicles/dtmi:example:Vehicle;1/vehicle-car1/telemetry";
const COMMAND: &str = "vehicles/vehicle-car1/command/setColor";

/// The vehicle's twin service: it takes the vehicle's events and emits nothing (the store keeps
/// its telemetry, `persistRealEvent`).
struct Vehicle;

#[async_trait]
impl TwinHandler for Vehicle {
    fn subscriptions(&self) -> Vec<EventType> {
        vec![
            EventType::real("vehicle").expect("valid"),
            EventType::command("vehicle", "setColor").expect("valid"),
        ]
    }

    async fn handle(
        &self,
        _event: &TwinEvent,
        _ctx: &TwinContext,
    ) -> Result<Vec<Event>, HandlerError> {
        Ok(Vec::new())
    }
}

fn example() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/mqtt-device"
    ))
}

/// Guards against a hang (a broken path never answers): generous, not a performance bound.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen"))
}

/// The next publish the device receives.
async fn next_publish(events: &mut EventLoop) -> rumqttc::Publish {
    loop {
        if let rumqttc::Event::Incoming(Packet::Publish(publish)) =
            events.poll().await.expect("device connection")
        {
            return publish;
        }
    }
}

/// Polls until the broker acknowledged the subscription (`suback`) or the publish.
async fn until_acked(events: &mut EventLoop, suback: bool) {
    loop {
        match events.poll().await.expect("device connection") {
            rumqttc::Event::Incoming(Packet::SubAck(_)) if suback => return,
            rumqttc::Event::Incoming(Packet::PubAck(_)) if !suback => return,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_its_declared_topics() {
    let planned = PlannedProject::load(&example(), &BTreeMap::new())
        .expect("the mqtt-device example loads and plans");
    let dir = tempfile::tempdir().unwrap();
    let mut options = UpOptions::new(dir.path());
    options.http_port = 0;
    options.mqtt = MqttChoice::Embedded { port: 0 };
    options.store = BackendChoice::Embedded(dir.path().join("store"));
    options.handlers = BTreeMap::from([(
        "mqtt-device/vehicle".to_owned(),
        Arc::new(Vehicle) as Arc<dyn TwinHandler>,
    )]);
    options.console = Console::recording();
    let platform = Platform::start(planned, options)
        .await
        .expect("platform starts");
    assert!(
        platform
            .describe()
            .iter()
            .any(|l| l.contains("vehicles/{modelId}/{senderId}/telemetry")),
        "{:?}",
        platform.describe()
    );
    let base = format!("http://{}", platform.http);

    let mut options = common::device_options(&platform, "vehicle-car1");
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 16);
    client.subscribe(COMMAND, QoS::AtLeastOnce).await.unwrap();
    within("SUBACK", until_acked(&mut events, true)).await;

    // Telemetry on the declared topic becomes the twin's state.
    client
        .publish(
            TELEMETRY,
            QoS::AtLeastOnce,
            false,
            r#"{"speed": 42.5, "color": "red"}"#,
        )
        .await
        .unwrap();
    within("PUBACK", until_acked(&mut events, false)).await;
    // A topic of the declared pattern's shape that names another model.
    client
        .publish(
            "vehicles/dtmi:example:Truck;1/vehicle-car1/telemetry",
            QoS::AtLeastOnce,
            false,
            "{}",
        )
        .await
        .unwrap();
    within("PUBACK", until_acked(&mut events, false)).await;
    let http = common::api_client(&platform);
    let state = within("the twin's state", async {
        loop {
            let states: Vec<LatestState> = http
                .get(format!("{base}/api/v1/twins/vehicle"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(state) = states.into_iter().find(|s| s.instance_id == "vehicle-car1") {
                break state;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(state.event_type, "ktwin.real.vehicle");
    assert_eq!(state.state["speed"], 42.5);
    assert_eq!(state.state["color"], "red");
    // The MQTT gate allows a device the topics its interface declares, filled in with its own
    // model id: the other model's topic is refused there (and counted), never ingested.
    let refusals = platform
        .mqtt_refusals()
        .expect("auth is on: the gate is in front");
    within("the unmatched topic's refusal", async {
        while refusals.publish.load(std::sync::atomic::Ordering::Relaxed) < 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(platform.stats().ingested, 1, "{:?}", platform.stats());

    // A command to the twin reaches the device on the declared command topic.
    let command = ktwin_sdk::command_event(
        "vehicle",
        "setColor",
        "vehicle-car1",
        serde_json::json!({"newColor": "blue"}),
    )
    .unwrap();
    assert_eq!(common::post_to_broker(&http, &base, command).await, 202);
    let publish = within("the command", next_publish(&mut events)).await;
    assert_eq!(publish.topic, COMMAND);
    let payload: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
    assert_eq!(payload, serde_json::json!({"newColor": "blue"}));

    let stats = platform.shutdown(Duration::from_secs(10)).await;
    assert_eq!(stats.sent_to_devices, 1, "{stats:?}");
}
