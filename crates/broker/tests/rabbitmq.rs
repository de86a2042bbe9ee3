//! The RabbitMQ broker against the real RabbitMQ of the test environment (`ktwin_testkit`).
//! Every test uses its own exchange and queues (uuid suffix) and deletes them.

use std::time::Duration;

use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use futures::StreamExt;
use ktwin_broker::{
    Broker, NackOutcome, PublishOutcome, QueueType, RabbitBroker, RabbitConfig, Subscription,
    SubscriptionSpec, TypeFilter, header_string,
};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    broker: RabbitBroker,
    suffix: String,
    queues: Vec<String>,
}

impl Fixture {
    async fn new(queue_type: QueueType) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let broker = RabbitBroker::connect(RabbitConfig {
            uri: ktwin_testkit::servers::amqp_url(),
            exchange: format!("ktwin-test-{suffix}"),
            queue_type,
            connection_name: "ktwin-broker-test".into(),
            ..RabbitConfig::default()
        })
        .await
        .unwrap_or_else(|err| {
            panic!(
                "RabbitMQ must run at {} (scripts/test.sh starts it): {err}",
                ktwin_testkit::servers::amqp_url()
            )
        });
        Self {
            broker,
            suffix,
            queues: Vec::new(),
        }
    }

    fn name(&mut self, base: &str) -> String {
        let name = format!("{base}-{}", self.suffix);
        self.queues.push(name.clone());
        name
    }

    /// A subscription `<base>-<round>` to type `t`, and 20 events of that type published to it.
    async fn subscribed_with_events(&mut self, base: &str, round: usize) -> (String, Subscription) {
        let name = self.name(&format!("{base}-{round}"));
        let sub = self
            .broker
            .subscribe(SubscriptionSpec::new(&name, TypeFilter::exact(["t"])))
            .await
            .unwrap();
        for i in 0..20 {
            self.broker
                .publish(event(&format!("{round}-{i}"), "t"))
                .await
                .unwrap();
        }
        (name, sub)
    }

    async fn cleanup(self) {
        for queue in &self.queues {
            self.broker.delete_subscription(queue).await.unwrap();
        }
        let (_, channel) = self.broker.connector().channel(None).await.unwrap();
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

fn event(id: &str, ty: &str) -> Event {
    event_from("pole-1", id, ty)
}

fn event_from(source: &str, id: &str, ty: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .ty(ty)
        .source(source)
        .time(chrono::Utc::now())
        .extension(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .data("application/json", serde_json::json!({"id": id}))
        .build()
        .unwrap()
}

#[tokio::test]
async fn publishes_in_the_knative_format_and_routes_on_type() {
    let mut fx = Fixture::new(QueueType::Classic).await;
    let poles = fx.name("poles");
    let mut sub = fx
        .broker
        .subscribe(SubscriptionSpec::new(
            &poles,
            TypeFilter::exact(["ktwin.real.pole"]),
        ))
        .await
        .unwrap();
    // A raw queue bound like a Knative trigger sees the wire format.
    let raw = fx.name("raw");
    fx.broker
        .subscribe(SubscriptionSpec::new(&raw, TypeFilter::exact(["unused"])))
        .await
        .unwrap();
    let (_, channel) = fx.broker.connector().channel(None).await.unwrap();
    channel
        .queue_declare(
            raw.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-match".into(), AMQPValue::LongString("all".into()));
    args.insert(
        "type".into(),
        AMQPValue::LongString("ktwin.real.pole".into()),
    );
    channel
        .queue_bind(
            raw.as_str().into(),
            fx.broker.config().exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            args,
        )
        .await
        .unwrap();
    let mut raw_consumer = channel
        .basic_consume(
            raw.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let sent = event("e-1", "ktwin.real.pole");
    assert_eq!(
        fx.broker.publish(sent.clone()).await.unwrap(),
        PublishOutcome::Routed
    );
    assert_eq!(
        fx.broker
            .publish(event("e-2", "ktwin.real.nobody"))
            .await
            .unwrap(),
        PublishOutcome::Unroutable
    );

    let delivery = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.event(), &sent);
    assert_eq!(delivery.delivery_count(), 1);
    delivery.ack().await.unwrap();

    let message = tokio::time::timeout(WAIT, raw_consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let headers = message.properties.headers().as_ref().unwrap();
    assert_eq!(
        header_string(headers, "type").as_deref(),
        Some("ktwin.real.pole")
    );
    assert_eq!(header_string(headers, "source").as_deref(), Some("pole-1"));
    assert_eq!(header_string(headers, "id").as_deref(), Some("e-1"));
    assert_eq!(
        header_string(headers, "specversion").as_deref(),
        Some("1.0")
    );
    assert_eq!(
        header_string(headers, "content-type").as_deref(),
        Some("application/json")
    );
    assert!(header_string(headers, "time").is_some());
    assert!(header_string(headers, "traceparent").is_some());
    assert_eq!(
        message.properties.message_id().as_ref().unwrap().as_str(),
        "e-1"
    );
    assert_eq!(*message.properties.delivery_mode(), Some(2));
    assert_eq!(message.data, br#"{"id":"e-1"}"#);
    drop(sub);
    fx.cleanup().await;
}

#[tokio::test]
async fn prefix_filters_receive_only_matching_types() {
    let mut fx = Fixture::new(QueueType::Quorum).await;
    let name = fx.name("virtual");
    let mut sub = fx
        .broker
        .subscribe(SubscriptionSpec::new(
            &name,
            TypeFilter::prefix("ktwin.virtual."),
        ))
        .await
        .unwrap();
    let events: Vec<Event> = (0..20)
        .map(|i| {
            let ty = if i % 2 == 0 {
                "ktwin.virtual.pole"
            } else {
                "ktwin.real.pole"
            };
            event(&format!("e-{i}"), ty)
        })
        .collect();
    fx.broker.publish_all(events).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 10 {
        let batch = tokio::time::timeout(WAIT, sub.recv_batch(20))
            .await
            .unwrap();
        for delivery in batch {
            got.push(delivery.event().id().to_owned());
            delivery.ack().await.unwrap();
        }
    }
    let expected: Vec<String> = (0..20).step_by(2).map(|i| format!("e-{i}")).collect();
    assert_eq!(got, expected);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.recv())
            .await
            .is_err()
    );
    drop(sub);
    fx.cleanup().await;
}

#[tokio::test]
async fn each_source_keeps_its_order_over_several_publisher_channels() {
    let mut fx = Fixture::new(QueueType::Classic).await;
    assert!(fx.broker.config().publisher_channels > 1);
    let name = fx.name("order");
    let mut sub = fx
        .broker
        .subscribe(SubscriptionSpec::new(
            &name,
            TypeFilter::exact(["ktwin.real.pole"]),
        ))
        .await
        .unwrap();
    let sources = 8;
    let total = 400;
    let events: Vec<Event> = (0..total)
        .map(|i| {
            event_from(
                &format!("pole-{}", i % sources),
                &i.to_string(),
                "ktwin.real.pole",
            )
        })
        .collect();
    fx.broker.publish_all(events).await.unwrap();
    let mut last_seen = vec![None; sources];
    let mut received = 0;
    while received < total {
        let batch = tokio::time::timeout(WAIT, sub.recv_batch(100))
            .await
            .unwrap();
        for delivery in batch {
            let number: usize = delivery.event().id().parse().unwrap();
            let source = number % sources;
            assert!(
                last_seen[source] < Some(number),
                "event {number} of pole-{source} arrived after event {:?}",
                last_seen[source]
            );
            last_seen[source] = Some(number);
            received += 1;
            delivery.ack().await.unwrap();
        }
    }
    drop(sub);
    fx.cleanup().await;
}

#[tokio::test]
async fn failing_events_are_redelivered_counted_then_dead_lettered_with_the_reason() {
    let mut fx = Fixture::new(QueueType::Classic).await;
    let name = fx.name("failing");
    let mut sub = fx
        .broker
        .subscribe(SubscriptionSpec::new(&name, TypeFilter::exact(["t"])).max_deliveries(3))
        .await
        .unwrap();
    fx.broker.publish(event("e-1", "t")).await.unwrap();
    for expected in 1..=3 {
        let delivery = tokio::time::timeout(WAIT, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(delivery.delivery_count(), expected);
        assert_eq!(delivery.event().id(), "e-1");
        let outcome = delivery.nack("store unavailable").await.unwrap();
        assert_eq!(outcome == NackOutcome::DeadLettered, expected == 3);
    }
    let letters = fx.broker.take_dead_letters(&name, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.as_ref().unwrap().id(), "e-1");
    assert!(
        letters[0].reason.contains("failed 3 deliveries"),
        "{}",
        letters[0].reason
    );
    assert!(letters[0].reason.contains("store unavailable"));
    drop(sub);
    fx.cleanup().await;
}

#[tokio::test]
async fn undecodable_messages_are_dead_lettered_and_dropped_deliveries_come_back() {
    let mut fx = Fixture::new(QueueType::Quorum).await;
    let name = fx.name("poison");
    let mut sub = fx
        .broker
        .subscribe(SubscriptionSpec::new(&name, TypeFilter::exact(["t"])))
        .await
        .unwrap();
    // A message routed by `type` but without the other CloudEvent headers.
    let (_, channel) = fx.broker.connector().channel(None).await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert("type".into(), AMQPValue::LongString("t".into()));
    channel
        .basic_publish(
            fx.broker.config().exchange.as_str().into(),
            "".into(),
            BasicPublishOptions::default(),
            b"not an event",
            lapin::BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap();
    fx.broker.publish(event("good", "t")).await.unwrap();

    let delivery = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.event().id(), "good");
    drop(delivery);
    let again = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.event().id(), "good");
    assert!(again.delivery_count() >= 2);
    again.ack().await.unwrap();

    let letters = fx.broker.take_dead_letters(&name, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].event.is_none());
    assert_eq!(letters[0].raw.as_deref(), Some(&b"not an event"[..]));
    assert!(
        letters[0]
            .reason
            .contains("missing CloudEvent header \"id\""),
        "{}",
        letters[0].reason
    );
    drop(sub);
    fx.cleanup().await;
}

/// Asks RabbitMQ for the ready messages and the consumers of queue `name` (on a new channel
/// of the broker's connection) until `done` says so of them; fails if that connection is not
/// generation `generation` any more, or after [`WAIT`].
async fn until_queue(
    broker: &RabbitBroker,
    name: &str,
    generation: u64,
    done: impl Fn(u32, u32) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (now, channel) = broker.connector().channel(None).await.unwrap();
        assert_eq!(now, generation, "{name}: the connection was closed");
        let queue = channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the broker's connection answers");
        let _ = channel.close(200, "counted".into()).await;
        if done(queue.message_count(), queue.consumer_count()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: still {queue:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A subscription dropped while it holds deliveries not yet handed out requeues them on the
/// connection everything else shares: RabbitMQ answers a frame on a closed channel by closing
/// the whole connection, so each nack must reach it before the close of its channel. The
/// nacks and the close race on lapin's runtime, hence several rounds on two worker threads
/// (the race is rare: the rounds did not catch it before the nacks waited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_dropped_with_deliveries_leave_the_connection_up() {
    let mut fx = Fixture::new(QueueType::Classic).await;
    let (generation, _) = fx.broker.connector().channel(None).await.unwrap();
    for round in 0..10 {
        let (name, sub) = fx.subscribed_with_events("outlived", round).await;
        // Every message delivered to the subscription, none handed out yet.
        until_queue(&fx.broker, &name, generation, |ready, _| ready == 0).await;
        drop(sub);
        until_queue(&fx.broker, &name, generation, |ready, consumers| {
            consumers == 0 && ready == 20
        })
        .await;
    }
    fx.cleanup().await;
}

/// Whether queue `name` exists (a passive declare on a channel of its own: a missing queue
/// closes that channel only).
async fn queue_exists(broker: &RabbitBroker, name: &str) -> bool {
    let (_, channel) = broker.connector().channel(None).await.unwrap();
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let exists = channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await
        .is_ok();
    let _ = channel.close(200, "checked".into()).await;
    exists
}

/// Deleting a subscription whose consumer is running stops that consumer first: before, the
/// server cancelled it for the deletion, the consumer took that for a lost channel and
/// resubscribed, which declared the queue again; and a consumer the client cancelled at the
/// same moment (a subscription just dropped) got an unexpected `cancel-ok` that ended the
/// whole connection (`ktwin bench dispatch` failed so in its clean-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_consumed_subscription_removes_it_for_good() {
    let mut fx = Fixture::new(QueueType::Classic).await;
    let (generation, _) = fx.broker.connector().channel(None).await.unwrap();
    for round in 0..5 {
        let (name, mut sub) = fx.subscribed_with_events("deleted", round).await;
        let first = tokio::time::timeout(WAIT, sub.recv())
            .await
            .expect("a delivery")
            .expect("the subscription is open");
        first.ack().await.unwrap();
        // Even rounds delete while the subscription is held, odd ones right after dropping it.
        if round % 2 == 1 {
            drop(sub);
            fx.broker.delete_subscription(&name).await.unwrap();
        } else {
            fx.broker.delete_subscription(&name).await.unwrap();
            let rest =
                tokio::time::timeout(WAIT, async { while sub.recv().await.is_some() {} }).await;
            assert!(rest.is_ok(), "{name}: the subscription did not end");
        }
        // Longer than the consumer's first resubscription delay.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !queue_exists(&fx.broker, &name).await,
            "{name} was declared again after its deletion"
        );
        let (now, _) = fx.broker.connector().channel(None).await.unwrap();
        assert_eq!(now, generation, "{name}: the connection was closed");
    }
    fx.cleanup().await;
}
