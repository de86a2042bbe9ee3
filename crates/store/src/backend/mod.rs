//! Storage backends behind one trait: PostgreSQL for clusters, an embedded fjall database (or a
//! redb file, the embedded engine before it) for `ktwin up`. All keep the history keyed by
//! (interface, instance, id) and the latest state of each instance, updated in the same
//! transaction as the history.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ktwin_events::trace::TraceId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::changed::{NewVersion, version_id};
use crate::conditional::{ConditionalAppend, Precondition, StateVersion};
use crate::dead_letters::DeadLetterStore;
use crate::event::{InstanceKey, LatestState, TwinEvent};
use crate::merge::{MergeTree, Version};

#[cfg(any(feature = "fjall", feature = "postgres"))]
mod bounded_cache;
#[cfg(any(feature = "fjall", feature = "redb"))]
mod embedded;
#[cfg(feature = "fjall")]
pub mod fjall;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redb")]
pub mod redb;

#[cfg(feature = "fjall")]
pub use self::fjall::FjallBackend;
#[cfg(feature = "redb")]
pub use self::redb::RedbBackend;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresBackend, PostgresConfig};

/// The error a [`StoreError`] was caused by. Shared, so that every producer whose events were
/// in a failed batch gets the same error.
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What a backend can fail with. [`is_transient`](Self::is_transient) says whether retrying
/// can help: ingestion retries transient failures until they pass, and stops at a permanent one
/// rather than discarding what it was given.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot be reached or failed in a way that passes (connection lost,
    /// deadlock, server restarting, the store shutting down): retry later.
    #[error("database unavailable: {context}")]
    Unavailable {
        /// What was being done.
        context: String,
        /// The database's own error, when there is one.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The database failed in a way that retrying cannot fix: an embedded engine whose write
    /// failed refuses every later write until it is reopened, a schema the store does not know.
    #[error("database failed permanently: {context}")]
    Failed {
        /// What was being done.
        context: String,
        /// The database's own error.
        #[source]
        source: Option<ErrorSource>,
    },
    /// Stored data could not be decoded (corruption or a newer schema).
    #[error("corrupt stored data: {context}")]
    Corrupt {
        /// What could not be decoded.
        context: String,
        /// The decoder's error, when there is one.
        #[source]
        source: Option<ErrorSource>,
    },
    /// A bounded store is full and its policy is to refuse rather than evict (dead letters
    /// under [`crate::OverflowPolicy::RefuseNew`]).
    #[error("full: {context}")]
    Full {
        /// What is full and how to make room.
        context: String,
    },
    /// A conditional append found the instance's latest state other than its precondition
    /// required (another writer got there first): nothing was written; read the state again.
    #[error(
        "precondition failed for instance {instance:?} of interface {interface:?}: expected {expected}, the latest state is at {}",
        current.as_ref().map_or_else(|| "no stored state".to_owned(), |v| format!("version {v}"))
    )]
    PreconditionFailed {
        /// The instance's interface.
        interface: String,
        /// The instance.
        instance: String,
        /// What the append required.
        expected: Precondition,
        /// The version the latest state is at (`None`: no stored state).
        current: Option<StateVersion>,
    },
    /// The backend is not built into this binary (its cargo feature is off).
    #[error("the {backend} backend is not built into this binary (cargo feature {backend:?})")]
    Unsupported {
        /// The backend's name, which is also its feature's.
        backend: &'static str,
    },
}

impl StoreError {
    /// A transient failure of `context`, caused by `source`.
    pub fn unavailable(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Unavailable {
            context: context.into(),
            source: Some(Arc::from(source.into())),
        }
    }

    /// A permanent failure of `context`, caused by `source`.
    pub fn failed(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Failed {
            context: context.into(),
            source: Some(Arc::from(source.into())),
        }
    }

    /// Undecodable data described by `context`, found by `source`.
    pub fn corrupt(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Corrupt {
            context: context.into(),
            source: Some(Arc::from(source.into())),
        }
    }

    /// Undecodable data, described by `context` alone.
    pub fn corrupt_data(context: impl Into<String>) -> Self {
        StoreError::Corrupt {
            context: context.into(),
            source: None,
        }
    }

    /// Whether retrying the same operation later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// The message with every cause, `: `-separated (for logs and problem details).
    pub fn chain(&self) -> String {
        ktwin_service::error_chain(self)
    }
}

/// The outcome of appending a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendReport {
    /// Events stored for the first time, new versions included.
    pub stored: usize,
    /// Events already present (same instance, id and data), left untouched.
    pub duplicates: usize,
    /// Events whose id was taken by an event with other data, stored as new versions under a
    /// derived id (see [`crate::version_id`]); each is counted in `stored` too.
    pub versions: Vec<NewVersion>,
}

impl AppendReport {
    /// Adds another report's counts to this one.
    pub fn add(&mut self, other: AppendReport) {
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.versions.extend(other.versions);
    }
}

/// A window of one instance's history, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events strictly older than this version (the previous page's last event).
    pub before: Option<Version>,
    /// At most this many events.
    pub limit: usize,
}

/// Position in the list of all events, ordered by interface, instance, time, id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventPosition {
    /// Interface of the last listed event.
    pub interface: String,
    /// Instance of the last listed event.
    pub instance: String,
    /// Its version.
    pub version: Version,
}

impl EventPosition {
    /// The position of `event`.
    pub fn of(event: &TwinEvent) -> Self {
        Self {
            interface: event.interface_id.clone(),
            instance: event.instance_id.clone(),
            version: event.version(),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in listing order.
    pub items: Vec<T>,
    /// Whether more items follow the last one.
    pub more: bool,
}

impl<T> Page<T> {
    /// Cuts a fetch of `limit + 1` rows down to a page.
    pub fn from_overfetch(mut items: Vec<T>, limit: usize) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        Self { items, more }
    }
}

/// Storage of twin events and latest states.
///
/// Contract: `append` returns only once the batch is durable; events already stored (same
/// instance, id and data) are skipped; an event whose id is stored with other data is stored
/// under its [`version_id`] (skipped if that is stored already); the latest state of each touched instance is updated
/// atomically with the history.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and benchmarks.
    fn name(&self) -> &'static str;
    /// How many appends make progress at once. The ingest task commits no more batches
    /// concurrently: an extra one would only wait for the backend's writer instead of joining
    /// the next, larger batch.
    fn concurrent_appends(&self) -> usize;
    /// Stores a batch durably (group commit).
    async fn append(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError>;
    /// Stores one event only if its instance's latest state meets `precondition`, checked and
    /// appended atomically with respect to every other writer of the instance; an event whose
    /// id is stored with the same data is a [`ConditionalAppend::Duplicate`] whatever the
    /// precondition. A failed precondition is [`StoreError::PreconditionFailed`], nothing
    /// written. Durable on return, like [`append`](Self::append).
    async fn append_if(
        &self,
        event: TwinEvent,
        precondition: &Precondition,
    ) -> Result<ConditionalAppend, StoreError>;
    /// The latest state of one instance.
    async fn latest(&self, key: &InstanceKey) -> Result<Option<LatestState>, StoreError>;
    /// One instance's history, newest first.
    async fn history(
        &self,
        key: &InstanceKey,
        query: &HistoryQuery,
    ) -> Result<Page<TwinEvent>, StoreError>;
    /// All events, ordered by interface, instance, time, id, after `after`.
    async fn events(
        &self,
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Page<TwinEvent>, StoreError>;
    /// Latest states of the instances of `interface`, ordered by instance, after `after`.
    async fn twins(
        &self,
        interface: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<LatestState>, StoreError>;
    /// The events whose `traceparent` names `trace`, in time order, at most `limit` (the page
    /// says whether more were left out).
    async fn trace(&self, trace: TraceId, limit: usize) -> Result<Page<TwinEvent>, StoreError>;
    /// Deletes one instance's history and latest state; returns how many events were deleted.
    async fn delete(&self, key: &InstanceKey) -> Result<u64, StoreError>;
    /// Whether the database answers.
    async fn check(&self) -> Result<(), StoreError>;
    /// Where this backend keeps dead letters, if it can (not the legacy redb engine).
    fn dead_letters(&self) -> Option<&dyn DeadLetterStore> {
        None
    }
}

/// What a backend keeps per instance besides the history: the merge tree and the newest event.
///
/// Embedded backends store it with [`InstanceRecord::encode`]; the derived object form is how
/// earlier builds stored it, still read by [`InstanceRecord::decode`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstanceRecord {
    #[serde(rename = "tree")]
    pub tree: MergeTree,
    #[serde(rename = "last")]
    pub last: Option<Version>,
    #[serde(rename = "type")]
    pub last_type: String,
    #[serde(rename = "count")]
    pub count: i64,
}

impl InstanceRecord {
    /// Merges newly stored events (never seen before) into the record.
    pub fn absorb<'a>(&mut self, events: impl IntoIterator<Item = &'a TwinEvent>) {
        for event in events {
            let version = event.version();
            self.tree.apply_members(&version, &event.event_data);
            if self.last.as_ref().is_none_or(|last| &version > last) {
                self.last = Some(version);
                self.last_type.clone_from(&event.event_type);
            }
            self.count += 1;
        }
    }

    /// The stored form: `[tree, last, type, count, versions]`, a JSON array whose tree and
    /// `last` refer to versions by position in the trailing table (see
    /// [`crate::merge::compact`]).
    #[cfg(any(test, feature = "fjall", feature = "redb"))]
    pub fn encode(&self) -> Vec<u8> {
        use crate::merge::compact::{Interned, VersionTable};
        use std::cell::RefCell;
        let table = RefCell::new(VersionTable::default());
        let last = self.last.as_ref().map(|v| table.borrow_mut().position(v));
        // Tuple elements are written in order, and a `RefCell` is read when it is written: the
        // table comes last, once the tree has filled it.
        let stored = (
            Interned::new(&self.tree, &table),
            last,
            &self.last_type,
            self.count,
            &table,
        );
        serde_json::to_vec(&stored).expect("a merge record has only string keys")
    }

    /// Reads a record [`encode`](Self::encode)d, or stored as a JSON object by earlier builds.
    #[cfg(any(test, feature = "fjall", feature = "redb"))]
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        use crate::merge::compact::{IndexedTree, Resolver, StoredVersions, invalid};
        if bytes.first() != Some(&b'[') {
            return serde_json::from_slice(bytes);
        }
        let (tree, last, last_type, count, versions): (
            IndexedTree,
            Option<u32>,
            String,
            i64,
            StoredVersions,
        ) = serde_json::from_slice(bytes)?;
        let versions = Resolver::new(versions);
        Ok(Self {
            tree: versions.tree(tree).map_err(invalid)?,
            last: last
                .map(|p| versions.version(p))
                .transpose()
                .map_err(invalid)?,
            last_type,
            count,
        })
    }

    /// The version of the latest state this record describes (`None`: no event merged).
    pub fn state_version(&self) -> Option<StateVersion> {
        let last = self.last.as_ref().filter(|_| self.count > 0)?;
        Some(StateVersion::of(self.count, last.micros, &last.id))
    }

    /// The latest state this record describes.
    pub fn latest_state(&self, key: &InstanceKey) -> LatestState {
        let last = self.last.clone().unwrap_or(Version {
            micros: 0,
            id: String::new(),
        });
        LatestState {
            interface_id: key.interface.clone(),
            instance_id: key.instance.clone(),
            time: last.time(),
            id: last.id,
            event_type: self.last_type.clone(),
            event_count: self.count,
            state: self.tree.materialize(),
        }
    }
}

/// A batch's events by instance, each instance's in id order.
pub(crate) type Groups = BTreeMap<InstanceKey, Vec<TwinEvent>>;

/// Groups a batch by instance, each group in id order, one event per id: the first to arrive.
/// The others with its id are dropped when they have its data or an earlier one's
/// (redeliveries), else returned in the second map: each is a change of that id, which the
/// backend stores as a new version unless the stored event of the id has its data.
pub(crate) fn group_by_instance(mut events: Vec<TwinEvent>) -> (Groups, Groups) {
    // A stable sort brings each instance's events and repeated ids together, the first arrival
    // of an id first, without hashing or cloning anything per event.
    events.sort_by(|a, b| {
        (&a.interface_id, &a.instance_id, &a.id).cmp(&(&b.interface_id, &b.instance_id, &b.id))
    });
    let mut groups = Groups::new();
    let mut later = Groups::new();
    let mut events = events.into_iter().peekable();
    while let Some(first) = events.next() {
        let key = first.key();
        let mut group = vec![first];
        let mut changes: Vec<TwinEvent> = Vec::new();
        while let Some(next) =
            events.next_if(|e| e.instance_id == key.instance && e.interface_id == key.interface)
        {
            let previous = group.last().expect("a group has its first event");
            if next.id != previous.id {
                group.push(next);
                continue;
            }
            let seen = std::iter::once(previous)
                .chain(changes.iter().rev().take_while(|c| c.id == next.id))
                .any(|e| e.event_data == next.event_data);
            if !seen {
                changes.push(next);
            }
        }
        if !changes.is_empty() {
            later.insert(key.clone(), changes);
        }
        groups.insert(key, group);
    }
    (groups, later)
}

/// The version an event whose id is taken is stored as: `None` for a redelivery (the stored
/// event has the same data), else the event under its [`version_id`].
pub(crate) fn changed_version(
    event: &TwinEvent,
    stored_data: &Map<String, Value>,
) -> Option<TwinEvent> {
    if stored_data == &*event.event_data {
        return None;
    }
    Some(TwinEvent {
        id: version_id(&event.id, &event.event_data),
        ..event.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::{patch, version};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn record(patches: &[(Version, Value)]) -> InstanceRecord {
        let mut record = InstanceRecord {
            last_type: "ktwin.real.pole".into(),
            ..InstanceRecord::default()
        };
        for (v, p) in patches {
            record.tree.apply(v, p);
            record.last = record.last.clone().max(Some(v.clone()));
            record.count += 1;
        }
        record
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn records_read_back_as_written(
            patches in prop::collection::vec(((0..6i64), "[xy]", patch()), 0..8),
        ) {
            let patches: Vec<_> = patches
                .into_iter()
                .map(|(t, id, p)| (version(t, &id), p))
                .collect();
            let written = record(&patches);
            prop_assert_eq!(InstanceRecord::decode(&written.encode()).unwrap(), written);
        }
    }

    #[test]
    fn records_of_earlier_builds_still_read() {
        let written = record(&[
            (version(1, "a"), json!({"level": 3, "gone": null})),
            (version(2, "b"), json!({"nested": {"x": [1, 2]}})),
        ]);
        let earlier = serde_json::to_vec(&written).unwrap();
        assert_eq!(earlier.first(), Some(&b'{'));
        assert_eq!(InstanceRecord::decode(&earlier).unwrap(), written);
    }

    #[test]
    fn each_version_is_stored_once() {
        // A weather observation: thirteen members written by one event.
        let members: serde_json::Map<String, Value> = (0..13)
            .map(|i| (format!("measurement{i}"), json!(f64::from(i) * 1.5)))
            .collect();
        let id = "06ea6f42-5ae3-564a-ade9-70477c21c7cc";
        let written = record(&[(version(1_795_984_000_125_381, id), Value::Object(members))]);
        let stored = written.encode();
        let text = std::str::from_utf8(&stored).unwrap();
        assert_eq!(text.matches(id).count(), 1, "{text}");
        let earlier = serde_json::to_vec(&written).unwrap();
        assert!(
            stored.len() * 2 < earlier.len(),
            "{} bytes, {} before",
            stored.len(),
            earlier.len()
        );
    }

    #[test]
    fn a_position_outside_the_table_is_reported() {
        let err = InstanceRecord::decode(br#"[{"m":3},0,"t",1,[[1,"a"]]]"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("version 3 is referred to but the record's table has 1"),
            "{err}"
        );
    }
}
