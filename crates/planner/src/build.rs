//! Planning a whole world: every interface, the shared components and the diagnostics.

use std::collections::BTreeSet;

use crate::components::{dispatchers_plan, event_store_plan, gateway_plan};
use crate::config::KtwinConfig;
use crate::input::{PlanInput, name_of};
use crate::interface::plan_interface;
use crate::plan::{Diagnostic, GatewayPlan, GraphPlan, Plan};
use crate::world::{PlanError, World};

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
        .map(|m| dispatchers_plan(m, &input.interfaces, &world))
        .transpose()?;
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
            port: config.service_port,
            path: config.graph_path.clone(),
            instances: input.instances.len(),
        },
        gateways,
        diagnostics,
    })
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
