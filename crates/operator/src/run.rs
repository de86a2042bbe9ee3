//! Wiring the reconcilers into kube-runtime controllers: watches on owned children, trigger
//! queues, brokers and the shared EventStore/MQTTTrigger, leader election and the ops endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ktwin_model::crd::{EventStore, Gateway, MQTTTrigger, TwinInstance, TwinInterface};
use ktwin_planner::KtwinConfig;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::controller::{
    Context, DISPATCHER_CHILDREN, EVENT_STORE_CHILDREN, Error, GATEWAY_CHILDREN,
    INTERFACE_CHILDREN, reconcile_event_store, reconcile_gateway, reconcile_interface,
    reconcile_mqtt_trigger,
};
use crate::instance::reconcile_twin_instance;
use crate::kinds::{ChildKind, external};
use crate::leader::LeaderElector;
use crate::names::LABEL_KNATIVE_TRIGGER;
use crate::render::twin_trigger_name;

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct OperatorOptions {
    /// Platform configuration.
    pub config: KtwinConfig,
    /// Address of `/health`, `/ready` and `/metrics`.
    pub listen: SocketAddr,
    /// Whether to wait for a Lease before reconciling.
    pub leader_elect: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    pub identity: String,
}

/// The retry of a failed reconcile: backed off per object ([`crate::backoff`]).
fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let retry = ctx.backoff.failed(&backoff_key(object.as_ref()), error);
    tracing::warn!(object = %object.name_any(), %error, retry_in = ?retry, "reconcile failed");
    Action::requeue(retry)
}

/// The key of an object's failure count: `Kind/namespace/name`.
fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Logs what a controller's stream yields: watch failures (an API not served, RBAC, a lost
/// connection) at warn, since nothing reconciles while they last; reconcile failures were
/// already logged by [`error_policy`].
async fn log_result<K, E>(result: Result<(ObjectRef<K>, Action), ControllerError<Error, E>>)
where
    K: Resource<DynamicType = ()>,
    E: std::error::Error,
{
    match result {
        Ok(_) | Err(ControllerError::ReconcilerFailed(..)) => {}
        Err(err @ ControllerError::ObjectNotFound(_)) => {
            tracing::debug!(error = %err, "object gone before its reconcile");
        }
        Err(err) => tracing::warn!(kind = %K::kind(&()), error = %err, "controller watch failed"),
    }
}

/// Every object of `store` in `namespace`.
fn all_in<K>(store: &Store<K>, namespace: Option<String>) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace() == namespace)
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The ops address could not be bound.
    #[error("binding {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Another replica took the Lease; this one exits so its pod restarts as a candidate.
    #[error("lost leadership; exiting so a new leader takes over")]
    LostLeadership,
}

/// Runs the controllers until shutdown (or loss of leadership).
///
/// Readiness means "serving": every replica is Ready as soon as its ops endpoints answer, the
/// leader and the standbys alike, so a Deployment of several replicas becomes Available and
/// rolls. Only the Lease holder reconciles.
pub async fn run(client: Client, options: OperatorOptions) -> Result<(), RunError> {
    let shutdown = ktwin_service::shutdown_token();
    serve_ops(options.listen, &shutdown).await?;
    let elector = options.leader_elect.then(|| {
        LeaderElector::new(
            client.clone(),
            &options.lease_namespace,
            "ktwin-operator-leader",
            &options.identity,
            Duration::from_secs(15),
        )
    });
    if let Some(elector) = &elector {
        tracing::info!(identity = %options.identity, "waiting for leadership");
        tokio::select! {
            () = elector.acquire() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
    tracing::info!("reconciling");
    // The reconcilers read the namespace's interfaces and instances from these controllers'
    // reflectors instead of listing them on every reconcile.
    let interfaces = interfaces(&client);
    let instances = instances(&client);
    let ctx = Arc::new(
        Context::new(client.clone(), options.config)
            .with_interfaces(interfaces.store())
            .with_instances(instances.store()),
    );
    let controllers = futures::future::join5(
        drive(interfaces, reconcile_interface, ctx.clone(), &shutdown),
        drive(
            owning::<EventStore>(&client, &EVENT_STORE_CHILDREN),
            reconcile_event_store,
            ctx.clone(),
            &shutdown,
        ),
        drive(
            dispatchers(&client),
            reconcile_mqtt_trigger,
            ctx.clone(),
            &shutdown,
        ),
        drive(
            owning::<Gateway>(&client, &GATEWAY_CHILDREN),
            reconcile_gateway,
            ctx.clone(),
            &shutdown,
        ),
        drive(instances, reconcile_twin_instance, ctx, &shutdown),
    );
    match &elector {
        Some(elector) => tokio::select! {
            _ = controllers => Ok(()),
            () = elector.keep() => {
                shutdown.cancel();
                Err(RunError::LostLeadership)
            }
        },
        None => {
            controllers.await;
            Ok(())
        }
    }
}

/// Serves `/health`, `/ready` (true at once: readiness is serving) and `/metrics` until
/// shutdown.
async fn serve_ops(address: SocketAddr, shutdown: &CancellationToken) -> Result<(), RunError> {
    let readiness = ktwin_service::Readiness::new();
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Bind { address, source })?;
    readiness.set_ready(true);
    let ops = ktwin_service::ops_router(readiness);
    let ops_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, ops)
            .with_graceful_shutdown(ops_shutdown.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(%err, "ops server failed");
        }
    });
    Ok(())
}

/// A controller of `K` woken by changes to its children of `kinds`.
fn owning<K>(client: &Client, kinds: &[ChildKind]) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let wc = watcher::Config::default();
    let mut controller = Controller::new(Api::<K>::all(client.clone()), wc.clone());
    for kind in kinds {
        let ar = kind.api_resource();
        let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
        controller = controller.owns_with(api, ar, wc.clone());
    }
    controller
}

/// The TwinInterface controller: woken by its children, by eventing-rabbitmq creating a
/// trigger's queue (which unblocks that interface's bindings; the event store's queue unblocks
/// every interface of the namespace), by Brokers, and by the namespace's EventStores and
/// MQTTTriggers, which the interfaces' plans depend on.
fn interfaces(client: &Client) -> Controller<TwinInterface> {
    let wc = watcher::Config::default();
    let controller = owning::<TwinInterface>(client, &INTERFACE_CHILDREN);
    let store = controller.store();
    let (by_queue, by_broker, by_store, by_trigger, by_schema) = (
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store,
    );
    let queue_ar = external::queue();
    controller
        .watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &queue_ar),
            queue_ar,
            wc.clone(),
            move |queue| {
                let trigger = queue.labels().get(LABEL_KNATIVE_TRIGGER).cloned();
                let all = all_in(&by_queue, queue.namespace());
                let own: Vec<_> = all
                    .iter()
                    .filter(|r| Some(twin_trigger_name(&r.name)) == trigger)
                    .cloned()
                    .collect();
                if own.is_empty() { all } else { own }
            },
        )
        .watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &external::broker()),
            external::broker(),
            wc.clone(),
            move |broker| all_in(&by_broker, broker.namespace()),
        )
        .watches(
            Api::<EventStore>::all(client.clone()),
            wc.clone(),
            move |s| all_in(&by_store, s.namespace()),
        )
        .watches(
            Api::<MQTTTrigger>::all(client.clone()),
            wc.clone(),
            move |t| all_in(&by_trigger, t.namespace()),
        )
        // An interface appearing (or going) resolves (or unresolves) the schema ids of the
        // others that name it.
        .watches(
            Api::<TwinInterface>::all(client.clone()),
            wc,
            move |named| {
                by_schema
                    .state()
                    .into_iter()
                    .filter(|i| {
                        i.namespace() == named.namespace() && i.name_any() != named.name_any()
                    })
                    .filter(|i| {
                        i.spec
                            .schema_ids()
                            .iter()
                            .any(|(_, id)| named.is_named_by(id))
                    })
                    .map(|i| ObjectRef::from_obj(i.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
}

/// The MQTTTrigger controller: woken by its children and by the namespace's TwinInterfaces,
/// whose declared device topics its dispatchers carry.
fn dispatchers(client: &Client) -> Controller<MQTTTrigger> {
    let controller = owning::<MQTTTrigger>(client, &DISPATCHER_CHILDREN);
    let store = controller.store();
    controller.watches(
        Api::<TwinInterface>::all(client.clone()),
        watcher::Config::default(),
        move |interface| all_in(&store, interface.namespace()),
    )
}

/// The TwinInstance controller (status only): woken by its instances, by instances that
/// become or stop being the target of one's relationships, and by its interface.
fn instances(client: &Client) -> Controller<TwinInstance> {
    let wc = watcher::Config::default();
    let controller = Controller::new(Api::<TwinInstance>::all(client.clone()), wc.clone());
    let (by_target, by_interface) = (controller.store(), controller.store());
    controller
        .watches(
            Api::<TwinInstance>::all(client.clone()),
            wc.clone(),
            move |target| {
                let name = target.name_any();
                matching(&by_target, target.namespace(), |i| {
                    i.spec
                        .twin_instance_relationships
                        .iter()
                        .any(|r| r.instance == name)
                })
            },
        )
        .watches(
            Api::<TwinInterface>::all(client.clone()),
            wc,
            move |interface| {
                let name = interface.name_any();
                matching(&by_interface, interface.namespace(), |i| {
                    i.spec.interface == name
                })
            },
        )
}

/// The instances of `store` in `namespace` that `keep`.
fn matching(
    store: &Store<TwinInstance>,
    namespace: Option<String>,
    keep: impl Fn(&TwinInstance) -> bool,
) -> Vec<ObjectRef<TwinInstance>> {
    store
        .state()
        .into_iter()
        .filter(|i| i.namespace() == namespace && keep(i))
        .map(|i| ObjectRef::from_obj(i.as_ref()))
        .collect()
}

/// Runs `controller` with `reconcile` until shutdown, logging what fails.
async fn drive<K, F, Fut>(
    controller: Controller<K>,
    reconcile: F,
    ctx: Arc<Context>,
    shutdown: &CancellationToken,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let mut reconcile = reconcile;
    // A success forgets the object's failures, so its next failure is retried quickly again.
    let reconcile_and_reset = move |object: Arc<K>, ctx: Arc<Context>| {
        let key = backoff_key(object.as_ref());
        let done = reconcile(object, ctx.clone());
        async move {
            let result = done.await;
            if result.is_ok() {
                ctx.backoff.succeeded(&key);
            }
            result
        }
    };
    controller
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile_and_reset, error_policy, ctx)
        .for_each(log_result)
        .await;
}
