//! The store feed through a store outage (issue 18): a transient failure is retried for as
//! long as it lasts, without dead-lettering anything; a permanent one halts ingestion, keeping
//! the events with their source and turning readiness false.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ktwin_broker::{Broker, DEFAULT_MAX_DELIVERIES, MemoryBroker, SubscriptionSpec, TypeFilter};
use ktwin_service::Readiness;
use ktwin_store::broker::BrokerFeed;
use ktwin_store::faults::GatedBackend;
use ktwin_store::{
    Backend, IngestConfig, Ingestor, InstanceKey, StoreError, TwinEvent, ingest_feed,
    keep_readiness,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SUBSCRIPTION: &str = "event-store";

/// The failure a real embedded store's appends fail with while one is set.
#[derive(Default)]
struct Outage {
    failure: Mutex<Option<StoreError>>,
    failed_appends: AtomicUsize,
}

impl Outage {
    fn fail_with(&self, failure: Option<StoreError>) {
        *self.failure.lock().unwrap() = failure;
    }

    /// What an append meets: the failure set, if any (counted).
    fn gate(&self) -> Result<(), StoreError> {
        let failure = self.failure.lock().unwrap().clone();
        match failure {
            Some(failure) => {
                self.failed_appends.fetch_add(1, Ordering::SeqCst);
                Err(failure)
            }
            None => Ok(()),
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    outage: Arc<Outage>,
    backend: Arc<dyn Backend>,
    broker: MemoryBroker,
    ingestor: Ingestor,
    cancel: CancellationToken,
    consumer: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start(failure: StoreError) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inner = common::open_embedded(dir.path(), common::FJALL).await;
        let outage = Arc::new(Outage::default());
        outage.fail_with(Some(failure));
        let gate = Arc::clone(&outage);
        let backend: Arc<dyn Backend> = Arc::new(GatedBackend::new(inner, move || gate.gate()));
        let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
        let broker = MemoryBroker::default();
        let spec = SubscriptionSpec::new(SUBSCRIPTION, TypeFilter::prefix("ktwin."));
        let subscription = broker.subscribe(spec).await.unwrap();
        let cancel = CancellationToken::new();
        let consumer = tokio::spawn(ingest_feed(
            BrokerFeed::new(subscription, Duration::from_millis(5)),
            ingestor.clone(),
            100,
            cancel.clone(),
        ));
        for (i, aqi) in [1, 2, 3].into_iter().enumerate() {
            let event = ktwin_testkit::cloud_event(
                &format!("e{i}"),
                "ktwin.real.city-pole",
                "pole-1",
                json!({ "aqi": aqi }),
            );
            broker.publish(event).await.unwrap();
        }
        Self {
            _dir: dir,
            outage,
            backend,
            broker,
            ingestor,
            cancel,
            consumer,
        }
    }

    /// Waits (bounded) until the store has refused at least `attempts` appends.
    async fn refused(&self, attempts: usize) {
        tokio::time::timeout(Duration::from_secs(30), async {
            while self.outage.failed_appends.load(Ordering::SeqCst) < attempts {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the feed stopped retrying after {} failed appends",
                self.outage.failed_appends.load(Ordering::SeqCst)
            )
        });
    }

    async fn dead_letters(&self) -> usize {
        let letters = self.broker.take_dead_letters(SUBSCRIPTION, 100).await;
        letters.unwrap().len()
    }
}

#[tokio::test]
async fn a_store_outage_longer_than_the_delivery_limit_loses_nothing() {
    let outage = StoreError::Unavailable {
        context: "database restarting".into(),
        source: None,
    };
    let fixture = Fixture::start(outage).await;
    // More failed attempts than deliveries an event gets before it is dead-lettered.
    fixture.refused(DEFAULT_MAX_DELIVERIES as usize + 2).await;
    assert_eq!(fixture.dead_letters().await, 0, "nothing is dead-lettered");
    assert_eq!(fixture.broker.depth(SUBSCRIPTION), Some(3), "all held");
    assert!(
        fixture.ingestor.failure().is_none(),
        "transient: not halted"
    );

    fixture.outage.fail_with(None);
    let key = InstanceKey::new("city-pole", "pole-1");
    tokio::time::timeout(Duration::from_secs(30), async {
        while fixture.broker.depth(SUBSCRIPTION) != Some(0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every event was stored once the store came back");
    let latest = fixture.backend.latest(&key).await.unwrap().unwrap();
    assert_eq!(latest.event_count, 3);
    assert_eq!(fixture.dead_letters().await, 0);
    fixture.cancel.cancel();
    fixture.consumer.await.unwrap();
}

#[tokio::test]
async fn a_permanent_failure_halts_ingestion_and_keeps_the_events() {
    let broken = StoreError::failed("journal write failed", "disk on fire");
    let fixture = Fixture::start(broken).await;
    let readiness = Readiness::new();
    readiness.set_ready(true);
    let watcher = tokio::spawn(keep_readiness(
        fixture.backend.clone(),
        fixture.ingestor.clone(),
        readiness.clone(),
        fixture.cancel.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(10), fixture.ingestor.halted())
        .await
        .expect("the permanent failure halts ingestion");
    let failure = fixture.ingestor.failure().unwrap();
    assert!(
        failure.chain().contains("disk on fire"),
        "{}",
        failure.chain()
    );
    // Once halted, later submissions get the failure without reaching the database.
    let attempts = fixture.outage.failed_appends.load(Ordering::SeqCst);
    let event = ktwin_testkit::cloud_event("x", "ktwin.real.city-pole", "pole-2", json!({}));
    let twin = TwinEvent::from_cloudevent(&event, chrono::Utc::now()).unwrap();
    let refused = fixture.ingestor.submit(vec![twin]).await.unwrap_err();
    assert!(!refused.is_transient());
    assert_eq!(
        fixture.outage.failed_appends.load(Ordering::SeqCst),
        attempts
    );
    // The events stay with their source, unacknowledged and not dead-lettered.
    assert_eq!(fixture.broker.depth(SUBSCRIPTION), Some(3));
    assert_eq!(fixture.dead_letters().await, 0);
    tokio::time::timeout(Duration::from_secs(10), async {
        while readiness.is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("readiness turns false");
    fixture.cancel.cancel();
    fixture.consumer.await.unwrap();
    watcher.await.unwrap();
}
