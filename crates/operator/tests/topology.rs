//! The rendered topology proven on a real RabbitMQ (the local test server): the exchange,
//! queues and bindings are declared exactly as the rendered Trigger and Binding objects specify
//! (what eventing-rabbitmq and the topology operator would create: headers-exchange arguments,
//! `x-match`, trigger filters, the MQTT topic bindings), every event type of the smart-city plan
//! is published in eventing-rabbitmq's wire format (`../shared/reference/cluster-admission.md`
//! §4: headers without the `ce-` prefix, routing key ""), and each lands in exactly the queues of
//! the subscribers the plan routes it to, and nowhere else.
//!
//! Names on the server get a per-run prefix, so runs never meet; queues are exclusive to the
//! test's connection and the exchanges are deleted at the end.

use std::collections::{BTreeMap, BTreeSet};

use ktwin_operator::kinds::ChildKind;
use ktwin_operator::manifests::load_project;
use ktwin_operator::render::{Discovered, render_plan};
use ktwin_planner::{DispatcherKind, KtwinConfig, Subscriber, routing_table};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

fn table(arguments: &Value) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in arguments.as_object().into_iter().flatten() {
        let text = value.as_str().expect("string binding arguments");
        table.insert(key.as_str().into(), AMQPValue::LongString(text.into()));
    }
    table
}

async fn declare_queue(channel: &Channel, queue: &str) {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// Every message waiting in `queue`, as its `type` header.
async fn drain(channel: &Channel, queue: &str) -> Vec<String> {
    let mut types = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let headers = message.delivery.properties.headers().clone().unwrap();
        let type_ = match headers.inner().get("type") {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("no type header: {other:?}"),
        };
        types.push(type_);
    }
    types.sort();
    types
}

#[tokio::test]
async fn the_rendered_topology_routes_every_event_type_as_the_plan_says() {
    let run = format!("ktwin-topology-test-{}", ktwin_testkit::unique_suffix());
    let name = |n: &str| format!("{run}.{n}");
    let config = KtwinConfig::default();
    let input = load_project(&ktwin_testkit::example_project(), None, true).unwrap();
    let plan = ktwin_planner::plan(&input, &config).unwrap();
    // What eventing-rabbitmq would have created, under this run's names.
    let mut discovered = Discovered::placeholders(&plan);
    discovered.broker_url = Some("http://ktwin-broker-ingress.ktwin.svc.cluster.local".into());
    discovered.broker_exchange = Some(name("broker"));
    for (trigger, queue) in discovered.trigger_queues.iter_mut() {
        *queue = name(&format!("t.{trigger}"));
    }
    let rendered = render_plan(&plan, &config, &discovered);
    assert!(rendered.missing.is_empty(), "{:?}", rendered.missing);
    let broker = discovered.broker_exchange.clone().unwrap();
    let mqtt_exchange = plan.dispatchers.as_ref().unwrap().mqtt_exchange.clone();
    // The fixed names of the dispatchers' queues and the MQTT plugin's exchange get this run's
    // prefix too; every name ktwin discovered already has it.
    let on_server = |n: &str| {
        if n.starts_with(&run) {
            n.to_owned()
        } else {
            name(n)
        }
    };

    let connection = Connection::connect(
        &ktwin_testkit::servers::amqp_url(),
        ConnectionProperties::default(),
    )
    .await
    .expect("the RabbitMQ test server (KTWIN_TEST_AMQP_URL)");
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (exchange, kind) in [
        (broker.clone(), ExchangeKind::Headers),
        (on_server(&mqtt_exchange), ExchangeKind::Topic),
    ] {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                kind,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let mut queues = BTreeSet::new();
    // eventing-rabbitmq's own binding of each Trigger: its filter plus x-knative-trigger and
    // x-match=all, from the broker exchange into the trigger's queue.
    for trigger in rendered
        .objects
        .iter()
        .filter(|d| d.kind == ChildKind::Trigger)
    {
        let queue = discovered.trigger_queues[trigger.name()].clone();
        declare_queue(&channel, &queue).await;
        let mut arguments = trigger.object["spec"]["filter"]["attributes"].clone();
        arguments["x-knative-trigger"] = trigger.name().into();
        arguments["x-match"] = "all".into();
        channel
            .queue_bind(
                queue.as_str().into(),
                broker.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                table(&arguments),
            )
            .await
            .unwrap();
        queues.insert(queue);
    }
    // ktwin's Bindings, as the topology operator declares them.
    for binding in rendered
        .objects
        .iter()
        .filter(|d| d.kind == ChildKind::Binding)
    {
        let spec = &binding.object["spec"];
        assert_eq!(spec["destinationType"], "queue");
        let queue = on_server(spec["destination"].as_str().unwrap());
        if queues.insert(queue.clone()) {
            declare_queue(&channel, &queue).await;
        }
        channel
            .queue_bind(
                queue.as_str().into(),
                on_server(spec["source"].as_str().unwrap()).as_str().into(),
                spec["routingKey"].as_str().unwrap_or_default().into(),
                QueueBindOptions::default(),
                table(&spec["arguments"]),
            )
            .await
            .unwrap();
    }

    // Every event type of the plan, once, in eventing-rabbitmq's wire format.
    let planned = routing_table(&plan);
    assert!(planned.deliveries.len() > 10, "{planned:?}");
    for (n, event_type) in planned.deliveries.keys().enumerate() {
        let mut headers = FieldTable::default();
        for (key, value) in [
            ("specversion", "1.0".to_owned()),
            ("id", format!("event-{n}")),
            ("time", "2026-01-01T00:00:00Z".to_owned()),
            ("content-type", "application/json".to_owned()),
            ("type", event_type.to_string()),
            ("source", "ktwin-topology-test".to_owned()),
        ] {
            headers.insert(key.into(), AMQPValue::LongString(value.into()));
        }
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_message_id(format!("event-{n}").into())
            .with_content_type("application/json".into());
        channel
            .basic_publish(
                broker.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                b"{}",
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A device's real event on the MQTT plugin's exchange, for each interface.
    let interfaces: BTreeSet<String> = plan
        .interfaces
        .iter()
        .map(|i| i.interface.clone())
        .collect();
    for interface in &interfaces {
        let mut headers = FieldTable::default();
        headers.insert(
            "type".into(),
            AMQPValue::LongString(format!("mqtt:{interface}").into()),
        );
        channel
            .basic_publish(
                on_server(&mqtt_exchange).as_str().into(),
                format!("ktwin.real.{interface}.device-1").as_str().into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default().with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // Who consumes each queue, and so what it must hold.
    let mut subscriber_of: BTreeMap<String, Subscriber> = BTreeMap::new();
    for trigger in rendered
        .objects
        .iter()
        .filter(|d| d.kind == ChildKind::Trigger)
    {
        let labels = &trigger.object["metadata"]["labels"];
        let subscriber = match labels["ktwin/twin-interface"].as_str() {
            Some(interface) => Subscriber::Twin(interface.to_owned()),
            None => Subscriber::EventStore(labels["ktwin/event-store"].as_str().unwrap().into()),
        };
        subscriber_of.insert(
            discovered.trigger_queues[trigger.name()].clone(),
            subscriber,
        );
    }
    subscriber_of.insert(
        name(&DispatcherKind::CloudEvent.queue()),
        Subscriber::Devices,
    );
    let mqtt_queue = name(&DispatcherKind::Mqtt.queue());
    let mut delivered = 0;
    for queue in &queues {
        let got = drain(&channel, queue).await;
        let mut expected: Vec<String> = if *queue == mqtt_queue {
            planned
                .mqtt_ingress
                .iter()
                .map(|i| format!("mqtt:{i}"))
                .collect()
        } else {
            let subscriber = &subscriber_of[queue];
            planned
                .deliveries
                .iter()
                .filter(|(_, subscribers)| subscribers.contains(subscriber))
                .map(|(event_type, _)| event_type.to_string())
                .collect()
        };
        expected.sort();
        assert_eq!(got, expected, "queue {queue}");
        delivered += got.len();
    }
    assert!(queues.contains(&mqtt_queue));
    assert!(
        queues.len() > 5 && delivered > planned.deliveries.len(),
        "{queues:?}"
    );
    for exchange in [broker, on_server(&mqtt_exchange)] {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    }
    connection.close(200, "done".into()).await.unwrap();
}
