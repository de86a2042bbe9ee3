//! Behaviour of the in-memory broker: routing, backpressure, acknowledgements, dead letters.

use std::time::Duration;

use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;
use ktwin_broker::{
    Broker, BrokerError, DeadLetterSink, MemoryBroker, MemoryBrokerConfig, NackOutcome,
    NewDeadLetter, PublishOutcome, Subscription, SubscriptionSpec, TypeFilter, held_bytes,
};

fn event(id: &str, ty: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .ty(ty)
        .source("pole-1")
        .data("application/json", serde_json::json!({"n": id}))
        .build()
        .unwrap()
}

/// A default broker with subscription `s` taking every event.
async fn subscribed_to_all() -> (MemoryBroker, Subscription) {
    let broker = MemoryBroker::default();
    let sub = broker
        .subscribe(SubscriptionSpec::new("s", TypeFilter::all()))
        .await
        .unwrap();
    (broker, sub)
}

/// Bytes one dead letter of [`event`] with a one-digit id takes from subscription `s`.
fn letter_size() -> usize {
    NewDeadLetter::of_event("s", "bad data", &event("0", "t")).size()
}

/// A broker holding `capacity` events per subscription and three dead letters' bytes.
fn small(capacity: usize, timeout: Option<Duration>) -> MemoryBroker {
    MemoryBroker::new(MemoryBrokerConfig {
        queue_capacity: capacity,
        dead_letter_bytes: 3 * letter_size(),
        publish_timeout: timeout,
        ..MemoryBrokerConfig::default()
    })
}

/// An event whose data is a string of `bytes` bytes.
fn sized(id: &str, bytes: usize) -> Event {
    EventBuilderV10::new()
        .id(id)
        .ty("t")
        .source("pole-1")
        .data(
            "application/json",
            serde_json::json!({"text": "x".repeat(bytes)}),
        )
        .build()
        .unwrap()
}

/// A broker whose subscriptions hold at most `bytes` of events and 100 events.
fn byte_bounded(bytes: usize) -> MemoryBroker {
    MemoryBroker::new(MemoryBrokerConfig {
        queue_capacity: 100,
        queue_bytes: bytes,
        publish_timeout: None,
        ..MemoryBrokerConfig::default()
    })
}

#[tokio::test]
async fn routes_on_exact_types_and_prefixes() {
    let broker = MemoryBroker::default();
    let exact = TypeFilter::exact(["ktwin.real.pole"]);
    let mut poles = broker
        .subscribe(SubscriptionSpec::new("poles", exact))
        .await
        .unwrap();
    let mut virtuals = broker
        .subscribe(SubscriptionSpec::new(
            "virtual",
            TypeFilter::prefix("ktwin.virtual."),
        ))
        .await
        .unwrap();
    assert_eq!(
        broker.publish(event("1", "ktwin.real.pole")).await.unwrap(),
        PublishOutcome::Routed
    );
    assert_eq!(
        broker
            .publish(event("2", "ktwin.virtual.pole"))
            .await
            .unwrap(),
        PublishOutcome::Routed
    );
    assert_eq!(
        broker
            .publish(event("3", "ktwin.real.other"))
            .await
            .unwrap(),
        PublishOutcome::Unroutable
    );
    let d = poles.recv().await.unwrap();
    assert_eq!((d.event().id(), d.delivery_count()), ("1", 1));
    d.ack().await.unwrap();
    let d = virtuals.recv().await.unwrap();
    assert_eq!(d.event().id(), "2");
    d.ack().await.unwrap();
    assert_eq!(broker.depth("poles"), Some(0));
    assert_eq!(broker.depth("virtual"), Some(0));
}

/// Routes are remembered per event type; a subscription added or removed later still changes
/// where the next event of that type goes.
#[tokio::test]
async fn routes_follow_subscriptions_made_and_removed_after_publishing() {
    let broker = MemoryBroker::default();
    let ty = "ktwin.real.pole";
    assert_eq!(
        broker.publish(event("1", ty)).await.unwrap(),
        PublishOutcome::Unroutable
    );
    let mut late = broker
        .subscribe(SubscriptionSpec::new("late", TypeFilter::exact([ty])))
        .await
        .unwrap();
    assert_eq!(
        broker.publish(event("2", ty)).await.unwrap(),
        PublishOutcome::Routed
    );
    assert_eq!(late.recv().await.unwrap().event().id(), "2");
    broker.delete_subscription("late").await.unwrap();
    assert_eq!(
        broker.publish(event("3", ty)).await.unwrap(),
        PublishOutcome::Unroutable
    );
}

#[tokio::test]
async fn every_matching_subscription_gets_the_event_shared_not_copied() {
    let broker = MemoryBroker::default();
    let mut a = broker
        .subscribe(SubscriptionSpec::new("a", TypeFilter::all()))
        .await
        .unwrap();
    let mut b = broker
        .subscribe(SubscriptionSpec::new("b", TypeFilter::all()))
        .await
        .unwrap();
    broker.publish(event("1", "t")).await.unwrap();
    let (to_a, to_b) = (a.recv().await.unwrap(), b.recv().await.unwrap());
    assert_eq!((to_a.event().id(), to_b.event().id()), ("1", "1"));
    assert!(
        Arc::ptr_eq(&to_a.shared_event(), &to_b.shared_event()),
        "one event behind both deliveries"
    );
    // A requeued event comes back as the same shared event, still equal to what was published.
    let held = to_a.shared_event();
    to_a.nack("once more").await.unwrap();
    let again = a.recv().await.unwrap();
    assert!(Arc::ptr_eq(&again.shared_event(), &held));
    assert_eq!(*again.event(), event("1", "t"));
}

#[tokio::test]
async fn an_event_published_shared_is_the_one_delivered_and_unroutable_ones_are_reported() {
    let (broker, mut sub) = subscribed_to_all().await;
    let published = Arc::new(event("1", "t"));
    let outcome = broker.publish_shared(Arc::clone(&published)).await.unwrap();
    assert_eq!(outcome, PublishOutcome::Routed);
    let delivered = sub.recv().await.unwrap();
    assert!(
        Arc::ptr_eq(&delivered.shared_event(), &published),
        "the publisher's event, not a copy"
    );
    let nowhere = MemoryBroker::default();
    let outcome = nowhere.publish_shared(published).await.unwrap();
    assert_eq!(outcome, PublishOutcome::Unroutable);
}

#[tokio::test]
async fn a_full_subscription_holds_publishers_back_until_acked() {
    let broker = small(2, None);
    let mut sub = broker
        .subscribe(SubscriptionSpec::new("s", TypeFilter::all()))
        .await
        .unwrap();
    broker.publish(event("1", "t")).await.unwrap();
    broker.publish(event("2", "t")).await.unwrap();
    // Polled once, a publish into a full queue waits for a slot (registered, not finished).
    let mut blocked = Box::pin(broker.publish(event("3", "t")));
    assert!(
        futures::poll!(&mut blocked).is_pending(),
        "publish into a full queue must wait"
    );
    // Receiving is not enough: the slot is held until the ack.
    let first = sub.recv().await.unwrap();
    assert!(futures::poll!(&mut blocked).is_pending());
    first.ack().await.unwrap();
    blocked.await.unwrap();
    assert_eq!(broker.depth("s"), Some(2));
}

#[tokio::test]
async fn a_publish_that_fails_on_one_full_queue_leaves_no_copy_in_the_others() {
    let broker = small(1, Some(Duration::from_millis(30)));
    let mut a = broker
        .subscribe(SubscriptionSpec::new("a", TypeFilter::all()))
        .await
        .unwrap();
    let mut b = broker
        .subscribe(SubscriptionSpec::new("b", TypeFilter::all()))
        .await
        .unwrap();
    broker.publish(event("1", "t")).await.unwrap();
    a.recv().await.unwrap().ack().await.unwrap();
    // `a` has room, `b` is full: the publish fails on `b`.
    let err = broker.publish(event("2", "t")).await.unwrap_err();
    assert!(matches!(err, BrokerError::Backpressure { .. }), "{err}");
    assert_eq!(
        broker.depth("a"),
        Some(0),
        "the failed publish left a copy in `a`, which the retry would duplicate"
    );
    // Once `b` has room, the retry reaches both, once each.
    b.recv().await.unwrap().ack().await.unwrap();
    broker.publish(event("2", "t")).await.unwrap();
    for sub in [&mut a, &mut b] {
        let d = sub.recv().await.unwrap();
        assert_eq!((d.event().id(), d.delivery_count()), ("2", 1));
        d.ack().await.unwrap();
    }
    assert_eq!((broker.depth("a"), broker.depth("b")), (Some(0), Some(0)));
}

/// A sink keeping letters in a vector, or failing while `failing` is set.
#[derive(Default)]
struct VecSink {
    kept: Mutex<Vec<NewDeadLetter>>,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl DeadLetterSink for VecSink {
    async fn put(&self, letter: NewDeadLetter) -> Result<(), BrokerError> {
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(BrokerError::Unavailable("sink down".into()));
        }
        self.kept.lock().unwrap().push(letter);
        Ok(())
    }
}

#[tokio::test]
async fn dead_letters_go_to_the_sink_and_come_back_while_it_fails() {
    let broker = small(10, None);
    let sink = Arc::new(VecSink::default());
    broker.keep_dead_letters_in(sink.clone());
    let mut sub = broker
        .subscribe(SubscriptionSpec::new("s", TypeFilter::all()))
        .await
        .unwrap();
    broker.publish(event("1", "t")).await.unwrap();
    sink.failing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    sub.recv()
        .await
        .unwrap()
        .dead_letter("bad data")
        .await
        .unwrap();
    // Not kept, so not dropped: delivered again.
    let again = sub.recv().await.unwrap();
    assert_eq!(again.event().id(), "1");
    sink.failing
        .store(false, std::sync::atomic::Ordering::Relaxed);
    again.dead_letter("bad data").await.unwrap();
    let kept = sink.kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].origin.as_str(), kept[0].reason.as_str()),
        ("s", "bad data")
    );
    assert_eq!(kept[0].header("ce-id"), Some("1"));
    assert_eq!(kept[0].payload, br#"{"n":"1"}"#);
    assert!(broker.take_dead_letters("s", 10).await.unwrap().is_empty());
    assert_eq!(broker.depth("s"), Some(0));
    assert!(
        sub.recv().now_or_never().is_none(),
        "nothing left to deliver"
    );
}

#[tokio::test]
async fn publish_times_out_with_backpressure_error() {
    let broker = small(1, Some(Duration::from_millis(30)));
    let _sub = broker
        .subscribe(SubscriptionSpec::new("slow", TypeFilter::all()))
        .await
        .unwrap();
    broker.publish(event("1", "t")).await.unwrap();
    let err = broker.publish(event("2", "t")).await.unwrap_err();
    assert!(
        matches!(err, BrokerError::Backpressure { ref subscription, .. } if subscription == "slow"),
        "{err}"
    );
}

#[tokio::test]
async fn nacks_redeliver_with_a_count_then_dead_letter_with_the_reason() {
    let broker = MemoryBroker::default();
    let spec = SubscriptionSpec::new("s", TypeFilter::all()).max_deliveries(3);
    let mut sub = broker.subscribe(spec).await.unwrap();
    broker.publish(event("1", "t")).await.unwrap();
    for expected in 1..=2 {
        let d = sub.recv().await.unwrap();
        assert_eq!(d.delivery_count(), expected);
        assert_eq!(d.is_redelivery(), expected > 1);
        assert_eq!(
            d.nack("handler failed").await.unwrap(),
            NackOutcome::Requeued
        );
    }
    let d = sub.recv().await.unwrap();
    assert_eq!(d.delivery_count(), 3);
    assert_eq!(
        d.nack("still failing").await.unwrap(),
        NackOutcome::DeadLettered
    );
    let letters = broker.take_dead_letters("s", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.as_ref().unwrap().id(), "1");
    assert!(
        letters[0].reason.contains("failed 3 deliveries"),
        "{}",
        letters[0].reason
    );
    assert!(letters[0].reason.contains("still failing"));
    assert!(broker.take_dead_letters("s", 10).await.unwrap().is_empty());
    assert_eq!(broker.depth("s"), Some(0), "dead-lettering frees the slot");
}

#[tokio::test]
async fn poison_goes_straight_to_dead_letters_and_the_buffer_is_bounded() {
    let broker = small(10, None);
    let mut sub = broker
        .subscribe(SubscriptionSpec::new("s", TypeFilter::all()))
        .await
        .unwrap();
    for i in 0..5 {
        broker.publish(event(&i.to_string(), "t")).await.unwrap();
        sub.recv()
            .await
            .unwrap()
            .dead_letter("bad data")
            .await
            .unwrap();
    }
    let letters = broker.take_dead_letters("s", 10).await.unwrap();
    let ids: Vec<&str> = letters
        .iter()
        .map(|l| l.event.as_ref().unwrap().id())
        .collect();
    assert_eq!(
        ids,
        ["2", "3", "4"],
        "only the newest three letters' bytes are kept"
    );
    assert!(
        letters
            .iter()
            .all(|l| l.reason == "bad data" && l.subscription == "s")
    );
}

#[tokio::test]
async fn dropped_deliveries_are_requeued() {
    let (broker, mut sub) = subscribed_to_all().await;
    broker.publish(event("1", "t")).await.unwrap();
    drop(sub.recv().await.unwrap());
    let again = sub.recv().await.unwrap();
    assert_eq!((again.event().id(), again.delivery_count()), ("1", 2));
}

#[tokio::test]
async fn batches_take_what_is_available_up_to_the_maximum() {
    let (broker, mut sub) = subscribed_to_all().await;
    for i in 0..5 {
        broker.publish(event(&i.to_string(), "t")).await.unwrap();
    }
    let batch = sub.recv_batch(3).await;
    assert_eq!(
        batch
            .iter()
            .map(|d| d.event().id().to_owned())
            .collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    let rest = sub.recv_batch_linger(10, Duration::from_millis(20)).await;
    assert_eq!(rest.len(), 2);
    for d in batch.into_iter().chain(rest) {
        d.ack().await.unwrap();
    }
    assert_eq!(broker.depth("s"), Some(0));
}

#[tokio::test]
async fn linger_collects_events_published_meanwhile() {
    let (broker, mut sub) = subscribed_to_all().await;
    broker.publish(event("0", "t")).await.unwrap();
    let publisher = tokio::spawn({
        let broker = broker.clone();
        async move {
            for i in 1..4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                broker.publish(event(&i.to_string(), "t")).await.unwrap();
            }
        }
    });
    let batch = sub.recv_batch_linger(4, Duration::from_secs(5)).await;
    assert_eq!(batch.len(), 4);
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_quiet_spell_ends_a_lingering_batch() {
    let (broker, mut sub) = subscribed_to_all().await;
    broker.publish(event("0", "t")).await.unwrap();
    // A minute of linger, ended after 10 ms without events: the timeout only guards the test.
    let batch = tokio::time::timeout(
        Duration::from_secs(30),
        sub.recv_batch_until_quiet(4, Duration::from_secs(60), Duration::from_millis(10)),
    )
    .await
    .expect("the quiet spell ended the batch");
    assert_eq!(batch.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_backlog_older_than_the_linger_is_returned_at_once() {
    let (broker, mut sub) = subscribed_to_all().await;
    let linger = Duration::from_millis(25);
    broker.publish(event("0", "t")).await.unwrap();
    // The consumer was busy elsewhere for longer than the linger while events queued up.
    tokio::time::sleep(linger * 4).await;
    broker.publish(event("1", "t")).await.unwrap();
    let asked = tokio::time::Instant::now();
    let batch = sub
        .recv_batch_until_quiet(10, linger, Duration::from_secs(60))
        .await;
    assert_eq!(batch.len(), 2);
    assert_eq!(
        asked.elapsed(),
        Duration::ZERO,
        "the backlog lingered again"
    );

    // A batch started by a fresh event still lingers for more.
    let publisher = tokio::spawn({
        let broker = broker.clone();
        async move {
            tokio::time::sleep(linger * 4).await;
            broker.publish(event("2", "t")).await.unwrap();
            tokio::time::sleep(linger / 5).await;
            broker.publish(event("3", "t")).await.unwrap();
        }
    });
    let batch = sub
        .recv_batch_until_quiet(10, linger, Duration::from_secs(60))
        .await;
    assert_eq!(batch.len(), 2);
    assert_eq!(asked.elapsed(), linger * 4 + linger);
    publisher.await.unwrap();
}

#[tokio::test]
async fn competing_consumers_share_one_subscription() {
    let broker = MemoryBroker::default();
    let spec = SubscriptionSpec::new("shared", TypeFilter::all());
    let mut a = broker.subscribe(spec.clone()).await.unwrap();
    let mut b = broker.subscribe(spec).await.unwrap();
    broker.publish(event("1", "t")).await.unwrap();
    broker.publish(event("2", "t")).await.unwrap();
    let x = a.recv().await.unwrap();
    let y = b.recv().await.unwrap();
    let mut ids = [x.event().id().to_owned(), y.event().id().to_owned()];
    ids.sort();
    assert_eq!(ids, ["1", "2"]);
}

#[tokio::test]
async fn a_subscription_lives_while_a_handle_does() {
    let broker = MemoryBroker::default();
    let spec = SubscriptionSpec::new("s", TypeFilter::all());
    let a = broker.subscribe(spec.clone()).await.unwrap();
    let b = broker.subscribe(spec).await.unwrap();
    drop(a);
    assert_eq!(broker.depth("s"), Some(0));
    drop(b);
    assert_eq!(broker.depth("s"), None);
    assert_eq!(
        broker.publish(event("1", "t")).await.unwrap(),
        PublishOutcome::Unroutable
    );
}

#[tokio::test]
async fn deleting_closes_receivers_and_conflicting_filters_are_refused() {
    let (broker, mut sub) = subscribed_to_all().await;
    let err = broker
        .subscribe(SubscriptionSpec::new("s", TypeFilter::exact(["x"])))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("already exists with filter"),
        "{err}"
    );
    assert!(
        broker
            .subscribe(SubscriptionSpec::new("e", TypeFilter::default()))
            .await
            .is_err()
    );
    broker.delete_subscription("s").await.unwrap();
    assert!(sub.recv().await.is_none());
    assert!(sub.recv_batch(5).await.is_empty());
}

#[test]
fn an_event_is_charged_by_the_bytes_it_holds() {
    let small = held_bytes(&sized("1", 10));
    let large = held_bytes(&sized("1", 100_000));
    assert_eq!(
        large - small,
        100_000 - 10,
        "the data's text counts byte for byte"
    );
    // A parsed payload of many values counts more than its text.
    let text = serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8]).to_string();
    let parsed = EventBuilderV10::new()
        .id("1")
        .ty("t")
        .source("pole-1")
        .data(
            "application/json",
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        )
        .build()
        .unwrap();
    let as_text = EventBuilderV10::new()
        .id("1")
        .ty("t")
        .source("pole-1")
        .data("application/json", text)
        .build()
        .unwrap();
    assert!(held_bytes(&parsed) > held_bytes(&as_text));
}

/// Large events fill a subscription by their bytes long before its event count: publishers
/// wait for room until a consumer takes a waiting event. A requeued event waits again without
/// being charged again, and nothing is lost.
#[tokio::test]
async fn a_subscription_holds_waiting_events_up_to_their_bytes() {
    let payload = 100_000;
    let broker = byte_bounded(2 * held_bytes(&sized("0", payload)) + 1_000);
    let mut sub = broker
        .subscribe(SubscriptionSpec::new("s", TypeFilter::all()))
        .await
        .unwrap();
    broker.publish(sized("1", payload)).await.unwrap();
    broker.publish(sized("2", payload)).await.unwrap();
    let mut third = Box::pin(broker.publish(sized("3", payload)));
    assert!(
        futures::poll!(&mut third).is_pending(),
        "a third large event must wait for bytes, with 98 slots free"
    );
    // Taken by a consumer, an event no longer counts against the bytes.
    let first = sub.recv().await.unwrap();
    third.await.unwrap();
    let mut fourth = Box::pin(broker.publish(sized("4", payload)));
    assert!(futures::poll!(&mut fourth).is_pending());
    // Requeued, it is not charged again: the fourth still waits, and nothing is lost.
    drop(first);
    assert!(futures::poll!(&mut fourth).is_pending());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let delivery = sub.recv().await.unwrap();
        ids.push(delivery.event().id().to_owned());
        delivery.ack().await.unwrap();
    }
    fourth.await.unwrap();
    for _ in 0..2 {
        let delivery = sub.recv().await.unwrap();
        ids.push(delivery.event().id().to_owned());
        delivery.ack().await.unwrap();
    }
    ids.sort();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    assert_eq!(broker.depth("s"), Some(0));
}

/// A consumer that publishes into the subscription it reads before acknowledging (a service
/// replying to itself) is not held back by the events it holds unacknowledged.
#[tokio::test]
async fn a_consumer_publishing_into_its_own_subscription_is_not_held_back_by_what_it_holds() {
    let payload = 100_000;
    let broker = byte_bounded(held_bytes(&sized("0", payload)) + 1_000);
    let mut sub = broker
        .subscribe(SubscriptionSpec::new("s", TypeFilter::all()))
        .await
        .unwrap();
    broker.publish(sized("1", payload)).await.unwrap();
    let held = sub.recv().await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        broker.publish(sized("reply", payload)),
    )
    .await
    .expect("the reply is not held back by the delivery it answers")
    .unwrap();
    held.ack().await.unwrap();
}

/// An event larger than the whole bound is not refused for ever: it is taken once no other
/// event waits, and everything after it waits until a consumer takes it.
#[tokio::test]
async fn an_event_larger_than_the_bound_passes_alone() {
    let broker = byte_bounded(1_000);
    let mut sub = broker
        .subscribe(SubscriptionSpec::new("s", TypeFilter::all()))
        .await
        .unwrap();
    broker.publish(sized("small", 10)).await.unwrap();
    let mut large = Box::pin(broker.publish(sized("large", 10_000)));
    assert!(futures::poll!(&mut large).is_pending());
    sub.recv().await.unwrap().ack().await.unwrap();
    large.await.unwrap();
    let mut after = Box::pin(broker.publish(sized("after", 10)));
    assert!(futures::poll!(&mut after).is_pending());
    let d = sub.recv().await.unwrap();
    assert_eq!(d.event().id(), "large");
    after.await.unwrap();
    d.ack().await.unwrap();
}

/// A publish to several subscriptions dropped while it waits for one of them (an HTTP request
/// timing out, say) gives back the room it took in the others.
#[tokio::test]
async fn a_publish_dropped_while_waiting_leaves_no_room_taken() {
    let broker = small(1, None);
    let _a = broker
        .subscribe(SubscriptionSpec::new("a", TypeFilter::exact(["t"])))
        .await
        .unwrap();
    let _b = broker
        .subscribe(SubscriptionSpec::new("b", TypeFilter::exact(["t", "v"])))
        .await
        .unwrap();
    broker.publish(event("1", "v")).await.unwrap();
    let mut waiting = Box::pin(broker.publish(event("2", "t")));
    assert!(futures::poll!(&mut waiting).is_pending(), "b is full");
    assert_eq!(broker.depth("a"), Some(1), "a's slot is taken meanwhile");
    drop(waiting);
    assert_eq!(broker.depth("a"), Some(0), "and given back");
}

/// A publisher that gives up waiting for bytes leaves the slot it had taken: the subscription
/// is not shrunk by abandoned publishes.
#[tokio::test]
async fn a_publish_given_up_on_returns_its_slot() {
    let broker = MemoryBroker::new(MemoryBrokerConfig {
        queue_capacity: 2,
        queue_bytes: held_bytes(&sized("0", 10_000)) + 100,
        publish_timeout: Some(Duration::from_millis(30)),
        ..MemoryBrokerConfig::default()
    });
    let mut sub = broker
        .subscribe(SubscriptionSpec::new("s", TypeFilter::all()))
        .await
        .unwrap();
    broker.publish(sized("1", 10_000)).await.unwrap();
    for id in ["2", "3"] {
        let err = broker.publish(sized(id, 10_000)).await.unwrap_err();
        assert!(matches!(err, BrokerError::Backpressure { .. }), "{err}");
    }
    assert_eq!(broker.depth("s"), Some(1));
    sub.recv().await.unwrap().ack().await.unwrap();
    // Both slots are free again: two small events fit at once.
    broker.publish(sized("4", 1)).await.unwrap();
    broker.publish(sized("5", 1)).await.unwrap();
    assert_eq!(broker.depth("s"), Some(2));
}

/// A type longer than any of the grammar's, which the broker routes without remembering its
/// route, is still routed like any other, before and after a subscription changes.
#[tokio::test]
async fn overlong_types_are_routed_like_others() {
    let broker = MemoryBroker::default();
    let long = format!(
        "ktwin.real.{}",
        "x".repeat(ktwin_events::MAX_EVENT_TYPE_LEN)
    );
    let mut prefix = broker
        .subscribe(SubscriptionSpec::new(
            "real",
            TypeFilter::prefix("ktwin.real."),
        ))
        .await
        .unwrap();
    assert_eq!(
        broker.publish(event("1", &long)).await.unwrap(),
        PublishOutcome::Routed
    );
    assert_eq!(prefix.recv().await.unwrap().event().id(), "1");
    let mut exact = broker
        .subscribe(SubscriptionSpec::new(
            "exact",
            TypeFilter::exact([long.as_str()]),
        ))
        .await
        .unwrap();
    broker.publish(event("2", &long)).await.unwrap();
    assert_eq!(exact.recv().await.unwrap().event().id(), "2");
}
