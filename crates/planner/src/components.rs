//! Planning the world's shared components: the event store, the dispatcher pair and gateways.

use std::collections::BTreeMap;

use ktwin_events::{DeviceBinding, DeviceBindings, env};
use ktwin_model::crd::{DispatcherSpec, EventStore, Gateway, MQTTTrigger, TwinInterface};

use crate::input::name_of;
use crate::interface::autoscaling_from_model;
use crate::plan::{
    DispatcherKind, DispatcherPlan, DispatchersPlan, Endpoint, EnvValue, EventStorePlan,
    GATEWAY_TLS_DIR, GatewayPlan, PlatformEnv, StoreStorage,
};
use crate::world::{PlanError, World};

/// Where the embedded event store's volume is mounted.
pub const EMBEDDED_STORE_PATH: &str = "/var/lib/ktwin/store";

/// The event store of an EventStore: embedded on a volume unless it names a database.
pub(crate) fn event_store_plan(store: &EventStore, world: &World<'_>) -> EventStorePlan {
    let config = world.config;
    let spec = &store.spec;
    let storage = match &spec.database {
        Some(database) => StoreStorage::Database {
            secret: database.secret_key_ref.name.clone(),
            key: database.secret_key_ref.key.clone(),
        },
        None => {
            let volume = spec.storage.clone().unwrap_or_default();
            StoreStorage::Embedded {
                size: volume.size,
                storage_class: volume.storage_class_name,
                path: EMBEDDED_STORE_PATH.to_owned(),
            }
        }
    };
    // The store listens on the pod's every address and accepts the platform's token; the
    // broker's Trigger posts events without one (`KTWIN_STORE_OPEN_INGEST`).
    let mut env = vec![
        PlatformEnv::literal(env::STORE_TIMEOUT, spec.timeout.to_string()),
        PlatformEnv::literal(
            env::STORE_LISTEN,
            format!("0.0.0.0:{}", config.service_port),
        ),
        PlatformEnv::literal(env::STORE_OPEN_INGEST, "true"),
        config.api_token(env::API_TOKEN),
    ];
    match &storage {
        StoreStorage::Database { secret, key } => {
            env.push(PlatformEnv::literal(env::STORE_BACKEND, "postgres"));
            env.push(PlatformEnv {
                name: env::STORE_DATABASE_URL.into(),
                value: EnvValue::SecretKey {
                    name: secret.clone(),
                    key: key.clone(),
                },
            });
        }
        StoreStorage::Embedded { path, .. } => {
            env.push(PlatformEnv::literal(env::STORE_BACKEND, "embedded"));
            env.push(PlatformEnv::literal(env::STORE_PATH, path));
        }
    }
    EventStorePlan {
        name: name_of(store).to_owned(),
        namespace: world.namespace.to_owned(),
        image: config.images.event_store().to_owned(),
        args: config.args.event_store.clone(),
        autoscaling: spec
            .auto_scaling
            .as_ref()
            .map(autoscaling_from_model)
            .unwrap_or_default()
            .or(&config.default_autoscaling),
        resources: spec.resources.clone(),
        dispatcher_resources: spec.dispatcher_resources.clone(),
        ingest_path: config.event_store_path.clone(),
        storage,
        env,
        node_selector: config.node_selectors.core.clone(),
    }
}

/// The device topics the interfaces declare with the DTDL MQTT extension (`spec.mqtt`), sorted
/// by interface and checked together: a pattern ktwin cannot use, or two telemetry topics one
/// topic can match, make the plan fail naming them.
fn device_bindings(interfaces: &[TwinInterface]) -> Result<Vec<DeviceBinding>, PlanError> {
    let mut bindings: Vec<DeviceBinding> = interfaces.iter().filter_map(device_binding).collect();
    bindings.sort_by(|a, b| a.interface.cmp(&b.interface));
    // An interface declared twice is planned once (with a diagnostic elsewhere).
    bindings.dedup_by(|a, b| a.interface == b.interface);
    DeviceBindings::new(bindings.clone()).map_err(PlanError::InvalidBinding)?;
    Ok(bindings)
}

/// The device topics one interface declares with the DTDL MQTT extension (`spec.mqtt`).
pub(crate) fn device_binding(interface: &TwinInterface) -> Option<DeviceBinding> {
    let spec = &interface.spec;
    let mqtt = spec.mqtt.as_ref()?;
    Some(DeviceBinding {
        interface: name_of(interface).to_owned(),
        model_id: spec.dtmi.clone().unwrap_or_default(),
        payload_format: mqtt.payload_format.clone(),
        telemetry_topic: mqtt.telemetry_topic.clone(),
        command_topic: mqtt.command_topic.clone(),
        commands: spec
            .commands
            .iter()
            .filter(|c| !c.name.is_empty())
            .map(|c| c.name.clone())
            .collect(),
    })
}

/// The variables of one dispatcher.
fn dispatcher_env(
    kind: DispatcherKind,
    spec: &DispatcherSpec,
    exchange: &str,
    bindings: &[DeviceBinding],
) -> Vec<PlatformEnv> {
    let literal = |name: &str, value: &str| PlatformEnv::literal(name, value);
    let mut vars = vec![
        PlatformEnv::endpoint(env::AMQP_URL, Endpoint::Amqp),
        // Only known once eventing-rabbitmq has created the broker's exchange.
        PlatformEnv::endpoint(env::PUBLISHER_EXCHANGE, Endpoint::BrokerExchange),
        // The operator owns the exchange, the queues and the bindings.
        literal(env::DECLARE_EXCHANGE, "false"),
        literal(env::SUBSCRIBER_QUEUE, &kind.queue()),
        literal(env::MQTT_EXCHANGE, exchange),
        literal(env::PREFETCH, &spec.prefetch.to_string()),
        literal(env::SERVICE_NAME, kind.name()),
    ];
    match kind {
        DispatcherKind::Mqtt => {
            vars.push(literal(env::SOURCE, "amqp"));
            vars.push(literal(env::DECLARE_QUEUE, "false"));
        }
        DispatcherKind::CloudEvent => vars.push(literal(env::SINK, "amqp")),
    }
    if !bindings.is_empty() {
        // Strings and lists of strings: serialising cannot fail.
        let json = serde_json::to_string(bindings).unwrap_or_default();
        vars.push(literal(env::DEVICE_BINDINGS, &json));
    }
    vars
}

/// The two dispatchers of an MQTTTrigger, with the device topics `interfaces` declare.
pub(crate) fn dispatchers_plan(
    trigger: &MQTTTrigger,
    interfaces: &[TwinInterface],
    world: &World<'_>,
) -> Result<DispatchersPlan, PlanError> {
    let config = world.config;
    let exchange = trigger.spec.exchange.clone();
    let device_bindings = device_bindings(interfaces)?;
    let dispatcher = |kind: DispatcherKind, spec: &DispatcherSpec, node_selector| {
        let (default_image, args) = match kind {
            DispatcherKind::Mqtt => (
                config.images.mqtt_dispatcher(),
                &config.args.mqtt_dispatcher,
            ),
            DispatcherKind::CloudEvent => (
                config.images.cloud_event_dispatcher(),
                &config.args.cloud_event_dispatcher,
            ),
        };
        DispatcherPlan {
            kind,
            name: kind.name().to_owned(),
            args: args.clone(),
            queue: kind.queue(),
            image: spec
                .image
                .clone()
                .unwrap_or_else(|| default_image.to_owned()),
            replicas: u32::try_from(spec.replicas).unwrap_or(1),
            prefetch: u16::try_from(spec.prefetch).unwrap_or(u16::MAX),
            resources: spec.resources.clone(),
            env: dispatcher_env(kind, spec, &exchange, &device_bindings),
            node_selector,
        }
    };
    Ok(DispatchersPlan {
        name: name_of(trigger).to_owned(),
        namespace: world.namespace.to_owned(),
        mqtt_exchange: exchange.clone(),
        queue_type: trigger.spec.queue_type.as_str().to_owned(),
        mqtt: dispatcher(
            DispatcherKind::Mqtt,
            &trigger.spec.mqtt_dispatcher,
            BTreeMap::new(),
        ),
        cloud_event: dispatcher(
            DispatcherKind::CloudEvent,
            &trigger.spec.cloud_event_dispatcher,
            config.node_selectors.core.clone(),
        ),
        device_bindings,
    })
}

/// A gateway: which APIs it serves, where they are, and the token its callers present.
pub(crate) fn gateway_plan(gateway: &Gateway, world: &World<'_>) -> GatewayPlan {
    let spec = &gateway.spec;
    let flag = |name: &str, on: bool| PlatformEnv::literal(name, on.to_string());
    let mut vars = vec![
        // The callers' token; the platform's token for the services behind.
        PlatformEnv {
            name: env::API_TOKEN.into(),
            value: EnvValue::SecretKey {
                name: spec.auth.bearer_token_secret.name.clone(),
                key: spec.auth.bearer_token_secret.key.clone(),
            },
        },
        world.config.api_token(env::TOKEN),
        flag(env::GATEWAY_GRAPH, spec.apis.graph),
        flag(env::GATEWAY_EVENT_STORE, spec.apis.event_store),
        flag(env::GATEWAY_COMMANDS, spec.apis.commands),
        PlatformEnv::endpoint(env::GRAPH_URL, Endpoint::Graph),
        PlatformEnv::endpoint(env::BROKER, Endpoint::Broker),
    ];
    if world.event_store.is_some() {
        vars.push(PlatformEnv::endpoint(
            env::EVENT_STORE,
            Endpoint::EventStore,
        ));
    }
    let port = u16::try_from(spec.service.port).unwrap_or(8080);
    vars.push(PlatformEnv::literal(
        env::GATEWAY_LISTEN,
        format!("0.0.0.0:{port}"),
    ));
    let tls_secret = spec.tls.as_ref().map(|tls| tls.secret_name.clone());
    if tls_secret.is_some() {
        vars.push(PlatformEnv::literal(
            env::TLS_CERT,
            format!("{GATEWAY_TLS_DIR}/tls.crt"),
        ));
        vars.push(PlatformEnv::literal(
            env::TLS_KEY,
            format!("{GATEWAY_TLS_DIR}/tls.key"),
        ));
    }
    GatewayPlan {
        name: name_of(gateway).to_owned(),
        namespace: world.namespace.to_owned(),
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| world.config.images.gateway().to_owned()),
        args: world.config.args.gateway.clone(),
        replicas: u32::try_from(spec.replicas).unwrap_or(1),
        resources: spec.resources.clone(),
        port,
        service_type: format!("{:?}", spec.service.type_),
        env: vars,
        tls_secret,
    }
}
