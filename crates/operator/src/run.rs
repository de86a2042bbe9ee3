//! Wiring the reconcilers into kube-runtime controllers: watches on owned children, trigger
//! queues, brokers and the shared EventStore/MQTTTrigger, leader election and the ops endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ktwin_model::crd::{EventStore, Gateway, MQTTTrigger, TwinInterface};
use ktwin_planner::KtwinConfig;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use crate::controller::{
    Context, Error, reconcile_event_store, reconcile_gateway, reconcile_interface,
    reconcile_mqtt_trigger,
};
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

fn error_policy<K>(object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    tracing::warn!(object = %object.name_any(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(30))
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
    let readiness = ktwin_service::Readiness::new();
    let shutdown = ktwin_service::shutdown_token();
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| RunError::Bind {
            address: options.listen,
            source,
        })?;
    readiness.set_ready(true);
    let ops = ktwin_service::ops_router(readiness.clone());
    let ops_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, ops)
            .with_graceful_shutdown(ops_shutdown.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(%err, "ops server failed");
        }
    });

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

    let ctx = Arc::new(Context::new(client.clone(), options.config));
    let wc = watcher::Config::default();
    let dynamic = |kind: ChildKind| {
        let ar = kind.api_resource();
        (Api::<DynamicObject>::all_with(client.clone(), &ar), ar)
    };

    let interfaces = Controller::new(Api::<TwinInterface>::all(client.clone()), wc.clone());
    let store = interfaces.store();
    let mut interfaces = interfaces;
    for kind in [ChildKind::KService, ChildKind::Trigger, ChildKind::Binding] {
        let (api, ar) = dynamic(kind);
        interfaces = interfaces.owns_with(api, ar, wc.clone());
    }
    let queue_ar = external::queue();
    let (by_queue, by_broker, by_store, by_trigger) =
        (store.clone(), store.clone(), store.clone(), store.clone());
    let interfaces = interfaces
        // eventing-rabbitmq creating a trigger's queue unblocks that interface's bindings; the
        // event store's queue unblocks every interface of the namespace.
        .watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &queue_ar),
            queue_ar,
            wc.clone(),
            move |queue| {
                let trigger = queue.labels().get(LABEL_KNATIVE_TRIGGER).cloned();
                let namespace = queue.namespace();
                let all = all_in(&by_queue, namespace.clone());
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
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile_interface, error_policy, ctx.clone())
        .for_each(|_| async {});

    let mut stores = Controller::new(Api::<EventStore>::all(client.clone()), wc.clone());
    for kind in [
        ChildKind::KService,
        ChildKind::Trigger,
        ChildKind::StatefulSet,
        ChildKind::Service,
    ] {
        let (api, ar) = dynamic(kind);
        stores = stores.owns_with(api, ar, wc.clone());
    }
    let stores = stores
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile_event_store, error_policy, ctx.clone())
        .for_each(|_| async {});

    let mut triggers = Controller::new(Api::<MQTTTrigger>::all(client.clone()), wc.clone());
    for kind in [ChildKind::Queue, ChildKind::Deployment, ChildKind::Service] {
        let (api, ar) = dynamic(kind);
        triggers = triggers.owns_with(api, ar, wc.clone());
    }
    let triggers = triggers
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile_mqtt_trigger, error_policy, ctx.clone())
        .for_each(|_| async {});

    let mut gateways = Controller::new(Api::<Gateway>::all(client.clone()), wc.clone());
    for kind in [ChildKind::Deployment, ChildKind::Service] {
        let (api, ar) = dynamic(kind);
        gateways = gateways.owns_with(api, ar, wc.clone());
    }
    let gateways = gateways
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile_gateway, error_policy, ctx)
        .for_each(|_| async {});

    let controllers = futures::future::join4(interfaces, stores, triggers, gateways);
    match &elector {
        Some(elector) => tokio::select! {
            _ = controllers => {}
            () = elector.keep() => {
                shutdown.cancel();
                return Err(RunError::LostLeadership);
            }
        },
        None => {
            controllers.await;
        }
    }
    Ok(())
}
