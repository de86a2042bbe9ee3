//! `ktwin-model`: the user-facing model of ktwin.
//!
//! It owns the custom resources (TwinInterface, TwinInstance, EventStore, MQTTTrigger, Gateway)
//! and their CRDs, the DTMI → Kubernetes name rule, the DTDL → TwinInterface compiler (over the
//! `ktwin-dtdl` engine), worlds of instances, projects (models + services + world) and the twin
//! graph. It must not know about transports, reconciliation or running services: those crates
//! consume these types.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod compile;
pub mod crd;
pub mod graph;
pub mod names;
pub mod output;
mod parameter;
pub mod project;
pub mod world;

pub use crd::{EventStore, Gateway, MQTTTrigger, TwinInstance, TwinInterface};
pub use graph::{GraphJson, InstanceGraph, InterfaceGraph};
pub use parameter::{ParameterError, parse_parameter};
pub use project::{Project, ProjectError, ServiceSettings};
