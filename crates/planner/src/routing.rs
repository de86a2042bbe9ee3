//! The routing a plan implies, in the form every realizer must reproduce: which event types
//! reach which subscribers, and which interfaces' device topics enter the platform.

use std::collections::{BTreeMap, BTreeSet};

use ktwin_events::EventType;
use serde::Serialize;

use crate::plan::{Plan, Subscriber};

/// Event type → the set of subscribers receiving it, plus the interfaces whose devices'
/// `ktwin/real/<iface>/#` traffic is bridged in. Two realizers route identically exactly when
/// their tables are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingTable {
    /// Delivery of broker events.
    pub deliveries: BTreeMap<EventType, BTreeSet<Subscriber>>,
    /// Interfaces whose real device topics are bridged to the broker.
    pub mqtt_ingress: BTreeSet<String>,
}

impl RoutingTable {
    /// Records that `event_type` reaches `subscriber`.
    pub fn deliver(&mut self, event_type: EventType, subscriber: Subscriber) {
        self.deliveries
            .entry(event_type)
            .or_default()
            .insert(subscriber);
    }

    /// The subscribers of `event_type` (empty when nobody listens).
    pub fn subscribers(&self, event_type: &EventType) -> impl Iterator<Item = &Subscriber> {
        self.deliveries.get(event_type).into_iter().flatten()
    }
}

/// The routing table of `plan`.
pub fn routing_table(plan: &Plan) -> RoutingTable {
    let mut table = RoutingTable::default();
    for route in plan.routes() {
        table.deliver(route.event_type.clone(), route.subscriber.clone());
    }
    for command in plan.device_commands() {
        table.deliver(command, Subscriber::Devices);
    }
    table.mqtt_ingress = plan.mqtt_ingress().map(|i| i.interface.clone()).collect();
    table
}
