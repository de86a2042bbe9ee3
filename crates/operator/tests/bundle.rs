//! The install bundle: what it holds, least privilege, and readiness that lets two operator
//! replicas become Available.

use ktwin_operator::install::apply::{Step, install_steps};
use ktwin_operator::install::{
    DEFAULT_OPERATOR_NAMESPACE, InstallValues, install_bundle, operator_rules,
};
use serde_json::Value;

fn bundle(values: &InstallValues) -> Vec<Value> {
    install_bundle(values, DEFAULT_OPERATOR_NAMESPACE).unwrap()
}

fn names(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn bundle_holds_namespaces_crds_rbac_operator_graph_and_the_world() {
    let objects = bundle(&InstallValues::default());
    let kinds = names(&objects);
    for expected in [
        "Namespace/ktwin-system",
        "Namespace/ktwin",
        "CustomResourceDefinition/twininterfaces.dtd.ktwin",
        "ClusterRole/ktwin-operator",
        "ConfigMap/ktwin-operator-config",
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
    let crds = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .count();
    assert_eq!(crds, 5);
    let mut values = InstallValues::default();
    values.event_store.enabled = false;
    assert!(!bundle(&values).iter().any(|o| o["kind"] == "EventStore"));
}

#[test]
fn the_graph_runs_the_graph_service_on_the_kubernetes_source() {
    let objects = bundle(&InstallValues::default());
    let graph = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "ktwin-graph")
        .unwrap();
    let container = &graph["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], serde_json::json!(["graph"]));
    let env = container["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).unwrap()["value"].clone();
    assert_eq!(var("KTWIN_GRAPH_SOURCE"), "kubernetes");
    assert_eq!(var("KTWIN_NAMESPACE"), "ktwin");
    assert_eq!(
        graph["spec"]["template"]["spec"]["serviceAccountName"],
        "ktwin-graph"
    );
}

#[test]
fn the_operator_reads_the_values_config_and_its_image() {
    let mut values = InstallValues::default();
    values.image.repository = "registry.example/ktwin".into();
    values.config.images.mqtt_dispatcher = Some("registry.example/dispatcher:2".into());
    let objects = bundle(&values);
    let config = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let text = config["data"]["config.yaml"].as_str().unwrap();
    let parsed: ktwin_planner::KtwinConfig = serde_yaml_ng::from_str(text).unwrap();
    assert_eq!(parsed, values.config);
    let operator = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "ktwin-operator")
        .unwrap();
    let container = &operator["spec"]["template"]["spec"]["containers"][0];
    let image = format!("registry.example/ktwin:{}", values.image.tag);
    assert_eq!(container["image"], image.as_str());
    let env = container["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "KTWIN_IMAGE" && e["value"] == image.as_str())
    );
    // Readiness is "serving", on every replica (leadership is not readiness).
    assert_eq!(operator["spec"]["replicas"], 2);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
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

#[test]
fn install_applies_crds_waits_for_them_then_applies_the_rest() {
    let objects = bundle(&InstallValues::default());
    let steps: Vec<Step> = install_steps(&objects)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let last_crd = steps
        .iter()
        .rposition(|s| matches!(s, Step::Apply { kind, .. } if kind == "CustomResourceDefinition"))
        .unwrap();
    let first_wait = steps
        .iter()
        .position(|s| matches!(s, Step::WaitEstablished(_)))
        .unwrap();
    let first_other = steps
        .iter()
        .position(|s| matches!(s, Step::Apply { kind, .. } if kind != "CustomResourceDefinition"))
        .unwrap();
    assert!(
        last_crd < first_wait && first_wait < first_other,
        "{steps:?}"
    );
    let waits = steps
        .iter()
        .filter(|s| matches!(s, Step::WaitEstablished(_)))
        .count();
    assert_eq!(waits, 5);
    // The world's resources come after the CRDs that define them are served.
    let event_store = steps
        .iter()
        .position(|s| matches!(s, Step::Apply { kind, .. } if kind == "EventStore"))
        .unwrap();
    assert!(event_store > first_wait);
    assert_eq!(steps.len(), objects.len() + waits);
}

#[test]
fn a_network_policy_admits_only_the_platforms_flows_to_the_worlds_pods() {
    let objects = bundle(&InstallValues::default());
    let policy = objects
        .iter()
        .find(|o| o["kind"] == "NetworkPolicy")
        .expect("the bundle holds the world's NetworkPolicy");
    assert_eq!(policy["metadata"]["namespace"], "ktwin");
    let spec = &policy["spec"];
    assert_eq!(spec["policyTypes"], serde_json::json!(["Ingress"]));
    // Every pod but the public ones (gateways) and RabbitMQ's is selected…
    let selector = spec["podSelector"]["matchExpressions"].as_array().unwrap();
    assert!(selector.contains(&serde_json::json!(
        {"key": "ktwin/public", "operator": "DoesNotExist"}
    )));
    assert!(selector.contains(&serde_json::json!(
        {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["rabbitmq"]}
    )));
    let graph = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "ktwin-graph")
        .unwrap();
    let graph_labels = graph["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    assert!(
        !graph_labels.contains_key("ktwin/public"),
        "the graph is selected"
    );
    // …and admits its own namespace's pods and Knative's namespaces, nothing else.
    let from = spec["ingress"][0]["from"].as_array().unwrap();
    assert_eq!(spec["ingress"].as_array().unwrap().len(), 1);
    assert_eq!(from[0], serde_json::json!({"podSelector": {}}));
    assert_eq!(
        from[1]["namespaceSelector"]["matchExpressions"][0]["values"],
        serde_json::json!(["knative-serving", "knative-eventing"])
    );
    assert!(from.len() == 2, "{from:?}");
    let mut values = InstallValues::default();
    values.network_policy.enabled = false;
    assert!(!bundle(&values).iter().any(|o| o["kind"] == "NetworkPolicy"));
}
