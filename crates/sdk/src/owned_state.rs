//! State a service owns and updates from event to event (counters, aggregates, the previous
//! reading), without the lost updates of the original services.
//!
//! The originals read the event store, computed, and wrote back through the broker: the next
//! event could read the old state while the write was still queued, and concurrent events
//! overwrote each other (defect 10.4 #2). [`OwnedStates`] serialises updates per instance and
//! keeps the state it last emitted (write-through), so the store is read only the first time
//! an instance is seen. A redelivered event (same id as the last update) starts again from the
//! state before that update, so retries do not apply it twice.
//!
//! One replica owns an instance's state; several replicas of one service would each keep
//! their own copy, so such services run with a single replica (or a partitioned runtime).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

use crate::context::TwinContext;
use crate::error::HandlerError;

struct Slot<T> {
    loaded: bool,
    current: Option<T>,
    before_last: Option<T>,
    last_event_id: Option<String>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            loaded: false,
            current: None,
            before_last: None,
            last_event_id: None,
        }
    }
}

type SlotRef<T> = Arc<tokio::sync::Mutex<Slot<T>>>;

/// Per-instance states of type `T`, keyed by (interface, instance).
pub struct OwnedStates<T> {
    slots: Mutex<HashMap<(String, String), SlotRef<T>>>,
}

impl<T> Default for OwnedStates<T> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: DeserializeOwned + Clone + Send> OwnedStates<T> {
    /// No states yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `update` on the state of `instance` (loaded from the event store on first use),
    /// one event at a time per instance. `update` gets the previous state (`None` if there is
    /// none) and returns the new state and a result; the new state is kept only if `update`
    /// succeeds.
    pub async fn update<R>(
        &self,
        ctx: &TwinContext,
        interface: &str,
        instance: &str,
        event_id: &str,
        update: impl FnOnce(Option<T>) -> Result<(T, R), HandlerError>,
    ) -> Result<R, HandlerError> {
        let slot = {
            let mut slots = self.slots.lock().expect("state map lock poisoned");
            slots
                .entry((interface.to_owned(), instance.to_owned()))
                .or_default()
                .clone()
        };
        let mut slot = slot.lock().await;
        if !slot.loaded {
            slot.current = ctx.latest::<T>(interface, instance).await?;
            slot.loaded = true;
        }
        let previous = if slot.last_event_id.as_deref() == Some(event_id) {
            slot.before_last.clone()
        } else {
            slot.current.clone()
        };
        let (next, result) = update(previous.clone())?;
        slot.before_last = previous;
        slot.current = Some(next);
        slot.last_event_id = Some(event_id.to_owned());
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::store_event;
    use crate::graph::StaticGraph;
    use crate::state::MemoryStates;

    #[derive(Clone, serde::Deserialize)]
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
        assert_eq!(again, 31, "a redelivery starts from the state before it");
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
}
