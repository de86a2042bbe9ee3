//! Direct MQTT publishing (QoS 1) that tells each sender when *its* message was acknowledged.
//!
//! rumqttc reports only packet ids: `Outgoing::Publish(pkid)` when a publish goes out, then
//! `Incoming::PubAck(pkid)`. A sender's waiter is queued when its request is handed to the
//! client, paired with the next `Outgoing::Publish` (requests go out in the order they were
//! handed over), and resolved by the PUBACK of that packet id. The pairing holds only while
//! every queued waiter stands for exactly one request that will go out, in order. Two things
//! used to break that:
//! - a request handed over by a cancelled or failed `send` left a waiter for nothing, shifting
//!   every later pairing by one: requests are handed over by one feeder task instead, which is
//!   never cancelled, and a hand-over that fails takes its waiter back;
//! - after a lost connection rumqttc resends unacknowledged publishes under their old packet
//!   ids, except when the broker has no session for the client (a restarted broker, an
//!   expired session): then it silently discards them, and their waiters stayed keyed by packet
//!   ids that a later message reuses, whose PUBACK then told the lost message's sender it was
//!   delivered. On a lost connection the sink takes every unacknowledged publish back, with its
//!   waiter, and queues them again in the order they were first sent, as new publishes: they go
//!   out once reconnected, whether or not the broker kept a session (a device may get one twice:
//!   QoS 1 is at least once).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::TransportError;
use crate::egress::DeviceMessage;
use crate::egress_dispatcher::DeviceSink;

/// How long a send waits for its PUBACK by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Sends waiting to be handed to the client, at most.
const FEED_CAPACITY: usize = 1024;

/// One sender waiting for its PUBACK.
struct Waiter {
    /// Hand-over order: publishes taken back after a lost connection go out again in it.
    seq: u64,
    acked: oneshot::Sender<()>,
}

/// PUBACK bookkeeping, shared by the feeder and the event loop.
#[derive(Default)]
struct PubAcks {
    next_seq: u64,
    /// Waiters of requests handed over and not yet sent, in hand-over order.
    queued: VecDeque<Waiter>,
    /// Waiters of requests sent on the current connection, by packet id.
    by_packet_id: HashMap<u16, Waiter>,
    /// What goes out first once reconnected (rumqttc drops its own list when the broker kept no
    /// session).
    resend: Option<VecDeque<Request>>,
}

impl PubAcks {
    fn queue(&mut self, acked: oneshot::Sender<()>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queued.push_back(Waiter { seq, acked });
    }

    fn on_event(&mut self, event: &Event, eventloop_pending: &mut VecDeque<Request>) {
        match event {
            Event::Outgoing(Outgoing::Publish(packet_id)) => {
                let Some(waiter) = self.queued.pop_front() else {
                    tracing::error!(packet_id, "a publish went out that no sender handed over");
                    return;
                };
                if self.by_packet_id.insert(*packet_id, waiter).is_some() {
                    // Its sender's send fails (and its event is delivered again): safe.
                    tracing::error!(packet_id, "packet id reused before its PUBACK");
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(waiter) = self.by_packet_id.remove(&ack.pkid) {
                    // The sender may have given up waiting: nothing to tell then.
                    let _ = waiter.acked.send(());
                }
            }
            Event::Incoming(Packet::ConnAck(_)) => {
                if let Some(resend) = self.resend.take() {
                    *eventloop_pending = resend;
                }
            }
            _ => {}
        }
    }

    /// After the connection was lost: takes every unacknowledged publish back and queues it
    /// again, in hand-over order, as a new publish (see the module documentation).
    fn on_connection_lost(&mut self, eventloop: &mut EventLoop) {
        // Events rumqttc buffered before the failure happened first.
        let buffered: Vec<Event> = eventloop.state.events.drain(..).collect();
        for event in &buffered {
            self.on_event(event, &mut eventloop.pending);
        }
        let mut sent = Vec::new();
        let mut unsent = VecDeque::new();
        // A publish waiting for its packet id to be free was handed over before anything unsent.
        if let Some(mut publish) = eventloop.state.collision.take() {
            publish.pkid = 0;
            unsent.push_back(Request::Publish(publish));
        }
        for request in eventloop.pending.drain(..) {
            match request {
                Request::Publish(mut publish) if publish.pkid != 0 => {
                    match self.by_packet_id.remove(&publish.pkid) {
                        Some(waiter) => {
                            publish.pkid = 0;
                            sent.push((waiter, publish));
                        }
                        None => tracing::error!(
                            packet_id = publish.pkid,
                            "an unacknowledged publish without a sender is not sent again"
                        ),
                    }
                }
                other => unsent.push_back(other),
            }
        }
        // Sent but not in rumqttc's list: their senders learn it failed.
        self.by_packet_id.clear();
        sent.sort_by_key(|(waiter, _)| waiter.seq);
        let mut resend: VecDeque<Request> = VecDeque::with_capacity(sent.len() + unsent.len());
        for (waiter, publish) in sent.into_iter().rev() {
            self.queued.push_front(waiter);
            resend.push_front(Request::Publish(publish));
        }
        resend.extend(unsent);
        eventloop.pending = resend.clone();
        self.resend = Some(resend);
    }
}

fn lock(acks: &Mutex<PubAcks>) -> std::sync::MutexGuard<'_, PubAcks> {
    acks.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A message to publish and who waits for its PUBACK.
struct SendRequest {
    topic: String,
    payload: Vec<u8>,
    acked: oneshot::Sender<()>,
}

/// Direct MQTT publishing (QoS 1, waits for the PUBACK) to any MQTT 3.1.1 broker, with a
/// persistent session; see the module documentation for how PUBACKs find their sender.
pub struct MqttSink {
    requests: mpsc::Sender<SendRequest>,
    connected: Arc<AtomicBool>,
    timeout: Duration,
    _stop: tokio_util::sync::DropGuard,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MqttSink {
    /// Connects to `host:port` as `client_id`.
    pub fn start(
        host: &str,
        port: u16,
        client_id: &str,
        credentials: Option<(String, String)>,
    ) -> Self {
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(1000)
            .set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, eventloop) = AsyncClient::new(options, 4096);
        let acks: Arc<Mutex<PubAcks>> = Arc::default();
        let connected = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let (requests, feed) = mpsc::channel(FEED_CAPACITY);
        tokio::spawn(hand_over(client.clone(), Arc::clone(&acks), feed));
        tokio::spawn(drive(
            eventloop,
            client,
            acks,
            Arc::clone(&connected),
            stop.clone(),
        ));
        Self {
            requests,
            connected,
            timeout: DEFAULT_TIMEOUT,
            _stop: stop.drop_guard(),
        }
    }

    /// Waits at most `timeout` for a PUBACK (30 s by default).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Hands requests to the client one at a time, queueing each one's waiter first; never
/// cancelled mid-request, so waiters and requests stay paired.
async fn hand_over(
    client: AsyncClient,
    acks: Arc<Mutex<PubAcks>>,
    mut feed: mpsc::Receiver<SendRequest>,
) {
    while let Some(request) = feed.recv().await {
        lock(&acks).queue(request.acked);
        let handed = client
            .publish(request.topic, QoS::AtLeastOnce, false, request.payload)
            .await;
        if let Err(error) = handed {
            // It never reached the event loop: its waiter (the newest) goes, failing its send.
            lock(&acks).queued.pop_back();
            tracing::warn!(%error, "an MQTT publish could not be handed to the client");
        }
    }
}

/// Polls the event loop, pairing PUBACKs and reconnecting with backoff, until `stop`.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    acks: Arc<Mutex<PubAcks>>,
    connected: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            () = stop.cancelled() => {
                if connected.load(Ordering::Acquire) {
                    crate::source::disconnect(&client, &mut eventloop).await;
                }
                return;
            }
        };
        match event {
            Ok(event) => {
                if let Event::Incoming(Packet::ConnAck(_)) = event {
                    connected.store(true, Ordering::Release);
                    delay = Duration::from_millis(100);
                }
                lock(&acks).on_event(&event, &mut eventloop.pending);
            }
            Err(error) => {
                connected.store(false, Ordering::Release);
                lock(&acks).on_connection_lost(&mut eventloop);
                tracing::warn!(%error, ?delay, "MQTT connection lost, reconnecting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[async_trait]
impl DeviceSink for MqttSink {
    async fn send(&self, message: &DeviceMessage) -> Result<(), TransportError> {
        let (acked, receipt) = oneshot::channel();
        let request = SendRequest {
            topic: message.topic.clone(),
            payload: message.payload.clone(),
            acked,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| TransportError::Stopped)?;
        tokio::time::timeout(self.timeout, receipt)
            .await
            .map_err(|_| TransportError::Timeout(self.timeout))?
            .map_err(|_| TransportError::Stopped)
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}
