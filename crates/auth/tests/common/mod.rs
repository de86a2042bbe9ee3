//! An MQTT device for the broker tests: connects with credentials and reports what it gets.

#![allow(dead_code)] // each test binary uses part of it

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc;

/// How long a test waits for a broker's answer.
pub const WAIT: Duration = Duration::from_secs(5);

/// A connected MQTT client and what its broker sent it.
pub struct Device {
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<Packet>,
}

/// Connects `client_id` as `username`; `Err(code)` when the broker refuses the credentials.
pub async fn connect(
    port: u16,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<Device, String> {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_credentials(username, password);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let connack = tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => {}
                Err(err) => return Err(err.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no CONNACK".to_owned())??;
    if connack != ConnectReturnCode::Success {
        return Err(format!("{connack:?}"));
    }
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(packet) = event
                && tx.send(packet).is_err()
            {
                break;
            }
        }
        // The connection ended: the receiver sees the channel close.
    });
    Ok(Device { client, events })
}

impl Device {
    /// Subscribes and returns the broker's verdict.
    pub async fn subscribe(&mut self, filter: &str) -> Option<SubscribeReasonCode> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.ok()?;
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Packet::SubAck(ack))) => return ack.return_codes.first().copied(),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }

    /// Publishes at QoS 1.
    pub async fn publish(&self, topic: &str, payload: &str) {
        let _ = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await;
    }

    /// The next message received within `within`, as (topic, payload).
    pub async fn next_message(&mut self, within: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Packet::Publish(publish))) => {
                    return Some((
                        publish.topic,
                        String::from_utf8_lossy(&publish.payload).into_owned(),
                    ));
                }
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }

    /// The packet id of the next PUBACK received within `within`.
    pub async fn next_puback(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Packet::PubAck(ack))) => return Some(ack.pkid),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }

    /// The PUBACKs received so far (other packets received so far are discarded).
    pub fn pubacks_so_far(&mut self) -> Vec<u16> {
        let mut pubacks = Vec::new();
        while let Ok(packet) = self.events.try_recv() {
            if let Packet::PubAck(ack) = packet {
                pubacks.push(ack.pkid);
            }
        }
        pubacks
    }

    /// Whether the broker closed the connection within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Device `p1` (pole/p1) forges a message on `p2`'s topic and publishes on its own; `p2`
/// publishes on its own. The platform, subscribed to `ktwin/real/#`, must see exactly the two
/// genuine messages.
pub async fn publish_own_and_forged(p1: &Device, p2: &Device, platform: &mut Device) {
    p1.publish("ktwin/real/pole/p2", "forged").await;
    p1.publish("ktwin/real/pole/p1", "mine").await;
    p2.publish("ktwin/real/pole/p2", "theirs").await;
    let mut received = Vec::new();
    while let Some(message) = platform.next_message(Duration::from_millis(500)).await {
        received.push(message);
    }
    received.sort();
    assert_eq!(
        received,
        [
            ("ktwin/real/pole/p1".to_owned(), "mine".to_owned()),
            ("ktwin/real/pole/p2".to_owned(), "theirs".to_owned())
        ]
    );
}
