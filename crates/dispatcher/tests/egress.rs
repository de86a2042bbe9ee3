//! `ktwin.virtual.*` CloudEvents reach device topics through both sinks; events that cannot
//! go to a device are dead-lettered with the reason.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use common::*;
use ktwin_broker::{Broker, QueueType, SubscriptionSpec, TypeFilter};
use ktwin_dispatcher::egress::PayloadFormat;
use ktwin_dispatcher::metrics::DispatchMetrics;
use ktwin_dispatcher::{AmqpTopicSink, DeviceSink, EgressDispatcher, MqttSink};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 200;

fn virtual_event(iface: &str, i: usize) -> Event {
    EventBuilderV10::new()
        .id(format!("v-{i}"))
        .ty(format!("ktwin.virtual.{iface}"))
        .source(format!("device-{}", i % 10))
        .time(chrono::Utc::now())
        .data("application/json", serde_json::json!({"batteryLevel": i}))
        .build()
        .unwrap()
}

/// Subscribes to `ktwin/virtual/<iface>/#` and forwards (topic, payload).
async fn device_subscriber(
    server: &MqttServer,
    iface: &str,
    suffix: &str,
) -> (mpsc::Receiver<(String, Vec<u8>)>, CancellationToken) {
    let mut options = MqttOptions::new(format!("device-{suffix}"), &server.host, server.port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client
        .subscribe(format!("ktwin/virtual/{iface}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(EVENTS * 2);
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let _client = client;
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                () = token.cancelled() => return,
            };
            match event {
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec())).await;
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
        .await
        .unwrap()
        .unwrap();
    (rx, stop)
}

async fn run_egress(sink: Arc<dyn DeviceSink>, devices: MqttServer, format: PayloadFormat) {
    let suffix = suffix();
    let iface = format!("it-egress-{suffix}");
    let target = rabbit_target(&suffix, "unused", QueueType::Classic).await;
    let queue = format!("virtual-{suffix}");
    let subscription = target
        .broker
        .subscribe(
            SubscriptionSpec::new(&queue, TypeFilter::prefix("ktwin.virtual.")).max_deliveries(2),
        )
        .await
        .unwrap();
    let (mut received, stop_device) = device_subscriber(&devices, &iface, &suffix).await;
    let dispatcher = EgressDispatcher::new(
        sink,
        format,
        DispatchMetrics::egress(&format!("it-{suffix}"), "ktwin"),
    );
    let counters = dispatcher.counters();
    let stop = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(subscription, stop.clone()));

    let events: Vec<Event> = (0..EVENTS).map(|i| virtual_event(&iface, i)).collect();
    // An instance name that cannot be a topic segment.
    let bad = EventBuilderV10::new()
        .id("bad")
        .ty(format!("ktwin.virtual.{iface}"))
        .source("device/with/slashes")
        .build()
        .unwrap();
    target.broker.publish(bad).await.unwrap();
    target.broker.publish_all(events.clone()).await.unwrap();

    let mut got = Vec::new();
    while got.len() < EVENTS {
        let message = tokio::time::timeout(Duration::from_secs(20), received.recv())
            .await
            .unwrap()
            .unwrap();
        got.push(message);
    }
    got.sort_by_key(|(_, payload)| payload.clone());
    for (topic, payload) in &got {
        let device = topic.rsplit('/').next().unwrap();
        assert_eq!(topic, &format!("ktwin/virtual/{iface}/{device}"));
        match format {
            PayloadFormat::Data => {
                let data: serde_json::Value = serde_json::from_slice(payload).unwrap();
                let i = data["batteryLevel"].as_u64().unwrap() as usize;
                assert_eq!(device, format!("device-{}", i % 10));
            }
            PayloadFormat::Structured => {
                let event: Event = serde_json::from_slice(payload).unwrap();
                let original = events.iter().find(|e| e.id() == event.id()).unwrap();
                assert_eq!(&event, original);
                assert_eq!(event.source().as_str(), device);
            }
        }
    }
    // Devices may see a message before its acknowledgement reaches the dispatcher.
    for _ in 0..200 {
        let c = &counters;
        if c.sent.load(std::sync::atomic::Ordering::Relaxed) == EVENTS as u64
            && c.dead_lettered.load(std::sync::atomic::Ordering::Relaxed) == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letters = target.broker.take_dead_letters(&queue, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.as_ref().unwrap().id(), "bad");
    assert!(
        letters[0].reason.contains("device/with/slashes"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        counters.sent.load(std::sync::atomic::Ordering::Relaxed),
        EVENTS as u64
    );

    stop.cancel();
    running.await.unwrap();
    stop_device.cancel();
    target.broker.delete_subscription(&queue).await.unwrap();
    target.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_events_reach_devices_through_amq_topic_as_bare_data() {
    let connector =
        ktwin_broker::AmqpConnector::connect(&amqp_url(), "it-egress-sink", Duration::from_secs(5))
            .await
            .unwrap();
    let sink = Arc::new(AmqpTopicSink::new(connector.clone(), "amq.topic"));
    run_egress(sink, rabbitmq_mqtt(), PayloadFormat::Data).await;
    connector.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_events_reach_devices_over_mqtt_as_structured_cloudevents() {
    let devices = mosquitto();
    let sink = Arc::new(MqttSink::start(
        &devices.host,
        devices.port,
        &format!("it-egress-{}", suffix()),
        None,
    ));
    for _ in 0..100 {
        if sink.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run_egress(sink, devices, PayloadFormat::Structured).await;
}
