//! One device message followed through its trace on `ktwin up` with the smart-city example: an
//! air-quality reading (the dispatcher starts the trace), the air-quality service (stores the
//! rated reading, commands its pole), the pole service (commands its neighborhood), the
//! neighborhood service (stores the neighborhood's AQI), and the event store — every event
//! shares the trace id, and each one's causes lead back to the device message. And a command in
//! the original Python services' convention (`source` = the sender) followed to the twin it is
//! for: the sender's related twin, in the command's trace.

mod common;

use std::path::Path;
use std::time::Duration;

use ktwin_events::trace::{EventTrace, SpanId, TraceId, TraceSampler};
use ktwin_runtime::up::Platform;
use ktwin_sdk::{GraphCachePolicy, GraphLookup, HttpGraph};
use ktwin_store::{CausalChain, TwinEvent};
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

/// A stream of the command events published on the platform's bus from now on (the event
/// stream's tap subscribes when its first stream opens: open it before the device publishes).
async fn command_stream(client: &reqwest::Client, base: &str) -> reqwest::Response {
    let response = client
        .get(format!("{base}/api/v1/events/stream?type=ktwin.command.*"))
        .send()
        .await
        .expect("the event stream answers");
    assert_eq!(response.status(), 200);
    response
}

/// The first `count` command events of `response`.
async fn commands(mut response: reqwest::Response, count: usize) -> Vec<serde_json::Value> {
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

/// The smart city, recording the traces `sampler` samples, after ONE device message (the
/// paper's reading, every density 8, rated MODERATE) went through to the neighborhood's state.
struct OneReading {
    platform: Platform,
    http: reqwest::Client,
    base: String,
    /// The platform's command stream, opened before the reading was published.
    command_events: reqwest::Response,
    /// The reading as stored.
    real: TwinEvent,
}

async fn one_reading(dir: &Path, sampler: TraceSampler) -> OneReading {
    let mut options = common::up_options(dir);
    options.trace_sampler = sampler;
    let platform = Platform::start(common::smart_city(), options)
        .await
        .expect("platform starts");
    let graph = &platform.planned.project.instance_graph;
    assert!(graph.outgoing(SENSOR).iter().any(|r| r.instance == POLE));
    assert!(
        graph
            .outgoing(POLE)
            .iter()
            .any(|r| r.instance == NEIGHBORHOOD)
    );
    let base = format!("http://{}", platform.http);
    let http = common::api_client(&platform);
    let command_events = command_stream(&http, &base).await;

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
    let history: Vec<TwinEvent> = common::get_json(
        &http,
        &format!("{base}/api/v1/twin-events/{AIR_QUALITY}/{SENSOR}"),
    )
    .await;
    let real = history
        .into_iter()
        .find(|e| e.event_type == format!("ktwin.real.{AIR_QUALITY}"))
        .expect("the reading is stored (persistRealEvent)");
    OneReading {
        platform,
        http,
        base,
        command_events,
        real,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_message_is_followed_through_services_commands_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let OneReading {
        platform,
        http,
        base,
        command_events,
        real,
    } = one_reading(dir.path(), TraceSampler::ALWAYS).await;

    // The dispatcher started the trace at the device's event: its id names the trace.
    let root = trace_of(&real);
    let trace = TraceId::of_event_id(&real.id);
    assert_eq!(root.parent.trace_id, trace);
    assert_eq!(root.parent.span_id, SpanId::derived(&real.id));
    assert!(root.causes.is_empty(), "the device message is the root");

    // The store's trace route (by the device event's id) returns the whole stored chain.
    let traced: Vec<TwinEvent> =
        common::get_json(&http, &format!("{base}/api/v1/traces/{}", real.id)).await;
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
    let commands = within("the two commands", commands(command_events, 2)).await;
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

/// Tracing off (the trace not sampled): every event still carries the trace, the store keeps
/// none of it, and the trace route finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_that_is_not_sampled_is_carried_but_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let run = one_reading(dir.path(), TraceSampler::NEVER).await;
    let trace = TraceId::of_event_id(&run.real.id);
    let commands = within("the two commands", commands(run.command_events, 2)).await;
    for command in &commands {
        let carried = EventTrace::parse(
            command["traceparent"].as_str().expect("a traceparent"),
            command["tracestate"].as_str(),
        )
        .expect("a valid traceparent");
        assert_eq!(carried.parent.trace_id, trace, "{command}");
        assert!(!carried.parent.is_sampled(), "{command}");
    }
    assert_eq!(run.real.traceparent, None, "{:?}", run.real);
    let traced: Vec<TwinEvent> = common::get_json(
        &run.http,
        &format!("{}/api/v1/traces/{}", run.base, run.real.id),
    )
    .await;
    assert!(traced.is_empty(), "{traced:?}");
    run.platform.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_convention_command_reaches_the_related_twin_in_its_trace() {
    const PARKING: &str = "ngsi-ld-city-offstreetparking";
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::up_options(dir.path());
    options.trace_sampler = TraceSampler::ALWAYS;
    let platform = Platform::start(common::smart_city(), options)
        .await
        .expect("platform starts");
    let base = format!("http://{}", platform.http);
    let http = common::api_client(&platform);
    let (spot, parking) = (
        "ngsi-ld-city-offstreetparkingspot-nb001-ofp0001-s0001",
        "ngsi-ld-city-offstreetparking-nb001-ofp0001",
    );
    let related: Vec<_> = platform
        .planned
        .project
        .instance_graph
        .outgoing(spot)
        .iter()
        .filter(|r| r.interface == PARKING)
        .map(|r| r.instance.clone())
        .collect();
    assert_eq!(
        related,
        [parking],
        "the spot belongs to one off-street parking"
    );

    // The graph service's instance route, as a service's HttpGraph reads it: the sender's node
    // by name alone, whatever its interface.
    let admin = platform
        .credentials()
        .expect("auth is on")
        .admin_token
        .expose();
    let lookup = HttpGraph::new(
        &format!("{base}/api/v1/twin-graph"),
        GraphCachePolicy::default(),
    )
    .with_token(admin);
    let node = lookup.instance(spot).await.unwrap().expect("the spot");
    assert_ne!(node.interface, PARKING);
    assert!(node.relationships.iter().any(|r| r.instance == parking));
    assert!(lookup.instance("no-such-twin").await.unwrap().is_none());

    // The command as an original Python service sends it: source = the sender (the spot).
    let command = <cloudevents::EventBuilderV10 as cloudevents::EventBuilder>::new()
        .id("python-convention-1")
        .ty(format!("ktwin.command.{PARKING}.updatevehiclecount"))
        .source(spot)
        .extension(
            ktwin_events::trace::TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .data(
            "application/json",
            serde_json::json!({"vehicleEntranceCount": 1}),
        );
    let command = cloudevents::EventBuilder::build(command).unwrap();
    assert_eq!(common::post_to_broker(&http, &base, command).await, 202);
    let latest = |instance: &str| format!("{base}/api/v1/twin-events/{PARKING}/{instance}/latest");
    within("the parking's state", async {
        while http.get(latest(parking)).send().await.unwrap().status() != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(platform.wait_idle(Duration::from_secs(30)).await);
    let state: serde_json::Value = common::get_json(&http, &latest(parking)).await;
    assert_eq!(state["occupiedSpotNumber"], 1, "{state}");
    assert_eq!(
        http.get(latest(spot)).send().await.unwrap().status(),
        404,
        "nothing is filed under a parking named after the sender"
    );
    let traced: Vec<TwinEvent> = common::get_json(
        &http,
        &format!("{base}/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736"),
    )
    .await;
    assert!(
        traced.iter().any(|e| e.instance_id == parking),
        "the parking's state is in the command's trace: {traced:?}"
    );
    platform.shutdown(Duration::from_secs(10)).await;
}
