//! Planning one TwinInterface: the routing rules of the original KTWIN operator (§4.2.4 of the
//! reference) with its defects fixed, and the twin service behind the interface.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Container;
use ktwin_events::{DeviceBinding, DeviceBindings, EventType, GrammarError, env};
use ktwin_model::crd::{TwinInterface, TwinInterfaceService, TwinInterfaceSpec};

use crate::plan::{
    Autoscaling, Diagnostic, Endpoint, InterfacePlan, MqttIngress, PlatformEnv, Route,
    RoutePurpose, ScaleMetric, Subscriber, TwinService,
};
use crate::world::{PlanError, World, invalid};

/// An `aggregateData` relationship: its canonical (lower-case) name and its target interface.
struct Aggregated {
    relationship: String,
    target: String,
}

/// The routes of one interface as they are found, and what could not be honoured.
struct Routes {
    owner: String,
    routes: BTreeSet<Route>,
    diagnostics: Vec<Diagnostic>,
}

impl Routes {
    fn add(&mut self, purpose: RoutePurpose, event_type: EventType, subscriber: Subscriber) {
        self.routes.insert(Route {
            owner: self.owner.clone(),
            purpose,
            event_type,
            subscriber,
        });
    }

    fn note(&mut self, message: String) {
        self.diagnostics.push(Diagnostic {
            object: format!("TwinInterface/{}", self.owner),
            message,
        });
    }

    fn event_type(
        &self,
        make: fn(&str) -> Result<EventType, GrammarError>,
        interface: &str,
        field: &str,
    ) -> Result<EventType, PlanError> {
        make(interface).map_err(invalid(&self.owner, field))
    }

    /// Real events, commands and aggregated children reach the service; its virtual events
    /// (and those it emits for aggregated children) reach devices.
    fn service(
        &mut self,
        spec: &TwinInterfaceSpec,
        aggregated: &[Aggregated],
        world: &World<'_>,
    ) -> Result<(), PlanError> {
        let owner = self.owner.clone();
        let twin = Subscriber::Twin(owner.clone());
        let real = self.event_type(EventType::real, &owner, "metadata.name")?;
        self.add(RoutePurpose::Real, real, twin.clone());
        self.commands(spec, &twin)?;
        for child in aggregated {
            let field = "spec.relationships";
            let real = self.event_type(EventType::real, &child.target, field)?;
            let purpose = RoutePurpose::AggregateReal(child.relationship.clone());
            self.add(purpose, real, twin.clone());
            if world.has_dispatchers() {
                let virtual_ = self.event_type(EventType::virtual_, &child.target, field)?;
                let purpose = RoutePurpose::AggregateVirtual(child.relationship.clone());
                self.add(purpose, virtual_, Subscriber::Devices);
            }
        }
        if world.has_dispatchers() {
            let virtual_ = self.event_type(EventType::virtual_, &owner, "metadata.name")?;
            self.add(RoutePurpose::Virtual, virtual_, Subscriber::Devices);
        }
        Ok(())
    }

    /// One route per command, by canonical lower-case name (two spellings share it).
    fn commands(&mut self, spec: &TwinInterfaceSpec, twin: &Subscriber) -> Result<(), PlanError> {
        let mut seen = BTreeMap::new();
        for (i, command) in spec.commands.iter().enumerate() {
            let event_type = EventType::command(&self.owner, &command.name)
                .map_err(invalid(&self.owner, &format!("spec.commands[{i}].name")))?;
            let canonical = command.name.to_lowercase();
            if let Some(previous) = seen.insert(canonical.clone(), command.name.clone()) {
                self.note(format!(
                    "commands {previous:?} and {:?} are the same command {canonical:?} (command names are case-insensitive); one route serves both",
                    command.name
                ));
            }
            self.add(RoutePurpose::Command(canonical), event_type, twin.clone());
        }
        Ok(())
    }

    /// What an interface without a service cannot do.
    fn serviceless(&mut self, spec: &TwinInterfaceSpec, aggregated: &[Aggregated]) {
        for child in aggregated {
            self.note(format!(
                "relationship {:?} has aggregateData but the interface has no service to aggregate into; it routes nothing",
                child.relationship
            ));
        }
        let to_devices = spec
            .mqtt
            .as_ref()
            .is_some_and(|m| m.command_topic.is_some());
        if !spec.commands.is_empty() && !to_devices {
            self.note("commands are declared but the interface has no service to run them; they route nothing".into());
        }
    }

    /// The interface's store events, and its real/virtual events when asked, reach the world's
    /// event store.
    fn persistence(
        &mut self,
        spec: &TwinInterfaceSpec,
        world: &World<'_>,
    ) -> Result<(), PlanError> {
        let persist = spec.event_store.clone().unwrap_or_default();
        let owner = self.owner.clone();
        let Some(store) = world.event_store else {
            if persist.persist_real_event || persist.persist_virtual_event {
                self.note(format!(
                    "eventStore persistence is requested but namespace {:?} has no EventStore; nothing is persisted",
                    world.namespace
                ));
            }
            return Ok(());
        };
        let store = Subscriber::EventStore(store.to_owned());
        if persist.persist_real_event {
            let real = self.event_type(EventType::real, &owner, "metadata.name")?;
            self.add(RoutePurpose::PersistReal, real, store.clone());
        }
        if persist.persist_virtual_event {
            let virtual_ = self.event_type(EventType::virtual_, &owner, "metadata.name")?;
            self.add(RoutePurpose::PersistVirtual, virtual_, store.clone());
        }
        let stored = self.event_type(EventType::store, &owner, "metadata.name")?;
        self.add(RoutePurpose::Store, stored, store);
        Ok(())
    }
}

/// The `aggregateData` relationships of `spec`, each with a valid target interface.
fn aggregated(name: &str, spec: &TwinInterfaceSpec) -> Result<Vec<Aggregated>, PlanError> {
    spec.relationships
        .iter()
        .enumerate()
        .filter(|(_, r)| r.aggregate_data)
        .map(|(i, r)| {
            let field = format!("spec.relationships[{i}].interface");
            let target = r.interface.clone().ok_or_else(|| PlanError::InvalidName {
                object: format!("TwinInterface/{name}"),
                field: field.clone(),
                source: GrammarError::InvalidName {
                    what: "interface",
                    value: String::new(),
                    reason: "an aggregateData relationship must name its target interface",
                },
            })?;
            EventType::real(&target).map_err(invalid(name, &field))?;
            Ok(Aggregated {
                relationship: r.name.to_lowercase(),
                target,
            })
        })
        .collect()
}

/// Device topics of the interface and of its aggregated children enter the platform, when the
/// world has dispatchers.
fn mqtt_ingress(name: &str, aggregated: &[Aggregated], world: &World<'_>) -> Vec<MqttIngress> {
    if !world.has_dispatchers() {
        return Vec::new();
    }
    let own = MqttIngress {
        owner: name.to_owned(),
        purpose: RoutePurpose::Real,
        interface: name.to_owned(),
    };
    let children = aggregated.iter().map(|child| MqttIngress {
        owner: name.to_owned(),
        purpose: RoutePurpose::AggregateReal(child.relationship.clone()),
        interface: child.target.clone(),
    });
    let all: BTreeSet<MqttIngress> = std::iter::once(own).chain(children).collect();
    all.into_iter().collect()
}

/// The interface's declared device topics, checked, when the world has dispatchers to carry
/// them.
fn device(
    interface: &TwinInterface,
    world: &World<'_>,
) -> Result<Option<DeviceBinding>, PlanError> {
    let Some(binding) = crate::components::device_binding(interface) else {
        return Ok(None);
    };
    DeviceBindings::new(vec![binding.clone()]).map_err(PlanError::InvalidBinding)?;
    Ok(world.has_dispatchers().then_some(binding))
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
    EventType::real(&name).map_err(invalid(&name, "metadata.name"))?;
    let aggregated = aggregated(&name, spec)?;
    let mut routes = Routes {
        owner: name.clone(),
        routes: BTreeSet::new(),
        diagnostics: Vec::new(),
    };
    match &spec.service {
        Some(_) => routes.service(spec, &aggregated, world)?,
        None => routes.serviceless(spec, &aggregated),
    }
    routes.persistence(spec, world)?;
    let service = spec
        .service
        .as_ref()
        .map(|service| twin_service(&name, service, world));
    for container in service.iter().flat_map(imageless_containers) {
        routes.note(format!(
            "container {container:?} of the service has no image: set one (or, in a project, a built-in `handler`)"
        ));
    }
    let plan = InterfacePlan {
        interface: name.clone(),
        namespace: world.namespace.to_owned(),
        service,
        routes: routes.routes.into_iter().collect(),
        mqtt_ingress: mqtt_ingress(&name, &aggregated, world),
        device: device(interface, world)?,
    };
    Ok((plan, routes.diagnostics))
}

/// The twin service: the user's template, with the `ktwin` image given to containers that name
/// none (those run a built-in handler, `ktwin service <handler>`), autoscaling over the
/// defaults and the platform's variables.
fn twin_service(name: &str, service: &TwinInterfaceService, world: &World<'_>) -> TwinService {
    let autoscaling = service
        .auto_scaling
        .as_ref()
        .map(autoscaling_from_model)
        .unwrap_or_default()
        .or(&world.config.default_autoscaling);
    let mut env = vec![PlatformEnv::endpoint(env::BROKER, Endpoint::Broker)];
    if world.event_store.is_some() {
        env.push(PlatformEnv::endpoint(
            env::EVENT_STORE,
            Endpoint::EventStore,
        ));
    }
    env.extend([
        PlatformEnv::endpoint(env::GRAPH_URL, Endpoint::Graph),
        PlatformEnv::literal(env::INTERFACE, name),
        PlatformEnv::literal(env::NAMESPACE, world.namespace),
        // The SDK presents it to the event store and the graph.
        world.config.api_token(env::TOKEN),
    ]);
    let mut template = service.template.clone();
    for container in template
        .spec
        .iter_mut()
        .flat_map(|s| s.containers.iter_mut())
    {
        if container.image.as_deref().is_none_or(str::is_empty) && runs_built_in(container) {
            container.image = Some(world.config.images.twin_service().to_owned());
        }
    }
    TwinService {
        interface: name.to_owned(),
        namespace: world.namespace.to_owned(),
        template,
        autoscaling,
        env,
        node_selector: world.config.node_selectors.twin_services.clone(),
    }
}

/// Whether the container runs `ktwin service <handler>`, a handler built into the `ktwin` image.
fn runs_built_in(container: &Container) -> bool {
    container
        .args
        .as_ref()
        .and_then(|a| a.first())
        .map(String::as_str)
        == Some(ktwin_model::project::SERVICE_SUBCOMMAND)
}

/// Containers that name no image and run no built-in handler: nothing can run them.
fn imageless_containers(service: &TwinService) -> Vec<String> {
    service
        .template
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.image.as_deref().is_none_or(str::is_empty))
        .map(|c| c.name.clone())
        .collect()
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
