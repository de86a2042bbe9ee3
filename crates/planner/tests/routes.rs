//! The routing of the original operator's worked example (reference §4.8), with the §10
//! defects fixed, and the planner's handling of missing or ambiguous components.

use ktwin_events::EventType;
use ktwin_model::crd::{EventStore, MQTTTrigger, TwinInterface};
use ktwin_planner::{
    Endpoint, EnvValue, KtwinConfig, MqttIngress, Plan, PlanError, PlanInput, Route, RoutePurpose,
    Subscriber, plan, routing_table,
};

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml_ng::from_str(text).expect("test YAML parses")
}

/// §4.8: `city-pole` with a service, a command, an aggregated streetlight and real-event
/// persistence. The command is spelled with capitals: the original bound it verbatim and it never
/// routed (§10.14).
fn city_pole() -> TwinInterface {
    yaml(
        r#"
apiVersion: dtd.ktwin/v0
kind: TwinInterface
metadata: {name: city-pole, namespace: ktwin}
spec:
  id: city-pole
  commands: [{name: Reboot}]
  relationships:
  - {name: refStreetlight, interface: ngsi-ld-city-streetlight, aggregateData: true}
  - {name: refNeighborhood, interface: s4city-city-neighborhood}
  eventStore: {persistRealEvent: true}
  service:
    autoScaling: {target: 5}
    template:
      metadata: {labels: {team: lighting}}
      spec:
        serviceAccountName: pole
        containers:
        - name: city-pole
          image: example.org/city-pole:1
          env: [{name: KTWIN_BROKER, value: user-value}, {name: MINE, value: kept}]
"#,
    )
}

fn streetlight() -> TwinInterface {
    yaml(
        r#"
apiVersion: dtd.ktwin/v0
kind: TwinInterface
metadata: {name: ngsi-ld-city-streetlight, namespace: ktwin}
spec: {}
"#,
    )
}

fn event_store(name: &str) -> EventStore {
    yaml(&format!(
        "apiVersion: core.ktwin/v0\nkind: EventStore\nmetadata: {{name: {name}, namespace: ktwin}}\nspec: {{}}\n"
    ))
}

fn mqtt_trigger(name: &str) -> MQTTTrigger {
    yaml(&format!(
        "apiVersion: core.ktwin/v0\nkind: MQTTTrigger\nmetadata: {{name: {name}, namespace: ktwin}}\nspec: {{}}\n"
    ))
}

fn world(interfaces: Vec<TwinInterface>) -> PlanInput {
    PlanInput {
        namespace: "ktwin".into(),
        interfaces,
        event_stores: vec![event_store("my-store")],
        mqtt_triggers: vec![mqtt_trigger("mqtt")],
        ..Default::default()
    }
}

fn route(purpose: RoutePurpose, ty: &str, subscriber: Subscriber) -> Route {
    Route {
        owner: "city-pole".into(),
        purpose,
        event_type: ty.parse().unwrap(),
        subscriber,
    }
}

fn full_plan() -> Plan {
    plan(
        &world(vec![city_pole(), streetlight()]),
        &KtwinConfig::default(),
    )
    .unwrap()
}

#[test]
fn worked_example_routes_match_the_original_with_defects_fixed() {
    let plan = full_plan();
    let pole = plan.interface("city-pole").unwrap();
    let twin = Subscriber::Twin("city-pole".into());
    // Found by reference (the only EventStore), not by the magic name `event-store` (§10.4).
    let store = Subscriber::EventStore("my-store".into());
    let mut expected = vec![
        route(RoutePurpose::Real, "ktwin.real.city-pole", twin.clone()),
        route(
            RoutePurpose::Command("reboot".into()),
            "ktwin.command.city-pole.reboot",
            twin.clone(),
        ),
        route(
            RoutePurpose::AggregateReal("refstreetlight".into()),
            "ktwin.real.ngsi-ld-city-streetlight",
            twin,
        ),
        route(
            RoutePurpose::Virtual,
            "ktwin.virtual.city-pole",
            Subscriber::Devices,
        ),
        route(
            RoutePurpose::AggregateVirtual("refstreetlight".into()),
            "ktwin.virtual.ngsi-ld-city-streetlight",
            Subscriber::Devices,
        ),
        route(
            RoutePurpose::PersistReal,
            "ktwin.real.city-pole",
            store.clone(),
        ),
        route(RoutePurpose::Store, "ktwin.store.city-pole", store),
    ];
    expected.sort();
    assert_eq!(pole.routes, expected);
    assert_eq!(
        pole.mqtt_ingress,
        vec![
            MqttIngress {
                owner: "city-pole".into(),
                purpose: RoutePurpose::Real,
                interface: "city-pole".into(),
            },
            MqttIngress {
                owner: "city-pole".into(),
                purpose: RoutePurpose::AggregateReal("refstreetlight".into()),
                interface: "ngsi-ld-city-streetlight".into(),
            },
        ]
    );
}

#[test]
fn an_interface_without_service_keeps_device_ingress_and_store_routes_only() {
    let plan = full_plan();
    let light = plan.interface("ngsi-ld-city-streetlight").unwrap();
    assert!(light.service.is_none());
    let purposes: Vec<_> = light.routes.iter().map(|r| r.purpose.clone()).collect();
    assert_eq!(purposes, vec![RoutePurpose::Store]);
    assert_eq!(light.mqtt_ingress.len(), 1);
    // Both interfaces bridge the streetlight's devices, each with its own ingress: deleting the
    // pole must not cut the streetlight's own ingress (§10.11).
    let table = routing_table(&plan);
    assert!(table.mqtt_ingress.contains("ngsi-ld-city-streetlight"));
    let owners: Vec<_> = plan
        .mqtt_ingress()
        .filter(|i| i.interface == "ngsi-ld-city-streetlight")
        .map(|i| i.owner.as_str())
        .collect();
    assert_eq!(owners, vec!["city-pole", "ngsi-ld-city-streetlight"]);
}

#[test]
fn routing_table_lists_subscribers_per_type() {
    let table = routing_table(&full_plan());
    let real: EventType = "ktwin.real.city-pole".parse().unwrap();
    let subscribers: Vec<String> = table.subscribers(&real).map(|s| s.to_string()).collect();
    assert_eq!(subscribers, vec!["twin/city-pole", "event-store/my-store"]);
    let light: EventType = "ktwin.real.ngsi-ld-city-streetlight".parse().unwrap();
    let subscribers: Vec<String> = table.subscribers(&light).map(|s| s.to_string()).collect();
    assert_eq!(subscribers, vec!["twin/city-pole"]);
    // Mixed-case commands route under their canonical name, the one SDKs publish.
    let command = EventType::command("city-pole", "REBOOT").unwrap();
    assert_eq!(table.subscribers(&command).count(), 1);
}

#[test]
fn twin_service_keeps_the_user_template_and_layers_autoscaling_defaults() {
    let plan = full_plan();
    let service = plan.services().next().unwrap();
    assert_eq!(service.interface, "city-pole");
    let spec = service.template.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("pole"));
    assert_eq!(
        service
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap()["team"],
        "lighting"
    );
    // target set by the user; the rest from the defaults (not maxScale 1, §10.13).
    assert_eq!(service.autoscaling.target, Some(5));
    assert_eq!(service.autoscaling.max_scale, Some(20));
    assert_eq!(service.autoscaling.parallelism, Some(100));
    let names: Vec<_> = service.env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "KTWIN_BROKER",
            "KTWIN_EVENT_STORE",
            "KTWIN_GRAPH_URL",
            "KTWIN_INTERFACE",
            "KTWIN_NAMESPACE",
            "KTWIN_TOKEN"
        ]
    );
    assert_eq!(service.env[3].value, EnvValue::Literal("city-pole".into()));
}

#[test]
fn dispatcher_credentials_are_secret_references() {
    let plan = full_plan();
    let dispatchers = plan.dispatchers.unwrap();
    for dispatcher in [&dispatchers.mqtt, &dispatchers.cloud_event] {
        // The URL (with credentials) is an endpoint each realizer resolves: the Kubernetes one
        // from the configured Secret by reference, the local one from its own broker.
        let url = dispatcher
            .env
            .iter()
            .find(|e| e.name == "KTWIN_AMQP_URL")
            .unwrap();
        assert_eq!(url.value, EnvValue::Endpoint(Endpoint::Amqp));
        assert!(dispatcher.env.iter().all(|e| !e.name.contains("PASSWORD")));
    }
    assert_eq!(dispatchers.mqtt.queue, "mqtt-dispatcher-queue");
    assert_eq!(
        dispatchers.cloud_event.queue,
        "cloud-event-dispatcher-queue"
    );
}

#[test]
fn missing_components_drop_their_routes_with_a_diagnostic() {
    let input = PlanInput {
        namespace: "ktwin".into(),
        interfaces: vec![city_pole()],
        ..Default::default()
    };
    let plan = plan(&input, &KtwinConfig::default()).unwrap();
    let pole = plan.interface("city-pole").unwrap();
    assert!(pole.mqtt_ingress.is_empty());
    assert!(
        pole.routes
            .iter()
            .all(|r| matches!(r.subscriber, Subscriber::Twin(_)))
    );
    let messages: Vec<_> = plan
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("no EventStore")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("no MQTTTrigger")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("persistence is requested")),
        "{messages:?}"
    );
    assert!(plan.event_store.is_none() && plan.dispatchers.is_none());
}

#[test]
fn several_event_stores_need_a_configured_choice() {
    let mut input = world(vec![city_pole()]);
    input.event_stores.push(event_store("other"));
    let err = plan(&input, &KtwinConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            PlanError::Ambiguous {
                what: "EventStore",
                ..
            }
        ),
        "{err}"
    );
    let config = KtwinConfig {
        event_store: Some("other".into()),
        ..KtwinConfig::default()
    };
    let plan = plan(&input, &config).unwrap();
    assert_eq!(plan.event_store.unwrap().name, "other");
    let config = KtwinConfig {
        event_store: Some("absent".into()),
        ..KtwinConfig::default()
    };
    let err = ktwin_planner::plan(&input, &config).unwrap_err();
    assert!(err.to_string().contains("\"absent\""), "{err}");
}

#[test]
fn invalid_names_are_reported_with_object_and_field() {
    let mut bad = city_pole();
    bad.spec.commands[0].name = "re.boot".into();
    let err = plan(&world(vec![bad]), &KtwinConfig::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TwinInterface/city-pole"), "{text}");
    assert!(text.contains("spec.commands[0].name"), "{text}");
    assert!(text.contains("re.boot"), "{text}");
}

#[test]
fn commands_differing_only_in_case_share_one_route() {
    let mut pole = city_pole();
    let mut again = pole.spec.commands[0].clone();
    again.name = "reboot".into();
    pole.spec.commands.push(again);
    let plan = plan(&world(vec![pole]), &KtwinConfig::default()).unwrap();
    let commands = plan
        .routes()
        .filter(|r| matches!(r.purpose, RoutePurpose::Command(_)))
        .count();
    assert_eq!(commands, 1);
    assert!(
        plan.diagnostics
            .iter()
            .any(|d| d.message.contains("case-insensitive"))
    );
}

/// A device interface co-typed `Mqtt` (DTDL MQTT extension), serviceless.
fn vehicle(telemetry_topic: &str) -> TwinInterface {
    yaml(&format!(
        r#"
apiVersion: dtd.ktwin/v0
kind: TwinInterface
metadata: {{name: vehicle, namespace: ktwin}}
spec:
  dtmi: "dtmi:example:Vehicle;1"
  commands: [{{name: setColor}}]
  mqtt:
    payloadFormat: Json/ecma/404
    telemetryTopic: "{telemetry_topic}"
    commandTopic: "vehicles/{{executorId}}/command/{{commandName}}"
"#
    ))
}

#[test]
fn declared_device_topics_reach_both_dispatchers_and_their_commands_the_devices() {
    let plan = plan(
        &world(vec![vehicle("vehicles/{modelId}/{senderId}/telemetry")]),
        &KtwinConfig::default(),
    )
    .unwrap();
    let dispatchers = plan.dispatchers.as_ref().unwrap();
    assert_eq!(dispatchers.device_bindings.len(), 1);
    let binding = &dispatchers.device_bindings[0];
    assert_eq!(binding.interface, "vehicle");
    assert_eq!(binding.model_id, "dtmi:example:Vehicle;1");
    assert_eq!(binding.commands, ["setColor"]);
    for dispatcher in [&dispatchers.mqtt, &dispatchers.cloud_event] {
        let var = dispatcher
            .env
            .iter()
            .find(|v| v.name == ktwin_events::env::DEVICE_BINDINGS)
            .expect("bindings passed to the dispatcher");
        let EnvValue::Literal(json) = &var.value else {
            panic!("literal JSON expected")
        };
        let back: Vec<ktwin_events::DeviceBinding> = serde_json::from_str(json).unwrap();
        assert_eq!(back, dispatchers.device_bindings);
    }
    let command = EventType::command("vehicle", "setColor").unwrap();
    let table = routing_table(&plan);
    assert!(
        table
            .subscribers(&command)
            .any(|s| *s == Subscriber::Devices),
        "{table:?}"
    );
    // No service runs the command, but the device gets it: no "routes nothing" diagnostic.
    assert!(
        !plan
            .diagnostics
            .iter()
            .any(|d| d.message.contains("route nothing")),
        "{:?}",
        plan.diagnostics
    );
}

#[test]
fn unusable_device_topics_fail_the_plan_naming_them() {
    let err = plan(
        &world(vec![vehicle("vehicles/{deviceId}/telemetry")]),
        &KtwinConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, PlanError::InvalidBinding(_)), "{err}");
    let message = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(message.contains("{deviceId}"), "{message}");
}
