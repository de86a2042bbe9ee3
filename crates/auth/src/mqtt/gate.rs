//! The front door of an embedded MQTT broker that cannot check topics itself.
//!
//! rumqttd 0.20 authenticates a connection (a static map or an external hook) but has no
//! publish or subscribe authorisation (`docs/security.md`). The gate stands in front of it:
//! devices connect to the gate (optionally over TLS), which checks each device's username and
//! password against the [`DeviceRegistry`], connects on its behalf to the broker's own
//! listener (loopback only, with a per-process secret no device knows), and then passes every
//! packet through except what the device's [`TopicRights`] do not allow:
//!
//! - a PUBLISH outside its rights is dropped (QoS 1 is acknowledged, as Mosquitto does, since
//!   MQTT 3.1.1 has no negative acknowledgement; QoS 2 closes the connection);
//! - a SUBSCRIBE naming any filter outside its rights is answered by the gate with a failure
//!   for every filter and never reaches the broker;
//! - a will message outside its rights refuses the connection.
//!
//! With a [`PubAckHold`] ([`MqttGate::with_ack_hold`]) the broker's PUBACK of a QoS 1 message
//! on a topic the platform ingests goes to the device only once the platform has made the
//! message durable: a crash of the process then loses nothing a device was told is taken. With
//! a [`DirectFeed`] as well ([`MqttGate::with_direct_feed`]) such messages (QoS 0 and 1, not
//! retained) skip the broker: the gate delivers them to the platform and makes their PUBACK
//! itself, released the same way. On a stop the gate reads no more from devices but keeps
//! relaying, for up to [`ACK_DRAIN_TIMEOUT`], the PUBACKs of messages still becoming durable.
//! QoS 2 is not held: rumqttd takes a QoS 2 message into its log only at PUBREL, after the
//! device let go of it at PUBREC.
//!
//! Refusals are counted and logged ([`Refusals`]), never with the password. Client ids are
//! namespaced by username towards the broker (`<username>:<client id>`), so one credential
//! cannot take over another's session by reusing its client id. Sessions, keep-alive, QoS
//! and wills stay the broker's business: the gate forwards those packets untouched, except
//! that while it delivers a device's messages itself it pings the broker on the device's
//! behalf (a client that publishes sends no PINGREQ, and the broker would otherwise see a
//! silent connection and close it) and keeps the answers from the device. MQTT 5 clients are
//! refused (protocol version) on a gated listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, SubAck, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::ack_hold::{ConnectionHold, MessageKey, PubAckHold, Withhold};
use super::acl::{DeclaredTopics, Refusal, Refusals, TopicRights};
use super::credentials::DeviceRegistry;
use super::direct::DirectFeed;
use crate::reload::Reloading;
use crate::secret::Secret;

/// How long a new connection may take to send its CONNECT (and finish TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// On a stop, how long a connection waits for the PUBACKs of its messages still becoming
/// durable before it closes (the device sends those again).
pub const ACK_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames queued towards one device before the gate stops reading from the broker for it.
const DEVICE_QUEUE: usize = 256;

/// How the gate reaches the broker behind it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The broker's listener (on loopback).
    pub address: SocketAddr,
    /// The username the broker requires of the gate.
    pub username: String,
    /// The password the broker requires of the gate (generated per process).
    pub password: Secret,
}

/// The gate: authentication and topic ACLs in front of a broker.
pub struct MqttGate {
    upstream: Upstream,
    registry: Reloading<DeviceRegistry>,
    declared: Arc<DeclaredTopics>,
    refusals: Arc<Refusals>,
    tls: Option<TlsAcceptor>,
    max_packet_bytes: usize,
    hold: Option<Arc<PubAckHold>>,
    direct: Option<DirectFeed>,
}

impl std::fmt::Debug for MqttGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttGate")
            .field("upstream", &self.upstream.address)
            .field("tls", &self.tls.is_some())
            .field("ack_hold", &self.hold.is_some())
            .field("direct_feed", &self.direct.is_some())
            .finish_non_exhaustive()
    }
}

/// Gauge of the device sessions the gate relays now (admitted, not yet closed).
pub const CONNECTIONS: &str = "ktwin_mqtt_connections";

/// One admitted session in [`CONNECTIONS`], for as long as it lives.
struct ConnectedGauge;

impl ConnectedGauge {
    fn up() -> Self {
        metrics::gauge!(CONNECTIONS).increment(1.0);
        ConnectedGauge
    }
}

impl Drop for ConnectedGauge {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS).decrement(1.0);
    }
}

/// Why one connection through the gate ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("MQTT: {0}")]
    Protocol(#[from] mqttbytes::Error),
    #[error("the connection did not start with a CONNECT in time")]
    NoConnect,
    #[error("refused")]
    Refused,
}

impl MqttGate {
    /// A gate checking devices against `registry` (and the topics `declared` adds), accepting
    /// packets up to `max_packet_bytes`, in front of `upstream`.
    pub fn new(
        upstream: Upstream,
        registry: Reloading<DeviceRegistry>,
        declared: DeclaredTopics,
        max_packet_bytes: usize,
    ) -> Self {
        Self {
            upstream,
            registry,
            declared: Arc::new(declared),
            refusals: Arc::new(Refusals::default()),
            tls: None,
            max_packet_bytes,
            hold: None,
            direct: None,
        }
    }

    /// Holds the broker's PUBACKs of messages on topics `hold` ingests until the platform
    /// reports them durable ([`PubAckHold::durable`]).
    pub fn with_ack_hold(mut self, hold: Arc<PubAckHold>) -> Self {
        self.hold = Some(hold);
        self
    }

    /// Delivers the messages the hold waits for (QoS 0 and 1 on an ingested topic, not
    /// retained) to `feed` instead of relaying them through the broker; their PUBACKs come
    /// from the gate once the platform reports them durable. Without an ack hold
    /// ([`MqttGate::with_ack_hold`]) the feed is not used.
    pub fn with_direct_feed(mut self, feed: DirectFeed) -> Self {
        self.direct = Some(feed);
        self
    }

    /// Devices connect over TLS.
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// What the gate refused so far.
    pub fn refusals(&self) -> Arc<Refusals> {
        Arc::clone(&self.refusals)
    }

    /// Accepts devices on `listener` until `stop` is cancelled, over TLS when the gate has a
    /// certificate ([`MqttGate::with_tls`]).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        let tls = self.tls.clone();
        self.accept(listener, tls, stop).await;
    }

    /// Accepts the platform's own clients (its device simulator) on a loopback `listener`
    /// without TLS, checking their credentials and topics as a device's: what a TLS device
    /// port costs them is no protection on loopback.
    pub async fn serve_loopback(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        self.accept(listener, None, stop).await;
    }

    async fn accept(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        stop: CancellationToken,
    ) {
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(%err, "accepting an MQTT connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let gate = Arc::clone(&self);
            let (stop, tls) = (stop.clone(), tls.clone());
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let prompt_acks = gate.hold.as_ref().and_then(|_| PromptAcks::of(&stream));
                let result = match tls {
                    Some(tls) => {
                        match tokio::time::timeout(CONNECT_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => gate.connection(stream, prompt_acks, stop).await,
                            _ => Err(ConnectionError::NoConnect),
                        }
                    }
                    None => gate.connection(stream, prompt_acks, stop).await,
                };
                if let Err(err) = result {
                    tracing::debug!(%peer, %err, "MQTT connection through the gate ended");
                }
            });
        }
    }

    /// One device: CONNECT checked, then packets relayed both ways until either side closes.
    async fn connection<S>(
        &self,
        stream: S,
        prompt_acks: Option<PromptAcks>,
        stop: CancellationToken,
    ) -> Result<(), ConnectionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (device_read, mut device_write) = tokio::io::split(stream);
        let mut device = FrameReader::new(device_read, self.max_packet_bytes);
        device.prompt_acks = prompt_acks;
        let first = tokio::time::timeout(CONNECT_TIMEOUT, device.next())
            .await
            .map_err(|_| ConnectionError::NoConnect)??
            .ok_or(ConnectionError::NoConnect)?;
        let (session, upstream_connect) = match self.admit(&first).await {
            Ok(admitted) => admitted,
            Err(code) => {
                write_packet(
                    &mut device_write,
                    &Packet::ConnAck(ConnAck::new(code, false)),
                )
                .await?;
                return Err(ConnectionError::Refused);
            }
        };
        let _connected = ConnectedGauge::up();
        let upstream = TcpStream::connect(self.upstream.address).await?;
        let _ = upstream.set_nodelay(true);
        let (upstream_read, mut upstream_write) = upstream.into_split();
        upstream_write.write_all(&upstream_connect).await?;

        let (to_device, queued) = mpsc::channel::<Bytes>(DEVICE_QUEUE);
        let mut writer = tokio::spawn(write_frames(device_write, queued));
        let upstream = FrameReader::new(upstream_read, self.max_packet_bytes);
        let (acks, mut released) = match &self.hold {
            Some(hold) => {
                let (acks, released) = hold.connection();
                (Some(acks), Some(released))
            }
            None => (None, None),
        };
        let result = {
            let from_broker = relay_frames(
                upstream,
                to_device.clone(),
                acks.as_ref(),
                released.as_mut(),
                &session.gate_pings,
            );
            tokio::pin!(from_broker);
            // Whichever side ends first (the broker closing, e.g. after a missed keep-alive, or
            // the device) ends the connection.
            let (result, stopped) = tokio::select! {
                () = stop.cancelled() => (Ok(()), true),
                () = &mut from_broker => (Ok(()), false),
                result = self.relay_device(&session, &mut device, &mut upstream_write, &to_device, acks.as_ref()) => (result, false),
            };
            if let (true, Some(acks)) = (stopped, &acks) {
                // PUBACKs of messages the platform is still making durable during its drain.
                let _ = tokio::time::timeout(ACK_DRAIN_TIMEOUT, async {
                    tokio::select! {
                        () = &mut from_broker => {}
                        () = acks.settled() => {}
                    }
                })
                .await;
            }
            result
        };
        // Released just before the wait ended.
        while let Some(frame) = released.as_mut().and_then(|r| r.try_recv().ok()) {
            if to_device.send(frame).await.is_err() {
                break;
            }
        }
        drop(to_device);
        // What is queued goes out, unless the device stopped reading.
        if tokio::time::timeout(CONNECT_TIMEOUT, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
            tracing::debug!(client_id = %session.client_id, "device stopped reading; closing");
        }
        result
    }

    /// Checks a CONNECT: its credentials and will. On success, the session's rights and the
    /// CONNECT to send upstream (gate login, namespaced client id).
    async fn admit(&self, frame: &Bytes) -> Result<(Session, Bytes), ConnectReturnCode> {
        let mut buffer = BytesMut::from(&frame[..]);
        let connect = match Packet::read(&mut buffer, self.max_packet_bytes) {
            Ok(Packet::Connect(connect)) => connect,
            Err(mqttbytes::Error::InvalidProtocolLevel(_)) => {
                return Err(ConnectReturnCode::RefusedProtocolVersion);
            }
            _ => return Err(ConnectReturnCode::NotAuthorized),
        };
        let client_id = connect.client_id.clone();
        let Some(login) = connect.login.clone() else {
            self.refusals
                .record(Refusal::Authentication, "", &client_id, "");
            return Err(ConnectReturnCode::NotAuthorized);
        };
        let registry = self.registry.current();
        let username = login.username.clone();
        let verified = tokio::task::spawn_blocking(move || {
            registry.verify(&login.username, login.password.as_bytes())
        })
        .await;
        let Ok(Ok(grant)) = verified else {
            self.refusals
                .record(Refusal::Authentication, &username, &client_id, "");
            return Err(ConnectReturnCode::BadUserNamePassword);
        };
        let rights = TopicRights::of(&grant, &self.declared);
        if let Some(will) = &connect.last_will
            && !rights.may_publish(&will.topic)
        {
            self.refusals
                .record(Refusal::Publish, &username, &client_id, &will.topic);
            return Err(ConnectReturnCode::NotAuthorized);
        }
        let keep_alive = connect.keep_alive;
        let mut upstream = connect;
        upstream.client_id = namespaced_client_id(&username, &client_id);
        upstream.set_login(
            self.upstream.username.clone(),
            self.upstream.password.expose(),
        );
        let mut bytes = BytesMut::new();
        Packet::Connect(upstream)
            .write(&mut bytes, usize::MAX)
            .map_err(|_| ConnectReturnCode::NotAuthorized)?;
        let session = Session {
            username,
            client_id,
            rights,
            keep_alive: Duration::from_secs(u64::from(keep_alive)),
            gate_pings: AtomicU32::new(0),
        };
        Ok((session, bytes.freeze()))
    }

    /// Device → broker: every frame checked, forwarded or answered by the gate.
    async fn relay_device<R: AsyncRead + Unpin>(
        &self,
        session: &Session,
        device: &mut FrameReader<R>,
        upstream: &mut tokio::net::tcp::OwnedWriteHalf,
        to_device: &mpsc::Sender<Bytes>,
        acks: Option<&ConnectionHold>,
    ) -> Result<(), ConnectionError> {
        let mut last_upstream = Instant::now();
        while let Some(frame) = device.next().await? {
            match self.judge(session, &frame, acks)? {
                Verdict::Forward => {
                    upstream.write_all(&frame).await?;
                    last_upstream = Instant::now();
                }
                Verdict::Deliver(publish) => {
                    // The broker takes the message itself if the platform no longer reads, and
                    // hears a ping for the device now and then otherwise.
                    let to_broker: &[u8] =
                        if !self.deliver(&frame, publish, to_device, acks).await? {
                            &frame
                        } else if session.needs_ping(last_upstream) {
                            session.gate_pings.fetch_add(1, Ordering::Relaxed);
                            &PINGREQ_FRAME
                        } else {
                            continue;
                        };
                    upstream.write_all(to_broker).await?;
                    last_upstream = Instant::now();
                }
                Verdict::Answer(packet) => {
                    if to_device.send(encoded(&packet)?).await.is_err() {
                        break;
                    }
                }
                Verdict::Drop => {}
                Verdict::Close => return Err(ConnectionError::Refused),
            }
        }
        Ok(())
    }

    fn judge(
        &self,
        session: &Session,
        frame: &Bytes,
        acks: Option<&ConnectionHold>,
    ) -> Result<Verdict, ConnectionError> {
        match frame.first().map(|byte| byte >> 4) {
            Some(PUBLISH) => {
                let publish =
                    PublishHead::parse(frame).ok_or(mqttbytes::Error::IncorrectPacketFormat)?;
                if session.rights.may_publish(&publish.topic) {
                    return Ok(self.route(session, frame, publish, acks));
                }
                self.refuse(session, Refusal::Publish, &publish.topic);
                Ok(match publish.qos {
                    QoS::AtMostOnce => Verdict::Drop,
                    QoS::AtLeastOnce => Verdict::Answer(Packet::PubAck(PubAck::new(publish.pkid))),
                    QoS::ExactlyOnce => Verdict::Close,
                })
            }
            Some(SUBSCRIBE) => {
                let mut buffer = BytesMut::from(&frame[..]);
                let Packet::Subscribe(subscribe) =
                    Packet::read(&mut buffer, self.max_packet_bytes)?
                else {
                    return Err(mqttbytes::Error::IncorrectPacketFormat.into());
                };
                let denied: Vec<&str> = subscribe
                    .filters
                    .iter()
                    .map(|f| f.path.as_str())
                    .filter(|path| !session.rights.may_subscribe(path))
                    .collect();
                if denied.is_empty() {
                    return Ok(Verdict::Forward);
                }
                for path in denied {
                    self.refuse(session, Refusal::Subscribe, path);
                }
                let failures = vec![SubscribeReasonCode::Failure; subscribe.filters.len()];
                Ok(Verdict::Answer(Packet::SubAck(SubAck::new(
                    subscribe.pkid,
                    failures,
                ))))
            }
            // A second CONNECT is a protocol violation.
            Some(CONNECT) => Ok(Verdict::Close),
            _ => Ok(Verdict::Forward),
        }
    }

    /// Where a PUBLISH the device may make goes: held and forwarded to the broker, delivered
    /// to the platform directly, dropped as a resend, or the connection closed.
    fn route(
        &self,
        session: &Session,
        frame: &Bytes,
        publish: PublishHead,
        acks: Option<&ConnectionHold>,
    ) -> Verdict {
        // Whether the platform ingests the topic: matched against its filters once.
        let held = acks.filter(|acks| acks.holds(&publish.topic));
        let verdict = withhold(session, frame, &publish, held);
        let direct = self.direct.as_ref().is_some_and(DirectFeed::is_open)
            && held.is_some()
            && !publish.retain
            && publish.qos != QoS::ExactlyOnce;
        match verdict {
            Verdict::Forward if direct => Verdict::Deliver(publish),
            verdict => verdict,
        }
    }

    /// Hands a PUBLISH to the platform ([`MqttGate::with_direct_feed`]) and, for QoS 1, its
    /// PUBACK to the hold, released to the device once the message is durable. `false` when
    /// the platform reads no more (it is stopping): the broker then takes the message.
    async fn deliver(
        &self,
        frame: &Bytes,
        publish: PublishHead,
        to_device: &mpsc::Sender<Bytes>,
        acks: Option<&ConnectionHold>,
    ) -> Result<bool, ConnectionError> {
        let Some(feed) = &self.direct else {
            return Ok(false);
        };
        let payload = &frame[publish.payload_at..];
        if feed.deliver(publish.topic, payload).await.is_err() {
            return Ok(false);
        }
        if let (QoS::AtLeastOnce, Some(acks)) = (publish.qos, acks) {
            let puback = encoded(&Packet::PubAck(PubAck::new(publish.pkid)))?;
            if let Some(ack) = acks.broker_acked(publish.pkid, puback) {
                // The device stopped reading when this fails: the connection is ending.
                let _ = to_device.send(ack).await;
            }
        }
        Ok(true)
    }

    fn refuse(&self, session: &Session, refusal: Refusal, topic: &str) {
        self.refusals
            .record(refusal, &session.username, &session.client_id, topic);
    }
}

/// Registers a QoS 1 message in the connection's hold (`acks`: given only when the message's
/// topic is ingested) before it is forwarded, so its PUBACK waits until the message is durable.
fn withhold(
    session: &Session,
    frame: &Bytes,
    publish: &PublishHead,
    acks: Option<&ConnectionHold>,
) -> Verdict {
    let Some(acks) = acks else {
        return Verdict::Forward;
    };
    if publish.qos != QoS::AtLeastOnce {
        return Verdict::Forward;
    }
    let key = MessageKey::of(publish.topic.as_bytes(), &frame[publish.payload_at..]);
    match acks.register(publish.pkid, key, publish.dup) {
        Withhold::Registered => Verdict::Forward,
        Withhold::Resent => Verdict::Drop,
        Withhold::Reused => {
            tracing::debug!(client_id = %session.client_id, pkid = publish.pkid, "a PUBLISH reused the packet id of a message in flight; closing");
            Verdict::Close
        }
    }
}

/// The client id the broker sees: `<username>:<client id>`, so two credentials never share
/// one. rumqttd refuses `+ $ # /` in client ids, so a username holding one is replaced by its
/// SHA-256.
fn namespaced_client_id(username: &str, client_id: &str) -> String {
    if username.contains(['+', '$', '#', '/']) {
        format!(
            "{}:{client_id}",
            crate::secret::SecretDigest::of(username).to_hex()
        )
    } else {
        format!("{username}:{client_id}")
    }
}

const CONNECT: u8 = 1;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const SUBSCRIBE: u8 = 8;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;

/// Who is connected and what they may do.
struct Session {
    username: String,
    client_id: String,
    rights: TopicRights,
    /// The keep-alive the device asked for (zero: none), which the broker enforces on the
    /// gate's connection for it.
    keep_alive: Duration,
    /// PINGREQs the gate sent the broker on the device's behalf whose PINGRESP is still due
    /// (kept from the device, which did not ask).
    gate_pings: AtomicU32,
}

impl Session {
    /// Whether the broker, which closes a connection silent for 1.5 × its keep-alive, should
    /// hear from the gate: nothing was written to it for a quarter of the keep-alive. A device
    /// sends something at least every keep-alive, so the broker's connection is never silent
    /// for more than 1.25 × it.
    fn needs_ping(&self, last_upstream: Instant) -> bool {
        !self.keep_alive.is_zero() && last_upstream.elapsed() >= self.keep_alive / 4
    }
}

/// A PINGREQ packet.
const PINGREQ_FRAME: [u8; 2] = [PINGREQ << 4, 0];

/// What to do with one frame from a device.
enum Verdict {
    Forward,
    /// A PUBLISH for the platform's direct feed.
    Deliver(PublishHead),
    Answer(Packet),
    Drop,
    Close,
}

/// The parts of a PUBLISH the ACL and the hold need, read without copying the payload.
struct PublishHead {
    topic: String,
    qos: QoS,
    pkid: u16,
    dup: bool,
    retain: bool,
    /// Where the payload starts in the frame.
    payload_at: usize,
}

impl PublishHead {
    fn parse(frame: &[u8]) -> Option<Self> {
        let qos = mqttbytes::qos((frame.first()? >> 1) & 0b11).ok()?;
        let dup = frame.first()? & 0b1000 != 0;
        let retain = frame.first()? & 0b1 != 0;
        // The remaining length (1-4 bytes, high bit = more) follows the first byte.
        let length_bytes = frame[1..].iter().take(4).position(|b| b & 0x80 == 0)? + 1;
        let mut at = 1 + length_bytes;
        let topic_len = usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
        at += 2;
        let topic = std::str::from_utf8(frame.get(at..at + topic_len)?)
            .ok()?
            .to_owned();
        at += topic_len;
        let pkid = match qos {
            QoS::AtMostOnce => 0,
            _ => {
                let pkid = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
                at += 2;
                pkid
            }
        };
        Some(Self {
            topic,
            qos,
            pkid,
            dup,
            retain,
            payload_at: at.min(frame.len()),
        })
    }
}

/// Whole MQTT packets from a byte stream, each at most `max` bytes.
struct FrameReader<R> {
    reader: R,
    buffer: BytesMut,
    max: usize,
    /// The device's socket, told after each read to acknowledge what it received at once.
    prompt_acks: Option<PromptAcks>,
}

/// A device connection's socket (a duplicate of its descriptor) that acknowledges received
/// segments at once. With the PUBACK hold the gate answers a PUBLISH only once the message is
/// durable, and Linux then delays its TCP acknowledgement (up to 40 ms) waiting for an answer
/// to carry it; a device with Nagle's algorithm on (rumqttc's default) sends nothing more
/// until that acknowledgement comes, so every message behind the first waited for it: device
/// → durable latency doubled (docs/benchmarks.md, "six builds side by side"). `TCP_QUICKACK`
/// is not permanent (the kernel leaves quick-ack mode by itself), hence after every read.
struct PromptAcks(socket2::Socket);

impl PromptAcks {
    /// The accepted `stream`'s socket; `None` if its descriptor cannot be duplicated.
    fn of(stream: &TcpStream) -> Option<Self> {
        socket2::SockRef::from(stream).try_clone().ok().map(Self)
    }

    fn acknowledge_now(&self) {
        // Best effort: without it the connection works, only slower.
        #[cfg(target_os = "linux")]
        let _ = self.0.set_tcp_quickack(true);
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            buffer: BytesMut::with_capacity(4096),
            max,
            prompt_acks: None,
        }
    }

    /// The next packet's bytes, or `None` at the end of the stream.
    async fn next(&mut self) -> Result<Option<Bytes>, ConnectionError> {
        loop {
            match mqttbytes::check(self.buffer.iter(), self.max) {
                Ok(header) => {
                    return Ok(Some(self.buffer.split_to(header.frame_length()).freeze()));
                }
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(err) => return Err(err.into()),
            }
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                return Ok(None);
            }
            if let Some(socket) = &self.prompt_acks {
                socket.acknowledge_now();
            }
        }
    }
}

/// A packet the gate answers with, as bytes.
fn encoded(packet: &Packet) -> Result<Bytes, ConnectionError> {
    let mut bytes = BytesMut::new();
    packet.write(&mut bytes, usize::MAX)?;
    Ok(bytes.freeze())
}

async fn write_packet<W: AsyncWrite + Unpin>(
    writer: &mut W,
    packet: &Packet,
) -> Result<(), ConnectionError> {
    writer.write_all(&encoded(packet)?).await?;
    Ok(writer.flush().await?)
}

/// Broker → device: whole frames onto the device's queue, except the PUBACKs `acks` holds,
/// which come out of `released` once their messages are durable, and the answers to the
/// gate's own pings (`gate_pings`).
async fn relay_frames<R: AsyncRead + Unpin>(
    mut upstream: FrameReader<R>,
    to_device: mpsc::Sender<Bytes>,
    acks: Option<&ConnectionHold>,
    mut released: Option<&mut mpsc::UnboundedReceiver<Bytes>>,
    gate_pings: &AtomicU32,
) {
    loop {
        let frame = tokio::select! {
            frame = upstream.next() => match frame {
                Ok(Some(frame)) if is_pingresp(&frame) && take_one(gate_pings) => continue,
                Ok(Some(frame)) => match acks.zip(puback_id(&frame)) {
                    Some((acks, pkid)) => match acks.broker_acked(pkid, frame) {
                        Some(frame) => frame,
                        None => continue,
                    },
                    None => frame,
                },
                _ => return,
            },
            Some(frame) = async { released.as_mut()?.recv().await } => frame,
        };
        if to_device.send(frame).await.is_err() {
            return;
        }
    }
}

fn is_pingresp(frame: &[u8]) -> bool {
    frame == [PINGRESP << 4, 0]
}

/// Takes one from `count` if it is above zero.
fn take_one(count: &AtomicU32) -> bool {
    count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// The packet id of a PUBACK frame.
fn puback_id(frame: &[u8]) -> Option<u16> {
    match frame {
        [first, 2, high, low] if first >> 4 == PUBACK => Some(u16::from_be_bytes([*high, *low])),
        _ => None,
    }
}

/// Writes queued frames to the device, batching what has queued into one write.
async fn write_frames<W: AsyncWrite + Unpin>(mut device: W, mut queued: mpsc::Receiver<Bytes>) {
    let mut batch = BytesMut::new();
    while let Some(frame) = queued.recv().await {
        batch.extend_from_slice(&frame);
        while let Ok(more) = queued.try_recv() {
            batch.extend_from_slice(&more);
            if batch.len() > 64 * 1024 {
                break;
            }
        }
        if device.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = device.shutdown().await;
}
