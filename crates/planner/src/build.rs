//! Computing the plan from the twin model: the routing rules of the original KTWIN operator
//! (§4.2.4 of the reference) with its defects fixed.

use std::collections::{BTreeMap, BTreeSet};

use ktwin_events::{EventType, GrammarError, env};
use ktwin_model::crd::{DispatcherSpec, EventStore, Gateway, MQTTTrigger, TwinInterface};

use crate::config::KtwinConfig;
use crate::input::{PlanInput, name_of};
use crate::plan::{
    Autoscaling, Diagnostic, DispatcherKind, DispatcherPlan, DispatchersPlan, Endpoint, EnvValue,
    EventStorePlan, GatewayPlan, GraphPlan, InterfacePlan, MqttIngress, Plan, PlatformEnv, Route,
    RoutePurpose, ScaleMetric, Subscriber, TwinService,
};

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A name in the model cannot be used in event types, topics or object names.
    #[error("{object}: field {field}: {source}")]
    InvalidName {
        /// `Kind/name` of the offending object.
        object: String,
        /// The field holding the name.
        field: String,
        /// What is wrong with it.
        source: GrammarError,
    },
    /// A configured reference names an object that does not exist.
    #[error(
        "{what} {name:?} named in the configuration does not exist in namespace {namespace:?}; existing: {existing:?}"
    )]
    MissingReference {
        /// `EventStore` or `MQTTTrigger`.
        what: &'static str,
        /// The configured name.
        name: String,
        /// The namespace searched.
        namespace: String,
        /// The names that do exist.
        existing: Vec<String>,
    },
    /// Several candidates and no configuration saying which one to use.
    #[error(
        "namespace {namespace:?} has several {what}s {names:?}: name the one to use in the configuration ({field})"
    )]
    Ambiguous {
        /// `EventStore` or `MQTTTrigger`.
        what: &'static str,
        /// The namespace searched.
        namespace: String,
        /// The candidates.
        names: Vec<String>,
        /// The configuration field to set.
        field: &'static str,
    },
}

/// What an interface is planned against: the world's shared components, resolved once.
#[derive(Debug, Clone)]
pub struct World<'a> {
    /// Namespace of the world.
    pub namespace: &'a str,
    /// Platform configuration.
    pub config: &'a KtwinConfig,
    /// The EventStore twins persist to, if any.
    pub event_store: Option<&'a str>,
    /// The MQTTTrigger whose dispatchers carry device traffic, if any.
    pub mqtt_trigger: Option<&'a str>,
}

impl<'a> World<'a> {
    /// Whether dispatchers exist, so device routes can be made.
    pub fn has_dispatchers(&self) -> bool {
        self.mqtt_trigger.is_some()
    }

    /// Resolves the shared components of `namespace` from the EventStores and MQTTTriggers there
    /// (by configured name, or the only one).
    pub fn resolve(
        namespace: &'a str,
        config: &'a KtwinConfig,
        event_stores: &'a [EventStore],
        mqtt_triggers: &'a [MQTTTrigger],
    ) -> Result<Self, PlanError> {
        let event_store = pick(
            "EventStore",
            "eventStore",
            namespace,
            config.event_store.as_deref(),
            event_stores.iter().map(name_of),
        )?;
        let mqtt_trigger = pick(
            "MQTTTrigger",
            "mqttTrigger",
            namespace,
            config.mqtt_trigger.as_deref(),
            mqtt_triggers.iter().map(name_of),
        )?;
        Ok(Self {
            namespace,
            config,
            event_store,
            mqtt_trigger,
        })
    }
}

/// The configured candidate, or the only one, or none; an error if the choice is ambiguous.
fn pick<'a>(
    what: &'static str,
    field: &'static str,
    namespace: &str,
    configured: Option<&str>,
    candidates: impl Iterator<Item = &'a str>,
) -> Result<Option<&'a str>, PlanError> {
    let names: Vec<&'a str> = candidates.collect();
    match configured {
        Some(wanted) => names
            .iter()
            .find(|n| **n == wanted)
            .map(|n| Some(*n))
            .ok_or_else(|| PlanError::MissingReference {
                what,
                name: wanted.to_owned(),
                namespace: namespace.to_owned(),
                existing: names.iter().map(|n| n.to_string()).collect(),
            }),
        None if names.len() > 1 => Err(PlanError::Ambiguous {
            what,
            namespace: namespace.to_owned(),
            names: names.iter().map(|n| n.to_string()).collect(),
            field,
        }),
        None => Ok(names.first().copied()),
    }
}

fn invalid(interface: &str, field: &str) -> impl FnOnce(GrammarError) -> PlanError {
    let object = format!("TwinInterface/{interface}");
    let field = field.to_owned();
    move |source| PlanError::InvalidName {
        object,
        field,
        source,
    }
}

/// Plans one TwinInterface: its service and every route and device ingress it owns.
///
/// Routes follow the original operator, fixed: command names are canonical lower case, every
/// route is owned by exactly one interface (so realizers can keep them apart and deleting one
/// interface never removes another's routing), and the event store is the resolved one, not a
/// magic name.
pub fn plan_interface(
    interface: &TwinInterface,
    world: &World<'_>,
) -> Result<(InterfacePlan, Vec<Diagnostic>), PlanError> {
    let name = interface.metadata.name.clone().unwrap_or_default();
    let spec = &interface.spec;
    let mut diagnostics = Vec::new();
    let owner = name.clone();
    let own = |kind: fn(&str) -> Result<EventType, GrammarError>, field: &str| {
        kind(&name).map_err(invalid(&name, field))
    };
    // Validates the interface name once; every type below reuses it.
    own(EventType::real, "metadata.name")?;

    let mut routes = BTreeSet::new();
    let mut ingress = BTreeSet::new();
    let mut route = |purpose: RoutePurpose, event_type: EventType, subscriber: Subscriber| {
        routes.insert(Route {
            owner: owner.clone(),
            purpose,
            event_type,
            subscriber,
        });
    };
    let twin = Subscriber::Twin(name.clone());
    let aggregated: Vec<(String, String)> = spec
        .relationships
        .iter()
        .enumerate()
        .filter(|(_, r)| r.aggregate_data)
        .map(|(i, r)| {
            let target = r.interface.clone().ok_or_else(|| PlanError::InvalidName {
                object: format!("TwinInterface/{name}"),
                field: format!("spec.relationships[{i}].interface"),
                source: GrammarError::InvalidName {
                    what: "interface",
                    value: String::new(),
                    reason: "an aggregateData relationship must name its target interface",
                },
            })?;
            EventType::real(&target).map_err(invalid(
                &name,
                &format!("spec.relationships[{i}].interface"),
            ))?;
            Ok((r.name.to_lowercase(), target))
        })
        .collect::<Result<_, PlanError>>()?;

    if spec.service.is_some() {
        route(
            RoutePurpose::Real,
            own(EventType::real, "metadata.name")?,
            twin.clone(),
        );
        let mut seen = BTreeMap::new();
        for (i, command) in spec.commands.iter().enumerate() {
            let event_type = EventType::command(&name, &command.name)
                .map_err(invalid(&name, &format!("spec.commands[{i}].name")))?;
            let canonical = command.name.to_lowercase();
            if let Some(previous) = seen.insert(canonical.clone(), command.name.clone()) {
                diagnostics.push(Diagnostic {
                    object: format!("TwinInterface/{name}"),
                    message: format!(
                        "commands {previous:?} and {:?} are the same command {canonical:?} (command names are case-insensitive); one route serves both",
                        command.name
                    ),
                });
            }
            route(RoutePurpose::Command(canonical), event_type, twin.clone());
        }
        for (relationship, target) in &aggregated {
            let real = EventType::real(target).map_err(invalid(&name, "spec.relationships"))?;
            route(
                RoutePurpose::AggregateReal(relationship.clone()),
                real,
                twin.clone(),
            );
            if world.has_dispatchers() {
                let virtual_ =
                    EventType::virtual_(target).map_err(invalid(&name, "spec.relationships"))?;
                route(
                    RoutePurpose::AggregateVirtual(relationship.clone()),
                    virtual_,
                    Subscriber::Devices,
                );
            }
        }
        if world.has_dispatchers() {
            route(
                RoutePurpose::Virtual,
                own(EventType::virtual_, "metadata.name")?,
                Subscriber::Devices,
            );
        }
    } else {
        for (relationship, _) in &aggregated {
            diagnostics.push(Diagnostic {
                object: format!("TwinInterface/{name}"),
                message: format!(
                    "relationship {relationship:?} has aggregateData but the interface has no service to aggregate into; it routes nothing"
                ),
            });
        }
        if !spec.commands.is_empty() {
            diagnostics.push(Diagnostic {
                object: format!("TwinInterface/{name}"),
                message: "commands are declared but the interface has no service to run them; they route nothing".into(),
            });
        }
    }

    if world.has_dispatchers() {
        ingress.insert(MqttIngress {
            owner: name.clone(),
            purpose: RoutePurpose::Real,
            interface: name.clone(),
        });
        for (relationship, target) in &aggregated {
            ingress.insert(MqttIngress {
                owner: name.clone(),
                purpose: RoutePurpose::AggregateReal(relationship.clone()),
                interface: target.clone(),
            });
        }
    }

    let persist = spec.event_store.clone().unwrap_or_default();
    match world.event_store {
        Some(store) => {
            let store = Subscriber::EventStore(store.to_owned());
            if persist.persist_real_event {
                route(
                    RoutePurpose::PersistReal,
                    own(EventType::real, "metadata.name")?,
                    store.clone(),
                );
            }
            if persist.persist_virtual_event {
                route(
                    RoutePurpose::PersistVirtual,
                    own(EventType::virtual_, "metadata.name")?,
                    store.clone(),
                );
            }
            route(
                RoutePurpose::Store,
                own(EventType::store, "metadata.name")?,
                store,
            );
        }
        None if persist.persist_real_event || persist.persist_virtual_event => {
            diagnostics.push(Diagnostic {
                object: format!("TwinInterface/{name}"),
                message: format!(
                    "eventStore persistence is requested but namespace {:?} has no EventStore; nothing is persisted",
                    world.namespace
                ),
            });
        }
        None => {}
    }

    let service = spec
        .service
        .as_ref()
        .map(|service| twin_service(&name, service, world));
    Ok((
        InterfacePlan {
            interface: name.clone(),
            namespace: world.namespace.to_owned(),
            service,
            routes: routes.into_iter().collect(),
            mqtt_ingress: ingress.into_iter().collect(),
        },
        diagnostics,
    ))
}

fn twin_service(
    name: &str,
    service: &ktwin_model::crd::TwinInterfaceService,
    world: &World<'_>,
) -> TwinService {
    let autoscaling = service
        .auto_scaling
        .as_ref()
        .map(autoscaling_from_model)
        .unwrap_or_default()
        .or(&world.config.default_autoscaling);
    let mut env = vec![
        PlatformEnv::endpoint(env::BROKER, Endpoint::Broker),
        PlatformEnv::endpoint(env::GRAPH_URL, Endpoint::Graph),
        PlatformEnv::literal(env::INTERFACE, name),
        PlatformEnv::literal(env::NAMESPACE, world.namespace),
    ];
    if world.event_store.is_some() {
        env.insert(
            1,
            PlatformEnv::endpoint(env::EVENT_STORE, Endpoint::EventStore),
        );
    }
    TwinService {
        interface: name.to_owned(),
        namespace: world.namespace.to_owned(),
        template: service.template.clone(),
        autoscaling,
        env,
        node_selector: world.config.node_selectors.twin_services.clone(),
    }
}

/// The planner's autoscaling from the CRD's (negative values, rejected by the CRD schema,
/// are treated as unset).
pub fn autoscaling_from_model(a: &ktwin_model::crd::AutoScaling) -> Autoscaling {
    use ktwin_model::crd::AutoScalerMetric as M;
    let n = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
    Autoscaling {
        min_scale: n(a.min_scale),
        max_scale: n(a.max_scale),
        target: n(a.target),
        target_utilization_percentage: n(a.target_utilization_percentage),
        parallelism: n(a.parallelism),
        metric: a.metric.map(|m| match m {
            M::Concurrency => ScaleMetric::Concurrency,
            M::Rps => ScaleMetric::Rps,
            M::Cpu => ScaleMetric::Cpu,
            M::Memory => ScaleMetric::Memory,
        }),
    }
}

fn event_store_plan(store: &EventStore, world: &World<'_>) -> EventStorePlan {
    let config = world.config;
    let mut env = vec![PlatformEnv::literal(
        "TIMEOUT",
        store.spec.timeout.to_string(),
    )];
    if let Some(db) = &config.event_store_database {
        env.push(PlatformEnv::literal("KTWIN_STORE_BACKEND", "postgres"));
        env.push(PlatformEnv {
            name: "KTWIN_STORE_DATABASE_URL".into(),
            value: EnvValue::SecretKey {
                name: db.name.clone(),
                key: db.key.clone(),
            },
        });
    }
    EventStorePlan {
        name: name_of(store).to_owned(),
        namespace: world.namespace.to_owned(),
        image: config.images.event_store.clone(),
        args: config.args.event_store.clone(),
        autoscaling: store
            .spec
            .auto_scaling
            .as_ref()
            .map(autoscaling_from_model)
            .unwrap_or_default()
            .or(&config.default_autoscaling),
        resources: store.spec.resources.clone(),
        dispatcher_resources: store.spec.dispatcher_resources.clone(),
        ingest_path: config.event_store_path.clone(),
        env,
        node_selector: config.node_selectors.core.clone(),
    }
}

fn dispatchers_plan(trigger: &MQTTTrigger, world: &World<'_>) -> DispatchersPlan {
    let config = world.config;
    let exchange = trigger.spec.exchange.clone();
    let dispatcher =
        |kind: DispatcherKind, spec: &DispatcherSpec, default_image: &str, node_selector| {
            let queue = kind.queue();
            DispatcherPlan {
                kind,
                name: kind.name().to_owned(),
                args: match kind {
                    DispatcherKind::Mqtt => config.args.mqtt_dispatcher.clone(),
                    DispatcherKind::CloudEvent => config.args.cloud_event_dispatcher.clone(),
                },
                queue: queue.clone(),
                image: spec
                    .image
                    .clone()
                    .unwrap_or_else(|| default_image.to_owned()),
                replicas: u32::try_from(spec.replicas).unwrap_or(1),
                prefetch: u16::try_from(spec.prefetch).unwrap_or(u16::MAX),
                resources: spec.resources.clone(),
                env: {
                    use PlatformEnv as E;
                    let literal = |n: &str, v: &str| E::literal(n, v);
                    let mut env = vec![
                        PlatformEnv::endpoint("KTWIN_AMQP_URL", Endpoint::Amqp),
                        // Only known once eventing-rabbitmq has created the broker's exchange.
                        PlatformEnv::endpoint("PUBLISHER_EXCHANGE", Endpoint::BrokerExchange),
                        // The operator owns the exchange, the queues and the bindings.
                        literal("DECLARE_EXCHANGE", "false"),
                        literal("SUBSCRIBER_QUEUE", &queue),
                        literal("KTWIN_MQTT_EXCHANGE", &exchange),
                        literal("KTWIN_PREFETCH", &spec.prefetch.to_string()),
                        literal("SERVICE_NAME", kind.name()),
                    ];
                    match kind {
                        DispatcherKind::Mqtt => {
                            env.push(literal("KTWIN_SOURCE", "amqp"));
                            env.push(literal("DECLARE_QUEUE", "false"));
                        }
                        DispatcherKind::CloudEvent => env.push(literal("KTWIN_SINK", "amqp")),
                    }
                    env
                },
                node_selector,
            }
        };
    DispatchersPlan {
        name: name_of(trigger).to_owned(),
        namespace: world.namespace.to_owned(),
        mqtt_exchange: exchange.clone(),
        queue_type: trigger.spec.queue_type.as_str().to_owned(),
        mqtt: dispatcher(
            DispatcherKind::Mqtt,
            &trigger.spec.mqtt_dispatcher,
            &config.images.mqtt_dispatcher,
            BTreeMap::new(),
        ),
        cloud_event: dispatcher(
            DispatcherKind::CloudEvent,
            &trigger.spec.cloud_event_dispatcher,
            &config.images.cloud_event_dispatcher,
            config.node_selectors.core.clone(),
        ),
    }
}

/// Plans a whole world: every interface in `input`, the event store, dispatchers and graph.
pub fn plan(input: &PlanInput, config: &KtwinConfig) -> Result<Plan, PlanError> {
    let namespace = input.namespace.as_str();
    let world = World::resolve(namespace, config, &input.event_stores, &input.mqtt_triggers)?;
    let mut diagnostics = Vec::new();
    let mut interfaces = Vec::new();
    let mut names = BTreeSet::new();
    for interface in &input.interfaces {
        let (plan, found) = plan_interface(interface, &world)?;
        diagnostics.extend(found);
        if !names.insert(plan.interface.clone()) {
            diagnostics.push(Diagnostic {
                object: format!("TwinInterface/{}", plan.interface),
                message: "declared twice; both declarations are planned".into(),
            });
        }
        interfaces.push(plan);
    }
    interfaces.sort_by(|a, b| a.interface.cmp(&b.interface));
    diagnostics.extend(reference_diagnostics(input, &names));
    diagnostics.extend(component_diagnostics(input, &world));
    diagnostics.sort();
    diagnostics.dedup();

    let event_store = input
        .event_stores
        .iter()
        .find(|e| Some(name_of(*e)) == world.event_store)
        .map(|e| event_store_plan(e, &world));
    let dispatchers = input
        .mqtt_triggers
        .iter()
        .find(|m| Some(name_of(*m)) == world.mqtt_trigger)
        .map(|m| dispatchers_plan(m, &world));
    let mut gateways: Vec<GatewayPlan> = input
        .gateways
        .iter()
        .map(|g| gateway_plan(g, &world))
        .collect();
    gateways.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Plan {
        namespace: namespace.to_owned(),
        broker: config.broker.clone(),
        interfaces,
        event_store,
        dispatchers,
        graph: GraphPlan {
            name: config.graph_service.clone(),
            namespace: namespace.to_owned(),
            image: config.images.graph.clone(),
            args: config.args.graph.clone(),
            port: config.service_port,
            path: config.graph_path.clone(),
            instances: input.instances.len(),
        },
        gateways,
        diagnostics,
    })
}

fn gateway_plan(gateway: &Gateway, world: &World<'_>) -> GatewayPlan {
    let spec = &gateway.spec;
    let flag = |name: &str, on: bool| PlatformEnv::literal(name, on.to_string());
    let mut env = vec![
        PlatformEnv {
            name: "KTWIN_GATEWAY_TOKEN".into(),
            value: EnvValue::SecretKey {
                name: spec.auth.bearer_token_secret.name.clone(),
                key: spec.auth.bearer_token_secret.key.clone(),
            },
        },
        flag("KTWIN_GATEWAY_GRAPH", spec.apis.graph),
        flag("KTWIN_GATEWAY_EVENT_STORE", spec.apis.event_store),
        flag("KTWIN_GATEWAY_COMMANDS", spec.apis.commands),
        PlatformEnv::endpoint("KTWIN_GRAPH_URL", Endpoint::Graph),
        PlatformEnv::endpoint("KTWIN_BROKER", Endpoint::Broker),
    ];
    if world.event_store.is_some() {
        env.push(PlatformEnv::endpoint(
            "KTWIN_EVENT_STORE",
            Endpoint::EventStore,
        ));
    }
    GatewayPlan {
        name: name_of(gateway).to_owned(),
        namespace: world.namespace.to_owned(),
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| world.config.images.gateway.clone()),
        args: world.config.args.gateway.clone(),
        replicas: u32::try_from(spec.replicas).unwrap_or(1),
        resources: spec.resources.clone(),
        port: u16::try_from(spec.service.port).unwrap_or(8080),
        service_type: format!("{:?}", spec.service.type_),
        env,
    }
}

/// Aggregated interfaces and instance interfaces that are not declared.
fn reference_diagnostics(input: &PlanInput, names: &BTreeSet<String>) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for interface in &input.interfaces {
        for relationship in interface
            .spec
            .relationships
            .iter()
            .filter(|r| r.aggregate_data)
        {
            if let Some(target) = &relationship.interface
                && !names.contains(target)
            {
                diagnostics.push(Diagnostic {
                    object: format!("TwinInterface/{}", name_of(interface)),
                    message: format!(
                        "relationship {:?} aggregates interface {target:?}, which is not declared",
                        relationship.name
                    ),
                });
            }
        }
    }
    for instance in &input.instances {
        if !names.contains(&instance.spec.interface) {
            diagnostics.push(Diagnostic {
                object: format!("TwinInstance/{}", name_of(instance)),
                message: format!(
                    "its interface {:?} is not declared",
                    instance.spec.interface
                ),
            });
        }
    }
    diagnostics
}

/// Missing shared components, and extra ones that are not used.
fn component_diagnostics(input: &PlanInput, world: &World<'_>) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let components: [(&str, Option<&str>, Vec<&str>, &str); 2] = [
        (
            "EventStore",
            world.event_store,
            input.event_stores.iter().map(name_of).collect(),
            "events are not persisted",
        ),
        (
            "MQTTTrigger",
            world.mqtt_trigger,
            input.mqtt_triggers.iter().map(name_of).collect(),
            "devices cannot reach twins over MQTT",
        ),
    ];
    for (kind, chosen, all, consequence) in components {
        match chosen {
            None => diagnostics.push(Diagnostic {
                object: format!("Namespace/{}", world.namespace),
                message: format!("no {kind}: {consequence}"),
            }),
            Some(chosen) => {
                for other in all.iter().filter(|n| **n != chosen) {
                    diagnostics.push(Diagnostic {
                        object: format!("{kind}/{other}"),
                        message: format!("not used: the world uses {kind} {chosen:?}"),
                    });
                }
            }
        }
    }
    diagnostics
}
