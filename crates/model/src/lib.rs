//! `ktwin-model`: the user-facing model of ktwin.
//!
//! It owns the custom resources (TwinInterface, TwinInstance, EventStore, MQTTTrigger, Gateway)
//! and their CRDs, the DTMI → Kubernetes name rule, and the twin graph (interfaces and
//! instances). It must not know about transports, reconciliation or running services: those
//! crates consume these types.

pub mod compile;
pub mod crd;
pub mod graph;
pub mod names;
pub mod project;
pub mod world;

pub use crd::*;
pub use graph::*;
