//! The ktwin Kubernetes operator: the Kubernetes realizer of the planner's plan.
//!
//! It owns rendering a [`ktwin_planner::Plan`] into Knative Serving/Eventing, RabbitMQ topology
//! and core objects ([`render`]), the install bundle ([`bundle`]), and the controllers that apply
//! them with server-side apply, prune what is no longer desired and report status ([`controller`]).
//! It must not decide routing: which event reaches whom is the planner's job.

pub mod bundle;
pub mod cli;
pub mod controller;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod render;
mod run;

pub use run::{OperatorOptions, run};
