//! The smart-city ontologies in `../shared/corpora/dtdl` parse as model sets.

use std::path::PathBuf;

use ktwin_dtdl::load_documents;
use ktwin_dtdl::{ContentKind, ParseError, ParseOptions, parse};

fn corpus(name: &str) -> Option<PathBuf> {
    ktwin_testkit::shared(&format!("corpora/dtdl/{name}"))
}

#[test]
fn smartcities_parses_as_one_model_set() {
    let Some(dir) = corpus("smartcities") else {
        return;
    };
    let docs = load_documents(&[dir]).expect("corpus readable");
    assert_eq!(docs.len(), 63, "the smart-cities set has 63 JSON documents");
    let set = match parse(&docs, &ParseOptions::default()) {
        Ok(set) => set,
        Err(e) => panic!(
            "smartcities must parse: {e}\n{:#?}",
            e.errors().collect::<Vec<_>>()
        ),
    };
    assert_eq!(set.len(), 63);
    // Inheritance is flattened: every interface's parents are in the set and their
    // contents appear in the child with the parent as origin.
    for iface in set.iter() {
        for parent in &iface.extends {
            let p = set.interface(parent).expect("parent in set");
            for c in &p.contents {
                let inherited = iface.content(&c.name).expect("inherited content present");
                assert_eq!(inherited.origin, c.origin);
            }
        }
    }
    let relationships = set.iter().flat_map(|i| i.relationships()).count();
    assert!(relationships > 0, "the ontology has relationships");
    assert!(
        set.iter()
            .flat_map(|i| &i.contents)
            .any(|c| matches!(c.kind, ContentKind::Property(_)))
    );
}

#[test]
fn ktwin_smartcities_needs_lenient_ids() {
    let Some(dir) = corpus("ktwin-smartcities") else {
        return;
    };
    let docs = load_documents(&[dir]).expect("corpus readable");
    let strict = parse(&docs, &ParseOptions::default());
    let Err(ParseError::Invalid { diagnostics }) = strict else {
        panic!("non-DTMI ids must be rejected without --lenient-ids");
    };
    let first = diagnostics
        .iter()
        .find(|d| d.short_id() == "invalidId")
        .expect("an invalidId diagnostic");
    assert!(
        first.message.contains("--lenient-ids"),
        "message points at the option: {}",
        first.message
    );
    assert_eq!(first.pointer, "/@id");
    let lenient = ParseOptions {
        lenient_ids: true,
        ..ParseOptions::default()
    };
    // The KTWIN fork dropped the `schemas` block that defined `openinghoursForDay` (its CLI
    // never resolved schema ids), so the complete set stops at exactly that identifier.
    match parse(&docs, &lenient) {
        Err(ParseError::Unresolved { identifiers, .. }) => {
            assert_eq!(
                identifiers.into_iter().collect::<Vec<_>>(),
                vec!["ngsi_ld:city:openinghoursForDay".to_string()]
            );
        }
        Ok(_) => panic!("the ontology references an undefined schema"),
        Err(e) => panic!(
            "only the undefined schema may stop the lenient parse: {e}\n{:#?}",
            e.errors().collect::<Vec<_>>()
        ),
    }
    // Restoring the upstream definition (the migration step a user would take) completes it.
    let upstream = corpus("smartcities").expect("upstream ontology next to the fork");
    let upstream_doc =
        load_documents(&[upstream.join("Ontology/PointOfInterest/openingHoursSpecification.json")])
            .expect("upstream file");
    let upstream_json: serde_json::Value =
        serde_json::from_str(&upstream_doc[0].text).expect("upstream JSON");
    let mut schemas = upstream_json["schemas"].clone();
    let mut text = serde_json::to_string(&schemas).expect("serializable");
    text = text.replace(
        "dtmi:digitaltwins:ngsi_ld:city:openinghoursForDay;1",
        "ngsi_ld:city:openinghoursForDay",
    );
    schemas = serde_json::from_str(&text).expect("valid JSON");
    let complete: Vec<_> = docs
        .into_iter()
        .map(|mut d| {
            if d.name.ends_with("openingHoursSpecification.json") {
                let mut json: serde_json::Value = serde_json::from_str(&d.text).expect("fork JSON");
                json["schemas"] = schemas.clone();
                d.text = json.to_string();
            }
            d
        })
        .collect();
    let set = match parse(&complete, &lenient) {
        Ok(set) => set,
        Err(e) => panic!(
            "ktwin-smartcities must parse with lenient ids: {e}\n{:#?}",
            e.errors().collect::<Vec<_>>()
        ),
    };
    assert_eq!(set.len(), complete.len());
    assert!(set.warnings.iter().any(|w| w.short_id() == "lenientId"));
    let pole = set.interface("city:Pole").expect("city:Pole defined");
    assert!(
        pole.relationships().count() > 0,
        "Pole links streetlights and sensors"
    );
}
