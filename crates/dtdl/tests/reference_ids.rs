//! Rules of the DTDL specifications checked on hand-made models, each with the validation id
//! (and primary/secondary element) the reference parser reports: enum values against their
//! `valueSchema`, the partitions nested interfaces make, localizable strings, JSON-LD value
//! objects, values that must be instances of a schema, references that resolve lazily,
//! partner prefixes, identifiers and `@type`s.

use std::collections::BTreeSet;

use ktwin_dtdl::{Diagnostic, Document, ParseError, ParseOptions, parse, parse_resolving};
use serde_json::{Value, json};

fn docs(models: &[Value]) -> Vec<Document> {
    models
        .iter()
        .enumerate()
        .map(|(i, m)| Document::new(format!("model{i}.json"), m.to_string()))
        .collect()
}

fn outcome(models: &[Value]) -> Result<ktwin_dtdl::ModelSet, ParseError> {
    parse(&docs(models), &ParseOptions::default())
}

fn errors(models: &[Value]) -> Vec<Diagnostic> {
    match outcome(models) {
        Ok(_) => panic!("expected {models:?} to be invalid"),
        Err(ParseError::Unresolved { identifiers, .. }) => {
            panic!("expected errors, got unresolved {identifiers:?}")
        }
        Err(e) => e.errors().cloned().collect(),
    }
}

fn ids(models: &[Value]) -> Vec<String> {
    errors(models)
        .iter()
        .map(|d| d.short_id().to_string())
        .collect()
}

/// The error with `code`; fails listing what was reported when there is none.
fn find(models: &[Value], code: &str) -> Diagnostic {
    let all = errors(models);
    all.iter()
        .find(|d| d.short_id() == code)
        .cloned()
        .unwrap_or_else(|| panic!("no {code} among {:?}", short(&all)))
}

fn short(all: &[Diagnostic]) -> Vec<&str> {
    all.iter().map(Diagnostic::short_id).collect()
}

fn valid(models: &[Value]) {
    if let Err(e) = outcome(models) {
        panic!(
            "expected valid, got {e}: {:?}",
            e.errors().collect::<Vec<_>>()
        );
    }
}

fn iface(version: u8, contents: Value) -> Value {
    json!({ "@context": format!("dtmi:dtdl:context;{version}"), "@id": "dtmi:ex:Thing;1",
            "@type": "Interface", "contents": contents })
}

fn property(schema: Value) -> Value {
    json!({ "@type": "Property", "name": "p", "schema": schema })
}

// ---------------------------------------------------------------- enum values

fn enumeration(value_schema: &str, value: Value) -> Value {
    json!({ "@id": "dtmi:ex:Level;1", "@type": "Enum", "valueSchema": value_schema,
            "enumValues": [{ "@id": "dtmi:ex:low;1", "name": "low", "enumValue": value }] })
}

#[test]
fn enum_values_have_the_datatype_of_the_value_schema() {
    for version in [2, 3, 4] {
        valid(&[iface(
            version,
            json!([property(enumeration("integer", json!(1)))]),
        )]);
        valid(&[iface(
            version,
            json!([property(enumeration("string", json!("one")))]),
        )]);
        for (schema, value) in [
            ("integer", json!("one")),
            ("integer", json!(1.5)),
            ("integer", json!(true)),
            ("integer", json!(3_000_000_000_i64)),
            ("string", json!(1)),
            ("string", json!(false)),
        ] {
            let e = find(
                &[iface(
                    version,
                    json!([property(enumeration(schema, value))]),
                )],
                "nonConformantDatatype",
            );
            assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:low;1"), "v{version}");
            assert_eq!(e.secondary_id.as_deref(), Some("dtmi:ex:Level;1"));
        }
    }
}

// ---------------------------------------------------------------- partitions

/// An interface with a schema in its `schemas`, and a component whose inline interface
/// (schemas of its own) has a telemetry using `schema`.
fn nested(version: u8, schema: &str) -> Value {
    json!({
        "@context": format!("dtmi:dtdl:context;{version}"), "@id": "dtmi:ex:Outer;1",
        "@type": "Interface",
        "schemas": [{ "@id": "dtmi:ex:outerPoint;1", "@type": "Object",
                      "fields": [{ "name": "x", "schema": "double" }] }],
        "contents": [{
            "@type": "Component", "name": "inner",
            "schema": {
                "@id": "dtmi:ex:Inner;1", "@type": "Interface",
                "schemas": [{ "@id": "dtmi:ex:innerPoint;1", "@type": "Object",
                              "fields": [{ "name": "y", "schema": "double" }] }],
                "contents": [{ "@type": "Telemetry", "name": "t", "schema": schema }]
            }
        }]
    })
}

#[test]
fn a_nested_interface_is_a_partition_of_its_own() {
    for version in [2, 3, 4] {
        valid(&[nested(version, "dtmi:ex:innerPoint;1")]);
        // "An Interface in a Component [cannot] reuse schemas defined in the Interface that
        // holds the Component" (DTDL v3, Interface schemas).
        let e = find(
            &[nested(version, "dtmi:ex:outerPoint;1")],
            "crossPartitionReference",
        );
        assert_eq!(e.secondary_id.as_deref(), Some("dtmi:ex:outerPoint;1"));
    }
    // Nor can a sibling interface's telemetry reach into the component's interface.
    let with_content = |content: Value| {
        let mut model = nested(3, "dtmi:ex:innerPoint;1");
        model["contents"]
            .as_array_mut()
            .expect("contents")
            .push(content);
        model
    };
    find(
        &[with_content(
            json!({ "@type": "Telemetry", "name": "u", "schema": "dtmi:ex:innerPoint;1" }),
        )],
        "crossPartitionReference",
    );
    // An interface itself may be referenced from anywhere.
    valid(&[with_content(
        json!({ "@type": "Component", "name": "again", "schema": "dtmi:ex:Inner;1" }),
    )]);
}

// ---------------------------------------------------------------- localizable strings

fn described(version: u8, display_name: Value) -> Value {
    json!({ "@context": format!("dtmi:dtdl:context;{version}"), "@id": "dtmi:ex:Thing;1",
            "@type": "Interface", "displayName": display_name })
}

#[test]
fn language_codes_follow_the_specification_pattern() {
    for code in ["en", "en-US", "zh-Hant-TW", "es-419", "haw"] {
        valid(&[described(3, json!({ code: "x" }))]);
        valid(&[described(3, json!([{ "@value": "x", "@language": code }]))]);
    }
    for code in ["EN", "en-us", "english", "e", "en_US", "en-"] {
        for version in [2, 3, 4] {
            let e = find(
                &[described(version, json!({ code: "x" }))],
                "langStringInvalidCode",
            );
            assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:Thing;1"));
            find(
                &[described(
                    version,
                    json!([{ "@value": "x", "@language": code }]),
                )],
                "langStringElementInvalidCode",
            );
        }
    }
}

#[test]
fn mixed_arrays_of_strings_and_tagged_values() {
    valid(&[described(
        3,
        json!(["hello", { "@value": "hola", "@language": "es" }]),
    )]);
    // A string is in the default language "en": only one default per array.
    for twice in [
        json!(["hello", "hi"]),
        json!(["hello", { "@value": "hi" }]),
        json!(["hello", { "@value": "hi", "@language": "en" }]),
        json!([{ "@value": "a", "@language": "fr" }, { "@value": "b", "@language": "fr" }]),
    ] {
        assert_eq!(
            ids(&[described(3, twice)]),
            ["langStringElementCodeNotUnique"]
        );
    }
    let cases = [
        (json!([5]), "langStringElementNotStringOrObject"),
        (json!([{ "@language": "en" }]), "langStringElementNoValue"),
        (
            json!([{ "@value": 5, "@language": "en" }]),
            "langStringElementValueNotString",
        ),
        (
            json!([{ "@value": "x", "@language": 5 }]),
            "langStringElementCodeNotString",
        ),
        (
            json!([{ "@value": "x", "en": "y" }]),
            "langStringElementInvalidProp",
        ),
        (
            json!([{ "@value": "x", "@id": "dtmi:ex:x;1" }]),
            "langStringElementId",
        ),
        (
            json!([{ "@value": "x", "@context": "dtmi:dtdl:context;3" }]),
            "langStringElementContext",
        ),
        (
            json!([{ "@value": "x", "@graph": [] }]),
            "langStringElementGraph",
        ),
        (
            json!([{ "@value": "x", "@type": "xsd:string" }]),
            "langStringElementType",
        ),
        (
            json!([{ "@value": "x", "@index": "i" }]),
            "langStringElementKeyword",
        ),
        (json!({ "en": 5 }), "langStringValueNotString"),
        (
            json!({ "@value": "x", "@language": "en" }),
            "langTagValueInLangMap",
        ),
        (json!({ "@value": "x" }), "langMapObjKeyword"),
        (
            json!({ "en": "x", "@id": "dtmi:ex:x;1" }),
            "langMapObjKeyword",
        ),
        (json!(5), "langStringElementNotStringOrObject"),
    ];
    for (value, code) in cases {
        find(&[described(3, value.clone())], code);
    }
    // DTDL v2 does not restrict JSON-LD keywords in tagged values.
    valid(&[described(
        2,
        json!([{ "@value": "x", "@type": "xsd:string" }]),
    )]);
    let long = "x".repeat(513);
    find(
        &[described(3, json!({ "en": long }))],
        "langStringValueTooLong",
    );
}

// ---------------------------------------------------------------- value objects

fn writable(value: Value) -> Value {
    iface(
        3,
        json!([{ "@type": "Property", "name": "p", "schema": "double", "writable": value }]),
    )
}

#[test]
fn value_objects_report_their_own_ids() {
    valid(&[writable(json!({ "@value": true }))]);
    valid(&[writable(json!({ "@value": true, "@type": "xsd:boolean" }))]);
    let cases = [
        (json!({ "@type": "xsd:boolean" }), "booleanObjectNoValue"),
        (json!({ "@value": "yes" }), "booleanValueNotBoolean"),
        (
            json!({ "@value": true, "@type": "xsd:string" }),
            "booleanTypeNotBoolean",
        ),
        (
            json!({ "@value": true, "@type": ["xsd:boolean", "xsd:string"] }),
            "literalTypeNotSingular",
        ),
        (
            json!({ "@value": true, "@id": "dtmi:ex:v;1" }),
            "valueObjectId",
        ),
        (
            json!({ "@value": true, "@context": "dtmi:dtdl:context;3" }),
            "valueObjectContext",
        ),
        (json!({ "@value": true, "@graph": [] }), "valueObjectGraph"),
        (
            json!({ "@value": true, "@language": "en" }),
            "valueObjectLanguage",
        ),
        (
            json!({ "@value": true, "@index": "i" }),
            "valueObjectKeyword",
        ),
        (
            json!({ "@value": true, "flag": 1 }),
            "valueObjectInvalidProp",
        ),
    ];
    for (value, code) in cases {
        find(&[writable(value)], code);
    }
    let name = |v: Value| {
        iface(
            3,
            json!([{ "@type": "Property", "name": v, "schema": "double" }]),
        )
    };
    find(&[name(json!({ "@value": 5 }))], "stringValueNotString");
}

// ---------------------------------------------------------------- instances of schemas

fn limited(schema: Value, limits: Value) -> Value {
    let mut telemetry = json!({ "@id": "dtmi:ex:t;1", "@type": ["Telemetry", "Limited"],
                                "name": "t", "schema": schema });
    for (k, v) in limits.as_object().into_iter().flatten() {
        telemetry[k] = v.clone();
    }
    json!({ "@context": ["dtmi:dtdl:context;4", "dtmi:iotoperations:context;4"],
            "@id": "dtmi:ex:Sensor;1", "@type": "Interface", "contents": [telemetry] })
}

#[test]
fn limits_are_instances_of_the_telemetry_schema() {
    for (schema, limits) in [
        (json!("integer"), json!({ "minimum": -5, "maximum": 10 })),
        (json!("byte"), json!({ "maximum": 127 })),
        (json!("unsignedShort"), json!({ "maximum": 65535 })),
        (json!("double"), json!({ "maximum": 1.5e300 })),
        (json!("float"), json!({ "minimum": -2.5 })),
        (json!("long"), json!({ "maximum": 9_000_000_000_i64 })),
    ] {
        valid(&[limited(schema, limits)]);
    }
    for (schema, limits) in [
        (json!("integer"), json!({ "maximum": 2.5 })),
        (json!("integer"), json!({ "maximum": 3_000_000_000_i64 })),
        (json!("byte"), json!({ "maximum": 128 })),
        (json!("unsignedInteger"), json!({ "minimum": -1 })),
        (json!("unsignedLong"), json!({ "minimum": 0.5 })),
        (json!("short"), json!({ "minimum": -40000 })),
        (json!("float"), json!({ "maximum": 1e39 })),
        (json!("string"), json!({ "maximum": 5 })),
        (json!("boolean"), json!({ "maximum": 1 })),
        // A decimal is written as a JSON string, so a number is not an instance of it.
        (json!("decimal"), json!({ "maximum": 5 })),
        (
            json!({ "@type": "Enum", "valueSchema": "integer",
                    "enumValues": [{ "name": "one", "enumValue": 1 }] }),
            json!({ "maximum": 2 }),
        ),
        (
            json!({ "@type": "Object", "fields": [{ "name": "x", "schema": "double" }] }),
            json!({ "maximum": 2 }),
        ),
    ] {
        let e = find(
            &[limited(schema.clone(), limits)],
            "nonConformantPropertyValue",
        );
        assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:t;1"), "{schema}");
    }
}

// ---------------------------------------------------------------- lazy resolution

fn with_component(id: &str, schema: &str) -> Value {
    json!({ "@context": "dtmi:dtdl:context;3", "@id": id, "@type": "Interface",
            "contents": [{ "@type": "Component", "name": "c", "schema": schema }] })
}

fn extending(id: &str, base: &str) -> Value {
    json!({ "@context": "dtmi:dtdl:context;3", "@id": id, "@type": "Interface", "extends": base })
}

fn leaf(id: &str, contents: Value) -> Value {
    json!({ "@context": "dtmi:dtdl:context;3", "@id": id, "@type": "Interface", "contents": contents })
}

#[test]
fn unresolved_components_and_bases_are_listed_exactly() {
    let set = [
        with_component("dtmi:ex:A;1", "dtmi:ex:B;1"),
        extending("dtmi:ex:C;1", "dtmi:ex:D;1"),
    ];
    match outcome(&set) {
        Err(ParseError::Unresolved { identifiers, .. }) => assert_eq!(
            identifiers,
            BTreeSet::from(["dtmi:ex:B;1".to_string(), "dtmi:ex:D;1".to_string()])
        ),
        other => panic!("expected unresolved identifiers, got {other:?}"),
    }
}

#[test]
fn a_resolver_defines_components_and_bases_round_by_round() {
    // A's component B extends D, which extends E: three rounds.
    let repository = [
        ("dtmi:ex:B;1", extending("dtmi:ex:B;1", "dtmi:ex:D;1")),
        ("dtmi:ex:D;1", extending("dtmi:ex:D;1", "dtmi:ex:E;1")),
        (
            "dtmi:ex:E;1",
            leaf(
                "dtmi:ex:E;1",
                json!([{ "@type": "Telemetry", "name": "t", "schema": "double" }]),
            ),
        ),
    ];
    let mut asked = Vec::new();
    let resolver = |wanted: &BTreeSet<String>| {
        asked.push(wanted.clone());
        repository
            .iter()
            .filter(|(id, _)| wanted.contains(*id))
            .map(|(id, m)| Document::new(*id, m.to_string()))
            .collect()
    };
    let set = parse_resolving(
        &docs(&[with_component("dtmi:ex:A;1", "dtmi:ex:B;1")]),
        &ParseOptions::default(),
        resolver,
    )
    .expect("resolved");
    let b = set.interface("dtmi:ex:B;1").expect("B resolved");
    assert!(b.content("t").is_some(), "B inherits E's telemetry");
    let rounds: Vec<Vec<&str>> = asked
        .iter()
        .map(|ids| ids.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(rounds, [["dtmi:ex:B;1"], ["dtmi:ex:D;1"], ["dtmi:ex:E;1"]]);
}

#[test]
fn a_partial_resolution_reports_only_what_is_still_missing() {
    let repository = [("dtmi:ex:B;1", leaf("dtmi:ex:B;1", json!([])))];
    let resolver = |wanted: &BTreeSet<String>| -> Vec<Document> {
        repository
            .iter()
            .filter(|(id, _)| wanted.contains(*id))
            .map(|(id, m)| Document::new(*id, m.to_string()))
            .collect()
    };
    let set = docs(&[
        with_component("dtmi:ex:A;1", "dtmi:ex:B;1"),
        extending("dtmi:ex:C;1", "dtmi:ex:D;1"),
    ]);
    match parse_resolving(&set, &ParseOptions::default(), resolver) {
        Err(ParseError::Unresolved { identifiers, .. }) => {
            assert_eq!(identifiers, BTreeSet::from(["dtmi:ex:D;1".to_string()]))
        }
        other => panic!("expected D to stay unresolved, got {other:?}"),
    }
    // A resolver that finds nothing: everything asked for stays unresolved.
    match parse_resolving(&set, &ParseOptions::default(), |_| Vec::new()) {
        Err(ParseError::Unresolved { identifiers, .. }) => assert_eq!(identifiers.len(), 2),
        other => panic!("expected unresolved, got {other:?}"),
    }
    // A resolved model that breaks a rule makes the set invalid (a component's interface
    // may not have components).
    let nested = |wanted: &BTreeSet<String>| -> Vec<Document> {
        wanted
            .iter()
            .map(|id| Document::new(id.clone(), with_component(id, "dtmi:ex:Z;1").to_string()))
            .chain(
                wanted
                    .contains("dtmi:ex:Z;1")
                    .then(|| Document::new("z", leaf("dtmi:ex:Z;1", json!([])).to_string())),
            )
            .collect()
    };
    let one = docs(&[with_component("dtmi:ex:A;1", "dtmi:ex:B;1")]);
    match parse_resolving(&one, &ParseOptions::default(), nested) {
        Err(ParseError::Invalid { diagnostics }) => assert!(
            diagnostics.iter().any(|d| d.short_id() == "excludedType"),
            "{diagnostics:?}"
        ),
        other => panic!("expected a nested component to be refused, got {other:?}"),
    }
}

// ---------------------------------------------------------------- partner prefixes

#[test]
fn partner_prefixes_are_reserved_only_under_their_context() {
    let defined =
        |context: Value, id: &str| json!({ "@context": context, "@id": id, "@type": "Interface" });
    valid(&[defined(
        json!("dtmi:dtdl:context;2"),
        "dtmi:iotcentral:mine;1",
    )]);
    valid(&[defined(
        json!("dtmi:dtdl:context;4"),
        "dtmi:iotoperations:mine;1",
    )]);
    assert_eq!(
        ids(&[defined(
            json!(["dtmi:dtdl:context;2", "dtmi:iotcentral:context;2"]),
            "dtmi:iotcentral:mine;1"
        )]),
        ["reservedId"]
    );
    assert_eq!(
        ids(&[defined(
            json!(["dtmi:dtdl:context;4", "dtmi:iotoperations:context;4"]),
            "dtmi:iotoperations:mine;1"
        )]),
        ["reservedId"]
    );
    // A reference to an undefined identifier under a reserved prefix is an error whatever
    // the contexts (the reference parser checks every prefix it knows).
    let uses = |schema: &str| {
        iface(
            2,
            json!([{ "@type": "Telemetry", "name": "t", "schema": schema }]),
        )
    };
    let e = find(
        &[uses("dtmi:iotcentral:schema:nothing;2")],
        "undefinedReservedId",
    );
    assert_eq!(
        e.secondary_id.as_deref(),
        Some("dtmi:iotcentral:schema:nothing;2")
    );
    // The partner's standard elements exist by DTMI even without the context.
    valid(&[uses("dtmi:iotcentral:schema:geopoint;2")]);
    // Their terms need the context.
    find(&[uses("geopoint")], "badDtmiOrTerm");
}

#[test]
fn a_maximum_dtdl_version_rejects_newer_models_only() {
    let options = ParseOptions {
        max_dtdl_version: Some(3),
        ..ParseOptions::default()
    };
    let parse_with = |version: u8| parse(&docs(&[iface(version, json!([]))]), &options);
    assert!(parse_with(2).is_ok());
    assert!(parse_with(3).is_ok());
    match parse_with(4) {
        Err(e) => assert_eq!(
            e.errors().map(Diagnostic::short_id).collect::<Vec<_>>(),
            ["disallowedContextVersion"]
        ),
        Ok(_) => panic!("a DTDL v4 model passed a maximum of 3"),
    }
}

// ---------------------------------------------------------------- identifiers

#[test]
fn identifiers_are_checked_for_length_then_form() {
    let defined = |version: u8, id: &str| json!({ "@context": format!("dtmi:dtdl:context;{version}"), "@id": id, "@type": "Interface" });
    for bad in [
        "dtmi:ex:bad-dash;1",
        "dtmi:ex:1digit;1",
        "urn:ex:x",
        "dtmi:ex:trailing_;1",
        "dtmi:ex::x;1",
    ] {
        assert_eq!(ids(&[defined(3, bad)]), ["invalidId"], "{bad}");
    }
    assert_eq!(ids(&[defined(2, "dtmi:ex:x;1.2")]), ["invalidId"]);
    valid(&[defined(3, "dtmi:ex:x;1.2")]);
    // An identifier over the limit is too long, whatever its form.
    let long_and_bad = format!("dtmi:ex:{}-x;1", "a".repeat(2100));
    assert_eq!(ids(&[defined(3, &long_and_bad)]), ["idTooLong"]);
    // A nested element's identifier follows the same rules.
    let nested = iface(
        3,
        json!([{ "@id": "dtmi:ex:bad-dash;1", "@type": "Telemetry", "name": "t", "schema": "double" }]),
    );
    assert_eq!(ids(&[nested]), ["invalidId"]);
}

#[test]
fn duplicate_definitions_name_the_identifier() {
    let e = find(
        &[
            leaf("dtmi:ex:A;1", json!([])),
            leaf("dtmi:ex:A;1", json!([])),
        ],
        "duplicateDefinition",
    );
    assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:A;1"));
    let inner = leaf(
        "dtmi:ex:A;1",
        json!([{ "@id": "dtmi:ex:B;1", "@type": "Telemetry", "name": "t", "schema": "double" }]),
    );
    find(
        &[inner, leaf("dtmi:ex:B;1", json!([]))],
        "duplicateDefinition",
    );
    // Two contents with one name collide on their derived identifiers: not a duplicate
    // definition but a name that is not unique.
    let same_name = iface(
        3,
        json!([{ "@type": "Telemetry", "name": "t", "schema": "double" },
               { "@type": "Property", "name": "t", "schema": "double" }]),
    );
    assert_eq!(ids(&[same_name]), ["nonUniquePropertyValue"]);
}

// ---------------------------------------------------------------- types

#[test]
fn values_of_the_wrong_type_are_bad_types_of_the_parent() {
    // An inline value of another class.
    let e = find(
        &[iface(
            3,
            json!([property(
                json!({ "@type": "Telemetry", "name": "x", "schema": "double" })
            )]),
        )],
        "badType",
    );
    assert_eq!(
        e.primary_id.as_deref(),
        Some("dtmi:ex:Thing:_contents:__p;1")
    );
    assert_eq!(
        e.secondary_id.as_deref(),
        Some("dtmi:ex:Thing:_contents:__p:_schema;1")
    );
    // An inline value without @type where one is required.
    find(
        &[iface(
            3,
            json!([property(json!({ "elementSchema": "double" }))]),
        )],
        "badType",
    );
    // A content with an empty @type.
    let e = find(
        &[iface(
            3,
            json!([{ "@type": [], "name": "t", "schema": "double" }]),
        )],
        "badType",
    );
    assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:Thing;1"));
    // A reference to an element of another class.
    let e = find(
        &[
            iface(3, json!([property(json!("dtmi:ex:Other;1"))])),
            leaf("dtmi:ex:Other;1", json!([])),
        ],
        "badType",
    );
    assert_eq!(e.secondary_id.as_deref(), Some("dtmi:ex:Other;1"));
    // A term that names no schema.
    find(
        &[iface(3, json!([property(json!("Telemetry"))]))],
        "badType",
    );
    // A top-level element with only supplemental types is not rootable.
    let semantic = json!({ "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"],
                           "@id": "dtmi:ex:T;1", "@type": "Temperature" });
    assert_eq!(ids(&[semantic]), ["typeNotRootable"]);
}

#[test]
fn keywords_of_a_top_level_element_have_their_own_id() {
    let mut model = leaf("dtmi:ex:A;1", json!([]));
    model["@language"] = json!("en");
    assert_eq!(
        ids(std::slice::from_ref(&model)),
        ["topLevelKeywordDisallowed"]
    );
    let nested = iface(
        3,
        json!([{ "@type": "Telemetry", "name": "t", "schema": "double", "@language": "en" }]),
    );
    assert_eq!(ids(&[nested]), ["keywordDisallowed"]);
}

#[test]
fn a_dtdl_context_may_not_follow_an_extension() {
    let model = json!({
        "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1", "dtmi:dtdl:context;3"],
        "@id": "dtmi:ex:A;1", "@type": "Interface"
    });
    assert_eq!(ids(&[model]), ["dtdlContextFollowsAffiliate"]);
    // The iotcentral context implies DTDL v2 and may come first.
    valid(&[
        json!({ "@context": ["dtmi:iotcentral:context;2", "dtmi:dtdl:context;2"],
                     "@id": "dtmi:ex:A;1", "@type": "Interface" }),
    ]);
}

#[test]
fn an_element_without_id_is_named_by_its_name() {
    let e = find(
        &[iface(
            3,
            json!([{ "@type": "Telemetry", "schema": "double" }]),
        )],
        "missingDtmiSegPropertyValue",
    );
    assert_eq!(e.primary_id.as_deref(), Some("dtmi:ex:Thing;1"));
    find(
        &[iface(
            3,
            json!([{ "@type": "Telemetry", "name": true, "schema": "double" }]),
        )],
        "dtmiSegPropertyNotStringOrNumber",
    );
    // With an @id the name is only a required property.
    assert_eq!(
        ids(&[iface(
            3,
            json!([{ "@id": "dtmi:ex:t;1", "@type": "Telemetry", "schema": "double" }])
        )]),
        ["missingLiteralProperty"]
    );
}

#[test]
fn a_top_level_element_needs_an_id_before_anything_else() {
    let untyped = json!({ "@context": "dtmi:dtdl:context;3", "@type": "Telemetry" });
    assert_eq!(ids(&[untyped]), ["missingTopLevelId"]);
}

#[test]
fn local_contexts_are_named_by_where_they_are() {
    let with =
        |context: Value| json!({ "@context": context, "@id": "dtmi:ex:A;1", "@type": "Interface" });
    assert_eq!(
        ids(&[with(
            json!(["dtmi:dtdl:context;3", { "term": "dtmi:ex:term;1" }])
        )]),
        ["disallowedLocalContext"]
    );
    assert_eq!(
        ids(&[with(
            json!([{ "term": "dtmi:ex:term;1" }, "dtmi:dtdl:context;3"])
        )]),
        ["missingDtdlContext"]
    );
    assert_eq!(
        ids(&[with(json!([
            "dtmi:dtdl:context;3",
            { "term": "dtmi:ex:term;1" },
            "dtmi:dtdl:extension:quantitativeTypes;1"
        ]))]),
        ["localContextNotLast"]
    );
}

#[test]
fn value_objects_of_extension_properties_report_their_datatype() {
    valid(&[limited(
        json!("double"),
        json!({ "maximum": { "@value": 5.5 } }),
    )]);
    let cases = [
        (json!({ "@value": "five" }), "numericValueNotNumeric"),
        (
            json!({ "@value": 5, "@type": "xsd:string" }),
            "numericTypeNotNumeric",
        ),
        (json!({ "@type": "xsd:decimal" }), "numericObjectNoValue"),
        (
            json!({ "@value": 5, "@id": "dtmi:ex:v;1" }),
            "valueObjectId",
        ),
    ];
    for (value, code) in cases {
        find(
            &[limited(json!("double"), json!({ "maximum": value }))],
            code,
        );
    }
}

#[test]
fn extension_references_are_terms_or_dtmis_resolved_with_the_set() {
    let temperature = |unit: &str| {
        iface(
            2,
            json!([{ "@type": ["Telemetry", "Temperature"], "name": "t", "schema": "double", "unit": unit }]),
        )
    };
    valid(&[temperature("degreeCelsius")]);
    assert_eq!(ids(&[temperature("furlong")]), ["badDtmiOrTerm"]);
    assert_eq!(ids(&[temperature("Telemetry")]), ["badType"]);
    let e = find(
        &[temperature("dtmi:standard:unit:furlong;2")],
        "undefinedReservedId",
    );
    assert_eq!(
        e.secondary_id.as_deref(),
        Some("dtmi:standard:unit:furlong;2")
    );
    match outcome(&[temperature("dtmi:ex:furlong;1")]) {
        Err(ParseError::Unresolved { identifiers, .. }) => {
            assert_eq!(
                identifiers,
                BTreeSet::from(["dtmi:ex:furlong;1".to_string()])
            )
        }
        other => panic!("expected an unresolved unit, got {other:?}"),
    }
}

#[test]
fn an_object_with_only_an_id_is_a_reference_in_dtdl_v2() {
    let with_schema = |version: u8, schema: Value| {
        json!({ "@context": format!("dtmi:dtdl:context;{version}"), "@id": "dtmi:ex:Thing;1",
                "@type": "Interface",
                "schemas": [{ "@id": "dtmi:ex:point;1", "@type": "Object",
                              "fields": [{ "name": "x", "schema": "double" }] }],
                "contents": [{ "@type": "Telemetry", "name": "t", "schema": schema }] })
    };
    valid(&[with_schema(2, json!({ "@id": "dtmi:ex:point;1" }))]);
    valid(&[with_schema(2, json!({ "@id": "double" }))]);
    assert_eq!(
        ids(&[with_schema(2, json!({ "@id": "not a dtmi" }))]),
        ["idRefBadDtmiOrTerm"]
    );
    assert_eq!(
        ids(&[with_schema(3, json!({ "@id": "dtmi:ex:point;1" }))]),
        ["idReference"]
    );
}
