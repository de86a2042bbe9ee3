//! The embedded MQTT broker carries device messages between real MQTT clients, v3.1.1 and v5.

use std::time::Duration;

use ktwin_runtime::mqtt::{DEVICE_FILTER_LOG, start_embedded};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[tokio::test]
async fn embedded_broker_routes_messages_between_clients() {
    let broker = start_embedded(0, None, &[]).expect("embedded broker starts on a free port");
    let address = broker.address();
    assert_eq!(address.host, "127.0.0.1");

    let mut sub_options = MqttOptions::new("test-sub", &address.host, address.port);
    sub_options.set_keep_alive(Duration::from_secs(5));
    sub_options.set_max_packet_size(1 << 20, 1 << 20);
    let (subscriber, mut sub_loop) = AsyncClient::new(sub_options, 100);
    subscriber
        .subscribe("ktwin/virtual/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    // Wait for the subscription to be acknowledged before publishing.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), sub_loop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("subscription failed: {other:?}"),
        }
    }

    let mut pub_options = MqttOptions::new("test-pub", &address.host, address.port);
    pub_options.set_max_packet_size(1 << 20, 1 << 20);
    let (publisher, mut pub_loop) = AsyncClient::new(pub_options, 100);
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let payload = vec![b'x'; 300 * 1024];
    publisher
        .publish(
            "ktwin/virtual/city-pole/pole-1",
            QoS::AtLeastOnce,
            false,
            payload.clone(),
        )
        .await
        .unwrap();

    let received = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = sub_loop.poll().await {
                return p;
            }
        }
    })
    .await
    .expect("message delivered");
    assert_eq!(received.topic, "ktwin/virtual/city-pole/pole-1");
    assert_eq!(
        received.payload.len(),
        payload.len(),
        "payloads above 256 KiB pass the broker"
    );
}

/// The number of the last command published while the device was away (numbered from 0).
const LAST_COMMAND: u64 = 2_000;

/// What the broker keeps of a device's commands is bounded by bytes (issue 18): rumqttd holds a
/// log per subscription filter, and before [`DEVICE_FILTER_LOG`] each device filter could hold
/// the link's log (then 128 MiB), so memory grew with every command sent. A device that was away gets the
/// newest commands the small log holds, up to the last one, and the rest are gone from memory.
#[tokio::test]
async fn a_device_filter_keeps_only_a_small_log() {
    let broker = start_embedded(0, None, &[]).expect("embedded broker starts on a free port");
    let address = broker.address();
    let device = || {
        let mut options = MqttOptions::new("lagging-device", &address.host, address.port);
        options.set_clean_session(false);
        AsyncClient::new(options, 100)
    };
    let filter = "ktwin/virtual/pole/+";

    // The device subscribes with a persistent session, then goes away.
    let (client, mut events) = device();
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    wait_for(&mut events, |p| matches!(p, Packet::SubAck(_))).await;
    client.disconnect().await.unwrap();
    loop {
        match events.poll().await {
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(events);

    // ~2 MB of commands, far more than the device's log holds, each acknowledged.
    let (publisher, mut pub_events) = AsyncClient::new(
        MqttOptions::new("commander", &address.host, address.port),
        100,
    );
    let sender = tokio::spawn(async move {
        for n in 0..=LAST_COMMAND {
            let payload = format!("{n:08} {}", "c".repeat(1_000));
            publisher
                .publish("ktwin/virtual/pole/p1", QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    });
    let mut acked = 0;
    while acked <= LAST_COMMAND {
        if let Packet::PubAck(_) = next_packet(&mut pub_events).await {
            acked += 1;
        }
    }
    sender.await.unwrap();

    // Back with its session: it reads what the log kept, up to the last command.
    let (_client, mut events) = device();
    let mut received = 0u64;
    loop {
        if let Packet::Publish(publish) = next_packet(&mut events).await {
            received += 1;
            let n: u64 = std::str::from_utf8(&publish.payload[..8])
                .unwrap()
                .parse()
                .unwrap();
            if n == LAST_COMMAND {
                break;
            }
        }
    }
    let kept = (DEVICE_FILTER_LOG.segment_bytes * (DEVICE_FILTER_LOG.segments + 1)) as u64;
    assert!(
        received * 1_000 <= kept,
        "the device got {received} of {} commands of ~1 KB: the broker kept more than its {kept}-byte log",
        LAST_COMMAND + 1
    );
    assert!(received > 1, "the device got only the last command");
}

/// The next packet `events` receives, within 10 s.
async fn next_packet(events: &mut rumqttc::EventLoop) -> Packet {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(packet))) => return packet,
            Ok(Ok(Event::Outgoing(_))) => {}
            other => panic!("no packet within 10 s: {other:?}"),
        }
    }
}

/// Polls `events` until a packet `wanted` accepts arrives.
async fn wait_for(events: &mut rumqttc::EventLoop, wanted: impl Fn(&Packet) -> bool) {
    while !wanted(&next_packet(events).await) {}
}
