//! Where refused device messages go: never dropped silently.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ktwin_broker::{
    AmqpConnector, BrokerError, ConfirmedPublisher, DEAD_LETTER_REASON_HEADER, DeadLetterSink,
    NewDeadLetter,
};
use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};

/// Header with the original topic or routing key of a dead-lettered device message.
pub const TOPIC_HEADER: &str = "x-ktwin-topic";
/// Header with the rejection category (`not_json`, `bad_topic`, …).
pub const KIND_HEADER: &str = "x-ktwin-reject-kind";

/// Who dead-letters refused device messages (the `origin` of their letters).
pub const INGRESS_ORIGIN: &str = "ingress";

/// The dead letter of a device message refused by the ingress: the topic (or routing key) it
/// arrived on and the rejection category (`not_json`, `bad_topic`, …) as headers, the payload
/// as received.
pub fn device_dead_letter(
    topic: &str,
    payload: &[u8],
    kind: &'static str,
    reason: impl Into<String>,
) -> NewDeadLetter {
    NewDeadLetter {
        origin: INGRESS_ORIGIN.to_owned(),
        reason: reason.into(),
        headers: vec![
            (TOPIC_HEADER.to_owned(), topic.to_owned()),
            (KIND_HEADER.to_owned(), kind.to_owned()),
        ],
        payload: payload.to_vec(),
    }
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
    async fn put(&self, letter: NewDeadLetter) -> Result<(), BrokerError> {
        let mut headers = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(s.into());
        for (name, value) in &letter.headers {
            headers.insert(name.as_str().into(), text(value));
        }
        headers.insert(DEAD_LETTER_REASON_HEADER.into(), text(&letter.reason));
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(2);
        self.publisher
            .publish("", &self.queue, false, &properties, &letter.payload)
            .await
            .map(drop)
    }
}

/// Dead letters kept in memory (tests, benchmarks): the newest that fit in a byte bound (as
/// [`NewDeadLetter::size`] counts), with a count of those discarded.
#[derive(Debug)]
pub struct MemoryDeadLetters {
    max_bytes: usize,
    state: Mutex<KeptLetters>,
}

#[derive(Debug, Default)]
struct KeptLetters {
    letters: VecDeque<NewDeadLetter>,
    bytes: usize,
    discarded: u64,
}

impl MemoryDeadLetters {
    /// Keeps at most `max_bytes` of dead letters (always the newest one).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::default(),
        }
    }

    /// Removes and returns the kept dead letters, oldest first.
    pub fn take(&self) -> Vec<NewDeadLetter> {
        let mut state = self.state.lock().expect("dead letters lock");
        state.bytes = 0;
        state.letters.drain(..).collect()
    }

    /// How many were discarded because the bound was reached.
    pub fn discarded(&self) -> u64 {
        self.state.lock().expect("dead letters lock").discarded
    }
}

#[async_trait]
impl DeadLetterSink for MemoryDeadLetters {
    async fn put(&self, letter: NewDeadLetter) -> Result<(), BrokerError> {
        let size = letter.size();
        let mut state = self.state.lock().expect("dead letters lock");
        while state.bytes + size > self.max_bytes
            && let Some(oldest) = state.letters.pop_front()
        {
            state.bytes -= oldest.size();
            state.discarded += 1;
            tracing::warn!(
                bound = self.max_bytes,
                "in-memory dead letters full: discarding the oldest"
            );
        }
        state.bytes += size;
        state.letters.push_back(letter);
        Ok(())
    }
}
