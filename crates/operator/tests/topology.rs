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

/// A channel on the RabbitMQ test server, with its connection.
async fn test_channel() -> (Connection, Channel) {
    let connection = Connection::connect(
        &ktwin_testkit::servers::amqp_url(),
        ConnectionProperties::default(),
    )
    .await
    .expect("the RabbitMQ test server (KTWIN_TEST_AMQP_URL)");
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
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

    let (connection, channel) = test_channel().await;
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

/// Publishes `payload` on `topic` through RabbitMQ's MQTT plugin (QoS 1: routed once acked).
async fn publish_through_the_plugin(client_id: &str, topics: &[String]) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let server = ktwin_testkit::servers::rabbitmq_mqtt();
    let mut options = MqttOptions::new(client_id, &server.host, server.port);
    options.set_credentials("guest", "guest");
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    for topic in topics {
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, b"{}".to_vec())
            .await
            .unwrap();
    }
    let mut acked = 0;
    while acked < topics.len() {
        let event = tokio::time::timeout(std::time::Duration::from_secs(20), eventloop.poll())
            .await
            .expect("RabbitMQ's MQTT plugin (KTWIN_TEST_RABBITMQ_MQTT_ADDR) answers")
            .expect("RabbitMQ's MQTT plugin (KTWIN_TEST_RABBITMQ_MQTT_ADDR)");
        if let Event::Incoming(Packet::PubAck(_)) = event {
            acked += 1;
        }
    }
    client.disconnect().await.unwrap();
}

/// Every message waiting in `queue`, as its routing key.
async fn drain_keys(channel: &Channel, queue: &str) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        keys.push(message.delivery.routing_key.to_string());
    }
    keys.sort();
    keys
}

/// Device topics reach the MQTT dispatcher's queue through the Bindings the operator renders on
/// `amq.topic`, as RabbitMQ's MQTT plugin (the local server's) makes routing keys of them:
/// `ktwin/real/<iface>/<instance>`, the dotted `ktwin.real.<iface>.<instance>` the original's
/// devices use (the plugin translates only `/`, so both get the same key), and a telemetry topic
/// declared with the DTDL MQTT extension; a topic of no binding does not. The interface's
/// commands reach the CloudEvent dispatcher's queue, which sends them on the declared topic.
#[tokio::test]
async fn device_topics_through_rabbitmqs_mqtt_plugin_reach_the_dispatcher_queue() {
    use ktwin_events::routing_key_of_mqtt_topic;
    use ktwin_model::crd::{MQTTTrigger, TwinCommand, TwinInterface, TwinInterfaceSpec, TwinMqtt};
    let suffix = ktwin_testkit::unique_suffix();
    let run = format!("ktwin-plugin-test-{suffix}");
    let iface = format!("vehicle-{suffix}");
    let dtmi = format!("dtmi:ktwintest:Vehicle{suffix};1");
    let mut interface = TwinInterface::new(
        &iface,
        TwinInterfaceSpec {
            dtmi: Some(dtmi.clone()),
            commands: vec![TwinCommand {
                name: "setColor".into(),
                ..Default::default()
            }],
            mqtt: Some(TwinMqtt {
                payload_format: "Json/ecma/404".into(),
                telemetry_topic: Some(format!("fleet-{suffix}/{{modelId}}/{{senderId}}/telemetry")),
                command_topic: Some(format!(
                    "fleet-{suffix}/{{executorId}}/command/{{commandName}}"
                )),
            }),
            ..Default::default()
        },
    );
    interface.metadata.namespace = Some("ktwin".into());
    let mut trigger = MQTTTrigger::new("mqtt", Default::default());
    trigger.metadata.namespace = Some("ktwin".into());
    let input = ktwin_planner::PlanInput {
        namespace: "ktwin".into(),
        interfaces: vec![interface],
        mqtt_triggers: vec![trigger],
        ..Default::default()
    };
    let config = KtwinConfig::default();
    let plan = ktwin_planner::plan(&input, &config).unwrap();
    let mut discovered = Discovered::placeholders(&plan);
    discovered.broker_url = Some("http://broker".into());
    discovered.broker_exchange = Some(format!("{run}.broker"));
    let rendered = render_plan(&plan, &config, &discovered);
    let mqtt_exchange = plan.dispatchers.as_ref().unwrap().mqtt_exchange.clone();
    assert_eq!(mqtt_exchange, "amq.topic");

    let (connection, channel) = test_channel().await;
    channel
        .exchange_declare(
            format!("{run}.broker").as_str().into(),
            ExchangeKind::Headers,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // The dispatchers' queues under this run's names, bound as the rendered Bindings say (on
    // the real `amq.topic`, where the plugin publishes).
    let queue_of = |destination: &str| format!("{run}.{destination}");
    let mut declared = BTreeSet::new();
    for binding in rendered
        .objects
        .iter()
        .filter(|d| d.kind == ChildKind::Binding)
    {
        let spec = &binding.object["spec"];
        let destination = spec["destination"].as_str().unwrap();
        if destination != DispatcherKind::Mqtt.queue()
            && destination != DispatcherKind::CloudEvent.queue()
        {
            continue;
        }
        let queue = queue_of(destination);
        if declared.insert(queue.clone()) {
            declare_queue(&channel, &queue).await;
        }
        let source = spec["source"].as_str().unwrap();
        channel
            .queue_bind(
                queue.as_str().into(),
                source.into(),
                spec["routingKey"].as_str().unwrap_or_default().into(),
                QueueBindOptions::default(),
                table(&spec["arguments"]),
            )
            .await
            .unwrap();
    }
    let mqtt_queue = queue_of(&DispatcherKind::Mqtt.queue());
    assert!(declared.contains(&mqtt_queue), "{declared:?}");

    let topics = [
        format!("ktwin/real/{iface}/car-1"),
        format!("ktwin.real.{iface}.car-2"),
        format!("fleet-{suffix}/{dtmi}/car-3/telemetry"),
        // No binding: a topic of the interface's prefix but not its pattern.
        format!("fleet-{suffix}/{dtmi}/car-4/status"),
    ];
    publish_through_the_plugin(&format!("{run}-device"), &topics).await;
    let mut expected: Vec<String> = topics[..3]
        .iter()
        .map(|t| routing_key_of_mqtt_topic(t))
        .collect();
    expected.sort();
    let mut got = Vec::new();
    // A guard against hanging, not a timing assertion: routed messages are enqueued before the
    // plugin acknowledges them.
    for _ in 0..100 {
        got.extend(drain_keys(&channel, &mqtt_queue).await);
        if got.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    got.sort();
    assert_eq!(got, expected, "what reached the MQTT dispatcher's queue");
    assert!(
        got.contains(&format!("ktwin.real.{iface}.car-2")),
        "the plugin keeps the dots of the original's spelling: {got:?}"
    );

    // A command for the interface, as a twin service posts it, reaches the CloudEvent
    // dispatcher's queue.
    let mut headers = FieldTable::default();
    for (key, value) in [
        ("type", format!("ktwin.command.{iface}.setcolor")),
        ("source", "car-1".to_owned()),
    ] {
        headers.insert(key.into(), AMQPValue::LongString(value.into()));
    }
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .basic_publish(
            format!("{run}.broker").as_str().into(),
            "".into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let commands = drain(&channel, &queue_of(&DispatcherKind::CloudEvent.queue())).await;
    assert_eq!(commands, vec![format!("ktwin.command.{iface}.setcolor")]);
    channel
        .exchange_delete(
            format!("{run}.broker").as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
}
