//! Device simulators: every device of a world publishing over MQTT with the paper's load
//! model (or a constant rate for benchmarks), applying what the platform sends back on the
//! devices' virtual topics.
//!
//! [`load`] is the pure schedule (device type × time → next publish), [`payload`] the
//! readings (bounded random walks) and how virtual messages change them, [`world`] which
//! devices exist, [`engine`] the MQTT side, `cli` (feature `cli`) `ktwin sim`.
//!
//! It must not know about the platform behind the broker (dispatchers, services, stores): it
//! only speaks the device topics of `ktwin-events`.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod engine;
mod error;
pub mod load;
pub mod payload;
pub mod world;

pub use engine::{Pace, SimConfig, SimReport, Totals, TypeReport, run};
pub use error::{SimError, UnknownDeviceType, VirtualError, WorldError};
pub use load::{DeviceType, LoadProfile, Window};
pub use world::{SimDevice, SimWorld, paper_city};
