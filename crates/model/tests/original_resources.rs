//! The original KTWIN's resources — its scaffold samples, its `hack/` resources and what its CLI
//! generated for the smart-city ontology (fixtures in `crates/testkit/fixtures/original-ktwin`)
//! — are accepted unchanged by ktwin's CRDs: validated against each CRD's structural schema as
//! the API server does (nulls pruned; a field the schema would prune is an error), then read by
//! ktwin's types.

use std::collections::BTreeMap;

use ktwin_model::crd::{PrimitiveSchema, PrimitiveType};
use ktwin_model::output::crd_files;
use ktwin_model::{EventStore, Gateway, MQTTTrigger, TwinInstance, TwinInterface};
use ktwin_testkit::crd::{admit, original_ktwin_resources};
use serde_json::{Value, json};

/// Kind → its CRD, as `deploy/crds` holds them.
fn crds() -> BTreeMap<String, Value> {
    crd_files()
        .unwrap()
        .into_iter()
        .map(|(_, yaml)| {
            let crd: Value = serde_yaml_ng::from_str(&yaml).unwrap();
            (
                crd["spec"]["names"]["kind"].as_str().unwrap().to_owned(),
                crd,
            )
        })
        .collect()
}

/// Reads `stored` with ktwin's type for its kind, as the operator's watches do.
fn read(kind: &str, stored: &Value) {
    let stored = stored.clone();
    let result = match kind {
        "TwinInterface" => serde_json::from_value::<TwinInterface>(stored).map(drop),
        "TwinInstance" => serde_json::from_value::<TwinInstance>(stored).map(drop),
        "EventStore" => serde_json::from_value::<EventStore>(stored).map(drop),
        "MQTTTrigger" => serde_json::from_value::<MQTTTrigger>(stored).map(drop),
        "Gateway" => serde_json::from_value::<Gateway>(stored).map(drop),
        other => panic!("no ktwin kind {other}"),
    };
    result.unwrap_or_else(|err| panic!("{kind} does not read: {err}"));
}

#[test]
fn the_original_resources_are_accepted_unchanged() {
    let crds = crds();
    let resources = original_ktwin_resources();
    assert!(resources.len() >= 13, "{} fixtures", resources.len());
    for (file, object) in &resources {
        let kind = object["kind"].as_str().unwrap();
        match admit(&crds[kind], object) {
            Ok(stored) => read(kind, &stored),
            // A Gateway says how callers authenticate and there is no unauthenticated mode: the
            // original's Gateway was an empty scaffold that did nothing, so its sample is the one
            // resource refused, naming what is missing.
            Err(errors) if file == "config-samples-core_v0_gateway.yaml" => {
                assert!(errors.iter().any(|e| e.contains("\"spec\"")), "{errors:#?}");
            }
            Err(errors) => panic!("{file}: {kind} refused: {errors:#?}"),
        }
    }
}

#[test]
fn an_mqtt_trigger_without_spec_reads_as_the_default_dispatchers() {
    let crds = crds();
    let (_, object) = original_ktwin_resources()
        .into_iter()
        .find(|(file, _)| file == "hack-core_v0_mqtttrigger.yaml")
        .unwrap();
    assert!(object.get("spec").is_none());
    let stored = admit(&crds["MQTTTrigger"], &object).unwrap();
    let trigger: MQTTTrigger = serde_json::from_value(stored).unwrap();
    let defaults: ktwin_model::crd::MQTTTriggerSpec = serde_json::from_value(json!({})).unwrap();
    assert_eq!(trigger.spec, defaults);
    assert_eq!(defaults, ktwin_model::crd::MQTTTriggerSpec::default());
    assert_eq!(trigger.spec.exchange, "amq.topic");
}

#[test]
fn raw_schema_ids_are_kept_and_listed_with_their_field() {
    let (_, object) = original_ktwin_resources()
        .into_iter()
        .find(|(file, _)| file == "cli-01-AirQualityObserved-interface.yaml")
        .unwrap();
    let interface: TwinInterface = serde_json::from_value(object).unwrap();
    let properties = &interface.spec.properties;
    assert_eq!(
        properties[0].schema.as_ref().unwrap().primitive_type,
        Some(PrimitiveSchema::Id("ngsi_ld:city:AirQualityLevel".into()))
    );
    assert_eq!(
        properties[3].schema.as_ref().unwrap().primitive_type,
        Some(PrimitiveSchema::Dtdl(PrimitiveType::DateTime))
    );
    let reliability = properties[5].schema.as_ref().unwrap().enum_type.as_ref();
    assert_eq!(
        reliability.unwrap().value_schema,
        None,
        "valueSchema optional"
    );
    assert_eq!(
        interface.spec.schema_ids(),
        vec![(
            "spec.properties[0].schema.primitiveType".to_owned(),
            "ngsi_ld:city:AirQualityLevel"
        )]
    );
    // Written back as read.
    let back = serde_json::to_value(&interface.spec.properties[0]).unwrap();
    assert_eq!(
        back,
        json!({"name": "airQualityLevel", "writable": true,
               "schema": {"primitiveType": "ngsi_ld:city:AirQualityLevel"}})
    );
    // The interface the id names is recognised by its normalised name or its DTMI.
    let level = TwinInterface::new(
        "ngsi-ld-city-airqualitylevel",
        ktwin_model::crd::TwinInterfaceSpec::default(),
    );
    assert!(level.is_named_by("ngsi_ld:city:AirQualityLevel"));
    assert!(!level.is_named_by("ngsi_ld:city:AirQualityObserved"));
}

#[test]
fn the_schema_refuses_what_eventing_rabbitmq_or_the_model_cannot_take() {
    let crds = crds();
    let interface = |scaling: Value, primitive: Value| {
        json!({"apiVersion": "dtd.ktwin/v0", "kind": "TwinInterface",
               "metadata": {"name": "city-pole"},
               "spec": {
                   "properties": [{"name": "height", "schema": {"primitiveType": primitive}}],
                   "service": {"autoScaling": scaling,
                               "template": {"spec": {"containers": [{"name": "c"}]}}}}})
    };
    let ok = json!("double");
    assert!(
        admit(
            &crds["TwinInterface"],
            &interface(json!({"parallelism": 1000}), ok.clone())
        )
        .is_ok()
    );
    let errors = admit(
        &crds["TwinInterface"],
        &interface(json!({"parallelism": 1001}), ok),
    )
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("parallelism")),
        "{errors:#?}"
    );
    let errors = admit(&crds["TwinInterface"], &interface(json!({}), json!(""))).unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("primitiveType")),
        "{errors:#?}"
    );
    // An undeclared field is an error here (the API server would prune it silently).
    let mut unknown = interface(json!({}), json!("double"));
    unknown["spec"]["colour"] = json!("red");
    assert!(admit(&crds["TwinInterface"], &unknown).is_err());
}
