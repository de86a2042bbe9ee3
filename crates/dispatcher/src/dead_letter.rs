//! Where refused device messages go: never dropped silently.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ktwin_broker::{AmqpConnector, BrokerError, ConfirmedPublisher, DEAD_LETTER_REASON_HEADER};
use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};

/// Header with the original topic or routing key of a dead-lettered device message.
pub const TOPIC_HEADER: &str = "x-ktwin-topic";
/// Header with the rejection category (`not_json`, `bad_topic`, …).
pub const KIND_HEADER: &str = "x-ktwin-reject-kind";

/// A refused device message with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedMessage {
    /// The topic or routing key it arrived on.
    pub topic: String,
    /// The payload as received.
    pub payload: Vec<u8>,
    /// Rejection category (metric label).
    pub kind: &'static str,
    /// Why, naming the offending value.
    pub reason: String,
}

/// Stores dead letters durably enough that the source message can then be acknowledged.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Stores one dead letter.
    async fn put(&self, letter: RejectedMessage) -> Result<(), BrokerError>;
}

/// Dead letters in a durable RabbitMQ queue (published with confirms), reason in the
/// `x-ktwin-dead-letter-reason` header.
#[derive(Debug)]
pub struct AmqpDeadLetters {
    publisher: ConfirmedPublisher,
    queue: String,
}

impl AmqpDeadLetters {
    /// Declares the durable queue `queue` and publishes dead letters to it.
    pub async fn new(connector: AmqpConnector, queue: &str) -> Result<Self, BrokerError> {
        let (_, channel) = connector.channel(None).await?;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|source| BrokerError::Amqp {
                operation: "queue.declare",
                source,
            })?;
        let _ = channel.close(200, "declared".into()).await;
        Ok(Self {
            publisher: ConfirmedPublisher::new(
                connector,
                None,
                Duration::from_secs(30),
                Duration::from_secs(5),
            ),
            queue: queue.to_owned(),
        })
    }

    /// The queue name.
    pub fn queue(&self) -> &str {
        &self.queue
    }
}

#[async_trait]
impl DeadLetterSink for AmqpDeadLetters {
    async fn put(&self, letter: RejectedMessage) -> Result<(), BrokerError> {
        let mut headers = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(s.into());
        headers.insert(DEAD_LETTER_REASON_HEADER.into(), text(&letter.reason));
        headers.insert(TOPIC_HEADER.into(), text(&letter.topic));
        headers.insert(KIND_HEADER.into(), text(letter.kind));
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(2);
        self.publisher
            .publish("", &self.queue, false, &properties, &letter.payload)
            .await
            .map(drop)
    }
}

/// Dead letters kept in memory (local runtime, tests): the newest `capacity`, with a count of
/// those discarded.
#[derive(Debug)]
pub struct MemoryDeadLetters {
    capacity: usize,
    state: Mutex<(VecDeque<RejectedMessage>, u64)>,
}

impl MemoryDeadLetters {
    /// Keeps at most `capacity` dead letters.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new((VecDeque::new(), 0)),
        }
    }

    /// Removes and returns the kept dead letters, oldest first.
    pub fn take(&self) -> Vec<RejectedMessage> {
        self.state
            .lock()
            .expect("dead letters lock")
            .0
            .drain(..)
            .collect()
    }

    /// How many were discarded because the buffer was full.
    pub fn discarded(&self) -> u64 {
        self.state.lock().expect("dead letters lock").1
    }
}

#[async_trait]
impl DeadLetterSink for MemoryDeadLetters {
    async fn put(&self, letter: RejectedMessage) -> Result<(), BrokerError> {
        let mut state = self.state.lock().expect("dead letters lock");
        if state.0.len() >= self.capacity {
            state.0.pop_front();
            state.1 += 1;
        }
        state.0.push_back(letter);
        Ok(())
    }
}
