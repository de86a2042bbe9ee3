//! The platform's background tasks, grouped by the stage of shutdown that awaits them.
//!
//! A task's panic must not vanish: `let _ = handle.await` discarded it, so a consumer that
//! crashed looked like one that finished. A [`TaskGroup`] names each task and logs the panic
//! (or cancellation) of any of them when the group is joined.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinHandle, JoinSet};

/// Tasks of one stage (the ingress, the consumers, the HTTP server …), joined together.
#[derive(Debug)]
pub(crate) struct TaskGroup {
    stage: &'static str,
    tasks: JoinSet<()>,
    names: HashMap<Id, String>,
}

impl TaskGroup {
    /// An empty group; `stage` names it in logs.
    pub(crate) fn new(stage: &'static str) -> Self {
        Self {
            stage,
            tasks: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    /// Runs `task` as part of this group; `name` identifies it in logs.
    pub(crate) fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name.into());
    }

    /// Makes a task spawned elsewhere part of this group: its panic is reported as this
    /// group's.
    pub(crate) fn adopt(&mut self, name: impl Into<String>, task: JoinHandle<()>) {
        self.spawn(name, async move {
            if let Err(err) = task.await
                && err.is_panic()
            {
                std::panic::resume_unwind(err.into_panic());
            }
        });
    }

    /// [`TaskGroup::join`] as a task of another group (the count is in the log).
    pub(crate) async fn join_quietly(mut self) {
        self.join().await;
    }

    /// Waits for every task; logs each one that panicked or was cancelled and returns how
    /// many did.
    pub(crate) async fn join(&mut self) -> usize {
        let mut failed = 0;
        while let Some(joined) = self.tasks.join_next_with_id().await {
            if let Err(err) = joined {
                failed += 1;
                let name = self.names.remove(&err.id()).unwrap_or_default();
                if err.is_panic() {
                    tracing::error!(stage = self.stage, task = %name, %err, "a platform task panicked");
                } else {
                    tracing::warn!(stage = self.stage, task = %name, %err, "a platform task was cancelled");
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_counted_not_discarded() {
        let mut group = TaskGroup::new("test");
        group.spawn("fine", async {});
        group.spawn("broken", async { panic!("on purpose") });
        group.adopt("adopted", tokio::spawn(async { panic!("on purpose too") }));
        assert_eq!(group.join().await, 2);
    }
}
