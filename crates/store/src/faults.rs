//! A backend that lets a fault in before each commit (feature `faults`): `ktwin bench soak`
//! switches a store outage on and off through it, and the store-outage tests inject transient
//! and permanent failures. Every method but [`Backend::append`] and [`Backend::append_if`] is
//! the wrapped backend's.

use std::sync::Arc;

use async_trait::async_trait;
use ktwin_events::trace::TraceId;

use crate::backend::{AppendReport, Backend, EventPosition, HistoryQuery, Page, StoreError};
use crate::conditional::{ConditionalAppend, Precondition};
use crate::dead_letters::DeadLetterStore;
use crate::event::{InstanceKey, LatestState, TwinEvent};

/// Decides, before each commit, whether it fails and with what.
pub type AppendGate = Box<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

/// A real backend whose appends first pass a gate.
pub struct GatedBackend {
    inner: Arc<dyn Backend>,
    gate: AppendGate,
}

impl GatedBackend {
    /// `inner`, whose appends first call `gate`: an error from it fails the append with that
    /// error, and nothing is written.
    pub fn new(
        inner: Arc<dyn Backend>,
        gate: impl Fn() -> Result<(), StoreError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            gate: Box::new(gate),
        }
    }
}

#[async_trait]
impl Backend for GatedBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn concurrent_appends(&self) -> usize {
        self.inner.concurrent_appends()
    }
    async fn append(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        (self.gate)()?;
        self.inner.append(events).await
    }
    async fn append_if(
        &self,
        event: TwinEvent,
        precondition: &Precondition,
    ) -> Result<ConditionalAppend, StoreError> {
        (self.gate)()?;
        self.inner.append_if(event, precondition).await
    }
    async fn latest(&self, key: &InstanceKey) -> Result<Option<LatestState>, StoreError> {
        self.inner.latest(key).await
    }
    async fn history(
        &self,
        key: &InstanceKey,
        query: &HistoryQuery,
    ) -> Result<Page<TwinEvent>, StoreError> {
        self.inner.history(key, query).await
    }
    async fn events(
        &self,
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Page<TwinEvent>, StoreError> {
        self.inner.events(after, limit).await
    }
    async fn twins(
        &self,
        interface: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<LatestState>, StoreError> {
        self.inner.twins(interface, after, limit).await
    }
    async fn trace(&self, trace: TraceId, limit: usize) -> Result<Page<TwinEvent>, StoreError> {
        self.inner.trace(trace, limit).await
    }
    async fn delete(&self, key: &InstanceKey) -> Result<u64, StoreError> {
        self.inner.delete(key).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
    fn dead_letters(&self) -> Option<&dyn DeadLetterStore> {
        self.inner.dead_letters()
    }
}
