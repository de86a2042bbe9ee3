//! Reconcilers: read the world from the API server, plan, render, apply with server-side apply,
//! prune children no longer desired, run finalizers and report status conditions.
//!
//! Each reconciler is an async function of (object, [`Context`]) so tests drive it against a fake
//! API server; [`crate::run`] wires them into kube-runtime controllers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use ktwin_model::crd::{EventStore, Gateway, MQTTTrigger, TwinInterface};
use ktwin_planner::{KtwinConfig, PlanInput, World, plan_interface};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::kinds::{ChildKind, external};
use crate::names::{
    FIELD_MANAGER, FINALIZER, LABEL_KNATIVE_BROKER, LABEL_KNATIVE_TRIGGER, LABEL_OWNER_UID,
};
use crate::render::{
    Discovered, Missing, Owner, Rendered, Renderer, event_store_trigger_name, twin_trigger_name,
};

/// How long to wait before looking again at a missing dependency; watches on Brokers and Queues
/// normally wake the reconciler earlier.
pub const DEPENDENCY_RETRY: Duration = Duration::from_secs(60);
/// Periodic resync of a healthy object (children are also watched).
pub const RESYNC: Duration = Duration::from_secs(600);

/// Reconciliation failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API error.
        source: kube::Error,
    },
    /// The model cannot be planned.
    #[error(transparent)]
    Plan(#[from] ktwin_planner::PlanError),
    /// The object has no namespace (the API server never sends such a namespaced object).
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// Shared state of the reconcilers.
#[derive(Clone)]
pub struct Context {
    /// API client.
    pub client: Client,
    /// Platform configuration.
    pub config: Arc<KtwinConfig>,
    /// Kubernetes Events publisher.
    pub recorder: Recorder,
}

impl Context {
    /// A context reporting Events as `ktwin-operator`.
    pub fn new(client: Client, config: KtwinConfig) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config: Arc::new(config),
        }
    }

    fn dynamic(&self, namespace: &str, kind: ChildKind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &kind.api_resource())
    }

    async fn warn<K: Resource<DynamicType = ()>>(&self, object: &K, reason: &str, note: String) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%err, "could not publish a Kubernetes Event");
        }
    }
}

/// What a sync of children did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Objects written (created or changed).
    pub applied: Vec<String>,
    /// Objects deleted because they are no longer desired.
    pub pruned: Vec<String>,
}

/// Whether every field of `desired` has the same value in `current` (fields only the server
/// sets, like status or defaults, do not count), so applying it again would change nothing.
pub fn is_subset(desired: &Value, current: &Value) -> bool {
    match (desired, current) {
        (Value::Object(d), Value::Object(c)) => d
            .iter()
            .all(|(k, v)| c.get(k).is_some_and(|cv| is_subset(v, cv))),
        (Value::Array(d), Value::Array(c)) => {
            d.len() == c.len() && d.iter().zip(c).all(|(dv, cv)| is_subset(dv, cv))
        }
        _ => desired == current,
    }
}

/// Applies `rendered` for the owner with uid `owner_uid`, skipping objects already as desired,
/// and, when `prune` is set, deletes this owner's children of `kinds` that are not desired.
pub async fn sync_children(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    kinds: &[ChildKind],
    rendered: &Rendered,
    prune: bool,
) -> Result<SyncReport, Error> {
    let mut report = SyncReport::default();
    let selector = format!("{LABEL_OWNER_UID}={owner_uid}");
    for kind in kinds {
        let api = ctx.dynamic(namespace, *kind);
        let current: BTreeMap<String, Value> = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err(format!("listing {}s", kind.kind())))?
            .items
            .into_iter()
            .map(|o| {
                let name = o.name_any();
                (name, serde_json::to_value(o).unwrap_or_default())
            })
            .collect();
        let desired: Vec<_> = rendered
            .objects
            .iter()
            .filter(|d| d.kind == *kind)
            .collect();
        for object in &desired {
            let name = object.name();
            if current
                .get(name)
                .is_some_and(|c| is_subset(&object.object, c))
            {
                continue;
            }
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object.object),
            )
            .await
            .map_err(kube_err(format!("applying {} {name}", kind.kind())))?;
            report.applied.push(format!("{}/{name}", kind.kind()));
        }
        if prune {
            for name in current.keys() {
                if desired.iter().any(|d| d.name() == name) {
                    continue;
                }
                delete_ignoring_absent(&api, name)
                    .await
                    .map_err(kube_err(format!("pruning {} {name}", kind.kind())))?;
                report.pruned.push(format!("{}/{name}", kind.kind()));
            }
        }
    }
    crate::metrics::children(&report);
    Ok(report)
}

async fn delete_ignoring_absent(api: &Api<DynamicObject>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

/// Deletes every child of `kinds` owned by `owner_uid` (explicitly, rather than waiting for
/// garbage collection, so the topology operator removes broker-side bindings promptly).
async fn delete_children(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    kinds: &[ChildKind],
) -> Result<(), Error> {
    sync_children(ctx, namespace, owner_uid, kinds, &Rendered::default(), true)
        .await
        .map(|_| ())
}

/// Adds or runs the finalizer. Returns `true` when the object is being deleted (cleanup done,
/// finalizer removed), so the caller stops.
async fn finalize<K>(
    ctx: &Context,
    api: &Api<K>,
    object: &K,
    kinds: &[ChildKind],
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = object.name_any();
    let finalizers = object.finalizers();
    let ours = finalizers.iter().any(|f| f == FINALIZER);
    if object.meta().deletion_timestamp.is_some() {
        if ours {
            let namespace = object.namespace().unwrap_or_default();
            let uid = object.uid().unwrap_or_default();
            delete_children(ctx, &namespace, &uid, kinds).await?;
            let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
            let patch = json!({"metadata": {
                "finalizers": rest,
                "resourceVersion": object.resource_version(),
            }});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err(format!("removing the finalizer of {name}")))?;
        }
        return Ok(true);
    }
    if !ours {
        let mut all: Vec<&str> = finalizers.iter().map(String::as_str).collect();
        all.push(FINALIZER);
        let patch = json!({"metadata": {
            "finalizers": all,
            "resourceVersion": object.resource_version(),
        }});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err(format!("adding the finalizer to {name}")))?;
    }
    Ok(false)
}

/// Reads what the cluster provides for rendering; absent things stay `None` (reported later as
/// missing dependencies, never as a panic or an empty name).
pub async fn discover(
    ctx: &Context,
    namespace: &str,
    triggers: &[String],
) -> Result<Discovered, Error> {
    let broker = &ctx.config.broker;
    let broker_ns = broker.namespace_in(namespace);
    let brokers: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), broker_ns, &external::broker());
    let broker_url = brokers
        .get_opt(&broker.name)
        .await
        .map_err(kube_err(format!("reading Broker {}", broker.name)))?
        .and_then(|b| {
            b.data["status"]["address"]["url"]
                .as_str()
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
        });
    let exchanges: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), broker_ns, &external::exchange());
    let broker_exchange = exchanges
        .list(&ListParams::default().labels(&format!("{LABEL_KNATIVE_BROKER}={}", broker.name)))
        .await
        .map_err(kube_err("listing broker Exchanges"))?
        .items
        .into_iter()
        .find_map(|e| spec_name(&e));
    let queues: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &external::queue());
    let mut trigger_queues = BTreeMap::new();
    for trigger in triggers {
        let selector = format!("{LABEL_KNATIVE_TRIGGER}={trigger}");
        if let Some(queue) = queues
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err(format!("listing the Queue of Trigger {trigger}")))?
            .items
            .iter()
            .find_map(spec_name)
        {
            trigger_queues.insert(trigger.clone(), queue);
        }
    }
    Ok(Discovered {
        broker_url,
        broker_exchange,
        trigger_queues,
    })
}

fn spec_name(object: &DynamicObject) -> Option<String> {
    object.data["spec"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// Ready and DependenciesReady conditions from the missing dependencies.
pub fn conditions(missing: &[Missing], generation: Option<i64>) -> Vec<Condition> {
    match missing.first() {
        None => vec![
            condition(
                "Ready",
                true,
                "Reconciled",
                "all children applied".into(),
                generation,
            ),
            condition(
                "DependenciesReady",
                true,
                "DependenciesFound",
                "broker, exchange and queues exist".into(),
                generation,
            ),
        ],
        Some(first) => {
            let message = missing
                .iter()
                .map(Missing::message)
                .collect::<Vec<_>>()
                .join("; ");
            vec![
                condition(
                    "Ready",
                    false,
                    "DependenciesNotReady",
                    message.clone(),
                    generation,
                ),
                condition(
                    "DependenciesReady",
                    false,
                    first.reason(),
                    message,
                    generation,
                ),
            ]
        }
    }
}

/// Patches `status` unless it already says the same (conditions compared without their
/// transition times, which are kept when a condition does not change).
async fn update_status<K>(
    api: &Api<K>,
    object: &K,
    current: Option<&Value>,
    mut status: Value,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let current = current.cloned().unwrap_or(Value::Null);
    // Absent values (e.g. no generation) are left out rather than written as null.
    if let Some(fields) = status.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    if let (Some(new), Some(old)) = (
        status["conditions"].as_array_mut(),
        current["conditions"].as_array(),
    ) {
        for condition in new.iter_mut() {
            if let Some(previous) = old
                .iter()
                .find(|o| o["type"] == condition["type"] && o["status"] == condition["status"])
            {
                condition["lastTransitionTime"] = previous["lastTransitionTime"].clone();
            }
        }
    }
    if is_subset(&status, &current) {
        return Ok(false);
    }
    let name = object.name_any();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map_err(kube_err(format!("writing the status of {name}")))?;
    Ok(true)
}

fn phase(missing: &[Missing]) -> &'static str {
    if missing.is_empty() {
        "Running"
    } else {
        "Pending"
    }
}

fn action(missing: &[Missing]) -> Action {
    if missing.is_empty() {
        Action::requeue(RESYNC)
    } else {
        Action::requeue(DEPENDENCY_RETRY)
    }
}

const INTERFACE_CHILDREN: [ChildKind; 3] =
    [ChildKind::KService, ChildKind::Trigger, ChildKind::Binding];
const EVENT_STORE_CHILDREN: [ChildKind; 4] = [
    ChildKind::KService,
    ChildKind::Trigger,
    ChildKind::StatefulSet,
    ChildKind::Service,
];
const DISPATCHER_CHILDREN: [ChildKind; 3] =
    [ChildKind::Queue, ChildKind::Deployment, ChildKind::Service];
const GATEWAY_CHILDREN: [ChildKind; 2] = [ChildKind::Deployment, ChildKind::Service];

async fn world_input(ctx: &Context, namespace: &str) -> Result<PlanInput, Error> {
    let event_stores = Api::<EventStore>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing EventStores"))?
        .items;
    let mqtt_triggers = Api::<MQTTTrigger>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing MQTTTriggers"))?
        .items;
    Ok(PlanInput {
        namespace: namespace.to_owned(),
        event_stores,
        mqtt_triggers,
        ..Default::default()
    })
}

/// Reconciles one TwinInterface: Knative Service, Trigger and routing Bindings.
pub async fn reconcile_interface(
    interface: Arc<TwinInterface>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_interface_inner(&interface, &ctx).await;
    crate::metrics::reconciled("TwinInterface", started.elapsed(), result.is_ok());
    if let Err(err) = &result {
        ctx.warn(interface.as_ref(), "ReconcileFailed", err.to_string())
            .await;
    }
    result
}

async fn reconcile_interface_inner(
    interface: &TwinInterface,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = interface
        .namespace()
        .ok_or_else(|| Error::NoNamespace(interface.name_any()))?;
    let api: Api<TwinInterface> = Api::namespaced(ctx.client.clone(), &namespace);
    if finalize(ctx, &api, interface, &INTERFACE_CHILDREN).await? {
        return Ok(Action::await_change());
    }
    let input = world_input(ctx, &namespace).await?;
    let world = World::resolve(
        &namespace,
        &ctx.config,
        &input.event_stores,
        &input.mqtt_triggers,
    )?;
    let (plan, _) = plan_interface(interface, &world)?;
    let mut triggers = Vec::new();
    if plan.service.is_some() {
        triggers.push(twin_trigger_name(&plan.interface));
    }
    if let Some(store) = world.event_store {
        triggers.push(event_store_trigger_name(store));
    }
    let discovered = discover(ctx, &namespace, &triggers).await?;
    let mqtt_exchange = input
        .mqtt_triggers
        .iter()
        .find(|m| Some(m.name_any().as_str()) == world.mqtt_trigger)
        .map(|m| m.spec.exchange.clone());
    let renderer = Renderer {
        config: &ctx.config,
        namespace: &namespace,
        discovered: &discovered,
        event_store: world.event_store,
        mqtt_exchange: mqtt_exchange.as_deref(),
    };
    let rendered = renderer.interface(&plan, &Owner::of(interface));
    let uid = interface.uid().unwrap_or_default();
    // Prune only with the full desired set: with a dependency missing, bindings that cannot be
    // rendered right now must not be deleted.
    let complete = rendered.missing.is_empty();
    sync_children(
        ctx,
        &namespace,
        &uid,
        &INTERFACE_CHILDREN,
        &rendered,
        complete,
    )
    .await?;
    let previous = interface
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok());
    let bindings: Vec<&str> = rendered
        .objects
        .iter()
        .filter(|d| d.kind == ChildKind::Binding)
        .map(|d| d.name())
        .collect();
    let mut status = json!({
        "phase": phase(&rendered.missing),
        "observedGeneration": interface.meta().generation,
        "conditions": conditions(&rendered.missing, interface.meta().generation),
        "bindings": bindings,
    });
    if let Some(queue) = discovered
        .trigger_queues
        .get(&twin_trigger_name(&plan.interface))
    {
        status["queue"] = json!(queue);
    }
    let changed = update_status(&api, interface, previous.as_ref(), status).await?;
    if changed && !rendered.missing.is_empty() {
        let note = rendered
            .missing
            .iter()
            .map(Missing::message)
            .collect::<Vec<_>>()
            .join("; ");
        ctx.warn(interface, rendered.missing[0].reason(), note)
            .await;
    }
    Ok(action(&rendered.missing))
}

/// Reconciles one EventStore: its Knative Service and Trigger.
pub async fn reconcile_event_store(
    store: Arc<EventStore>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_event_store_inner(&store, &ctx).await;
    crate::metrics::reconciled("EventStore", started.elapsed(), result.is_ok());
    if let Err(err) = &result {
        ctx.warn(store.as_ref(), "ReconcileFailed", err.to_string())
            .await;
    }
    result
}

async fn reconcile_event_store_inner(store: &EventStore, ctx: &Context) -> Result<Action, Error> {
    let namespace = store
        .namespace()
        .ok_or_else(|| Error::NoNamespace(store.name_any()))?;
    let api: Api<EventStore> = Api::namespaced(ctx.client.clone(), &namespace);
    if finalize(ctx, &api, store, &EVENT_STORE_CHILDREN).await? {
        return Ok(Action::await_change());
    }
    let input = PlanInput {
        namespace: namespace.clone(),
        event_stores: vec![store.clone()],
        ..Default::default()
    };
    let plan = ktwin_planner::plan(&input, &ctx.config)?;
    let discovered = Discovered::default();
    let renderer = Renderer::for_plan(&plan, &ctx.config, &discovered);
    let rendered = match &plan.event_store {
        Some(plan) => renderer.event_store(plan, &Owner::of(store)),
        None => Rendered::default(),
    };
    let uid = store.uid().unwrap_or_default();
    sync_children(
        ctx,
        &namespace,
        &uid,
        &EVENT_STORE_CHILDREN,
        &rendered,
        true,
    )
    .await?;
    let url = ctx.config.service_url(
        &crate::render::event_store_service_name(&store.name_any()),
        &namespace,
    );
    let previous = store
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok());
    let status = json!({
        "phase": phase(&rendered.missing),
        "observedGeneration": store.meta().generation,
        "conditions": conditions(&rendered.missing, store.meta().generation),
        "url": url,
    });
    update_status(&api, store, previous.as_ref(), status).await?;
    Ok(action(&rendered.missing))
}

/// Reconciles one MQTTTrigger: the dispatcher Queues, Deployments and Services.
pub async fn reconcile_mqtt_trigger(
    trigger: Arc<MQTTTrigger>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_mqtt_trigger_inner(&trigger, &ctx).await;
    crate::metrics::reconciled("MQTTTrigger", started.elapsed(), result.is_ok());
    if let Err(err) = &result {
        ctx.warn(trigger.as_ref(), "ReconcileFailed", err.to_string())
            .await;
    }
    result
}

async fn reconcile_mqtt_trigger_inner(
    trigger: &MQTTTrigger,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = trigger
        .namespace()
        .ok_or_else(|| Error::NoNamespace(trigger.name_any()))?;
    let api: Api<MQTTTrigger> = Api::namespaced(ctx.client.clone(), &namespace);
    if finalize(ctx, &api, trigger, &DISPATCHER_CHILDREN).await? {
        return Ok(Action::await_change());
    }
    let input = PlanInput {
        namespace: namespace.clone(),
        mqtt_triggers: vec![trigger.clone()],
        ..Default::default()
    };
    let plan = ktwin_planner::plan(&input, &ctx.config)?;
    let discovered = discover(ctx, &namespace, &[]).await?;
    let renderer = Renderer::for_plan(&plan, &ctx.config, &discovered);
    let rendered = match &plan.dispatchers {
        Some(plan) => renderer.dispatchers(plan, &Owner::of(trigger)),
        None => Rendered::default(),
    };
    let uid = trigger.uid().unwrap_or_default();
    let complete = rendered.missing.is_empty();
    sync_children(
        ctx,
        &namespace,
        &uid,
        &DISPATCHER_CHILDREN,
        &rendered,
        complete,
    )
    .await?;
    let previous = trigger
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok());
    let status = json!({
        "phase": phase(&rendered.missing),
        "observedGeneration": trigger.meta().generation,
        "conditions": conditions(&rendered.missing, trigger.meta().generation),
    });
    update_status(&api, trigger, previous.as_ref(), status).await?;
    Ok(action(&rendered.missing))
}

/// Reconciles one Gateway: its Deployment and Service.
pub async fn reconcile_gateway(gateway: Arc<Gateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_gateway_inner(&gateway, &ctx).await;
    crate::metrics::reconciled("Gateway", started.elapsed(), result.is_ok());
    if let Err(err) = &result {
        ctx.warn(gateway.as_ref(), "ReconcileFailed", err.to_string())
            .await;
    }
    result
}

async fn reconcile_gateway_inner(gateway: &Gateway, ctx: &Context) -> Result<Action, Error> {
    let namespace = gateway
        .namespace()
        .ok_or_else(|| Error::NoNamespace(gateway.name_any()))?;
    let api: Api<Gateway> = Api::namespaced(ctx.client.clone(), &namespace);
    if finalize(ctx, &api, gateway, &GATEWAY_CHILDREN).await? {
        return Ok(Action::await_change());
    }
    let mut input = world_input(ctx, &namespace).await?;
    input.gateways = vec![gateway.clone()];
    let plan = ktwin_planner::plan(&input, &ctx.config)?;
    let discovered = discover(ctx, &namespace, &[]).await?;
    let renderer = Renderer::for_plan(&plan, &ctx.config, &discovered);
    let mut rendered = Rendered::default();
    for gateway_plan in &plan.gateways {
        let part = renderer.gateway(gateway_plan, &Owner::of(gateway));
        rendered.objects.extend(part.objects);
        rendered.missing.extend(part.missing);
    }
    let uid = gateway.uid().unwrap_or_default();
    let complete = rendered.missing.is_empty();
    sync_children(
        ctx,
        &namespace,
        &uid,
        &GATEWAY_CHILDREN,
        &rendered,
        complete,
    )
    .await?;
    let previous = gateway
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok());
    let status = json!({
        "phase": phase(&rendered.missing),
        "observedGeneration": gateway.meta().generation,
        "conditions": conditions(&rendered.missing, gateway.meta().generation),
    });
    update_status(&api, gateway, previous.as_ref(), status).await?;
    Ok(action(&rendered.missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_ignores_server_fields_but_not_changes() {
        let current =
            json!({"metadata": {"name": "a", "uid": "u"}, "spec": {"x": [1, {"y": 2, "z": 3}]}});
        assert!(is_subset(&json!({"spec": {"x": [1, {"y": 2}]}}), &current));
        assert!(!is_subset(&json!({"spec": {"x": [1]}}), &current));
        assert!(!is_subset(&json!({"spec": {"x": [1, {"y": 3}]}}), &current));
        assert!(!is_subset(&json!({"spec": {"w": 1}}), &current));
    }

    #[test]
    fn conditions_name_the_first_missing_dependency() {
        let ok = conditions(&[], Some(3));
        assert!(
            ok.iter()
                .all(|c| c.status == "True" && c.observed_generation == Some(3))
        );
        let missing = conditions(
            &[
                Missing::Broker("ktwin".into()),
                Missing::TriggerQueue("city-pole".into()),
            ],
            None,
        );
        let dependencies = missing
            .iter()
            .find(|c| c.type_ == "DependenciesReady")
            .unwrap();
        assert_eq!(dependencies.status, "False");
        assert_eq!(dependencies.reason, "BrokerNotReady");
        assert!(
            dependencies.message.contains("city-pole"),
            "{}",
            dependencies.message
        );
    }
}
