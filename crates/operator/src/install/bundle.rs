//! The install bundle: namespaces, ktwin CRDs, least-privilege RBAC, the operator (with its
//! configuration), the twin graph service and the world's EventStore and MQTTTrigger.
//!
//! `ktwin install` applies it; `ktwin install --render` prints it; the Helm chart under
//! `deploy/helm/ktwin` is generated from the same functions ([`super::chart`]).

use std::collections::BTreeMap;

use ktwin_events::env;
use serde_json::{Value, json};

use super::values::{InstallValues, Source, UnknownValue};
use crate::names::{LABEL_MANAGED_BY, LABEL_PUBLIC, MANAGED_BY};
use crate::render::{Workload, restricted_container, restricted_pod};

/// Name of the operator's ServiceAccount, Deployment and RBAC objects.
pub const OPERATOR_NAME: &str = "ktwin-operator";
/// Where the operator's configuration (a ConfigMap) is mounted.
pub const CONFIG_DIR: &str = "/etc/ktwin";
/// The configuration file inside [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "config.yaml";
/// The port the operator serves `/health`, `/ready` and `/metrics` on.
pub const OPERATOR_PORT: u16 = 8080;

/// One object of the bundle and the chart template it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleObject {
    /// Template file of the chart (`templates/<file>`).
    pub template: &'static str,
    /// The boolean value the object depends on (the chart wraps it in `if`); `None` = always.
    pub condition: Option<&'static str>,
    /// The object.
    pub object: Value,
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const READ: &[&str] = &["get", "list", "watch"];
/// Children: read, server-side apply (`patch`, which also creates), delete. Never `create` or
/// `update`: every write is an apply.
const APPLY: &[&str] = &["get", "list", "watch", "patch", "delete"];

/// The operator's cluster permissions, exactly what its calls need (the operator's tests run
/// against a fake API server enforcing these rules and compare them with the calls made):
/// watch its resources and apply their finalizers, status and children, read the broker's
/// objects, publish Events. No access to Secrets (components reference them by
/// `secretKeyRef`).
pub fn operator_rules() -> Vec<Value> {
    // Owners of children: blockOwnerDeletion in their children's ownerReferences needs
    // `update` on the owner's `finalizers` (admission plugin OwnerReferencesPermissionEnforcement).
    let owners = ["twininterfaces", "eventstores", "mqtttriggers", "gateways"];
    let finalizers: Vec<String> = owners.iter().map(|k| format!("{k}/finalizers")).collect();
    let finalizers: Vec<&str> = finalizers.iter().map(String::as_str).collect();
    vec![
        rule(
            &["dtd.ktwin"],
            &["twininterfaces"],
            &["list", "watch", "patch"],
        ),
        rule(&["dtd.ktwin"], &["twininstances"], &["list", "watch"]),
        rule(
            &["dtd.ktwin"],
            &["twininterfaces/status", "twininstances/status"],
            &["patch"],
        ),
        rule(
            &["core.ktwin"],
            &["eventstores", "mqtttriggers", "gateways"],
            &["list", "watch", "patch"],
        ),
        rule(
            &["core.ktwin"],
            &[
                "eventstores/status",
                "mqtttriggers/status",
                "gateways/status",
            ],
            &["patch"],
        ),
        rule(&["dtd.ktwin"], &finalizers[..1], &["update"]),
        rule(&["core.ktwin"], &finalizers[1..], &["update"]),
        rule(&["serving.knative.dev"], &["services"], APPLY),
        rule(&["eventing.knative.dev"], &["triggers"], APPLY),
        rule(&["eventing.knative.dev"], &["brokers"], &["list", "watch"]),
        rule(&["rabbitmq.com"], &["bindings", "queues"], APPLY),
        rule(&["rabbitmq.com"], &["exchanges"], &["list", "watch"]),
        rule(&["apps"], &["deployments", "statefulsets"], APPLY),
        rule(&[""], &["services"], APPLY),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

fn labels(name: &str) -> Value {
    json!({"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "ktwin",
           LABEL_MANAGED_BY: MANAGED_BY})
}

fn meta(name: &str, namespace: Option<Value>) -> Value {
    let mut meta = json!({"name": name, "labels": labels(name)});
    if let Some(ns) = namespace {
        meta["namespace"] = ns;
    }
    meta
}

/// Every object of the bundle, in apply order (CRDs first).
pub fn install_bundle(
    values: &InstallValues,
    operator_namespace: &str,
) -> Result<Vec<Value>, UnknownValue> {
    let source = Source::Values {
        values,
        operator_namespace,
    };
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(operator_namespace, None)}),
    ];
    for crd in ktwin_model::crd::all_crds() {
        let mut value = serde_json::to_value(&crd).unwrap_or_default();
        value["apiVersion"] = json!("apiextensions.k8s.io/v1");
        value["kind"] = json!("CustomResourceDefinition");
        objects.push(value);
    }
    for part in bundle_objects(&source)? {
        let skip = part.object["kind"] == "Namespace"
            && part.object["metadata"]["name"] == json!(operator_namespace);
        if source.enabled_all(part.condition)? && !skip {
            objects.push(part.object);
        }
    }
    Ok(objects)
}

impl Source<'_> {
    fn enabled_all(&self, condition: Option<&str>) -> Result<bool, UnknownValue> {
        match condition {
            None => Ok(true),
            Some(path) => Ok(self.enabled(path)?.unwrap_or(true)),
        }
    }
}

/// The bundle's objects other than CRDs and the operator's namespace, from `source`.
pub fn bundle_objects(v: &Source<'_>) -> Result<Vec<BundleObject>, UnknownValue> {
    let ns = v.get("namespace")?;
    let world_namespace = BundleObject {
        template: "namespace.yaml",
        condition: Some("createNamespace"),
        object: json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": labels("ktwin")}}),
    };
    let mut objects = vec![world_namespace];
    objects.extend(operator_objects(v)?);
    objects.extend(graph_objects(v)?);
    objects.push(network_policy(v)?);
    objects.push(BundleObject {
        template: "world.yaml",
        condition: Some("eventStore.enabled"),
        object: json!({"apiVersion": "core.ktwin/v0", "kind": "EventStore",
            "metadata": {"name": v.get("eventStore.name")?, "namespace": v.get("namespace")?,
                         "labels": labels("event-store")},
            "spec": v.get("eventStore.spec")?}),
    });
    objects.push(BundleObject {
        template: "world.yaml",
        condition: Some("mqttTrigger.enabled"),
        object: json!({"apiVersion": "core.ktwin/v0", "kind": "MQTTTrigger",
            "metadata": {"name": v.get("mqttTrigger.name")?, "namespace": v.get("namespace")?,
                         "labels": labels("mqtt")},
            "spec": v.get("mqttTrigger.spec")?}),
    });
    Ok(objects)
}

/// The world's NetworkPolicy ([`super::values::NetworkPolicyValues`]): ingress to the world's
/// pods only from its own pods and the allowed namespaces (Knative's), except to gateways and
/// RabbitMQ, which clients and devices reach from outside.
fn network_policy(v: &Source<'_>) -> Result<BundleObject, UnknownValue> {
    let selector = json!({"matchExpressions": [
        {"key": LABEL_PUBLIC, "operator": "DoesNotExist"},
        {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["rabbitmq"]},
    ]});
    let namespaces = json!({"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "In",
        "values": v.get("networkPolicy.allowNamespaces")?,
    }]});
    Ok(BundleObject {
        template: "network-policy.yaml",
        condition: Some("networkPolicy.enabled"),
        object: json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": meta("ktwin-platform", Some(v.get("namespace")?)),
        "spec": {
            "podSelector": selector,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}, {"namespaceSelector": namespaces}]}],
        }}),
    })
}

fn always(template: &'static str, object: Value) -> BundleObject {
    BundleObject {
        template,
        condition: None,
        object,
    }
}

fn operator_objects(v: &Source<'_>) -> Result<Vec<BundleObject>, UnknownValue> {
    let name = OPERATOR_NAME;
    let ops = v.operator_namespace();
    let at = || Some(ops.clone());
    let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": ops}]);
    let leader = format!("{name}-leader-election");
    let config = format!("{name}-config");
    let t = "operator.yaml";
    Ok(vec![
        always(
            t,
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, at())}),
        ),
        always(
            t,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(name, None), "rules": operator_rules()}),
        ),
        always(
            t,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(name, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject}),
        ),
        // Leader election only needs its own Lease, in its own namespace.
        always(
            t,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(&leader, at()),
            "rules": [rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update"])]}),
        ),
        always(
            t,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(&leader, at()),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": leader},
            "subjects": subject}),
        ),
        always(
            t,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&config, at()),
            "data": {CONFIG_FILE: v.json_text("config")?}}),
        ),
        always(t, operator_deployment(v, &config)?),
        always(
            t,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name, at()),
            "spec": {"selector": {"app.kubernetes.io/name": name},
                     "ports": [{"name": "http", "port": OPERATOR_PORT, "targetPort": "http", "protocol": "TCP"}]}}),
        ),
    ])
}

fn operator_deployment(v: &Source<'_>, config: &str) -> Result<Value, UnknownValue> {
    let name = OPERATOR_NAME;
    let selector = json!({"app.kubernetes.io/name": name});
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let probe =
        |path: &str| json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": 10});
    let container = json!({
        "name": "operator",
        "image": v.image(),
        "imagePullPolicy": v.get("image.pullPolicy")?,
        "args": ["operator", "--leader-elect", v.string("operator.leaderElect")?,
                 "--config", format!("{CONFIG_DIR}/{CONFIG_FILE}")],
        "env": [
            {"name": env::POD_NAME, "valueFrom": field("metadata.name")},
            {"name": env::POD_NAMESPACE, "valueFrom": field("metadata.namespace")},
            {"name": env::IMAGE, "value": v.image()},
        ],
        "ports": [{"name": "http", "containerPort": OPERATOR_PORT}],
        "livenessProbe": probe("/health"),
        "readinessProbe": probe("/ready"),
        "resources": v.get("operator.resources")?,
        "securityContext": restricted_container(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}],
    });
    Ok(json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": meta(name, Some(v.operator_namespace())),
    "spec": {
        "replicas": v.get("operator.replicas")?,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": selector},
            "spec": {
                "serviceAccountName": name,
                "securityContext": restricted_pod(),
                "containers": [container],
                "volumes": [{"name": "config", "configMap": {"name": config}}],
            },
        },
    }}))
}

fn graph_objects(v: &Source<'_>) -> Result<Vec<BundleObject>, UnknownValue> {
    // The name twin services find the graph under (`KTWIN_GRAPH_URL`).
    let name_value = v.get("config.graphService")?;
    let name = name_value.as_str().unwrap_or_default();
    let ns = v.get("namespace")?;
    let at = || Some(ns.clone());
    let t = "graph.yaml";
    let mut objects = vec![
        always(
            t,
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, at())}),
        ),
        always(
            t,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(name, at()),
            "rules": [rule(&["dtd.ktwin"], &["twininstances", "twininterfaces"], READ)]}),
        ),
        always(
            t,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(name, at()),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}),
        ),
    ];
    let literal = |name: &str, value: Value| json!({"name": name, "value": value});
    let port = ktwin_planner::KtwinConfig::default().service_port;
    // Callers present the platform's API token (twin services and gateways get it from the
    // same Secret, by `secretKeyRef`).
    let token = json!({"name": env::API_TOKEN, "valueFrom": {"secretKeyRef": {
        "name": v.string("config.apiTokenSecret.name")?,
        "key": v.string("config.apiTokenSecret.key")?,
    }}});
    let env: Vec<k8s_openapi::api::core::v1::EnvVar> = serde_json::from_value(json!([
        literal(env::GRAPH_SOURCE, json!("kubernetes")),
        literal(env::NAMESPACE, v.string("namespace")?),
        literal(env::GRAPH_LISTEN, json!(format!("0.0.0.0:{port}"))),
        token,
    ]))
    .unwrap_or_default();
    let image = v.image();
    let workload = Workload {
        name,
        image: image.as_str().unwrap_or_default(),
        args: &["graph".to_owned()],
        replicas: 1,
        resources: None,
        env,
        node_selector: &BTreeMap::new(),
        service_type: "ClusterIP",
        port,
        tls_secret: None,
    };
    let mut metadata = meta(name, at());
    metadata["labels"]["ktwin/trigger"] = json!(name);
    for mut object in workload
        .render(metadata)
        .objects
        .into_iter()
        .map(|d| d.object)
    {
        if object["kind"] == "Deployment" {
            let spec = &mut object["spec"];
            spec["replicas"] = v.get("graph.replicas")?;
            spec["template"]["spec"]["serviceAccountName"] = json!(name);
            let container = &mut spec["template"]["spec"]["containers"][0];
            container["resources"] = v.get("graph.resources")?;
            container["imagePullPolicy"] = v.get("image.pullPolicy")?;
        } else {
            // Reached on port 80 like Knative services; the pod listens on `port`.
            object["spec"]["ports"][0]["port"] = json!(80);
        }
        objects.push(always(t, object));
    }
    Ok(objects)
}

/// The bundle as a multi-document YAML stream.
pub fn to_yaml_stream(objects: &[Value]) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(object)?);
    }
    Ok(out)
}
