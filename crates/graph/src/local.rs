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

/// Why the graph could not be loaded from files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The project does not load.
    #[error("loading project {}", dir.display())]
    Project {
        /// The project directory.
        dir: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ktwin_model::ProjectError,
    },
    /// The graph file cannot be read.
    #[error("reading {}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The graph file is not a graph document.
    #[error(
        "{}: expected {{\"twinInstances\":[{{\"name\",\"interface\",\"relationships\"}}]}}",
        file.display()
    )]
    NotAGraph {
        /// The file.
        file: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// Loads the graph from `source` now.
pub fn load_local(source: &LocalSource) -> Result<InstanceGraph, LoadError> {
    match source {
        LocalSource::Project(dir) => Project::load(dir)
            .map(|project| project.instance_graph)
            .map_err(|source| LoadError::Project {
                dir: dir.clone(),
                source,
            }),
        LocalSource::GraphFile(file) => {
            let text = std::fs::read_to_string(file).map_err(|source| LoadError::Read {
                file: file.clone(),
                source,
            })?;
            let doc: GraphJson =
                serde_json::from_str(&text).map_err(|source| LoadError::NotAGraph {
                    file: file.clone(),
                    source,
                })?;
            Ok(InstanceGraph::from_json(&doc))
        }
    }
}

/// An error and its sources on one line (`a: b: c`), as the graph state reports it.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn reload(source: &LocalSource, state: &GraphState) {
    let owned = source.clone();
    match tokio::task::spawn_blocking(move || load_local(&owned)).await {
        Ok(Ok(graph)) => state.publish(graph),
        Ok(Err(err)) => state.fail(chain(&err)),
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
