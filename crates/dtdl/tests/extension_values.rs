//! Values of properties extensions add, from the specifications: the units of semantic types
//! (DTDL.quantitativeTypes.v2.md), the MQTT extension's topics, service groups, TTLs and
//! indices (DTDL.mqtt.v3.md), and the limits of the iotoperations context, which must fit
//! the element's schema.

use ktwin_dtdl::{Diagnostic, Document, ParseError, ParseOptions, parse};
use serde_json::{Value, json};

fn outcome(model: &Value) -> Result<ktwin_dtdl::ModelSet, ParseError> {
    parse(
        &[Document::new("model.json", model.to_string())],
        &ParseOptions::default(),
    )
}

fn error_ids(model: &Value) -> Vec<String> {
    match outcome(model) {
        Ok(_) => panic!("expected {model} to be invalid"),
        Err(e) => e.errors().map(|d| d.short_id().to_string()).collect(),
    }
}

fn first_error(model: &Value) -> Diagnostic {
    match outcome(model) {
        Ok(_) => panic!("expected {model} to be invalid"),
        Err(e) => e.errors().next().cloned().expect("an error"),
    }
}

fn telemetry(context: Value, content: Value) -> Value {
    json!({ "@context": context, "@id": "dtmi:ex:Sensor;1", "@type": "Interface",
            "contents": [content] })
}

fn speed(unit: Value, schema: &str) -> Value {
    telemetry(
        json!([
            "dtmi:dtdl:context;4",
            "dtmi:dtdl:extension:quantitativeTypes;2"
        ]),
        json!({ "@id": "dtmi:ex:speed;1", "@type": ["Telemetry", "Velocity"], "name": "speed",
                "schema": schema, "unit": unit }),
    )
}

#[test]
fn a_semantic_type_needs_a_numeric_schema_and_one_unit_of_its_quantity() {
    assert!(outcome(&speed(json!("kilometrePerHour"), "double")).is_ok());
    assert!(
        error_ids(&speed(json!("kilometrePerHour"), "boolean")).contains(&"notRequiredType".into())
    );

    let wrong = first_error(&speed(json!("kilometre"), "double"));
    assert_eq!(wrong.short_id(), "badType");
    assert_eq!(wrong.primary_id.as_deref(), Some("dtmi:ex:speed;1"));
    assert!(error_ids(&speed(json!("kilometre"), "double")).contains(&"wrongParent".into()));

    let two = error_ids(&speed(
        json!(["kilometrePerHour", "metrePerSecond"]),
        "double",
    ));
    assert_eq!(two, ["objectMultipleValues"]);

    let inline = error_ids(&speed(
        json!({ "@type": "EnumValue", "name": "u", "enumValue": "u" }),
        "double",
    ));
    assert_eq!(inline, ["refObjectNotAllowed", "objectCountBelowMin"]);
}

fn mqtt(extra: Value, command_cotypes: Value) -> Value {
    let mut model = json!({
        "@context": ["dtmi:dtdl:context;4", "dtmi:dtdl:extension:mqtt;4"],
        "@id": "dtmi:ex:Vehicle;1", "@type": ["Interface", "Mqtt"],
        "payloadFormat": "Json/ecma/404",
        "commandTopic": "vehicles/{executorId}/command/{commandName}",
        "contents": [{ "@type": command_cotypes, "name": "stop" }]
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        model[k] = v.clone();
    }
    model
}

#[test]
fn mqtt_ttls_are_durations_and_group_ids_are_bounded() {
    let cached = json!(["Command", "Idempotent", "Cacheable"]);
    let with_ttl = |ttl: Value| {
        let mut m = mqtt(json!({}), cached.clone());
        m["contents"][0]["ttl"] = ttl;
        m
    };
    assert!(outcome(&with_ttl(json!("PT15S"))).is_ok());
    assert!(outcome(&with_ttl(json!("P1DT2H30M"))).is_ok());
    assert_eq!(
        error_ids(&with_ttl(json!("fifteen seconds"))),
        ["durationInvalid"]
    );
    assert_eq!(error_ids(&with_ttl(json!("PT"))), ["durationInvalid"]);
    assert_eq!(error_ids(&with_ttl(json!(15))), ["durationNotString"]);

    let cacheable_alone = json!(["Command", "Cacheable"]);
    let mut m = mqtt(json!({}), cacheable_alone);
    m["contents"][0]["ttl"] = json!("PT1S");
    assert!(error_ids(&m).contains(&"missingCocotype".into()));

    let slash = mqtt(json!({ "cmdServiceGroupId": "a/b" }), json!("Command"));
    assert_eq!(error_ids(&slash), ["stringInvalid"]);
}

fn aio_telemetry(schema: &str, cotype: &str, extra: Value) -> Value {
    let mut content = json!({ "@id": "dtmi:ex:t;1", "@type": ["Telemetry", cotype], "name": "t",
                              "schema": schema });
    for (k, v) in extra.as_object().into_iter().flatten() {
        content[k] = v.clone();
    }
    telemetry(
        json!(["dtmi:dtdl:context;4", "dtmi:iotoperations:context;4"]),
        content,
    )
}

#[test]
fn limits_and_scale_factors_fit_the_schema() {
    assert!(
        outcome(&aio_telemetry(
            "integer",
            "Limited",
            json!({ "minimum": 2 })
        ))
        .is_ok()
    );
    assert!(
        outcome(&aio_telemetry(
            "float",
            "Limited",
            json!({ "maximum": 9.5 })
        ))
        .is_ok()
    );
    assert!(
        outcome(&aio_telemetry(
            "float",
            "ScaledStatically",
            json!({ "scaleFactor": 2 })
        ))
        .is_ok()
    );
    for (cotype, prop) in [("Limited", "maximum"), ("ScaledStatically", "scaleFactor")] {
        let model = aio_telemetry("integer", cotype, json!({ prop: 2.5 }));
        let e = first_error(&model);
        assert_eq!(e.short_id(), "nonConformantPropertyValue", "{cotype}");
        assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:t;1"));
    }
    let text = aio_telemetry("integer", "Limited", json!({ "maximum": "ten" }));
    assert_eq!(error_ids(&text), ["numericNotNumeric"]);
    let places = aio_telemetry("float", "Precise", json!({ "decimalPlaces": 1.5 }));
    assert_eq!(error_ids(&places), ["integerNotInteger"]);
    let long_namespace = aio_telemetry(
        "double",
        "Qualified",
        json!({ "namespace": "n".repeat(200) }),
    );
    assert_eq!(error_ids(&long_namespace), ["stringTooLong"]);
}
