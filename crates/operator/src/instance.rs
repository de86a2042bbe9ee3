//! The TwinInstance reconciler: a TwinInstance has no children (the graph service and the twin
//! services read it), so reconciling it means reporting its status: whether its interface
//! exists, which of its relationships dangle (target missing, or of another interface), and the
//! MQTT topics its device uses.

use std::sync::Arc;
use std::time::Instant;

use ktwin_events::{Topic, TopicKind};
use ktwin_model::crd::{TwinInstance, TwinInstanceRelationship};
use ktwin_model::graph::{InstanceGraph, InstanceProblem};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::controller::{Context, Error, RESYNC};
use crate::status::{self, condition};

/// Reconciles one TwinInstance: writes its status.
pub async fn reconcile_twin_instance(
    instance: Arc<TwinInstance>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile(&instance, &ctx).await;
    crate::metrics::reconciled("TwinInstance", started.elapsed(), result.is_ok());
    result
}

/// The relationships of `instance` that dangle among `instances`.
pub fn dangling(
    instance: &TwinInstance,
    instances: &[TwinInstance],
) -> Vec<TwinInstanceRelationship> {
    let name = instance.name_any();
    let graph = InstanceGraph::from_instances(instances.iter().chain([instance]));
    let broken: Vec<(String, String)> = graph
        .dangling()
        .into_iter()
        .filter_map(|problem| match problem {
            InstanceProblem::MissingTarget {
                instance,
                relationship,
                target,
            }
            | InstanceProblem::InterfaceMismatch {
                instance,
                relationship,
                target,
                ..
            } if instance == name => Some((relationship, target)),
            _ => None,
        })
        .collect();
    instance
        .spec
        .twin_instance_relationships
        .iter()
        .filter(|r| broken.contains(&(r.name.clone(), r.instance.clone())))
        .cloned()
        .collect()
}

async fn reconcile(instance: &TwinInstance, ctx: &Context) -> Result<Action, Error> {
    let namespace = instance
        .namespace()
        .ok_or_else(|| Error::NoNamespace(instance.name_any()))?;
    let api: Api<TwinInstance> = Api::namespaced(ctx.client.clone(), &namespace);
    let interface_name = &instance.spec.interface;
    // The schema lets `spec.interface` be absent (the original's samples): nothing to look up.
    let resolved = !interface_name.is_empty()
        && ctx
            .interfaces_in(&namespace)
            .await?
            .iter()
            .any(|i| i.name_any() == *interface_name);
    let others: Vec<TwinInstance> = ctx
        .instances_in(&namespace)
        .await?
        .into_iter()
        .filter(|o| o.name_any() != instance.name_any())
        .map(|o| TwinInstance::clone(&o))
        .collect();
    let dangling = dangling(instance, &others);
    let status = instance_status(instance, &namespace, resolved, dangling);
    status::patch_if_changed(&api, instance, status).await?;
    Ok(Action::requeue(RESYNC))
}

/// The status of `instance`: its interface `resolved` or not, its `dangling` relationships,
/// the MQTT topics of its device.
fn instance_status(
    instance: &TwinInstance,
    namespace: &str,
    resolved: bool,
    dangling: Vec<TwinInstanceRelationship>,
) -> serde_json::Value {
    let interface_name = &instance.spec.interface;
    let topics = [TopicKind::Real, TopicKind::Virtual]
        .map(|kind| Topic::new(kind, interface_name, &instance.name_any()).map(|t| t.mqtt_topic()));
    let generation = instance.meta().generation;
    let interface_condition = condition(
        "InterfaceResolved",
        resolved,
        if resolved {
            "InterfaceFound"
        } else {
            "InterfaceNotFound"
        },
        if resolved {
            format!("TwinInterface {interface_name:?} exists")
        } else if interface_name.is_empty() {
            "spec.interface is not set: name the TwinInterface this instance belongs to".to_owned()
        } else {
            format!("no TwinInterface {interface_name:?} in namespace {namespace:?}")
        },
        generation,
    );
    let relationships_condition = condition(
        "RelationshipsResolved",
        dangling.is_empty(),
        if dangling.is_empty() {
            "TargetsFound"
        } else {
            "DanglingRelationships"
        },
        if dangling.is_empty() {
            "every relationship's target exists with the declared interface".into()
        } else {
            dangling
                .iter()
                .map(|r| format!("{} -> {} ({})", r.name, r.instance, r.interface))
                .collect::<Vec<_>>()
                .join(", ")
        },
        generation,
    );
    let topic_error = topics
        .iter()
        .find_map(|t| t.as_ref().err())
        .map(ToString::to_string);
    let ready = resolved && dangling.is_empty() && topic_error.is_none();
    let (reason, message) = match (&topic_error, resolved, dangling.is_empty()) {
        _ if interface_name.is_empty() => ("NoInterface", interface_condition.message.clone()),
        (Some(err), _, _) => ("InvalidName", err.clone()),
        (None, false, _) => ("InterfaceNotFound", interface_condition.message.clone()),
        (None, true, false) => (
            "DanglingRelationships",
            relationships_condition.message.clone(),
        ),
        (None, true, true) => (
            "Resolved",
            "interface and relationships resolved".to_owned(),
        ),
    };
    let phase = match (&topic_error, ready) {
        (Some(_), _) => "Failed",
        (None, true) => "Running",
        (None, false) => "Pending",
    };
    let [publish, subscribe] = topics.map(Result::ok);
    json!({
        "phase": phase,
        "observedGeneration": generation,
        "conditions": [
            condition("Ready", ready, reason, message, generation),
            interface_condition,
            relationships_condition,
        ],
        "danglingRelationships": dangling,
        "mqttPublishTopic": publish,
        "mqttSubscribeTopic": subscribe,
    })
}
