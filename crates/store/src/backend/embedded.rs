//! Embedded backend for `ktwin up`: one redb file. redb commits are copy-on-write with a
//! checksummed two-phase commit, so a process killed at any point reopens with exactly the
//! committed transactions; one write transaction per batch is the group commit.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::DateTime;
use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    AppendReport, Backend, EventPosition, HistoryQuery, InstanceRecord, Page, StoreError,
    group_by_instance,
};
use crate::event::{InstanceKey, LatestState, TwinEvent};

// Keys are byte strings compared with memcmp: redb checks every `&str` of a key as UTF-8 on
// each comparison, which took a third of the ingest time when keys were tuples of names.
// Instances are numbered, so an event's keys start with 8 bytes instead of two names.

/// Instance number by name (see [`name_key`]).
const INSTANCES: TableDefinition<&[u8], u64> = TableDefinition::new("twin_instance.v2");
/// History: instance number, time, id (see [`event_key`]) → event body, so an instance's
/// events are contiguous and time ordered.
const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("twin_event.v2");
/// Idempotency index: instance number, id (see [`id_key`]) → time µs.
const EVENT_IDS: TableDefinition<&[u8], i64> = TableDefinition::new("twin_event_id.v2");
/// Materialized latest state by name, read on the hot path.
const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("twin_latest.v2");
/// Merge record per instance number, read and written only by `append`.
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("twin_record.v2");

/// The first layout's history (tables keyed by name tuples), converted on open.
const LEGACY_EVENTS: TableDefinition<(&str, &str, i64, &str), &[u8]> =
    TableDefinition::new("twin_event");
const LEGACY_TABLES: [&str; 4] = ["twin_event", "twin_event_id", "twin_latest", "twin_record"];

/// Key of an instance by name: interface, NUL, instance. Byte order is (interface, instance)
/// order because names cannot contain control characters.
fn name_key(interface: &str, instance: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(interface.len() + 1 + instance.len());
    key.extend_from_slice(interface.as_bytes());
    key.push(0);
    key.extend_from_slice(instance.as_bytes());
    key
}

fn split_name_key(key: &[u8]) -> Result<(&str, &str), StoreError> {
    let text = std::str::from_utf8(key).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    text.split_once('\0')
        .ok_or_else(|| StoreError::Corrupt(format!("instance key {text:?} has no separator")))
}

/// Time µs as 8 bytes that sort like the signed number.
fn time_bytes(micros: i64) -> [u8; 8] {
    ((micros as u64) ^ (1 << 63)).to_be_bytes()
}

/// Key of an event in the history: instance number, time, id.
fn event_key(key: &mut Vec<u8>, instance: u64, micros: i64, id: &str) {
    key.clear();
    key.extend_from_slice(&instance.to_be_bytes());
    key.extend_from_slice(&time_bytes(micros));
    key.extend_from_slice(id.as_bytes());
}

fn split_event_key(key: &[u8]) -> Result<(u64, i64, &str), StoreError> {
    let corrupt = || StoreError::Corrupt("event key shorter than 16 bytes".into());
    let (instance, rest) = key.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (time, id) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let id = std::str::from_utf8(id).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    let micros = (u64::from_be_bytes(*time) ^ (1 << 63)) as i64;
    Ok((u64::from_be_bytes(*instance), micros, id))
}

/// Key of an event in the idempotency index: instance number, id.
fn id_key(key: &mut Vec<u8>, instance: u64, id: &str) {
    key.clear();
    key.extend_from_slice(&instance.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
}

/// The history keys of `instance` from `(micros, id)` on.
fn event_bound(instance: u64, micros: i64, id: &str) -> Vec<u8> {
    let mut key = Vec::new();
    event_key(&mut key, instance, micros, id);
    key
}

#[derive(Serialize, Deserialize)]
struct EventBody<'a> {
    #[serde(rename = "type")]
    event_type: Cow<'a, str>,
    data: Cow<'a, Map<String, Value>>,
}

impl From<redb::Error> for StoreError {
    fn from(err: redb::Error) -> Self {
        StoreError::Unavailable(format!("embedded database: {err}"))
    }
}

macro_rules! redb_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(err: $ty) -> Self {
                StoreError::from(redb::Error::from(err))
            }
        }
    )*};
}
redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn corrupt(err: serde_json::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

/// The embedded (redb) backend.
#[derive(Clone)]
pub struct EmbeddedBackend {
    db: Arc<Database>,
}

impl EmbeddedBackend {
    /// Opens (or creates) the database file at `path`; a file of the first layout is converted.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                StoreError::Unavailable(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(INSTANCES)?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENT_IDS)?;
        txn.open_table(LATEST)?;
        txn.open_table(RECORDS)?;
        convert_legacy(&txn)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    fn append_blocking(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        let total = events.len();
        let txn = self.db.begin_write()?;
        let stored = append_in(&txn, events)?;
        txn.commit()?;
        Ok(AppendReport {
            stored,
            duplicates: total - stored,
        })
    }

    fn history_blocking(
        &self,
        key: &InstanceKey,
        query: &HistoryQuery,
    ) -> Result<Page<TwinEvent>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(instance) = txn
            .open_table(INSTANCES)?
            .get(name_key(&key.interface, &key.instance).as_slice())?
            .map(|n| n.value())
        else {
            return Ok(Page::from_overfetch(Vec::new(), query.limit));
        };
        let lower = event_bound(
            instance,
            query.since.map_or(i64::MIN, |t| t.timestamp_micros()),
            "",
        );
        let until_bound = query
            .until
            .map_or(i64::MAX, |t| t.timestamp_micros().saturating_add(1));
        let upper = match &query.before {
            Some(before) if before.micros < until_bound => {
                event_bound(instance, before.micros, &before.id)
            }
            _ => event_bound(instance, until_bound, ""),
        };
        let table = txn.open_table(EVENTS)?;
        let mut items = Vec::new();
        for entry in table
            .range::<&[u8]>((
                Bound::Included(lower.as_slice()),
                Bound::Excluded(upper.as_slice()),
            ))?
            .rev()
        {
            let (k, v) = entry?;
            items.push(event_from_entry(key, k.value(), v.value())?);
            if items.len() > query.limit {
                break;
            }
        }
        Ok(Page::from_overfetch(items, query.limit))
    }

    fn events_blocking(
        &self,
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Page<TwinEvent>, StoreError> {
        let txn = self.db.begin_read()?;
        let instances = txn.open_table(INSTANCES)?;
        let events = txn.open_table(EVENTS)?;
        let start = after.map(|p| name_key(&p.interface, &p.instance));
        let lower = start.as_deref().map_or(Bound::Unbounded, Bound::Included);
        let mut items = Vec::new();
        for entry in instances.range::<&[u8]>((lower, Bound::Unbounded))? {
            let (name, instance) = entry?;
            let (interface, instance_id) = split_name_key(name.value())?;
            let key = InstanceKey::new(interface, instance_id);
            let instance = instance.value();
            let first = match after {
                Some(p) if start.as_deref() == Some(name.value()) => {
                    Bound::Excluded(event_bound(instance, p.version.micros, &p.version.id))
                }
                _ => Bound::Included(event_bound(instance, i64::MIN, "")),
            };
            let end = event_bound(instance.saturating_add(1), i64::MIN, "");
            let range = (
                first.as_ref().map(Vec::as_slice),
                Bound::Excluded(end.as_slice()),
            );
            for event in events.range::<&[u8]>(range)? {
                let (k, v) = event?;
                items.push(event_from_entry(&key, k.value(), v.value())?);
                if items.len() > limit {
                    return Ok(Page::from_overfetch(items, limit));
                }
            }
        }
        Ok(Page::from_overfetch(items, limit))
    }

    fn twins_blocking(
        &self,
        interface: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<LatestState>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LATEST)?;
        let start = name_key(interface, after.unwrap_or(""));
        let lower = match after {
            Some(_) => Bound::Excluded(start.as_slice()),
            None => Bound::Included(start.as_slice()),
        };
        // Every key of the interface starts with its name and NUL; 1 is the next byte.
        let mut end = interface.as_bytes().to_vec();
        end.push(1);
        let mut items = Vec::new();
        for entry in table.range::<&[u8]>((lower, Bound::Excluded(end.as_slice())))? {
            let (_, v) = entry?;
            items.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
            if items.len() > limit {
                break;
            }
        }
        Ok(Page::from_overfetch(items, limit))
    }

    fn delete_blocking(&self, key: &InstanceKey) -> Result<u64, StoreError> {
        let name = name_key(&key.interface, &key.instance);
        let txn = self.db.begin_write()?;
        let deleted;
        {
            let Some(instance) = txn
                .open_table(INSTANCES)?
                .remove(name.as_slice())?
                .map(|n| n.value())
            else {
                return Ok(0);
            };
            let mut history = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(EVENT_IDS)?;
            let lower = event_bound(instance, i64::MIN, "");
            let upper = event_bound(instance.saturating_add(1), i64::MIN, "");
            let doomed: Vec<Vec<u8>> = history
                .range::<&[u8]>(lower.as_slice()..upper.as_slice())?
                .map(|entry| entry.map(|(k, _)| k.value().to_vec()))
                .collect::<Result<_, _>>()?;
            let mut id = Vec::new();
            for event in &doomed {
                history.remove(event.as_slice())?;
                id_key(&mut id, instance, split_event_key(event)?.2);
                ids.remove(id.as_slice())?;
            }
            deleted = doomed.len() as u64;
            txn.open_table(LATEST)?.remove(name.as_slice())?;
            txn.open_table(RECORDS)?.remove(instance)?;
        }
        txn.commit()?;
        Ok(deleted)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Self) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&this))
            .await
            .map_err(|err| StoreError::Unavailable(format!("embedded store task failed: {err}")))?
    }
}

/// Stores `events` in `txn` (skipping known ones) and updates their instances' records and
/// latest states; returns how many were new.
fn append_in(txn: &WriteTransaction, events: Vec<TwinEvent>) -> Result<usize, StoreError> {
    let (groups, _) = group_by_instance(events);
    let mut instances = txn.open_table(INSTANCES)?;
    let mut history = txn.open_table(EVENTS)?;
    let mut ids = txn.open_table(EVENT_IDS)?;
    let mut latest = txn.open_table(LATEST)?;
    let mut records = txn.open_table(RECORDS)?;
    let mut next_instance = records.last()?.map_or(0, |(k, _)| k.value() + 1);
    let (mut event_buf, mut id_buf) = (Vec::new(), Vec::new());
    let mut stored = 0;
    for (key, group) in &groups {
        let name = name_key(&key.interface, &key.instance);
        let known = instances.get(name.as_slice())?.map(|n| n.value());
        let instance = match known {
            Some(instance) => instance,
            None => {
                instances.insert(name.as_slice(), next_instance)?;
                next_instance += 1;
                next_instance - 1
            }
        };
        let mut fresh = Vec::with_capacity(group.len());
        for event in group {
            let micros = event.time.timestamp_micros();
            id_key(&mut id_buf, instance, &event.id);
            // One lookup instead of two: insert, and put back the rare id already there.
            let earlier = ids.insert(id_buf.as_slice(), micros)?.map(|t| t.value());
            if let Some(earlier) = earlier {
                if earlier != micros {
                    ids.insert(id_buf.as_slice(), earlier)?;
                }
                continue;
            }
            event_key(&mut event_buf, instance, micros, &event.id);
            history.insert(event_buf.as_slice(), event_body(event)?.as_slice())?;
            fresh.push(event);
        }
        if fresh.is_empty() {
            continue;
        }
        stored += fresh.len();
        let mut record: InstanceRecord = match records.get(instance)? {
            Some(bytes) => serde_json::from_slice(bytes.value()).map_err(corrupt)?,
            None => InstanceRecord::default(),
        };
        record.absorb(fresh);
        let record_bytes = serde_json::to_vec(&record).map_err(corrupt)?;
        records.insert(instance, record_bytes.as_slice())?;
        let state_bytes = serde_json::to_vec(&record.latest_state(key)).map_err(corrupt)?;
        latest.insert(name.as_slice(), state_bytes.as_slice())?;
    }
    Ok(stored)
}

fn event_body(event: &TwinEvent) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&EventBody {
        event_type: Cow::Borrowed(&event.event_type),
        data: Cow::Borrowed(&event.event_data),
    })
    .map_err(corrupt)
}

/// Events per second of bare redb inserts of `events`' history and idempotency entries (the
/// keys and bodies `append` writes, and nothing else: no lookups, merging or latest states)
/// into a new file at `path`, one write transaction per `batch` events: the ceiling of this
/// backend's layout, measured by `ktwin bench store`.
pub fn bare_insert_rate(
    path: &Path,
    events: &[TwinEvent],
    batch: usize,
) -> Result<f64, StoreError> {
    let db = Database::create(path)?;
    let mut numbers: HashMap<(&str, &str), u64> = HashMap::new();
    let (mut event_buf, mut id_buf) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for chunk in events.chunks(batch.max(1)) {
        let txn = db.begin_write()?;
        {
            let mut history = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(EVENT_IDS)?;
            for event in chunk {
                let next = numbers.len() as u64;
                let instance = *numbers
                    .entry((&event.interface_id, &event.instance_id))
                    .or_insert(next);
                let micros = event.time.timestamp_micros();
                id_key(&mut id_buf, instance, &event.id);
                ids.insert(id_buf.as_slice(), micros)?;
                event_key(&mut event_buf, instance, micros, &event.id);
                history.insert(event_buf.as_slice(), event_body(event)?.as_slice())?;
            }
        }
        txn.commit()?;
    }
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}

/// Moves the events of a file written with the first layout into the current tables (merging
/// them afresh) and drops the old tables.
fn convert_legacy(txn: &WriteTransaction) -> Result<(), StoreError> {
    let legacy: Vec<redb::UntypedTableHandle> = txn
        .list_tables()?
        .filter(|table| LEGACY_TABLES.contains(&table.name()))
        .collect();
    if legacy
        .iter()
        .any(|table| table.name() == LEGACY_EVENTS.name())
    {
        let events = txn
            .open_table(LEGACY_EVENTS)?
            .iter()?
            .map(|entry| {
                let (k, v) = entry?;
                let (interface, instance, micros, id) = k.value();
                event_from_body(
                    &InstanceKey::new(interface, instance),
                    micros,
                    id,
                    v.value(),
                )
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        tracing::info!(
            events = events.len(),
            "converting the embedded store to its new layout"
        );
        append_in(txn, events)?;
    }
    for table in legacy {
        txn.delete_table(table)?;
    }
    Ok(())
}

fn event_from_entry(
    key: &InstanceKey,
    event_key: &[u8],
    body: &[u8],
) -> Result<TwinEvent, StoreError> {
    let (_, micros, id) = split_event_key(event_key)?;
    event_from_body(key, micros, id, body)
}

fn event_from_body(
    key: &InstanceKey,
    micros: i64,
    id: &str,
    body: &[u8],
) -> Result<TwinEvent, StoreError> {
    let body: EventBody<'static> = serde_json::from_slice(body).map_err(corrupt)?;
    Ok(TwinEvent {
        id: id.to_owned(),
        time: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
        source: key.instance.clone(),
        event_type: body.event_type.into_owned(),
        instance_id: key.instance.clone(),
        interface_id: key.interface.clone(),
        event_data: body.data.into_owned(),
    })
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    /// redb has a single writer.
    fn concurrent_appends(&self) -> usize {
        1
    }

    async fn append(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        self.blocking(move |this| this.append_blocking(events))
            .await
    }

    async fn latest(&self, key: &InstanceKey) -> Result<Option<LatestState>, StoreError> {
        // A point read from the page cache: cheaper inline than a hop to the blocking pool.
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LATEST)?;
        let found = table.get(name_key(&key.interface, &key.instance).as_slice())?;
        found
            .map(|bytes| serde_json::from_slice(bytes.value()).map_err(corrupt))
            .transpose()
    }

    async fn history(
        &self,
        key: &InstanceKey,
        query: &HistoryQuery,
    ) -> Result<Page<TwinEvent>, StoreError> {
        let (key, query) = (key.clone(), query.clone());
        self.blocking(move |this| this.history_blocking(&key, &query))
            .await
    }

    async fn events(
        &self,
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Page<TwinEvent>, StoreError> {
        let after = after.cloned();
        self.blocking(move |this| this.events_blocking(after.as_ref(), limit))
            .await
    }

    async fn twins(
        &self,
        interface: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<LatestState>, StoreError> {
        let (interface, after) = (interface.to_owned(), after.map(str::to_owned));
        self.blocking(move |this| this.twins_blocking(&interface, after.as_deref(), limit))
            .await
    }

    async fn delete(&self, key: &InstanceKey) -> Result<u64, StoreError> {
        let key = key.clone();
        self.blocking(move |this| this.delete_blocking(&key)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.db.begin_read()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::HistoryQuery;
    use serde_json::json;

    #[test]
    fn event_keys_sort_by_instance_then_time_then_id() {
        let key = |instance, micros, id| event_bound(instance, micros, id);
        let ordered = [
            key(1, i64::MIN, ""),
            key(1, -5, "b"),
            key(1, 0, "a"),
            key(1, 0, "ab"),
            key(1, 7, "a"),
            key(1, i64::MAX, ""),
            key(2, i64::MIN, ""),
        ];
        assert!(ordered.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(split_event_key(&key(9, -5, "x")).unwrap(), (9, -5, "x"));
        assert!(name_key("a", "zz") < name_key("ab", "a"));
        assert_eq!(split_name_key(&name_key("i", "j")).unwrap(), ("i", "j"));
    }

    #[tokio::test]
    async fn a_file_of_the_first_layout_is_converted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut events = txn.open_table(LEGACY_EVENTS).unwrap();
                for (micros, id, data) in [
                    (2, "e2", json!({"a": 2})),
                    (1, "e1", json!({"a": 1, "b": 1})),
                ] {
                    let body = json!({"type": "ktwin.store.pole", "data": data}).to_string();
                    events
                        .insert(("pole", "p1", micros, id), body.as_bytes())
                        .unwrap();
                }
                let ids: TableDefinition<(&str, &str, &str), i64> =
                    TableDefinition::new("twin_event_id");
                txn.open_table(ids).unwrap();
            }
            txn.commit().unwrap();
        }
        let backend = EmbeddedBackend::open(&path).unwrap();
        let key = InstanceKey::new("pole", "p1");
        let latest = backend.latest(&key).await.unwrap().unwrap();
        assert_eq!(Value::Object(latest.state), json!({"a": 2, "b": 1}));
        assert_eq!((latest.id.as_str(), latest.event_count), ("e2", 2));
        let history = HistoryQuery {
            limit: 10,
            ..HistoryQuery::default()
        };
        let page = backend.history(&key, &history).await.unwrap();
        let ids: Vec<&str> = page.items.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e2", "e1"]);
        let txn = backend.db.begin_write().unwrap();
        let left: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .filter(|name| LEGACY_TABLES.contains(&name.as_str()))
            .collect();
        assert!(left.is_empty(), "legacy tables left: {left:?}");
    }
}
