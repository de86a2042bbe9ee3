//! Embedded backend for `ktwin up`: one redb file. redb commits are copy-on-write with a
//! checksummed two-phase commit, so a process killed at any point reopens with exactly the
//! committed transactions; one write transaction per batch is the group commit.

use std::borrow::Cow;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::DateTime;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    AppendReport, Backend, EventPosition, HistoryQuery, InstanceRecord, Page, StoreError,
    group_by_instance,
};
use crate::event::{InstanceKey, LatestState, TwinEvent};

/// History: (interface, instance, time µs, id) → event body, so an instance's events are
/// contiguous and time ordered.
const EVENTS: TableDefinition<(&str, &str, i64, &str), &[u8]> = TableDefinition::new("twin_event");
/// Idempotency index: (interface, instance, id) → time µs.
const EVENT_IDS: TableDefinition<(&str, &str, &str), i64> = TableDefinition::new("twin_event_id");
/// Materialized latest state, read on the hot path.
const LATEST: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("twin_latest");
/// Merge tree and newest version per instance, read and written only by `append`.
const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("twin_record");

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
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                StoreError::Unavailable(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENT_IDS)?;
        txn.open_table(LATEST)?;
        txn.open_table(RECORDS)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    fn append_blocking(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        let total = events.len();
        let (groups, _) = group_by_instance(events);
        let txn = self.db.begin_write()?;
        let mut stored = 0;
        {
            let mut history = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(EVENT_IDS)?;
            let mut latest = txn.open_table(LATEST)?;
            let mut records = txn.open_table(RECORDS)?;
            for (key, group) in &groups {
                let (iface, inst) = (key.interface.as_str(), key.instance.as_str());
                let mut fresh = Vec::with_capacity(group.len());
                for event in group {
                    if ids.get((iface, inst, event.id.as_str()))?.is_some() {
                        continue;
                    }
                    let micros = event.time.timestamp_micros();
                    ids.insert((iface, inst, event.id.as_str()), micros)?;
                    let body = serde_json::to_vec(&EventBody {
                        event_type: Cow::Borrowed(&event.event_type),
                        data: Cow::Borrowed(&event.event_data),
                    })
                    .map_err(corrupt)?;
                    history.insert((iface, inst, micros, event.id.as_str()), body.as_slice())?;
                    fresh.push(event);
                }
                if fresh.is_empty() {
                    continue;
                }
                stored += fresh.len();
                let mut record: InstanceRecord = match records.get((iface, inst))? {
                    Some(bytes) => serde_json::from_slice(bytes.value()).map_err(corrupt)?,
                    None => InstanceRecord::default(),
                };
                record.absorb(fresh);
                let record_bytes = serde_json::to_vec(&record).map_err(corrupt)?;
                records.insert((iface, inst), record_bytes.as_slice())?;
                let state_bytes = serde_json::to_vec(&record.latest_state(key)).map_err(corrupt)?;
                latest.insert((iface, inst), state_bytes.as_slice())?;
            }
        }
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
        let (iface, inst) = (key.interface.as_str(), key.instance.as_str());
        let lower = (
            iface,
            inst,
            query.since.map_or(i64::MIN, |t| t.timestamp_micros()),
            "",
        );
        let until_bound = query
            .until
            .map_or(i64::MAX, |t| t.timestamp_micros().saturating_add(1));
        let upper = match &query.before {
            Some(before) if before.micros < until_bound => {
                (iface, inst, before.micros, before.id.as_str())
            }
            _ => (iface, inst, until_bound, ""),
        };
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let mut items = Vec::new();
        for entry in table
            .range((Bound::Included(lower), Bound::Excluded(upper)))?
            .rev()
        {
            let (k, v) = entry?;
            items.push(event_from_entry(k.value(), v.value())?);
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
        let table = txn.open_table(EVENTS)?;
        let lower = match after {
            Some(p) => Bound::Excluded((
                p.interface.as_str(),
                p.instance.as_str(),
                p.version.micros,
                p.version.id.as_str(),
            )),
            None => Bound::Unbounded,
        };
        let mut items = Vec::new();
        for entry in table.range((lower, Bound::Unbounded))? {
            let (k, v) = entry?;
            items.push(event_from_entry(k.value(), v.value())?);
            if items.len() > limit {
                break;
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
        let lower = match after {
            Some(instance) => Bound::Excluded((interface, instance)),
            None => Bound::Included((interface, "")),
        };
        let mut items = Vec::new();
        for entry in table.range((lower, Bound::Unbounded))? {
            let (k, v) = entry?;
            if k.value().0 != interface {
                break;
            }
            items.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
            if items.len() > limit {
                break;
            }
        }
        Ok(Page::from_overfetch(items, limit))
    }

    fn delete_blocking(&self, key: &InstanceKey) -> Result<u64, StoreError> {
        let (iface, inst) = (key.interface.as_str(), key.instance.as_str());
        let txn = self.db.begin_write()?;
        let deleted;
        {
            let mut history = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(EVENT_IDS)?;
            let doomed: Vec<(i64, String)> = history
                .range((iface, inst, i64::MIN, "")..(iface, inst, i64::MAX, ""))?
                .map(|entry| entry.map(|(k, _)| (k.value().2, k.value().3.to_owned())))
                .collect::<Result<_, _>>()?;
            for (micros, id) in &doomed {
                history.remove((iface, inst, *micros, id.as_str()))?;
                ids.remove((iface, inst, id.as_str()))?;
            }
            deleted = doomed.len() as u64;
            txn.open_table(LATEST)?.remove((iface, inst))?;
            txn.open_table(RECORDS)?.remove((iface, inst))?;
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

fn event_from_entry(key: (&str, &str, i64, &str), body: &[u8]) -> Result<TwinEvent, StoreError> {
    let (interface, instance, micros, id) = key;
    let body: EventBody<'static> = serde_json::from_slice(body).map_err(corrupt)?;
    Ok(TwinEvent {
        id: id.to_owned(),
        time: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
        source: instance.to_owned(),
        event_type: body.event_type.into_owned(),
        instance_id: instance.to_owned(),
        interface_id: interface.to_owned(),
        event_data: body.data.into_owned(),
    })
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn append(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        self.blocking(move |this| this.append_blocking(events))
            .await
    }

    async fn latest(&self, key: &InstanceKey) -> Result<Option<LatestState>, StoreError> {
        // A point read from the page cache: cheaper inline than a hop to the blocking pool.
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LATEST)?;
        let found = table.get((key.interface.as_str(), key.instance.as_str()))?;
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
