//! `MqttSink` against a scripted MQTT broker: every send completes with its own message's
//! PUBACK, after a timeout, after a lost connection and a lost broker session, and when packet
//! ids wrap around.

use std::sync::Arc;
use std::time::Duration;

use ktwin_dispatcher::egress::DeviceMessage;
use ktwin_dispatcher::{DeviceSink, MqttSink, TransportError};
use ktwin_events::{Topic, TopicKind};
use ktwin_testkit::mqtt_peer::{MqttPeer, PeerEvent};
use tokio::task::JoinHandle;

fn message(n: usize) -> DeviceMessage {
    DeviceMessage {
        topic: Topic::new(TopicKind::Virtual, "city-pole", "pole-1")
            .unwrap()
            .mqtt_topic(),
        payload: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

fn send(sink: &Arc<MqttSink>, n: usize) -> JoinHandle<Result<(), TransportError>> {
    let sink = Arc::clone(sink);
    tokio::spawn(async move { sink.send(&message(n)).await })
}

async fn connected(peer: &mut MqttPeer, expected: usize) {
    match peer.next().await {
        PeerEvent::Connected {
            conn,
            clean_session,
        } => {
            assert_eq!(conn, expected);
            assert!(!clean_session, "the sink keeps a persistent session");
        }
        other => panic!("expected a connection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_publish_lost_with_the_broker_session_is_sent_again_and_answered_by_its_own_puback() {
    let mut peer = MqttPeer::start(false).await;
    let sink = Arc::new(MqttSink::start(
        "127.0.0.1",
        peer.port,
        "sink-session",
        None,
    ));
    connected(&mut peer, 0).await;
    let a = send(&sink, 0);
    let (conn, _, _, payload) = peer.next_publish().await;
    assert_eq!((conn, payload), (0, message(0).payload));
    // The connection drops before the PUBACK, and the broker comes back without the session.
    peer.drop_connection(0);
    connected(&mut peer, 1).await;
    let (conn, a_again, _, payload) =
        tokio::time::timeout(Duration::from_secs(10), peer.next_publish())
            .await
            .expect(
                "the unacknowledged publish was not sent again once the broker lost the session",
            );
    assert_eq!((conn, payload), (1, message(0).payload));
    // Another message's PUBACK does not complete the first one's send.
    let b = send(&sink, 1);
    let (_, b_id, _, payload) = peer.next_publish().await;
    assert_eq!(payload, message(1).payload);
    peer.ack(1, b_id);
    b.await.unwrap().unwrap();
    assert!(
        !a.is_finished(),
        "the first send completed without its PUBACK"
    );
    peer.ack(1, a_again);
    a.await.unwrap().unwrap();
    // Packet ids wrap after 1000 in flight: each send still ends with its own PUBACK.
    for n in 2..1100 {
        let pending = send(&sink, n);
        let (conn, id, _, payload) = peer.next_publish().await;
        assert_eq!(payload, message(n).payload);
        assert!(
            !pending.is_finished(),
            "send {n} completed before its PUBACK"
        );
        peer.ack(conn, id);
        pending.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn after_a_timeout_the_late_puback_completes_nothing_else() {
    let mut peer = MqttPeer::start(true).await;
    let sink = Arc::new(
        MqttSink::start("127.0.0.1", peer.port, "sink-timeout", None)
            .with_timeout(Duration::from_millis(300)),
    );
    connected(&mut peer, 0).await;
    let late = send(&sink, 0);
    let (_, late_id, _, _) = peer.next_publish().await;
    assert!(matches!(
        late.await.unwrap(),
        Err(TransportError::Timeout(_))
    ));
    let next = send(&sink, 1);
    let (_, next_id, _, payload) = peer.next_publish().await;
    assert_eq!(payload, message(1).payload);
    peer.ack(0, late_id);
    // The late PUBACK went through the same connection before anything acknowledges `next`.
    let probe = send(&sink, 2);
    let (_, probe_id, _, _) = peer.next_publish().await;
    peer.ack(0, probe_id);
    probe.await.unwrap().unwrap();
    assert!(
        !next.is_finished(),
        "a late PUBACK completed another message's send"
    );
    peer.ack(0, next_id);
    next.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_reconnect_with_the_session_kept_resends_in_order() {
    let mut peer = MqttPeer::start(true).await;
    let sink = Arc::new(MqttSink::start("127.0.0.1", peer.port, "sink-resume", None));
    connected(&mut peer, 0).await;
    let sends: Vec<_> = (0..3).map(|n| send(&sink, n)).collect();
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(peer.next_publish().await.3);
    }
    peer.drop_connection(0);
    connected(&mut peer, 1).await;
    let mut again = Vec::new();
    for _ in 0..3 {
        let (conn, id, _, payload) = peer.next_publish().await;
        assert_eq!(conn, 1);
        again.push(payload);
        peer.ack(1, id);
    }
    assert_eq!(again, first, "resent in the order first sent");
    for send in sends {
        send.await.unwrap().unwrap();
    }
}
