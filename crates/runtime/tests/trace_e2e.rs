//! One device message followed through its trace on `ktwin up` with the smart-city example: an
//! air-quality reading (the dispatcher starts the trace), the air-quality service (stores the
//! rated reading, commands its pole), the pole service (commands its neighborhood), the
//! neighborhood service (stores the neighborhood's AQI), and the event store — every event
//! shares the trace id, and each one's causes lead back to the device message.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use ktwin_events::trace::{EventTrace, SpanId, TraceId};
use ktwin_runtime::up::{MqttChoice, Platform, UpOptions};
use ktwin_runtime::{Console, PlannedProject};
use ktwin_smart_city_services as services;
use ktwin_store::{BackendChoice, CausalChain, TwinEvent};
use rumqttc::{AsyncClient, EventLoop, Packet, QoS};

const AIR_QUALITY: &str = "ngsi-ld-city-airqualityobserved";
const SENSOR: &str = "ngsi-ld-city-airqualityobserved-nb001-p00001";
const POLE: &str = "city-pole-nb001-p00001";
const NEIGHBORHOOD: &str = "s4city-city-neighborhood-nb001";

/// Guards against a hang (a broken path never answers): generous, not a performance bound.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen"))
}

async fn until_puback(events: &mut EventLoop) {
    loop {
        if let rumqttc::Event::Incoming(Packet::PubAck(_)) =
            events.poll().await.expect("device connection")
        {
            return;
        }
    }
}

/// The trace of a stored event.
fn trace_of(event: &TwinEvent) -> EventTrace {
    let traceparent = event.traceparent.as_deref().unwrap_or_else(|| {
        panic!(
            "stored event {} ({}) has no traceparent",
            event.id, event.event_type
        )
    });
    EventTrace::parse(traceparent, event.tracestate.as_deref()).expect("a valid traceparent")
}

/// The command events published on the platform's bus, from the start (the event stream's
/// ring), until `count` of them have come.
async fn commands(client: &reqwest::Client, base: &str, count: usize) -> Vec<serde_json::Value> {
    let mut response = client
        .get(format!("{base}/api/v1/events/stream?type=ktwin.command.*"))
        .header("last-event-id", "0")
        .send()
        .await
        .expect("the event stream answers");
    assert_eq!(response.status(), 200);
    let (mut text, mut found) = (String::new(), Vec::new());
    while found.len() < count {
        let chunk = response.chunk().await.expect("the stream").expect("open");
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = text.find('\n') {
            let line: String = text.drain(..=end).collect();
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                found.push(serde_json::from_str(data.trim()).expect("a CloudEvent"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_message_is_followed_through_services_commands_and_the_store() {
    let project = ktwin_testkit::example_project();
    if !project.join("ktwin.yaml").exists() {
        eprintln!("SKIPPED: {} is missing", project.display());
        return;
    }
    let planned =
        PlannedProject::load(&project, &BTreeMap::from([("neighborhoods".to_owned(), 1)]))
            .expect("the smart-city example loads and plans");
    let graph = &planned.project.instance_graph;
    assert!(graph.outgoing(SENSOR).iter().any(|r| r.instance == POLE));
    assert!(
        graph
            .outgoing(POLE)
            .iter()
            .any(|r| r.instance == NEIGHBORHOOD)
    );
    let dir = tempfile::tempdir().unwrap();
    let mut options = UpOptions::new(dir.path());
    options.http_port = 0;
    options.mqtt = MqttChoice::Embedded { port: 0 };
    options.store = BackendChoice::Embedded(dir.path().join("store"));
    options.handlers = services::handlers().into_iter().collect();
    options.console = Console::recording();
    let platform = Platform::start(planned, options)
        .await
        .expect("platform starts");
    let base = format!("http://{}", platform.http);
    let http = common::api_client(&platform);

    // ONE device message: the paper's reading (every density 8), rated MODERATE.
    let (device, mut events) = AsyncClient::new(common::device_options(&platform, SENSOR), 16);
    let reading = r#"{"CODensity": 8, "PM10Density": 8, "PM25Density": 8, "SO2Density": 8,
        "O3Density": 8, "WindSpeed": 8, "reliability": 8}"#;
    device
        .publish(
            format!("ktwin/real/{AIR_QUALITY}/{SENSOR}"),
            QoS::AtLeastOnce,
            false,
            reading,
        )
        .await
        .unwrap();
    within("PUBACK", until_puback(&mut events)).await;
    let latest =
        format!("{base}/api/v1/twin-events/s4city-city-neighborhood/{NEIGHBORHOOD}/latest");
    within("the neighborhood's state", async {
        while http.get(&latest).send().await.unwrap().status() != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(platform.wait_idle(Duration::from_secs(30)).await);

    // The dispatcher started the trace at the device's event: its id names the trace.
    let history: Vec<TwinEvent> = http
        .get(format!("{base}/api/v1/twin-events/{AIR_QUALITY}/{SENSOR}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let real = history
        .iter()
        .find(|e| e.event_type == format!("ktwin.real.{AIR_QUALITY}"))
        .expect("the reading is stored (persistRealEvent)");
    let root = trace_of(real);
    let trace = TraceId::of_event_id(&real.id);
    assert_eq!(root.parent.trace_id, trace);
    assert_eq!(root.parent.span_id, SpanId::derived(&real.id));
    assert!(root.causes.is_empty(), "the device message is the root");

    // The store's trace route (by the device event's id) returns the whole stored chain.
    let response = http
        .get(format!("{base}/api/v1/traces/{}", real.id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let traced: Vec<TwinEvent> = response.json().await.unwrap();
    let kinds: Vec<(&str, &str)> = traced
        .iter()
        .map(|e| (e.event_type.as_str(), e.instance_id.as_str()))
        .collect();
    let store_aq = format!("ktwin.store.{AIR_QUALITY}");
    for expected in [
        (format!("ktwin.real.{AIR_QUALITY}").as_str(), SENSOR),
        (store_aq.as_str(), SENSOR),
        ("ktwin.store.s4city-city-neighborhood", NEIGHBORHOOD),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} not in {kinds:?}");
    }
    assert!(traced.iter().all(|e| trace_of(e).parent.trace_id == trace));
    let stored_aq = traced.iter().find(|e| e.event_type == store_aq).unwrap();
    assert_eq!(trace_of(stored_aq).causes, vec![root.parent.span_id]);

    // The commands in between (not stored) carried the trace too: sensor → pole → neighborhood.
    let commands = within("the two commands", commands(&http, &base, 2)).await;
    let command_trace = |source: &str| {
        let command = commands
            .iter()
            .find(|c| c["source"] == source)
            .unwrap_or_else(|| panic!("no command to {source} in {commands:?}"));
        EventTrace::parse(
            command["traceparent"].as_str().expect("a traceparent"),
            command["tracestate"].as_str(),
        )
        .expect("a valid traceparent")
    };
    let to_pole = command_trace(POLE);
    let to_neighborhood = command_trace(NEIGHBORHOOD);
    assert_eq!(to_pole.parent.trace_id, trace);
    assert_eq!(to_pole.causes, vec![root.parent.span_id]);
    assert_eq!(to_neighborhood.parent.trace_id, trace);
    assert_eq!(
        to_neighborhood.causes,
        vec![to_pole.parent.span_id, root.parent.span_id]
    );
    let stored_neighborhood = traced
        .iter()
        .find(|e| e.instance_id == NEIGHBORHOOD)
        .unwrap();
    assert_eq!(
        trace_of(stored_neighborhood).causes,
        vec![
            to_neighborhood.parent.span_id,
            to_pole.parent.span_id,
            root.parent.span_id
        ]
    );

    // `ktwin trace` prints this chain: the device message at the root, the commands (not
    // stored) between it and the neighborhood's stored state.
    let chain = CausalChain::build(trace, traced);
    let shape: Vec<(usize, Option<String>)> = chain
        .links
        .iter()
        .map(|l| (l.depth, l.event.as_ref().map(|e| e.event_type.clone())))
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, Some(format!("ktwin.real.{AIR_QUALITY}"))),
            (1, None),
            (2, None),
            (3, Some("ktwin.store.s4city-city-neighborhood".to_owned())),
            (1, Some(store_aq.clone())),
        ],
        "{}",
        chain.render()
    );
    assert_eq!(chain.links[1].span_id, to_pole.parent.span_id.to_string());
    assert_eq!(
        chain.links[2].span_id,
        to_neighborhood.parent.span_id.to_string()
    );

    platform.shutdown(Duration::from_secs(10)).await;
}
