//! The ktwin graph service: the twin graph (instances and their named relationships) over REST,
//! in the original KTWIN JSON shape (`{"twinInstances":[...]}`), always sorted by name.
//!
//! It owns the serving side: a [`GraphState`] holding the last good graph (or why there is
//! none), the sources feeding it — TwinInstances watched in Kubernetes through a kube-rs
//! reflector ([`watch_kubernetes`]) or the project's files watched on disk ([`watch_local`]) —
//! and the routes ([`router`]). It must not know how graphs are built or validated: that is
//! `ktwin-model`'s [`InstanceGraph`].
//!
//! Embedding (as `ktwin up` does, publishing its own graphs):
//! ```
//! use ktwin_graph::GraphState;
//! use ktwin_model::InstanceGraph;
//!
//! let state = GraphState::new();
//! let app: axum::Router = ktwin_graph::router(state.clone());
//! state.publish(InstanceGraph::new());
//! # let _ = app;
//! ```

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod api;
#[cfg(feature = "cli")]
pub mod cli;
mod kubernetes;
mod local;
mod state;

pub use api::{GraphApi, InstanceView, OPENAPI_PATH, route_policy, router};
pub use ktwin_model::InstanceGraph;
pub use kubernetes::watch_kubernetes;
pub use local::{LoadError, LocalSource, load_local, watch_local};
pub use state::{GraphState, Snapshot};
