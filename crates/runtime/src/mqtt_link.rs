//! The platform's own connection to the embedded MQTT broker: a rumqttd in-process link
//! instead of a TCP client.
//!
//! Devices and the ingress dispatcher share one process in `ktwin up`, so a socket between
//! them only costs system calls: every device message was read from a loopback socket and
//! acknowledged with a write of its own, and the broker's network thread woke for both. The
//! link hands messages over in memory, in batches (one wake-up per batch, not per message).
//! It subscribes at QoS 0: an acknowledgement between two parts of one process guards against
//! nothing, since both go down together, while devices still get their QoS 1 acknowledgement
//! from the broker. The broker keeps each message in its log until the link has read it and
//! pauses the link while its buffer is full; only a link more than the whole log behind
//! (128 MiB, see [`crate::mqtt::start_embedded`]) would miss the oldest messages.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use async_trait::async_trait;
use ktwin_dispatcher::ingress::TopicSyntax;
use ktwin_dispatcher::{DeviceSource, SourceAck, SourceMessage};
use ktwin_events::TopicKind;
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};

use crate::error::MqttError;

/// Device messages (`ktwin/real/#`, and the telemetry topics models declare) read from the
/// embedded broker over an in-process link.
pub struct LinkSource {
    // Kept so the broker keeps the connection (dropping either half disconnects it), and to
    // subscribe to declared topics.
    tx: LinkTx,
    client_id: String,
    rx: LinkRx,
    connected: Arc<AtomicBool>,
}

impl LinkSource {
    /// Connects to `broker` as `client_id` and subscribes to device messages. Blocks until the
    /// broker's router accepted the connection.
    pub fn connect(broker: &rumqttd::Broker, client_id: &str) -> Result<Self, MqttError> {
        let refused = |source| MqttError::LinkRefused {
            client_id: client_id.to_owned(),
            source: Box::new(source),
        };
        let (mut tx, rx) = broker.link(client_id).map_err(refused)?;
        for filter in TopicKind::Real.mqtt_filters() {
            tx.subscribe(filter).map_err(refused)?;
        }
        Ok(Self {
            tx,
            client_id: client_id.to_owned(),
            rx,
            connected: Arc::new(AtomicBool::new(true)),
        })
    }
}

impl LinkSource {
    /// Also receives the messages of `filter` (a telemetry topic a model declares with the DTDL
    /// MQTT extension).
    pub fn subscribe(&mut self, filter: &str) -> Result<(), MqttError> {
        self.tx
            .subscribe(filter)
            .map(drop)
            .map_err(|source| MqttError::LinkRefused {
                client_id: self.client_id.clone(),
                source: Box::new(source),
            })
    }
}

/// Messages of an in-process QoS 0 link need no acknowledgement.
struct NoAck;

#[async_trait]
impl SourceAck for NoAck {
    async fn ack(self: Box<Self>) -> Result<(), ktwin_dispatcher::TransportError> {
        Ok(())
    }
}

#[async_trait]
impl DeviceSource for LinkSource {
    fn syntax(&self) -> TopicSyntax {
        TopicSyntax::Mqtt
    }

    async fn next(&mut self) -> Option<SourceMessage> {
        loop {
            match self.rx.next().await {
                Ok(Some(Notification::Forward(forward))) => {
                    let publish = forward.publish;
                    // Not UTF-8 cannot be a valid topic: the dispatcher dead-letters it by name.
                    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                    return Some(SourceMessage::new(
                        topic,
                        publish.payload,
                        false,
                        Box::new(NoAck),
                    ));
                }
                // The router paused this link because its buffer was full; everything it handed
                // over is in hand now, so it may send more.
                Ok(Some(Notification::Unschedule)) => {
                    if self.rx.wake().await.is_err() {
                        break;
                    }
                }
                // Acknowledgements of the link's own subscription, and empty wake-ups.
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(%err, "the embedded MQTT broker's link closed");
                    break;
                }
            }
        }
        self.connected
            .store(false, std::sync::atomic::Ordering::Release);
        None
    }

    fn connected(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.connected)
    }

    /// The broker hands each message to the link once; there is no reconnect.
    fn redelivers(&self) -> bool {
        false
    }
}
