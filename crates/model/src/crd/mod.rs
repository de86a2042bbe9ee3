//! The ktwin custom resources: `dtd.ktwin/v0` TwinInterface and TwinInstance, `core.ktwin/v0`
//! EventStore, MQTTTrigger and Gateway, and their CRDs.

mod common;
mod event_store;
mod gateway;
mod mqtt_trigger;
mod twin_instance;
mod twin_interface;

pub use common::*;
pub use event_store::*;
pub use gateway::*;
pub use mqtt_trigger::*;
pub use twin_instance::*;
pub use twin_interface::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every ktwin CRD, in a fixed order (TwinInterface, TwinInstance, EventStore, MQTTTrigger,
/// Gateway).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        TwinInterface::crd(),
        TwinInstance::crd(),
        EventStore::crd(),
        MQTTTrigger::crd(),
        Gateway::crd(),
    ]
}

/// File name of a CRD under `deploy/crds/`: `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}
