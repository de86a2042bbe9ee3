//! `OwnedStates` on replicas that nothing partitions (Knative on a cluster): four real SDK
//! servers, each with its own `OwnedStates`, over the real event store (fjall, and PostgreSQL),
//! get the events of several instances at random and concurrently, without the
//! `ktwin-owner-epoch` header, with injected redeliveries (the same event again, and one five
//! events back, each to another replica than the first delivery's). Every count is exact, and
//! every redelivery answers what the event's first application did.
//!
//! The test plays the broker: a delivery that fails (a replica gave up after repeated
//! conflicts) is delivered again, and each reply (the handler's store event) is posted to the
//! store, as the store's Trigger does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cloudevents::{AttributesReader, Event};
use futures::StreamExt;
use ktwin_sdk::{HttpEventStore, OWNED_MEMBER, StaticGraph, TwinContext, to_binary_http};
use ktwin_store::{ApiConfig, Backend, BackendChoice, IngestConfig, Ingestor};
use ktwin_testkit::counter::{COUNTER_INTERFACE, Counter, counter_reading};
use ktwin_testkit::serve;

const REPLICAS: usize = 4;
const INSTANCES: usize = 5;
const EVENTS_PER_INSTANCE: usize = 30;
/// Deliveries in flight at once, over all instances and replicas.
const CONCURRENCY: usize = 12;

/// The event store's API over `backend`, served; returns its URL.
async fn serve_store(backend: Arc<dyn Backend>) -> String {
    let (ingestor, _task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
    serve(ktwin_store::router(backend, ingestor, ApiConfig::default())).await
}

/// A replica: a real SDK server with its own `OwnedStates`, reading and writing the store.
async fn serve_replica(store: &str) -> String {
    let states = HttpEventStore::new(store, Duration::from_secs(10));
    let ctx = TwinContext::new(Arc::new(StaticGraph::default()), Arc::new(states));
    serve(Counter::new("replica").router(ctx)).await
}

fn reading(instance: usize, index: usize) -> Event {
    let id = format!("i{instance}-e{index}");
    counter_reading(&format!("counter-{instance}"), &id, index as u64)
}

/// SplitMix64, so the run is the same every time.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One delivery: the event and the replica it goes to first.
struct Delivery {
    event: Event,
    replica: usize,
}

/// Each instance's events in order, each to a random replica; after every fifth event, that
/// event again and the one five back, each to another replica than its first delivery's. The
/// instances' sequences interleave at random.
fn schedule() -> Vec<Delivery> {
    let mut per_instance: Vec<Vec<Delivery>> = (0..INSTANCES)
        .map(|instance| {
            let mut deliveries = Vec::new();
            let mut first_replica = Vec::new();
            for index in 0..EVENTS_PER_INSTANCE {
                let replica = (mix((instance * 1000 + index) as u64) % REPLICAS as u64) as usize;
                first_replica.push(replica);
                deliveries.push(Delivery {
                    event: reading(instance, index),
                    replica,
                });
                if index % 5 == 4 {
                    for earlier in std::iter::once(index).chain(index.checked_sub(5)) {
                        deliveries.push(Delivery {
                            event: reading(instance, earlier),
                            replica: (first_replica[earlier] + 1 + index % 3) % REPLICAS,
                        });
                    }
                }
            }
            deliveries.reverse();
            deliveries
        })
        .collect();
    let mut all = Vec::new();
    let mut turn = 0u64;
    while per_instance.iter().any(|d| !d.is_empty()) {
        turn += 1;
        let pick = (mix(turn) % INSTANCES as u64) as usize;
        if let Some(next) = per_instance[pick].pop() {
            all.push(next);
        }
    }
    all
}

/// Delivers like the broker: a failed delivery goes again (to the next replica); a reply is
/// posted to the store. Returns the count the reply carried.
async fn deliver(client: &reqwest::Client, replicas: &[String], store: &str, d: Delivery) -> u64 {
    for attempt in 0..20 {
        let url = &replicas[(d.replica + attempt) % replicas.len()];
        let (headers, body) = to_binary_http(d.event.clone()).unwrap();
        let response = client.post(url).headers(headers).body(body).send().await;
        let response = response.expect("the replica answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        if !status.is_success() {
            eprintln!("redelivering {} after {status}", d.event.id());
            continue;
        }
        let reply = cloudevents::binding::http::to_event(&headers, body.to_vec()).unwrap();
        let (headers, body) = to_binary_http(reply.clone()).unwrap();
        let stored = client
            .post(format!("{store}/api/v1/twin-events"))
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(stored.status().is_success(), "{}", stored.status());
        let data: serde_json::Value = match reply.data() {
            Some(cloudevents::Data::Json(value)) => value.clone(),
            Some(cloudevents::Data::Binary(bytes)) => serde_json::from_slice(bytes).unwrap(),
            other => panic!("unexpected reply data {other:?}"),
        };
        return data["n"].as_u64().expect("a count");
    }
    panic!("{} was never delivered", d.event.id());
}

async fn counts_are_exact_without_partitioning(backend: Arc<dyn Backend>) {
    let store = serve_store(backend).await;
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(serve_replica(&store).await);
    }
    let client = reqwest::Client::new();
    let answers: Vec<(String, String, u64)> = futures::stream::iter(schedule())
        .map(|d| {
            let (client, replicas, store) = (&client, &replicas, &store);
            async move {
                let instance = d.event.source().to_string();
                let id = d.event.id().to_owned();
                (instance, id, deliver(client, replicas, store, d).await)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    // Every delivery of one event answers the same count, and the events of an instance got
    // the counts 1..=N, each once: none lost, none applied twice.
    let mut by_event: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for (instance, id, n) in answers {
        by_event.entry((instance, id)).or_default().push(n);
    }
    let mut by_instance: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for ((instance, id), counts) in &by_event {
        assert!(
            counts.iter().all(|n| *n == counts[0]),
            "deliveries of {id} answered {counts:?}"
        );
        by_instance
            .entry(instance.clone())
            .or_default()
            .push(counts[0]);
    }
    assert_eq!(by_instance.len(), INSTANCES);
    let expected: Vec<u64> = (1..=EVENTS_PER_INSTANCE as u64).collect();
    for (instance, mut counts) in by_instance {
        counts.sort_unstable();
        assert_eq!(counts, expected, "counts of {instance}");
        let owned = stored_owned_count(&client, &store, &instance).await;
        assert_eq!(
            owned, EVENTS_PER_INSTANCE as u64,
            "stored count of {instance}"
        );
    }
}

/// The count kept in the store's state of `instance`, under the SDK's member.
async fn stored_owned_count(client: &reqwest::Client, store: &str, instance: &str) -> u64 {
    let url = format!("{store}/api/v1/twin-events/{COUNTER_INTERFACE}/{instance}/latest");
    let state: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
    state[OWNED_MEMBER][0]["state"]["n"]
        .as_u64()
        .unwrap_or_else(|| panic!("no owned count in {state}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owned_counts_are_exact_over_four_unpartitioned_replicas_on_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let backend = BackendChoice::Embedded(dir.path().join("store"))
        .open()
        .await
        .unwrap();
    counts_are_exact_without_partitioning(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owned_counts_are_exact_over_four_unpartitioned_replicas_on_postgres() {
    let db = ktwin_testkit::ScratchDb::create("owned_cluster").await;
    let backend = BackendChoice::Postgres(db.url.clone())
        .open()
        .await
        .unwrap();
    counts_are_exact_without_partitioning(backend).await;
}
