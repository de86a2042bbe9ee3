//! DTDL → TwinInterface: the smart-cities corpus compiles into 63 interfaces that validate
//! against the generated CRD schema, every schema kind maps, and bad input is reported per file.

use ktwin_dtdl::{Document, ParseOptions};
use ktwin_model::compile::{NameOptions, compile_documents};
use ktwin_model::{TwinInterface, output::crd_files};

fn names() -> NameOptions {
    NameOptions {
        namespace: "ktwin".into(),
        strip_prefix: Some("dtmi:digitaltwins:".into()),
    }
}

/// JSON Schema of TwinInterface objects: the CRD's openAPIV3Schema.
fn twin_interface_validator() -> jsonschema::Validator {
    let (_, yaml) = crd_files()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "dtd.ktwin_twininterfaces.yaml")
        .unwrap();
    let crd: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, ti: &TwinInterface) {
    let value = serde_json::to_value(ti).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{:?} does not validate: {errors:#?}",
        ti.metadata.name
    );
}

#[test]
fn smartcities_corpus_compiles_to_63_valid_interfaces() {
    let Some(dir) = ktwin_testkit::shared("corpora/dtdl/smartcities") else {
        return;
    };
    let docs = ktwin_model::project::load_documents(&[dir]).unwrap();
    let compilation = compile_documents(&docs, &ParseOptions::default(), &names());
    assert!(compilation.errors.is_empty(), "{:#?}", compilation.errors);
    let interfaces = compilation.interfaces();
    assert_eq!(interfaces.len(), 63);
    let validator = twin_interface_validator();
    for ti in &interfaces {
        assert_valid(&validator, ti);
        ktwin_model::names::validate_dns1035(ti.metadata.name.as_deref().unwrap()).unwrap();
    }
    let by_name = |n: &str| {
        interfaces
            .iter()
            .find(|i| i.metadata.name.as_deref() == Some(n))
            .copied()
    };
    let pole = by_name("city-pole").expect("city-pole");
    assert_eq!(
        pole.spec.extends_interface.as_deref(),
        Some("s4city-city-cityfurniture")
    );
    let targets: Vec<_> = pole
        .spec
        .relationships
        .iter()
        .map(|r| r.interface.as_deref().unwrap())
        .collect();
    assert!(
        targets.contains(&"ngsi-ld-city-airqualityobserved"),
        "{targets:?}"
    );
    let aq = by_name("ngsi-ld-city-airqualityobserved").expect("air quality");
    let location = aq
        .spec
        .properties
        .iter()
        .find(|p| p.name == "typeOfLocation")
        .unwrap();
    let values = &location
        .schema
        .as_ref()
        .unwrap()
        .enum_type
        .as_ref()
        .unwrap()
        .enum_values;
    assert_eq!(values.len(), 2);
    assert!(by_name("s4city-city-neighbourhood").is_some());
    // Components are kept (the original dropped them).
    assert!(interfaces.iter().any(|i| !i.spec.components.is_empty()));
    // Deterministic output.
    let again = compile_documents(&docs, &ParseOptions::default(), &names());
    let a = ktwin_model::output::to_yaml_stream(interfaces.iter().copied()).unwrap();
    let b = ktwin_model::output::to_yaml_stream(again.interfaces()).unwrap();
    assert_eq!(a, b);
    assert!(!a.contains("creationTimestamp") && !a.contains("status:"));
}

#[test]
fn every_schema_kind_and_several_extends_map() {
    let doc = Document::new(
        "kinds.json",
        r#"[
      {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:A;1", "@type": "Interface",
       "contents": [{"@type": "Relationship", "name": "peer", "target": "dtmi:ex:B;1", "maxMultiplicity": 3}]},
      {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:B;1", "@type": "Interface", "contents": []},
      {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:C;2", "@type": "Interface",
       "extends": ["dtmi:ex:A;1", "dtmi:ex:B;1"],
       "contents": [
         {"@type": "Property", "name": "tags", "writable": true,
          "schema": {"@type": "Array", "elementSchema": {"@type": "Object", "fields": [
            {"name": "key", "schema": "string"},
            {"name": "nested", "schema": {"@type": "Object", "fields": [{"name": "deep", "schema": "dateTime"}]}}]}}},
         {"@type": "Property", "name": "counters",
          "schema": {"@type": "Map", "mapKey": {"name": "k", "schema": "string"}, "mapValue": {"name": "v", "schema": "long"}}},
         {"@type": "Telemetry", "name": "level",
          "schema": {"@type": "Enum", "valueSchema": "integer", "enumValues": [
            {"name": "low", "enumValue": 1}, {"name": "high", "enumValue": 2}]}},
         {"@type": "Command", "name": "reset",
          "request": {"name": "req", "schema": {"@type": "Array", "elementSchema": "integer"}},
          "response": {"name": "res", "schema": "boolean"}},
         {"@type": "Component", "name": "part", "schema": "dtmi:ex:B;1"}
       ]}
    ]"#,
    );
    let compilation = compile_documents(&[doc], &ParseOptions::default(), &NameOptions::default());
    assert!(compilation.errors.is_empty(), "{:#?}", compilation.errors);
    let interfaces = compilation.interfaces();
    let c = interfaces
        .iter()
        .find(|i| i.metadata.name.as_deref() == Some("dtmi-ex-c-v2"))
        .unwrap();
    assert_eq!(c.spec.parents(), vec!["dtmi-ex-a", "dtmi-ex-b"]);
    let yaml = ktwin_model::output::to_yaml(*c).unwrap();
    for needle in [
        "arrayType",
        "elementSchema",
        "complexType",
        "deep",
        "mapType",
        "mapValue",
        "primitiveType: long",
        "enumValue: 2",
        "response",
        "components",
    ] {
        assert!(yaml.contains(needle), "missing {needle} in\n{yaml}");
    }
    // Inherited relationship is not copied; it is reachable through the interface graph.
    assert!(c.spec.relationships.is_empty());
    let graph = ktwin_model::InterfaceGraph::from_interfaces(interfaces.iter().copied());
    assert_eq!(
        graph
            .relationship("dtmi-ex-c-v2", "peer")
            .unwrap()
            .max_multiplicity,
        Some(3)
    );
    let validator = twin_interface_validator();
    for ti in &interfaces {
        assert_valid(&validator, ti);
    }
    // Round trip through YAML.
    let back: TwinInterface = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(&back, *c);
}

fn doc(name: &str, body: &str) -> Document {
    Document::new(name, body)
}

#[test]
fn one_bad_file_does_not_stop_the_others_and_errors_name_file_and_field() {
    let good = doc(
        "good.json",
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Good;1","@type":"Interface","contents":[]}"#,
    );
    let bad = doc(
        "bad.json",
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Bad;1","@type":"Interface","contents":[{"@type":"Property","name":"x","schema":"strin"}]}"#,
    );
    let dangling = doc(
        "dangling.json",
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Child;1","@type":"Interface","extends":"dtmi:ex:Missing;1","contents":[]}"#,
    );
    let broken_json = doc("broken.json", "{ not json");
    let c = compile_documents(
        &[good, bad, dangling, broken_json],
        &ParseOptions::default(),
        &NameOptions::default(),
    );
    let compiled: Vec<_> = c
        .interfaces()
        .iter()
        .map(|i| i.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(compiled, vec!["dtmi-ex-good"]);
    let failed: Vec<_> = c.errors.iter().map(|e| e.document.as_str()).collect();
    assert_eq!(failed, vec!["bad.json", "broken.json", "dangling.json"]);
    let bad_msg = c.errors[0].messages.join("\n");
    assert!(bad_msg.contains("bad.json#/contents/0/schema"), "{bad_msg}");
    assert!(
        c.errors[2].messages[0].contains("dtmi:ex:Missing;1"),
        "{:?}",
        c.errors[2]
    );
}

#[test]
fn extends_cycles_and_name_clashes_are_errors_naming_the_files() {
    let a = doc(
        "a.json",
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:A;1","@type":"Interface","extends":"dtmi:ex:B;1","contents":[]}"#,
    );
    let b = doc(
        "b.json",
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:B;1","@type":"Interface","extends":"dtmi:ex:A;1","contents":[]}"#,
    );
    let c = compile_documents(&[a, b], &ParseOptions::default(), &NameOptions::default());
    assert!(c.interfaces().is_empty());
    assert!(!c.errors.is_empty());
    let all = format!("{:?}", c.errors);
    assert!(all.contains("a.json") || all.contains("b.json"), "{all}");

    // Two DTMIs that normalise to the same Kubernetes name.
    let x = doc(
        "x.json",
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:air_quality;1","@type":"Interface","contents":[]}"#,
    );
    let y = doc(
        "y.json",
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:air:quality;1","@type":"Interface","contents":[]}"#,
    );
    let z = doc(
        "z.json",
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Other;1","@type":"Interface","contents":[]}"#,
    );
    let c = compile_documents(
        &[x, y, z],
        &ParseOptions::default(),
        &NameOptions::default(),
    );
    assert_eq!(c.interfaces().len(), 1, "the unrelated file still compiles");
    assert_eq!(c.errors.len(), 2);
    assert!(
        c.errors[0].messages[0].contains("normalise to the name dtmi-ex-air-quality")
            || c.errors[0].messages[0].contains("dtmi-ex-airquality"),
        "{:?}",
        c.errors
    );
}
