//! Rule families on small fixtures: contexts, identifiers, types, literals, counts,
//! references, inheritance, schemas, extensions, diagnostics and the built model.

use ktwin_dtdl::{
    ContentKind, Document, ModelSet, ParseError, ParseOptions, Primitive, Schema, parse,
};
use serde_json::{Value, json};

fn docs(values: &[Value]) -> Vec<Document> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Document::new(format!("doc{i}.json"), v.to_string()))
        .collect()
}

fn ok(values: &[Value]) -> ModelSet {
    match parse(&docs(values), &ParseOptions::default()) {
        Ok(set) => set,
        Err(e) => panic!(
            "expected a valid model set, got {e}: {:#?}",
            e.errors().collect::<Vec<_>>()
        ),
    }
}

/// Parses and returns the short validation ids of the errors.
fn errors_with(values: &[Value], options: &ParseOptions) -> Vec<String> {
    match parse(&docs(values), options) {
        Ok(_) => panic!("expected an invalid model set"),
        Err(ParseError::Unresolved { identifiers, .. }) => {
            panic!("expected errors, got unresolved {identifiers:?}")
        }
        Err(e) => e.errors().map(|d| d.short_id().to_string()).collect(),
    }
}

fn errors(values: &[Value]) -> Vec<String> {
    errors_with(values, &ParseOptions::default())
}

fn iface(version: u8, id: &str, contents: Value) -> Value {
    json!({ "@context": format!("dtmi:dtdl:context;{version}"), "@id": id, "@type": "Interface", "contents": contents })
}

// ---------------------------------------------------------------- contexts

#[test]
fn context_is_required_and_must_name_a_dtdl_version() {
    assert_eq!(
        errors(&[json!({"@id": "dtmi:ex:a;1", "@type": "Interface"})]),
        ["missingContext"]
    );
    assert_eq!(
        errors(&[
            json!({"@context": "dtmi:dtdl:context;9", "@id": "dtmi:ex:a;1", "@type": "Interface"})
        ]),
        ["unrecognizedContextVersion"]
    );
    assert_eq!(
        errors(&[
            json!({"@context": "https://example.com", "@id": "dtmi:ex:a;1", "@type": "Interface"})
        ]),
        ["nonDtmiContextSpecifier"]
    );
}

#[test]
fn unknown_extension_context_needs_allow_undefined_extensions() {
    let doc = json!({"@context": ["dtmi:dtdl:context;3", "dtmi:other:context;1"], "@id": "dtmi:ex:a;1", "@type": "Interface"});
    assert_eq!(
        errors(std::slice::from_ref(&doc)),
        ["unresolvableContextSpecifier"]
    );
    let allow = ParseOptions {
        allow_undefined_extensions: true,
        ..ParseOptions::default()
    };
    assert!(parse(&docs(&[doc]), &allow).is_ok());
}

#[test]
fn limitless_context_must_be_followed_by_limits() {
    let base = |ctx: Value| json!({"@context": ctx, "@id": "dtmi:ex:a;1", "@type": "Interface"});
    ok(&[base(json!([
        "dtmi:dtdl:context;4#limitless",
        "dtmi:dtdl:limits:onvif;1"
    ]))]);
    assert_eq!(
        errors(&[base(json!(["dtmi:dtdl:context;4#limitless"]))]),
        ["missingLimitContext"]
    );
    assert_eq!(
        errors(&[base(json!(["dtmi:dtdl:context;3#limitless"]))]),
        ["disallowedContextFragment"]
    );
}

// ---------------------------------------------------------------- identifiers

#[test]
fn dtmi_syntax_follows_the_version() {
    // Versionless identifiers are DTDL v3+.
    ok(&[iface(3, "dtmi:ex:versionless", json!([]))]);
    assert_eq!(
        errors(&[iface(2, "dtmi:ex:versionless", json!([]))]),
        ["invalidId"]
    );
    assert_eq!(
        errors(&[iface(3, "dtmi:ex:bad-dash;1", json!([]))]),
        ["invalidId"]
    );
    assert_eq!(
        errors(&[iface(3, "dtmi:dtdl:mine;1", json!([]))]),
        ["reservedId"]
    );
    let long = format!("dtmi:ex:{};1", "a".repeat(130));
    assert_eq!(errors(&[iface(3, &long, json!([]))]), ["idTooLongForType"]);
}

#[test]
fn lenient_ids_accept_ktwin_identifiers_with_a_warning() {
    let doc = json!({
        "@context": "dtmi:dtdl:context;2", "@id": "city:Pole", "@type": "Interface",
        "contents": [{"@type": "Relationship", "name": "lights", "target": "ngsi_ld:city:Streetlight"}]
    });
    let strict = errors(std::slice::from_ref(&doc));
    assert_eq!(strict, ["invalidId"]);
    let lenient = ParseOptions {
        lenient_ids: true,
        ..ParseOptions::default()
    };
    let set = parse(&docs(&[doc]), &lenient).expect("lenient parse");
    assert_eq!(set.warnings[0].short_id(), "lenientId");
    let pole = set.interface("city:Pole").expect("pole");
    let (_, rel) = pole.relationships().next().expect("relationship");
    assert_eq!(rel.target.as_deref(), Some("ngsi_ld:city:Streetlight"));
}

#[test]
fn duplicate_definitions_are_rejected() {
    let a = iface(3, "dtmi:ex:a;1", json!([]));
    assert_eq!(errors(&[a.clone(), a]), ["duplicateDefinition"]);
}

// ---------------------------------------------------------------- types

#[test]
fn types_must_be_known_and_single_material() {
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": "Gadget", "name": "x", "schema": "double"}])
        )]),
        ["typeUndefinedTerm"]
    );
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": ["Property", "Telemetry"], "name": "x", "schema": "double"}])
        )]),
        ["multipleMaterialTypes"]
    );
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": "Interface", "@id": "dtmi:ex:b;1"}])
        )]),
        ["badType"]
    );
}

#[test]
fn semantic_types_require_a_matching_unit() {
    let telemetry = |unit: &str| {
        iface(
            2,
            "dtmi:ex:a;1",
            json!([{"@type": ["Telemetry", "Temperature"], "name": "t", "schema": "double", "unit": unit}]),
        )
    };
    let set = ok(&[telemetry("degreeCelsius")]);
    let content = set.interface("dtmi:ex:a;1").unwrap().content("t").unwrap();
    assert_eq!(content.unit(), Some("dtmi:standard:unit:degreeCelsius;2"));
    assert_eq!(
        content.supplemental_types,
        ["dtmi:standard:class:Temperature;2"]
    );
    // A unit of another quantity is not of the type the semantic type needs.
    assert_eq!(errors(&[telemetry("metre")]), ["badType"]);
    let missing = iface(
        2,
        "dtmi:ex:a;1",
        json!([{"@type": ["Telemetry", "Temperature"], "name": "t", "schema": "double"}]),
    );
    assert_eq!(errors(&[missing]), ["missingSupplementalObjectProperty"]);
    // DTDL v2 semantic types need a numeric schema.
    assert_eq!(
        errors(&[iface(
            2,
            "dtmi:ex:a;1",
            json!([{"@type": ["Telemetry", "Temperature"], "name": "t", "schema": "string", "unit": "kelvin"}])
        )]),
        ["notRequiredType"]
    );
}

#[test]
fn unknown_properties_are_rejected() {
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": "Telemetry", "name": "t", "schema": "double", "writable": true}])
        )]),
        ["propertyIrrelevantDtmiOrTerm"]
    );
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": "Property", "name": "t", "schema": "double", "colour": "red"}])
        )]),
        ["propertyUndefinedTerm"]
    );
}

// ---------------------------------------------------------------- literals

#[test]
fn names_follow_the_pattern_and_length_limits() {
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": "Property", "name": "9lives", "schema": "double"}])
        )]),
        ["stringInvalid"]
    );
    let long = "n".repeat(65);
    assert_eq!(
        errors(&[iface(
            2,
            "dtmi:ex:a;1",
            json!([{"@type": "Property", "name": long, "schema": "double"}])
        )]),
        ["stringTooLong"]
    );
    // v3 raised the limit to 512.
    ok(&[iface(
        3,
        "dtmi:ex:a;1",
        json!([{"@type": "Property", "name": long, "schema": "double"}]),
    )]);
    // Without @id the name identifies the element: the reference parser stops there.
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": "Property", "schema": "double"}])
        )]),
        ["missingDtmiSegPropertyValue"]
    );
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@id": "dtmi:ex:p;1", "@type": "Property", "schema": "double"}])
        )]),
        ["missingLiteralProperty"]
    );
}

#[test]
fn localized_strings_accept_strings_and_language_maps() {
    let with_name = |name: Value| json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:a;1", "@type": "Interface", "displayName": name});
    let set = ok(&[with_name(json!("Thermostat"))]);
    assert_eq!(
        set.interface("dtmi:ex:a;1")
            .unwrap()
            .annotations
            .display_name["en"],
        "Thermostat"
    );
    let set = ok(&[with_name(json!({"en": "Thermostat", "fr": "Thermostat"}))]);
    assert_eq!(
        set.interface("dtmi:ex:a;1")
            .unwrap()
            .annotations
            .display_name
            .len(),
        2
    );
    ok(&[with_name(
        json!([{"@value": "Termostato", "@language": "es"}]),
    )]);
    assert_eq!(
        errors(&[with_name(json!({"English": "x"}))]),
        ["langStringInvalidCode"]
    );
    assert_eq!(
        errors(&[with_name(json!(42))]),
        ["langStringElementNotStringOrObject"]
    );
}

#[test]
fn integers_respect_ranges_and_value_objects_their_type() {
    let rel = |max: Value| {
        iface(
            2,
            "dtmi:ex:a;1",
            json!([{"@type": "Relationship", "name": "r", "maxMultiplicity": max}]),
        )
    };
    ok(&[rel(json!(500))]);
    assert_eq!(errors(&[rel(json!(501))]), ["valueAboveMax"]);
    assert_eq!(errors(&[rel(json!(0))]), ["valueBelowMin"]);
    ok(&[rel(json!({"@value": 3, "@type": "xsd:integer"}))]);
    assert_eq!(
        errors(&[rel(json!({"@value": 3, "@type": "xsd:string"}))]),
        ["integerTypeNotInteger"]
    );
    assert_eq!(errors(&[rel(json!("3"))]), ["integerNotInteger"]);
}

// ---------------------------------------------------------------- counts

#[test]
fn value_counts_follow_the_metamodel() {
    let contents: Vec<Value> = (0..301)
        .map(|i| json!({"@type": "Property", "name": format!("p{i}"), "schema": "double"}))
        .collect();
    assert_eq!(
        errors(&[iface(2, "dtmi:ex:a;1", Value::Array(contents.clone()))]),
        ["objectCountAboveMax"]
    );
    ok(&[iface(3, "dtmi:ex:a;1", Value::Array(contents))]);
    let enum_without_values = json!([{"@type": "Property", "name": "e", "schema": {"@type": "Enum", "valueSchema": "integer", "enumValues": []}}]);
    assert_eq!(
        errors(&[iface(2, "dtmi:ex:a;1", enum_without_values)]),
        ["objectCountBelowMin"]
    );
    let dup = json!([{"@type": "Property", "name": "x", "schema": "double"}, {"@type": "Telemetry", "name": "x", "schema": "double"}]);
    assert_eq!(
        errors(&[iface(3, "dtmi:ex:a;1", dup)]),
        ["nonUniquePropertyValue"]
    );
}

// ---------------------------------------------------------------- references

#[test]
fn undefined_references_are_reported_exactly() {
    let doc = json!({
        "@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:a;1", "@type": "Interface",
        "extends": ["dtmi:ex:base;1", "dtmi:ex:other;1"],
        "contents": [{"@type": "Component", "name": "c", "schema": "dtmi:ex:part;1"}]
    });
    let Err(ParseError::Unresolved { identifiers, .. }) =
        parse(&docs(std::slice::from_ref(&doc)), &ParseOptions::default())
    else {
        panic!("expected unresolved identifiers");
    };
    assert_eq!(
        identifiers.into_iter().collect::<Vec<_>>(),
        ["dtmi:ex:base;1", "dtmi:ex:other;1", "dtmi:ex:part;1"]
    );
    // Loading the missing models and retrying succeeds.
    let set = ok(&[
        doc,
        iface(3, "dtmi:ex:base;1", json!([])),
        iface(3, "dtmi:ex:other;1", json!([])),
        iface(3, "dtmi:ex:part;1", json!([])),
    ]);
    assert_eq!(set.len(), 4);
}

#[test]
fn references_must_have_the_right_class_and_version() {
    let property_schema = iface(
        3,
        "dtmi:ex:a;1",
        json!([{"@type": "Property", "name": "p", "schema": "dtmi:ex:b;1"}]),
    );
    assert_eq!(
        errors(&[property_schema, iface(3, "dtmi:ex:b;1", json!([]))]),
        ["badType"]
    );
    let v2_child = json!({"@context": "dtmi:dtdl:context;2", "@id": "dtmi:ex:a;1", "@type": "Interface", "extends": "dtmi:ex:b;1"});
    assert_eq!(
        errors(&[v2_child, iface(3, "dtmi:ex:b;1", json!([]))]),
        ["disallowedVersionReference"]
    );
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": "Property", "name": "p", "schema": "dtmi:dtdl:nothing;3"}])
        )]),
        ["undefinedReservedId"]
    );
}

// ---------------------------------------------------------------- inheritance

#[test]
fn extends_is_flattened_with_origin() {
    let base = iface(
        3,
        "dtmi:ex:base;1",
        json!([{"@type": "Property", "name": "serial", "schema": "string"}]),
    );
    let child = json!({
        "@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:child;1", "@type": "Interface", "extends": "dtmi:ex:base;1",
        "contents": [{"@type": "Telemetry", "name": "temp", "schema": "double"}]
    });
    let set = ok(&[child, base]);
    let child = set.interface("dtmi:ex:child;1").unwrap();
    assert_eq!(child.extends, ["dtmi:ex:base;1"]);
    let names: Vec<(&str, &str)> = child
        .contents
        .iter()
        .map(|c| (c.name.as_str(), c.origin.as_str()))
        .collect();
    assert_eq!(
        names,
        [("serial", "dtmi:ex:base;1"), ("temp", "dtmi:ex:child;1")]
    );
}

#[test]
fn extends_rejects_cycles_depth_width_and_name_clashes() {
    let a = json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:a;1", "@type": "Interface", "extends": "dtmi:ex:b;1"});
    let b = json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:b;1", "@type": "Interface", "extends": "dtmi:ex:a;1"});
    assert!(errors(&[a, b]).contains(&"recursiveStructureNarrow".to_string()));
    let chain: Vec<Value> = (0..12)
        .map(|i| json!({"@context": "dtmi:dtdl:context;3", "@id": format!("dtmi:ex:i{i};1"), "@type": "Interface", "extends": format!("dtmi:ex:i{};1", i + 1)}))
        .chain(std::iter::once(iface(3, "dtmi:ex:i12;1", json!([]))))
        .collect();
    assert!(errors(&chain).contains(&"excessiveDepthNarrow".to_string()));
    let three = json!({"@context": "dtmi:dtdl:context;2", "@id": "dtmi:ex:a;1", "@type": "Interface", "extends": ["dtmi:ex:p;1", "dtmi:ex:q;1", "dtmi:ex:r;1"]});
    assert_eq!(errors(&[three]), ["objectCountAboveMax"]);
    let base = iface(
        3,
        "dtmi:ex:base;1",
        json!([{"@type": "Property", "name": "x", "schema": "string"}]),
    );
    let clash = json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:c;1", "@type": "Interface", "extends": "dtmi:ex:base;1", "contents": [{"@type": "Telemetry", "name": "x", "schema": "double"}]});
    assert_eq!(errors(&[clash, base]), ["nonUniqueImportedPropertyValue"]);
}

// ---------------------------------------------------------------- schemas

#[test]
fn complex_schemas_are_built() {
    let doc = iface(
        3,
        "dtmi:ex:a;1",
        json!([
            {"@type": "Property", "name": "mode", "writable": true, "schema": {"@type": "Enum", "valueSchema": "string",
                "enumValues": [{"name": "eco", "enumValue": "ECO"}, {"name": "boost", "enumValue": "BOOST"}]}},
            {"@type": "Telemetry", "name": "readings", "schema": {"@type": "Map",
                "mapKey": {"name": "sensor", "schema": "string"}, "mapValue": {"name": "reading", "schema": "double"}}},
            {"@type": "Property", "name": "location", "schema": {"@type": "Object", "fields": [
                {"name": "lat", "schema": "double"}, {"name": "tags", "schema": {"@type": "Array", "elementSchema": "string"}}]}},
            {"@type": "Command", "name": "reboot", "request": {"name": "delay", "schema": "duration"},
                "response": {"name": "ok", "schema": "boolean"}},
            {"@type": "Relationship", "name": "feeds", "target": "dtmi:ex:b;1", "minMultiplicity": 0, "maxMultiplicity": 3,
                "properties": [{"@type": "Property", "name": "since", "schema": "dateTime"}]}
        ]),
    );
    let set = ok(&[doc]);
    let a = set.interface("dtmi:ex:a;1").unwrap();
    let (_, mode) = a.properties().find(|(c, _)| c.name == "mode").unwrap();
    assert!(mode.writable);
    let Schema::Enum {
        value_schema,
        enum_values,
        ..
    } = &mode.schema
    else {
        panic!("enum expected")
    };
    assert_eq!(*value_schema, Primitive::String);
    assert_eq!(enum_values[1].name, "boost");
    assert_eq!(enum_values[1].enum_value, json!("BOOST"));
    let ContentKind::Telemetry(readings) = &a.content("readings").unwrap().kind else {
        panic!()
    };
    let Schema::Map {
        map_key, map_value, ..
    } = &readings.schema
    else {
        panic!("map expected")
    };
    assert_eq!(
        (map_key.name.as_str(), map_value.name.as_str()),
        ("sensor", "reading")
    );
    let ContentKind::Property(location) = &a.content("location").unwrap().kind else {
        panic!()
    };
    let Schema::Object { fields, .. } = &location.schema else {
        panic!("object expected")
    };
    assert!(
        matches!(&*fields[1].schema, Schema::Array { element_schema, .. } if **element_schema == Schema::Primitive { primitive: Primitive::String })
    );
    let (_, reboot) = a.commands().next().unwrap();
    assert_eq!(
        reboot.request.as_ref().unwrap().schema,
        Schema::Primitive {
            primitive: Primitive::Duration
        }
    );
    let (_, feeds) = a.relationships().next().unwrap();
    assert_eq!(
        (
            feeds.target.as_deref(),
            feeds.min_multiplicity,
            feeds.max_multiplicity
        ),
        (Some("dtmi:ex:b;1"), Some(0), Some(3))
    );
    assert_eq!(feeds.properties[0].name, "since");
    // The model serializes for other crates.
    let json = serde_json::to_value(a).unwrap();
    assert_eq!(json["contents"][0]["kind"], "Property");
}

#[test]
fn schemas_section_is_referenced_by_id() {
    let doc = json!({
        "@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:a;1", "@type": "Interface",
        "schemas": [{"@id": "dtmi:ex:point;1", "@type": "Object", "fields": [{"name": "x", "schema": "double"}]}],
        "contents": [{"@type": "Property", "name": "p", "schema": "dtmi:ex:point;1"}]
    });
    let set = ok(&[doc]);
    let a = set.interface("dtmi:ex:a;1").unwrap();
    assert_eq!(a.schemas[0].id(), Some("dtmi:ex:point;1"));
    let (_, p) = a.properties().next().unwrap();
    assert_eq!(p.schema.id(), Some("dtmi:ex:point;1"));
    let no_id = json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:a;1", "@type": "Interface", "schemas": [{"@type": "Object", "fields": []}]});
    assert_eq!(errors(&[no_id]), ["missingRequiredId"]);
}

#[test]
fn schema_nesting_limits_and_self_reference() {
    let mut schema = json!("double");
    for _ in 0..6 {
        schema = json!({"@type": "Array", "elementSchema": schema});
    }
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": "Telemetry", "name": "t", "schema": schema}])
        )]),
        ["excessiveDepthWide"]
    );
    let recursive = |v: u8| {
        json!({
            "@context": format!("dtmi:dtdl:context;{v}"), "@id": "dtmi:ex:a;1", "@type": "Interface",
            "schemas": [{"@id": "dtmi:ex:node;1", "@type": "Object", "fields": [
                {"name": "value", "schema": "double"}, {"name": "next", "schema": "dtmi:ex:node;1"}]}],
            "contents": [{"@type": "Telemetry", "name": "list", "schema": "dtmi:ex:node;1"}]
        })
    };
    assert_eq!(errors(&[recursive(3)]), ["recursiveStructureWide"]);
    let set = ok(&[recursive(4)]);
    let ContentKind::Telemetry(t) = &set
        .interface("dtmi:ex:a;1")
        .unwrap()
        .content("list")
        .unwrap()
        .kind
    else {
        panic!()
    };
    let Schema::Object { fields, .. } = &t.schema else {
        panic!("object expected")
    };
    assert_eq!(
        *fields[1].schema,
        Schema::Ref {
            id: "dtmi:ex:node;1".into()
        }
    );
}

#[test]
fn version_specific_schema_rules() {
    // DTDL v2 Properties may not contain arrays; v3 lifted that.
    let array_property = |v: u8| {
        iface(
            v,
            "dtmi:ex:a;1",
            json!([{"@type": "Property", "name": "p", "schema": {"@type": "Array", "elementSchema": "double"}}]),
        )
    };
    assert_eq!(errors(&[array_property(2)]), ["excludedType"]);
    ok(&[array_property(3)]);
    // v4 primitives exist only in v4, like scaledDecimal.
    ok(&[iface(
        4,
        "dtmi:ex:a;1",
        json!([{"@type": "Telemetry", "name": "t", "schema": "unsignedShort"}, {"@type": "Telemetry", "name": "s", "schema": "scaledDecimal"}]),
    )]);
    assert_eq!(
        errors(&[iface(
            3,
            "dtmi:ex:a;1",
            json!([{"@type": "Telemetry", "name": "t", "schema": "unsignedShort"}])
        )]),
        ["badDtmiOrTerm"]
    );
    // Enum values must match the value schema.
    let bad_enum = iface(
        3,
        "dtmi:ex:a;1",
        json!([{"@type": "Property", "name": "e", "schema": {"@type": "Enum", "valueSchema": "integer", "enumValues": [{"name": "a", "enumValue": "x"}]}}]),
    );
    assert_eq!(errors(&[bad_enum]), ["nonConformantDatatype"]);
}

#[test]
fn components_cannot_nest_components() {
    let inner = iface(
        3,
        "dtmi:ex:inner;1",
        json!([{"@type": "Component", "name": "c", "schema": "dtmi:ex:leaf;1"}]),
    );
    let leaf = iface(3, "dtmi:ex:leaf;1", json!([]));
    let outer = iface(
        3,
        "dtmi:ex:outer;1",
        json!([{"@type": "Component", "name": "c", "schema": "dtmi:ex:inner;1"}]),
    );
    assert_eq!(
        errors(&[outer.clone(), inner.clone(), leaf.clone()]),
        ["excludedType"]
    );
    let set = ok(&[inner, leaf]);
    let (_, c) = set
        .interface("dtmi:ex:inner;1")
        .unwrap()
        .components()
        .next()
        .unwrap();
    assert_eq!(c.schema, "dtmi:ex:leaf;1");
}

// ---------------------------------------------------------------- extensions

#[test]
fn extensions_are_recognised_through_their_contexts() {
    let historized = |ctx: Value| {
        json!({
            "@context": ctx, "@id": "dtmi:ex:a;1", "@type": "Interface",
            "contents": [{"@type": ["Telemetry", "Historized"], "name": "t", "schema": "double"}]
        })
    };
    let set = ok(&[historized(json!([
        "dtmi:dtdl:context;3",
        "dtmi:dtdl:extension:historization;1"
    ]))]);
    let t = set.interface("dtmi:ex:a;1").unwrap().content("t").unwrap();
    assert_eq!(
        t.supplemental_types,
        ["dtmi:dtdl:extension:historization:v1:Historized"]
    );
    assert_eq!(
        errors(&[historized(json!("dtmi:dtdl:context;3"))]),
        ["typeUndefinedTerm"]
    );
    // historization;1 is a DTDL v3 extension.
    assert_eq!(
        errors(&[historized(json!([
            "dtmi:dtdl:context;4",
            "dtmi:dtdl:extension:historization;1"
        ]))]),
        ["invalidCotypeVersion"]
    );
}

// ---------------------------------------------------------------- diagnostics

#[test]
fn diagnostics_name_file_pointer_value_and_expectation() {
    let text = r#"{"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:a;1", "@type": "Interface",
        "contents": [{"@type": "Property", "name": "ok", "schema": "double"}, {"@type": "Property", "name": "p", "schema": "doubel"}]}"#;
    let Err(ParseError::Invalid { diagnostics }) = parse(
        &[Document::new("models/a.json", text)],
        &ParseOptions::default(),
    ) else {
        panic!("invalid expected");
    };
    let d = &diagnostics[0];
    assert_eq!(d.id, "dtmi:dtdl:parsingError:badDtmiOrTerm");
    assert_eq!(d.document, "models/a.json");
    assert_eq!(d.pointer, "/contents/1/schema");
    assert_eq!(d.value.as_deref(), Some("doubel"));
    assert!(
        d.message.contains("neither a DTMI nor a DTDL v3 term"),
        "{}",
        d.message
    );
    let rendered = d.to_string();
    assert!(rendered.starts_with("error[badDtmiOrTerm]: "), "{rendered}");
    assert!(
        rendered.contains("--> models/a.json#/contents/1/schema"),
        "{rendered}"
    );
}

#[test]
fn documents_may_be_arrays_and_have_a_bom() {
    let text = format!(
        "\u{feff}[{}, {}]",
        iface(3, "dtmi:ex:a;1", json!([])),
        iface(3, "dtmi:ex:b;1", json!([]))
    );
    let set = parse(
        &[Document::new("both.json", text)],
        &ParseOptions::default(),
    )
    .expect("valid");
    assert_eq!(set.len(), 2);
    let Err(ParseError::Invalid { diagnostics }) =
        parse(&[Document::new("bad.json", "{")], &ParseOptions::default())
    else {
        panic!("invalid JSON must be rejected");
    };
    assert_eq!(diagnostics[0].short_id(), "invalidJson");
}
