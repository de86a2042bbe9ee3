//! `ktwin up`: the whole ktwin platform on one machine, in one process.
//!
//! It owns the *local realizer* of the planner's plan (the Kubernetes operator is the other
//! one): the in-memory routing of every planned route, the twin services — SDK handlers built
//! into the binary, mounted in-process ([`service`]), or autoscaled child processes ([`pool`],
//! [`process`], [`autoscale`]) — the embedded MQTT broker ([`mqtt`]), the composition of
//! the other crates' services behind one HTTP port, and who may use them ([`access`]: auth on
//! by default, with credentials created on first start).
//!
//! It must not know how events are stored, how MQTT payloads become CloudEvents, or what the
//! twin graph looks like inside: those belong to `ktwin-store`, `ktwin-dispatcher` and
//! `ktwin-graph`, which it only wires together.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod access;
pub mod autoscale;
#[cfg(feature = "bench")]
pub mod bench;
pub mod bus;
#[cfg(feature = "cli")]
pub mod cli;
pub mod console;
mod device_acks;
mod error;
pub mod event_stream;
#[cfg(feature = "bench")]
pub mod faults;
pub mod model_api;
pub mod mqtt;
mod mqtt_link;
mod partition;
mod payload;
pub mod pool;
pub mod process;
mod project;
pub mod routes;
pub mod service;
pub mod store_probe;
mod tasks;
pub mod up;

pub use access::{PlatformAccess, UpAuth};
pub use autoscale::{Autoscaler, ScalePolicy};
pub use console::Console;
pub use error::{MqttError, UpError};
pub use pool::{DeliveryError, LaunchError, Launcher, PoolConfig, PoolStats, Replica, ServicePool};
pub use process::{ProcessLauncher, ProcessReplica, ServiceCommand};
pub use project::{
    Handlers, LOCAL_EVENT_STORE, LOCAL_MQTT_TRIGGER, PlannedProject, Runner, plan_input,
};

/// Worker threads of the async runtime that runs the platform: half the machine's cores, at
/// least one.
///
/// The platform has threads of its own beside the runtime's workers: the embedded MQTT
/// broker's network and router threads, and the store's writer (a blocking thread that spends
/// its time committing and in `fdatasync`). With a worker per core the workers outnumbered
/// the cores, and at a few thousand events a second each wake-up of a task also woke the
/// other, idle worker to look for work: on two cores one worker used less CPU for the same
/// load and had the better tail at 200 neighborhoods (`docs/benchmarks.md`, "ktwin up (end to
/// end)", stop 13).
pub fn platform_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}
