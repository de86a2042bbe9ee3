//! The ktwin event grammar, owned in one place for every crate.
//!
//! It owns the names that travel on the wire: CloudEvent `type`s (`ktwin.real.<iface>`,
//! `ktwin.virtual.<iface>`, `ktwin.store.<iface>`, `ktwin.command.<iface>.<command>`), the MQTT
//! topics devices use (`ktwin/real/<iface>/<instance>`, `ktwin/virtual/<iface>/<instance>`), the
//! AMQP routing keys RabbitMQ's MQTT plugin derives from them (`/` becomes `.`), the device
//! topics a model declares with the DTDL MQTT extension ([`DeviceBindings`]), and how a ktwin
//! CloudEvent is built (UUIDv7 id, time, JSON data), and the platform's contract with its
//! components: environment-variable names ([`env`](mod@env)) and default endpoints ([`defaults`]),
//! event types as bounded metric labels ([`EventTypeLabels`]), and how a trace travels in events
//! ([`trace`]: W3C `traceparent`/`tracestate`).
//!
//! It must not know about transports, Kubernetes or storage: it is pure naming and formatting.
//!
//! ```
//! use ktwin_events::{EventType, Topic, TopicKind};
//!
//! let ty: EventType = "ktwin.command.city-pole.updateAirQualityIndex".parse().unwrap();
//! assert_eq!(ty.to_string(), "ktwin.command.city-pole.updateairqualityindex");
//! assert_eq!(ty.interface(), "city-pole");
//!
//! let topic = Topic::parse_mqtt("ktwin/real/city-pole/pole-001").unwrap();
//! assert_eq!(topic.kind, TopicKind::Real);
//! assert_eq!(topic.routing_key(), "ktwin.real.city-pole.pole-001");
//! assert_eq!(topic.event_type().to_string(), "ktwin.real.city-pole");
//! ```

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod cloudevent;
pub mod defaults;
mod device_topic;
pub mod env;
mod event_type;
mod label;
mod name;
mod topic;
pub mod trace;

pub use cloudevent::{EventBuilder, JSON_CONTENT_TYPE, SPEC_VERSION};
pub use device_topic::{
    BindingError, CommandTopic, CommandTopicError, DeviceBinding, DeviceBindings,
    JSON_PAYLOAD_FORMAT, PatternError, TelemetryTopic, mqtt_topic_of_routing_key,
    routing_key_of_mqtt_topic,
};
pub use event_type::{EventKind, EventType, MAX_EVENT_TYPE_LEN};
pub use label::{DEFAULT_EVENT_TYPE_LABELS, EventTypeLabels, OTHER_LABEL};
pub use name::{GrammarError, validate_name};
pub use topic::{Topic, TopicKind};

/// The prefix every ktwin CloudEvent type starts with.
pub const TYPE_PREFIX: &str = "ktwin";

/// The MQTT port devices and brokers use unless told otherwise (IANA's port for MQTT).
pub const MQTT_PORT: u16 = 1883;
