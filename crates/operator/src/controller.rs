//! Reconcilers: read the world from the API server, plan, render, apply with server-side apply,
//! prune children no longer desired, run finalizers and report status conditions.
//!
//! Each reconciler is an async function of (object, [`Context`]) so tests drive it against a fake
//! API server; [`crate::run`] wires them into kube-runtime controllers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use ktwin_model::crd::{EventStore, Gateway, MQTTTrigger, TwinInstance, TwinInterface};
use ktwin_planner::{KtwinConfig, PlanInput, World, plan_interface};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::kinds::{ChildKind, external};
use crate::names::{
    FIELD_MANAGER, FINALIZER, LABEL_KNATIVE_BROKER, LABEL_KNATIVE_TRIGGER, LABEL_OWNER_UID,
    LABEL_TWIN_INTERFACE, MAX_LABEL, fit, knative_child_name,
};
use crate::render::{
    Desired, Discovered, Missing, Owner, Rendered, Renderer, event_store_trigger_name,
    twin_service_name, twin_trigger_name,
};
use crate::status::{self, Health};

pub use crate::status::{DEPENDENCY_RETRY, RESYNC};

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
    /// Some children could not be written (the others were).
    #[error("{}", summary(.0))]
    Children(Vec<ChildError>),
    /// kube's finalizer helper could not add or remove ktwin's finalizer.
    #[error("finalizer {FINALIZER}: {0}")]
    Finalizer(#[source] finalizer::Error<std::convert::Infallible>),
}

impl From<finalizer::Error<Error>> for Error {
    /// The reconcile's own error as is; the helper's own failures as [`Error::Finalizer`].
    fn from(error: finalizer::Error<Error>) -> Self {
        use finalizer::Error as F;
        match error {
            F::ApplyFailed(error) | F::CleanupFailed(error) => error,
            F::AddFinalizer(source) => Error::Finalizer(F::AddFinalizer(source)),
            F::RemoveFinalizer(source) => Error::Finalizer(F::RemoveFinalizer(source)),
            F::UnnamedObject => Error::Finalizer(F::UnnamedObject),
            F::InvalidFinalizer => Error::Finalizer(F::InvalidFinalizer),
        }
    }
}

fn summary(errors: &[ChildError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The HTTP status of the API error behind this one, if any.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Kube { source, .. } => status_code(source),
            Error::Children(errors) => errors.iter().find_map(|e| match e {
                ChildError::Api { source, .. } => status_code(source),
                ChildError::Foreign { .. } => None,
            }),
            Error::Finalizer(
                finalizer::Error::AddFinalizer(source) | finalizer::Error::RemoveFinalizer(source),
            ) => status_code(source),
            Error::Plan(_) | Error::NoNamespace(_) | Error::Finalizer(_) => None,
        }
    }

    /// Whether the object changed between reading and writing it, so a retry with the new
    /// version can succeed at once: a 409 Conflict, or a failed `test` (422) of the JSON patch
    /// kube's finalizer helper sends (it tests the finalizer list it read instead of carrying a
    /// resourceVersion).
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Finalizer(_) => matches!(self.status_code(), Some(409 | 422)),
            _ => self.status_code() == Some(409),
        }
    }

    /// Whether retrying cannot succeed before the object or the cluster changes: admission
    /// refused (400/403/422), or every failing child was refused or belongs to someone else.
    pub fn is_refusal(&self) -> bool {
        match self {
            Error::Kube { source, .. } => matches!(status_code(source), Some(400 | 403 | 422)),
            Error::Children(errors) => errors.iter().all(ChildError::is_refusal),
            Error::Plan(_) | Error::NoNamespace(_) | Error::Finalizer(_) => false,
        }
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// How long a reconcile waits for a reflector's first list before asking the API server.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The reflector stores the reconcilers read instead of listing on every reconcile. A store
/// absent (a reconcile called directly, as the tests do) or not yet filled falls back to
/// listing from the API server.
#[derive(Clone, Default)]
pub struct Stores {
    /// The TwinInterfaces the interface controller's reflector holds.
    pub interfaces: Option<Store<TwinInterface>>,
    /// The TwinInstances the instance controller's reflector holds.
    pub instances: Option<Store<TwinInstance>>,
    /// The EventStores the event store controller's reflector holds.
    pub event_stores: Option<Store<EventStore>>,
    /// The MQTTTriggers the MQTTTrigger controller's reflector holds.
    pub mqtt_triggers: Option<Store<MQTTTrigger>>,
    /// The Brokers named as the configured broker, across namespaces. An unserved API (no
    /// Knative Eventing) never fills it: the Broker is listed, and the list's 404 reports it.
    pub brokers: Option<Store<DynamicObject>>,
    /// The Exchanges labelled with the configured broker, across namespaces (unfilled as
    /// `brokers` without the topology CRDs).
    pub exchanges: Option<Store<DynamicObject>>,
    /// Every child of each kind, across namespaces (one shared watch per kind). A kind whose
    /// API is not served never fills its store: its children are listed, and the list's 404
    /// reports the missing API.
    pub children: BTreeMap<ChildKind, Store<DynamicObject>>,
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
    /// What the reflectors hold.
    pub stores: Stores,
    /// Consecutive failures per object, for the error policy's backoff.
    pub backoff: Arc<crate::backoff::Backoff>,
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
            stores: Stores::default(),
            backoff: Arc::default(),
        }
    }

    /// Reads from `stores` instead of listing.
    pub fn with_stores(mut self, stores: Stores) -> Self {
        self.stores = stores;
        self
    }

    /// The TwinInterfaces of `namespace` (see [`in_namespace`]).
    pub(crate) async fn interfaces_in(
        &self,
        namespace: &str,
    ) -> Result<Vec<Arc<TwinInterface>>, Error> {
        in_namespace(&self.client, self.stores.interfaces.as_ref(), namespace).await
    }

    /// The TwinInstances of `namespace` (see [`in_namespace`]).
    pub(crate) async fn instances_in(
        &self,
        namespace: &str,
    ) -> Result<Vec<Arc<TwinInstance>>, Error> {
        in_namespace(&self.client, self.stores.instances.as_ref(), namespace).await
    }

    /// The EventStores of `namespace` (see [`in_namespace`]).
    async fn event_stores_in(&self, namespace: &str) -> Result<Vec<EventStore>, Error> {
        let stores = in_namespace(&self.client, self.stores.event_stores.as_ref(), namespace);
        Ok(stores.await?.iter().map(|s| EventStore::clone(s)).collect())
    }

    /// The MQTTTriggers of `namespace` (see [`in_namespace`]).
    async fn mqtt_triggers_in(&self, namespace: &str) -> Result<Vec<MQTTTrigger>, Error> {
        let triggers = in_namespace(&self.client, self.stores.mqtt_triggers.as_ref(), namespace);
        Ok(triggers
            .await?
            .iter()
            .map(|t| MQTTTrigger::clone(t))
            .collect())
    }
}

/// A kind of resource kube-runtime watches, keeps in a store and reconciles.
pub(crate) trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// The objects of `namespace`: from the reflector `store` once it has listed them all,
/// otherwise (no reflector, or its first list not done within [`STORE_WAIT`]) from the API
/// server.
async fn in_namespace<K>(
    client: &Client,
    store: Option<&Store<K>>,
    namespace: &str,
) -> Result<Vec<Arc<K>>, Error>
where
    K: Watched + Resource<Scope = kube::core::NamespaceResourceScope>,
{
    if let Some(store) = store
        && let Ok(Ok(())) = tokio::time::timeout(STORE_WAIT, store.wait_until_ready()).await
    {
        return Ok(store
            .state()
            .into_iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .collect());
    }
    Ok(Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("listing {}s", K::kind(&()))))?
        .items
        .into_iter()
        .map(Arc::new)
        .collect())
}

impl Context {
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

/// A child object that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// A request about the child failed or was refused.
    #[error("{action} {object}: {source}")]
    Api {
        /// What was being done (`applying`, `deleting`, ...).
        action: &'static str,
        /// `Kind/name`, or the kind's plural for a list.
        object: String,
        /// The API error.
        source: kube::Error,
    },
    /// An object of the desired name is controlled by another owner; ktwin does not take it.
    #[error("{object} exists and is controlled by {owner}; ktwin does not take it over")]
    Foreign {
        /// `Kind/name`.
        object: String,
        /// `Kind/name` of its controller.
        owner: String,
    },
}

impl ChildError {
    /// Whether the API server refused the object (schema 422, Knative webhooks 400, topology
    /// operator webhooks 403) or another controller holds it: retrying the same object cannot
    /// succeed until the spec or the cluster changes.
    pub fn is_refusal(&self) -> bool {
        match self {
            ChildError::Api {
                source: kube::Error::Api(status),
                ..
            } => matches!(status.code, 400 | 403 | 422),
            ChildError::Api { .. } => false,
            ChildError::Foreign { .. } => true,
        }
    }
}

/// What a sync of children did. It never stops at the first failing child: every child is
/// tried, and what failed is listed.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Objects written (created or changed).
    pub applied: Vec<String>,
    /// Objects deleted because they are no longer desired.
    pub pruned: Vec<String>,
    /// Objects deleted because a field their admission webhook holds immutable changed; they are
    /// created again once gone (at once, or on a later reconcile while a finalizer runs).
    pub recreated: Vec<String>,
    /// Desired objects still being deleted; applied when their deletion completes.
    pub terminating: Vec<String>,
    /// Children that could not be written.
    pub failed: Vec<ChildError>,
    /// APIs the server does not serve; their objects were skipped.
    pub missing_apis: Vec<Missing>,
    /// Each desired child as the API server last returned it, by kind and name.
    pub live: BTreeMap<(ChildKind, String), Value>,
}

impl SyncReport {
    /// The live object of `kind` named `name`, if it exists.
    pub fn live(&self, kind: ChildKind, name: &str) -> Option<&Value> {
        self.live.get(&(kind, name.to_owned()))
    }
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

/// The first field of `kind` that admission holds immutable and that applying `desired` over
/// `live` would change, as a dotted path.
pub fn immutable_change(kind: ChildKind, desired: &Value, live: &Value) -> Option<String> {
    kind.immutable_fields().iter().find_map(|(path, whole)| {
        let pick = |v: &Value| path.iter().try_fold(v.clone(), |v, k| v.get(*k).cloned());
        let wanted = pick(desired)?;
        let changed = match pick(live) {
            None => true,
            Some(current) if *whole => current != wanted,
            Some(current) => !is_subset(&wanted, &current),
        };
        changed.then(|| path.join("."))
    })
}

fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// `Kind/name` of the controller of `live` when it is not the owner with uid `owner_uid`.
fn foreign_controller(live: &Value, owner_uid: &str) -> Option<String> {
    live["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true && r["uid"] != owner_uid)
        .map(|r| {
            format!(
                "{}/{}",
                r["kind"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default()
            )
        })
}

/// The outcome of applying one child.
enum Applied {
    /// Already as desired.
    Unchanged(Value),
    /// Written; `recreated` when it was first deleted for an immutable change.
    Written { live: Value, recreated: bool },
    /// Being deleted (by us for an immutable change, or by someone else); applied once gone.
    Terminating { recreated: bool },
}

/// How an owner's existing children are found.
#[derive(Debug, Clone, Copy)]
pub struct Children<'a> {
    /// The owner's uid: ktwin labels every child it writes with it.
    pub owner_uid: &'a str,
    /// A label (key, value) also finding the children the original operator wrote, which
    /// carry no owner label; of those, only the ones controlled by this owner count.
    pub legacy_label: Option<(&'a str, &'a str)>,
}

impl<'a> Children<'a> {
    /// The children ktwin labelled as this owner's.
    pub fn of(owner_uid: &'a str) -> Self {
        Self {
            owner_uid,
            legacy_label: None,
        }
    }
}

/// Applies `rendered` for `owner`, skipping objects already as desired,
/// recreating those whose immutable fields change, and, when `prune` is set, deleting this
/// owner's children of `kinds` that are not desired. A kind whose API is not served is skipped
/// and reported; a failing child is reported and the others still go on.
pub async fn sync_children(
    ctx: &Context,
    namespace: &str,
    owner: &Children<'_>,
    kinds: &[ChildKind],
    rendered: &Rendered,
    prune: bool,
) -> SyncReport {
    let mut report = SyncReport::default();
    for kind in kinds {
        sync_kind(ctx, namespace, owner, *kind, rendered, prune, &mut report).await;
    }
    crate::metrics::children(&report);
    report
}

async fn sync_kind(
    ctx: &Context,
    namespace: &str,
    owner: &Children<'_>,
    kind: ChildKind,
    rendered: &Rendered,
    prune: bool,
    report: &mut SyncReport,
) {
    let api = ctx.dynamic(namespace, kind);
    let owner_uid = owner.owner_uid;
    let current = match existing_children(ctx, kind, namespace, owner).await {
        Ok(current) => current,
        Err(err) if status_code(&err) == Some(404) => {
            report.missing_apis.push(Missing::Api(kind.api_name()));
            return;
        }
        Err(source) => {
            report.failed.push(ChildError::Api {
                action: "listing",
                object: format!("{}s", kind.kind()),
                source,
            });
            return;
        }
    };
    let desired: Vec<_> = rendered.objects.iter().filter(|d| d.kind == kind).collect();
    for object in &desired {
        let id = format!("{}/{}", kind.kind(), object.name());
        let key = (kind, object.name().to_owned());
        match apply_child(&api, kind, owner_uid, object, current.get(object.name())).await {
            Ok(Applied::Unchanged(live)) => {
                report.live.insert(key, live);
            }
            Ok(Applied::Written { live, recreated }) => {
                if recreated {
                    report.recreated.push(id.clone());
                }
                report.applied.push(id);
                report.live.insert(key, live);
            }
            Ok(Applied::Terminating { recreated }) => {
                if recreated {
                    report.recreated.push(id.clone());
                }
                report.terminating.push(id);
            }
            Err(err) => report.failed.push(err),
        }
    }
    if prune {
        for name in current.keys() {
            if desired.iter().any(|d| d.name() == name) {
                continue;
            }
            let id = format!("{}/{name}", kind.kind());
            match delete_ignoring_absent(&api, name).await {
                Ok(()) => report.pruned.push(id),
                Err(source) => report.failed.push(ChildError::Api {
                    action: "pruning",
                    object: id,
                    source,
                }),
            }
        }
    }
}

/// Which objects of a namespace a read picks: those carrying a label `(key, value)`, and
/// those of one name.
#[derive(Debug, Clone, Copy, Default)]
struct Selection<'a> {
    label: Option<(&'a str, &'a str)>,
    name: Option<&'a str>,
}

impl Selection<'_> {
    fn picks(&self, object: &DynamicObject) -> bool {
        let labelled = self
            .label
            .is_none_or(|(key, value)| object.labels().get(key).map(String::as_str) == Some(value));
        labelled && self.name.is_none_or(|name| object.name_any() == name)
    }

    fn list_params(&self) -> ListParams {
        let mut params = ListParams::default();
        if let Some((key, value)) = self.label {
            params = params.labels(&format!("{key}={value}"));
        }
        if let Some(name) = self.name {
            params = params.fields(&format!("metadata.name={name}"));
        }
        params
    }
}

/// The objects of `resource` in `namespace` that `selection` picks: from the reflector `store`
/// once it has listed everything, otherwise listed (a 404 then says the API is not served; its
/// store never fills).
async fn selected(
    ctx: &Context,
    store: Option<&Store<DynamicObject>>,
    resource: &ApiResource,
    namespace: &str,
    selection: Selection<'_>,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let filled =
        store.filter(|store| matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))));
    if let Some(store) = filled {
        return Ok(store
            .state()
            .iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace) && selection.picks(o))
            .map(|o| DynamicObject::clone(o))
            .collect());
    }
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, resource);
    Ok(api.list(&selection.list_params()).await?.items)
}

/// The children of `kind` in `namespace` carrying the label `(key, value)` (see [`selected`]).
async fn labelled(
    ctx: &Context,
    namespace: &str,
    kind: ChildKind,
    label: (&str, &str),
) -> Result<Vec<DynamicObject>, kube::Error> {
    let selection = Selection {
        label: Some(label),
        name: None,
    };
    let store = ctx.stores.children.get(&kind);
    selected(ctx, store, &kind.api_resource(), namespace, selection).await
}

/// The existing children of `owner` of `kind` in `namespace`, by name.
async fn existing_children(
    ctx: &Context,
    kind: ChildKind,
    namespace: &str,
    owner: &Children<'_>,
) -> Result<BTreeMap<String, Value>, kube::Error> {
    let mut current = BTreeMap::new();
    let labelled_as_ours = (LABEL_OWNER_UID, owner.owner_uid);
    for (label, check_owner) in [
        Some((labelled_as_ours, false)),
        owner.legacy_label.map(|label| (label, true)),
    ]
    .into_iter()
    .flatten()
    {
        for object in labelled(ctx, namespace, kind, label).await? {
            let value = serde_json::to_value(&object).unwrap_or_default();
            let controlled = value["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["controller"] == true && r["uid"] == owner.owner_uid)
                });
            if !check_owner || controlled {
                current.insert(object.name_any(), value);
            }
        }
    }
    Ok(current)
}

/// Applies one child with server-side apply. An object of that name that is not labelled as
/// ours (a namespace populated by the original operator, or by an earlier version) is looked
/// up and adopted unless another object controls it.
async fn apply_child(
    api: &Api<DynamicObject>,
    kind: ChildKind,
    owner_uid: &str,
    desired: &Desired,
    listed: Option<&Value>,
) -> Result<Applied, ChildError> {
    let name = desired.name();
    let id = format!("{}/{name}", kind.kind());
    let api_err = |action: &'static str, id: &str| {
        let object = id.to_owned();
        move |source| ChildError::Api {
            action,
            object,
            source,
        }
    };
    let live = match listed {
        Some(live) => Some(live.clone()),
        None => api
            .get_opt(name)
            .await
            .map_err(api_err("reading", &id))?
            .map(|o| serde_json::to_value(o).unwrap_or_default()),
    };
    let mut recreated = false;
    if let Some(live) = live {
        if live["metadata"]["deletionTimestamp"].is_string() {
            return Ok(Applied::Terminating { recreated });
        }
        if let Some(owner) = foreign_controller(&live, owner_uid) {
            return Err(ChildError::Foreign { object: id, owner });
        }
        if is_subset(&desired.object, &live) {
            return Ok(Applied::Unchanged(live));
        }
        if let Some(field) = immutable_change(kind, &desired.object, &live) {
            // Admission refuses the change in place (403 from the topology operator's
            // webhooks, 400 from Knative's, 422 for apps): replace the object.
            tracing::info!(object = %id, %field, "an immutable field changed: recreating");
            delete_ignoring_absent(api, name)
                .await
                .map_err(api_err("deleting", &id))?;
            recreated = true;
            let still_there = api
                .get_opt(name)
                .await
                .map_err(api_err("reading", &id))?
                .is_some();
            if still_there {
                return Ok(Applied::Terminating { recreated });
            }
        }
    }
    let written = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired.object),
        )
        .await
        .map_err(api_err("applying", &id))?;
    Ok(Applied::Written {
        live: serde_json::to_value(written).unwrap_or_default(),
        recreated,
    })
}

async fn delete_ignoring_absent(api: &Api<DynamicObject>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(err) if status_code(&err) == Some(404) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Deletes every child of `kinds` owned by `owner_uid` (explicitly, rather than waiting for
/// garbage collection, so the topology operator removes broker-side bindings promptly). An API
/// that is not served has no children to delete, so deletion completes without it.
async fn delete_children(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    kinds: &[ChildKind],
) -> Result<(), Error> {
    let children = Children::of(owner_uid);
    let report = sync_children(ctx, namespace, &children, kinds, &Rendered::default(), true).await;
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Children(report.failed))
    }
}

/// Runs `apply` for `object` behind ktwin's finalizer, with kube's finalizer helper: an object
/// without it first gets it (that reconcile ends there: the change wakes the next one, which
/// applies); an object being deleted gets its children of `kinds` deleted, then loses the
/// finalizer.
async fn finalized<K, F, Fut>(
    ctx: &Context,
    object: Arc<K>,
    kinds: &[ChildKind],
    apply: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    F: FnOnce(Arc<K>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    let namespace = namespace_of(object.as_ref())?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let run = |event| async {
        match event {
            finalizer::Event::Apply(object) => apply(object).await,
            finalizer::Event::Cleanup(object) => {
                let uid = object.uid().unwrap_or_default();
                delete_children(ctx, &namespace, &uid, kinds).await?;
                Ok(Action::await_change())
            }
        }
    };
    finalizer::finalizer(&api, FINALIZER, object, run)
        .await
        .map_err(Error::from)
}

/// Reads what the cluster provides for rendering; absent things stay `None` (reported later as
/// missing dependencies, never as a panic or an empty name), and APIs the server does not serve
/// are returned as missing.
///
/// The broker's exchange is the Exchange eventing-rabbitmq names after the Broker's UID
/// (`ChildName("b.<ns>.<broker>.", uid)`), not merely one labelled with the broker, which could
/// be its dead-letter exchange or a leftover of a deleted Broker of the same name.
pub async fn discover(
    ctx: &Context,
    namespace: &str,
    triggers: &[String],
) -> Result<(Discovered, Vec<Missing>), Error> {
    let broker_name = ctx.config.broker.name.as_str();
    let mut missing = Vec::new();
    let mut discovered = Discovered::default();
    // A list tells "no such object" from "no such API" (a get answers 404 to both).
    let broker = served(
        ctx,
        (ctx.stores.brokers.as_ref(), &external::broker()),
        namespace,
        Selection {
            label: None,
            name: Some(broker_name),
        },
        &mut missing,
    )
    .await?
    .into_iter()
    .next();
    discovered.broker_url = broker.as_ref().and_then(|b| {
        b.data["status"]["address"]["url"]
            .as_str()
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
    });
    if let Some(uid) = broker.as_ref().and_then(|b| b.uid()) {
        let exchange = knative_child_name(&format!("b.{namespace}.{broker_name}."), &uid);
        let selection = Selection {
            label: Some((LABEL_KNATIVE_BROKER, broker_name)),
            name: Some(&exchange),
        };
        let exchanges = (ctx.stores.exchanges.as_ref(), &external::exchange());
        discovered.broker_exchange = served(ctx, exchanges, namespace, selection, &mut missing)
            .await?
            .first()
            .and_then(spec_name);
    }
    for trigger in triggers {
        let label = (LABEL_KNATIVE_TRIGGER, trigger.as_str());
        let queues = match labelled(ctx, namespace, ChildKind::Queue, label).await {
            Ok(queues) => queues,
            Err(err) if status_code(&err) == Some(404) => {
                let api = Missing::Api(ChildKind::Queue.api_name());
                if !missing.contains(&api) {
                    missing.push(api);
                }
                break;
            }
            Err(source) => return Err(kube_err("listing Queues")(source)),
        };
        if let Some(queue) = queues.iter().find_map(spec_name) {
            discovered.trigger_queues.insert(trigger.clone(), queue);
        }
    }
    Ok((discovered, missing))
}

/// The objects of `resource` in `namespace` that `selection` picks (see [`selected`]); when the
/// server does not serve `resource`, records that as [`Missing::Api`] and returns nothing.
async fn served(
    ctx: &Context,
    (store, resource): (Option<&Store<DynamicObject>>, &ApiResource),
    namespace: &str,
    selection: Selection<'_>,
    missing: &mut Vec<Missing>,
) -> Result<Vec<DynamicObject>, Error> {
    match selected(ctx, store, resource, namespace, selection).await {
        Ok(objects) => Ok(objects),
        Err(err) if status_code(&err) == Some(404) => {
            let api = format!("{} {}", resource.api_version, resource.kind);
            if !missing.contains(&Missing::Api(api.clone())) {
                missing.push(Missing::Api(api));
            }
            Ok(Vec::new())
        }
        Err(source) => Err(Error::Kube {
            action: format!("listing {}s", resource.kind),
            source,
        }),
    }
}

fn spec_name(object: &DynamicObject) -> Option<String> {
    object.data["spec"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// The kinds of a TwinInterface's children.
pub const INTERFACE_CHILDREN: [ChildKind; 3] =
    [ChildKind::KService, ChildKind::Trigger, ChildKind::Binding];
/// The kinds of an EventStore's children.
pub const EVENT_STORE_CHILDREN: [ChildKind; 4] = [
    ChildKind::KService,
    ChildKind::Trigger,
    ChildKind::StatefulSet,
    ChildKind::Service,
];
/// The kinds of an MQTTTrigger's children (its dispatchers).
pub const DISPATCHER_CHILDREN: [ChildKind; 3] =
    [ChildKind::Queue, ChildKind::Deployment, ChildKind::Service];
/// The kinds of a Gateway's children.
pub const GATEWAY_CHILDREN: [ChildKind; 2] = [ChildKind::Deployment, ChildKind::Service];

async fn world_input(ctx: &Context, namespace: &str) -> Result<PlanInput, Error> {
    Ok(PlanInput {
        namespace: namespace.to_owned(),
        event_stores: ctx.event_stores_in(namespace).await?,
        mqtt_triggers: ctx.mqtt_triggers_in(namespace).await?,
        ..Default::default()
    })
}

/// Reports a resource whose model cannot be planned as `Failed`; nothing is applied until it
/// (or the world it is planned in) changes.
async fn invalid<K>(api: &Api<K>, object: &K, error: Error) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    tracing::warn!(object = %object.name_any(), %error, "cannot be planned");
    let health = Health::invalid(&error);
    status::write(api, object, &health, json!({})).await?;
    health.into_action()
}

/// Runs `reconcile` for `object`, counting it and publishing a Warning Event when it fails.
async fn observed<K, F>(
    kind: &'static str,
    object: &K,
    ctx: &Context,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: std::future::Future<Output = Result<Action, Error>>,
{
    let started = Instant::now();
    let result = reconcile.await;
    crate::metrics::reconciled(kind, started.elapsed(), result.is_ok());
    if let Err(err) = &result {
        ctx.warn(object, "ReconcileFailed", err.to_string()).await;
    }
    result
}

fn namespace_of<K: Resource>(object: &K) -> Result<String, Error> {
    object
        .namespace()
        .ok_or_else(|| Error::NoNamespace(object.name_any()))
}

/// The schemas of `interface` given as ids (`primitiveType: ngsi_ld:city:AirQualityLevel`)
/// that name no TwinInterface of the namespace, by its name (the id normalised as the compiler
/// names interfaces) or its DTMI, as `field = "id"`.
async fn unresolved_schemas(
    ctx: &Context,
    namespace: &str,
    interface: &TwinInterface,
) -> Result<Vec<String>, Error> {
    let ids = interface.spec.schema_ids();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let known = ctx.interfaces_in(namespace).await?;
    Ok(ids
        .into_iter()
        .filter(|(_, id)| !known.iter().any(|k| k.is_named_by(id)))
        .map(|(field, id)| format!("{field} = {id:?}"))
        .collect())
}

/// Reconciles one TwinInterface: Knative Service, Trigger and routing Bindings.
pub async fn reconcile_interface(
    interface: Arc<TwinInterface>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ctx = ctx.as_ref();
    observed(
        "TwinInterface",
        interface.as_ref(),
        ctx,
        finalized(
            ctx,
            interface.clone(),
            &INTERFACE_CHILDREN,
            |interface| async move { reconcile_interface_inner(&interface, ctx).await },
        ),
    )
    .await
}

async fn reconcile_interface_inner(
    interface: &TwinInterface,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = namespace_of(interface)?;
    let api: Api<TwinInterface> = Api::namespaced(ctx.client.clone(), &namespace);
    let input = world_input(ctx, &namespace).await?;
    let planned = World::resolve(
        &namespace,
        &ctx.config,
        &input.event_stores,
        &input.mqtt_triggers,
    )
    .and_then(|world| Ok((plan_interface(interface, &world)?.0, world)));
    let (plan, world) = match planned {
        Ok(planned) => planned,
        Err(err) => return invalid(&api, interface, err.into()).await,
    };
    let mut triggers = Vec::new();
    if plan.service.is_some() {
        triggers.push(twin_trigger_name(&plan.interface));
    }
    if let Some(store) = world.event_store {
        triggers.push(event_store_trigger_name(store));
    }
    let (discovered, mut missing) = discover(ctx, &namespace, &triggers).await?;
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
    missing.extend(rendered.missing.iter().cloned());
    // Prune only with the full desired set: with a dependency missing, bindings that cannot be
    // rendered right now must not be deleted.
    let uid = interface.uid().unwrap_or_default();
    let legacy = fit(&interface.name_any(), MAX_LABEL);
    let children = Children {
        owner_uid: &uid,
        legacy_label: Some((LABEL_TWIN_INTERFACE, &legacy)),
    };
    let report = sync_children(
        ctx,
        &namespace,
        &children,
        &INTERFACE_CHILDREN,
        &rendered,
        missing.is_empty(),
    )
    .await;
    let service = plan
        .service
        .as_ref()
        .and_then(|_| report.live(ChildKind::KService, &twin_service_name(&plan.interface)));
    let mut fields = json!({
        "bindings": rendered.objects.iter()
            .filter(|d| d.kind == ChildKind::Binding)
            .map(Desired::name)
            .collect::<Vec<_>>(),
        "queue": discovered.trigger_queues.get(&twin_trigger_name(&plan.interface)),
    });
    if plan.service.is_some() {
        fields["serviceReady"] =
            json!(service.is_some_and(|s| status::readiness(ChildKind::KService, s).is_ok()));
        fields["serviceUrl"] = service.map_or(Value::Null, |s| s["status"]["url"].clone());
    }
    let mut health = Health::of(&missing, report);
    health.unresolved_schemas = Some(unresolved_schemas(ctx, &namespace, interface).await?);
    let changed = status::write(&api, interface, &health, fields).await?;
    if let Some(first) = health.missing.first().filter(|_| changed) {
        let note = health
            .missing
            .iter()
            .map(Missing::message)
            .collect::<Vec<_>>()
            .join("; ");
        ctx.warn(interface, first.reason(), note).await;
    }
    health.into_action()
}

/// Reconciles one EventStore: its Knative Service or StatefulSet, Service and Trigger.
pub async fn reconcile_event_store(
    store: Arc<EventStore>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ctx = ctx.as_ref();
    observed(
        "EventStore",
        store.as_ref(),
        ctx,
        finalized(
            ctx,
            store.clone(),
            &EVENT_STORE_CHILDREN,
            |store| async move { reconcile_event_store_inner(&store, ctx).await },
        ),
    )
    .await
}

async fn reconcile_event_store_inner(store: &EventStore, ctx: &Context) -> Result<Action, Error> {
    let namespace = namespace_of(store)?;
    let api: Api<EventStore> = Api::namespaced(ctx.client.clone(), &namespace);
    let input = PlanInput {
        namespace: namespace.clone(),
        event_stores: vec![store.clone()],
        ..Default::default()
    };
    let plan = match ktwin_planner::plan(&input, &ctx.config) {
        Ok(plan) => plan,
        Err(err) => return invalid(&api, store, err.into()).await,
    };
    let discovered = Discovered::default();
    let renderer = Renderer::for_plan(&plan, &ctx.config, &discovered);
    let rendered = match &plan.event_store {
        Some(plan) => renderer.event_store(plan, &Owner::of(store)),
        None => Rendered::default(),
    };
    let uid = store.uid().unwrap_or_default();
    let report = sync_children(
        ctx,
        &namespace,
        &Children::of(&uid),
        &EVENT_STORE_CHILDREN,
        &rendered,
        true,
    )
    .await;
    let url = ctx.config.service_url(
        &crate::render::event_store_service_name(&store.name_any()),
        &namespace,
    );
    let health = Health::of(&rendered.missing, report);
    status::write(&api, store, &health, json!({"url": url})).await?;
    health.into_action()
}

/// Reconciles one MQTTTrigger: the dispatcher Queues, Deployments and Services.
pub async fn reconcile_mqtt_trigger(
    trigger: Arc<MQTTTrigger>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ctx = ctx.as_ref();
    observed(
        "MQTTTrigger",
        trigger.as_ref(),
        ctx,
        finalized(
            ctx,
            trigger.clone(),
            &DISPATCHER_CHILDREN,
            |trigger| async move { reconcile_mqtt_trigger_inner(&trigger, ctx).await },
        ),
    )
    .await
}

async fn reconcile_mqtt_trigger_inner(
    trigger: &MQTTTrigger,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = namespace_of(trigger)?;
    let api: Api<MQTTTrigger> = Api::namespaced(ctx.client.clone(), &namespace);
    // The dispatchers carry the device topics the interfaces declare (DTDL MQTT extension).
    let interfaces = ctx
        .interfaces_in(&namespace)
        .await?
        .into_iter()
        .filter(|i| i.spec.mqtt.is_some())
        .map(|i| TwinInterface::clone(&i))
        .collect();
    let input = PlanInput {
        namespace: namespace.clone(),
        mqtt_triggers: vec![trigger.clone()],
        interfaces,
        ..Default::default()
    };
    let plan = match ktwin_planner::plan(&input, &ctx.config) {
        Ok(plan) => plan,
        Err(err) => return invalid(&api, trigger, err.into()).await,
    };
    let (discovered, mut missing) = discover(ctx, &namespace, &[]).await?;
    let renderer = Renderer::for_plan(&plan, &ctx.config, &discovered);
    let rendered = match &plan.dispatchers {
        Some(plan) => renderer.dispatchers(plan, &Owner::of(trigger)),
        None => Rendered::default(),
    };
    missing.extend(rendered.missing.iter().cloned());
    let uid = trigger.uid().unwrap_or_default();
    let report = sync_children(
        ctx,
        &namespace,
        &Children::of(&uid),
        &DISPATCHER_CHILDREN,
        &rendered,
        missing.is_empty(),
    )
    .await;
    let ready_replicas = |name: Option<&str>| {
        name.and_then(|n| report.live(ChildKind::Deployment, n))
            .map(|d| d["status"]["readyReplicas"].as_i64().unwrap_or(0))
    };
    let dispatchers = plan.dispatchers.as_ref();
    let fields = json!({
        "mqttDispatcherReadyReplicas": ready_replicas(dispatchers.map(|d| d.mqtt.name.as_str())),
        "cloudEventDispatcherReadyReplicas":
            ready_replicas(dispatchers.map(|d| d.cloud_event.name.as_str())),
    });
    let health = Health::of(&missing, report);
    status::write(&api, trigger, &health, fields).await?;
    health.into_action()
}

/// Reconciles one Gateway: its Deployment and Service.
pub async fn reconcile_gateway(gateway: Arc<Gateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ctx = ctx.as_ref();
    observed(
        "Gateway",
        gateway.as_ref(),
        ctx,
        finalized(
            ctx,
            gateway.clone(),
            &GATEWAY_CHILDREN,
            |gateway| async move { reconcile_gateway_inner(&gateway, ctx).await },
        ),
    )
    .await
}

async fn reconcile_gateway_inner(gateway: &Gateway, ctx: &Context) -> Result<Action, Error> {
    let namespace = namespace_of(gateway)?;
    let api: Api<Gateway> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut input = world_input(ctx, &namespace).await?;
    input.gateways = vec![gateway.clone()];
    let plan = match ktwin_planner::plan(&input, &ctx.config) {
        Ok(plan) => plan,
        Err(err) => return invalid(&api, gateway, err.into()).await,
    };
    let (discovered, mut missing) = discover(ctx, &namespace, &[]).await?;
    let renderer = Renderer::for_plan(&plan, &ctx.config, &discovered);
    let mut rendered = Rendered::default();
    for gateway_plan in &plan.gateways {
        let part = renderer.gateway(gateway_plan, &Owner::of(gateway));
        rendered.objects.extend(part.objects);
        rendered.missing.extend(part.missing);
    }
    missing.extend(rendered.missing.iter().cloned());
    let uid = gateway.uid().unwrap_or_default();
    let report = sync_children(
        ctx,
        &namespace,
        &Children::of(&uid),
        &GATEWAY_CHILDREN,
        &rendered,
        missing.is_empty(),
    )
    .await;
    let url = plan
        .gateways
        .first()
        .map(|g| format!("{}:{}", ctx.config.service_url(&g.name, &namespace), g.port));
    let health = Health::of(&missing, report);
    status::write(&api, gateway, &health, json!({"url": url})).await?;
    health.into_action()
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
    fn immutable_changes_are_found_per_kind() {
        let live = json!({"spec": {"source": "b.ktwin.ktwin.uid-1", "destination": "q",
            "arguments": {"type": "t", "x-match": "all"},
            "rabbitmqClusterReference": {"name": "rabbitmq", "namespace": "ktwin"}}});
        let same = json!({"spec": {"source": "b.ktwin.ktwin.uid-1", "destination": "q",
            "arguments": {"type": "t", "x-match": "all"},
            "rabbitmqClusterReference": {"name": "rabbitmq"}}});
        assert_eq!(immutable_change(ChildKind::Binding, &same, &live), None);
        let mut moved = same.clone();
        moved["spec"]["source"] = json!("b.ktwin.ktwin.uid-2");
        assert_eq!(
            immutable_change(ChildKind::Binding, &moved, &live).as_deref(),
            Some("spec.source")
        );
        let mut more = same.clone();
        more["spec"]["arguments"]["x-ktwin-binding"] = json!("b");
        assert_eq!(
            immutable_change(ChildKind::Binding, &more, &live).as_deref(),
            Some("spec.arguments")
        );
        // Knative Services have no field ktwin writes that admission freezes.
        assert_eq!(immutable_change(ChildKind::KService, &moved, &live), None);
    }
}
