//! Why a simulation cannot run, a world file is unusable or a virtual message is ignored.

/// Why a simulation cannot run with its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The world has no device.
    #[error("the world has no devices")]
    NoDevices,
    /// Zero connections asked for.
    #[error("connections: expected at least 1")]
    NoConnections,
    /// The profile's speed-up or start is out of range.
    #[error("speedup {speedup} / start {start_at}: expected speedup > 0 and start ≥ 0")]
    BadProfile {
        /// Model seconds per wall second.
        speedup: f64,
        /// Model time at the start.
        start_at: f64,
    },
    /// The constant rate is not a positive number.
    #[error("rate {rate}: expected messages per second > 0")]
    BadRate {
        /// Messages per second asked for.
        rate: f64,
    },
    /// A constant rate runs until a duration says stop.
    #[error("--rate needs --duration")]
    RateNeedsDuration,
    /// A device's instance name cannot be an MQTT topic level.
    #[error("device {instance}")]
    DeviceTopic {
        /// The instance.
        instance: String,
        /// What is wrong with its name.
        #[source]
        source: ktwin_events::GrammarError,
    },
}

/// Why a twin graph file gives no world to simulate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorldError {
    /// The file is not a twin graph document.
    #[error("{file}: not a twin graph ({{\"twinInstances\":[...]}})")]
    NotAGraph {
        /// The file.
        file: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// No instance of the graph is a device.
    #[error("{file}: no instance of a device interface ({interfaces})")]
    NoDevices {
        /// The file.
        file: String,
        /// The device interfaces there are.
        interfaces: String,
    },
}

/// Why a message on a device's virtual topic is ignored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VirtualError {
    /// The payload is not JSON.
    #[error("not JSON")]
    NotJson(#[source] serde_json::Error),
    /// The payload is JSON but not an object.
    #[error("expected a JSON object, got {found}")]
    NotAnObject {
        /// What came instead (shortened).
        found: String,
    },
    /// `measurementFrequency` is not a number of seconds the device can keep.
    #[error("measurementFrequency {value}: expected seconds > 0")]
    BadFrequency {
        /// The value sent.
        value: String,
    },
}

/// A device type name that is not one of the simulated types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device type {name:?}: expected one of {expected}")]
pub struct UnknownDeviceType {
    /// The name given.
    pub name: String,
    /// The names there are.
    pub expected: String,
}
