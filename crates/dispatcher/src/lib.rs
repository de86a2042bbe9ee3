//! The ktwin dispatchers between devices (MQTT) and twins (CloudEvents):
//! - MQTT → CloudEvent ([`IngressDispatcher`]): device messages from an AMQP queue fed by
//!   RabbitMQ's MQTT plugin ([`AmqpQueueSource`]) or a direct MQTT subscription
//!   ([`MqttSource`]) become `ktwin.real.<iface>` CloudEvents on a [`ktwin_broker::Broker`];
//!   invalid messages are dead-lettered with a reason and counted;
//! - CloudEvent → MQTT ([`EgressDispatcher`]): `ktwin.virtual.<iface>` events go to
//!   `ktwin/virtual/<iface>/<instance>` through RabbitMQ's `amq.topic` ([`AmqpTopicSink`]) or
//!   directly over MQTT ([`MqttSink`]).
//!
//! Translation is pure ([`ingress`], [`egress`]); transports sit at the edges behind
//! [`DeviceSource`], [`DeviceSink`] and [`DeadLetterSink`]. The dispatchers are libraries so the
//! local runtime can embed them; the `cli` feature wraps them as `ktwin dispatcher …` and the
//! `bench` feature adds `ktwin bench dispatch` (the `ktwin` binary enables both).
//!
//! It must not know about twin models beyond a set of known interface names, nor about
//! storage or Kubernetes.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "cli")]
pub mod cli;
mod dead_letter;
#[cfg(feature = "cli")]
pub mod dead_letters_cli;
pub mod egress;
mod egress_dispatcher;
mod error;
pub mod ingress;
mod ingress_dispatcher;
pub mod metrics;
mod mqtt_sink;
mod source;

pub use dead_letter::{
    AmqpDeadLetters, INGRESS_ORIGIN, KIND_HEADER, MemoryDeadLetters, TOPIC_HEADER,
    device_dead_letter,
};
pub use egress_dispatcher::{AmqpTopicSink, DeviceSink, EgressCounters, EgressDispatcher};
pub use error::TransportError;
pub use ingress_dispatcher::{IngressCounters, IngressDispatcher};
pub use ktwin_broker::{DeadLetterSink, NewDeadLetter};
pub use mqtt_sink::MqttSink;
pub use source::{
    AmqpQueueSource, AmqpSourceConfig, DOTTED_TOPIC_ROUTING_KEY_PATTERN, DeviceSource, MqttSource,
    MqttSourceConfig, REAL_ROUTING_KEY_PATTERN, SourceAck, SourceMessage,
};
