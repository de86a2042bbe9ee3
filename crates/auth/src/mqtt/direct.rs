//! Device messages the [`MqttGate`](super::gate::MqttGate) hands to the platform in the same
//! process, instead of relaying them through the broker behind it.
//!
//! Every device message the platform ingests used to cross the gate, a loopback socket, the
//! broker's network thread and router, and the broker's in-process link: the broker's part
//! was about as much CPU as the rest of the platform's ingress (docs/benchmarks.md, fifteenth
//! session). The gate already reads each PUBLISH whole, checks its topic and holds its PUBACK
//! until the platform reports the message durable; with a [`DirectFeed`] it also delivers the
//! message itself and answers the PUBACK once the message is durable. What the broker still
//! does for such a message (retained messages, QoS 2's exchange) keeps those on the broker's
//! path. Devices subscribe to their command topics, not to ingested ones, so no device misses
//! a delivered message; a model whose declared command topic overlaps a declared telemetry
//! topic would (its devices would no longer receive those readings through the broker).
//!
//! The feed is bounded by bytes: a gate connection whose message finds the budget spent
//! waits, and reads nothing more from its device, until the platform takes what is queued.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// What one queued message is charged beyond its topic and payload (its slot and strings).
const MESSAGE_OVERHEAD: usize = 64;

/// The gate's side of the feed: where it delivers device messages.
#[derive(Debug, Clone)]
pub struct DirectFeed {
    sender: mpsc::UnboundedSender<DirectMessage>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

/// A device message delivered by the gate: its topic and payload.
#[derive(Debug)]
pub struct DirectMessage {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload (a copy of its own: a queued message keeps no read buffer alive).
    pub payload: Bytes,
    /// Its share of the feed's budget, given back when the message is dropped.
    _charge: OwnedSemaphorePermit,
}

/// The platform stopped reading the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the platform no longer reads device messages from the gate")]
pub struct FeedClosed;

/// The platform's side of the feed: the messages the gate delivered, in their order per
/// device connection. Dropping it closes the feed (a gate connection waiting for budget then
/// stops waiting).
#[derive(Debug)]
pub struct DirectMessages {
    receiver: mpsc::UnboundedReceiver<DirectMessage>,
    budget: Arc<Semaphore>,
}

impl DirectMessages {
    /// The next message; `None` once no gate can deliver any more. Cancel-safe.
    pub async fn recv(&mut self) -> Option<DirectMessage> {
        self.receiver.recv().await
    }
}

impl Drop for DirectMessages {
    fn drop(&mut self) {
        self.budget.close();
    }
}

/// A feed holding at most `budget_bytes` of queued messages, and the receiving end the
/// platform reads them from.
pub fn direct_feed(budget_bytes: usize) -> (DirectFeed, DirectMessages) {
    let (sender, receiver) = mpsc::unbounded_channel();
    // A charge is taken in one `u32` of permits.
    let budget_bytes = budget_bytes.clamp(1, u32::MAX as usize);
    let budget = Arc::new(Semaphore::new(budget_bytes));
    let feed = DirectFeed {
        sender,
        budget: Arc::clone(&budget),
        budget_bytes,
    };
    (feed, DirectMessages { receiver, budget })
}

impl DirectFeed {
    /// Queues a message, waiting while queued messages take the whole budget (a message
    /// larger than the budget waits until nothing else is queued).
    pub(crate) async fn deliver(&self, topic: String, payload: &[u8]) -> Result<(), FeedClosed> {
        let bytes = (topic.len() + payload.len() + MESSAGE_OVERHEAD).min(self.budget_bytes);
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX); // the budget fits a u32
        let charge = Arc::clone(&self.budget)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| FeedClosed)?;
        let message = DirectMessage {
            topic,
            payload: Bytes::copy_from_slice(payload),
            _charge: charge,
        };
        self.sender.send(message).map_err(|_| FeedClosed)
    }

    /// Whether the platform still reads the feed.
    pub(crate) fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_spent_budget_holds_the_sender_until_messages_are_taken() {
        let (feed, mut messages) = direct_feed(300);
        feed.deliver("ktwin/real/pole/p1".into(), &[1; 100])
            .await
            .unwrap();
        // 182 + 182 bytes are more than 300: the second waits for the first to be dropped.
        let second = tokio::spawn({
            let feed = feed.clone();
            async move { feed.deliver("ktwin/real/pole/p1".into(), &[2; 100]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the budget let a second message in");
        let first = messages.recv().await.unwrap();
        assert_eq!(first.payload.as_ref(), &[1; 100]);
        drop(first);
        second.await.unwrap().unwrap();
        assert_eq!(messages.recv().await.unwrap().payload.as_ref(), &[2; 100]);
    }

    #[tokio::test]
    async fn a_message_larger_than_the_budget_still_passes_alone() {
        let (feed, mut messages) = direct_feed(100);
        feed.deliver("t".into(), &[0; 1000]).await.unwrap();
        assert_eq!(messages.recv().await.unwrap().payload.len(), 1000);
    }

    #[tokio::test]
    async fn a_closed_feed_refuses() {
        let (feed, messages) = direct_feed(1000);
        drop(messages);
        assert!(!feed.is_open());
        assert_eq!(feed.deliver("t".into(), b"x").await, Err(FeedClosed));
    }

    /// A gate connection waiting for budget stops waiting when the platform stops reading.
    #[tokio::test]
    async fn closing_the_feed_ends_a_wait_for_budget() {
        let (feed, messages) = direct_feed(100);
        feed.deliver("t".into(), &[0; 50]).await.unwrap();
        let waiting = tokio::spawn({
            let feed = feed.clone();
            async move { feed.deliver("t".into(), &[0; 50]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(messages);
        let ended = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(ended.expect("the wait ended").unwrap(), Err(FeedClosed));
    }
}
