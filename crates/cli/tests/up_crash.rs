//! `ktwin up` killed with SIGKILL while a device publishes QoS 1 messages, then restarted on the
//! same project (its `.ktwin/` state): every message the device got a PUBACK for is stored
//! (the MQTT gate holds the embedded broker's PUBACK until the store has committed the
//! message: `docs/architecture.md`, "Durability of `ktwin up` across a crash"), what the store
//! held before the kill is all there, nothing is stored twice or invented, and the platform
//! takes messages again. It prints the counts (`crash: …`).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Up, copy_project, read_secret};
use ktwin_auth::local::{ADMIN_TOKEN_FILE, SIMULATOR_PASSWORD_FILE, SIMULATOR_USERNAME};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

const TOPIC: &str = "ktwin/real/vehicle/vehicle-car1";

/// Hang guard for each awaited step: generous, not a performance bound.
const DEADLINE: Duration = Duration::from_secs(120);

/// What the device sent and which messages the broker acknowledged, by sequence number.
#[derive(Default)]
struct Device {
    sent: u64,
    in_flight: HashMap<u16, u64>,
    acknowledged: BTreeSet<u64>,
}

type Shared = Arc<Mutex<Device>>;

/// Connects a device logged in as the simulator and publishes `{"seq": n}` for n = 0, 1, …
/// until the broker goes away; the returned task ends then.
fn publish_until_killed(
    host: &str,
    port: u16,
    password: &str,
    device: Shared,
) -> tokio::task::JoinHandle<()> {
    let mut options = MqttOptions::new("crash-device", host, port);
    options.set_credentials(SIMULATOR_USERNAME, password);
    options.set_inflight(100);
    let (client, mut events) = AsyncClient::new(options, 100);
    tokio::spawn(async move {
        let publisher = tokio::spawn(async move {
            for seq in 0.. {
                let payload = format!("{{\"seq\":{seq}}}");
                if client
                    .publish(TOPIC, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        // Publishes leave in the order they were requested and are not retransmitted on this
        // one connection, so the k-th outgoing publish carries seq k.
        while let Ok(event) = events.poll().await {
            let mut device = device.lock().unwrap();
            match event {
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    let seq = device.sent;
                    device.sent += 1;
                    device.in_flight.insert(pkid, seq);
                }
                Event::Incoming(Packet::PubAck(ack)) => {
                    let seq = device.in_flight.remove(&ack.pkid).expect("a PUBACK pairs");
                    device.acknowledged.insert(seq);
                }
                _ => {}
            }
        }
        drop(events);
        publisher.await.unwrap();
    })
}

/// The `seq` of every stored event, with repeats, paging through `GET /api/v1/twin-events`.
async fn stored_seqs(client: &reqwest::Client, base: &str) -> Vec<u64> {
    let url = format!("{base}/api/v1/twin-events?limit=1000");
    let events: Vec<serde_json::Value> = ktwin_testkit::all_pages(client, &url).await;
    events
        .iter()
        .filter_map(|e| e["eventData"]["seq"].as_u64())
        .collect()
}

/// Waits (polling, with the hang guard) until `ready` holds.
async fn until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !ready().await {
        assert!(started.elapsed() < DEADLINE, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn acknowledged(device: &Shared) -> usize {
    device.lock().unwrap().acknowledged.len()
}

fn api_client(admin_token: &str) -> reqwest::Client {
    let bearer = format!("Bearer {admin_token}").parse().unwrap();
    reqwest::Client::builder()
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            bearer,
        )]))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_platform_keeps_every_message_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("mqtt-device");
    copy_project(
        &ktwin_testkit::workspace_root().join("examples/mqtt-device"),
        &project,
    );
    let mut up = Up::start(&project, &[], "warn");
    let base = up.base_url().await;
    let (host, port) = up.mqtt_address().await;
    let auth = project.join(".ktwin").join("auth");
    let client = api_client(&read_secret(&auth.join(ADMIN_TOKEN_FILE)));
    let password = read_secret(&auth.join(SIMULATOR_PASSWORD_FILE));

    let device = Shared::default();
    let publishing = publish_until_killed(&host, port, &password, device.clone());
    // Under load: some messages stored, more acknowledged after that, then the kill.
    let mut stored_before = Vec::new();
    until("storing 100 messages", async || {
        stored_before = stored_seqs(&client, &base).await;
        stored_before.len() >= 100
    })
    .await;
    let checkpoint = acknowledged(&device);
    until("200 more PUBACKs", async || {
        acknowledged(&device) >= checkpoint + 200
    })
    .await;
    up.kill();
    tokio::time::timeout(DEADLINE, publishing)
        .await
        .expect("the device noticed the kill")
        .unwrap();

    let mut restarted = Up::start(&project, &[], "warn");
    let base = restarted.base_url().await;
    let stored = stored_seqs(&client, &base).await;
    let device = std::mem::take(&mut *device.lock().unwrap());
    let unique: BTreeSet<u64> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "a message was stored twice");
    assert!(
        unique.iter().all(|&seq| seq < device.sent),
        "a stored message was never sent"
    );
    let lost_from_store: Vec<_> = stored_before
        .iter()
        .filter(|seq| !unique.contains(seq))
        .collect();
    assert!(
        lost_from_store.is_empty(),
        "{} messages the store listed before the kill are gone, e.g. {:?}",
        lost_from_store.len(),
        &lost_from_store[..lost_from_store.len().min(5)]
    );
    let lost: Vec<_> = device.acknowledged.difference(&unique).collect();
    eprintln!(
        "crash: {} of {} acknowledged messages not stored after the kill; {} sent, {} stored \
         ({} stored but not acknowledged: in flight at the kill), {} stored before the kill was \
         observed",
        lost.len(),
        device.acknowledged.len(),
        device.sent,
        unique.len(),
        unique.len() - (device.acknowledged.len() - lost.len()),
        stored_before.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged messages are not stored after the kill, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // The restarted platform takes messages again.
    let (host, port) = restarted.mqtt_address().await;
    let device = Shared::default();
    let _publishing = publish_until_killed(&host, port, &password, device.clone());
    until("a message stored after the restart", async || {
        stored_seqs(&client, &base).await.len() > stored.len()
    })
    .await;
}
