//! The Helm chart cannot drift from `ktwin install --render`: it is generated from the bundle's
//! code (checked here against the committed files), and rendered with its own values it yields
//! exactly the bundle's objects (checked with the template subset the generator uses, since
//! Helm cannot run here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ktwin_operator::install::chart::chart_files;
use ktwin_operator::install::{DEFAULT_OPERATOR_NAMESPACE, InstallValues, install_bundle};
use ktwin_testkit::helm::render_chart;
use serde_json::{Value, json};

fn chart_dir() -> PathBuf {
    ktwin_testkit::workspace_root().join("deploy/helm/ktwin")
}

fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            files_under(&path, &format!("{name}/"), out);
        } else {
            out.push(name);
        }
    }
}

/// `deploy/helm/ktwin` is what `ktwin install --chart deploy/helm/ktwin` writes (rerun it, or
/// this test with `KTWIN_REGENERATE=1`, after changing the bundle).
#[test]
fn the_committed_chart_is_the_generated_one() {
    let generated = chart_files().unwrap();
    let dir = chart_dir();
    if std::env::var_os("KTWIN_REGENERATE").is_some() {
        for (path, text) in &generated {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
    let mut present = Vec::new();
    files_under(&dir, "", &mut present);
    present.sort();
    let expected: Vec<String> = generated.keys().cloned().collect();
    assert_eq!(present, expected, "files of {}", dir.display());
    for (path, text) in &generated {
        let actual = std::fs::read_to_string(dir.join(path)).unwrap();
        assert!(
            &actual == text,
            "{path} is stale: run `ktwin install --chart deploy/helm/ktwin`"
        );
    }
}

/// Objects keyed by kind/namespace/name, with the operator's configuration parsed (Helm's
/// `toJson` orders keys its own way; the operator reads either).
fn keyed(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|mut object| {
            if object["kind"] == "ConfigMap" {
                for value in object["data"].as_object_mut().unwrap().values_mut() {
                    *value = serde_json::from_str(value.as_str().unwrap()).unwrap();
                }
            }
            let key = format!(
                "{}/{}/{}",
                object["kind"].as_str().unwrap(),
                object["metadata"]["namespace"].as_str().unwrap_or("-"),
                object["metadata"]["name"].as_str().unwrap()
            );
            (key, object)
        })
        .collect()
}

/// The bundle minus the operator's namespace (`helm install --create-namespace` makes it).
fn bundle_for(values: &InstallValues) -> BTreeMap<String, Value> {
    let mut bundle = keyed(install_bundle(values, DEFAULT_OPERATOR_NAMESPACE).unwrap());
    bundle.remove(&format!("Namespace/-/{DEFAULT_OPERATOR_NAMESPACE}"));
    bundle
}

fn chart_for(values: Option<&InstallValues>) -> BTreeMap<String, Value> {
    let values = values.map(|v| serde_json::to_value(v).unwrap());
    keyed(render_chart(
        &chart_dir(),
        values.as_ref(),
        DEFAULT_OPERATOR_NAMESPACE,
    ))
}

fn assert_same(chart: BTreeMap<String, Value>, bundle: BTreeMap<String, Value>) {
    let chart_keys: Vec<&String> = chart.keys().collect();
    let bundle_keys: Vec<&String> = bundle.keys().collect();
    assert_eq!(chart_keys, bundle_keys);
    for (key, object) in &bundle {
        assert_eq!(&chart[key], object, "{key}");
    }
}

#[test]
fn with_its_default_values_the_chart_yields_the_bundle() {
    assert_same(chart_for(None), bundle_for(&InstallValues::default()));
}

#[test]
fn with_other_values_the_chart_still_yields_the_bundle() {
    let mut values = InstallValues {
        namespace: "city".into(),
        ..InstallValues::default()
    };
    values.image.repository = "registry.example/ktwin".into();
    values.image.tag = "9.9.9".into();
    values.operator.replicas = 3;
    values.operator.leader_elect = false;
    values.graph.replicas = 2;
    values.mqtt_trigger.enabled = false;
    values.event_store.spec.database =
        serde_json::from_value(json!({"secretKeyRef": {"name": "store-db", "key": "url"}}))
            .unwrap();
    values.config.images.event_store = Some("registry.example/store:1".into());
    values.config.graph_service = "graph".into();
    let chart = chart_for(Some(&values));
    let deployment = &chart["Deployment/ktwin-system/ktwin-operator"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/ktwin:9.9.9"
    );
    assert!(chart.contains_key("Deployment/city/graph"));
    assert!(!chart.keys().any(|k| k.starts_with("MQTTTrigger/")));
    assert_eq!(
        chart["EventStore/city/event-store"]["spec"]["database"]["secretKeyRef"]["name"],
        "store-db"
    );
    assert_same(chart, bundle_for(&values));
}
