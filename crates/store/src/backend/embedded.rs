//! What the two embedded backends (fjall in [`super::fjall`], redb in [`super::redb`]) share:
//! the [`Backend`] implementation over their blocking calls ([`EmbeddedStore`]), byte-string
//! keys, event bodies, the key ranges each query reads, and the append path itself, written
//! once against the small [`AppendTarget`] trait each engine's write batch implements.
//!
//! Keys are byte strings compared with memcmp. Instances are numbered, so an event's keys start
//! with 8 bytes instead of two names:
//! - instances: [`name_key`] → instance number;
//! - history: [`event_key`] (instance number, time, id) → [`EventBody`], so an instance's
//!   events are contiguous and time ordered;
//! - idempotency index: [`id_key`] (instance number, id) → time µs;
//! - trace index: [`trace_key`] (trace id, instance number, time, id) → instance name, for the
//!   events that carried a `traceparent`; an entry whose instance was deleted since is skipped
//!   when read;
//! - merge records: instance number → [`InstanceRecord::encode`], from which a twin's latest
//!   state is derived when it is read ([`latest_from_record`]). A materialized copy of each
//!   latest state used to be written beside the record on every append: one more JSON
//!   encoding and one more write per stored event for a state that is read far less often
//!   than it changes.

use std::borrow::Cow;
use std::ops::Bound;

use async_trait::async_trait;
use chrono::DateTime;
use ktwin_events::trace::TraceId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    AppendReport, Backend, EventPosition, HistoryQuery, InstanceRecord, Page, StoreError,
    changed_version, group_by_instance,
};
use crate::changed::NewVersion;
use crate::conditional::{ConditionalAppend, Precondition, StateVersion};
use crate::dead_letters::DeadLetterStore;
use crate::event::{InstanceKey, LatestState, TwinEvent};
use crate::merge::Version;

/// An embedded engine's store: the [`Backend`] operations as blocking calls, which the
/// [`Backend`] implementation below runs on tokio's blocking pool.
pub(crate) trait EmbeddedStore: Clone + Send + Sync + 'static {
    /// The backend's name (see [`Backend::name`]).
    const NAME: &'static str;
    /// See [`Backend::append`]: [`prepare`], then [`append_to`] under the engine's writer.
    fn append_blocking(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError>;
    /// See [`Backend::append_if`]: [`prepare`], then [`append_if_to`] under the engine's
    /// writer, committed only if it stored the event.
    fn append_if_blocking(
        &self,
        event: TwinEvent,
        precondition: &Precondition,
    ) -> Result<ConditionalAppend, StoreError>;
    /// See [`Backend::latest`]: two point reads (number, merge record) served from the
    /// engine's cache in the common case, and the record materialized, so it runs inline
    /// rather than hopping to the blocking pool.
    fn latest_blocking(&self, key: &InstanceKey) -> Result<Option<LatestState>, StoreError>;
    /// See [`Backend::history`].
    fn history_blocking(
        &self,
        key: &InstanceKey,
        query: &HistoryQuery,
    ) -> Result<Page<TwinEvent>, StoreError>;
    /// See [`Backend::events`].
    fn events_blocking(
        &self,
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Page<TwinEvent>, StoreError>;
    /// See [`Backend::twins`].
    fn twins_blocking(
        &self,
        interface: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<LatestState>, StoreError>;
    /// See [`Backend::trace`].
    fn trace_blocking(&self, trace: TraceId, limit: usize) -> Result<Page<TwinEvent>, StoreError>;
    /// See [`Backend::delete`].
    fn delete_blocking(&self, key: &InstanceKey) -> Result<u64, StoreError>;
    /// See [`Backend::check`].
    fn check_blocking(&self) -> Result<(), StoreError>;
    /// See [`Backend::dead_letters`].
    fn dead_letter_store(&self) -> Option<&dyn DeadLetterStore> {
        None
    }
}

/// Runs `work` on `store` on the blocking pool.
async fn blocking<S: EmbeddedStore, T: Send + 'static>(
    store: &S,
    work: impl FnOnce(&S) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|err| StoreError::unavailable("embedded store task", err))?
}

#[async_trait]
impl<S: EmbeddedStore> Backend for S {
    fn name(&self) -> &'static str {
        S::NAME
    }

    /// Both engines have a single writer; a second append prepares its batch meanwhile (and,
    /// on fjall, reads and merges it while the first commits).
    fn concurrent_appends(&self) -> usize {
        2
    }

    async fn append(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        blocking(self, move |this| this.append_blocking(events)).await
    }

    async fn append_if(
        &self,
        event: TwinEvent,
        precondition: &Precondition,
    ) -> Result<ConditionalAppend, StoreError> {
        let precondition = precondition.clone();
        blocking(self, move |this| {
            this.append_if_blocking(event, &precondition)
        })
        .await
    }

    async fn latest(&self, key: &InstanceKey) -> Result<Option<LatestState>, StoreError> {
        self.latest_blocking(key)
    }

    async fn history(
        &self,
        key: &InstanceKey,
        query: &HistoryQuery,
    ) -> Result<Page<TwinEvent>, StoreError> {
        let (key, query) = (key.clone(), query.clone());
        blocking(self, move |this| this.history_blocking(&key, &query)).await
    }

    async fn events(
        &self,
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Page<TwinEvent>, StoreError> {
        let after = after.cloned();
        blocking(self, move |this| {
            this.events_blocking(after.as_ref(), limit)
        })
        .await
    }

    async fn twins(
        &self,
        interface: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<LatestState>, StoreError> {
        let (interface, after) = (interface.to_owned(), after.map(str::to_owned));
        blocking(self, move |this| {
            this.twins_blocking(&interface, after.as_deref(), limit)
        })
        .await
    }

    async fn trace(&self, trace: TraceId, limit: usize) -> Result<Page<TwinEvent>, StoreError> {
        blocking(self, move |this| this.trace_blocking(trace, limit)).await
    }

    async fn delete(&self, key: &InstanceKey) -> Result<u64, StoreError> {
        let key = key.clone();
        blocking(self, move |this| this.delete_blocking(&key)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        blocking(self, |this| this.check_blocking()).await
    }

    fn dead_letters(&self) -> Option<&dyn DeadLetterStore> {
        self.dead_letter_store()
    }
}

/// Key of an instance by name: interface, NUL, instance. Byte order is (interface, instance)
/// order because names cannot contain control characters.
pub(crate) fn name_key(interface: &str, instance: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(interface.len() + 1 + instance.len());
    key.extend_from_slice(interface.as_bytes());
    key.push(0);
    key.extend_from_slice(instance.as_bytes());
    key
}

fn split_name_key(key: &[u8]) -> Result<(&str, &str), StoreError> {
    let text = std::str::from_utf8(key).map_err(|err| StoreError::corrupt("instance key", err))?;
    text.split_once('\0')
        .ok_or_else(|| StoreError::corrupt_data(format!("instance key {text:?} has no separator")))
}

/// Time µs as 8 bytes that sort like the signed number.
fn time_bytes(micros: i64) -> [u8; 8] {
    ((micros as u64) ^ (1 << 63)).to_be_bytes()
}

/// Key of an event in the history: instance number, time, id.
pub(crate) fn event_key(key: &mut Vec<u8>, instance: u64, micros: i64, id: &str) {
    key.clear();
    key.extend_from_slice(&instance.to_be_bytes());
    key.extend_from_slice(&time_bytes(micros));
    key.extend_from_slice(id.as_bytes());
}

pub(crate) fn split_event_key(key: &[u8]) -> Result<(u64, i64, &str), StoreError> {
    let corrupt = || StoreError::corrupt_data("event key shorter than 16 bytes");
    let (instance, rest) = key.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (time, id) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let id = std::str::from_utf8(id).map_err(|err| StoreError::corrupt("event id", err))?;
    let micros = (u64::from_be_bytes(*time) ^ (1 << 63)) as i64;
    Ok((u64::from_be_bytes(*instance), micros, id))
}

/// Key of an event in the idempotency index: instance number, id.
pub(crate) fn id_key(key: &mut Vec<u8>, instance: u64, id: &str) {
    key.clear();
    key.extend_from_slice(&instance.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
}

/// Key of an event in the trace index: trace id, instance number, time, id; its value is the
/// instance's [`name_key`], so a trace's events are found without knowing their instances.
pub(crate) fn trace_key(key: &mut Vec<u8>, trace: TraceId, instance: u64, micros: i64, id: &str) {
    key.clear();
    key.extend_from_slice(&trace.to_bytes());
    key.extend_from_slice(&instance.to_be_bytes());
    key.extend_from_slice(&time_bytes(micros));
    key.extend_from_slice(id.as_bytes());
}

/// All trace-index keys of `trace`: from the first (included) to the last (excluded, or
/// unbounded for the last possible trace id).
pub(crate) fn trace_range(trace: TraceId) -> (Vec<u8>, Bound<Vec<u8>>) {
    let first = trace.to_bytes().to_vec();
    let next = u128::from_be_bytes(trace.to_bytes())
        .checked_add(1)
        .map_or(Bound::Unbounded, |n| {
            Bound::Excluded(n.to_be_bytes().to_vec())
        });
    (first, next)
}

/// The events of one trace from its trace-index entries ((key, instance name) pairs in key
/// order), each body read with `body` (`None` once its instance was deleted: skipped), in
/// time order, at most `limit`.
pub(crate) fn trace_events<K, V>(
    entries: impl Iterator<Item = Result<(K, V), StoreError>>,
    limit: usize,
    mut body: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<Page<TwinEvent>, StoreError>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut items = Vec::new();
    let mut key_buf = Vec::new();
    for entry in entries {
        let (key, name) = entry?;
        let rest = key
            .as_ref()
            .get(16..)
            .ok_or_else(|| StoreError::corrupt_data("trace index key shorter than 16 bytes"))?;
        let (instance, micros, id) = split_event_key(rest)?;
        event_key(&mut key_buf, instance, micros, id);
        let Some(stored) = body(&key_buf)? else {
            continue;
        };
        let (interface, instance_id) = split_name_key(name.as_ref())?;
        let twin = InstanceKey::new(interface, instance_id);
        items.push(event_from_body(&twin, micros, id, &stored)?);
        if items.len() > limit {
            break;
        }
    }
    let mut page = Page::from_overfetch(items, limit);
    page.items.sort_by_cached_key(TwinEvent::version);
    Ok(page)
}

/// The history keys of `instance` from `(micros, id)` on.
pub(crate) fn event_bound(instance: u64, micros: i64, id: &str) -> Vec<u8> {
    let mut key = Vec::new();
    event_key(&mut key, instance, micros, id);
    key
}

/// All history keys of `instance`: from the first (included) to the last (excluded).
pub(crate) fn instance_range(instance: u64) -> (Vec<u8>, Vec<u8>) {
    (
        event_bound(instance, i64::MIN, ""),
        event_bound(instance.saturating_add(1), i64::MIN, ""),
    )
}

/// The history keys of `instance` that `query` selects, from the first (included) to the last
/// (excluded); read backwards for newest first.
pub(crate) fn history_range(instance: u64, query: &HistoryQuery) -> (Vec<u8>, Vec<u8>) {
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
    (lower, upper)
}

/// The history keys of `instance` in an event listing: after `resume` (the last listed event,
/// when the listing resumes inside this instance) or all, up to the end (excluded).
fn listing_range(instance: u64, resume: Option<&Version>) -> (Bound<Vec<u8>>, Vec<u8>) {
    let (first, end) = instance_range(instance);
    let first = match resume {
        Some(version) => Bound::Excluded(event_bound(instance, version.micros, &version.id)),
        None => Bound::Included(first),
    };
    (first, end)
}

/// One page of the listing of all events after `after` ([`Backend::events`]): `instances`
/// gives the (name key, number) pairs of the instances from a lower bound on, in key order;
/// `history` gives the (event key, body) pairs of a history range, in key order.
pub(crate) fn list_events<I, N, H, K, V>(
    after: Option<&EventPosition>,
    limit: usize,
    instances: impl FnOnce(Bound<&[u8]>) -> Result<I, StoreError>,
    mut history: impl FnMut((Bound<&[u8]>, Bound<&[u8]>)) -> Result<H, StoreError>,
) -> Result<Page<TwinEvent>, StoreError>
where
    I: Iterator<Item = Result<(N, u64), StoreError>>,
    N: AsRef<[u8]>,
    H: Iterator<Item = Result<(K, V), StoreError>>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let start = after.map(|p| name_key(&p.interface, &p.instance));
    let lower = start.as_deref().map_or(Bound::Unbounded, Bound::Included);
    let mut items = Vec::new();
    for entry in instances(lower)? {
        let (name, instance) = entry?;
        let (interface, instance_id) = split_name_key(name.as_ref())?;
        let key = InstanceKey::new(interface, instance_id);
        let resume = after.filter(|_| start.as_deref() == Some(name.as_ref()));
        let (first, end) = listing_range(instance, resume.map(|p| &p.version));
        for event in history(borrowed(&first, &end))? {
            let (k, v) = event?;
            items.push(event_from_entry(&key, k.as_ref(), v.as_ref())?);
            if items.len() > limit {
                return Ok(Page::from_overfetch(items, limit));
            }
        }
    }
    Ok(Page::from_overfetch(items, limit))
}

/// The latest-state keys of `interface` after the instance `after` (or all), up to the end
/// (excluded).
pub(crate) fn twins_range(interface: &str, after: Option<&str>) -> (Bound<Vec<u8>>, Vec<u8>) {
    let start = name_key(interface, after.unwrap_or(""));
    let lower = match after {
        Some(_) => Bound::Excluded(start),
        None => Bound::Included(start),
    };
    // Every key of the interface starts with its name and NUL; 1 is the next byte.
    let mut end = interface.as_bytes().to_vec();
    end.push(1);
    (lower, end)
}

/// A byte range as the borrowed bounds engines take.
pub(crate) fn borrowed<'a>(
    lower: &'a Bound<Vec<u8>>,
    upper: &'a [u8],
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (lower.as_ref().map(Vec::as_slice), Bound::Excluded(upper))
}

/// What the history stores per event besides its key.
#[derive(Serialize, Deserialize)]
pub(crate) struct EventBody<'a> {
    #[serde(rename = "type")]
    event_type: Cow<'a, str>,
    data: Cow<'a, Map<String, Value>>,
    // Absent in bodies written before traces were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracestate: Option<Cow<'a, str>>,
}

pub(crate) fn corrupt(err: serde_json::Error) -> StoreError {
    StoreError::corrupt("stored JSON", err)
}

pub(crate) fn event_body(event: &TwinEvent) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&EventBody {
        event_type: Cow::Borrowed(&event.event_type),
        data: Cow::Borrowed(&event.event_data),
        traceparent: event.traceparent.as_deref().map(Cow::Borrowed),
        tracestate: event.tracestate.as_deref().map(Cow::Borrowed),
    })
    .map_err(corrupt)
}

/// The event of `key` stored under history key `event_key` with `body`.
pub(crate) fn event_from_entry(
    key: &InstanceKey,
    event_key: &[u8],
    body: &[u8],
) -> Result<TwinEvent, StoreError> {
    let (_, micros, id) = split_event_key(event_key)?;
    event_from_body(key, micros, id, body)
}

pub(crate) fn event_from_body(
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
        event_data: body.data.into_owned().into(),
        traceparent: body.traceparent.map(Cow::into_owned),
        tracestate: body.tracestate.map(Cow::into_owned),
    })
}

/// The latest state of `key` from its stored merge record.
pub(crate) fn latest_from_record(
    key: &InstanceKey,
    record: &[u8],
) -> Result<LatestState, StoreError> {
    let record = InstanceRecord::decode(record).map_err(corrupt)?;
    Ok(record.latest_state(key))
}

/// The latest state of the instance numbered `instance` with [`name_key`] `name`, from its
/// stored merge record, which every numbered instance has.
pub(crate) fn latest_from_entry(
    name: &[u8],
    instance: u64,
    record: Option<&[u8]>,
) -> Result<LatestState, StoreError> {
    let record = record.ok_or_else(|| {
        StoreError::corrupt_data(format!("instance {instance} has no merge record"))
    })?;
    let (interface, instance) = split_name_key(name)?;
    latest_from_record(&InstanceKey::new(interface, instance), record)
}

/// The tables of one embedded write transaction, as the shared append path uses them.
pub(crate) trait AppendTarget {
    /// The number of the instance with this [`name_key`], if it has one.
    fn instance(&mut self, name: &[u8]) -> Result<Option<u64>, StoreError>;
    /// Numbers a new instance.
    fn add_instance(&mut self, name: &[u8]) -> Result<u64, StoreError>;
    /// Enters an [`id_key`] with its event's time into the idempotency index; false, leaving
    /// the index as it was, if the key is already there. `known_instance` is false for an
    /// instance numbered in this transaction, which has no ids yet.
    fn claim_id(
        &mut self,
        id_key: &[u8],
        micros: i64,
        known_instance: bool,
    ) -> Result<bool, StoreError>;
    /// The time µs an [`id_key`] has in the idempotency index (which `claim_id` refused).
    fn claimed_time(&mut self, id_key: &[u8]) -> Result<Option<i64>, StoreError>;
    /// The stored body of the event under this [`event_key`].
    fn stored_event(&mut self, event_key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores an event's body under its [`event_key`].
    fn put_event(&mut self, event_key: &[u8], body: &[u8]) -> Result<(), StoreError>;
    /// Enters an event into the trace index: its [`trace_key`] with its instance's
    /// [`name_key`].
    fn put_trace(&mut self, trace_key: &[u8], name: &[u8]) -> Result<(), StoreError>;
    /// The stored merge record of an instance.
    fn record(&mut self, instance: u64) -> Result<Option<InstanceRecord>, StoreError>;
    /// The version of an instance's latest state, as its stored merge record gives it. An
    /// engine keeping records in memory answers without giving its copy away (a conditional
    /// append that is refused, or a duplicate, writes no record back).
    fn state_version(&mut self, instance: u64) -> Result<Option<StateVersion>, StoreError> {
        Ok(self.record(instance)?.and_then(|r| r.state_version()))
    }
    /// Stores an instance's merge record as JSON (`record` is what `record_json` encodes, for
    /// an engine that keeps it decoded).
    fn put_record(
        &mut self,
        instance: u64,
        record: InstanceRecord,
        record_json: &[u8],
    ) -> Result<(), StoreError>;
}

/// One instance's share of a batch: its key, its events in id order (none repeated) and the
/// changes of their ids the batch holds too (see [`group_by_instance`]), each with its encoded
/// body.
pub(crate) struct Group {
    key: InstanceKey,
    name: Vec<u8>,
    events: Vec<(TwinEvent, Vec<u8>)>,
    changes: Vec<(TwinEvent, Vec<u8>)>,
}

/// Encodes the bodies of `events`.
fn with_bodies(events: Vec<TwinEvent>) -> Result<Vec<(TwinEvent, Vec<u8>)>, StoreError> {
    events
        .into_iter()
        .map(|event| event_body(&event).map(|body| (event, body)))
        .collect()
}

/// Groups `events` by instance and encodes their bodies: the part of an append that reads
/// nothing from the store, done before taking the writer so that it overlaps another append.
pub(crate) fn prepare(events: Vec<TwinEvent>) -> Result<Vec<Group>, StoreError> {
    let (groups, mut later) = group_by_instance(events);
    groups
        .into_iter()
        .map(|(key, events)| {
            let changes = later.remove(&key).unwrap_or_default();
            Ok(Group {
                name: name_key(&key.interface, &key.instance),
                events: with_bodies(events)?,
                changes: with_bodies(changes)?,
                key,
            })
        })
        .collect()
}

/// Stores the events of `groups` into `target` (skipping known ones, storing changed ones as
/// new versions) and updates their instances' merge records; returns how many were new, and
/// which of those were new versions.
pub(crate) fn append_to(
    target: &mut impl AppendTarget,
    groups: &[Group],
) -> Result<(usize, Vec<NewVersion>), StoreError> {
    let mut stored = 0;
    let mut versions = Vec::new();
    for group in groups {
        let known = target.instance(&group.name)?;
        let instance = match known {
            Some(instance) => instance,
            None => target.add_instance(&group.name)?,
        };
        let fresh = store_group(target, instance, known.is_some(), group, &mut versions)?;
        if fresh.is_empty() {
            continue;
        }
        stored += fresh.len();
        let mut record = match known {
            Some(_) => target.record(instance)?.unwrap_or_default(),
            None => InstanceRecord::default(),
        };
        record.absorb(fresh.iter().map(AsRef::as_ref));
        let record_bytes = record.encode();
        target.put_record(instance, record, &record_bytes)?;
    }
    Ok((stored, versions))
}

/// Stores the history of one group: its events whose ids are new, then the new versions of
/// those whose ids are taken by other data and of its changes; returns the events stored.
fn store_group<'g>(
    target: &mut impl AppendTarget,
    instance: u64,
    known_instance: bool,
    group: &'g Group,
    versions: &mut Vec<NewVersion>,
) -> Result<Vec<Cow<'g, TwinEvent>>, StoreError> {
    let mut stored = Stored {
        instance,
        name: &group.name,
        key_buf: Vec::new(),
        events: Vec::with_capacity(group.events.len()),
    };
    let mut id_buf = Vec::new();
    // Whether each event's id was new: a change of it then compares with that event's data,
    // which the store cannot read back before the commit.
    let mut claimed = Vec::with_capacity(group.events.len());
    for (event, body) in &group.events {
        id_key(&mut id_buf, instance, &event.id);
        let new = target.claim_id(&id_buf, event.time.timestamp_micros(), known_instance)?;
        claimed.push(new);
        if new {
            stored.put(target, Cow::Borrowed(event), body)?;
        } else if let Some(version) = claim_version(target, instance, event, None, group)? {
            versions.push(NewVersion::record(
                &group.key,
                &event.id,
                version.id.clone(),
            ));
            stored.put(target, Cow::Owned(version), body)?;
        }
    }
    for (change, body) in &group.changes {
        // A change follows the batch's event of its id.
        let Ok(first) = group.events.binary_search_by(|(e, _)| e.id.cmp(&change.id)) else {
            continue;
        };
        let first_data = claimed[first].then_some(&*group.events[first].0.event_data);
        if let Some(version) = claim_version(target, instance, change, first_data, group)? {
            versions.push(NewVersion::record(
                &group.key,
                &change.id,
                version.id.clone(),
            ));
            stored.put(target, Cow::Owned(version), body)?;
        }
    }
    Ok(stored.events)
}

/// The events of one instance stored by an append.
struct Stored<'g> {
    instance: u64,
    name: &'g [u8],
    key_buf: Vec<u8>,
    events: Vec<Cow<'g, TwinEvent>>,
}

impl<'g> Stored<'g> {
    fn put(
        &mut self,
        target: &mut impl AppendTarget,
        event: Cow<'g, TwinEvent>,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let micros = event.time.timestamp_micros();
        event_key(&mut self.key_buf, self.instance, micros, &event.id);
        target.put_event(&self.key_buf, body)?;
        if let Some(trace) = event.trace_id() {
            trace_key(&mut self.key_buf, trace, self.instance, micros, &event.id);
            target.put_trace(&self.key_buf, self.name)?;
        }
        self.events.push(event);
        Ok(())
    }
}

/// For an `event` whose id is taken, by a stored event or by the batch's event with
/// `taken_by` data: `None` if it is a redelivery, or a redelivery of a change already stored
/// as a version; else the new version, its id claimed. Only duplicates pay for this read.
fn claim_version(
    target: &mut impl AppendTarget,
    instance: u64,
    event: &TwinEvent,
    taken_by: Option<&Map<String, Value>>,
    group: &Group,
) -> Result<Option<TwinEvent>, StoreError> {
    let mut id_buf = Vec::new();
    id_key(&mut id_buf, instance, &event.id);
    let version = match taken_by {
        Some(data) => changed_version(event, data),
        None => {
            let body = stored_body(target, instance, &id_buf, &event.id)?;
            let stored: EventBody<'_> = serde_json::from_slice(&body).map_err(corrupt)?;
            changed_version(event, &stored.data)
        }
    };
    let Some(version) = version else {
        return Ok(None);
    };
    // An event of the batch sent with the version's id is that version (the engines' claims
    // may not see the batch's own).
    if group
        .events
        .binary_search_by(|(e, _)| e.id.as_str().cmp(&version.id))
        .is_ok()
    {
        return Ok(None);
    }
    id_key(&mut id_buf, instance, &version.id);
    let claimed = target.claim_id(&id_buf, event.time.timestamp_micros(), true)?;
    Ok(claimed.then_some(version))
}

/// The stored body of the event of `instance` with `id`, whose [`id_key`] is `id_key`.
fn stored_body(
    target: &mut impl AppendTarget,
    instance: u64,
    id_key: &[u8],
    id: &str,
) -> Result<Vec<u8>, StoreError> {
    let missing = || {
        StoreError::corrupt_data(format!(
            "event {id:?} of instance {instance} is in the idempotency index but not in the history"
        ))
    };
    let micros = target.claimed_time(id_key)?.ok_or_else(missing)?;
    let mut stored_key = Vec::new();
    event_key(&mut stored_key, instance, micros, id);
    target.stored_event(&stored_key)?.ok_or_else(missing)
}

/// The conditional append of `groups` (one event, [`prepare`]d) into `target`, under the
/// engine's writer ([`Backend::append_if`]): a redelivery of a stored event is a duplicate
/// whatever the precondition; otherwise the instance's latest state must meet it before the
/// event is appended as [`append_to`] would. The caller commits only after `Stored`.
pub(crate) fn append_if_to(
    target: &mut impl AppendTarget,
    groups: &[Group],
    precondition: &Precondition,
) -> Result<ConditionalAppend, StoreError> {
    let [group] = groups else {
        return Err(StoreError::corrupt_data(format!(
            "a conditional append takes one event, not {} instances' events",
            groups.len()
        )));
    };
    let known = target.instance(&group.name)?;
    let current = match known {
        Some(instance) => {
            if is_redelivery(target, instance, group)? {
                return Ok(ConditionalAppend::Duplicate);
            }
            target.state_version(instance)?
        }
        None => None,
    };
    if !precondition.holds_for(current.as_ref()) {
        return Err(StoreError::PreconditionFailed {
            interface: group.key.interface.clone(),
            instance: group.key.instance.clone(),
            expected: precondition.clone(),
            current,
        });
    }
    let (stored, _) = append_to(target, groups)?;
    Ok(if stored == 0 {
        ConditionalAppend::Duplicate
    } else {
        ConditionalAppend::Stored
    })
}

/// Whether the (one) event of `group` is stored for `instance` with its data.
fn is_redelivery(
    target: &mut impl AppendTarget,
    instance: u64,
    group: &Group,
) -> Result<bool, StoreError> {
    let Some((event, _)) = group.events.first() else {
        return Ok(true);
    };
    let mut id_buf = Vec::new();
    id_key(&mut id_buf, instance, &event.id);
    if target.claimed_time(&id_buf)?.is_none() {
        return Ok(false);
    }
    let body = stored_body(target, instance, &id_buf, &event.id)?;
    let stored: EventBody<'_> = serde_json::from_slice(&body).map_err(corrupt)?;
    Ok(*stored.data == *event.event_data)
}

/// An event of instance `instance` of interface `pole`, for the engines' tests.
#[cfg(test)]
pub(crate) fn pole_event(
    instance: &str,
    id: &str,
    micros: i64,
    data: serde_json::Value,
) -> TwinEvent {
    TwinEvent {
        id: id.into(),
        time: chrono::DateTime::from_timestamp_micros(micros).unwrap(),
        source: instance.into(),
        event_type: "ktwin.store.pole".into(),
        instance_id: instance.into(),
        interface_id: "pole".into(),
        event_data: data.as_object().unwrap().clone().into(),
        traceparent: None,
        tracestate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
