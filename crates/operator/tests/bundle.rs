//! The install bundle and the Helm chart's CRDs stay in sync with the CRD types.

use std::path::Path;

use ktwin_operator::bundle::{InstallOptions, install_bundle, operator_rules, to_yaml_stream};
use ktwin_planner::KtwinConfig;
use serde_json::Value;

fn crds() -> Vec<Value> {
    install_bundle(&KtwinConfig::default(), &InstallOptions::default())
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect()
}

#[test]
fn bundle_holds_namespaces_crds_rbac_operator_graph_and_defaults() {
    let bundle = install_bundle(&KtwinConfig::default(), &InstallOptions::default());
    let kinds: Vec<String> = bundle
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "Namespace/ktwin-system",
        "Namespace/ktwin",
        "CustomResourceDefinition/twininterfaces.dtd.ktwin",
        "ClusterRole/ktwin-operator",
        "Deployment/ktwin-operator",
        "Deployment/ktwin-graph",
        "Service/ktwin-graph",
        "EventStore/event-store",
        "MQTTTrigger/mqtt",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} missing from {kinds:?}"
        );
    }
    assert_eq!(crds().len(), 5);
    let without = install_bundle(
        &KtwinConfig::default(),
        &InstallOptions {
            defaults: false,
            ..InstallOptions::default()
        },
    );
    assert!(!without.iter().any(|o| o["kind"] == "EventStore"));
}

#[test]
fn operator_cannot_read_secrets() {
    for rule in operator_rules() {
        let resources = rule["resources"].as_array().unwrap();
        assert!(!resources.iter().any(|r| r == "secrets"), "{rule}");
        let verbs = rule["verbs"].as_array().unwrap();
        assert!(!verbs.iter().any(|v| v == "*"), "{rule}");
    }
}

/// `deploy/helm/ktwin/crds/ktwin.yaml` is generated from the CRD types; run this test with
/// `KTWIN_REGENERATE=1` after changing them.
#[test]
fn helm_chart_crds_match_the_types() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/ktwin/crds/ktwin.yaml");
    let expected = format!(
        "# Generated from crates/model (test helm_chart_crds_match_the_types); do not edit.\n{}",
        to_yaml_stream(&crds()).unwrap()
    );
    if std::env::var_os("KTWIN_REGENERATE").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is stale: rerun with KTWIN_REGENERATE=1",
        path.display()
    );
}
