//! Device messages over MQTT arrive as CloudEvents on the broker exchange, for both ingestion
//! paths; bad inputs are dead-lettered with a reason and counted while the dispatcher goes on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ktwin_broker::{DEAD_LETTER_REASON_HEADER, QueueType, header_string};
use ktwin_dispatcher::bench::{device_messages, publish_qos1};
use ktwin_dispatcher::ingress::IngressPolicy;
use ktwin_dispatcher::metrics::DispatchMetrics;
use ktwin_dispatcher::{
    AmqpDeadLetters, AmqpQueueSource, AmqpSourceConfig, DeadLetterSink, DeviceSource,
    IngressDispatcher, KIND_HEADER, MemoryDeadLetters, MqttSource, MqttSourceConfig, TOPIC_HEADER,
};
use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

const MESSAGES: u64 = 10_000;
const DEVICES: u64 = 50;

fn policy(known: &[&str]) -> IngressPolicy {
    IngressPolicy {
        known_interfaces: Some(known.iter().map(|s| (*s).to_owned()).collect()),
        ..IngressPolicy::default()
    }
}

fn amqp_source_config(suffix: &str, ifaces: &[&str]) -> AmqpSourceConfig {
    AmqpSourceConfig {
        queue: format!("devices-{suffix}"),
        declare: true,
        binding_keys: ifaces.iter().map(|i| format!("ktwin.real.{i}.#")).collect(),
        mqtt_exchange: "amq.topic".into(),
        prefetch: 512,
        consumer_tag: format!("it-{suffix}"),
    }
}

fn mqtt_source_config(suffix: &str, ifaces: &[&str]) -> MqttSourceConfig {
    let server = mosquitto();
    let mut config =
        MqttSourceConfig::new(&server.host, server.port, &format!("ktwin-it-{suffix}"));
    config.filters = ifaces.iter().map(|i| format!("ktwin/real/{i}/#")).collect();
    config.persistent_session = false;
    config
}

/// Waits until the source is connected and its subscription is in place.
async fn wait_connected(source: &impl DeviceSource) {
    let connected = source.connected();
    for _ in 0..200 {
        if connected.load(std::sync::atomic::Ordering::Acquire) {
            // The MQTT SUBSCRIBE goes out right after CONNACK.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("source did not connect");
}

/// `config`'s device queue consumed (connected), and a dispatcher of `iface`'s readings to
/// `target`'s broker.
async fn amqp_dispatcher(
    target: &Target,
    config: AmqpSourceConfig,
    iface: &str,
    suffix: &str,
) -> (AmqpQueueSource, IngressDispatcher) {
    let source = AmqpQueueSource::start(target.broker.connector().clone(), config)
        .await
        .unwrap();
    wait_connected(&source).await;
    let dispatcher = IngressDispatcher::new(
        Arc::new(target.broker.clone()),
        Arc::new(MemoryDeadLetters::new(1 << 20)),
        policy(&[iface]),
        DispatchMetrics::ingress(&format!("it-{suffix}"), "ktwin"),
    );
    (source, dispatcher)
}

async fn publish_split(server: MqttServer, suffix: &str, messages: Vec<(String, Vec<u8>)>) {
    let half = messages.len() / 2;
    let mut first = messages;
    let second = first.split_off(half);
    let (id_a, id_b) = (format!("pub-a-{suffix}"), format!("pub-b-{suffix}"));
    let a = publish_qos1(&server.host, server.port, &id_a, first, None);
    let b = publish_qos1(&server.host, server.port, &id_b, second, None);
    let (a, b) = tokio::join!(a, b);
    a.unwrap();
    b.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_via_the_rabbitmq_mqtt_plugin_queue() {
    let suffix = suffix();
    let iface = format!("it-amqp-{suffix}");
    let mut target = rabbit_target(&suffix, &iface, QueueType::Classic).await;
    let config = amqp_source_config(&suffix, &[&iface]);
    target.extra_queues.push(config.queue.clone());
    let (source, dispatcher) = amqp_dispatcher(&target, config, &iface, &suffix).await;
    let counters = dispatcher.counters();
    let stop = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(source, stop.clone()));

    publish_split(
        rabbitmq_mqtt(),
        &suffix,
        device_messages(&iface, DEVICES, 0..MESSAGES),
    )
    .await;
    let seen = collect(
        &mut target.events,
        MESSAGES as usize,
        Duration::from_secs(45),
    )
    .await;
    assert_readings(&seen, &iface, DEVICES, MESSAGES);
    stop.cancel();
    running.await.unwrap();
    assert_eq!(counters.dispatched(), MESSAGES);
    assert_eq!(counters.dead_lettered(), 0);
    target.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_via_a_direct_mosquitto_subscription() {
    let suffix = suffix();
    let iface = format!("it-mqtt-{suffix}");
    let mut target = rabbit_target(&suffix, &iface, QueueType::Classic).await;
    let source = MqttSource::start(mqtt_source_config(&suffix, &[&iface]));
    wait_connected(&source).await;
    let dispatcher = IngressDispatcher::new(
        Arc::new(target.broker.clone()),
        Arc::new(MemoryDeadLetters::new(1 << 20)),
        policy(&[&iface]),
        DispatchMetrics::ingress(&format!("it-{suffix}"), "ktwin"),
    );
    let counters = dispatcher.counters();
    let stop = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(source, stop.clone()));

    publish_split(
        mosquitto(),
        &suffix,
        device_messages(&iface, DEVICES, 0..MESSAGES),
    )
    .await;
    let seen = collect(
        &mut target.events,
        MESSAGES as usize,
        Duration::from_secs(45),
    )
    .await;
    assert_readings(&seen, &iface, DEVICES, MESSAGES);
    stop.cancel();
    running.await.unwrap();
    assert_eq!(counters.dispatched(), MESSAGES);
    target.cleanup().await;
}

/// The bad inputs of the acceptance list, then one good reading.
fn bad_inputs(iface: &str) -> Vec<(String, Vec<u8>, &'static str)> {
    let mut huge = br#"{"blob":""#.to_vec();
    huge.resize(2 * 1024 * 1024, b'x');
    huge.extend_from_slice(br#""}"#);
    vec![
        (
            format!("ktwin/real/{iface}/d1"),
            b"temperature=8".to_vec(),
            "not_json",
        ),
        (format!("ktwin/real/{iface}/d1"), huge, "payload_too_large"),
        (format!("ktwin/real/{iface}"), b"{}".to_vec(), "bad_topic"),
        (
            format!("ktwin/real/{iface}/d1/extra"),
            b"{}".to_vec(),
            "bad_topic",
        ),
        (
            format!("ktwin/real/{iface}x/d1"),
            b"{}".to_vec(),
            "unknown_interface",
        ),
    ]
}

fn metric_value(rendered: &str, dispatcher: &str, reason: &str) -> u64 {
    rendered
        .lines()
        .filter(|l| l.starts_with("ktwin_dispatcher_dead_letters_total{"))
        .filter(|l| {
            l.contains(&format!("dispatcher=\"{dispatcher}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn run_bad_inputs(
    source: impl DeviceSource + 'static,
    server: MqttServer,
    suffix: &str,
    iface: &str,
    target: &mut Target,
    dead_letters: Arc<dyn DeadLetterSink>,
) -> (String, Vec<(String, Vec<u8>, &'static str)>) {
    ktwin_service::prometheus();
    let name = format!("it-bad-{suffix}");
    let dispatcher = IngressDispatcher::new(
        Arc::new(target.broker.clone()),
        dead_letters,
        policy(&[iface]),
        DispatchMetrics::ingress(&name, "ktwin"),
    );
    let counters = dispatcher.counters();
    let stop = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(source, stop.clone()));
    let bad = bad_inputs(iface);
    let mut messages: Vec<(String, Vec<u8>)> =
        bad.iter().map(|(t, p, _)| (t.clone(), p.clone())).collect();
    messages.push((
        format!("ktwin/real/{iface}/d1"),
        br#"{"msg_count":7}"#.to_vec(),
    ));
    publish_qos1(
        &server.host,
        server.port,
        &format!("pub-bad-{suffix}"),
        messages,
        None,
    )
    .await
    .unwrap();

    // The dispatcher keeps running: the good reading after the bad ones arrives.
    let seen = collect(&mut target.events, 1, Duration::from_secs(20)).await;
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [7]);
    // The event can reach the consumer before the dispatcher has counted its confirmed publish.
    for _ in 0..400 {
        if counters.dead_lettered() >= bad.len() as u64 && counters.dispatched() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counters.dead_lettered(), bad.len() as u64);
    assert_eq!(counters.dispatched(), 1);
    let rendered = ktwin_service::prometheus().render();
    for reason in ["not_json", "payload_too_large", "unknown_interface"] {
        assert_eq!(
            metric_value(&rendered, &name, reason),
            1,
            "{reason} in\n{rendered}"
        );
    }
    assert_eq!(metric_value(&rendered, &name, "bad_topic"), 2);
    stop.cancel();
    running.await.unwrap();
    (name, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_via_the_plugin_queue_go_to_the_dead_letter_queue_with_reasons() {
    let suffix = suffix();
    let iface = format!("it-bad-amqp-{suffix}");
    let unknown = format!("{iface}x");
    let mut target = rabbit_target(&suffix, &iface, QueueType::Classic).await;
    let config = amqp_source_config(&suffix, &[&iface, &unknown]);
    let dead_letter_queue = format!("dead-letters-{suffix}");
    target
        .extra_queues
        .extend([config.queue.clone(), dead_letter_queue.clone()]);
    let source = AmqpQueueSource::start(target.broker.connector().clone(), config)
        .await
        .unwrap();
    wait_connected(&source).await;
    let dead_letters = AmqpDeadLetters::new(target.broker.connector().clone(), &dead_letter_queue)
        .await
        .unwrap();
    let (_, bad) = run_bad_inputs(
        source,
        rabbitmq_mqtt(),
        &suffix,
        &iface,
        &mut target,
        Arc::new(dead_letters),
    )
    .await;

    let (_, channel) = target.broker.connector().channel(None).await.unwrap();
    let mut letters = Vec::new();
    while let Some(message) = channel
        .basic_get(
            dead_letter_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let headers = message.delivery.properties.headers().clone().unwrap();
        letters.push((
            header_string(&headers, TOPIC_HEADER).unwrap(),
            header_string(&headers, KIND_HEADER).unwrap(),
            header_string(&headers, DEAD_LETTER_REASON_HEADER).unwrap(),
            message.delivery.data.len(),
        ));
    }
    // Dead letters are stored concurrently: compare them in a fixed order.
    letters.sort();
    let mut expected: Vec<(String, String, usize)> = bad
        .iter()
        // The plugin turns MQTT topics into routing keys.
        .map(|(topic, payload, kind)| (topic.replace('/', "."), (*kind).to_owned(), payload.len()))
        .collect();
    expected.sort();
    let got: Vec<(String, String, usize)> = letters
        .iter()
        .map(|(t, k, _, len)| (t.clone(), k.clone(), *len))
        .collect();
    assert_eq!(got, expected);
    let reason_of = |kind: &str| {
        letters
            .iter()
            .find(|l| l.1 == kind)
            .map(|l| l.2.clone())
            .unwrap()
    };
    assert!(reason_of("payload_too_large").contains("exceeds the limit of 262144 bytes"));
    assert!(reason_of("unknown_interface").contains("not in the loaded model"));
    assert!(reason_of("not_json").contains("is not JSON"));
    target.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_via_mosquitto_are_dead_lettered_with_reasons() {
    let suffix = suffix();
    let iface = format!("it-bad-mqtt-{suffix}");
    let unknown = format!("{iface}x");
    let mut target = rabbit_target(&suffix, &iface, QueueType::Classic).await;
    let source = MqttSource::start(mqtt_source_config(&suffix, &[&iface, &unknown]));
    wait_connected(&source).await;
    // Room for every bad input, the 2 MiB one included: a smaller bound evicts the older letters.
    let dead_letters = Arc::new(MemoryDeadLetters::new(8 << 20));
    let (_, bad) = run_bad_inputs(
        source,
        mosquitto(),
        &suffix,
        &iface,
        &mut target,
        dead_letters.clone(),
    )
    .await;
    let mut letters = dead_letters.take();
    // Shared-subscription connections deliver in parallel: compare in a fixed order.
    let topic = |l: &ktwin_dispatcher::NewDeadLetter| l.header(TOPIC_HEADER).unwrap().to_owned();
    let kind = |l: &ktwin_dispatcher::NewDeadLetter| l.header(KIND_HEADER).unwrap().to_owned();
    letters.sort_by_key(|l| (topic(l), kind(l), l.payload.len()));
    let mut expected = bad.clone();
    expected.sort_by(|a, b| (&a.0, a.2, a.1.len()).cmp(&(&b.0, b.2, b.1.len())));
    assert_eq!(letters.len(), expected.len());
    for ((topic, payload, kind), letter) in expected.iter().zip(&letters) {
        assert_eq!(letter.header(TOPIC_HEADER), Some(topic.as_str()));
        assert_eq!(letter.header(KIND_HEADER), Some(*kind));
        assert_eq!(letter.origin, ktwin_dispatcher::INGRESS_ORIGIN);
        assert_eq!(&letter.payload, payload);
    }
    let too_few = letters
        .iter()
        .find(|l| l.header(TOPIC_HEADER) == Some(format!("ktwin/real/{iface}").as_str()))
        .unwrap();
    assert!(
        too_few
            .reason
            .contains("expected ktwin/real/<iface>/<instance>"),
        "{}",
        too_few.reason
    );
    target.cleanup().await;
}

/// The original KTWIN's devices publish on dotted topics, `ktwin.real.<iface>.<instance>`: the
/// default subscription (`ktwin/real/#` and `+`) takes them in beside the slash form, and a
/// one-level topic outside the grammar is dead-lettered and counted as `bad_topic` instead of
/// being ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotted_topics_via_mosquitto_are_ingested_and_strays_counted() {
    ktwin_service::prometheus();
    let suffix = suffix();
    let iface = format!("it-dotted-{suffix}");
    let mut target = rabbit_target(&suffix, &iface, QueueType::Classic).await;
    let server = mosquitto();
    let mut config =
        MqttSourceConfig::new(&server.host, server.port, &format!("ktwin-it-{suffix}"));
    assert_eq!(config.filters, ["ktwin/real/#", "+"]);
    // Slash topics of this test only (other tests publish on the same server).
    config.filters[0] = format!("ktwin/real/{iface}/#");
    config.persistent_session = false;
    config.connections = 1;
    let source = MqttSource::start(config);
    wait_connected(&source).await;
    let dead_letters = Arc::new(MemoryDeadLetters::new(1 << 20));
    let name = format!("it-dotted-{suffix}");
    let dispatcher = IngressDispatcher::new(
        Arc::new(target.broker.clone()),
        dead_letters.clone(),
        policy(&[&iface]),
        DispatchMetrics::ingress(&name, "ktwin"),
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(source, stop.clone()));
    let strays = [format!("ktwin.real.{iface}"), format!("stray-{suffix}")];
    let mut messages: Vec<(String, Vec<u8>)> = strays
        .iter()
        .map(|topic| (topic.clone(), b"{}".to_vec()))
        .collect();
    messages.push((
        format!("ktwin.real.{iface}.d1"),
        br#"{"msg_count":7}"#.to_vec(),
    ));
    messages.push((
        format!("ktwin/real/{iface}/d2"),
        br#"{"msg_count":8}"#.to_vec(),
    ));
    publish_qos1(
        &server.host,
        server.port,
        &format!("pub-dotted-{suffix}"),
        messages,
        None,
    )
    .await
    .unwrap();

    let seen = collect(&mut target.events, 2, Duration::from_secs(20)).await;
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [7, 8]);
    use cloudevents::AttributesReader;
    let dotted = &seen[&7][0];
    assert_eq!(dotted.ty(), format!("ktwin.real.{iface}"));
    assert_eq!(dotted.source().as_str(), "d1");
    // Dead letters are counted after they are stored, which can follow the good readings.
    let mut letters = Vec::new();
    for _ in 0..400 {
        letters.extend(dead_letters.take());
        let has = |topic: &str| {
            letters
                .iter()
                .any(|l| l.headers.iter().any(|(_, v)| v == topic))
        };
        if strays.iter().all(|topic| has(topic)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for topic in &strays {
        let letter = letters
            .iter()
            .find(|l| l.headers.iter().any(|(_, v)| v == topic))
            .unwrap_or_else(|| panic!("no dead letter for {topic:?}: {letters:?}"));
        let kind = letter.headers.iter().find(|(n, _)| n == KIND_HEADER);
        assert_eq!(
            kind.map(|(_, v)| v.as_str()),
            Some("bad_topic"),
            "{letter:?}"
        );
    }
    let rendered = ktwin_service::prometheus().render();
    assert!(
        metric_value(&rendered, &name, "bad_topic") >= 2,
        "{rendered}"
    );
    stop.cancel();
    running.await.unwrap();
    target.cleanup().await;
}

/// Arbitrary topics under the subscribed prefix (MQTT-valid: no wildcard, no NUL) and
/// arbitrary payloads, drawn from a fixed seed.
fn arbitrary_messages(iface: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    let suffix = prop_oneof![
        // Printable (Mosquitto refuses control characters), no wildcard.
        "\\PC{0,40}".prop_map(|s| s.replace(['+', '#'], "_")),
        "d[0-9]{1,3}",
        "[a-z]{1,8}/[a-z]{1,8}",
        Just(String::new()),
    ];
    let payload = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "\\PC{0,60}".prop_map(String::into_bytes),
        Just(br#"{"ok":true}"#.to_vec()),
        Just(b"[1,2]".to_vec()),
    ];
    let prefix = format!("ktwin/real/{iface}/");
    let strategy = prop::collection::vec((suffix, payload), n).prop_map(move |pairs| {
        pairs
            .into_iter()
            .map(|(suffix, payload)| (format!("{prefix}{suffix}"), payload))
            .collect::<Vec<_>>()
    });
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    strategy
        .new_tree(&mut runner)
        .expect("a deterministic draw")
        .current()
}

/// Arbitrary topics and payloads through a real Mosquitto: the dispatcher reads or refuses
/// each (dispatched + dead-lettered = published) and goes on to the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_messages_via_mosquitto_are_each_read_or_refused() {
    let suffix = suffix();
    let iface = format!("it-fuzz-{suffix}");
    let target = rabbit_target(&suffix, &iface, QueueType::Classic).await;
    let server = mosquitto();
    let mut config = mqtt_source_config(&suffix, &[&iface]);
    config.connections = 1;
    let source = MqttSource::start(config);
    wait_connected(&source).await;
    let dispatcher = IngressDispatcher::new(
        Arc::new(target.broker.clone()),
        Arc::new(MemoryDeadLetters::new(8 << 20)),
        policy(&[&iface]),
        DispatchMetrics::ingress(&format!("it-fuzz-{suffix}"), "ktwin"),
    );
    let counters = dispatcher.counters();
    let stop = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(source, stop.clone()));
    let mut messages = arbitrary_messages(&iface, 60);
    messages.push((
        format!("ktwin/real/{iface}/d1"),
        br#"{"msg_count":7}"#.to_vec(),
    ));
    let published = messages.len() as u64;
    publish_qos1(
        &server.host,
        server.port,
        &format!("pub-fuzz-{suffix}"),
        messages,
        None,
    )
    .await
    .unwrap();
    let handled = || counters.dispatched() + counters.dead_lettered();
    for _ in 0..600 {
        if handled() >= published {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(handled(), published, "every message read or refused");
    assert!(!running.is_finished(), "the dispatcher is still running");
    stop.cancel();
    running.await.unwrap();
    target.cleanup().await;
}

/// A dispatcher that stops closes its AMQP source: when `run` returns, the device queue has no
/// consumer of it and can be deleted at once. Before, the source's consumer was dropped
/// mid-await and cancelled in the background, while RabbitMQ refuses to delete a quorum queue
/// whose consumer is being cancelled (an internal error), and a deletion crossing lapin's
/// cancel closed the whole connection (seen in `ktwin bench dispatch`'s clean-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_dispatcher_leaves_no_consumer_on_its_device_queue() {
    let suffix = suffix();
    let iface = format!("it-close-{suffix}");
    let target = rabbit_target(&suffix, &iface, QueueType::Classic).await;
    let (generation, _) = target.broker.connector().channel(None).await.unwrap();
    for round in 0..5 {
        let mut config = amqp_source_config(&suffix, &[&iface]);
        config.queue = format!("{}-{round}", config.queue);
        let queue = config.queue.clone();
        let (source, dispatcher) = amqp_dispatcher(&target, config, &iface, &suffix).await;
        let stop = CancellationToken::new();
        let running = tokio::spawn(dispatcher.run(source, stop.clone()));
        stop.cancel();
        running.await.unwrap();
        let (now, channel) = target.broker.connector().channel(None).await.unwrap();
        assert_eq!(now, generation, "{queue}: the connection was closed");
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .unwrap();
        assert_eq!(
            declared.consumer_count(),
            0,
            "{queue}: still consumed after its dispatcher returned"
        );
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap_or_else(|error| panic!("{queue} could not be deleted: {error}"));
    }
    target.cleanup().await;
}

/// Reads what `source` delivers until nothing came for `quiet`.
async fn drain_for(
    source: &mut MqttSource,
    quiet: Duration,
) -> Vec<ktwin_dispatcher::SourceMessage> {
    let mut taken = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(quiet, source.next()).await {
        taken.push(message);
    }
    taken
}

/// Every acknowledgement a persistent MQTT source was asked for before it closed reaches the
/// broker: a dispatcher started again at once under the same client id is not sent those
/// messages again (it would give them new event ids: the store could not tell them apart).
/// Before, closing an MQTT source did nothing and dropping it ended its connections with the
/// acknowledgements still queued (1,983 of 2,000 sent again); then, with DISCONNECT sent but
/// not waited for, Mosquitto let the new connection take the client id over before it read
/// the old one's acknowledgements (932 to 1,447 sent again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_mqtt_source_has_sent_the_acknowledgements_asked_of_it() {
    const SENT: u64 = 2_000;
    let suffix = suffix();
    let iface = format!("it-mqtt-close-{suffix}");
    let mut config = mqtt_source_config(&suffix, &[&iface]);
    config.persistent_session = true;
    config.connections = 4;
    for round in 0..3 {
        let mut source = MqttSource::start(config.clone());
        wait_connected(&source).await;
        let messages = device_messages(&iface, DEVICES, round * SENT..(round + 1) * SENT);
        publish_split(mosquitto(), &format!("{suffix}-{round}"), messages).await;
        let taken = drain_for(&mut source, Duration::from_secs(2)).await;
        assert_eq!(taken.len() as u64, SENT, "round {round}: messages taken");
        for message in taken {
            message.ack().await.unwrap();
        }
        source.close().await;
        drop(source);

        let mut again = MqttSource::start(config.clone());
        wait_connected(&again).await;
        let redelivered = drain_for(&mut again, Duration::from_secs(2)).await;
        assert_eq!(
            redelivered.len(),
            0,
            "round {round}: acknowledged messages were sent again after the source closed"
        );
        again.close().await;
    }
    // A clean session discards the broker's copy of the persistent one.
    config.persistent_session = false;
    let mut cleaner = MqttSource::start(config);
    wait_connected(&cleaner).await;
    cleaner.close().await;
}
