//! The install bundle: namespaces, ktwin CRDs, least-privilege RBAC, the operator Deployment,
//! the twin graph service and a default EventStore and MQTTTrigger. `ktwin install --render`
//! prints it; the Helm chart under `deploy/helm/ktwin` templates the same objects.

use ktwin_model::crd::{EventStore, EventStoreSpec, MQTTTrigger, MQTTTriggerSpec};
use ktwin_planner::{GraphPlan, KtwinConfig, Plan};
use serde_json::{Value, json};

use crate::names::{LABEL_MANAGED_BY, MANAGED_BY};
use crate::render::{Discovered, Renderer};

/// Where things are installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    /// Namespace of the operator.
    pub operator_namespace: String,
    /// Namespace of the twin world (broker, services, store, graph).
    pub namespace: String,
    /// Whether to add the default EventStore and MQTTTrigger.
    pub defaults: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            operator_namespace: "ktwin-system".into(),
            namespace: "ktwin".into(),
            defaults: true,
        }
    }
}

/// Name of the operator's ServiceAccount, Deployment and RBAC objects.
pub const OPERATOR_NAME: &str = "ktwin-operator";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const READ: &[&str] = &["get", "list", "watch"];
const MANAGE: &[&str] = &[
    "get", "list", "watch", "create", "patch", "update", "delete",
];

/// The operator's cluster permissions: read and update its own resources, manage the children
/// it renders, read the broker's objects, publish Events. No access to Secrets (dispatchers
/// reference them by `secretKeyRef`).
pub fn operator_rules() -> Vec<Value> {
    vec![
        rule(
            &["dtd.ktwin", "core.ktwin"],
            &[
                "twininterfaces",
                "twininstances",
                "eventstores",
                "mqtttriggers",
                "gateways",
            ],
            &["get", "list", "watch", "patch", "update"],
        ),
        rule(
            &["dtd.ktwin", "core.ktwin"],
            &[
                "twininterfaces/status",
                "twininstances/status",
                "eventstores/status",
                "mqtttriggers/status",
                "gateways/status",
            ],
            &["get", "patch", "update"],
        ),
        rule(
            &["dtd.ktwin", "core.ktwin"],
            &[
                "twininterfaces/finalizers",
                "eventstores/finalizers",
                "mqtttriggers/finalizers",
                "gateways/finalizers",
            ],
            &["update"],
        ),
        rule(&["serving.knative.dev"], &["services"], MANAGE),
        rule(&["eventing.knative.dev"], &["triggers"], MANAGE),
        rule(&["eventing.knative.dev"], &["brokers"], READ),
        rule(&["rabbitmq.com"], &["bindings", "queues"], MANAGE),
        rule(&["rabbitmq.com"], &["exchanges"], READ),
        rule(&["apps"], &["deployments"], MANAGE),
        rule(&[""], &["services"], MANAGE),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

fn labels(name: &str) -> Value {
    json!({"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "ktwin",
           LABEL_MANAGED_BY: MANAGED_BY})
}

fn meta(name: &str, namespace: Option<&str>) -> Value {
    let mut meta = json!({"name": name, "labels": labels(name)});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

/// Every object of the install bundle, in apply order.
pub fn install_bundle(config: &KtwinConfig, options: &InstallOptions) -> Vec<Value> {
    let ops = options.operator_namespace.as_str();
    let ns = options.namespace.as_str();
    let mut objects =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(ops, None)})];
    if ns != ops {
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(ns, None)}));
    }
    for crd in ktwin_model::crd::all_crds() {
        let mut value = serde_json::to_value(&crd).unwrap_or_default();
        value["apiVersion"] = json!("apiextensions.k8s.io/v1");
        value["kind"] = json!("CustomResourceDefinition");
        objects.push(value);
    }
    objects.extend(operator_objects(config, ops));
    objects.extend(graph_objects(config, ns));
    if options.defaults {
        objects.push(serde_json::to_value(default_event_store(ns)).unwrap_or_default());
        objects.push(serde_json::to_value(default_mqtt_trigger(ns)).unwrap_or_default());
    }
    objects
}

/// The EventStore the bundle installs in a world namespace.
pub fn default_event_store(namespace: &str) -> EventStore {
    let mut store = EventStore::new("event-store", EventStoreSpec::default());
    store.metadata.namespace = Some(namespace.to_owned());
    store.metadata.labels = serde_json::from_value(labels("event-store")).ok();
    store
}

/// The MQTTTrigger the bundle installs in a world namespace.
pub fn default_mqtt_trigger(namespace: &str) -> MQTTTrigger {
    let mut trigger = MQTTTrigger::new("mqtt", MQTTTriggerSpec::default());
    trigger.metadata.namespace = Some(namespace.to_owned());
    trigger.metadata.labels = serde_json::from_value(labels("mqtt")).ok();
    trigger
}

fn operator_objects(config: &KtwinConfig, ops: &str) -> Vec<Value> {
    let name = OPERATOR_NAME;
    let selector = json!({"app.kubernetes.io/name": name});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, Some(ops))}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(name, None), "rules": operator_rules()}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(name, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ops}]}),
        // Leader election only needs its own Lease, in its own namespace.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(&format!("{name}-leader-election"), Some(ops)),
            "rules": [rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update"])]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(&format!("{name}-leader-election"), Some(ops)),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": format!("{name}-leader-election")},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ops}]}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name, Some(ops)),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "operator",
                        "image": config.images.operator,
                        "args": ["operator", "--leader-elect"],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        ],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "500m", "memory": "256Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        }}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name, Some(ops)),
            "spec": {"selector": selector,
                     "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]}}),
    ]
}

fn graph_objects(config: &KtwinConfig, ns: &str) -> Vec<Value> {
    let plan = Plan {
        namespace: ns.to_owned(),
        broker: config.broker.clone(),
        interfaces: Vec::new(),
        event_store: None,
        dispatchers: None,
        graph: GraphPlan {
            name: config.graph_service.clone(),
            namespace: ns.to_owned(),
            image: config.images.graph.clone(),
            args: config.args.graph.clone(),
            port: config.service_port,
            path: config.graph_path.clone(),
            instances: 0,
        },
        gateways: Vec::new(),
        diagnostics: Vec::new(),
    };
    let name = plan.graph.name.as_str();
    let discovered = Discovered::default();
    let renderer = Renderer::for_plan(&plan, config, &discovered);
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, Some(ns))}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(name, Some(ns)),
            "rules": [rule(&["dtd.ktwin"], &["twininstances", "twininterfaces"], READ)]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(name, Some(ns)),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}),
    ];
    objects.extend(
        renderer
            .graph(&plan.graph)
            .objects
            .into_iter()
            .map(|d| d.object),
    );
    objects
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
