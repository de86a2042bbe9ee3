//! RabbitMQ broker with the Knative RabbitMQ broker's topology: one durable headers exchange,
//! one queue per subscription bound with `x-match: all` on the `type` header, manual acks,
//! publisher confirms, a dead-letter queue per subscription, reconnection with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};
use futures::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::amqp_codec::{DEAD_LETTER_REASON_HEADER, event_from_amqp, event_to_amqp, header_string};
use crate::delivery::{DeliverySource, Settle, Settlement};
use crate::{
    Broker, BrokerError, DeadLetter, Delivery, PublishOutcome, Subscription, SubscriptionSpec,
    metric_names,
};

/// Header counting failed deliveries across requeues (requeues republish the message, so the
/// count works for classic and quorum queues alike).
const DELIVERY_COUNT_HEADER: &str = "x-ktwin-delivery-count";
/// Header naming the subscription a dead letter came from.
const SUBSCRIPTION_HEADER: &str = "x-ktwin-subscription";
/// How long a stopping consumer waits for the server to confirm its cancellation, so a server
/// that stopped answering cannot hold up the deletion of a subscription or a source's close.
const CONSUMER_CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// Cancels `consumer` and waits, for a bounded time, for the server's answer, if its `channel` is
/// still open: the queue then holds no consumer of ours, and can be deleted at once.
pub async fn cancel_consumer(channel: &Channel, consumer: &lapin::Consumer) {
    if channel.status().connected() {
        let tag = consumer.tag();
        let cancel = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default());
        let _ = tokio::time::timeout(CONSUMER_CANCEL_TIMEOUT, cancel).await;
    }
}

/// `consumer`'s next delivery from `queue`; `None` once `stop` fires; an error when the
/// consumer ended (cancelled by the server, or its connection closed) or its channel failed.
pub async fn next_delivery(
    consumer: &mut lapin::Consumer,
    stop: &CancellationToken,
    queue: &str,
) -> Result<Option<lapin::message::Delivery>, BrokerError> {
    let delivery = tokio::select! {
        delivery = consumer.next() => delivery,
        () = stop.cancelled() => return Ok(None),
    };
    let delivery = delivery.ok_or_else(|| {
        BrokerError::Unavailable(format!(
            "consumer of {queue:?} was cancelled by the server or the connection closed"
        ))
    })?;
    delivery.map(Some).map_err(|source| BrokerError::Amqp {
        operation: "basic.consume",
        source,
    })
}

/// Kind of queue declared for subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated, durable (what the ktwin operator declares).
    #[default]
    Quorum,
    /// Classic durable queue.
    Classic,
}

/// Connection and topology settings of a [`RabbitBroker`].
#[derive(Debug, Clone)]
pub struct RabbitConfig {
    /// AMQP URI, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub uri: String,
    /// The broker's headers exchange (the Knative broker exchange in a cluster).
    pub exchange: String,
    /// Declare the exchange (durable, `headers`) on connect; off when the operator owns it.
    pub declare_exchange: bool,
    /// Kind of subscription queues.
    pub queue_type: QueueType,
    /// How long a publish keeps retrying across reconnects before failing.
    pub publish_retry_budget: Duration,
    /// Longest wait between reconnection attempts (backoff doubles from 100 ms up to this).
    pub max_backoff: Duration,
    /// Connection name shown in the RabbitMQ management UI.
    pub connection_name: String,
    /// Channels publishing in parallel (see [`ConfirmedPublisher`]); events of one source
    /// always use the same channel, so their order is kept.
    pub publisher_channels: usize,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        Self {
            uri: ktwin_events::defaults::AMQP_URL.into(),
            exchange: "ktwin-broker".into(),
            declare_exchange: true,
            queue_type: QueueType::Quorum,
            publish_retry_budget: Duration::from_secs(60),
            max_backoff: Duration::from_secs(5),
            connection_name: "ktwin".into(),
            publisher_channels: 4,
        }
    }
}

/// Exponential backoff from 100 ms to a cap.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(100),
            max,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// A supervised AMQP connection shared by publishers and consumers: hands out the live
/// connection, and reconnects (once, however many callers notice) when it is lost.
#[derive(Clone)]
pub struct AmqpConnector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    uri: String,
    name: String,
    max_backoff: Duration,
    current: Mutex<Option<(u64, Arc<Connection>)>>,
    generation: AtomicU64,
    closed: CancellationToken,
}

impl std::fmt::Debug for AmqpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConnector")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl AmqpConnector {
    /// Connects to `uri` once (failing fast if RabbitMQ is unreachable now); later losses are
    /// repaired with backoff up to `max_backoff`.
    pub async fn connect(
        uri: &str,
        name: &str,
        max_backoff: Duration,
    ) -> Result<Self, BrokerError> {
        let connector = Self {
            inner: Arc::new(ConnectorInner {
                uri: uri.to_owned(),
                name: name.to_owned(),
                max_backoff,
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
                closed: CancellationToken::new(),
            }),
        };
        let connection = connector.open().await?;
        *connector.inner.current.lock().await = Some((0, Arc::new(connection)));
        Ok(connector)
    }

    async fn open(&self) -> Result<Connection, BrokerError> {
        let properties =
            ConnectionProperties::default().with_connection_name(self.inner.name.clone().into());
        Connection::connect(&self.inner.uri, properties)
            .await
            .map_err(|source| BrokerError::Amqp {
                operation: "connect",
                source,
            })
    }

    /// Whether the connection is up right now (for readiness probes).
    pub fn is_connected(&self) -> bool {
        self.inner
            .current
            .try_lock()
            .map(|c| {
                c.as_ref()
                    .is_some_and(|(_, conn)| conn.status().connected())
            })
            // Someone holds the lock: probably reconnecting.
            .unwrap_or(false)
    }

    /// The live connection and its generation; if the one of generation `stale` (or the
    /// current one) is broken, reconnects first, retrying with backoff until it succeeds or
    /// the connector is closed.
    pub async fn connection(
        &self,
        stale: Option<u64>,
    ) -> Result<(u64, Arc<Connection>), BrokerError> {
        let mut current = self.inner.current.lock().await;
        if let Some((generation, conn)) = current.as_ref()
            && conn.status().connected()
            && stale != Some(*generation)
        {
            return Ok((*generation, Arc::clone(conn)));
        }
        let mut backoff = Backoff::new(self.inner.max_backoff);
        loop {
            if self.inner.closed.is_cancelled() {
                return Err(BrokerError::Unavailable("connector closed".into()));
            }
            match self.open().await {
                Ok(conn) => {
                    let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
                    let conn = Arc::new(conn);
                    *current = Some((generation, Arc::clone(&conn)));
                    metrics::counter!(metric_names::RECONNECTS).increment(1);
                    tracing::info!(name = %self.inner.name, generation, "reconnected to RabbitMQ");
                    return Ok((generation, conn));
                }
                Err(err) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(name = %self.inner.name, error = %err, ?delay, "RabbitMQ unreachable, retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.inner.closed.cancelled() => {}
                    }
                }
            }
        }
    }

    /// A new channel on the live connection (reconnecting as needed), with its generation.
    pub async fn channel(&self, stale: Option<u64>) -> Result<(u64, Channel), BrokerError> {
        let mut stale = stale;
        loop {
            let (generation, conn) = self.connection(stale).await?;
            match conn.create_channel().await {
                Ok(channel) => return Ok((generation, channel)),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot open a channel, reconnecting");
                    stale = Some(generation);
                }
            }
        }
    }

    /// Stops reconnecting and closes the connection.
    pub async fn close(&self) {
        self.inner.closed.cancel();
        if let Some((_, conn)) = self.inner.current.lock().await.take() {
            let _ = conn.close(200, "shutdown".into()).await;
        }
    }

    /// A token cancelled when the connector is closed.
    pub fn closed(&self) -> CancellationToken {
        self.inner.closed.clone()
    }
}

/// Publishes with publisher confirms on channels that are replaced after failures, retrying
/// the same message across reconnects within a time budget.
///
/// RabbitMQ runs each channel as one Erlang process, so one channel caps confirmed publishing
/// at what one scheduler does; several channels spread it over the server's cores.
pub struct ConfirmedPublisher {
    connector: AmqpConnector,
    channels: Vec<PublisherChannel>,
    /// Headers exchange declared on every new channel, if any.
    setup_exchange: Option<String>,
    budget: Duration,
    max_backoff: Duration,
}

impl std::fmt::Debug for ConfirmedPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmedPublisher")
            .field("channels", &self.channels.len())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl ConfirmedPublisher {
    /// A publisher on `connector` with one channel; each publish retries for at most `budget`.
    /// If `declare_headers_exchange` is set, that durable headers exchange is declared on
    /// every new channel.
    pub fn new(
        connector: AmqpConnector,
        declare_headers_exchange: Option<String>,
        budget: Duration,
        max_backoff: Duration,
    ) -> Self {
        Self {
            connector,
            channels: vec![PublisherChannel::default()],
            setup_exchange: declare_headers_exchange,
            budget,
            max_backoff,
        }
    }

    /// Publishes over `count` channels (at least one).
    pub fn with_channels(mut self, count: usize) -> Self {
        self.channels = (0..count.max(1))
            .map(|_| PublisherChannel::default())
            .collect();
        self
    }

    /// Opens every channel now, so that configuration errors surface here.
    pub async fn open_all(&self) -> Result<(), BrokerError> {
        for index in 0..self.channels.len() {
            self.channel(index).await?;
        }
        Ok(())
    }

    /// The live confirm-mode channel `index` (modulo the channel count).
    async fn channel(&self, index: usize) -> Result<Channel, BrokerError> {
        let slot = &self.channels[index % self.channels.len()];
        if let Some(live) = slot.live() {
            return Ok(live);
        }
        let _reopening = slot.reopen.lock().await;
        // Someone else may have reopened it while we waited.
        if let Some(live) = slot.live() {
            return Ok(live);
        }
        // Not the connection's generation as stale: one channel's error (a channel-level
        // exception) must not replace a connection the other channels still use. A connection
        // that died reports itself so, and one that cannot open a channel is replaced by
        // `AmqpConnector::channel`.
        let (_, channel) = self.connector.channel(None).await?;
        let amqp = |operation| move |source| BrokerError::Amqp { operation, source };
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp("confirm.select"))?;
        if let Some(exchange) = &self.setup_exchange {
            declare_exchange(&channel, exchange).await?;
        }
        *slot.current.lock().expect("publisher channel lock") = Some(channel.clone());
        Ok(channel)
    }

    /// Publishes on the first channel and waits for the confirm, retrying (same message) across
    /// reconnects within the budget, so messages published one after another keep their order.
    /// `Ok(false)` means the message was `mandatory` and RabbitMQ returned it as unroutable.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        properties: &BasicProperties,
        body: &[u8],
    ) -> Result<bool, BrokerError> {
        self.publish_on(0, exchange, routing_key, mandatory, properties, body)
            .await
    }

    /// Like [`ConfirmedPublisher::publish`], on the channel chosen by `affinity`: messages of
    /// equal affinity share a channel, so RabbitMQ keeps their order.
    pub async fn publish_on(
        &self,
        affinity: usize,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        properties: &BasicProperties,
        body: &[u8],
    ) -> Result<bool, BrokerError> {
        let budget = self.budget;
        let deadline = tokio::time::Instant::now() + budget;
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            let attempt = async {
                let channel = self.channel(affinity).await?;
                let confirm = channel
                    .basic_publish(
                        exchange.into(),
                        routing_key.into(),
                        BasicPublishOptions {
                            mandatory,
                            immediate: false,
                        },
                        body,
                        properties.clone(),
                    )
                    .await
                    .map_err(|source| BrokerError::Amqp {
                        operation: "basic.publish",
                        source,
                    })?;
                match confirm.await.map_err(|source| BrokerError::Amqp {
                    operation: "publisher confirm",
                    source,
                })? {
                    Confirmation::Ack(None) | Confirmation::NotRequested => Ok(true),
                    Confirmation::Ack(Some(_returned)) => Ok(false),
                    Confirmation::Nack(_) => Err(BrokerError::Nacked {
                        id: properties
                            .message_id()
                            .as_ref()
                            .map(|m| m.as_str().to_owned())
                            .unwrap_or_default(),
                    }),
                }
            };
            let error = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(routed)) => return Ok(routed),
                Ok(Err(error)) => error,
                Err(_) => {
                    return Err(BrokerError::Unavailable(format!(
                        "no publisher confirm within {budget:?}"
                    )));
                }
            };
            let delay = backoff.next_delay();
            if tokio::time::Instant::now() + delay >= deadline {
                return Err(error);
            }
            tracing::warn!(%error, ?delay, "publish failed, retrying the same message");
            tokio::time::sleep(delay).await;
        }
    }
}

/// One publishing channel of a [`ConfirmedPublisher`]. Publishes only read the current channel
/// (a short synchronous lock); replacing a broken one is serialized by `reopen`, so concurrent
/// publishes do not queue behind each other while the channel is fine.
#[derive(Default)]
struct PublisherChannel {
    current: std::sync::Mutex<Option<Channel>>,
    reopen: Mutex<()>,
}

impl PublisherChannel {
    /// The current channel, if it is open.
    fn live(&self) -> Option<Channel> {
        let current = self.current.lock().expect("publisher channel lock");
        current
            .as_ref()
            .filter(|channel| channel.status().connected())
            .cloned()
    }
}

async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Headers,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|source| BrokerError::Amqp {
            operation: "exchange.declare",
            source,
        })
}

/// The RabbitMQ [`Broker`]. Cloning shares connections.
#[derive(Clone)]
pub struct RabbitBroker {
    inner: Arc<RabbitInner>,
}

struct RabbitInner {
    config: RabbitConfig,
    connector: AmqpConnector,
    publisher: ConfirmedPublisher,
    /// The consumers this broker runs, by subscription name: deleting a subscription stops
    /// them first. A queue deleted under a live consumer would be declared again by its
    /// resubscription, and a consumer cancelled by the client while the server cancels it
    /// for the deletion makes lapin end the whole connection (an unexpected `cancel-ok`).
    consumers: std::sync::Mutex<std::collections::HashMap<String, Vec<RunningConsumer>>>,
}

/// A subscription's consumer task and what stops it.
struct RunningConsumer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitBroker")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RabbitBroker {
    /// Connects (failing fast if RabbitMQ is unreachable now) and declares the exchange if
    /// configured.
    #[tracing::instrument(skip_all, fields(exchange = %config.exchange))]
    pub async fn connect(config: RabbitConfig) -> Result<Self, BrokerError> {
        let connector =
            AmqpConnector::connect(&config.uri, &config.connection_name, config.max_backoff)
                .await?;
        let publisher = ConfirmedPublisher::new(
            connector.clone(),
            config.declare_exchange.then(|| config.exchange.clone()),
            config.publish_retry_budget,
            config.max_backoff,
        )
        .with_channels(config.publisher_channels);
        publisher.open_all().await?;
        Ok(Self {
            inner: Arc::new(RabbitInner {
                config,
                connector,
                publisher,
                consumers: std::sync::Mutex::default(),
            }),
        })
    }

    /// The shared connection (dispatchers open their own channels on it).
    pub fn connector(&self) -> &AmqpConnector {
        &self.inner.connector
    }

    /// The configuration.
    pub fn config(&self) -> &RabbitConfig {
        &self.inner.config
    }

    /// Whether RabbitMQ is reachable right now.
    pub fn is_connected(&self) -> bool {
        self.inner.connector.is_connected()
    }

    /// Stops reconnecting and closes the connection.
    pub async fn close(&self) {
        self.inner.connector.close().await;
    }

    fn queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if self.inner.config.queue_type == QueueType::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        args
    }

    fn dead_letter_queue(name: &str) -> String {
        format!("{name}.dlq")
    }

    async fn declare_subscription(
        &self,
        channel: &Channel,
        spec: &SubscriptionSpec,
    ) -> Result<(), BrokerError> {
        let amqp = |operation| move |source| BrokerError::Amqp { operation, source };
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        for queue in [spec.name.clone(), Self::dead_letter_queue(&spec.name)] {
            channel
                .queue_declare(queue.as_str().into(), durable, self.queue_args())
                .await
                .map_err(amqp("queue.declare"))?;
        }
        let exchange = &self.inner.config.exchange;
        let binding = |ty: Option<&str>| {
            let mut args = FieldTable::default();
            args.insert("x-match".into(), AMQPValue::LongString("all".into()));
            args.insert(
                SUBSCRIPTION_HEADER.into(),
                AMQPValue::LongString(spec.name.as_str().into()),
            );
            if let Some(ty) = ty {
                args.insert("type".into(), AMQPValue::LongString(ty.into()));
            }
            args
        };
        // A headers exchange matches exact values only: prefix filters bind everything and
        // filter on the consumer side.
        let bindings: Vec<FieldTable> = if spec.filter.has_prefixes() {
            vec![binding(None)]
        } else {
            spec.filter
                .exact_types()
                .map(|t| binding(Some(t)))
                .collect()
        };
        for args in bindings {
            channel
                .queue_bind(
                    spec.name.as_str().into(),
                    exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    args,
                )
                .await
                .map_err(amqp("queue.bind"))?;
        }
        Ok(())
    }

    /// Publishes `event` (see [`Broker::publish`]), encoded where it is.
    async fn publish_encoded(&self, event: &Event) -> Result<PublishOutcome, BrokerError> {
        let (properties, body) = event_to_amqp(event)?;
        let config = &self.inner.config;
        let routed = self
            .inner
            .publisher
            .publish_on(
                source_affinity(event),
                &config.exchange,
                "",
                true,
                &properties,
                &body,
            )
            .await?;
        if routed {
            Ok(PublishOutcome::Routed)
        } else {
            metric_names::count_unroutable(event.ty());
            Ok(PublishOutcome::Unroutable)
        }
    }
}

#[async_trait]
impl Broker for RabbitBroker {
    async fn publish(&self, event: Event) -> Result<PublishOutcome, BrokerError> {
        self.publish_encoded(&event).await
    }

    async fn publish_shared(&self, event: Arc<Event>) -> Result<PublishOutcome, BrokerError> {
        self.publish_encoded(&event).await
    }

    async fn publish_all(&self, events: Vec<Event>) -> Result<Vec<PublishOutcome>, BrokerError> {
        // Concurrent publishes share the confirm channels, so they are pipelined.
        futures::future::join_all(events.into_iter().map(|e| self.publish(e)))
            .await
            .into_iter()
            .collect()
    }

    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, BrokerError> {
        if spec.filter.is_empty() {
            return Err(BrokerError::InvalidSubscription {
                name: spec.name,
                reason: "the type filter matches nothing".into(),
            });
        }
        if spec.name.is_empty() || spec.name.len() > 200 {
            return Err(BrokerError::InvalidSubscription {
                name: spec.name,
                reason: "the name must have 1 to 200 bytes (it names an AMQP queue)".into(),
            });
        }
        // Declare once up front so configuration errors surface here, not in the background.
        let consumer = SubscriptionConsumer {
            broker: self.clone(),
            spec: spec.clone(),
        };
        let (_, channel) = self.inner.connector.channel(None).await?;
        if self.inner.config.declare_exchange {
            declare_exchange(&channel, &self.inner.config.exchange).await?;
        }
        self.declare_subscription(&channel, &spec).await?;
        let _ = channel.close(200, "declared".into()).await;

        let (tx, rx) = mpsc::channel(usize::from(spec.prefetch));
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer.run(tx, stop.clone()));
        let running = RunningConsumer {
            stop: stop.clone(),
            task,
        };
        let mut consumers = self.inner.consumers.lock().expect("consumers lock");
        consumers.retain(|_, running| {
            running.retain(|r| !r.task.is_finished());
            !running.is_empty()
        });
        consumers
            .entry(spec.name.clone())
            .or_default()
            .push(running);
        drop(consumers);
        Ok(Subscription::new(
            spec.name,
            Box::new(RabbitSource {
                rx,
                _stop: stop.drop_guard(),
            }),
        ))
    }

    async fn delete_subscription(&self, name: &str) -> Result<(), BrokerError> {
        let running = self
            .inner
            .consumers
            .lock()
            .expect("consumers lock")
            .remove(name)
            .unwrap_or_default();
        // All stopped before any is awaited, so a caller giving up half-way leaves none running.
        for consumer in &running {
            consumer.stop.cancel();
        }
        // Each task cancels its consumer before it ends.
        futures::future::join_all(running.into_iter().map(|consumer| consumer.task)).await;
        let (_, channel) = self.inner.connector.channel(None).await?;
        for queue in [name.to_owned(), Self::dead_letter_queue(name)] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|source| BrokerError::Amqp {
                    operation: "queue.delete",
                    source,
                })?;
        }
        let _ = channel.close(200, "deleted".into()).await;
        Ok(())
    }

    async fn take_dead_letters(
        &self,
        name: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let (_, channel) = self.inner.connector.channel(None).await?;
        let queue = Self::dead_letter_queue(name);
        let mut letters = Vec::new();
        while letters.len() < max {
            let got = channel
                .basic_get(queue.as_str().into(), BasicGetOptions::default())
                .await
                .map_err(|source| BrokerError::Amqp {
                    operation: "basic.get",
                    source,
                })?;
            let Some(message) = got else { break };
            let delivery = message.delivery;
            let headers = delivery.properties.headers().clone().unwrap_or_default();
            let event = event_from_amqp(&delivery.properties, &delivery.data).ok();
            letters.push(DeadLetter {
                subscription: header_string(&headers, SUBSCRIPTION_HEADER)
                    .unwrap_or_else(|| name.to_owned()),
                reason: header_string(&headers, DEAD_LETTER_REASON_HEADER).unwrap_or_default(),
                raw: event.is_none().then(|| delivery.data.clone()),
                event,
                at: chrono::Utc::now(),
            });
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|source| BrokerError::Amqp {
                    operation: "basic.ack",
                    source,
                })?;
        }
        let _ = channel.close(200, "dead letters taken".into()).await;
        Ok(letters)
    }
}

/// Channel affinity of an event: its source, so one instance's events stay in order.
fn source_affinity(event: &Event) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(event.source().as_str(), &mut hasher);
    std::hash::Hasher::finish(&hasher) as usize
}

/// Deliveries of the AMQP messages counted so far, this one included.
fn delivery_count(delivery: &lapin::message::Delivery) -> u32 {
    let headers = delivery.properties.headers().as_ref();
    let number = |name: &str| match headers.and_then(|h| h.inner().get(name)) {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).ok(),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).ok(),
        Some(AMQPValue::LongUInt(n)) => Some(*n),
        _ => None,
    };
    // Our requeues republish with an explicit count; quorum queues count returns themselves.
    let previous = number(DELIVERY_COUNT_HEADER)
        .unwrap_or(0)
        .max(number("x-delivery-count").unwrap_or(0));
    let count = previous + 1;
    if delivery.redelivered {
        count.max(2)
    } else {
        count
    }
}

struct SubscriptionConsumer {
    broker: RabbitBroker,
    spec: SubscriptionSpec,
}

impl SubscriptionConsumer {
    /// Consumes, resubscribing after failures, until `stop` fires, the receiver is dropped or
    /// the broker closes; the server's consumer is gone when it returns (but on a closing
    /// broker).
    async fn run(self, tx: mpsc::Sender<Delivery>, stop: CancellationToken) {
        let closed = self.broker.inner.connector.closed();
        let mut backoff = Backoff::new(self.broker.inner.config.max_backoff);
        let mut stale = None;
        loop {
            let result = tokio::select! {
                result = self.consume(&tx, &mut stale, &stop) => result,
                () = closed.cancelled() => return,
            };
            match result {
                Ok(()) => return,
                Err(error) if stop.is_cancelled() => {
                    tracing::debug!(subscription = %self.spec.name, %error, "consumer failed while stopping");
                    return;
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(subscription = %self.spec.name, %error, ?delay, "consumer lost, resubscribing");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// A confirm-mode channel consuming the subscription's (declared) queue.
    async fn open(
        &self,
        stale: &mut Option<u64>,
    ) -> Result<(Channel, lapin::Consumer), BrokerError> {
        let amqp = |operation| move |source| BrokerError::Amqp { operation, source };
        let (generation, channel) = self.broker.inner.connector.channel(stale.take()).await?;
        *stale = Some(generation);
        self.broker
            .declare_subscription(&channel, &self.spec)
            .await?;
        channel
            .basic_qos(self.spec.prefetch, BasicQosOptions::default())
            .await
            .map_err(amqp("basic.qos"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp("confirm.select"))?;
        let consumer = channel
            .basic_consume(
                self.spec.name.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp("basic.consume"))?;
        // A new channel works: the next failure is a fresh one, not this connection's.
        *stale = None;
        Ok((channel, consumer))
    }

    /// Consumes until `stop` fires or the receiver is dropped (`Ok`) or the channel fails
    /// (`Err`). On every way out while the channel is open the consumer is cancelled and the
    /// server's answer awaited, so a deletion of the queue after it finds no consumer of ours.
    /// The channel stays open while the deliveries handed out (or being nacked after a drop)
    /// still hold it, and closes with the last of them.
    async fn consume(
        &self,
        tx: &mpsc::Sender<Delivery>,
        stale: &mut Option<u64>,
        stop: &CancellationToken,
    ) -> Result<(), BrokerError> {
        let (channel, mut consumer) = self.open(stale).await?;
        let settler = Arc::new(RabbitSettler {
            channel: channel.clone(),
            queue: self.spec.name.clone(),
            dead_letter_queue: RabbitBroker::dead_letter_queue(&self.spec.name),
            budget: self.broker.inner.config.publish_retry_budget,
        });
        let result = self.deliver(&mut consumer, &settler, tx, stop).await;
        cancel_consumer(&channel, &consumer).await;
        result
    }

    /// Hands `consumer`'s deliveries to `tx` until `stop` fires or the receiver is dropped
    /// (`Ok`) or the channel fails (`Err`).
    async fn deliver(
        &self,
        consumer: &mut lapin::Consumer,
        settler: &Arc<RabbitSettler>,
        tx: &mpsc::Sender<Delivery>,
        stop: &CancellationToken,
    ) -> Result<(), BrokerError> {
        let amqp = |operation| move |source| BrokerError::Amqp { operation, source };
        while let Some(delivery) = next_delivery(consumer, stop, &self.spec.name).await? {
            let count = delivery_count(&delivery);
            match event_from_amqp(&delivery.properties, &delivery.data) {
                Ok(event) if !self.spec.filter.matches(event.ty()) => {
                    // Delivered by a catch-all binding of a prefix filter.
                    delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(amqp("basic.ack"))?;
                }
                Ok(event) => {
                    let settle = RabbitSettle {
                        settler: Arc::clone(settler),
                        delivery: Some(delivery),
                        delivery_count: count,
                    };
                    let delivery = Delivery::new(
                        Arc::new(event),
                        count,
                        self.spec.max_deliveries,
                        Box::new(settle),
                    );
                    let handed = tokio::select! {
                        sent = tx.send(delivery) => sent.is_ok(),
                        () = stop.cancelled() => false,
                    };
                    if !handed {
                        return Ok(());
                    }
                }
                Err(error) => {
                    let reason = format!("undecodable CloudEvent: {error}");
                    settler.dead_letter(&delivery, &reason).await?;
                }
            }
        }
        Ok(())
    }
}

struct RabbitSource {
    rx: mpsc::Receiver<Delivery>,
    _stop: tokio_util::sync::DropGuard,
}

#[async_trait]
impl DeliverySource for RabbitSource {
    async fn recv_many(&mut self, out: &mut Vec<Delivery>, max: usize) -> usize {
        self.rx.recv_many(out, max).await
    }
}

/// Settles deliveries of one consumer channel.
struct RabbitSettler {
    channel: Channel,
    queue: String,
    dead_letter_queue: String,
    budget: Duration,
}

impl RabbitSettler {
    /// Publishes a copy of `delivery` to `queue` with extra headers, then acks the original, so
    /// the copy exists before the original goes.
    async fn move_to(
        &self,
        delivery: &lapin::message::Delivery,
        queue: &str,
        extra: &[(&str, AMQPValue)],
    ) -> Result<(), BrokerError> {
        let amqp = |operation| move |source| BrokerError::Amqp { operation, source };
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        for (name, value) in extra {
            headers.insert((*name).into(), value.clone());
        }
        let properties = delivery.properties.clone().with_headers(headers);
        let confirm = tokio::time::timeout(self.budget, async {
            self.channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &delivery.data,
                    properties,
                )
                .await
                .map_err(amqp("basic.publish"))?
                .await
                .map_err(amqp("publisher confirm"))
        })
        .await
        .map_err(|_| BrokerError::Unavailable("no publisher confirm".into()))??;
        if confirm.is_nack() {
            return Err(BrokerError::Nacked {
                id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_default(),
            });
        }
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(amqp("basic.ack"))?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        delivery: &lapin::message::Delivery,
        reason: &str,
    ) -> Result<(), BrokerError> {
        tracing::warn!(subscription = %self.queue, %reason, "dead-lettering message");
        metrics::counter!(metric_names::DEAD_LETTERS, "subscription" => self.queue.clone())
            .increment(1);
        let dlq = self.dead_letter_queue.clone();
        self.move_to(
            delivery,
            &dlq,
            &[
                (
                    DEAD_LETTER_REASON_HEADER,
                    AMQPValue::LongString(LongString::from(reason)),
                ),
                (
                    SUBSCRIPTION_HEADER,
                    AMQPValue::LongString(self.queue.as_str().into()),
                ),
            ],
        )
        .await
    }
}

struct RabbitSettle {
    settler: Arc<RabbitSettler>,
    delivery: Option<lapin::message::Delivery>,
    delivery_count: u32,
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn settle(
        mut self: Box<Self>,
        _event: Arc<Event>,
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        let delivery = self.delivery.take().expect("settled once");
        match settlement {
            Settlement::Ack => delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map(drop)
                .map_err(|source| BrokerError::Amqp {
                    operation: "basic.ack",
                    source,
                }),
            Settlement::Requeue => {
                let queue = self.settler.queue.clone();
                let count = i64::from(self.delivery_count);
                self.settler
                    .move_to(
                        &delivery,
                        &queue,
                        &[(DELIVERY_COUNT_HEADER, AMQPValue::LongLongInt(count))],
                    )
                    .await
            }
            Settlement::DeadLetter(reason) => self.settler.dead_letter(&delivery, &reason).await,
        }
    }

    fn requeue_on_drop(mut self: Box<Self>, _event: Arc<Event>) {
        if let Some(delivery) = self.delivery.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // lapin closes a channel when its last handle goes, and the settler holds one:
            // the task keeps it until the nack is sent. Dropped here instead, the close could
            // go out before the nack, and RabbitMQ answers a frame on a closed channel by
            // closing the whole connection ("expected 'channel.open'").
            let settler = Arc::clone(&self.settler);
            runtime.spawn(async move {
                let options = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                if let Err(error) = delivery.acker.nack(options).await {
                    tracing::debug!(%error, "nack of a dropped delivery failed; the server requeues it when the channel closes");
                }
                drop(settler);
            });
        }
    }
}
