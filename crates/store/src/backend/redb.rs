//! The redb embedded backend, for a store file ending in `.redb` (the embedded engine before
//! fjall; see [`super::fjall`]). redb commits are copy-on-write with a checksummed two-phase
//! commit, so a process killed at any point reopens with exactly the committed transactions;
//! one write transaction per batch is the group commit. Layout and append path:
//! `super::embedded`.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::embedded::{
    AppendTarget, EmbeddedStore, append_if_to, append_to, borrowed, corrupt, event_from_body,
    event_from_entry, history_range, id_key, instance_range, latest_from_entry, latest_from_record,
    list_events, name_key, prepare, split_event_key, trace_events, trace_range, twins_range,
};
use super::{AppendReport, EventPosition, HistoryQuery, InstanceRecord, Page, StoreError};
use crate::conditional::{ConditionalAppend, Precondition};
use crate::event::{InstanceKey, LatestState, TwinEvent};
use ktwin_events::trace::TraceId;

/// Instance number by name (see [`name_key`]).
const INSTANCES: TableDefinition<&[u8], u64> = TableDefinition::new("twin_instance.v2");
/// History by [`super::embedded::event_key`] → event body.
const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("twin_event.v2");
/// Idempotency index: [`id_key`] → time µs.
const EVENT_IDS: TableDefinition<&[u8], i64> = TableDefinition::new("twin_event_id.v2");
/// Merge record per instance number; latest states are derived from it.
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("twin_record.v2");
/// Trace index: [`super::embedded::trace_key`] → instance name.
const TRACES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("twin_trace.v2");
/// Materialized latest states by name, which earlier builds wrote beside the records: dropped
/// on open.
const OLD_LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("twin_latest.v2");

/// The first layout's history (tables keyed by name tuples), converted on open.
const LEGACY_EVENTS: TableDefinition<(&str, &str, i64, &str), &[u8]> =
    TableDefinition::new("twin_event");
const LEGACY_TABLES: [&str; 4] = ["twin_event", "twin_event_id", "twin_latest", "twin_record"];

impl From<redb::Error> for StoreError {
    fn from(err: redb::Error) -> Self {
        use redb::Error;
        match err {
            // redb refuses every operation after a failed write until the file is reopened.
            Error::PreviousIo => StoreError::failed(
                "the redb store refuses writes since an earlier write failed; restart to recover",
                err.to_string(),
            ),
            Error::DatabaseAlreadyOpen => {
                StoreError::failed("the redb store is open in another process", err.to_string())
            }
            Error::Corrupted(_) | Error::UpgradeRequired(_) => {
                StoreError::corrupt("redb store", err.to_string())
            }
            _ => StoreError::unavailable("redb store", err.to_string()),
        }
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

/// The embedded backend on one redb file.
#[derive(Clone)]
pub struct RedbBackend {
    db: Arc<Database>,
}

impl RedbBackend {
    /// Opens (or creates) the database file at `path`; a file of the first layout is converted.
    #[tracing::instrument(fields(path = %path.display()), skip_all)]
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                StoreError::unavailable(format!("creating {}", parent.display()), err)
            })?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(INSTANCES)?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENT_IDS)?;
        txn.open_table(RECORDS)?;
        txn.open_table(TRACES)?;
        txn.delete_table(OLD_LATEST)?;
        convert_legacy(&txn)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }
}

impl EmbeddedStore for RedbBackend {
    const NAME: &'static str = "redb";

    fn append_blocking(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        let total = events.len();
        let groups = prepare(events)?;
        let txn = self.db.begin_write()?;
        let (stored, versions) = append_to(&mut RedbAppend::open(&txn)?, &groups)?;
        txn.commit()?;
        drop(groups); // after the writer's turn: freeing a batch takes a while
        Ok(AppendReport {
            stored,
            duplicates: total - stored,
            versions,
        })
    }

    fn append_if_blocking(
        &self,
        event: TwinEvent,
        precondition: &Precondition,
    ) -> Result<ConditionalAppend, StoreError> {
        let groups = prepare(vec![event])?;
        let txn = self.db.begin_write()?;
        let done = append_if_to(&mut RedbAppend::open(&txn)?, &groups, precondition)?;
        if done == ConditionalAppend::Stored {
            txn.commit()?;
        }
        Ok(done)
    }

    fn latest_blocking(&self, key: &InstanceKey) -> Result<Option<LatestState>, StoreError> {
        let txn = self.db.begin_read()?;
        let instances = txn.open_table(INSTANCES)?;
        let Some(instance) = instances.get(name_key(&key.interface, &key.instance).as_slice())?
        else {
            return Ok(None);
        };
        let record = txn.open_table(RECORDS)?.get(instance.value())?;
        record
            .map(|bytes| latest_from_record(key, bytes.value()))
            .transpose()
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
        let (lower, upper) = history_range(instance, query);
        let items = txn
            .open_table(EVENTS)?
            .range::<&[u8]>(lower.as_slice()..upper.as_slice())?
            .rev()
            .take(query.limit.saturating_add(1))
            .map(|entry| {
                let (k, v) = entry?;
                event_from_entry(key, k.value(), v.value())
            })
            .collect::<Result<_, _>>()?;
        Ok(Page::from_overfetch(items, query.limit))
    }

    fn events_blocking(
        &self,
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Page<TwinEvent>, StoreError> {
        let txn = self.db.begin_read()?;
        let (instances, events) = (txn.open_table(INSTANCES)?, txn.open_table(EVENTS)?);
        list_events(
            after,
            limit,
            |lower| {
                let instances = instances.range::<&[u8]>((lower, Bound::Unbounded))?;
                Ok(instances.map(|entry| {
                    let (name, instance) = entry?;
                    Ok((name.value().to_vec(), instance.value()))
                }))
            },
            |range| {
                let events = events.range::<&[u8]>(range)?;
                Ok(events.map(|entry| {
                    let (k, v) = entry?;
                    Ok((k.value().to_vec(), v.value().to_vec()))
                }))
            },
        )
    }

    fn twins_blocking(
        &self,
        interface: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<LatestState>, StoreError> {
        let txn = self.db.begin_read()?;
        let (lower, end) = twins_range(interface, after);
        let records = txn.open_table(RECORDS)?;
        let items = txn
            .open_table(INSTANCES)?
            .range::<&[u8]>(borrowed(&lower, &end))?
            .take(limit.saturating_add(1))
            .map(|entry| {
                let (name, instance) = entry?;
                let instance = instance.value();
                let record = records.get(instance)?;
                latest_from_entry(name.value(), instance, record.as_ref().map(|r| r.value()))
            })
            .collect::<Result<_, _>>()?;
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
            let (lower, upper) = instance_range(instance);
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
            txn.open_table(RECORDS)?.remove(instance)?;
        }
        txn.commit()?;
        Ok(deleted)
    }

    fn trace_blocking(&self, trace: TraceId, limit: usize) -> Result<Page<TwinEvent>, StoreError> {
        let txn = self.db.begin_read()?;
        let (traces, history) = (txn.open_table(TRACES)?, txn.open_table(EVENTS)?);
        let (first, end) = trace_range(trace);
        let range = (
            Bound::Included(first.as_slice()),
            end.as_ref().map(Vec::as_slice),
        );
        let entries = traces.range::<&[u8]>(range)?.map(|entry| {
            let (key, name) = entry?;
            Ok((key.value().to_vec(), name.value().to_vec()))
        });
        trace_events(entries, limit, |key| {
            Ok(history.get(key)?.map(|body| body.value().to_vec()))
        })
    }

    fn check_blocking(&self) -> Result<(), StoreError> {
        self.db.begin_read()?;
        Ok(())
    }
}

/// The tables of one redb write transaction.
struct RedbAppend<'txn> {
    instances: Table<'txn, &'static [u8], u64>,
    history: Table<'txn, &'static [u8], &'static [u8]>,
    ids: Table<'txn, &'static [u8], i64>,
    records: Table<'txn, u64, &'static [u8]>,
    traces: Table<'txn, &'static [u8], &'static [u8]>,
    next_instance: u64,
}

impl<'txn> RedbAppend<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        let records = txn.open_table(RECORDS)?;
        let next_instance = records.last()?.map_or(0, |(k, _)| k.value() + 1);
        Ok(Self {
            instances: txn.open_table(INSTANCES)?,
            history: txn.open_table(EVENTS)?,
            ids: txn.open_table(EVENT_IDS)?,
            records,
            traces: txn.open_table(TRACES)?,
            next_instance,
        })
    }
}

impl AppendTarget for RedbAppend<'_> {
    fn instance(&mut self, name: &[u8]) -> Result<Option<u64>, StoreError> {
        Ok(self.instances.get(name)?.map(|n| n.value()))
    }

    fn add_instance(&mut self, name: &[u8]) -> Result<u64, StoreError> {
        let instance = self.next_instance;
        self.instances.insert(name, instance)?;
        self.next_instance += 1;
        Ok(instance)
    }

    fn claim_id(&mut self, id_key: &[u8], micros: i64, _: bool) -> Result<bool, StoreError> {
        // One lookup instead of two: insert, and put back the rare id already there.
        let earlier = self.ids.insert(id_key, micros)?.map(|t| t.value());
        match earlier {
            Some(earlier) if earlier != micros => {
                self.ids.insert(id_key, earlier)?;
                Ok(false)
            }
            Some(_) => Ok(false),
            None => Ok(true),
        }
    }

    fn claimed_time(&mut self, id_key: &[u8]) -> Result<Option<i64>, StoreError> {
        Ok(self.ids.get(id_key)?.map(|t| t.value()))
    }

    fn stored_event(&mut self, event_key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .history
            .get(event_key)?
            .map(|body| body.value().to_vec()))
    }

    fn put_event(&mut self, event_key: &[u8], body: &[u8]) -> Result<(), StoreError> {
        self.history.insert(event_key, body)?;
        Ok(())
    }

    fn put_trace(&mut self, trace_key: &[u8], name: &[u8]) -> Result<(), StoreError> {
        self.traces.insert(trace_key, name)?;
        Ok(())
    }

    fn record(&mut self, instance: u64) -> Result<Option<InstanceRecord>, StoreError> {
        self.records
            .get(instance)?
            .map(|bytes| InstanceRecord::decode(bytes.value()).map_err(corrupt))
            .transpose()
    }

    fn put_record(
        &mut self,
        instance: u64,
        _record: InstanceRecord,
        record_json: &[u8],
    ) -> Result<(), StoreError> {
        self.records.insert(instance, record_json)?;
        Ok(())
    }
}

/// Events per second of bare redb inserts of `events`' history and idempotency entries (the
/// keys and bodies `append` writes, and nothing else: no lookups, merging or latest states)
/// into a new file at `path`, one write transaction per `batch` events: the ceiling of this
/// backend's layout, measured by `ktwin bench store`.
#[cfg(feature = "bench")]
pub(crate) fn bare_insert_rate(
    path: &Path,
    events: &[TwinEvent],
    batch: usize,
) -> Result<f64, StoreError> {
    use super::embedded::{event_body, event_key};
    use std::collections::HashMap;
    use std::time::Instant;
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
        append_to(&mut RedbAppend::open(txn)?, &prepare(events)?)?;
    }
    for table in legacy {
        txn.delete_table(table)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::backend::embedded::pole_event;
    use serde_json::{Value, json};

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
        let backend = RedbBackend::open(&path).unwrap();
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

    #[tokio::test]
    async fn the_old_latest_table_is_dropped_and_states_come_from_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let key = InstanceKey::new("pole", "p1");
        {
            let backend = RedbBackend::open(&path).unwrap();
            let batch = vec![pole_event("p1", "e1", 1, json!({"a": 1}))];
            backend.append(batch).await.unwrap();
            let txn = backend.db.begin_write().unwrap();
            txn.open_table(OLD_LATEST)
                .unwrap()
                .insert(
                    name_key("pole", "p1").as_slice(),
                    b"{\"stale\": true}".as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
        }
        let backend = RedbBackend::open(&path).unwrap();
        let txn = backend.db.begin_read().unwrap();
        let tables: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        assert!(!tables.iter().any(|t| t == "twin_latest.v2"), "{tables:?}");
        let latest = backend.latest(&key).await.unwrap().unwrap();
        assert_eq!(Value::Object(latest.state), json!({"a": 1}));
    }
}
