//! What the planner reads: the ktwin custom resources of one world (a namespace).

use ktwin_model::crd::{EventStore, Gateway, MQTTTrigger, TwinInstance, TwinInterface};

/// Every ktwin custom resource of one world.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    /// The namespace of the world (objects' own namespaces are not consulted).
    pub namespace: String,
    /// TwinInterfaces.
    pub interfaces: Vec<TwinInterface>,
    /// TwinInstances.
    pub instances: Vec<TwinInstance>,
    /// EventStores.
    pub event_stores: Vec<EventStore>,
    /// MQTTTriggers.
    pub mqtt_triggers: Vec<MQTTTrigger>,
    /// Gateways.
    pub gateways: Vec<Gateway>,
}

/// The name of a custom resource (empty when unset, which the API server never allows).
pub fn name_of<K: kube::Resource>(object: &K) -> &str {
    object.meta().name.as_deref().unwrap_or_default()
}
