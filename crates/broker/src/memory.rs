//! In-process broker: a bounded queue per subscription, backpressure on publish.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};
use tokio::sync::{Notify, Semaphore};

use crate::delivery::{DeliverySource, Settle, Settlement};
use crate::{
    Broker, BrokerError, DeadLetter, Delivery, PublishOutcome, Subscription, SubscriptionSpec,
    TypeFilter, metric_names,
};

/// Limits of a [`MemoryBroker`].
#[derive(Debug, Clone)]
pub struct MemoryBrokerConfig {
    /// Events a subscription holds at most, ready and unacknowledged together. Publishers wait
    /// when a matching subscription is full.
    pub queue_capacity: usize,
    /// Dead letters kept per subscription; older ones are discarded (and counted) beyond that.
    pub dead_letter_capacity: usize,
    /// How long a publisher waits for room before failing with
    /// [`BrokerError::Backpressure`]; `None` waits forever.
    pub publish_timeout: Option<Duration>,
}

impl Default for MemoryBrokerConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            dead_letter_capacity: 1_000,
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
}

struct Entry {
    event: Event,
    delivery_count: u32,
}

struct QueueState {
    ready: VecDeque<Entry>,
    dead: VecDeque<DeadLetter>,
    closed: bool,
    consumers: usize,
}

struct Queue {
    name: String,
    filter: TypeFilter,
    max_deliveries: u32,
    dead_letter_capacity: usize,
    /// Free slots: a slot is held from publish until ack or dead-letter, so ready plus
    /// in-flight events never exceed the capacity.
    slots: Semaphore,
    state: Mutex<QueueState>,
    available: Notify,
}

impl Queue {
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

    fn dead_letter(&self, entry: Entry, reason: String) {
        tracing::warn!(subscription = %self.name, id = entry.event.id(), %reason, "dead-lettering event");
        metrics::counter!(metric_names::DEAD_LETTERS, "subscription" => self.name.clone())
            .increment(1);
        let letter = DeadLetter {
            subscription: self.name.clone(),
            reason,
            event: Some(entry.event),
            raw: None,
            at: chrono::Utc::now(),
        };
        let mut state = self.state.lock().expect("queue lock");
        if state.dead.len() >= self.dead_letter_capacity {
            state.dead.pop_front();
            tracing::warn!(subscription = %self.name, "dead-letter buffer full, discarding the oldest");
        }
        state.dead.push_back(letter);
        drop(state);
        self.slots.add_permits(1);
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
        let mut routes = self.inner.routes.write().expect("routes lock");
        // Types come from outside too (the HTTP ingress): start over rather than grow forever.
        if routes.len() >= MAX_CACHED_ROUTES {
            routes.clear();
        }
        routes.insert(ty.to_owned(), Arc::clone(&route));
        route
    }

    async fn reserve(&self, queue: &Queue) -> Result<(), BrokerError> {
        let acquire = queue.slots.acquire();
        let permit = match self.inner.config.publish_timeout {
            None => acquire.await,
            Some(timeout) => tokio::time::timeout(timeout, acquire).await.map_err(|_| {
                BrokerError::Backpressure {
                    subscription: queue.name.clone(),
                    waited: timeout,
                }
            })?,
        };
        permit
            .map_err(|_| {
                BrokerError::Unavailable(format!("subscription {:?} was deleted", queue.name))
            })?
            .forget();
        Ok(())
    }

    fn remove_queue(inner: &Inner, name: &str) -> Option<Arc<Queue>> {
        let queue = {
            let mut queues = inner.queues.write().expect("queues lock");
            let queue = queues.remove(name)?;
            inner.routes.write().expect("routes lock").clear();
            queue
        };
        queue.slots.close();
        let mut state = queue.state.lock().expect("queue lock");
        state.closed = true;
        let discarded = state.ready.len();
        let dead = std::mem::take(&mut state.dead);
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
        let queues = self.matching(event.ty());
        let Some((last, rest)) = queues.split_last() else {
            metrics::counter!(metric_names::UNROUTABLE, "event_type" => event.ty().to_owned())
                .increment(1);
            return Ok(PublishOutcome::Unroutable);
        };
        for queue in rest {
            self.reserve(queue).await?;
            queue.push_back(Entry {
                event: event.clone(),
                delivery_count: 0,
            });
        }
        self.reserve(last).await?;
        last.push_back(Entry {
            event,
            delivery_count: 0,
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
        let queue = {
            let mut queues = self.inner.queues.write().expect("queues lock");
            let queue = queues.entry(spec.name.clone()).or_insert_with(|| {
                self.inner.routes.write().expect("routes lock").clear();
                Arc::new(Queue {
                    name: spec.name.clone(),
                    filter: spec.filter.clone(),
                    max_deliveries: spec.max_deliveries,
                    dead_letter_capacity: self.inner.config.dead_letter_capacity.max(1),
                    slots: Semaphore::new(self.inner.config.queue_capacity.max(1)),
                    state: Mutex::new(QueueState {
                        ready: VecDeque::new(),
                        dead: VecDeque::new(),
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
            taken.extend(state.dead.drain(..n));
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
                    for mut entry in state.ready.drain(..n) {
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
    fn entry(&self, event: Event) -> Entry {
        Entry {
            event,
            delivery_count: self.delivery_count,
        }
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn settle(
        self: Box<Self>,
        event: Event,
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        match settlement {
            Settlement::Ack => self.queue.slots.add_permits(1),
            Settlement::Requeue => self.queue.requeue(self.entry(event)),
            Settlement::DeadLetter(reason) => self.queue.dead_letter(self.entry(event), reason),
        }
        Ok(())
    }

    fn requeue_on_drop(self: Box<Self>, event: Event) {
        self.queue.requeue(self.entry(event));
    }
}
