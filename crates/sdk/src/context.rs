//! What a handler may consult besides its event: the twin graph, the latest state of any
//! twin, and the clock. Each sits behind a trait so the local runtime can plug in its
//! in-process implementations and tests can use in-memory ones.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::error::HandlerError;
use crate::event::decode_data;
use crate::graph::{GraphLookup, Relationship, StaticGraph};
use crate::state::{MemoryStates, StateLookup};

/// A source of "now", injectable so tests are deterministic.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The context handed to a handler with every event. Cheap to clone.
#[derive(Clone)]
pub struct TwinContext {
    graph: Arc<dyn GraphLookup>,
    states: Arc<dyn StateLookup>,
    clock: Clock,
    owner_epoch: u64,
    partitioned: bool,
}

/// HTTP header by which a runtime that partitions a service's events by instance (`ktwin up`)
/// tells a replica since when it owns the event's instance: a number that grows each time the
/// instance's events move to another replica. A replica that sees a larger number than when it
/// last loaded an instance's [`crate::OwnedStates`] reads the state from the store again,
/// since another replica may have changed it meanwhile.
pub const OWNER_EPOCH_HEADER: &str = "ktwin-owner-epoch";

impl TwinContext {
    /// A context over a graph and a state store, with the system clock.
    pub fn new(graph: Arc<dyn GraphLookup>, states: Arc<dyn StateLookup>) -> Self {
        Self {
            graph,
            states,
            clock: Arc::new(Utc::now),
            owner_epoch: 0,
            partitioned: true,
        }
    }

    /// An in-memory context (for tests and tools).
    pub fn in_memory(graph: StaticGraph, states: Arc<MemoryStates>) -> Self {
        Self::new(Arc::new(graph), states)
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A context whose clock is frozen at `now`.
    pub fn at(self, now: DateTime<Utc>) -> Self {
        self.with_clock(Arc::new(move || now))
    }

    /// The context of a delivery whose instance this replica owns since `epoch`
    /// ([`OWNER_EPOCH_HEADER`]).
    pub fn with_owner_epoch(mut self, epoch: u64) -> Self {
        self.owner_epoch = epoch;
        self
    }

    /// The context of a delivery that nothing partitioned: other replicas may be handling
    /// events of the same instance at the same time (Knative on a cluster spreads a service's
    /// requests over its pods). [`crate::OwnedStates`] then keeps the state in the event store
    /// and writes it conditionally instead of trusting its memory. The SDK's server marks every
    /// delivery without [`OWNER_EPOCH_HEADER`] so.
    pub fn unpartitioned(mut self) -> Self {
        self.partitioned = false;
        self
    }

    /// Whether all events of the delivered event's instance reach this replica, one at a time
    /// per [`crate::OwnedStates`] (`ktwin up`, in process or partitioned over replicas); false
    /// after [`unpartitioned`](Self::unpartitioned).
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// Since when this replica owns the delivered event's instance ([`OWNER_EPOCH_HEADER`]);
    /// 0 when the platform does not say.
    pub fn owner_epoch(&self) -> u64 {
        self.owner_epoch
    }

    /// Now, per the context's clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The graph lookup.
    pub fn graph(&self) -> &dyn GraphLookup {
        self.graph.as_ref()
    }

    /// The state lookup.
    pub fn states(&self) -> &dyn StateLookup {
        self.states.as_ref()
    }

    /// The relationship `name` of `instance` (of `interface`). A twin missing from the graph
    /// or without that relationship is [`HandlerError::Invalid`]: redelivering cannot help,
    /// the model and the world disagree.
    pub async fn relationship(
        &self,
        interface: &str,
        instance: &str,
        name: &str,
    ) -> Result<Relationship, HandlerError> {
        self.find_relationship(interface, instance, &[name])
            .await?
            .ok_or_else(|| {
                HandlerError::Invalid(format!(
                    "relationship {name:?} not found for twin {interface}/{instance} in the twin graph"
                ))
            })
    }

    /// The first relationship of `instance` whose name is one of `names` (in that order of
    /// preference); `None` when the twin has none of them.
    pub async fn find_relationship(
        &self,
        interface: &str,
        instance: &str,
        names: &[&str],
    ) -> Result<Option<Relationship>, HandlerError> {
        let node = self.graph.twin(interface, instance).await?.ok_or_else(|| {
            HandlerError::Invalid(format!(
                "twin {interface}/{instance} is not in the twin graph"
            ))
        })?;
        Ok(names
            .iter()
            .find_map(|name| node.relationship(name))
            .cloned())
    }

    /// The latest stored state of `instance` decoded into `T` (case-insensitive keys);
    /// `None` when nothing is stored. Undecodable stored data is [`HandlerError::Failed`].
    pub async fn latest<T: DeserializeOwned>(
        &self,
        interface: &str,
        instance: &str,
    ) -> Result<Option<T>, HandlerError> {
        let Some(event) = self.states.latest(interface, instance).await? else {
            return Ok(None);
        };
        decode_data(&event).map(Some).map_err(|err| {
            HandlerError::Failed(format!(
                "stored state of {interface}/{instance} is not a valid {}: {err}",
                std::any::type_name::<T>()
            ))
        })
    }
}
