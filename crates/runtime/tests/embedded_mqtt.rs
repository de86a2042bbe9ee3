//! The embedded MQTT broker carries device messages between real MQTT clients, v3.1.1 and v5.

use std::time::Duration;

use ktwin_runtime::mqtt::start_embedded;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[tokio::test]
async fn embedded_broker_routes_messages_between_clients() {
    let broker = start_embedded(0, None).expect("embedded broker starts on a free port");
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
