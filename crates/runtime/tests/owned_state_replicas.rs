//! State a service accumulates per instance (`OwnedStates`) stays exact with four replicas,
//! redeliveries and a replica dying mid-run: the pool sends every event of an instance to one
//! replica, and an instance that moves is read from the store again.
//!
//! Each replica is a real SDK server (`ktwin_sdk::router`) on its own port with its own
//! `OwnedStates`, behind a real `ServicePool`; the replies are written to the store the
//! replicas read (`MemoryStates`), as the platform's store feed does.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};
use ktwin_runtime::{LaunchError, Launcher, PoolConfig, Replica, ScalePolicy, ServicePool};
use ktwin_sdk::{MemoryStates, StaticGraph, TwinContext};
use ktwin_testkit::counter::{Counter, counter_reading};

const INSTANCES: usize = 8;
const EVENTS_PER_INSTANCE: usize = 40;

/// Starts SDK servers over one shared store; keeps each server's handle (by replica) so a
/// test can kill it.
struct SdkLauncher {
    store: Arc<MemoryStates>,
    servers: Mutex<BTreeMap<String, tokio::task::AbortHandle>>,
}

#[async_trait]
impl Launcher for SdkLauncher {
    async fn launch(&self, index: u32) -> Result<Box<dyn Replica>, LaunchError> {
        let label = format!("counter-{index}");
        let ctx = TwinContext::in_memory(StaticGraph::default(), Arc::clone(&self.store));
        let app = Counter::new(label.clone()).router(ctx);
        let replica = common::ServerReplica::serve(label.clone(), app).await;
        self.servers
            .lock()
            .expect("not poisoned")
            .insert(label, replica.server.abort_handle());
        Ok(Box::new(replica))
    }
}

/// What one delivery answered: the count and the replica that counted.
fn answer(reply: &[Event]) -> (u64, String) {
    let event = reply.first().expect("the service replies with the count");
    let data: serde_json::Value = match event.data() {
        Some(cloudevents::Data::Json(value)) => value.clone(),
        Some(cloudevents::Data::Binary(bytes)) => serde_json::from_slice(bytes).expect("JSON"),
        other => panic!("unexpected reply data {other:?}"),
    };
    (
        data["n"].as_u64().expect("a count"),
        data["replica"].as_str().expect("a replica").to_owned(),
    )
}

/// Delivers like the broker: a failed delivery (a replica that died) is redelivered; a
/// successful reply goes to the store.
async fn deliver(pool: &ServicePool, store: &MemoryStates, event: &Event) -> (u64, String) {
    for _ in 0..20 {
        match pool.deliver(event.clone()).await {
            Ok(reply) => {
                store.put(reply[0].clone());
                return answer(&reply);
            }
            Err(err) => eprintln!("redelivering {} after: {err}", event.id()),
        }
    }
    panic!("{} was never delivered", event.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_are_exact_with_four_replicas_duplicates_and_a_replica_dying() {
    let store = Arc::new(MemoryStates::new());
    let launcher = Arc::new(SdkLauncher {
        store: Arc::clone(&store),
        servers: Mutex::new(BTreeMap::new()),
    });
    let policy = ScalePolicy {
        min_scale: 4,
        max_scale: 4,
        target: 1,
        target_utilization: 1.0,
        replica_concurrency: 4,
        ..ScalePolicy::default()
    };
    let config = PoolConfig {
        policy,
        queue_capacity: 64,
        request_timeout: Duration::from_secs(10),
        wait_timeout: Duration::from_secs(30),
        tick: Duration::from_millis(20),
    };
    let pool = Arc::new(ServicePool::start("counter", launcher.clone(), config));
    let started = Instant::now();
    while pool.stats().replicas < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "4 replicas start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let instances: Vec<String> = (0..INSTANCES).map(|i| format!("counter-{i}")).collect();
    let half = EVENTS_PER_INSTANCE / 2;
    let mut answers: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for round in [0..half, half..EVENTS_PER_INSTANCE] {
        if round.start > 0 {
            // The replica of counter-0 dies: its instances move to others, which read them
            // from the store.
            let owner = owners["counter-0"].first().expect("counter-0 was handled");
            launcher.servers.lock().expect("not poisoned")[owner].abort();
            let started = Instant::now();
            while launcher.servers.lock().expect("not poisoned").len() < 5
                || pool.stats().replicas < 4
            {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "a replica replaces it"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let tasks: Vec<_> = instances
            .iter()
            .map(|instance| {
                let (pool, store) = (pool.clone(), store.clone());
                let (instance, round) = (instance.clone(), round.clone());
                let mut answered = answers.remove(&instance).unwrap_or_default();
                tokio::spawn(async move {
                    let mut replicas = BTreeSet::new();
                    for i in round.clone() {
                        let event = counter_reading(&instance, &format!("{instance}-e{i}"), 1);
                        let (n, replica) = deliver(&pool, &store, &event).await;
                        answered.push(n);
                        replicas.insert(replica);
                        // Injected duplicates: the same event again, and one five events back.
                        if i % 3 == 0 {
                            let (again, _) = deliver(&pool, &store, &event).await;
                            assert_eq!(again, n, "{instance}: a redelivery of e{i}");
                        }
                        if i >= round.start + 5 && i % 4 == 0 {
                            let earlier =
                                counter_reading(&instance, &format!("{instance}-e{}", i - 5), 1);
                            let (again, _) = deliver(&pool, &store, &earlier).await;
                            let first = answered[i - 5];
                            assert_eq!(again, first, "{instance}: a redelivery of e{}", i - 5);
                        }
                    }
                    (instance, answered, replicas)
                })
            })
            .collect();
        for task in tasks {
            let (instance, answered, replicas) = task.await.expect("the instance's deliveries");
            owners.entry(instance.clone()).or_default().extend(replicas);
            answers.insert(instance, answered);
        }
    }
    for (instance, answered) in &answers {
        let expected: Vec<u64> = (1..=EVENTS_PER_INSTANCE as u64).collect();
        assert_eq!(
            answered, &expected,
            "{instance} counted every event exactly once"
        );
    }
    let used: BTreeSet<_> = owners.values().flatten().collect();
    assert!(
        used.len() >= 2,
        "instances spread over the replicas: {owners:?}"
    );
    assert_eq!(owners["counter-0"].len(), 2, "counter-0 moved: {owners:?}");
    pool.shutdown().await;
}
