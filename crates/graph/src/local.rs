//! Local mode: the graph comes from files, reloaded whenever they change (inotify and
//! friends through `notify`; a change is served within a fraction of a second).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ktwin_model::{GraphJson, InstanceGraph, Project};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::GraphState;

/// Pause after a change before reloading, so a burst of writes (an editor saving, a tool
/// rewriting several files) costs one reload.
const SETTLE: Duration = Duration::from_millis(50);

/// Which files hold the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalSource {
    /// A ktwin project directory (`ktwin.yaml`, models, world): its TwinInstances.
    Project(PathBuf),
    /// A graph document in the original format (`ktwin_graph.json`).
    GraphFile(PathBuf),
}

impl LocalSource {
    fn watched(&self) -> (PathBuf, RecursiveMode) {
        match self {
            LocalSource::Project(dir) => (dir.clone(), RecursiveMode::Recursive),
            // The parent, not the file: editors replace files by renaming over them.
            LocalSource::GraphFile(file) => (
                file.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                RecursiveMode::NonRecursive,
            ),
        }
    }
}

/// Loads the graph from `source` now.
pub fn load_local(source: &LocalSource) -> Result<InstanceGraph, String> {
    match source {
        LocalSource::Project(dir) => Project::load(dir)
            .map(|project| project.instance_graph)
            .map_err(|err| format!("loading project {}: {err}", dir.display())),
        LocalSource::GraphFile(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|err| format!("reading {}: {err}", file.display()))?;
            let doc: GraphJson = serde_json::from_str(&text).map_err(|err| {
                format!(
                    "{}: {err}; expected {{\"twinInstances\":[{{\"name\",\"interface\",\"relationships\"}}]}}",
                    file.display()
                )
            })?;
            Ok(InstanceGraph::from_json(&doc))
        }
    }
}

async fn reload(source: &LocalSource, state: &GraphState) {
    let owned = source.clone();
    match tokio::task::spawn_blocking(move || load_local(&owned)).await {
        Ok(Ok(graph)) => state.publish(graph),
        Ok(Err(reason)) => state.fail(reason),
        Err(err) => state.fail(format!("graph loader crashed: {err}")),
    }
}

/// Loads `source` into `state` and keeps reloading it on every change until `cancel` fires.
/// Fails only if the files cannot be watched.
pub async fn watch_local(
    source: LocalSource,
    state: GraphState,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, notify::Error> {
    let changed = Arc::new(Notify::new());
    let signal = changed.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.as_ref().is_ok_and(|e| !e.kind.is_access()) || event.is_err() {
            signal.notify_one();
        }
    })?;
    let (path, mode) = source.watched();
    watcher.watch(&path, mode)?;
    reload(&source, &state).await;
    Ok(tokio::spawn(async move {
        // The watcher lives as long as the task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = changed.notified() => {}
            }
            tokio::time::sleep(SETTLE).await;
            reload(&source, &state).await;
        }
    }))
}
