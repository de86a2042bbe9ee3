//! RabbitMQ restarted in the middle of a 50,000-message run of QoS 1 publishers (through the
//! MQTT plugin queue, the original topology): nothing is lost, and a duplicate is only ever a
//! redelivery with the same event id.
//!
//! Restarting RabbitMQ disturbs every other test using it, so this test is its own binary and
//! is ignored by default; run it alone:
//! `cargo test -p ktwin-dispatcher --test restart -- --ignored`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ktwin_broker::QueueType;
use ktwin_dispatcher::bench::{device_messages, publish_qos1};
use ktwin_dispatcher::ingress::IngressPolicy;
use ktwin_dispatcher::metrics::DispatchMetrics;
use ktwin_dispatcher::{
    AmqpQueueSource, AmqpSourceConfig, DeviceSource, IngressDispatcher, MemoryDeadLetters,
};
use ktwin_testkit::servers::rabbitmqctl;
use tokio_util::sync::CancellationToken;

const MESSAGES: u64 = 50_000;
const DEVICES: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts RabbitMQ; run alone with --ignored"]
async fn nothing_is_lost_when_rabbitmq_restarts_mid_run() {
    let suffix = suffix();
    let iface = format!("it-restart-{suffix}");
    let mut target = rabbit_target(&suffix, &iface, QueueType::Classic).await;
    let config = AmqpSourceConfig {
        queue: format!("devices-{suffix}"),
        declare: true,
        binding_keys: vec![format!("ktwin.real.{iface}.#")],
        mqtt_exchange: "amq.topic".into(),
        prefetch: 512,
        consumer_tag: format!("it-{suffix}"),
    };
    target.extra_queues.push(config.queue.clone());
    let source = AmqpQueueSource::start(target.broker.connector().clone(), config)
        .await
        .unwrap();
    let connected = source.connected();
    while !connected.load(std::sync::atomic::Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dispatcher = IngressDispatcher::new(
        Arc::new(target.broker.clone()),
        Arc::new(MemoryDeadLetters::new(1 << 20)),
        IngressPolicy::default(),
        DispatchMetrics::ingress(&format!("it-{suffix}"), "ktwin"),
    );
    let counters = dispatcher.counters();
    let stop = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(source, stop.clone()));

    let messages = device_messages(&iface, DEVICES, 0..MESSAGES);
    let mut publishers = Vec::new();
    for (n, chunk) in messages.chunks(MESSAGES as usize / 2).enumerate() {
        let chunk = chunk.to_vec();
        let client_id = format!("pub-{n}-{suffix}");
        publishers.push(tokio::spawn(async move {
            let server = rabbitmq_mqtt();
            publish_qos1(&server.host, server.port, &client_id, chunk, None).await
        }));
    }

    // Restart in the middle of the run.
    let started = Instant::now();
    while counters.dispatched() < MESSAGES / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "run did not get going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "restarting RabbitMQ after {} dispatched events",
        counters.dispatched()
    );
    tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["stop_app"]);
        rabbitmqctl(&["start_app"]);
    })
    .await
    .unwrap();

    for publisher in publishers {
        publisher.await.unwrap().unwrap();
    }
    let seen = collect(
        &mut target.events,
        MESSAGES as usize,
        Duration::from_secs(60),
    )
    .await;
    let duplicates: usize = seen.values().map(|copies| copies.len() - 1).sum();
    eprintln!(
        "received {} readings, {duplicates} duplicates, {} publish retries",
        seen.len(),
        counters
            .publish_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_readings(&seen, &iface, DEVICES, MESSAGES);
    stop.cancel();
    running.await.unwrap();
    target.cleanup().await;
}
