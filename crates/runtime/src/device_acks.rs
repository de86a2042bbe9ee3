//! Devices' PUBACKs after durability: the MQTT gate holds the embedded broker's acknowledgement
//! of each device message on an ingested topic ([`PubAckHold`]) until this module says the
//! message is durable.
//!
//! The link reads every device message from the broker in order and gives each an
//! acknowledgement ([`DeviceAcks::ack_for`]) carrying its [`MessageKey`]. The ingress either
//! dead-letters the message (kept in the store before the acknowledgement: durable at once) or
//! publishes its event, announcing the event's id first ([`SourceAck::publishing`]). An event
//! the store's subscription takes is durable once the store commits it ([`StoredObserver`]);
//! one it does not take (an interface without `persistRealEvent`) has nothing durable to wait
//! for and is released once on the bus, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use cloudevents::{AttributesReader as _, Event};
use ktwin_auth::mqtt::{MessageKey, PubAckHold};
use ktwin_broker::TypeFilter;
use ktwin_dispatcher::{SourceAck, TransportError};
use ktwin_store::broker::StoredObserver;

/// Pairs device messages with their durability for the gate's [`PubAckHold`].
pub struct DeviceAcks {
    hold: Arc<PubAckHold>,
    /// The event types the store's subscription takes (none without an event store).
    stored_types: Option<TypeFilter>,
    /// Events on their way to the store, by id: the key of the device message of each.
    /// Bounded by what the bus and the store feed hold.
    awaiting_store: Mutex<HashMap<String, MessageKey>>,
}

impl std::fmt::Debug for DeviceAcks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAcks")
            .field("stored_types", &self.stored_types)
            .field("awaiting_store", &self.awaiting().len())
            .finish_non_exhaustive()
    }
}

impl DeviceAcks {
    /// Releases PUBACKs held in `hold`; events of `stored_types` wait for the store.
    pub fn new(hold: Arc<PubAckHold>, stored_types: Option<TypeFilter>) -> Arc<Self> {
        Arc::new(Self {
            hold,
            stored_types,
            awaiting_store: Mutex::default(),
        })
    }

    /// The acknowledgement of the device message on `topic` with `payload`.
    pub(crate) fn ack_for(self: &Arc<Self>, topic: &[u8], payload: &[u8]) -> Box<dyn SourceAck> {
        Box::new(DurableAck {
            acks: Arc::clone(self),
            key: MessageKey::of(topic, payload),
            awaits_store: false,
        })
    }

    fn awaiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, MessageKey>> {
        // A map of plain values: a panic elsewhere cannot leave it half-changed.
        self.awaiting_store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The event with `id` is settled in the store: its device's PUBACK may go.
    fn settled(&self, id: &str) {
        let key = self.awaiting().remove(id);
        if let Some(key) = key {
            self.hold.durable(&key);
        }
    }
}

impl StoredObserver for DeviceAcks {
    fn stored(&self, event: &Event) {
        self.settled(event.id());
    }

    fn dead_lettered(&self, event: &Event) {
        self.settled(event.id());
    }
}

/// The acknowledgement of one device message read over the link.
struct DurableAck {
    acks: Arc<DeviceAcks>,
    key: MessageKey,
    awaits_store: bool,
}

#[async_trait]
impl SourceAck for DurableAck {
    fn publishing(&mut self, event: &Event) {
        let stored = self
            .acks
            .stored_types
            .as_ref()
            .is_some_and(|types| types.matches(event.ty()));
        if stored {
            self.acks.awaiting().insert(event.id().to_owned(), self.key);
            self.awaits_store = true;
        }
    }

    async fn ack(self: Box<Self>) -> Result<(), TransportError> {
        // Dead-lettered (kept before this acknowledgement), or on the bus with no store to
        // wait for.
        if !self.awaits_store {
            self.acks.hold.durable(&self.key);
        }
        Ok(())
    }
}
