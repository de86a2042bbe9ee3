//! Shared fixtures of the dispatcher integration tests: a RabbitMQ broker on a private exchange,
//! a verifying subscription, and cleanup. The servers' addresses come from `ktwin_testkit`.

#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::time::Duration;

use cloudevents::{AttributesReader, Data, Event};
use ktwin_broker::{
    Broker, QueueType, RabbitBroker, RabbitConfig, Subscription, SubscriptionSpec, TypeFilter,
};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

pub use ktwin_testkit::servers::{MqttServer, amqp_url, mosquitto, rabbitmq_mqtt};
pub use ktwin_testkit::unique_suffix as suffix;

pub struct Target {
    pub broker: RabbitBroker,
    pub events: Subscription,
    pub subscription: String,
    pub extra_queues: Vec<String>,
}

/// A broker on exchange `ktwin-it-<suffix>` and a subscription to `ktwin.real.<iface>`.
pub async fn rabbit_target(suffix: &str, iface: &str, queue_type: QueueType) -> Target {
    let broker = RabbitBroker::connect(RabbitConfig {
        uri: amqp_url(),
        exchange: format!("ktwin-it-{suffix}"),
        queue_type,
        connection_name: format!("ktwin-dispatcher-it-{suffix}"),
        ..RabbitConfig::default()
    })
    .await
    .unwrap_or_else(|err| {
        panic!(
            "RabbitMQ must run at {} (scripts/test.sh starts it): {err}",
            amqp_url()
        )
    });
    let subscription = format!("verify-{suffix}");
    let events = broker
        .subscribe(
            SubscriptionSpec::new(
                &subscription,
                TypeFilter::exact([format!("ktwin.real.{iface}")]),
            )
            .prefetch(2000),
        )
        .await
        .unwrap();
    Target {
        broker,
        events,
        subscription,
        extra_queues: Vec::new(),
    }
}

impl Target {
    pub async fn cleanup(self) {
        drop(self.events);
        self.broker
            .delete_subscription(&self.subscription)
            .await
            .unwrap();
        let (_, channel) = self.broker.connector().channel(None).await.unwrap();
        for queue in &self.extra_queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        channel
            .exchange_delete(
                self.broker.config().exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .unwrap();
        self.broker.close().await;
    }
}

/// The `msg_count` of a sample reading.
pub fn msg_count(event: &Event) -> u64 {
    match event.data() {
        Some(Data::Json(json)) => json["msg_count"].as_u64().expect("msg_count"),
        other => panic!("expected JSON data, got {other:?}"),
    }
}

/// Receives (and acks) events until `expected` distinct readings were seen or nothing arrived
/// for `idle` (a loss shows as a stall; a loaded machine that is still delivering is given the
/// time it needs). Returns every event received per reading, duplicates included.
pub async fn collect(
    events: &mut Subscription,
    expected: usize,
    idle: Duration,
) -> BTreeMap<u64, Vec<Event>> {
    let mut seen: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
    while seen.len() < expected {
        let Ok(batch) = tokio::time::timeout(idle, events.recv_batch(2000)).await else {
            break;
        };
        for delivery in batch {
            seen.entry(msg_count(delivery.event()))
                .or_default()
                .push(delivery.event().clone());
            delivery.ack().await.unwrap();
        }
    }
    seen
}

/// Checks the events of readings `0..n` published by `device_messages(iface, devices, 0..n)`.
pub fn assert_readings(seen: &BTreeMap<u64, Vec<Event>>, iface: &str, devices: u64, n: u64) {
    assert_eq!(seen.len() as u64, n, "distinct readings received");
    let mut ids = std::collections::HashSet::new();
    for (count, copies) in seen {
        let first = &copies[0];
        assert_eq!(first.ty(), format!("ktwin.real.{iface}"));
        assert_eq!(
            first.source().as_str(),
            format!("device-{}", count % devices)
        );
        assert_eq!(first.datacontenttype(), Some("application/json"));
        assert_eq!(first.specversion().as_str(), "1.0");
        assert!(first.time().is_some());
        let id = uuid::Uuid::parse_str(first.id()).expect("uuid id");
        assert_eq!(id.get_version_num(), 7);
        for copy in copies {
            assert_eq!(
                copy.id(),
                first.id(),
                "a duplicate must be a redelivery with the same event id"
            );
        }
        assert!(
            ids.insert(first.id().to_owned()),
            "distinct readings have distinct ids"
        );
    }
}
