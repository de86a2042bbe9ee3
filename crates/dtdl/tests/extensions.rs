//! The MQTT extension's binding in the parsed model, limit profiles, affiliate contexts with
//! minor versions, and the element ids diagnostics report.

use ktwin_dtdl::{Document, ParseError, ParseOptions, TopicPattern, parse};
use serde_json::{Value, json};

fn parse_json(model: Value, options: &ParseOptions) -> Result<ktwin_dtdl::ModelSet, ParseError> {
    parse(&[Document::new("model.json", model.to_string())], options)
}

fn error_ids(result: Result<ktwin_dtdl::ModelSet, ParseError>) -> Vec<String> {
    match result {
        Ok(_) => panic!("expected the model to be invalid"),
        Err(e) => e.errors().map(|d| d.short_id().to_string()).collect(),
    }
}

fn mqtt_interface(extension: u8, dtdl: u8) -> Value {
    json!({
        "@context": [format!("dtmi:dtdl:context;{dtdl}"), format!("dtmi:dtdl:extension:mqtt;{extension}")],
        "@id": "dtmi:example:Vehicle;1",
        "@type": ["Interface", "Mqtt"],
        "telemetryTopic": "vehicles/{modelId}/{senderId}/telemetry",
        "commandTopic": "vehicles/{executorId}/command/{commandName}",
        "payloadFormat": "Json/ecma/404",
        "contents": [
            { "@type": "Telemetry", "name": "distance", "schema": "double" },
            { "@type": "Command", "name": "setColor",
              "request": { "name": "newColor", "schema": "string" } }
        ]
    })
}

#[test]
fn every_mqtt_extension_version_exposes_the_binding() {
    for (extension, dtdl) in [(1, 3), (2, 3), (2, 4), (3, 4), (4, 4)] {
        let set = match parse_json(mqtt_interface(extension, dtdl), &ParseOptions::default()) {
            Ok(set) => set,
            Err(e) => panic!("mqtt;{extension} in DTDL v{dtdl}: {e}"),
        };
        let iface = set.interface("dtmi:example:Vehicle;1").unwrap();
        let mqtt = iface.mqtt().expect("the interface is co-typed Mqtt");
        assert_eq!(mqtt.extension_version, extension);
        assert_eq!(mqtt.payload_format, "Json/ecma/404");
        assert_eq!(
            mqtt.telemetry_topic,
            Some(TopicPattern::new("vehicles/{modelId}/{senderId}/telemetry"))
        );
        assert_eq!(
            mqtt.command_topic
                .as_ref()
                .map(TopicPattern::subscription_filter),
            Some("vehicles/+/command/+".to_string())
        );
        assert_eq!(mqtt.property_topic, None);
    }
}

#[test]
fn an_interface_without_the_mqtt_cotype_has_no_binding() {
    let model = json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:Plain;1",
        "@type": "Interface",
        "contents": []
    });
    let set = parse_json(model, &ParseOptions::default()).unwrap();
    assert!(
        set.interface("dtmi:example:Plain;1")
            .unwrap()
            .mqtt()
            .is_none()
    );
}

#[test]
fn mqtt_topics_service_groups_and_payload_format_are_checked() {
    let mut bad_topic = mqtt_interface(3, 4);
    bad_topic["telemetryTopic"] = json!("vehicles/+/telemetry");
    assert!(
        error_ids(parse_json(bad_topic, &ParseOptions::default()))
            .contains(&"stringInvalid".to_string())
    );

    let mut bad_group = mqtt_interface(2, 4);
    bad_group["telemServiceGroupId"] = json!("group/one");
    assert!(
        error_ids(parse_json(bad_group, &ParseOptions::default()))
            .contains(&"stringInvalid".to_string())
    );

    let mut numeric_format = mqtt_interface(4, 4);
    numeric_format["payloadFormat"] = json!(404);
    assert!(
        error_ids(parse_json(numeric_format, &ParseOptions::default()))
            .contains(&"stringNotString".to_string())
    );

    let mut no_format = mqtt_interface(3, 4);
    no_format.as_object_mut().unwrap().remove("payloadFormat");
    assert!(
        error_ids(parse_json(no_format, &ParseOptions::default()))
            .contains(&"missingSupplementalLiteralProperty".to_string())
    );
}

fn nested_arrays(depth: usize) -> Value {
    let mut schema = json!("double");
    for _ in 0..depth {
        schema = json!({ "@type": "Array", "elementSchema": schema });
    }
    schema
}

#[test]
fn limit_profiles_change_the_nesting_limit() {
    let model = |context: Value| {
        json!({
            "@context": context,
            "@id": "dtmi:example:Deep;1",
            "@type": "Interface",
            "contents": [{ "@type": "Telemetry", "name": "deep", "schema": nested_arrays(10) }]
        })
    };
    let default = model(json!("dtmi:dtdl:context;4"));
    assert!(
        error_ids(parse_json(default, &ParseOptions::default()))
            .contains(&"excessiveDepthWide".to_string())
    );
    let onvif = model(json!([
        "dtmi:dtdl:context;4#limitless",
        "dtmi:dtdl:limits:onvif;1"
    ]));
    if let Err(e) = parse_json(onvif, &ParseOptions::default()) {
        panic!("the onvif profile allows 24 levels: {e}");
    }
}

#[test]
fn affiliate_contexts_take_a_minor_version_from_dtdl_v3_on() {
    let model = |dtdl: u8| {
        json!({
            "@context": [format!("dtmi:dtdl:context;{dtdl}"), "dtmi:foo:bar;1.1"],
            "@id": "dtmi:test:anInterface;1",
            "@type": "Interface",
            "contents": [{ "@type": "Property", "name": "expectedDistance", "schema": "double" }]
        })
    };
    let tolerant = ParseOptions {
        allow_undefined_extensions: true,
        ..ParseOptions::default()
    };
    for dtdl in [3, 4] {
        if let Err(e) = parse_json(model(dtdl), &tolerant) {
            panic!("DTDL v{dtdl}: {e}");
        }
    }
    assert_eq!(
        error_ids(parse_json(model(2), &ParseOptions::default())),
        ["invalidContextSpecifierForVersion"]
    );
}

#[test]
fn diagnostics_name_the_elements_they_are_about() {
    let model = json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:Thing;1",
        "@type": "Interface",
        "contents": [
            { "@type": "Property", "name": "p", "schema": "dtmi:example:Missing;1" },
            { "@type": "Telemetry", "name": "bad name!", "schema": "double" }
        ]
    });
    let Err(ParseError::Invalid { diagnostics }) = parse_json(model, &ParseOptions::default())
    else {
        panic!("the name is invalid");
    };
    let name = diagnostics
        .iter()
        .find(|d| d.short_id() == "stringInvalid")
        .expect("the bad name is reported");
    assert_eq!(
        name.primary_id.as_deref(),
        Some("dtmi:example:Thing:_contents:__bad name!;1")
    );
    let json = serde_json::to_value(name).unwrap();
    assert_eq!(json["id"], "dtmi:dtdl:parsingError:stringInvalid");
    assert_eq!(
        json["primaryId"],
        "dtmi:example:Thing:_contents:__bad name!;1"
    );

    let reference = json!([{
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:Thing;1",
        "@type": "Interface",
        "contents": [{ "@type": "Property", "name": "p", "schema": "dtmi:example:Other;1" }]
    }, {
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:Other;1",
        "@type": "Interface"
    }]);
    let Err(ParseError::Invalid { diagnostics }) = parse_json(reference, &ParseOptions::default())
    else {
        panic!("an interface is not a schema");
    };
    let wrong = diagnostics
        .iter()
        .find(|d| d.short_id() == "badType")
        .expect("the wrong reference is reported");
    assert_eq!(
        wrong.primary_id.as_deref(),
        Some("dtmi:example:Thing:_contents:__p;1")
    );
    assert_eq!(wrong.secondary_id.as_deref(), Some("dtmi:example:Other;1"));
}

#[test]
fn a_maximum_dtdl_version_rejects_newer_contexts() {
    let v3 = json!({ "@context": "dtmi:dtdl:context;3", "@id": "dtmi:example:V3;1",
                     "@type": "Interface" });
    let at_most_2 = ParseOptions {
        max_dtdl_version: Some(2),
        ..ParseOptions::default()
    };
    assert_eq!(
        error_ids(parse_json(v3.clone(), &at_most_2)),
        ["disallowedContextVersion"]
    );
    let at_most_3 = ParseOptions {
        max_dtdl_version: Some(3),
        ..ParseOptions::default()
    };
    assert!(parse_json(v3, &at_most_3).is_ok());
}

#[test]
fn partner_prefixes_are_reserved_only_under_their_context() {
    let with =
        |context: Value, id: &str| json!({ "@context": context, "@id": id, "@type": "Interface" });
    let options = ParseOptions::default();
    for (partner, version, id) in [
        ("dtmi:iotcentral:context;2", 2, "dtmi:iotcentral:Thing;1"),
        (
            "dtmi:iotoperations:context;4",
            4,
            "dtmi:iotoperations:Thing;1",
        ),
    ] {
        let dtdl = format!("dtmi:dtdl:context;{version}");
        assert_eq!(
            error_ids(parse_json(with(json!([dtdl, partner]), id), &options)),
            ["reservedId"]
        );
        assert!(
            parse_json(with(json!(dtdl), id), &options).is_ok(),
            "{id} without {partner}"
        );
    }
    // A reference to an element under a reserved prefix that is not defined is an error.
    let reference = json!({ "@context": "dtmi:dtdl:context;3", "@id": "dtmi:example:R;1",
                            "@type": "Interface", "contents": ["dtmi:iotcentral:missing;1"] });
    assert_eq!(
        error_ids(parse_json(reference, &options)),
        ["undefinedReservedId"]
    );
    // The DTDL prefixes stay reserved whatever the context.
    let dtdl_id = with(json!("dtmi:dtdl:context;3"), "dtmi:dtdl:Mine;1");
    assert_eq!(error_ids(parse_json(dtdl_id, &options)), ["reservedId"]);
}
