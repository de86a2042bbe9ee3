//! Rules between an element and its siblings, from the extension specifications: the
//! annotation and overriding extensions (DTDL.annotation.v2.md, DTDL.overriding.v2.md) and the
//! result/error co-types and indices of the MQTT extension (DTDL.mqtt.v3.md, mqtt;4).

use ktwin_dtdl::{Diagnostic, Document, ParseError, ParseOptions, parse};
use serde_json::{Value, json};

const ANNOTATION_V4: [&str; 4] = [
    "dtmi:dtdl:context;4",
    "dtmi:dtdl:extension:quantitativeTypes;2",
    "dtmi:dtdl:extension:annotation;2",
    "dtmi:dtdl:extension:overriding;2",
];

fn interface(id: &str, contents: Value) -> Value {
    json!({ "@context": ANNOTATION_V4, "@id": id, "@type": "Interface", "contents": contents })
}

fn outcome(models: &[Value]) -> Result<ktwin_dtdl::ModelSet, ParseError> {
    let docs: Vec<Document> = models
        .iter()
        .enumerate()
        .map(|(i, m)| Document::new(format!("model{i}.json"), m.to_string()))
        .collect();
    parse(&docs, &ParseOptions::default())
}

fn errors(models: &[Value]) -> Vec<Diagnostic> {
    match outcome(models) {
        Ok(_) => panic!("expected the models to be invalid"),
        Err(e) => e.errors().cloned().collect(),
    }
}

/// The error with short id `code`, which must be reported.
fn find(errors: &[Diagnostic], code: &str) -> Diagnostic {
    errors
        .iter()
        .find(|d| d.short_id() == code)
        .cloned()
        .unwrap_or_else(|| panic!("no {code} among {errors:#?}"))
}

fn temperature() -> Value {
    json!({ "@type": ["Property", "Temperature"], "name": "target", "schema": "double",
            "unit": "degreeCelsius", "writable": true })
}

fn note(name: &str, annotates: &str) -> Value {
    json!({ "@type": ["Property", "ValueAnnotation"], "name": name, "annotates": annotates,
            "schema": "string" })
}

fn unit_override(name: &str, schema: &str) -> Value {
    json!({ "@type": ["Property", "ValueAnnotation", "Override"], "name": name,
            "annotates": "target", "overrides": "unit", "schema": schema, "writable": true })
}

#[test]
fn an_annotation_annotates_a_property_or_telemetry() {
    let valid = interface(
        "dtmi:ex:S;1",
        json!([temperature(), note("targetNote", "target")]),
    );
    assert!(outcome(&[valid]).is_ok());
    // Naming no sibling at all is allowed: the annotated element may come from a later layer.
    assert!(outcome(&[interface("dtmi:ex:S;1", json!([note("n", "absent")]))]).is_ok());

    let command = json!({ "@type": "Command", "name": "reset" });
    let errs = errors(&[interface(
        "dtmi:ex:S;1",
        json!([command, note("resetNote", "reset")]),
    )]);
    let e = find(&errs, "notSiblingRequiredType");
    assert_eq!(
        e.primary_id.as_deref(),
        Some("dtmi:ex:S:_contents:__resetNote;1")
    );
    assert_eq!(
        e.secondary_id.as_deref(),
        Some("dtmi:ex:S:_contents:__reset;1")
    );
}

#[test]
fn annotation_rules_cover_inherited_contents() {
    let base = interface("dtmi:ex:Base;1", json!([note("resetNote", "reset")]));
    let mut derived = interface(
        "dtmi:ex:S;1",
        json!([{ "@type": "Command", "name": "reset" }]),
    );
    derived["extends"] = json!("dtmi:ex:Base;1");
    let e = find(&errors(&[base, derived]), "notSiblingRequiredType");
    assert_eq!(
        e.primary_id.as_deref(),
        Some("dtmi:ex:Base:_contents:__resetNote;1")
    );
    assert_eq!(
        e.secondary_id.as_deref(),
        Some("dtmi:ex:S:_contents:__reset;1")
    );
}

#[test]
fn an_annotation_cannot_annotate_an_annotation() {
    let model = interface(
        "dtmi:ex:S;1",
        json!([temperature(), note("n1", "target"), note("n2", "n1")]),
    );
    let e = find(&errors(&[model]), "disallowedType");
    assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:S:_contents:__n2;1"));
    assert_eq!(
        e.secondary_id.as_deref(),
        Some("dtmi:ex:S:_contents:__n1;1")
    );
}

#[test]
fn an_override_replaces_a_supplemental_property_with_its_type() {
    let valid = interface(
        "dtmi:ex:S;1",
        json!([
            temperature(),
            unit_override("targetUnit", "TemperatureUnit")
        ]),
    );
    assert!(outcome(&[valid]).is_ok());

    let wrong_unit = interface(
        "dtmi:ex:S;1",
        json!([temperature(), unit_override("targetUnit", "VelocityUnit")]),
    );
    let e = find(&errors(&[wrong_unit]), "siblingPropertyMismatch");
    assert_eq!(
        e.primary_id.as_deref(),
        Some("dtmi:ex:S:_contents:__targetUnit;1")
    );

    let plain = json!({ "@type": "Property", "name": "target", "schema": "double" });
    let no_unit = interface(
        "dtmi:ex:S;1",
        json!([plain, unit_override("targetUnit", "TemperatureUnit")]),
    );
    let e = find(&errors(&[no_unit]), "noMatchingSupplementalProperty");
    assert_eq!(
        e.secondary_id.as_deref(),
        Some("dtmi:ex:S:_contents:__target;1")
    );

    let mut schema_override = unit_override("targetSchema", "string");
    schema_override["overrides"] = json!("schema");
    let material = interface("dtmi:ex:S;1", json!([temperature(), schema_override]));
    find(&errors(&[material]), "matchingPropertyNotSupplemental");
}

#[test]
fn one_property_of_a_sibling_is_overridden_once() {
    let model = interface(
        "dtmi:ex:S;1",
        json!([
            temperature(),
            unit_override("unit1", "TemperatureUnit"),
            unit_override("unit2", "TemperatureUnit")
        ]),
    );
    let e = find(&errors(&[model]), "multipleReference");
    assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:S;1"));
    assert_eq!(
        e.secondary_id.as_deref(),
        Some("dtmi:dtdl:extension:overriding:v2:Override:overrides")
    );
}

fn mqtt_schema(object: Value) -> Value {
    json!({ "@context": ["dtmi:dtdl:context;4", "dtmi:dtdl:extension:mqtt;4"],
            "@id": "dtmi:ex:Errors;1", "@type": "Interface", "schemas": [object] })
}

fn field(id: &str, cotype: &str, schema: Value) -> Value {
    json!({ "@id": id, "@type": ["Field", cotype], "name": id.trim_start_matches("dtmi:ex:")
              .trim_end_matches(";1"), "schema": schema })
}

#[test]
fn error_and_result_fields_need_their_parent_and_siblings() {
    let codes = json!({ "@type": "Enum", "valueSchema": "string",
                        "enumValues": [{ "name": "bad", "enumValue": "bad" }] });
    let error = |fields: Value| {
        mqtt_schema(
            json!({ "@id": "dtmi:ex:Err;1", "@type": ["Object", "Error"], "fields": fields }),
        )
    };
    let valid = error(json!([
        field("dtmi:ex:message;1", "ErrorMessage", json!("string")),
        field("dtmi:ex:code;1", "ErrorCode", codes.clone()),
        field(
            "dtmi:ex:info;1",
            "ErrorInfo",
            json!({ "@type": "Object", "fields": [] })
        )
    ]));
    if let Err(e) = outcome(&[valid]) {
        panic!("a complete error object is valid: {e}");
    }

    let two_messages = error(json!([
        field("dtmi:ex:m1;1", "ErrorMessage", json!("string")),
        field("dtmi:ex:m2;1", "ErrorMessage", json!("string"))
    ]));
    let e = find(&errors(&[two_messages]), "siblingDuplicatesCotype");
    assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:m2;1"));
    assert_eq!(e.secondary_id.as_deref(), Some("dtmi:ex:m1;1"));

    let info_alone = error(json!([field(
        "dtmi:ex:info;1",
        "ErrorInfo",
        json!({ "@type": "Object", "fields": [] })
    )]));
    find(&errors(&[info_alone]), "siblingMissingCotype");

    let plain = mqtt_schema(json!({ "@id": "dtmi:ex:Plain;1", "@type": "Object",
        "fields": [field("dtmi:ex:code;1", "ErrorCode", codes)] }));
    let e = find(&errors(&[plain]), "parentMissingCotype");
    assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:code;1"));
}

#[test]
fn indices_are_unique_within_their_container() {
    let model = json!({
        "@context": ["dtmi:dtdl:context;4", "dtmi:dtdl:extension:mqtt;4"],
        "@id": "dtmi:ex:Indexed;1", "@type": ["Interface", "Mqtt"], "payloadFormat": "raw/0",
        "contents": [
            { "@type": ["Telemetry", "Indexed"], "name": "a", "schema": "double", "index": 1 },
            { "@type": ["Telemetry", "Indexed"], "name": "b", "schema": "double", "index": 1 }
        ]
    });
    let e = find(&errors(&[model]), "nonUniquePropertyValue");
    assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:Indexed;1"));
}
