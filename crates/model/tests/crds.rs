//! `deploy/crds/` holds exactly the CRDs generated from the types, and the CRDs carry the
//! validation, printer columns, defaults and status the v0 API lacked.

use std::path::PathBuf;

use ktwin_model::output::crd_files;

fn deploy_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crds"))
}

/// Regenerate with `KTWIN_BLESS=1 cargo test -p ktwin-model --test crds` (or
/// `ktwin crds --out deploy/crds`).
#[test]
fn deploy_crds_equal_the_generated_ones() {
    let files = crd_files().unwrap();
    if std::env::var_os("KTWIN_BLESS").is_some() {
        for (name, yaml) in &files {
            std::fs::write(deploy_dir().join(name), yaml).unwrap();
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut generated: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    generated.sort();
    assert_eq!(
        on_disk, generated,
        "deploy/crds has other files than the generated CRDs"
    );
    for (name, yaml) in &files {
        let committed = std::fs::read_to_string(deploy_dir().join(name)).unwrap();
        assert!(
            committed == *yaml,
            "deploy/crds/{name} differs from the generated CRD: run `ktwin crds --out deploy/crds`"
        );
    }
}

fn crd_json(file: &str) -> serde_json::Value {
    let (_, yaml) = crd_files()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == file)
        .unwrap();
    serde_yaml_ng::from_str(&yaml).unwrap()
}

#[test]
fn crds_have_validation_columns_defaults_and_status() {
    let ti = crd_json("dtd.ktwin_twininterfaces.yaml");
    let version = &ti["spec"]["versions"][0];
    assert_eq!(version["name"], "v0");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<_> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for c in ["Phase", "Ready", "Age"] {
        assert!(columns.contains(&c), "{columns:?}");
    }
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let scaling = &spec["service"]["properties"]["autoScaling"];
    assert!(
        scaling["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("minScale <= self.maxScale")
    );
    assert_eq!(
        scaling["properties"]["metric"]["enum"],
        serde_json::json!(["concurrency", "rps", "cpu", "memory"])
    );
    assert_eq!(scaling["properties"]["minScale"]["minimum"], 0.0);
    // v0 spellings.
    assert!(spec["properties"]["items"]["properties"]["writable"].is_object());
    assert!(spec["relationships"]["items"]["properties"]["writeable"].is_object());
    assert!(spec["relationships"]["items"]["properties"]["aggregateData"].is_object());
    // Any schema id, as the original CLI wrote them (`ngsi_ld:city:AirQualityLevel`).
    let primitive =
        &spec["properties"]["items"]["properties"]["schema"]["properties"]["primitiveType"];
    assert_eq!(primitive["type"], "string");
    assert!(primitive["enum"].is_null(), "{primitive}");
    // eventing-rabbitmq's webhook accepts 1–1000.
    assert_eq!(scaling["properties"]["parallelism"]["maximum"], 1000.0);
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    for f in ["phase", "observedGeneration", "conditions"] {
        assert!(status[f].is_object(), "status.{f}");
    }

    // Client-side `kubectl apply` stores the object as JSON in a 256 KiB annotation.
    let compact = serde_json::to_string(&ti).unwrap();
    assert!(
        compact.len() < 256 * 1024,
        "TwinInterface CRD is {} bytes as JSON",
        compact.len()
    );

    let es = crd_json("core.ktwin_eventstores.yaml");
    let timeout = &es["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["timeout"];
    assert_eq!(timeout["default"], 3000);

    let mqtt = crd_json("core.ktwin_mqtttriggers.yaml");
    let spec = &mqtt["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(
        spec["queueType"]["enum"],
        serde_json::json!(["quorum", "classic"])
    );
    assert!(spec["mqttDispatcher"]["properties"]["prefetch"].is_object());

    let gw = crd_json("core.ktwin_gateways.yaml");
    let required =
        &gw["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"];
    assert_eq!(required, &serde_json::json!(["auth"]));
}

#[test]
fn v0_yaml_still_deserializes() {
    // As the original CLI produced it (plus the hand-set aggregateData and eventStore flags).
    let yaml = r#"
apiVersion: dtd.ktwin/v0
kind: TwinInterface
metadata: {name: city-pole, namespace: ktwin}
spec:
  id: city-pole
  extendsInterface: s4city-city-cityfurniture
  properties:
  - {name: height, writable: true, schema: {primitiveType: double}}
  relationships:
  - {name: refStreetlight, interface: ngsi-ld-city-streetlight, aggregateData: true, writeable: true}
  commands:
  - name: updateairqualityindex
    request: {name: req, schema: {complexType: {type: Object, fields: [{name: aqiLevel, schema: {primitiveType: string}}]}}}
  eventStore: {persistRealEvent: true}
  service:
    autoScaling: {maxScale: 20, target: 10, parallelism: 100, targetUtilizationPercentage: 65, metric: concurrency}
    template: {spec: {containers: [{name: city-pole, image: "ghcr.io/open-digital-twin/ktwin-city-pole-service:0.1", imagePullPolicy: IfNotPresent}]}}
"#;
    let ti: ktwin_model::TwinInterface = serde_yaml_ng::from_str(yaml).unwrap();
    assert!(ti.spec.relationships[0].aggregate_data && ti.spec.relationships[0].writeable);
    assert!(ti.spec.properties[0].writable);
    assert_eq!(ti.spec.parents(), vec!["s4city-city-cityfurniture"]);
    let instance = r#"
apiVersion: dtd.ktwin/v0
kind: TwinInstance
metadata: {name: city-pole-001, namespace: ktwin}
spec:
  interface: city-pole
  data: {properties: [{id: x, name: height, value: ""}]}
  twinInstanceRelationships:
  - {name: refStreetlight, interface: ngsi-ld-city-streetlight, instance: ngsi-ld-city-streetlight-001}
"#;
    let inst: ktwin_model::TwinInstance = serde_yaml_ng::from_str(instance).unwrap();
    assert_eq!(
        inst.spec.twin_instance_relationships[0].instance,
        "ngsi-ld-city-streetlight-001"
    );
    let store: ktwin_model::EventStore = serde_yaml_ng::from_str(
        "apiVersion: core.ktwin/v0\nkind: EventStore\nmetadata: {name: event-store}\nspec: {}\n",
    )
    .unwrap();
    assert_eq!(
        store.spec.timeout, 3000,
        "timeout defaults instead of crashing"
    );
    // Serialising adds no noise.
    let yaml = serde_yaml_ng::to_string(&inst).unwrap();
    assert!(!yaml.contains("null") && !yaml.contains("status"), "{yaml}");
}
