//! State a service owns and updates from event to event (counters, aggregates, the previous
//! reading), without the lost updates of the original services.
//!
//! The originals read the event store, computed, and wrote back through the broker: the next
//! event could read the old state while the write was still queued, and concurrent events
//! overwrote each other (defect 10.4 #2). [`OwnedStates`] serialises updates per instance and
//! keeps the state it last emitted (write-through), so the store is read only the first time
//! an instance is seen.
//!
//! A redelivered event — the last one or any of the [`OwnedLimits::remembered_events`] before
//! it, in any order — is recognised by its id and not applied again: the update answers what
//! it answered the first time, so the handler emits the same events again, and those carry
//! the same derived ids (`dispatch`), which their receivers recognise in turn (the event store
//! keeps one copy, another `OwnedStates` answers from memory).
//!
//! Memory is bounded by bytes ([`OwnedLimits::max_bytes`]; instance names come from the wire):
//! past the bound the least recently used idle instances are forgotten, and read from the
//! store again when their next event comes.
//!
//! In memory, one replica owns an instance's state: the runtime must deliver all events of an
//! instance to one replica at a time. `ktwin up` partitions each service's events by instance
//! and says in [`crate::OWNER_EPOCH_HEADER`] since when the replica owns it; when that number
//! grows (the instance was handled elsewhere meanwhile), the state is read from the store again.
//!
//! A delivery that nothing partitioned ([`TwinContext::is_partitioned`] false: the SDK's server
//! got no [`crate::OWNER_EPOCH_HEADER`], as on a cluster, where Knative spreads requests over
//! pods) is applied to the state kept in the event store instead, by a conditional write that
//! the store commits only if no other replica wrote in between, and a redelivery of any of the
//! instance's last [`OwnedLimits::remembered_events`] events is recognised by every replica
//! from the ids kept with the stored state; it answers what its first application answered
//! (see `in_store`). See docs/architecture.md, "Owned state and replicas".

use std::any::Any;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::TwinContext;
use crate::error::HandlerError;

mod in_store;

pub use in_store::OWNED_MEMBER;

/// Bounds of an [`OwnedStates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedLimits {
    /// Bytes of memory the states take at most — the keys, the map entries and slots that
    /// hold them, the remembered event ids, and the states and remembered results (what they
    /// hold on the heap counted as their JSON-encoded size); least recently used instances are
    /// forgotten beyond.
    pub max_bytes: usize,
    /// Applied events remembered per instance, so that a redelivery of any of them is not
    /// applied twice.
    pub remembered_events: usize,
}

impl Default for OwnedLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            remembered_events: 64,
        }
    }
}

/// An event applied to a state, with the result its update answered.
struct Applied {
    id: String,
    result: Arc<dyn Any + Send + Sync>,
    /// What the id and the result take on the heap (the buffer holding this counts the rest).
    bytes: usize,
}

struct Slot<T> {
    loaded: bool,
    /// The owner epoch ([`TwinContext::owner_epoch`]) the state was loaded or last updated in.
    epoch: u64,
    current: Option<T>,
    current_bytes: usize,
    applied: VecDeque<Applied>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            loaded: false,
            epoch: 0,
            current: None,
            current_bytes: 0,
            applied: VecDeque::new(),
        }
    }
}

impl<T> Slot<T> {
    /// What the slot holds on the heap: the state, and the remembered events with the buffer
    /// they sit in.
    fn bytes(&self) -> usize {
        self.current_bytes
            + self.applied.capacity() * size_of::<Applied>()
            + self.applied.iter().map(|a| a.bytes).sum::<usize>()
    }

    /// Remembers that `id` was applied with `result`, forgetting the oldest beyond `limit`
    /// (at least one). The oldest goes first, so the buffer never grows past the limit.
    fn remember<R: Serialize + Send + Sync + 'static>(
        &mut self,
        id: &str,
        result: R,
        limit: usize,
    ) {
        while self.applied.len() >= limit.max(1) {
            self.applied.pop_front();
        }
        self.applied.push_back(Applied {
            id: id.to_owned(),
            // The id's text, and the result in its shared allocation (two counts beside it).
            bytes: id.len() + 2 * size_of::<usize>() + size_of::<R>() + json_bytes(&result),
            result: Arc::new(result),
        });
    }

    fn result_of<R: Clone + 'static>(&self, event_id: &str) -> Option<R> {
        self.applied
            .iter()
            .rev()
            .find(|applied| applied.id == event_id)
            .and_then(|applied| applied.result.downcast_ref::<R>().cloned())
    }
}

type Key = (String, String);
type SlotRef<T> = Arc<tokio::sync::Mutex<Slot<T>>>;

struct Entry<T> {
    slot: SlotRef<T>,
    bytes: usize,
    used: u64,
}

/// The instances' slots, with their byte accounting and use order (for eviction).
struct Slots<T> {
    entries: HashMap<Key, Entry<T>>,
    by_use: BTreeMap<u64, Key>,
    bytes: usize,
    clock: u64,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            bytes: 0,
            clock: 0,
        }
    }
}

/// What an instance whose slot holds `slot_bytes` costs in memory: its key's texts (kept in
/// both maps), its entries in the two maps, and its slot's shared allocation.
fn instance_bytes<T>(key: &Key, slot_bytes: usize) -> usize {
    // A hash map keeps up to 16/7 as many buckets (and a control byte each) as entries; a
    // B-tree appended to in key order (the use clock) leaves its nodes half full, and its
    // inner nodes add their edges.
    let map_entries = (size_of::<(Key, Entry<T>)>() + 1) * 16 / 7 + 5 * size_of::<(u64, Key)>() / 2;
    let slot = 2 * size_of::<usize>() + size_of::<tokio::sync::Mutex<Slot<T>>>();
    2 * (key.0.len() + key.1.len()) + map_entries + slot + slot_bytes
}

impl<T> Slots<T> {
    /// The slot of `key` (new if unknown), marked as just used.
    fn take(&mut self, key: &Key) -> SlotRef<T> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            slot: SlotRef::default(),
            bytes: instance_bytes::<T>(key, 0),
            used: 0,
        });
        if entry.used == 0 {
            self.bytes += entry.bytes;
        } else {
            self.by_use.remove(&entry.used);
        }
        entry.used = clock;
        self.by_use.insert(clock, key.clone());
        entry.slot.clone()
    }

    /// Records that `key`'s slot now holds `bytes`, then forgets least recently used idle
    /// slots until the total is within `max_bytes`.
    fn resize(&mut self, key: &Key, bytes: usize, max_bytes: usize) {
        if let Some(entry) = self.entries.get_mut(key) {
            let bytes = instance_bytes::<T>(key, bytes);
            self.bytes = self.bytes - entry.bytes + bytes;
            entry.bytes = bytes;
        }
        let mut busy = Vec::new();
        while self.bytes > max_bytes {
            let Some((used, oldest)) = self.by_use.pop_first() else {
                break;
            };
            let entry = &self.entries[&oldest];
            // Only this map holds an idle slot: no update waits for it or runs in it.
            if Arc::strong_count(&entry.slot) > 1 {
                busy.push((used, oldest));
                continue;
            }
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= evicted.bytes;
            }
        }
        self.by_use.extend(busy);
    }
}

/// Per-instance states of type `T`, keyed by (interface, instance).
pub struct OwnedStates<T> {
    slots: Mutex<Slots<T>>,
    limits: OwnedLimits,
}

impl<T> Default for OwnedStates<T> {
    fn default() -> Self {
        Self::with_limits(OwnedLimits::default())
    }
}

impl<T> OwnedStates<T> {
    /// No states yet, kept within `limits`.
    pub fn with_limits(limits: OwnedLimits) -> Self {
        Self {
            slots: Mutex::new(Slots::default()),
            limits,
        }
    }

    /// Instances whose state is in memory.
    pub fn instances(&self) -> usize {
        self.lock().entries.len()
    }

    /// Bytes of state in memory (as [`OwnedLimits::max_bytes`] counts them).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots<T>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: DeserializeOwned + Serialize + Clone + Send> OwnedStates<T> {
    /// No states yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `update` on the state of `instance` (loaded from the event store on first use),
    /// one event at a time per instance. `update` gets the previous state (`None` if there is
    /// none) and returns the new state and a result; the new state is kept only if `update`
    /// succeeds. For a redelivered event (`event_id` among the remembered ones), `update` is
    /// not called and the result of its first application is returned.
    ///
    /// On a delivery that nothing partitioned ([`TwinContext::is_partitioned`] false), the
    /// state is read from and written to the event store for each event, and `update` may run
    /// more than once (again after another replica's write got in first): it must not have
    /// effects beyond its return value.
    pub async fn update<R>(
        &self,
        ctx: &TwinContext,
        interface: &str,
        instance: &str,
        event_id: &str,
        mut update: impl FnMut(Option<T>) -> Result<(T, R), HandlerError>,
    ) -> Result<R, HandlerError>
    where
        R: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let key = (interface.to_owned(), instance.to_owned());
        let slot = self.lock().take(&key);
        let mut slot = slot.lock().await;
        if !ctx.is_partitioned() {
            // Nothing in memory to trust; the slot still serialises this replica's updates of
            // the instance, so that they do not race each other to the store.
            let limit = self.limits.remembered_events;
            let twin = (interface, instance);
            let result = in_store::update_in_store(ctx, twin, event_id, limit, &mut update).await;
            *slot = Slot::default();
            drop(slot);
            self.lock().resize(&key, 0, self.limits.max_bytes);
            return result;
        }
        if let Some(result) = slot.result_of::<R>(event_id) {
            return Ok(result);
        }
        if ctx.owner_epoch() > slot.epoch {
            // Another replica may have handled the instance since this one last did.
            slot.loaded = false;
            slot.epoch = ctx.owner_epoch();
        }
        if !slot.loaded {
            slot.current = ctx.latest::<T>(interface, instance).await?;
            slot.current_bytes = json_bytes(&slot.current);
            slot.loaded = true;
        }
        let (next, result) = update(slot.current.clone())?;
        slot.current_bytes = json_bytes(&next);
        slot.current = Some(next);
        slot.remember(event_id, result.clone(), self.limits.remembered_events);
        let bytes = slot.bytes();
        drop(slot);
        self.lock().resize(&key, bytes, self.limits.max_bytes);
        Ok(result)
    }
}

/// The size of `value` as JSON: what it costs in memory, roughly, whatever its type.
fn json_bytes(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map_or(0, |bytes| bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::store_event;
    use crate::graph::StaticGraph;
    use crate::state::{MemoryStates, StateLookup};

    #[derive(Clone, serde::Deserialize, serde::Serialize)]
    struct Counter {
        n: u32,
    }

    fn increment(prev: Option<Counter>) -> Result<(Counter, u32), HandlerError> {
        let n = prev.map_or(0, |c| c.n) + 1;
        Ok((Counter { n }, n))
    }

    #[tokio::test]
    async fn loads_once_counts_without_loss_and_ignores_redelivery() {
        let states = Arc::new(MemoryStates::new());
        states.put(store_event("p", "p1", serde_json::json!({"n": 10})).unwrap());
        let ctx = TwinContext::in_memory(StaticGraph::default(), states.clone());
        let owned = Arc::new(OwnedStates::<Counter>::new());
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (owned, ctx) = (owned.clone(), ctx.clone());
                tokio::spawn(async move {
                    owned
                        .update(&ctx, "p", "p1", &format!("e{i}"), increment)
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        // The store is stale (still 10): the owned state is what counts.
        let n = owned
            .update(&ctx, "p", "p1", "last", increment)
            .await
            .unwrap();
        assert_eq!(n, 31);
        let again = owned
            .update(&ctx, "p", "p1", "last", increment)
            .await
            .unwrap();
        assert_eq!(again, 31, "a redelivery answers what it answered first");
        let failed = owned
            .update(&ctx, "p", "p1", "bad", |_| {
                Err::<(Counter, ()), _>(HandlerError::Invalid("x".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            owned
                .update(&ctx, "p", "p1", "next", increment)
                .await
                .unwrap(),
            32
        );
    }

    /// Redeliveries of any earlier event, shuffled among new ones, change nothing and answer
    /// what the first delivery answered.
    #[tokio::test]
    async fn redeliveries_of_earlier_events_are_not_applied_again() {
        let ctx = TwinContext::in_memory(StaticGraph::default(), Arc::new(MemoryStates::new()));
        let owned = OwnedStates::<Counter>::new();
        for i in 0..40u32 {
            let id = format!("e{i}");
            let n = owned.update(&ctx, "p", "p1", &id, increment).await;
            assert_eq!(n.unwrap(), i + 1);
            // Every third event, an earlier one comes again: the last, or one six events back.
            if i % 3 == 2 {
                let earlier = i.saturating_sub(if i % 2 == 0 { 0 } else { 6 });
                let again = owned
                    .update(&ctx, "p", "p1", &format!("e{earlier}"), increment)
                    .await
                    .unwrap();
                assert_eq!(again, earlier + 1, "redelivery of e{earlier}");
            }
        }
        let last = owned.update(&ctx, "p", "p1", "e39", increment).await;
        assert_eq!(last.unwrap(), 40);
        let next = owned.update(&ctx, "p", "p1", "e40", increment).await;
        assert_eq!(next.unwrap(), 41);
    }

    /// An instance handed back to this replica after another one updated it is read from the
    /// store again; deliveries in the same epoch use the state in memory.
    #[tokio::test]
    async fn a_larger_owner_epoch_reloads_the_state() {
        let states = Arc::new(MemoryStates::new());
        let ctx = TwinContext::in_memory(StaticGraph::default(), states.clone());
        let owned = OwnedStates::<Counter>::new();
        let at = |epoch| ctx.clone().with_owner_epoch(epoch);
        assert_eq!(
            owned
                .update(&at(1), "p", "p1", "e1", increment)
                .await
                .unwrap(),
            1
        );
        states.put(store_event("p", "p1", serde_json::json!({"n": 50})).unwrap());
        assert_eq!(
            owned
                .update(&at(1), "p", "p1", "e2", increment)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            owned
                .update(&at(4), "p", "p1", "e3", increment)
                .await
                .unwrap(),
            51
        );
        assert_eq!(
            owned
                .update(&at(4), "p", "p1", "e2", increment)
                .await
                .unwrap(),
            2
        );
    }

    /// Unpartitioned deliveries (a cluster) go to the store: replicas with their own
    /// `OwnedStates` over one store count exactly, a redelivery to another replica answers
    /// the first result, and a state written before any replica owned it is where counting
    /// starts.
    #[tokio::test]
    async fn unpartitioned_replicas_share_the_stored_state() {
        let states = Arc::new(MemoryStates::new());
        states.put(store_event("p", "p1", serde_json::json!({"n": 10})).unwrap());
        let ctx = TwinContext::in_memory(StaticGraph::default(), states.clone()).unpartitioned();
        let replicas: Vec<OwnedStates<Counter>> = (0..3).map(|_| OwnedStates::new()).collect();
        for i in 0..30u32 {
            let n = replicas[i as usize % 3]
                .update(&ctx, "p", "p1", &format!("e{i}"), increment)
                .await;
            assert_eq!(n.unwrap(), 11 + i);
            let earlier = i.saturating_sub(5);
            let again = replicas[(i as usize + 1) % 3]
                .update(&ctx, "p", "p1", &format!("e{earlier}"), increment)
                .await;
            assert_eq!(again.unwrap(), 11 + earlier, "redelivery of e{earlier}");
        }
        let stored = states.latest("p", "p1").await.unwrap().unwrap();
        let data = crate::event::data_json(&stored).unwrap();
        assert_eq!(data[OWNED_MEMBER][0]["state"]["n"], 40);
        let key = ("p".to_owned(), "p1".to_owned());
        assert_eq!(
            replicas[0].bytes(),
            instance_bytes::<Counter>(&key, 0),
            "no state kept in memory, only the instance's key and empty slot"
        );
    }

    #[tokio::test]
    async fn memory_stays_within_its_bytes_and_forgotten_states_reload() {
        let states = Arc::new(MemoryStates::new());
        states.put(store_event("p", "instance-0", serde_json::json!({"n": 100})).unwrap());
        let ctx = TwinContext::in_memory(StaticGraph::default(), states);
        let limits = OwnedLimits {
            max_bytes: 4096,
            remembered_events: 8,
        };
        let owned = OwnedStates::<Counter>::with_limits(limits);
        for i in 0..2000 {
            let instance = format!("instance-{}", i % 500);
            owned
                .update(&ctx, "p", &instance, &format!("e{i}"), increment)
                .await
                .unwrap();
            assert!(owned.bytes() <= limits.max_bytes, "{} bytes", owned.bytes());
        }
        assert!(owned.instances() < 500, "{} instances", owned.instances());
        // A forgotten instance starts again from the store.
        let n = owned
            .update(&ctx, "p", "instance-0", "again", increment)
            .await
            .unwrap();
        assert_eq!(n, 101);
    }
}
