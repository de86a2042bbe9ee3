//! Devices over MQTT: credentials ([`DeviceRegistry`], Argon2id hashes in a file or mounted
//! Secret), what each may publish and subscribe to ([`TopicRights`], from a [`DeviceGrant`]
//! and the topics DTDL MQTT extensions declare), refusal accounting ([`Refusals`]), and the
//! equivalent files for an external broker ([`mosquitto`], [`rabbitmq`]); the [`gate`] enforces
//! them in front of an embedded broker that cannot, and holds devices' PUBACKs until the
//! platform has made their messages durable ([`PubAckHold`]), and with a [`DirectFeed`] hands
//! ingested messages to the platform itself.

mod ack_hold;
mod acl;
mod credentials;
mod direct;
mod filter;
pub mod gate;
pub mod mosquitto;
pub mod rabbitmq;

pub use ack_hold::{MessageKey, PubAckHold, WITHHELD_PUBACKS};
pub use acl::{
    DeclaredTopics, DeviceGrant, DeviceRef, InterfaceTopics, PatternError, Refusal, Refusals,
    TopicPattern, TopicRights,
};
pub use credentials::{
    CredentialError, CredentialFileError, DEVICE_PASSWORD_PREFIX, DeviceCredential,
    DeviceCredentialFile, DeviceRegistry,
};
pub use direct::{DirectFeed, DirectMessage, DirectMessages, FeedClosed, direct_feed};
pub use filter::{is_valid_filter, is_within};
