//! What a device transport (the source of device messages, the sink of device commands) can
//! fail with.

use std::time::Duration;

use ktwin_broker::BrokerError;

/// A device transport could not do what it was asked; the message stays with its source (it is
/// redelivered) or its event is redelivered to the sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport did not confirm in time.
    #[error("no confirmation from the device transport within {0:?}")]
    Timeout(Duration),
    /// The transport's client stopped before confirming.
    #[error("the device transport's client stopped before confirming")]
    Stopped,
    /// The MQTT client refused the request.
    #[error("MQTT request failed")]
    Mqtt(#[from] rumqttc::ClientError),
    /// An AMQP operation failed.
    #[error("AMQP {operation} failed")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// Publishing through the broker's confirmed publisher failed.
    #[error("publishing to RabbitMQ failed")]
    Broker(#[from] BrokerError),
}
