//! The ktwin custom resources: `dtd.ktwin/v0` TwinInterface and TwinInstance, `core.ktwin/v0`
//! EventStore, MQTTTrigger and Gateway, and their CRDs.

// Several `printcolumn(...)` entries in one `#[kube(...)]` repeat `type_ = "string"`, which
// clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

mod common;
mod event_store;
mod gateway;
mod mqtt_trigger;
mod twin_instance;
mod twin_interface;

pub use common::{AutoScalerMetric, AutoScaling, CONDITION_READY, Phase, find_condition};
pub use event_store::{
    DEFAULT_DATABASE_KEY, DEFAULT_EVENT_STORE_TIMEOUT, DEFAULT_STORAGE_SIZE, DatabaseSecretKey,
    EventStore, EventStoreDatabase, EventStoreSpec, EventStoreStatus, EventStoreStorage,
};
pub use gateway::{
    Gateway, GatewayApis, GatewayAuth, GatewayService, GatewayServiceType, GatewaySpec,
    GatewayStatus, GatewayTls, SecretKeyRef,
};
pub use mqtt_trigger::{
    DEFAULT_MQTT_EXCHANGE, DEFAULT_PREFETCH, DispatcherSpec, MQTTTrigger, MQTTTriggerSpec,
    MQTTTriggerStatus, QueueType,
};
pub use twin_instance::{
    HttpEndpoint, TopicEndpoint, TwinInstance, TwinInstanceData, TwinInstanceDataValue,
    TwinInstanceEndpointSettings, TwinInstanceRelationship, TwinInstanceSpec, TwinInstanceStatus,
};
pub use twin_interface::{
    CommandPayload, ComplexKind, EnumValueSchema, PrimitiveSchema, PrimitiveType, TwinArraySchema,
    TwinCommand, TwinComplexType, TwinComponent, TwinEnumSchema, TwinEnumValue, TwinInterface,
    TwinInterfaceEventStore, TwinInterfaceService, TwinInterfaceSpec, TwinInterfaceStatus,
    TwinMapSchema, TwinMqtt, TwinNamedSchema, TwinProperty, TwinRelationship, TwinSchema,
    TwinTelemetry,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// Every ktwin CRD, in a fixed order (TwinInterface, TwinInstance, EventStore, MQTTTrigger,
/// Gateway).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        spec_optional(twin_interface_crd()),
        spec_optional(TwinInstance::crd()),
        spec_optional(EventStore::crd()),
        spec_optional(MQTTTrigger::crd()),
        // A Gateway says how callers authenticate; there is no unauthenticated default.
        Gateway::crd(),
    ]
}

/// The CRD with `spec` optional, as in the original v0 CRDs: its MQTTTrigger had no spec, and
/// its scaffold samples an empty one (`spec:` is null, which the API server prunes). The API
/// server defaults a missing spec to `{}` (and its fields to their own defaults), so every
/// stored object has one and ktwin's types read it.
pub fn spec_optional(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        if let Some(required) = root.required.as_mut() {
            required.retain(|field| field != "spec");
        }
        if root.required.as_ref().is_some_and(Vec::is_empty) {
            root.required = None;
        }
        if let Some(spec) = root.properties.as_mut().and_then(|p| p.get_mut("spec")) {
            spec.default = Some(JSON(serde_json::json!({})));
        }
    }
    crd
}

/// File name of a CRD under `deploy/crds/`: `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// The TwinInterface CRD without the Kubernetes API documentation inside the embedded pod
/// template: with it the CRD exceeds the 256 KiB annotation limit of client-side
/// `kubectl apply` (the original's 8,000-line CRD had the same problem).
pub fn twin_interface_crd() -> CustomResourceDefinition {
    let mut crd = TwinInterface::crd();
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        let template = schema
            .properties
            .as_mut()
            .and_then(|p| p.get_mut("spec"))
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("service"))
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("template"));
        if let Some(template) = template {
            let keep = template.description.take();
            strip_descriptions(template);
            template.description = keep;
        }
    }
    crd
}

fn strip_descriptions(schema: &mut JSONSchemaProps) {
    schema.description = None;
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        strip_descriptions(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        strip_descriptions(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        strip_descriptions(extra);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of] {
        for child in list.iter_mut().flatten() {
            strip_descriptions(child);
        }
    }
}
