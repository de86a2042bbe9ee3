//! Where device messages come from: an AMQP queue fed by RabbitMQ's MQTT plugin, or a direct
//! MQTT subscription. Both acknowledge only when told to (after the event is confirmed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ktwin_broker::{AmqpConnector, BrokerError};
use ktwin_events::TopicKind;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::TransportError;
use crate::ingress::TopicSyntax;

/// Binding of the device queue: every real-twin routing key from the MQTT plugin.
pub const REAL_ROUTING_KEY_PATTERN: &str = "ktwin.real.#";

/// Binding of the device queue for one-level topics: RabbitMQ's MQTT plugin translates only
/// `/` (to `.`), so a dotted device topic (`ktwin.real.<iface>.<instance>`, as the original
/// KTWIN's devices publish) already arrives through [`REAL_ROUTING_KEY_PATTERN`]; this one lets
/// a stray one-level topic in, to be dead-lettered and counted as a bad topic.
pub const DOTTED_TOPIC_ROUTING_KEY_PATTERN: &str = "*";

/// Acknowledges one source message.
#[async_trait]
pub trait SourceAck: Send {
    /// The message is handled; the source may forget it.
    async fn ack(self: Box<Self>) -> Result<(), TransportError>;

    /// The message is about to be published as `event`; [`SourceAck::ack`] follows once the
    /// broker took it. A message acknowledged without this call was dead-lettered. A source
    /// whose device acknowledgement waits for the event's later fate (the embedded broker's
    /// link: a device's PUBACK waits for the store) notes the event's id here, before the
    /// event can reach anyone.
    fn publishing(&mut self, _event: &cloudevents::Event) {}
}

/// One device message from a source.
pub struct SourceMessage {
    /// Topic (MQTT) or routing key (AMQP), per the source's [`TopicSyntax`].
    pub topic: String,
    /// Payload as received.
    pub payload: Bytes,
    /// The transport says this may have been delivered before (AMQP `redelivered`, MQTT DUP).
    pub redelivered: bool,
    ack: Box<dyn SourceAck>,
}

impl std::fmt::Debug for SourceMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceMessage")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

impl SourceMessage {
    /// A message acknowledged through `ack`.
    pub fn new(topic: String, payload: Bytes, redelivered: bool, ack: Box<dyn SourceAck>) -> Self {
        Self {
            topic,
            payload,
            redelivered,
            ack,
        }
    }

    /// Tells the source the message is about to be published as `event`
    /// ([`SourceAck::publishing`]).
    pub fn publishing(&mut self, event: &cloudevents::Event) {
        self.ack.publishing(event);
    }

    /// Acknowledges the message to its source.
    pub async fn ack(self) -> Result<(), TransportError> {
        self.ack.ack().await
    }
}

/// A stream of device messages.
#[async_trait]
pub trait DeviceSource: Send {
    /// How topics are spelled.
    fn syntax(&self) -> TopicSyntax;
    /// The next message; `None` when the source has stopped.
    async fn next(&mut self) -> Option<SourceMessage>;
    /// A flag that is true while the source is connected (for readiness).
    fn connected(&self) -> Arc<AtomicBool>;
    /// Whether a message may come again after a reconnect (AMQP requeues, MQTT QoS 1 resends),
    /// so the dispatcher must remember what it sent to give a redelivery the same event id.
    fn redelivers(&self) -> bool {
        true
    }
    /// Stops taking messages from the transport and returns once the transport holds no
    /// consumer of this source (AMQP: the server confirmed the cancel; MQTT: the broker read
    /// the acknowledgements and closed the connection), so the queue can be deleted or taken
    /// over at once; messages not yet taken go back to the transport. The dispatcher calls it
    /// when it has drained.
    async fn close(&mut self) {}
}

/// Settings of [`AmqpQueueSource`].
#[derive(Debug, Clone)]
pub struct AmqpSourceConfig {
    /// Queue to consume (the original `mqtt-dispatcher-queue`).
    pub queue: String,
    /// Declare the queue (durable quorum) and bind it to `mqtt_exchange` with `binding_keys`;
    /// off when the operator owns the topology.
    pub declare: bool,
    /// Routing-key patterns bound when declaring: [`REAL_ROUTING_KEY_PATTERN`] and
    /// [`DOTTED_TOPIC_ROUTING_KEY_PATTERN`] by default, or
    /// `ktwin.real.<iface>.#` per interface as the operator does.
    pub binding_keys: Vec<String>,
    /// Exchange RabbitMQ's MQTT plugin publishes to.
    pub mqtt_exchange: String,
    /// Unacknowledged deliveries at most (prefetch).
    pub prefetch: u16,
    /// Consumer tag (the original `SERVICE_NAME`).
    pub consumer_tag: String,
}

/// Consumes the AMQP queue RabbitMQ's MQTT plugin routes device messages to, with manual
/// acknowledgements and prefetch, resubscribing after connection losses.
#[derive(Debug)]
pub struct AmqpQueueSource {
    rx: mpsc::Receiver<SourceMessage>,
    connected: Arc<AtomicBool>,
    stop: CancellationToken,
    consumer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for AmqpQueueSource {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct AmqpAck(lapin::Acker);

#[async_trait]
impl SourceAck for AmqpAck {
    async fn ack(self: Box<Self>) -> Result<(), TransportError> {
        self.0
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|source| TransportError::Amqp {
                operation: "basic.ack",
                source,
            })
    }
}

impl AmqpQueueSource {
    /// Declares the topology if configured (errors surface here) and starts consuming.
    #[tracing::instrument(skip_all, fields(queue = %config.queue))]
    pub async fn start(
        connector: AmqpConnector,
        config: AmqpSourceConfig,
    ) -> Result<Self, BrokerError> {
        let (_, channel) = connector.channel(None).await?;
        declare_source_queue(&channel, &config).await?;
        let _ = channel.close(200, "declared".into()).await;
        let (tx, rx) = mpsc::channel(usize::from(config.prefetch.max(1)));
        let connected = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let consumer = tokio::spawn(amqp_consume_loop(
            connector,
            config,
            tx,
            Arc::clone(&connected),
            stop.clone(),
        ));
        Ok(Self {
            rx,
            connected,
            stop,
            consumer: Some(consumer),
        })
    }
}

async fn declare_source_queue(
    channel: &lapin::Channel,
    config: &AmqpSourceConfig,
) -> Result<(), BrokerError> {
    if !config.declare {
        return Ok(());
    }
    let amqp = |operation| move |source| BrokerError::Amqp { operation, source };
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            config.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .map_err(amqp("queue.declare"))?;
    for key in &config.binding_keys {
        channel
            .queue_bind(
                config.queue.as_str().into(),
                config.mqtt_exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp("queue.bind"))?;
    }
    Ok(())
}

async fn amqp_consume_loop(
    connector: AmqpConnector,
    config: AmqpSourceConfig,
    tx: mpsc::Sender<SourceMessage>,
    connected: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut stale = None;
    let mut delay = Duration::from_millis(100);
    loop {
        let consumed =
            consume_device_queue(&connector, &config, &tx, &connected, &mut stale, &stop);
        let result = consumed.await;
        connected.store(false, Ordering::Release);
        match result {
            Ok(()) => return,
            Err(_) if stop.is_cancelled() => return,
            Err(error) => {
                tracing::warn!(queue = %config.queue, %error, ?delay, "device queue consumer lost, resubscribing");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One subscription to the device queue until `stop` fires or the receiver is dropped (`Ok`)
/// or the channel fails (`Err`). On every way out while the channel is open the consumer is
/// cancelled and the server's answer awaited, so the queue holds no consumer of ours after it,
/// and the channel is closed.
async fn consume_device_queue(
    connector: &AmqpConnector,
    config: &AmqpSourceConfig,
    tx: &mpsc::Sender<SourceMessage>,
    connected: &AtomicBool,
    stale: &mut Option<u64>,
    stop: &CancellationToken,
) -> Result<(), BrokerError> {
    let amqp = |operation| move |source| BrokerError::Amqp { operation, source };
    let subscribe = async {
        let (generation, channel) = connector.channel(stale.take()).await?;
        *stale = Some(generation);
        declare_source_queue(&channel, config).await?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(amqp("basic.qos"))?;
        let consumer = channel
            .basic_consume(
                config.queue.as_str().into(),
                config.consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp("basic.consume"))?;
        Ok::<_, BrokerError>((channel, consumer))
    };
    // Stopped while subscribing (RabbitMQ may be unreachable for long): nothing consumes yet.
    let (channel, mut consumer) = tokio::select! {
        subscribed = subscribe => subscribed?,
        () = stop.cancelled() => return Ok(()),
    };
    connected.store(true, Ordering::Release);
    *stale = None;
    let result = forward_deliveries(&mut consumer, config, tx, stop).await;
    ktwin_broker::cancel_consumer(&channel, &consumer).await;
    // Closed here rather than with the last delivery that holds it: lapin closes a dropped
    // channel in the background, and that close fails (lapin logs a connection error) when
    // the connection closes meanwhile, as it does right after a dispatcher stops. The
    // dispatcher has acknowledged what it took; what it did not take returns to the queue.
    if channel.status().connected() {
        let _ = channel.close(200, "source closed".into()).await;
    }
    result
}

/// Hands `consumer`'s deliveries to `tx` until `stop` fires or the receiver is dropped (`Ok`)
/// or the channel fails (`Err`).
async fn forward_deliveries(
    consumer: &mut lapin::Consumer,
    config: &AmqpSourceConfig,
    tx: &mpsc::Sender<SourceMessage>,
    stop: &CancellationToken,
) -> Result<(), BrokerError> {
    while let Some(delivery) = ktwin_broker::next_delivery(consumer, stop, &config.queue).await? {
        let mqtt_dup = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-mqtt-dup"))
            .is_some_and(|v| matches!(v, AMQPValue::Boolean(true)));
        let message = SourceMessage::new(
            delivery.routing_key.to_string(),
            Bytes::from(delivery.data),
            delivery.redelivered || mqtt_dup,
            Box::new(AmqpAck(delivery.acker)),
        );
        let handed = tokio::select! {
            sent = tx.send(message) => sent.is_ok(),
            () = stop.cancelled() => false,
        };
        if !handed {
            break;
        }
    }
    Ok(())
}

#[async_trait]
impl DeviceSource for AmqpQueueSource {
    fn syntax(&self) -> TopicSyntax {
        TopicSyntax::RoutingKey
    }

    async fn next(&mut self) -> Option<SourceMessage> {
        self.rx.recv().await
    }

    fn connected(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.connected)
    }

    async fn close(&mut self) {
        self.stop.cancel();
        if let Some(consumer) = self.consumer.take() {
            // The task cancels its consumer before it ends.
            let _ = consumer.await;
        }
    }
}

/// Settings of [`MqttSource`].
#[derive(Debug, Clone)]
pub struct MqttSourceConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id; with a persistent session, messages published while the dispatcher is
    /// down are kept by the broker under this id.
    pub client_id: String,
    /// Subscription filters, normally `ktwin/real/#` and `+` (dotted device topics, see
    /// [`TopicKind::mqtt_filters`]).
    pub filters: Vec<String>,
    /// Keep the session (and QoS 1 messages) across reconnects.
    pub persistent_session: bool,
    /// Messages buffered between the network and the dispatcher.
    pub buffer: usize,
    /// Largest MQTT packet accepted from the broker; larger ones break the connection, so
    /// keep it above the payload limit so oversize payloads can be dead-lettered.
    pub max_packet_bytes: usize,
    /// Optional credentials.
    pub credentials: Option<(String, String)>,
    /// Parallel connections sharing the subscription (`$share/…`, MQTT 5 shared subscriptions,
    /// which Mosquitto also offers to 3.1.1 clients); 1 subscribes plainly.
    pub connections: usize,
}

impl MqttSourceConfig {
    /// Defaults for `host:port`: filters `ktwin/real/#` and `+`, persistent session, 16 MiB packets, 16
    /// shared connections.
    pub fn new(host: &str, port: u16, client_id: &str) -> Self {
        Self {
            host: host.to_owned(),
            port,
            client_id: client_id.to_owned(),
            filters: TopicKind::Real.mqtt_filters().into(),
            persistent_session: true,
            buffer: 1024,
            max_packet_bytes: 16 * 1024 * 1024,
            credentials: None,
            connections: 16,
        }
    }
}

/// A direct QoS 1 MQTT subscription (any MQTT 3.1.1 broker) with manual acknowledgements.
#[derive(Debug)]
pub struct MqttSource {
    rx: mpsc::Receiver<SourceMessage>,
    connected: Arc<AtomicBool>,
    /// Ends the connections' tasks, which then disconnect ([`MqttSource::close`] waits; a
    /// source dropped unclosed lets them disconnect on their own).
    stop: CancellationToken,
    connections: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for MqttSource {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct MqttAck {
    client: AsyncClient,
    publish: rumqttc::Publish,
}

#[async_trait]
impl SourceAck for MqttAck {
    async fn ack(self: Box<Self>) -> Result<(), TransportError> {
        if self.publish.qos == QoS::AtMostOnce {
            return Ok(());
        }
        // Never wait on the request channel from the processing path: the event loop may be
        // waiting for us to take the next message.
        if self.client.try_ack(&self.publish).is_err() {
            tokio::spawn(async move {
                if let Err(error) = self.client.ack(&self.publish).await {
                    tracing::warn!(%error, "MQTT ack failed; the broker will redeliver");
                }
            });
        }
        Ok(())
    }
}

/// Connections of one [`MqttSource`] that are up, and whether that is all of them.
#[derive(Debug)]
struct ConnectionCount {
    up: AtomicUsize,
    total: usize,
    all_up: Arc<AtomicBool>,
}

impl ConnectionCount {
    fn change(&self, connected: bool) {
        let up = if connected {
            self.up.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.up.fetch_sub(1, Ordering::AcqRel) - 1
        };
        self.all_up.store(up == self.total, Ordering::Release);
    }
}

impl MqttSource {
    /// Connects and subscribes (QoS 1), resubscribing on every reconnect. With several
    /// connections, each subscribes to `$share/<client_id>/<filter>` so the broker spreads
    /// messages over them: brokers limit unacknowledged QoS 1 messages per connection
    /// (Mosquitto: 20 in flight, then 1000 queued, then it drops), and acknowledging only after
    /// the broker confirmed an event needs a wider window than one connection gives.
    pub fn start(config: MqttSourceConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let all_up = Arc::new(AtomicBool::new(false));
        let count = Arc::new(ConnectionCount {
            up: AtomicUsize::new(0),
            total: config.connections.max(1),
            all_up: Arc::clone(&all_up),
        });
        let stop = CancellationToken::new();
        let connections = (0..config.connections.max(1))
            .map(|index| {
                tokio::spawn(mqtt_connection(
                    config.clone(),
                    index,
                    tx.clone(),
                    Arc::clone(&count),
                    stop.clone(),
                ))
            })
            .collect();
        Self {
            rx,
            connected: all_up,
            stop,
            connections,
        }
    }
}

/// The client options and subscription filters of connection `index` of a source: with several
/// connections each has its own client id and subscribes to the shared `$share/<id>/…` form.
fn connection_options(config: &MqttSourceConfig, index: usize) -> (MqttOptions, Vec<String>) {
    let shared = config.connections > 1;
    let client_id = if shared {
        format!("{}-{index}", config.client_id)
    } else {
        config.client_id.clone()
    };
    let filters: Vec<String> = config
        .filters
        .iter()
        .map(|f| {
            if shared {
                format!("$share/{}/{f}", config.client_id)
            } else {
                f.clone()
            }
        })
        .collect();
    let mut options = MqttOptions::new(client_id, &config.host, config.port);
    options
        .set_manual_acks(true)
        .set_clean_session(!config.persistent_session)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(config.max_packet_bytes, config.max_packet_bytes);
    if let Some((user, password)) = &config.credentials {
        options.set_credentials(user, password);
    }
    (options, filters)
}

async fn mqtt_connection(
    config: MqttSourceConfig,
    index: usize,
    tx: mpsc::Sender<SourceMessage>,
    count: Arc<ConnectionCount>,
    stop: CancellationToken,
) {
    let (options, filters) = connection_options(&config, index);
    let (client, mut eventloop) = AsyncClient::new(options, config.buffer.max(16) * 4);
    let mut up = false;
    let mut delay = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            () = stop.cancelled() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if !up {
                    up = true;
                    count.change(true);
                }
                delay = Duration::from_millis(100);
                let subscribe = filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                if let Err(error) = client.try_subscribe_many(subscribe) {
                    tracing::error!(%error, ?filters, "cannot subscribe");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let message = SourceMessage::new(
                    publish.topic.clone(),
                    publish.payload.clone(),
                    publish.dup,
                    Box::new(MqttAck {
                        client: client.clone(),
                        publish,
                    }),
                );
                tokio::select! {
                    sent = tx.send(message) => if sent.is_err() { break },
                    () = stop.cancelled() => break,
                }
            }
            Ok(_) => {}
            Err(error) => {
                if up {
                    up = false;
                    count.change(false);
                }
                tracing::warn!(%error, ?delay, "MQTT connection lost, reconnecting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    if up {
        disconnect(&client, &mut eventloop).await;
        count.change(false);
    }
}

/// How long a closing MQTT connection may take to send what was asked of it before it and be
/// closed by the broker.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Sends what was already asked of `client` (a source's acknowledgements), then DISCONNECT (the
/// client sends its requests in order), and waits for the broker to close the connection: only
/// then has it read them. A broker taking a client id over from a connection still open (a
/// dispatcher started again at once) drops what it had not read of the old one, and
/// acknowledged messages sent again would get new event ids from the restarted dispatcher.
/// Messages arriving meanwhile stay unacknowledged, for the broker to deliver again.
pub(crate) async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    let closed = async {
        let mut requested = false;
        loop {
            // Requests go out in order, so DISCONNECT follows every acknowledgement asked
            // for before it; a full request queue empties as the event loop runs.
            if !requested {
                requested = client.try_disconnect().is_ok();
            }
            if eventloop.poll().await.is_err() {
                return;
            }
        }
    };
    if tokio::time::timeout(CLOSE_GRACE, closed).await.is_err() {
        tracing::warn!(
            grace = ?CLOSE_GRACE,
            "the MQTT broker did not close the connection in time; acknowledgements it did not \
             read will be redelivered"
        );
    }
}

#[async_trait]
impl DeviceSource for MqttSource {
    fn syntax(&self) -> TopicSyntax {
        TopicSyntax::Mqtt
    }

    async fn next(&mut self) -> Option<SourceMessage> {
        self.rx.recv().await
    }

    fn connected(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.connected)
    }

    async fn close(&mut self) {
        self.stop.cancel();
        for connection in self.connections.drain(..) {
            let _ = connection.await;
        }
    }
}
