//! Running a world's devices over MQTT.
//!
//! Devices are grouped with their battery device (so a measurement frequency reaches the
//! sensors it controls) and the groups are spread over `connections` MQTT connections. Each
//! connection has a publisher task (its devices' schedule) and an event-loop task (acks,
//! virtual-topic messages, reconnection with backoff). A connection that fails is retried on
//! its own; the other connections carry on. Publishing starts once every connection is up
//! (or after a bounded wait), so the first seconds are not a burst of queued messages.
//!
//! A connection stands for a gateway of devices: it subscribes once per device interface it
//! carries (`ktwin/virtual/<interface>/+`) rather than once per device, and hands each message
//! to its device, ignoring those of devices on other connections. Per-device filters would
//! make brokers match every new topic against tens of thousands of filters (rumqttd does so
//! linearly), which is the broker's cost, not the platform's.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::SecondsFormat;
use ktwin_events::{Topic, TopicKind};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::SimError;
use crate::load::{DeviceType, LoadProfile};
use crate::payload::{DeviceState, Rng};
use crate::world::{SimDevice, SimWorld};

/// How fast devices publish.
#[derive(Debug, Clone)]
pub enum Pace {
    /// The load model, `speedup` times faster than real time, starting at model time
    /// `start_at` (seconds into the profile).
    Profile {
        /// The profile.
        profile: LoadProfile,
        /// Model seconds per wall second.
        speedup: f64,
        /// Model time at the start.
        start_at: f64,
    },
    /// A constant total rate (messages per second) over all devices, for benchmarks.
    Rate(f64),
}

/// A simulation run.
#[derive(Clone)]
pub struct SimConfig {
    /// MQTT broker host.
    pub host: String,
    /// MQTT broker port.
    pub port: u16,
    /// Credentials, used when both are set.
    pub credentials: Option<(String, String)>,
    /// QoS of published messages (0 or 1).
    pub qos: QoS,
    /// Publishing pace.
    pub pace: Pace,
    /// Wall-clock length of the run; `None` = one profile cycle from `start_at` (rate mode
    /// needs a duration).
    pub duration: Option<Duration>,
    /// MQTT connections to spread the devices over.
    pub connections: usize,
    /// Seed of the readings' random walks.
    pub seed: u64,
    /// Prefix of the MQTT client ids.
    pub client_prefix: String,
    /// Subscribe to each device's virtual topic and apply what arrives.
    pub subscribe_virtual: bool,
}

impl std::fmt::Debug for SimConfig {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.credentials.as_ref().map(|(user, _)| user))
            .field("qos", &self.qos)
            .field("pace", &self.pace)
            .field("duration", &self.duration)
            .field("connections", &self.connections)
            .field("seed", &self.seed)
            .field("client_prefix", &self.client_prefix)
            .field("subscribe_virtual", &self.subscribe_virtual)
            .finish()
    }
}

impl SimConfig {
    /// A configuration for `host:port` with the paper's profile at real time, QoS 0.
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
            credentials: None,
            qos: QoS::AtMostOnce,
            pace: Pace::Profile {
                profile: LoadProfile::paper(),
                speedup: 1.0,
                start_at: 0.0,
            },
            duration: None,
            connections: 16,
            seed: 1,
            client_prefix: format!("ktwin-sim-{}", std::process::id()),
            subscribe_virtual: true,
        }
    }

    fn wall_duration(&self) -> Result<Duration, SimError> {
        if let Some(d) = self.duration {
            return Ok(d);
        }
        match &self.pace {
            Pace::Profile {
                profile,
                speedup,
                start_at,
            } => {
                let model = (profile.cycle() - start_at.rem_euclid(profile.cycle())).max(0.0);
                Ok(Duration::from_secs_f64(model / speedup))
            }
            Pace::Rate(_) => Err(SimError::RateNeedsDuration),
        }
    }

    fn validate(&self, world: &SimWorld) -> Result<(), SimError> {
        if world.devices.is_empty() {
            return Err(SimError::NoDevices);
        }
        if self.connections == 0 {
            return Err(SimError::NoConnections);
        }
        match &self.pace {
            Pace::Profile {
                speedup, start_at, ..
            } if !(*speedup > 0.0 && speedup.is_finite()) || *start_at < 0.0 => {
                Err(SimError::BadProfile {
                    speedup: *speedup,
                    start_at: *start_at,
                })
            }
            Pace::Rate(rate) if !(*rate > 0.0 && rate.is_finite()) => {
                Err(SimError::BadRate { rate: *rate })
            }
            _ => Ok(()),
        }
    }
}

/// Counters of one connection.
#[derive(Debug, Default)]
struct ConnectionCounters {
    /// Handed to the MQTT client.
    queued: AtomicU64,
    /// Written to the network by the client.
    sent: AtomicU64,
    /// PUBACKs received (QoS 1).
    acknowledged: AtomicU64,
    /// Messages received on virtual topics.
    received: AtomicU64,
    /// Connection errors and rejected virtual messages.
    errors: AtomicU64,
}

/// Live totals of a run, for progress display.
#[derive(Debug, Default)]
pub struct Totals {
    connections: Vec<Arc<ConnectionCounters>>,
    per_type: [AtomicU64; 9],
    connected: AtomicUsize,
}

impl Totals {
    fn sum(&self, field: impl Fn(&ConnectionCounters) -> &AtomicU64) -> u64 {
        self.connections
            .iter()
            .map(|c| field(c).load(Ordering::Relaxed))
            .sum()
    }

    /// Messages written to the network so far.
    pub fn sent(&self) -> u64 {
        self.sum(|c| &c.sent)
    }

    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.sum(|c| &c.errors)
    }

    /// Acknowledged messages so far.
    pub fn acknowledged(&self) -> u64 {
        self.sum(|c| &c.acknowledged)
    }
}

/// Per device type figures of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TypeReport {
    /// Devices of the type.
    pub devices: usize,
    /// Messages published.
    pub sent: u64,
    /// Messages per wall second.
    pub rate_per_s: f64,
    /// The load model's rate for the same span (profile mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_rate_per_s: Option<f64>,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimReport {
    /// Devices simulated.
    pub devices: usize,
    /// MQTT connections used.
    pub connections: usize,
    /// QoS of the messages.
    pub qos: u8,
    /// Wall seconds from the first publish to the end of publishing.
    pub elapsed_s: f64,
    /// Messages handed to the MQTT clients.
    pub queued: u64,
    /// Messages written to the network.
    pub sent: u64,
    /// Messages acknowledged by the broker (QoS 1 only).
    pub acknowledged: u64,
    /// Messages received on virtual topics.
    pub received: u64,
    /// Connection errors and rejected virtual messages.
    pub errors: u64,
    /// `sent / elapsed_s`.
    pub rate_per_s: f64,
    /// Figures per device type (by short name).
    pub per_type: BTreeMap<String, TypeReport>,
}

/// A device as a connection runs it.
struct LiveDevice {
    device_type: DeviceType,
    topic: String,
    phase: f64,
    state: DeviceState,
    /// Other devices of the connection (by local index) this one's frequency applies to.
    controls: Vec<usize>,
    /// Bumped when the device is rescheduled; older heap entries are stale.
    generation: u64,
}

/// Runs `world` until the configured duration elapses or `shutdown` fires.
pub async fn run(
    world: &SimWorld,
    config: &SimConfig,
    shutdown: CancellationToken,
    on_tick: impl Fn(&Totals, Duration, Duration),
) -> Result<SimReport, SimError> {
    config.validate(world)?;
    let wall = config.wall_duration()?;
    let groups = partition(world, config.connections);
    let phases = world.phases();
    let totals = Arc::new(Totals {
        connections: (0..groups.len())
            .map(|_| Arc::new(ConnectionCounters::default()))
            .collect(),
        ..Totals::default()
    });
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let stop = shutdown.child_token();
    let mut tasks = Vec::new();
    for (conn, members) in groups.iter().enumerate() {
        let devices = live_devices(world, &phases, members)?;
        let ctx = ConnectionContext {
            id: conn,
            config: config.clone(),
            counters: totals.connections[conn].clone(),
            totals: totals.clone(),
            start: start_rx.clone(),
            stop: stop.clone(),
            seed: config.seed.wrapping_add(conn as u64),
        };
        tasks.push(tokio::spawn(run_connection(ctx, devices, groups.len())));
    }

    // Start once every connection is up, or after a bounded wait (a broker that is down
    // must not stall the run: the devices retry while the clock runs).
    let wait_until =
        Instant::now() + Duration::from_secs(5).min(wall.max(Duration::from_millis(500)));
    while totals.connected.load(Ordering::Relaxed) < groups.len() && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now() + Duration::from_millis(50);
    let _ = start_tx.send(Some(started));
    let deadline = started + wall;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(deadline) => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                on_tick(&totals, Instant::now().saturating_duration_since(started), wall);
            }
        }
    }
    let elapsed = Instant::now().saturating_duration_since(started);
    stop.cancel();
    for task in tasks {
        if let Err(err) = task.await {
            tracing::error!(%err, "a simulated connection's task failed");
        }
    }
    on_tick(&totals, elapsed, wall);
    Ok(report(world, config, &totals, elapsed))
}

/// Groups device indices by controller (a battery device and the sensors it controls stay
/// together) and deals the groups out over at most `connections` connections.
fn partition(world: &SimWorld, connections: usize) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for (i, device) in world.devices.iter().enumerate() {
        let key = device.controller.as_deref().unwrap_or(&device.instance);
        let g = *group_of.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let n = connections.min(groups.len()).max(1);
    let mut out = vec![Vec::new(); n];
    for (g, members) in groups.into_iter().enumerate() {
        out[g % n].extend(members);
    }
    out
}

fn live_devices(
    world: &SimWorld,
    phases: &[f64],
    members: &[usize],
) -> Result<Vec<LiveDevice>, SimError> {
    let local: HashMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(l, &g)| (world.devices[g].instance.as_str(), l))
        .collect();
    let mut devices: Vec<LiveDevice> = members
        .iter()
        .map(|&g| {
            let SimDevice {
                device_type,
                instance,
                ..
            } = &world.devices[g];
            let topic = Topic::new(TopicKind::Real, device_type.interface(), instance).map_err(
                |source| SimError::DeviceTopic {
                    instance: instance.clone(),
                    source,
                },
            )?;
            Ok(LiveDevice {
                device_type: *device_type,
                topic: topic.mqtt_topic(),
                phase: phases[g],
                state: DeviceState::new(*device_type),
                controls: Vec::new(),
                generation: 0,
            })
        })
        .collect::<Result<_, SimError>>()?;
    for (l, &g) in members.iter().enumerate() {
        if let Some(controller) = world.devices[g].controller.as_deref()
            && let Some(&c) = local.get(controller)
        {
            devices[c].controls.push(l);
        }
    }
    Ok(devices)
}

struct ConnectionContext {
    id: usize,
    config: SimConfig,
    counters: Arc<ConnectionCounters>,
    totals: Arc<Totals>,
    start: tokio::sync::watch::Receiver<Option<Instant>>,
    stop: CancellationToken,
    seed: u64,
}

async fn run_connection(
    mut ctx: ConnectionContext,
    mut devices: Vec<LiveDevice>,
    connections: usize,
) {
    let (client, eventloop) = AsyncClient::new(mqtt_options(&ctx), 4096);
    let virtual_topics: Vec<String> = if ctx.config.subscribe_virtual {
        devices.iter().map(|d| virtual_topic(&d.topic)).collect()
    } else {
        Vec::new()
    };
    let (virtual_tx, mut virtual_rx) = mpsc::channel::<(usize, bytes::Bytes)>(1024);
    let events_stop = CancellationToken::new();
    let events = tokio::spawn(drive_events(
        eventloop,
        client.clone(),
        virtual_topics,
        virtual_tx,
        ctx.counters.clone(),
        ctx.totals.clone(),
        events_stop.clone(),
    ));
    if let Some(started) = wait_for_start(&mut ctx).await {
        let mut publisher = Publisher {
            client: &client,
            qos: ctx.config.qos,
            counters: &ctx.counters,
            totals: &ctx.totals,
            rng: Rng::new(ctx.seed),
            buffer: Vec::with_capacity(512),
        };
        publisher
            .run(&mut devices, &ctx, started, connections, &mut virtual_rx)
            .await;
    }
    drain(&ctx, &client).await;
    events_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(2), events).await {
        Ok(Err(err)) if err.is_panic() => {
            tracing::error!(connection = ctx.id, %err, "the MQTT event loop task panicked");
        }
        _ => {}
    }
}

/// The MQTT client options of connection `ctx.id`.
fn mqtt_options(ctx: &ConnectionContext) -> MqttOptions {
    let mut options = MqttOptions::new(
        format!("{}-{}", ctx.config.client_prefix, ctx.id),
        ctx.config.host.clone(),
        ctx.config.port,
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    options.set_inflight(1000);
    if let Some((user, password)) = &ctx.config.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    options
}

/// Waits for the common start signal; `None` if the run stopped first.
async fn wait_for_start(ctx: &mut ConnectionContext) -> Option<Instant> {
    loop {
        if let Some(start) = *ctx.start.borrow() {
            return Some(start);
        }
        tokio::select! {
            () = ctx.stop.cancelled() => return None,
            changed = ctx.start.changed() => if changed.is_err() { return None },
        }
    }
}

/// Waits (bounded) until what was queued is on the wire (QoS 0) or acknowledged (QoS 1), then
/// disconnects.
async fn drain(ctx: &ConnectionContext, client: &AsyncClient) {
    let drained = |c: &ConnectionCounters| {
        let queued = c.queued.load(Ordering::Relaxed);
        match ctx.config.qos {
            QoS::AtMostOnce => c.sent.load(Ordering::Relaxed) >= queued,
            _ => c.acknowledged.load(Ordering::Relaxed) >= queued,
        }
    };
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while !drained(&ctx.counters) && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A broker that is gone cannot take the DISCONNECT either; nothing is left to lose.
    let _ = tokio::time::timeout(Duration::from_secs(1), client.disconnect()).await;
}

/// Wall clock ↔ model time.
#[derive(Debug, Clone, Copy)]
struct ModelClock {
    started: Instant,
    speedup: f64,
    start_at: f64,
}

impl ModelClock {
    fn now(&self) -> f64 {
        self.start_at
            + Instant::now()
                .saturating_duration_since(self.started)
                .as_secs_f64()
                * self.speedup
    }

    fn wall(&self, model: f64) -> Instant {
        self.started + Duration::from_secs_f64(((model - self.start_at) / self.speedup).max(0.0))
    }
}

/// Model time ordered with `total_cmp`, kept exact: rounding it (e.g. to microseconds) and
/// scheduling from the rounded value could return the same slot forever.
#[derive(Debug, Clone, Copy, PartialEq)]
struct At(f64);

impl Eq for At {}

impl PartialOrd for At {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for At {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

struct Publisher<'a> {
    client: &'a AsyncClient,
    qos: QoS,
    counters: &'a ConnectionCounters,
    totals: &'a Totals,
    rng: Rng,
    buffer: Vec<u8>,
}

impl Publisher<'_> {
    /// Publishes on `ctx`'s pace until the run stops.
    async fn run(
        &mut self,
        devices: &mut [LiveDevice],
        ctx: &ConnectionContext,
        started: Instant,
        connections: usize,
        virtual_rx: &mut mpsc::Receiver<(usize, bytes::Bytes)>,
    ) {
        match &ctx.config.pace {
            Pace::Profile {
                profile,
                speedup,
                start_at,
            } => {
                let clock = ModelClock {
                    started,
                    speedup: *speedup,
                    start_at: *start_at,
                };
                self.run_profile(devices, profile, clock, virtual_rx, &ctx.stop)
                    .await;
            }
            Pace::Rate(rate) => {
                let rate = rate / connections as f64;
                self.run_rate(devices, rate, started, virtual_rx, &ctx.stop)
                    .await;
            }
        }
    }

    async fn publish(&mut self, device: &mut LiveDevice, timestamp: &str) -> bool {
        device.state.advance(&mut self.rng);
        device.state.render(timestamp, &mut self.buffer);
        let payload = self.buffer.clone();
        if self
            .client
            .publish(device.topic.as_str(), self.qos, false, payload)
            .await
            .is_err()
        {
            return false;
        }
        // The client's channel is usually ready, so nothing else would yield: keep the
        // runtime (and shutdown) responsive while catching up a backlog.
        tokio::task::consume_budget().await;
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        let ty = DeviceType::ALL
            .iter()
            .position(|&t| t == device.device_type)
            .unwrap_or(0);
        self.totals.per_type[ty].fetch_add(1, Ordering::Relaxed);
        true
    }

    async fn run_profile(
        &mut self,
        devices: &mut [LiveDevice],
        profile: &LoadProfile,
        clock: ModelClock,
        virtual_rx: &mut mpsc::Receiver<(usize, bytes::Bytes)>,
        stop: &CancellationToken,
    ) {
        let mut heap = BinaryHeap::new();
        let schedule = |heap: &mut BinaryHeap<_>, devices: &[LiveDevice], i: usize, after: f64| {
            let d = &devices[i];
            if let Some(t) =
                profile.next_publish(d.device_type, d.phase, d.state.period_override, after)
            {
                heap.push(Reverse((At(t), d.generation, i)));
            }
        };
        let begin = clock.now() - 1e-9;
        for i in 0..devices.len() {
            schedule(&mut heap, devices, i, begin);
        }
        loop {
            let Some(&Reverse((At(next), _, _))) = heap.peek() else {
                stop.cancelled().await;
                return;
            };
            let wake = clock.wall(next);
            tokio::select! {
                () = stop.cancelled() => return,
                Some((i, payload)) = virtual_rx.recv() => {
                    if self.apply_virtual(devices, i, &payload) {
                        let now = clock.now();
                        let mut affected = devices[i].controls.clone();
                        affected.push(i);
                        let period = devices[i].state.period_override;
                        for j in affected {
                            devices[j].state.period_override = period;
                            devices[j].generation += 1;
                            schedule(&mut heap, devices, j, now);
                        }
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = At(clock.now());
                    let timestamp = chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
                    while let Some(&Reverse((t, generation, i))) = heap.peek() {
                        if t > now {
                            break;
                        }
                        heap.pop();
                        if generation != devices[i].generation {
                            continue;
                        }
                        if !self.publish(&mut devices[i], &timestamp).await {
                            return;
                        }
                        schedule(&mut heap, devices, i, t.0);
                    }
                }
            }
        }
    }

    async fn run_rate(
        &mut self,
        devices: &mut [LiveDevice],
        rate: f64,
        started: Instant,
        virtual_rx: &mut mpsc::Receiver<(usize, bytes::Bytes)>,
        stop: &CancellationToken,
    ) {
        let mut published: u64 = 0;
        let mut next_device = 0;
        let mut tick = tokio::time::interval_at(started, Duration::from_millis(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some((i, payload)) = virtual_rx.recv() => {
                    self.apply_virtual(devices, i, &payload);
                }
                _ = tick.tick() => {
                    let due = (Instant::now().saturating_duration_since(started).as_secs_f64() * rate) as u64;
                    let timestamp = chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
                    while published < due {
                        if stop.is_cancelled() || !self.publish(&mut devices[next_device], &timestamp).await {
                            return;
                        }
                        published += 1;
                        next_device = (next_device + 1) % devices.len();
                    }
                }
            }
        }
    }

    /// Applies a virtual-topic message to device `i`; whether its period changed.
    fn apply_virtual(&self, devices: &mut [LiveDevice], i: usize, payload: &[u8]) -> bool {
        match devices[i].state.apply_virtual(payload) {
            Ok(changed) => changed,
            Err(reason) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = devices[i].topic, %reason, "virtual message ignored");
                false
            }
        }
    }
}

/// The virtual topic of the device publishing on `real_topic`.
fn virtual_topic(real_topic: &str) -> String {
    real_topic.replacen("ktwin/real/", "ktwin/virtual/", 1)
}

/// One filter per interface among `virtual_topics` (`ktwin/virtual/<interface>/+`), sorted.
fn virtual_filters(virtual_topics: &[String]) -> Vec<String> {
    let mut filters: Vec<String> = virtual_topics
        .iter()
        .filter_map(|topic| topic.rsplit_once('/'))
        .map(|(interface_level, _)| format!("{interface_level}/+"))
        .collect();
    filters.sort();
    filters.dedup();
    filters
}

async fn drive_events(
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    virtual_topics: Vec<String>,
    virtual_tx: mpsc::Sender<(usize, bytes::Bytes)>,
    counters: Arc<ConnectionCounters>,
    totals: Arc<Totals>,
    stop: CancellationToken,
) {
    let device_of: HashMap<String, usize> = virtual_topics
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i))
        .collect();
    let mut connected = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if !connected {
                    totals.connected.fetch_add(1, Ordering::Relaxed);
                }
                connected = true;
                backoff = Duration::from_millis(100);
                // Clean sessions forget subscriptions: (re)subscribe on every connect, from a
                // separate task because this one drains the client's request channel.
                let filters: Vec<SubscribeFilter> = virtual_filters(&virtual_topics)
                    .into_iter()
                    .map(|filter| SubscribeFilter::new(filter, QoS::AtLeastOnce))
                    .collect();
                let client = client.clone();
                tokio::spawn(async move {
                    for chunk in filters.chunks(100) {
                        if client.subscribe_many(chunk.to_vec()).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                // Another connection's device: its own connection receives it too.
                let Some(&i) = device_of.get(&publish.topic) else {
                    continue;
                };
                counters.received.fetch_add(1, Ordering::Relaxed);
                if virtual_tx.try_send((i, publish.payload)).is_err() {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(err) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                if connected {
                    totals.connected.fetch_sub(1, Ordering::Relaxed);
                    connected = false;
                }
                tracing::debug!(%err, "MQTT connection lost, retrying in {backoff:?}");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    if connected {
        totals.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

fn report(world: &SimWorld, config: &SimConfig, totals: &Totals, elapsed: Duration) -> SimReport {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let counts = world.count_by_type();
    let per_type = DeviceType::ALL
        .iter()
        .enumerate()
        .filter_map(|(i, &ty)| {
            let devices = *counts.get(&ty)?;
            let sent = totals.per_type[i].load(Ordering::Relaxed);
            let model_rate_per_s = match &config.pace {
                Pace::Profile {
                    profile,
                    speedup,
                    start_at,
                } => Some(
                    profile.expected_messages(ty, devices, *start_at, start_at + secs * speedup)
                        / secs,
                ),
                Pace::Rate(_) => None,
            };
            Some((
                ty.name().to_owned(),
                TypeReport {
                    devices,
                    sent,
                    rate_per_s: sent as f64 / secs,
                    model_rate_per_s,
                },
            ))
        })
        .collect();
    let sent = totals.sent();
    SimReport {
        devices: world.devices.len(),
        connections: totals.connections.len(),
        qos: config.qos as u8,
        elapsed_s: secs,
        queued: totals.sum(|c| &c.queued),
        sent,
        acknowledged: totals.acknowledged(),
        received: totals.sum(|c| &c.received),
        errors: totals.errors(),
        rate_per_s: sent as f64 / secs,
        per_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::paper_city;

    #[test]
    fn batteries_share_a_connection_with_their_sensors() {
        let world = SimWorld::from_graph(&paper_city(1, ""));
        let groups = partition(&world, 8);
        assert_eq!(groups.len(), 8);
        assert_eq!(
            groups.iter().map(Vec::len).sum::<usize>(),
            world.devices.len()
        );
        for members in &groups {
            let names: std::collections::HashSet<_> = members
                .iter()
                .map(|&i| world.devices[i].instance.as_str())
                .collect();
            for &i in members {
                if let Some(c) = &world.devices[i].controller {
                    assert!(names.contains(c.as_str()), "{c} split from its sensor");
                }
            }
        }
        let devices = live_devices(&world, &world.phases(), &groups[0]).unwrap();
        assert!(devices.iter().any(|d| !d.controls.is_empty()));
        assert!(devices[0].topic.starts_with("ktwin/real/"));
    }

    #[test]
    fn one_virtual_filter_per_interface() {
        let topics = [
            "ktwin/real/city-pole/city-pole-nb001-p00001",
            "ktwin/real/city-pole/city-pole-nb001-p00002",
            "ktwin/real/ngsi-ld-city-device/ngsi-ld-city-device-aqo-nb001-p00001",
        ]
        .map(virtual_topic);
        assert_eq!(topics[0], "ktwin/virtual/city-pole/city-pole-nb001-p00001");
        assert_eq!(
            virtual_filters(&topics),
            [
                "ktwin/virtual/city-pole/+",
                "ktwin/virtual/ngsi-ld-city-device/+"
            ]
        );
    }

    #[test]
    fn configuration_errors_are_explained() {
        let world = SimWorld::from_graph(&paper_city(1, ""));
        let mut config = SimConfig::new("127.0.0.1", 1883);
        config.pace = Pace::Rate(0.0);
        assert!(
            config
                .validate(&world)
                .unwrap_err()
                .to_string()
                .contains("rate")
        );
        config.pace = Pace::Rate(10.0);
        assert!(
            config
                .wall_duration()
                .unwrap_err()
                .to_string()
                .contains("--duration")
        );
        assert!(
            config
                .validate(&SimWorld::default())
                .unwrap_err()
                .to_string()
                .contains("no devices")
        );
        let config = SimConfig::new("127.0.0.1", 1883);
        assert_eq!(config.wall_duration().unwrap(), Duration::from_secs(1440));
    }
}
