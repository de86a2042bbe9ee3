//! One plan, two realizers: for the smart-city example, the local runtime's broker
//! subscriptions and the Kubernetes objects the operator renders route the same event types to
//! the same subscribers, and bridge the same device topics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};
use ktwin_broker::{Broker, MemoryBroker, SubscriptionSpec};
use ktwin_events::EventType;
use ktwin_operator::render::{
    Discovered, EVENT_STORE_SEED_TYPE, event_store_service_name, render_plan, twin_service_name,
};
use ktwin_planner::{KtwinConfig, Plan, RoutingTable, Subscriber, routing_table};
use ktwin_runtime::PlannedProject;
use serde_json::Value;

fn smart_city() -> Option<PlannedProject> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/smart-city"
    ));
    if !dir.join("ktwin.yaml").exists() {
        eprintln!("SKIPPED: {} is missing", dir.display());
        return None;
    }
    Some(PlannedProject::load(&dir, &BTreeMap::from([("neighborhoods".to_owned(), 1)])).unwrap())
}

/// The routing the rendered Kubernetes objects implement, read back from the objects alone:
/// a Trigger delivers its filter's type plus every type a Binding routes into its queue to its
/// subscriber; Bindings into the cloud-event dispatcher's queue reach devices; Bindings from the
/// MQTT exchange into the MQTT dispatcher's queue bridge `ktwin.real.<iface>.#`.
fn kubernetes_routing(plan: &Plan) -> RoutingTable {
    let rendered = render_plan(
        plan,
        &KtwinConfig::default(),
        &Discovered::placeholders(plan),
    );
    assert!(rendered.missing.is_empty(), "{:?}", rendered.missing);
    let subscriber_of_service: BTreeMap<String, Subscriber> = plan
        .services()
        .map(|s| {
            (
                twin_service_name(&s.interface),
                Subscriber::Twin(s.interface.clone()),
            )
        })
        .chain(plan.event_store.iter().map(|s| {
            (
                event_store_service_name(&s.name),
                Subscriber::EventStore(s.name.clone()),
            )
        }))
        .collect();
    let objects: Vec<&Value> = rendered.objects.iter().map(|d| &d.object).collect();
    let of_kind = |kind: &'static str| objects.iter().copied().filter(move |o| o["kind"] == kind);

    // Trigger name → (subscriber, types).
    let mut triggers: BTreeMap<String, (Subscriber, BTreeSet<String>)> = BTreeMap::new();
    for trigger in of_kind("Trigger") {
        let service = trigger["spec"]["subscriber"]["ref"]["name"]
            .as_str()
            .unwrap();
        let subscriber = subscriber_of_service
            .get(service)
            .unwrap_or_else(|| panic!("trigger subscriber {service} is not a planned service"))
            .clone();
        let filter = trigger["spec"]["filter"]["attributes"]["type"]
            .as_str()
            .unwrap();
        let mut types = BTreeSet::new();
        // The store trigger's seed filter matches no ktwin event (nobody emits it).
        if filter != EVENT_STORE_SEED_TYPE {
            types.insert(filter.to_owned());
        }
        triggers.insert(
            trigger["metadata"]["name"].as_str().unwrap().to_owned(),
            (subscriber, types),
        );
    }
    let mut table = RoutingTable::default();
    for binding in of_kind("Binding") {
        let spec = &binding["spec"];
        if let Some(routing_key) = spec["routingKey"].as_str() {
            assert_eq!(spec["destination"], "mqtt-dispatcher-queue");
            let interface = routing_key
                .strip_prefix("ktwin.real.")
                .and_then(|k| k.strip_suffix(".#"))
                .unwrap_or_else(|| panic!("unexpected ingress routing key {routing_key}"));
            table.mqtt_ingress.insert(interface.to_owned());
            continue;
        }
        let ty = spec["arguments"]["type"].as_str().unwrap().to_owned();
        let trigger = spec["arguments"]["x-knative-trigger"].as_str().unwrap();
        if spec["destination"] == "cloud-event-dispatcher-queue" {
            table.deliver(ty.parse().unwrap(), Subscriber::Devices);
        } else {
            triggers
                .get_mut(trigger)
                .unwrap_or_else(|| panic!("binding into the queue of unknown trigger {trigger}"))
                .1
                .insert(ty);
        }
    }
    for (subscriber, types) in triggers.into_values() {
        for ty in types {
            table.deliver(ty.parse().unwrap(), subscriber.clone());
        }
    }
    table
}

#[test]
fn local_and_kubernetes_realizers_route_identically() {
    let Some(planned) = smart_city() else { return };
    let local = planned.routes.routing_table();
    let kubernetes = kubernetes_routing(&planned.plan);
    assert_eq!(
        local,
        routing_table(&planned.plan),
        "local realizer vs plan"
    );
    assert_eq!(local, kubernetes, "local realizer vs Kubernetes realizer");
    // The example exercises every kind of route.
    let subscribers: BTreeSet<&Subscriber> = local.deliveries.values().flatten().collect();
    assert!(subscribers.contains(&Subscriber::Devices));
    assert!(
        subscribers
            .iter()
            .any(|s| matches!(s, Subscriber::EventStore(_)))
    );
    assert!(
        subscribers
            .iter()
            .filter(|s| matches!(s, Subscriber::Twin(_)))
            .count()
            >= 10
    );
    assert!(
        local
            .deliveries
            .keys()
            .any(|t| t.to_string().starts_with("ktwin.command."))
    );
    assert!(!local.mqtt_ingress.is_empty());
}

/// The local subscriptions, on a real in-memory broker, deliver each routed type exactly to the
/// subscribers the table names.
#[tokio::test]
async fn the_memory_broker_delivers_as_the_table_says() {
    let Some(planned) = smart_city() else { return };
    let broker = MemoryBroker::default();
    let mut subscriptions = Vec::new();
    for local in &planned.routes.subscriptions {
        let subscription = broker
            .subscribe(SubscriptionSpec::new(local.name.clone(), local.filter()))
            .await
            .unwrap();
        subscriptions.push((local.subscriber.clone(), subscription));
    }
    let table = routing_table(&planned.plan);
    let types: Vec<&EventType> = table.deliveries.keys().collect();
    for ty in &types {
        let event = EventBuilderV10::new()
            .id(ty.to_string())
            .ty(ty.to_string())
            .source("x")
            .build()
            .unwrap();
        broker.publish(event).await.unwrap();
    }
    let mut received: BTreeMap<String, BTreeSet<Subscriber>> = BTreeMap::new();
    for (subscriber, subscription) in &mut subscriptions {
        while let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(20), subscription.recv()).await
        {
            received
                .entry(delivery.event().ty().to_owned())
                .or_default()
                .insert(subscriber.clone());
            delivery.ack().await.unwrap();
        }
    }
    let expected: BTreeMap<String, BTreeSet<Subscriber>> = table
        .deliveries
        .iter()
        .map(|(ty, subs)| (ty.to_string(), subs.clone()))
        .collect();
    assert_eq!(received, expected);
}
