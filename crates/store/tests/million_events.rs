//! Acceptance: 1,000,000 events over 10,000 instances into real PostgreSQL. Every latest state
//! equals a merge computed here independently; ingesting the same events again changes
//! nothing; a shuffled arrival order gives the same states.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use common::{ScratchDb, mix, reference_merge};
use ktwin_events::EventType;
use ktwin_store::{
    AppendReport, Backend, BackendChoice, IngestConfig, Ingestor, LatestState, TwinEvent,
};
use serde_json::{Map, Value, json};

const INSTANCES: u64 = 10_000;
const PER_INSTANCE: u64 = 100;
const TOTAL: u64 = INSTANCES * PER_INSTANCE;
const CHUNK: usize = 50_000;
const INTERFACE: &str = "million-sensor";

fn base_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_717_000_000, 0).unwrap()
}

fn instance_name(n: u64) -> String {
    format!("sensor-{n:05}")
}

/// Event number `i`, regenerated on demand. Times fall in a 3 ms window per instance, so
/// arrival order and time order disagree constantly and equal times (ties by id) occur.
fn event(i: u64) -> TwinEvent {
    let h = mix(i);
    let mut data = Map::new();
    for slot in 0..=(h % 3) {
        let r = mix(h ^ slot);
        let value = match r % 10 {
            0 => Value::Null,
            1 => json!([r % 7]),
            2 => json!({"x": r % 5, "y": Value::Null, "z": {"deep": r % 3}}),
            3 => json!({"y": r % 11}),
            4 => json!("text"),
            _ => json!(r % 1000),
        };
        let key = ["a", "b", "c", "nested", "e"][(r >> 20) as usize % 5];
        data.insert(key.to_owned(), value);
    }
    TwinEvent::new(
        &EventType::store(INTERFACE).unwrap(),
        &instance_name(i % INSTANCES),
        format!("{:016x}", mix(i ^ 0x5eed)),
        base_time() + Duration::microseconds((h >> 40) as i64 % 3_000),
        data,
    )
}

/// The expected state of every instance: its events sorted by (time, id), merged in order.
fn expected_states() -> BTreeMap<String, (Value, String)> {
    (0..INSTANCES)
        .map(|n| {
            let mut events: Vec<TwinEvent> = (0..PER_INSTANCE)
                .map(|k| event(n + k * INSTANCES))
                .collect();
            events.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
            let state = events.iter().fold(json!({}), |state, e| {
                reference_merge(state, &Value::Object(e.event_data.clone().into_map()))
            });
            (instance_name(n), (state, events.last().unwrap().id.clone()))
        })
        .collect()
}

async fn ingest(backend: Arc<dyn Backend>, order: Arc<Vec<u64>>) -> AppendReport {
    let (ingestor, task) = Ingestor::spawn(
        backend,
        IngestConfig {
            max_batch: CHUNK,
            queue: 16,
            ..IngestConfig::default()
        },
    );
    let chunks = order.len().div_ceil(CHUNK);
    let producers = 4;
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..producers {
        let (ingestor, order) = (ingestor.clone(), order.clone());
        tasks.spawn(async move {
            let mut report = AppendReport::default();
            for c in (p..chunks).step_by(producers) {
                let events: Vec<TwinEvent> = order[c * CHUNK..((c + 1) * CHUNK).min(order.len())]
                    .iter()
                    .map(|&i| event(i))
                    .collect();
                report.add(ingestor.submit(events).await.expect("batch stored"));
            }
            report
        });
    }
    let mut total = AppendReport::default();
    while let Some(report) = tasks.join_next().await {
        total.add(report.unwrap());
    }
    drop(ingestor);
    task.await.unwrap();
    total
}

async fn latest_states(backend: &dyn Backend) -> Vec<LatestState> {
    let page = backend
        .twins(INTERFACE, None, INSTANCES as usize + 1)
        .await
        .unwrap();
    assert!(!page.more);
    page.items
}

fn assert_states(states: &[LatestState], expected: &BTreeMap<String, (Value, String)>) {
    assert_eq!(
        states.len(),
        expected.len(),
        "one latest state per instance"
    );
    for latest in states {
        let (state, last_id) = &expected[&latest.instance_id];
        assert_eq!(
            &Value::Object(latest.state.clone()),
            state,
            "state of {}",
            latest.instance_id
        );
        assert_eq!(
            &latest.id, last_id,
            "newest event of {}",
            latest.instance_id
        );
        assert_eq!(
            latest.event_count, PER_INSTANCE as i64,
            "events of {}",
            latest.instance_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_events_merge_idempotently_in_any_order() {
    let expected = expected_states();
    let in_order = Arc::new((0..TOTAL).collect::<Vec<_>>());

    let db = ScratchDb::create("million").await;
    let backend = BackendChoice::Postgres(db.url.clone())
        .open()
        .await
        .unwrap();
    let first = ingest(backend.clone(), in_order.clone()).await;
    assert_eq!(
        first,
        AppendReport {
            stored: TOTAL as usize,
            duplicates: 0,
            versions: Vec::new(),
        }
    );
    let states = latest_states(backend.as_ref()).await;
    assert_states(&states, &expected);

    let again = ingest(backend.clone(), in_order).await;
    assert_eq!(
        again,
        AppendReport {
            stored: 0,
            duplicates: TOTAL as usize,
            versions: Vec::new(),
        }
    );
    assert_eq!(
        latest_states(backend.as_ref()).await,
        states,
        "re-ingestion changed nothing"
    );
    drop(backend);
    drop(db);

    let mut shuffled: Vec<u64> = (0..TOTAL).collect();
    for i in (1..shuffled.len()).rev() {
        let j = (mix(i as u64 ^ 0xd1ce) % (i as u64 + 1)) as usize;
        shuffled.swap(i, j);
    }
    let db = ScratchDb::create("million_shuffled").await;
    let backend = BackendChoice::Postgres(db.url.clone())
        .open()
        .await
        .unwrap();
    let report = ingest(backend.clone(), Arc::new(shuffled)).await;
    assert_eq!(report.stored, TOTAL as usize);
    assert_states(&latest_states(backend.as_ref()).await, &expected);
}
