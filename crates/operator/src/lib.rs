//! The ktwin Kubernetes operator: the Kubernetes realizer of the planner's plan.
//!
//! It owns rendering a [`ktwin_planner::Plan`] into Knative Serving/Eventing, RabbitMQ topology
//! and core objects ([`render`]), installing the platform ([`install`]: the bundle, the Helm
//! chart generated from it, applying it), and the controllers that apply what is rendered with
//! server-side apply, prune what is no longer desired and report status ([`controller`]).
//! It must not decide routing: which event reaches whom is the planner's job.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod backoff;
#[cfg(feature = "cli")]
pub mod cli;
pub mod controller;
pub mod install;
pub mod instance;
pub mod kinds;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod names;
pub mod render;
mod run;
pub mod status;

pub use run::{OperatorOptions, RunError, run};
