//! Rendering of plans into Kubernetes objects: the original's object inventory (reference
//! §4.8) with the §10 defects fixed, validity against the upstream CRD schemas and core types,
//! routing equivalence with the plan, and snapshots of `ktwin plan`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ktwin_operator::kinds::ChildKind;
use ktwin_operator::manifests::load_project;
use ktwin_operator::render::{Desired, Discovered, render_plan, routing_table_of};
use ktwin_planner::{KtwinConfig, Plan, routing_table};
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smart-city")
}

fn plan_of(dir: &Path) -> Plan {
    let input = load_project(dir, None, true).unwrap();
    ktwin_planner::plan(&input, &KtwinConfig::default()).unwrap()
}

/// What eventing-rabbitmq would have created in a cluster.
fn cluster(plan: &Plan) -> Discovered {
    let mut discovered = Discovered::placeholders(plan);
    discovered.broker_url = Some("http://ktwin-broker-ingress.ktwin.svc.cluster.local".into());
    discovered.broker_exchange = Some("b.ktwin.ktwin.0000".into());
    for (trigger, queue) in discovered.trigger_queues.iter_mut() {
        *queue = format!("t.ktwin.{trigger}.0000");
    }
    discovered
}

fn objects(plan: &Plan) -> Vec<Desired> {
    render_plan(plan, &KtwinConfig::default(), &cluster(plan)).objects
}

fn by_name<'a>(objects: &'a [Desired], kind: ChildKind, name: &str) -> &'a Value {
    &objects
        .iter()
        .find(|d| d.kind == kind && d.name() == name)
        .unwrap_or_else(|| panic!("no {kind:?} {name}"))
        .object
}

#[test]
fn worked_example_inventory_matches_the_original() {
    let objects = objects(&plan_of(&fixture()));
    let mut pole: Vec<(ChildKind, &str)> = objects
        .iter()
        .filter(|d| d.object["metadata"]["labels"]["ktwin/twin-interface"] == "city-pole")
        .map(|d| (d.kind, d.name()))
        .collect();
    pole.sort();
    let mut expected = vec![
        (ChildKind::KService, "city-pole"),
        (ChildKind::Trigger, "city-pole"),
        (ChildKind::Binding, "city-pole-event-store"),
        (ChildKind::Binding, "city-pole-real-event-store"),
        (ChildKind::Binding, "city-pole-reboot-command-dispatcher"),
        (
            ChildKind::Binding,
            "city-pole-refstreetlight-real-dispatcher",
        ),
        (
            ChildKind::Binding,
            "city-pole-refstreetlight-virtual-dispatcher",
        ),
        (
            ChildKind::Binding,
            "city-pole-virtual-cloud-event-dispatcher",
        ),
        (ChildKind::Binding, "city-pole-real-mqtt-dispatcher"),
        (
            ChildKind::Binding,
            "city-pole-refstreetlight-real-mqtt-dispatcher",
        ),
    ];
    expected.sort();
    assert_eq!(pole, expected);
    let trigger = by_name(&objects, ChildKind::Trigger, "city-pole");
    assert_eq!(trigger["spec"]["broker"], "ktwin");
    assert_eq!(
        trigger["spec"]["filter"]["attributes"]["type"],
        "ktwin.real.city-pole"
    );
    assert_eq!(trigger["spec"]["subscriber"]["ref"]["name"], "city-pole");
    assert_eq!(
        trigger["metadata"]["annotations"]["rabbitmq.eventing.knative.dev/parallelism"],
        "100"
    );

    // (binding, source, destination, routing key or header type)
    enum Match {
        Key(&'static str),
        Type(&'static str),
    }
    let expect = |name: &str, source: &str, destination: &str, routing: Match| {
        let spec = &by_name(&objects, ChildKind::Binding, name)["spec"];
        assert_eq!(spec["source"], source, "{name}");
        assert_eq!(spec["destination"], destination, "{name}");
        match routing {
            Match::Key(key) => assert_eq!(spec["routingKey"], key, "{name}"),
            Match::Type(ty) => {
                assert_eq!(spec["arguments"]["type"], ty, "{name}");
                assert_eq!(spec["arguments"]["x-match"], "all", "{name}");
            }
        }
        // Unique per Binding object, so no two CRs share a broker-side binding (§10.11).
        assert_eq!(spec["arguments"]["x-ktwin-binding"], name);
        assert_eq!(
            spec["rabbitmqClusterReference"],
            json!({"name": "rabbitmq", "namespace": "ktwin"})
        );
    };
    let exchange = "b.ktwin.ktwin.0000";
    let pole_queue = "t.ktwin.city-pole.0000";
    // The EventStore is found by reference; its trigger is `<name>-trigger`.
    let store_queue = "t.ktwin.event-store-trigger.0000";
    let devices = "cloud-event-dispatcher-queue";
    let mqtt = "mqtt-dispatcher-queue";
    use Match::{Key, Type};
    expect(
        "city-pole-real-mqtt-dispatcher",
        "amq.topic",
        mqtt,
        Key("ktwin.real.city-pole.#"),
    );
    expect(
        "city-pole-refstreetlight-real-mqtt-dispatcher",
        "amq.topic",
        mqtt,
        Key("ktwin.real.ngsi-ld-city-streetlight.#"),
    );
    expect(
        "city-pole-virtual-cloud-event-dispatcher",
        exchange,
        devices,
        Type("ktwin.virtual.city-pole"),
    );
    expect(
        "city-pole-real-event-store",
        exchange,
        store_queue,
        Type("ktwin.real.city-pole"),
    );
    expect(
        "city-pole-event-store",
        exchange,
        store_queue,
        Type("ktwin.store.city-pole"),
    );
    expect(
        "city-pole-refstreetlight-virtual-dispatcher",
        exchange,
        devices,
        Type("ktwin.virtual.ngsi-ld-city-streetlight"),
    );
    expect(
        "city-pole-refstreetlight-real-dispatcher",
        exchange,
        pole_queue,
        Type("ktwin.real.ngsi-ld-city-streetlight"),
    );
    // Canonical lower-case command type (§10.14).
    expect(
        "city-pole-reboot-command-dispatcher",
        exchange,
        pole_queue,
        Type("ktwin.command.city-pole.reboot"),
    );
}

#[test]
fn twin_service_keeps_the_user_template_and_replaces_platform_env() {
    let objects = objects(&plan_of(&fixture()));
    let ksvc = by_name(
        &objects,
        ChildKind::KService,
        "ngsi-ld-city-airqualityobserved",
    );
    let template = &ksvc["spec"]["template"];
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["team"], "air");
    assert_eq!(annotations["autoscaling.knative.dev/metric"], "cpu");
    assert_eq!(
        annotations["autoscaling.knative.dev/class"],
        "hpa.autoscaling.knative.dev"
    );
    assert_eq!(annotations["autoscaling.knative.dev/min-scale"], "1");
    let env = template["spec"]["containers"][0]["env"].as_array().unwrap();
    let value = |name: &str| {
        let found: Vec<_> = env.iter().filter(|e| e["name"] == name).collect();
        assert_eq!(found.len(), 1, "{name} appears once: {env:?}");
        found[0]["value"].clone()
    };
    assert_eq!(
        value("KTWIN_BROKER"),
        "http://ktwin-broker-ingress.ktwin.svc.cluster.local"
    );
    assert_eq!(value("LOG_LEVEL"), "debug");
    assert_eq!(
        value("KTWIN_EVENT_STORE"),
        "http://event-store.ktwin.svc.cluster.local"
    );
    assert_eq!(
        value("KTWIN_GRAPH_URL"),
        "http://ktwin-graph.ktwin.svc.cluster.local/api/v1/twin-graph"
    );
    assert_eq!(value("KTWIN_INTERFACE"), "ngsi-ld-city-airqualityobserved");
    assert_eq!(value("KTWIN_NAMESPACE"), "ktwin");
    assert_eq!(
        template["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "128Mi"
    );
}

#[test]
fn event_store_trigger_has_only_declared_resource_annotations_and_secrets_are_references() {
    let objects = objects(&plan_of(&fixture()));
    let trigger = by_name(&objects, ChildKind::Trigger, "event-store-trigger");
    assert_eq!(
        trigger["spec"]["filter"]["attributes"]["type"],
        "ktwin.event-store"
    );
    assert_eq!(trigger["spec"]["subscriber"]["uri"], "/api/v1/twin-events");
    assert_eq!(trigger["spec"]["subscriber"]["ref"]["name"], "event-store");
    let annotations = trigger["metadata"]["annotations"].as_object().unwrap();
    assert_eq!(annotations["rabbitmq.eventing.knative.dev/cpu-limit"], "4");
    assert_eq!(
        annotations["rabbitmq.eventing.knative.dev/parallelism"],
        "1000"
    );
    for deployment in objects.iter().filter(|d| d.kind == ChildKind::Deployment) {
        let env = deployment.object["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let password = env
            .iter()
            .find(|e| e["name"] == "KTWIN_AMQP_PASSWORD")
            .unwrap();
        assert!(password.get("value").is_none(), "{password}");
        assert_eq!(
            password["valueFrom"]["secretKeyRef"]["name"],
            "rabbitmq-default-user"
        );
    }
    let mqtt = by_name(&objects, ChildKind::Deployment, "mqtt-dispatcher");
    assert_eq!(mqtt["spec"]["replicas"], 2);
}

#[test]
fn kubernetes_objects_route_exactly_like_the_plan() {
    for dir in project_dirs() {
        let plan = plan_of(&dir);
        let discovered = cluster(&plan);
        let rendered = render_plan(&plan, &KtwinConfig::default(), &discovered);
        assert!(rendered.missing.is_empty(), "{:?}", rendered.missing);
        let planned = routing_table(&plan);
        assert!(!planned.deliveries.is_empty());
        assert_eq!(
            routing_table_of(&rendered.objects, &discovered),
            planned,
            "{}",
            dir.display()
        );
    }
}

#[test]
fn missing_cluster_dependencies_are_reported_not_rendered_empty() {
    let plan = plan_of(&fixture());
    let rendered = render_plan(&plan, &KtwinConfig::default(), &Discovered::default());
    let reasons: Vec<_> = rendered.missing.iter().map(|m| m.reason()).collect();
    assert!(reasons.contains(&"BrokerNotReady"), "{reasons:?}");
    assert!(reasons.contains(&"BrokerExchangeMissing"), "{reasons:?}");
    assert!(reasons.contains(&"TriggerQueueMissing"), "{reasons:?}");
    for object in &rendered.objects {
        let text = object.object.to_string();
        assert!(!text.contains("\"\""), "empty string in {text}");
    }
    // Triggers still render: they make eventing-rabbitmq create the queues we wait for.
    assert!(
        rendered
            .objects
            .iter()
            .any(|d| d.kind == ChildKind::Trigger)
    );
}

fn example() -> PathBuf {
    ktwin_testkit::example_project()
}

/// The fixture and the repository's smart-city example.
fn project_dirs() -> Vec<PathBuf> {
    vec![fixture(), example()]
}

/// Loads an upstream CRD's schema for `version`, made strict: objects with declared properties
/// reject undeclared ones (the API server would silently prune them), except where the CRD
/// preserves unknown fields.
fn strict_schema(file: &Path, version: &str) -> Value {
    let crd: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    ktwin_testkit::crd::strict_schema(&crd, version)
}

/// Deserializes a core object into its k8s-openapi type and back: a field the type does not
/// know is lost on the way, which the comparison catches (unknown fields denied).
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) {
    let typed: T =
        serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("{e}: {object}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(&back, object, "fields lost in a round trip");
}

#[test]
fn every_rendered_object_is_valid() {
    let Some(crds) = ktwin_testkit::shared("schemas/crds") else {
        return;
    };
    let file_of: BTreeMap<&str, &str> = [
        (
            "serving.knative.dev/v1/Service",
            "serving.knative.dev_services.yaml",
        ),
        (
            "eventing.knative.dev/v1/Trigger",
            "eventing.knative.dev_triggers.yaml",
        ),
        ("rabbitmq.com/v1beta1/Binding", "rabbitmq.com_bindings.yaml"),
        ("rabbitmq.com/v1beta1/Queue", "rabbitmq.com_queues.yaml"),
    ]
    .into();
    let mut validators = BTreeMap::new();
    let mut checked = BTreeMap::<String, usize>::new();
    for dir in project_dirs() {
        let plan = plan_of(&dir);
        let mut all: Vec<Value> = objects(&plan).into_iter().map(|d| d.object).collect();
        let bundle = ktwin_operator::install::install_bundle(
            &ktwin_operator::install::InstallValues::default(),
            ktwin_operator::install::DEFAULT_OPERATOR_NAMESPACE,
        )
        .unwrap();
        all.extend(bundle);
        for object in &all {
            let api_version = object["apiVersion"].as_str().unwrap();
            let kind = object["kind"].as_str().unwrap();
            let key = format!("{api_version}/{kind}");
            if let Some(file) = file_of.get(key.as_str()) {
                let validator = validators.entry(key.clone()).or_insert_with(|| {
                    let version = api_version.rsplit('/').next().unwrap();
                    jsonschema::validator_for(&strict_schema(&crds.join(file), version)).unwrap()
                });
                let errors: Vec<String> = validator
                    .iter_errors(object)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{key} {}: {errors:#?}",
                    object["metadata"]["name"]
                );
            } else {
                use k8s_openapi::api::{apps, core, rbac};
                match key.as_str() {
                    "apps/v1/Deployment" => round_trips::<apps::v1::Deployment>(object),
                    "apps/v1/StatefulSet" => round_trips::<apps::v1::StatefulSet>(object),
                    "v1/ConfigMap" => round_trips::<core::v1::ConfigMap>(object),
                    "v1/Service" => round_trips::<core::v1::Service>(object),
                    "v1/Namespace" => round_trips::<core::v1::Namespace>(object),
                    "v1/ServiceAccount" => round_trips::<core::v1::ServiceAccount>(object),
                    "rbac.authorization.k8s.io/v1/ClusterRole" => round_trips::<rbac::v1::ClusterRole>(object),
                    "rbac.authorization.k8s.io/v1/ClusterRoleBinding" => {
                        round_trips::<rbac::v1::ClusterRoleBinding>(object)
                    }
                    "rbac.authorization.k8s.io/v1/Role" => round_trips::<rbac::v1::Role>(object),
                    "rbac.authorization.k8s.io/v1/RoleBinding" => round_trips::<rbac::v1::RoleBinding>(object),
                    "apiextensions.k8s.io/v1/CustomResourceDefinition" => round_trips::<
                        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
                    >(object),
                    "networking.k8s.io/v1/NetworkPolicy" => {
                        round_trips::<k8s_openapi::api::networking::v1::NetworkPolicy>(object)
                    }
                    "core.ktwin/v0/EventStore" => {
                        serde_json::from_value::<ktwin_model::crd::EventStore>(object.clone()).unwrap();
                    }
                    "core.ktwin/v0/MQTTTrigger" => {
                        serde_json::from_value::<ktwin_model::crd::MQTTTrigger>(object.clone()).unwrap();
                    }
                    other => panic!("no check for {other}"),
                }
            }
            *checked.entry(key).or_default() += 1;
        }
    }
    for kind in [
        "serving.knative.dev/v1/Service",
        "eventing.knative.dev/v1/Trigger",
        "rabbitmq.com/v1beta1/Binding",
        "rabbitmq.com/v1beta1/Queue",
        "apps/v1/Deployment",
        "apps/v1/StatefulSet",
        "v1/Service",
    ] {
        assert!(
            checked.get(kind).is_some_and(|n| *n > 0),
            "nothing rendered of {kind}"
        );
    }
}

#[test]
fn plan_output_snapshot() {
    let plan = plan_of(&fixture());
    assert_plan_snapshots(&plan, "fixture");
}

/// The plan's rendered objects (`<name>_objects`) and routes (`<name>_routes`) as snapshots.
fn assert_plan_snapshots(plan: &Plan, name: &str) {
    let rendered = render_plan(
        plan,
        &KtwinConfig::default(),
        &Discovered::placeholders(plan),
    );
    let objects: Vec<Value> = rendered.objects.into_iter().map(|d| d.object).collect();
    insta::assert_snapshot!(
        format!("{name}_objects"),
        ktwin_operator::install::to_yaml_stream(&objects).unwrap()
    );
    insta::assert_yaml_snapshot!(format!("{name}_routes"), routing_table(plan));
}

/// `ktwin plan examples/smart-city --format yaml`.
#[test]
fn smart_city_plan_snapshot() {
    let plan = plan_of(&example());
    assert!(
        plan.services().count() >= 10,
        "{} services",
        plan.services().count()
    );
    assert_plan_snapshots(&plan, "smart_city");
}

/// The smart-city fixture's plan with a Gateway, rendered, and the install bundle: every
/// object that runs pods.
fn every_rendered_workload() -> Vec<Value> {
    let mut input = load_project(&fixture(), None, true).unwrap();
    input.gateways.push(
        serde_json::from_value(json!({
            "apiVersion": "core.ktwin/v0", "kind": "Gateway",
            "metadata": {"name": "front-door", "namespace": "ktwin"},
            "spec": {
                "auth": {"bearerTokenSecret": {"name": "front-door-token", "key": "token"}},
                "apis": {"graph": true, "eventStore": true, "commands": true},
                "service": {"type": "LoadBalancer", "port": 8080},
                "tls": {"secretName": "front-door-tls"}
            }
        }))
        .unwrap(),
    );
    let plan = ktwin_planner::plan(&input, &KtwinConfig::default()).unwrap();
    assert!(!plan.gateways.is_empty(), "the Gateway is planned");
    let mut all: Vec<Value> = objects(&plan).into_iter().map(|d| d.object).collect();
    let values = ktwin_operator::install::InstallValues::default();
    all.extend(
        ktwin_operator::install::install_bundle(
            &values,
            ktwin_operator::install::DEFAULT_OPERATOR_NAMESPACE,
        )
        .unwrap(),
    );
    all.retain(|o| {
        matches!(
            (o["apiVersion"].as_str(), o["kind"].as_str()),
            (Some("apps/v1"), Some("Deployment" | "StatefulSet"))
                | (Some("serving.knative.dev/v1"), Some("Service"))
        )
    });
    all
}

#[test]
fn a_gateway_with_a_certificate_serves_https_from_its_mounted_secret() {
    let workloads = every_rendered_workload();
    let gateway = workloads
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "front-door")
        .expect("the gateway's Deployment");
    let pod = &gateway["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "tls", "secret": {"secretName": "front-door-tls"}}])
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "tls", "mountPath": ktwin_planner::GATEWAY_TLS_DIR, "readOnly": true}])
    );
    let env: BTreeMap<&str, &str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|var| Some((var["name"].as_str()?, var["value"].as_str()?)))
        .collect();
    let dir = ktwin_planner::GATEWAY_TLS_DIR;
    assert_eq!(env[ktwin_events::env::TLS_CERT], format!("{dir}/tls.crt"));
    assert_eq!(env[ktwin_events::env::TLS_KEY], format!("{dir}/tls.key"));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
}

#[test]
fn every_pod_is_non_root_read_only_without_capabilities_under_runtime_default_seccomp() {
    let workloads = every_rendered_workload();
    let kinds: Vec<_> = workloads
        .iter()
        .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
        .collect();
    for expected in [
        "front-door",
        "event-store",
        "mqtt-dispatcher",
        "ktwin-graph",
        "ktwin-operator",
    ] {
        assert!(
            kinds.iter().any(|k| k.contains(&format!("\"{expected}\""))),
            "{expected} among {kinds:?}"
        );
    }
    for object in &workloads {
        let name = format!("{} {}", object["kind"], object["metadata"]["name"]);
        let pod = &object["spec"]["template"]["spec"];
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            let either = |field: &str| {
                let own = &security[field];
                if own.is_null() {
                    pod["securityContext"][field].clone()
                } else {
                    own.clone()
                }
            };
            assert_eq!(either("runAsNonRoot"), json!(true), "{name}: runAsNonRoot");
            assert_eq!(
                either("seccompProfile")["type"],
                json!("RuntimeDefault"),
                "{name}: seccomp"
            );
            assert_eq!(
                security["readOnlyRootFilesystem"],
                json!(true),
                "{name}: read-only root"
            );
            assert_eq!(
                security["allowPrivilegeEscalation"],
                json!(false),
                "{name}: escalation"
            );
            assert_eq!(
                security["capabilities"]["drop"],
                json!(["ALL"]),
                "{name}: capabilities"
            );
            assert!(
                security["capabilities"]["add"].is_null(),
                "{name}: added capabilities"
            );
        }
        // The world's NetworkPolicy spares exactly the gateways.
        let public = &object["spec"]["template"]["metadata"]["labels"]["ktwin/public"];
        let is_gateway = object["metadata"]["name"] == "front-door";
        assert_eq!(public.is_string(), is_gateway, "{name}: ktwin/public label");
    }
}

#[test]
fn credentials_reach_pods_only_by_secret_key_ref_and_callers_get_the_platform_token() {
    let secretish = |name: &str| {
        ["TOKEN", "PASSWORD", "DATABASE_URL", "USERNAME"]
            .iter()
            .any(|word| name.contains(word))
    };
    let mut token_holders = Vec::new();
    for object in every_rendered_workload() {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        for container in object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            for var in container["env"].as_array().into_iter().flatten() {
                let var_name = var["name"].as_str().unwrap();
                if !secretish(var_name) {
                    continue;
                }
                assert!(
                    var.get("value").is_none(),
                    "{name}: {var_name} is a literal"
                );
                assert!(
                    var["valueFrom"]["secretKeyRef"]["name"].is_string(),
                    "{name}: {var_name} is not from a Secret: {var}"
                );
                if var["valueFrom"]["secretKeyRef"]["name"] == "ktwin-api-token" {
                    token_holders.push(format!("{name}:{var_name}"));
                }
            }
        }
    }
    // The store and the graph accept the platform's token; twin services and the gateway
    // present it to them.
    for expected in [
        "event-store:KTWIN_API_TOKEN",
        "ktwin-graph:KTWIN_API_TOKEN",
        "front-door:KTWIN_TOKEN",
        "ngsi-ld-city-airqualityobserved:KTWIN_TOKEN",
    ] {
        assert!(
            token_holders.iter().any(|holder| holder == expected),
            "{expected} missing from {token_holders:?}"
        );
    }
}
