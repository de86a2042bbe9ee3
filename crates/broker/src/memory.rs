//! In-process broker: a bounded queue per subscription, backpressure on publish.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Data, Event};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use crate::delivery::{DeliverySource, Settle, Settlement};
use crate::{
    Broker, BrokerError, DeadLetter, DeadLetterSink, Delivery, NewDeadLetter, PublishOutcome,
    Subscription, SubscriptionSpec, TypeFilter, metric_names,
};

/// Where a broker's dead letters go, once set: shared by its queues.
type SinkSlot = Arc<RwLock<Option<Arc<dyn DeadLetterSink>>>>;

/// Limits of a [`MemoryBroker`].
#[derive(Debug, Clone)]
pub struct MemoryBrokerConfig {
    /// Events a subscription holds at most, ready and unacknowledged together. Publishers wait
    /// when a matching subscription is full.
    pub queue_capacity: usize,
    /// Bytes of events (see [`held_bytes`]) waiting in a subscription for a consumer at most:
    /// device payloads of up to megabytes would otherwise let `queue_capacity` events take
    /// gigabytes. Publishers wait for room as for a slot; an event larger than the whole bound
    /// (which is at most 4 GiB) is taken once no other is waiting. Events handed to consumers
    /// are bounded by the consumers' own parallelism instead: a consumer that publishes into
    /// the subscription it reads before acknowledging (a service replying to itself) would
    /// otherwise wait for bytes only its own acknowledgement frees. A requeued event waits
    /// again without being charged again.
    pub queue_bytes: usize,
    /// Bytes of dead letters (see [`NewDeadLetter::size`]) kept in memory per subscription
    /// when no [`DeadLetterSink`] is set ([`MemoryBroker::keep_dead_letters_in`]); beyond it
    /// the oldest are discarded, counted in `ktwin_broker_dead_letters_discarded_total` and
    /// logged.
    pub dead_letter_bytes: usize,
    /// How long a publisher waits for room before failing with
    /// [`BrokerError::Backpressure`]; `None` waits forever.
    pub publish_timeout: Option<Duration>,
}

impl Default for MemoryBrokerConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            queue_bytes: 64 * 1024 * 1024,
            dead_letter_bytes: 16 * 1024 * 1024,
            publish_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Event types whose matching subscriptions a broker remembers at most.
const MAX_CACHED_ROUTES: usize = 4096;

/// The in-memory [`Broker`]. Cloning shares the broker.
///
/// A subscription's queue lives while at least one [`Subscription`] handle of that name exists
/// (or until [`Broker::delete_subscription`]): an in-process queue nobody consumes would only
/// block publishers. Unsettled deliveries of a dropped subscription are discarded with it.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    config: MemoryBrokerConfig,
    /// Subscriptions by name. Dead letters of removed subscriptions stay until taken.
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// The subscriptions matching each event type published so far, in name order: matching
    /// every subscription's filter on every publish cost more than the enqueueing. Filled and
    /// cleared only under the `queues` lock (read to fill, write to clear), so an entry never
    /// outlives a change of the subscriptions.
    routes: RwLock<HashMap<String, Arc<[Arc<Queue>]>>>,
    orphan_dead_letters: Mutex<HashMap<String, VecDeque<DeadLetter>>>,
    dead_letter_sink: SinkSlot,
}

struct Entry {
    /// Shared by every queue the event was published to: a publish to several subscriptions
    /// copies a pointer, not the event.
    event: Arc<Event>,
    delivery_count: u32,
    /// The bytes it holds of its queue's bound until a consumer takes it (none once requeued).
    charge: u32,
}

struct QueueState {
    ready: VecDeque<Entry>,
    dead: VecDeque<DeadLetter>,
    /// Bytes of `dead`, as [`NewDeadLetter::size`] counts them.
    dead_bytes: usize,
    closed: bool,
    consumers: usize,
}

struct Queue {
    name: String,
    filter: TypeFilter,
    max_deliveries: u32,
    dead_letter_bytes: usize,
    dead_letter_sink: SinkSlot,
    /// Free slots: a slot is held from publish until ack or dead-letter, so ready plus
    /// in-flight events never exceed the capacity.
    slots: Semaphore,
    /// Free bytes, held by each waiting event's [`Entry::charge`].
    bytes: Semaphore,
    /// The most one event is charged: the whole byte bound.
    max_charge: u32,
    state: Mutex<QueueState>,
    available: Notify,
}

impl Queue {
    /// What an event of `bytes` ([`held_bytes`]) is charged in this queue: at most the whole
    /// bound.
    fn charge(&self, bytes: usize) -> u32 {
        u32::try_from(bytes).map_or(self.max_charge, |bytes| bytes.min(self.max_charge))
    }

    fn push_back(&self, entry: Entry) {
        self.state
            .lock()
            .expect("queue lock")
            .ready
            .push_back(entry);
        self.available.notify_one();
    }

    fn requeue(&self, entry: Entry) {
        // Requeued events go first, so a transient failure does not reorder much.
        self.state
            .lock()
            .expect("queue lock")
            .ready
            .push_front(entry);
        self.available.notify_one();
    }

    /// Gives up on `entry`: to the broker's dead-letter sink when it has one (if the sink
    /// fails, the event is requeued rather than lost), else into the queue's byte-bounded
    /// buffer.
    async fn dead_letter(&self, entry: Entry, reason: String) {
        tracing::warn!(subscription = %self.name, id = entry.event.id(), %reason, "dead-lettering event");
        let sink = self
            .dead_letter_sink
            .read()
            .expect("dead-letter sink lock")
            .clone();
        if let Some(sink) = sink {
            let letter = NewDeadLetter::of_event(&self.name, &reason, &entry.event);
            if let Err(error) = sink.put(letter).await {
                tracing::warn!(subscription = %self.name, id = entry.event.id(), %error, "keeping a dead letter failed; the event is requeued");
                self.requeue(entry);
                return;
            }
        } else {
            self.keep_dead_letter(entry, reason);
        }
        metrics::counter!(metric_names::DEAD_LETTERS, "subscription" => self.name.clone())
            .increment(1);
        self.slots.add_permits(1);
    }

    /// Keeps a dead letter in memory, discarding the oldest (counted, logged) beyond the
    /// queue's byte bound.
    fn keep_dead_letter(&self, entry: Entry, reason: String) {
        let size = NewDeadLetter::of_event(&self.name, &reason, &entry.event).size();
        let letter = DeadLetter {
            subscription: self.name.clone(),
            reason,
            event: Some(Arc::unwrap_or_clone(entry.event)),
            raw: None,
            at: chrono::Utc::now(),
        };
        let mut state = self.state.lock().expect("queue lock");
        let mut discarded = 0u64;
        while state.dead_bytes + size > self.dead_letter_bytes {
            let Some(oldest) = state.dead.pop_front() else {
                break;
            };
            state.dead_bytes -= dead_letter_size(&oldest);
            discarded += 1;
        }
        state.dead_bytes += size;
        state.dead.push_back(letter);
        drop(state);
        if discarded > 0 {
            metrics::counter!(metric_names::DEAD_LETTERS_DISCARDED, "subscription" => self.name.clone())
                .increment(discarded);
            tracing::warn!(subscription = %self.name, discarded, bound = self.dead_letter_bytes, "in-memory dead letters over their byte bound: the oldest were discarded");
        }
    }
}

/// Bytes `event` keeps alive in memory, as the broker's byte bounds count them: the event
/// itself, its attributes' and extensions' text, and its data. JSON data counts each value as
/// `serde_json` holds it plus its strings and keys, so a payload parsed into many small values
/// counts more than its text.
pub fn held_bytes(event: &Event) -> usize {
    let text = |value: Option<&str>| value.map_or(0, str::len);
    let attributes = event.id().len()
        + event.ty().len()
        + event.source().len()
        + text(event.subject())
        + text(event.datacontenttype())
        + event.dataschema().map_or(0, |schema| schema.as_str().len());
    let extensions: usize = event
        .iter_extensions()
        .map(|(name, value)| name.len() + size_of::<ExtensionValue>() + extension_text(value))
        .sum();
    let data = match event.data() {
        None => 0,
        Some(Data::Binary(bytes)) => bytes.len(),
        Some(Data::String(text)) => text.len(),
        Some(Data::Json(value)) => json_bytes(value),
    };
    size_of::<Event>() + attributes + extensions + data
}

fn extension_text(value: &ExtensionValue) -> usize {
    match value {
        ExtensionValue::String(text) => text.len(),
        ExtensionValue::Boolean(_) | ExtensionValue::Integer(_) => 0,
    }
}

/// Bytes a JSON value holds: the value itself, and its strings, keys and items.
fn json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    size_of::<Value>()
        + match value {
            Value::String(text) => text.len(),
            Value::Array(items) => items.iter().map(json_bytes).sum(),
            Value::Object(members) => members
                .iter()
                .map(|(key, value)| size_of::<String>() + key.len() + json_bytes(value))
                .sum(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

/// What a kept dead letter counts against its queue's byte bound.
fn dead_letter_size(letter: &DeadLetter) -> usize {
    match &letter.event {
        Some(event) => NewDeadLetter::of_event(&letter.subscription, &letter.reason, event).size(),
        None => letter.raw.as_ref().map_or(0, Vec::len) + letter.reason.len(),
    }
}

impl MemoryBroker {
    /// A broker with the given limits.
    pub fn new(config: MemoryBrokerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                ..Inner::default()
            }),
        }
    }

    /// Sends dead letters of every subscription to `sink` from now on (the event store, say)
    /// instead of keeping them in memory.
    pub fn keep_dead_letters_in(&self, sink: Arc<dyn DeadLetterSink>) {
        *self
            .inner
            .dead_letter_sink
            .write()
            .expect("dead-letter sink lock") = Some(sink);
    }

    /// The sink set by [`keep_dead_letters_in`](Self::keep_dead_letters_in), if any: other
    /// components of the same platform (a dispatcher) keep their dead letters there too.
    pub fn dead_letter_sink(&self) -> Option<Arc<dyn DeadLetterSink>> {
        self.inner
            .dead_letter_sink
            .read()
            .expect("dead-letter sink lock")
            .clone()
    }

    /// Events currently held by subscription `name` (ready and unacknowledged), if it exists.
    pub fn depth(&self, name: &str) -> Option<usize> {
        let queues = self.inner.queues.read().expect("queues lock");
        let queue = queues.get(name)?;
        Some(self.inner.config.queue_capacity - queue.slots.available_permits())
    }

    fn matching(&self, ty: &str) -> Arc<[Arc<Queue>]> {
        if let Some(route) = self.inner.routes.read().expect("routes lock").get(ty) {
            return Arc::clone(route);
        }
        let queues = self.inner.queues.read().expect("queues lock");
        let mut matching: Vec<Arc<Queue>> = queues
            .values()
            .filter(|q| q.filter.matches(ty))
            .cloned()
            .collect();
        // A fixed order keeps concurrent publishers from interleaving differently per queue.
        matching.sort_by(|a, b| a.name.cmp(&b.name));
        let route: Arc<[Arc<Queue>]> = matching.into();
        if ty.len() > ktwin_events::MAX_EVENT_TYPE_LEN {
            // No ktwin type: routed, but not kept (4,096 such types could each be megabytes).
            return route;
        }
        let mut routes = self.inner.routes.write().expect("routes lock");
        // Types come from outside too (the HTTP ingress): start over rather than grow forever.
        if routes.len() >= MAX_CACHED_ROUTES {
            routes.clear();
        }
        routes.insert(ty.to_owned(), Arc::clone(&route));
        route
    }

    /// A slot and `charge` bytes of `queue`, waited for (at most the publish timeout). They
    /// return to the queue when dropped, so a publish given up on (the timeout, or the
    /// publisher's future dropped) leaves nothing taken; one that succeeds forgets them.
    async fn reserve<'q>(
        &self,
        queue: &'q Queue,
        charge: u32,
    ) -> Result<[SemaphorePermit<'q>; 2], BrokerError> {
        let acquire = async {
            let slot = queue.slots.acquire().await?;
            let bytes = queue.bytes.acquire_many(charge).await?;
            Ok([slot, bytes])
        };
        let acquired = match self.inner.config.publish_timeout {
            None => acquire.await,
            Some(timeout) => tokio::time::timeout(timeout, acquire).await.map_err(|_| {
                BrokerError::Backpressure {
                    subscription: queue.name.clone(),
                    waited: timeout,
                }
            })?,
        };
        acquired.map_err(|_: tokio::sync::AcquireError| {
            BrokerError::Unavailable(format!("subscription {:?} was deleted", queue.name))
        })
    }

    fn remove_queue(inner: &Inner, name: &str) -> Option<Arc<Queue>> {
        let queue = {
            let mut queues = inner.queues.write().expect("queues lock");
            let queue = queues.remove(name)?;
            inner.routes.write().expect("routes lock").clear();
            queue
        };
        queue.slots.close();
        queue.bytes.close();
        let mut state = queue.state.lock().expect("queue lock");
        state.closed = true;
        let discarded = state.ready.len();
        let dead = std::mem::take(&mut state.dead);
        state.dead_bytes = 0;
        drop(state);
        queue.available.notify_waiters();
        if discarded > 0 {
            tracing::warn!(
                subscription = name,
                discarded,
                "subscription removed with undelivered events"
            );
        }
        if !dead.is_empty() {
            inner
                .orphan_dead_letters
                .lock()
                .expect("dead letters lock")
                .entry(name.to_owned())
                .or_default()
                .extend(dead);
        }
        Some(queue)
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, event: Event) -> Result<PublishOutcome, BrokerError> {
        self.publish_shared(Arc::new(event)).await
    }

    async fn publish_shared(&self, event: Arc<Event>) -> Result<PublishOutcome, BrokerError> {
        let queues = self.matching(event.ty());
        let Some((last, rest)) = queues.split_last() else {
            metric_names::count_unroutable(event.ty());
            return Ok(PublishOutcome::Unroutable);
        };
        // Room in every matching queue first, then the event into all of them: a publish
        // that fails (one queue stayed full) or is dropped while it waits leaves no copy and
        // no room taken anywhere, so the publisher's retry gives no queue a second one.
        let bytes = held_bytes(&event);
        let mut reserved = Vec::with_capacity(queues.len());
        for queue in queues.iter() {
            reserved.push(self.reserve(queue, queue.charge(bytes)).await?);
        }
        reserved
            .into_iter()
            .flatten()
            .for_each(SemaphorePermit::forget);
        for queue in rest {
            queue.push_back(Entry {
                event: Arc::clone(&event),
                delivery_count: 0,
                charge: queue.charge(bytes),
            });
        }
        let charge = last.charge(bytes);
        last.push_back(Entry {
            event,
            delivery_count: 0,
            charge,
        });
        Ok(PublishOutcome::Routed)
    }

    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, BrokerError> {
        if spec.filter.is_empty() {
            return Err(BrokerError::InvalidSubscription {
                name: spec.name,
                reason: "the type filter matches nothing".into(),
            });
        }
        // A charge is taken in one `u32` of permits.
        let max_charge = u32::try_from(self.inner.config.queue_bytes.max(1)).unwrap_or(u32::MAX);
        let queue = {
            let mut queues = self.inner.queues.write().expect("queues lock");
            let queue = queues.entry(spec.name.clone()).or_insert_with(|| {
                self.inner.routes.write().expect("routes lock").clear();
                Arc::new(Queue {
                    name: spec.name.clone(),
                    filter: spec.filter.clone(),
                    max_deliveries: spec.max_deliveries,
                    dead_letter_bytes: self.inner.config.dead_letter_bytes,
                    dead_letter_sink: Arc::clone(&self.inner.dead_letter_sink),
                    slots: Semaphore::new(self.inner.config.queue_capacity.max(1)),
                    bytes: Semaphore::new(max_charge as usize),
                    max_charge,
                    state: Mutex::new(QueueState {
                        ready: VecDeque::new(),
                        dead: VecDeque::new(),
                        dead_bytes: 0,
                        closed: false,
                        consumers: 0,
                    }),
                    available: Notify::new(),
                })
            });
            if queue.filter != spec.filter {
                return Err(BrokerError::InvalidSubscription {
                    name: spec.name,
                    reason: format!(
                        "already exists with filter {}, not {}",
                        queue.filter, spec.filter
                    ),
                });
            }
            queue.state.lock().expect("queue lock").consumers += 1;
            Arc::clone(queue)
        };
        Ok(Subscription::new(
            spec.name,
            Box::new(MemorySource {
                queue,
                broker: Arc::downgrade(&self.inner),
            }),
        ))
    }

    async fn delete_subscription(&self, name: &str) -> Result<(), BrokerError> {
        Self::remove_queue(&self.inner, name);
        self.inner
            .orphan_dead_letters
            .lock()
            .expect("dead letters lock")
            .remove(name);
        Ok(())
    }

    async fn take_dead_letters(
        &self,
        name: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let mut taken = Vec::new();
        if let Some(orphans) = self
            .inner
            .orphan_dead_letters
            .lock()
            .expect("dead letters lock")
            .get_mut(name)
        {
            let n = max.min(orphans.len());
            taken.extend(orphans.drain(..n));
        }
        if let Some(queue) = self.inner.queues.read().expect("queues lock").get(name) {
            let mut state = queue.state.lock().expect("queue lock");
            let n = (max - taken.len()).min(state.dead.len());
            let drained: Vec<DeadLetter> = state.dead.drain(..n).collect();
            let freed: usize = drained.iter().map(dead_letter_size).sum();
            state.dead_bytes = state.dead_bytes.saturating_sub(freed);
            taken.extend(drained);
        }
        Ok(taken)
    }
}

struct MemorySource {
    queue: Arc<Queue>,
    broker: Weak<Inner>,
}

#[async_trait]
impl DeliverySource for MemorySource {
    async fn recv_many(&mut self, out: &mut Vec<Delivery>, max: usize) -> usize {
        loop {
            {
                let mut state = self.queue.state.lock().expect("queue lock");
                if !state.ready.is_empty() {
                    let n = max.min(state.ready.len());
                    let more_left = state.ready.len() > n;
                    let mut taken_bytes = 0;
                    for mut entry in state.ready.drain(..n) {
                        taken_bytes += entry.charge as usize;
                        entry.delivery_count += 1;
                        out.push(Delivery::new(
                            entry.event,
                            entry.delivery_count,
                            self.queue.max_deliveries,
                            Box::new(MemorySettle {
                                queue: Arc::clone(&self.queue),
                                delivery_count: entry.delivery_count,
                            }),
                        ));
                    }
                    drop(state);
                    self.queue.bytes.add_permits(taken_bytes);
                    if more_left {
                        // Let a competing consumer take the rest.
                        self.queue.available.notify_one();
                    }
                    return n;
                }
                if state.closed {
                    return 0;
                }
            }
            self.queue.available.notified().await;
        }
    }
}

impl Drop for MemorySource {
    fn drop(&mut self) {
        let last = {
            let mut state = self.queue.state.lock().expect("queue lock");
            state.consumers -= 1;
            state.consumers == 0 && !state.closed
        };
        if last && let Some(inner) = self.broker.upgrade() {
            // Only remove the queue if it is still this one (not re-created meanwhile).
            let same = inner
                .queues
                .read()
                .expect("queues lock")
                .get(&self.queue.name)
                .is_some_and(|q| Arc::ptr_eq(q, &self.queue));
            if same {
                MemoryBroker::remove_queue(&inner, &self.queue.name);
            }
        }
    }
}

struct MemorySettle {
    queue: Arc<Queue>,
    delivery_count: u32,
}

impl MemorySettle {
    fn entry(&self, event: Arc<Event>) -> Entry {
        Entry {
            event,
            delivery_count: self.delivery_count,
            charge: 0,
        }
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn settle(
        self: Box<Self>,
        event: Arc<Event>,
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        match settlement {
            Settlement::Ack => self.queue.slots.add_permits(1),
            Settlement::Requeue => self.queue.requeue(self.entry(event)),
            Settlement::DeadLetter(reason) => {
                self.queue.dead_letter(self.entry(event), reason).await;
            }
        }
        Ok(())
    }

    fn requeue_on_drop(self: Box<Self>, event: Arc<Event>) {
        self.queue.requeue(self.entry(event));
    }
}
