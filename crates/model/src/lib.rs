//! `ktwin-model`: the user-facing model of ktwin.
//!
//! It owns the custom resources (TwinInterface, TwinInstance, EventStore, MQTTTrigger, Gateway)
//! and their CRDs. It must not know about transports,
//! reconciliation or running services: those crates consume these types.

pub mod crd;

pub use crd::*;
