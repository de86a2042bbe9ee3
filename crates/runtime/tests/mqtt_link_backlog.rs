//! The embedded broker's link falling behind (issue 18): a platform whose ingress is blocked
//! (bus backpressure, a cold service) stops reading the link while devices keep publishing and
//! getting their PUBACKs. rumqttd then keeps only its message log for the link and drops the
//! oldest beyond it; every such drop must be counted, never silent.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ktwin_dispatcher::DeviceSource;
use ktwin_runtime::mqtt::{MessageLog, start_embedded_with};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Device messages published, each acknowledged.
const MESSAGES: u64 = 600;

/// Payload bytes of each: the messages come to far more than the log below keeps.
const PAYLOAD_BYTES: usize = 200;

#[tokio::test]
async fn what_a_lagging_link_misses_is_counted() {
    // A log of 2 × 1 KiB: some ten messages.
    let log = MessageLog {
        segment_bytes: 1024,
        segments: 2,
    };
    let broker = start_embedded_with(0, None, log, &[]).expect("embedded broker starts");
    let mut link = broker.link;
    let dropped = link.dropped();
    let acked = publish_acknowledged(&broker.v4.ip().to_string(), broker.v4.port()).await;
    assert_eq!(acked, MESSAGES, "every message got its PUBACK");

    // Only now does the consumer read: the broker kept what the link's buffer and the log hold.
    let mut received = 0u64;
    while received + dropped.load(Ordering::Relaxed) < MESSAGES {
        match tokio::time::timeout(Duration::from_secs(10), link.next()).await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the link closed"),
            Err(_) => panic!(
                "received {received} and counted {} dropped of {MESSAGES} acknowledged messages; the rest vanished",
                dropped.load(Ordering::Relaxed)
            ),
        }
    }
    let dropped = dropped.load(Ordering::Relaxed);
    assert!(
        dropped > 0,
        "the log cannot hold {MESSAGES} messages, yet none was dropped"
    );
    assert_eq!(received + dropped, MESSAGES);
}

/// Publishes [`MESSAGES`] QoS 1 messages as a device would; returns how many were acknowledged.
async fn publish_acknowledged(host: &str, port: u16) -> u64 {
    let options = MqttOptions::new("backlog-device", host, port);
    let (client, mut events) = AsyncClient::new(options, 100);
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let payload = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(PAYLOAD_BYTES));
            client
                .publish(
                    "ktwin/real/city-pole/pole-1",
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .expect("queued");
        }
        client
    });
    let mut acked = 0;
    while acked < MESSAGES {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => panic!("device connection failed: {err}"),
            Err(_) => panic!("only {acked} of {MESSAGES} messages acknowledged"),
        }
    }
    let _client = publisher.await.expect("publisher finished");
    acked
}
