//! Ingestion straight from a broker subscription: stored events are acknowledged, events that
//! are not twin events are dead-lettered, redeliveries are stored once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudevents::{AttributesWriter, EventBuilder, EventBuilderV10};
use ktwin_broker::{Broker, MemoryBroker, SubscriptionSpec, TypeFilter};
use ktwin_store::broker::{BrokerFeed, StoredObserver};
use ktwin_store::{IngestConfig, Ingestor, InstanceKey, ingest_feed};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn event(id: &str, ty: &str, data: serde_json::Value) -> cloudevents::Event {
    EventBuilderV10::new()
        .id(id)
        .ty(ty)
        .source("pole-1")
        .time("2024-05-20T10:00:00Z")
        .data("application/json", data)
        .build()
        .unwrap()
}

#[tokio::test]
async fn broker_events_are_stored_and_acknowledged_by_fjall() {
    broker_events_are_stored_and_acknowledged(common::FJALL).await;
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn broker_events_are_stored_and_acknowledged_by_redb() {
    broker_events_are_stored_and_acknowledged(common::REDB).await;
}

/// A store fed from a memory broker's `event-store` subscription.
struct FedStore {
    _dir: tempfile::TempDir,
    backend: std::sync::Arc<dyn ktwin_store::Backend>,
    broker: MemoryBroker,
    cancel: CancellationToken,
    consumer: tokio::task::JoinHandle<()>,
    ingest_task: tokio::task::JoinHandle<()>,
}

impl FedStore {
    async fn start(store: &str, linger: Duration, max_batch: usize) -> Self {
        Self::start_with(store, linger, max_batch, |feed| feed).await
    }

    /// Like [`FedStore::start`], with the feed set up further by `configure`.
    async fn start_with(
        store: &str,
        linger: Duration,
        max_batch: usize,
        configure: impl FnOnce(BrokerFeed) -> BrokerFeed,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = common::open_embedded(dir.path(), store).await;
        let (ingestor, ingest_task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
        let broker = MemoryBroker::default();
        let spec = SubscriptionSpec::new("event-store", TypeFilter::prefix("ktwin."));
        let subscription = broker.subscribe(spec).await.unwrap();
        let cancel = CancellationToken::new();
        let consumer = tokio::spawn(ingest_feed(
            configure(BrokerFeed::new(subscription, linger)),
            ingestor,
            max_batch,
            cancel.clone(),
        ));
        Self {
            _dir: dir,
            backend,
            broker,
            cancel,
            consumer,
            ingest_task,
        }
    }

    /// Publishes the event [`event`] builds.
    async fn publish(&self, id: &str, ty: &str, data: serde_json::Value) {
        self.broker.publish(event(id, ty, data)).await.unwrap();
    }

    /// Waits until every published event was acknowledged or dead-lettered.
    async fn settled(&self) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while self.broker.depth("event-store") != Some(0) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("every event was acknowledged or dead-lettered");
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.consumer.await.unwrap();
        self.ingest_task.await.unwrap();
    }
}

async fn broker_events_are_stored_and_acknowledged(store: &str) {
    let fed = FedStore::start(store, Duration::from_millis(20), 1000).await;
    let (backend, broker) = (&fed.backend, &fed.broker);

    fed.publish(
        "a",
        "ktwin.store.city-pole",
        json!({"aqi": 1, "lamp": "ok"}),
    )
    .await;
    fed.publish("b", "ktwin.real.city-pole", json!({"aqi": 2}))
        .await;
    fed.publish("b", "ktwin.real.city-pole", json!({"aqi": 2}))
        .await;
    fed.publish("c", "ktwin.command.city-pole.reset", json!({}))
        .await;

    let key = InstanceKey::new("city-pole", "pole-1");
    let latest = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(latest) = backend
                .latest(&key)
                .await
                .unwrap()
                .filter(|l| l.event_count == 2)
            {
                return latest;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("events from the broker were stored");
    assert_eq!(
        serde_json::Value::Object(latest.state),
        json!({"aqi": 2, "lamp": "ok"})
    );

    let dead = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let dead = broker.take_dead_letters("event-store", 10).await.unwrap();
            if !dead.is_empty() {
                return dead;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the command event was dead-lettered");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("ktwin.command.city-pole.reset"),
        "{}",
        dead[0].reason
    );
    fed.stop().await;
}

/// Batches commit while the next is collected: each is stored, then acknowledged.
#[tokio::test]
async fn batches_in_flight_together_are_all_stored_and_acknowledged() {
    // Batches of 7 at most: many of them, several in flight.
    let fed = FedStore::start(common::FJALL, Duration::from_millis(1), 7).await;
    let (backend, broker) = (&fed.backend, &fed.broker);
    for n in 0..500 {
        let mut event = event(&format!("e{n}"), "ktwin.real.city-pole", json!({"n": n}));
        event.set_source(format!("pole-{}", n % 50));
        broker.publish(event).await.unwrap();
    }
    let stored = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut stored = 0;
            for pole in 0..50 {
                let key = InstanceKey::new("city-pole", format!("pole-{pole}"));
                stored += backend
                    .latest(&key)
                    .await
                    .unwrap()
                    .map_or(0, |l| l.event_count);
            }
            if stored == 500 {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every event was stored");
    assert_eq!(stored, 500);
    fed.settled().await;
    fed.stop().await;
}

/// Remembers the ids of the events it is told were stored.
#[derive(Default)]
struct StoredIds(Mutex<Vec<String>>);

impl StoredObserver for StoredIds {
    fn stored(&self, event: &cloudevents::Event) {
        use cloudevents::AttributesReader;
        self.0.lock().unwrap().push(event.id().to_owned());
    }
}

#[tokio::test]
async fn an_observer_hears_of_every_stored_event_and_of_nothing_else() {
    let observer = Arc::new(StoredIds::default());
    let fed = FedStore::start_with(common::FJALL, Duration::from_millis(5), 1000, |feed| {
        feed.quiet(Duration::from_millis(1))
            .observed_by(observer.clone())
    })
    .await;
    for id in ["a", "b", "c"] {
        fed.publish(id, "ktwin.real.city-pole", json!({"id": id}))
            .await;
    }
    fed.publish("cmd", "ktwin.command.city-pole.reset", json!({}))
        .await;
    fed.settled().await;
    let mut heard = observer.0.lock().unwrap().clone();
    heard.sort();
    assert_eq!(heard, ["a", "b", "c"]);
    let key = InstanceKey::new("city-pole", "pole-1");
    let latest = fed.backend.latest(&key).await.unwrap().unwrap();
    assert_eq!(latest.event_count, 3);
    fed.stop().await;
}
