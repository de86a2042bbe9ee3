//! The graph being served: the last good graph and the source's latest error.

use std::sync::Arc;

use ktwin_model::InstanceGraph;
use tokio::sync::watch;

/// What the service knows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The last graph the source delivered; `None` until the source first succeeded.
    pub graph: Option<Arc<InstanceGraph>>,
    /// Why the source failed most recently, cleared by the next success.
    pub error: Option<String>,
}

/// Shared, watchable holder of the served graph. Sources publish into it; handlers read it.
/// Failures keep the last good graph (the original emptied its cache on errors).
#[derive(Debug, Clone)]
pub struct GraphState {
    sender: Arc<watch::Sender<Snapshot>>,
}

impl Default for GraphState {
    fn default() -> Self {
        Self::new()
    }
}

impl GraphState {
    /// No graph yet: requests get 503 until a source publishes.
    pub fn new() -> Self {
        Self {
            sender: Arc::new(watch::Sender::new(Snapshot::default())),
        }
    }

    /// Serves `graph` from now on.
    pub fn publish(&self, graph: InstanceGraph) {
        let graph = Arc::new(graph);
        self.sender.send_modify(|snapshot| {
            snapshot.graph = Some(graph);
            snapshot.error = None;
        });
    }

    /// Records that the source failed; the last good graph, if any, stays served.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!(%reason, "twin graph source failed");
        self.sender
            .send_modify(|snapshot| snapshot.error = Some(reason));
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.sender.borrow().clone()
    }

    /// A receiver notified on every change.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.sender.subscribe()
    }
}
