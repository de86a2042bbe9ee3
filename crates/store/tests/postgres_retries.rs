//! The PostgreSQL backend's two retry paths: a batch holding an event already stored (the
//! binary COPY fails on it and the batch is redone skipping known ids), and an instance key
//! cached by one store process while another deleted the instance; and a stored merge tree it
//! cannot read, which fails the batch instead of being overwritten.

mod common;

use chrono::DateTime;
use common::ScratchDb;
use ktwin_store::{
    AppendReport, Backend, HistoryQuery, InstanceKey, PostgresBackend, PostgresConfig, StoreError,
    TwinEvent,
};
use serde_json::{Value, json};

fn event(id: &str, micros: i64, data: Value) -> TwinEvent {
    TwinEvent {
        id: id.into(),
        time: DateTime::from_timestamp_micros(micros).unwrap(),
        source: "p1".into(),
        event_type: "ktwin.store.city-pole".into(),
        instance_id: "p1".into(),
        interface_id: "city-pole".into(),
        event_data: data.as_object().unwrap().clone().into(),
        traceparent: None,
        tracestate: None,
    }
}

fn pole() -> InstanceKey {
    InstanceKey::new("city-pole", "p1")
}

async fn connect(db: &ScratchDb) -> PostgresBackend {
    PostgresBackend::connect(&PostgresConfig {
        url: db.url.clone(),
    })
    .await
    .unwrap()
}

async fn history_ids(backend: &PostgresBackend) -> Vec<String> {
    let query = HistoryQuery {
        limit: 10,
        ..HistoryQuery::default()
    };
    let page = backend.history(&pole(), &query).await.unwrap();
    page.items.into_iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn a_batch_mixing_stored_and_new_events_stores_only_the_new_ones() {
    let db = ScratchDb::create("partial_redelivery").await;
    let backend = connect(&db).await;
    backend
        .append(vec![
            event("e1", 1, json!({"a": 1})),
            event("e2", 2, json!({"b": 2})),
        ])
        .await
        .unwrap();
    let report = backend
        .append(vec![
            event("e2", 2, json!({"b": 2})),
            event("e3", 3, json!({"c": 3})),
        ])
        .await
        .unwrap();
    assert_eq!(
        report,
        AppendReport {
            stored: 1,
            duplicates: 1,
            versions: Vec::new(),
        }
    );
    let latest = backend.latest(&pole()).await.unwrap().unwrap();
    assert_eq!(
        latest.state,
        *json!({"a": 1, "b": 2, "c": 3}).as_object().unwrap()
    );
    assert_eq!(latest.event_count, 3);
    assert_eq!(history_ids(&backend).await, ["e3", "e2", "e1"]);
}

#[tokio::test]
async fn an_instance_deleted_by_another_store_is_recreated_on_the_next_append() {
    let db = ScratchDb::create("stale_instance_key").await;
    let (writer, deleter) = (connect(&db).await, connect(&db).await);
    writer
        .append(vec![event("e1", 1, json!({"a": 1}))])
        .await
        .unwrap();
    // The writer now has the instance's key cached; the other store deletes the instance.
    assert_eq!(deleter.delete(&pole()).await.unwrap(), 1);
    let report = writer
        .append(vec![event("e2", 2, json!({"b": 2}))])
        .await
        .unwrap();
    assert_eq!(report.stored, 1);
    let latest = writer.latest(&pole()).await.unwrap().unwrap();
    assert_eq!(latest.state, *json!({"b": 2}).as_object().unwrap());
    assert_eq!(latest.event_count, 1);
    assert_eq!(history_ids(&writer).await, ["e2"]);
}

#[tokio::test]
async fn an_unreadable_merge_tree_fails_the_batch_and_keeps_the_stored_state() {
    let db = ScratchDb::create("unreadable_tree").await;
    let backend = connect(&db).await;
    backend
        .append(vec![event("e1", 1, json!({"a": 1, "b": 2}))])
        .await
        .unwrap();
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "UPDATE twin_latest SET merge_tree = 'not a merge tree'::bytea",
            &[],
        )
        .await
        .unwrap();

    let err = backend
        .append(vec![event("e2", 2, json!({"c": 3}))])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { context, .. } if context.contains("city-pole/p1")),
        "{err}"
    );
    let latest = backend.latest(&pole()).await.unwrap().unwrap();
    assert_eq!(latest.state, *json!({"a": 1, "b": 2}).as_object().unwrap());
    assert_eq!(latest.event_count, 1);
    assert_eq!(history_ids(&backend).await, ["e1"]);
}
