//! `ktwin up`: the whole ktwin platform on one machine, in one process.
//!
//! It owns the *local realizer* of the planner's plan (the Kubernetes operator is the other
//! one): the in-memory routing of every planned route, the twin services — SDK handlers built
//! into the binary, mounted in-process ([`service`]), or autoscaled child processes ([`pool`],
//! [`process`], [`autoscale`]) — the embedded MQTT broker ([`mqtt`]), and the composition of
//! the other crates' services behind one HTTP port.
//!
//! It must not know how events are stored, how MQTT payloads become CloudEvents, or what the
//! twin graph looks like inside: those belong to `ktwin-store`, `ktwin-dispatcher` and
//! `ktwin-graph`, which it only wires together.

pub mod autoscale;
pub mod bench;
pub mod bus;
pub mod cli;
pub mod console;
pub mod mqtt;
mod mqtt_link;
pub mod pool;
pub mod process;
pub mod routes;
pub mod service;
pub mod up;

pub use autoscale::{Autoscaler, ScalePolicy};
pub use console::Console;
pub use pool::{DeliveryError, LaunchError, Launcher, PoolConfig, PoolStats, Replica, ServicePool};
pub use process::{ProcessLauncher, ProcessReplica, ServiceCommand};
