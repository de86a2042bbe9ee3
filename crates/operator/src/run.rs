//! Wiring the reconcilers into kube-runtime controllers: watches on owned children, trigger
//! queues, the broker and its exchanges, and the shared EventStore/MQTTTrigger, leader election
//! and the ops endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use futures::StreamExt;
use futures::channel::mpsc;
use ktwin_model::crd::{EventStore, Gateway, MQTTTrigger, TwinInstance, TwinInterface};
use ktwin_planner::KtwinConfig;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::controller::{
    Context, DISPATCHER_CHILDREN, EVENT_STORE_CHILDREN, Error, GATEWAY_CHILDREN,
    INTERFACE_CHILDREN, Stores, Watched, reconcile_event_store, reconcile_gateway,
    reconcile_interface, reconcile_mqtt_trigger,
};
use crate::instance::reconcile_twin_instance;
use crate::kinds::{ChildKind, external};
use crate::leader::LeaderElector;
use crate::names::{LABEL_KNATIVE_BROKER, LABEL_KNATIVE_TRIGGER};
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
    let mut watches = SharedWatches::new(&options.config.broker.name);
    // The reconcilers read the namespace's interfaces, instances, event stores, MQTT triggers,
    // broker, exchanges and children from these reflectors instead of listing them on every
    // reconcile.
    let interfaces = interfaces(&client, &mut watches);
    let instances = instances(&client);
    let event_stores = owning::<EventStore>(&client, &mut watches, &EVENT_STORE_CHILDREN);
    let mqtt_triggers = dispatchers(&client, &mut watches);
    let gateways = owning::<Gateway>(&client, &mut watches, &GATEWAY_CHILDREN);
    let gateways = on_broker_changes(gateways, &mut watches);
    let stores = Stores {
        interfaces: Some(interfaces.store()),
        instances: Some(instances.store()),
        event_stores: Some(event_stores.store()),
        mqtt_triggers: Some(mqtt_triggers.store()),
        brokers: watches.store(Followed::Broker),
        exchanges: watches.store(Followed::Exchange),
        children: watches.child_stores(),
    };
    let ctx = Arc::new(Context::new(client.clone(), options.config).with_stores(stores));
    let controllers = futures::future::join5(
        drive(interfaces, reconcile_interface, ctx.clone(), &shutdown),
        drive(event_stores, reconcile_event_store, ctx.clone(), &shutdown),
        drive(
            mqtt_triggers,
            reconcile_mqtt_trigger,
            ctx.clone(),
            &shutdown,
        ),
        drive(gateways, reconcile_gateway, ctx.clone(), &shutdown),
        drive(instances, reconcile_twin_instance, ctx, &shutdown),
    );
    let controllers = futures::future::join(controllers, watches.run(&client, &shutdown));
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

/// How many changed objects a controller may have not yet taken before a shared watch waits.
const CHILD_BUFFER: usize = 256;

/// What one shared watch follows: a kind of child, or the Brokers and Exchanges ktwin reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Followed {
    /// Every child of the kind.
    Child(ChildKind),
    /// The Brokers named as the configured broker.
    Broker,
    /// The Exchanges labelled with the configured broker (its exchange and dead-letter one).
    Exchange,
}

impl Followed {
    fn api_resource(self) -> ApiResource {
        match self {
            Followed::Child(kind) => kind.api_resource(),
            Followed::Broker => external::broker(),
            Followed::Exchange => external::exchange(),
        }
    }
}

/// One watch per [`Followed`] kind, across namespaces: its reflector store serves the
/// reconciles' reads, and each object it touches (applied or deleted) is then handed to every
/// controller subscribed to that kind, so a reconcile it wakes reads a store that already holds
/// the change.
struct SharedWatches {
    kinds: BTreeMap<Followed, SharedWatch>,
}

struct SharedWatch {
    config: watcher::Config,
    writer: Writer<DynamicObject>,
    subscribers: Vec<mpsc::Sender<DynamicObject>>,
}

impl SharedWatches {
    /// The watches of every child kind, and of the Brokers and Exchanges of `broker`.
    fn new(broker: &str) -> Self {
        let all = watcher::Config::default();
        let followed = ChildKind::ALL
            .into_iter()
            .map(|kind| (Followed::Child(kind), all.clone()))
            .chain([
                (
                    Followed::Broker,
                    all.clone().fields(&format!("metadata.name={broker}")),
                ),
                (
                    Followed::Exchange,
                    all.clone()
                        .labels(&format!("{LABEL_KNATIVE_BROKER}={broker}")),
                ),
            ]);
        let kinds = followed
            .map(|(followed, config)| {
                let writer = Writer::new(followed.api_resource());
                let subscribers = Vec::new();
                let watch = SharedWatch {
                    config,
                    writer,
                    subscribers,
                };
                (followed, watch)
            })
            .collect();
        Self { kinds }
    }

    /// The store of `followed`.
    fn store(&self, followed: Followed) -> Option<Store<DynamicObject>> {
        self.kinds.get(&followed).map(|w| w.writer.as_reader())
    }

    /// The stores of every child kind.
    fn child_stores(&self) -> BTreeMap<ChildKind, Store<DynamicObject>> {
        ChildKind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind, self.store(Followed::Child(kind))?)))
            .collect()
    }

    /// The objects of `followed` the watch touches from now on, for one more controller.
    fn subscribe(
        &mut self,
        followed: Followed,
    ) -> impl futures::Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static {
        let (sender, receiver) = mpsc::channel(CHILD_BUFFER);
        if let Some(watch) = self.kinds.get_mut(&followed) {
            watch.subscribers.push(sender);
        }
        receiver.map(Ok)
    }

    /// Runs the watches until shutdown, filling the stores and feeding the subscribers. A
    /// kind whose API is not served (a CRD not installed) is retried with backoff and logged;
    /// its store stays unfilled, so reconciles list it and report the missing API.
    async fn run(self, client: &Client, shutdown: &CancellationToken) {
        let watches = self.kinds.into_iter().map(|(followed, watch)| {
            let resource = followed.api_resource();
            let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
            let events = watcher(api, watch.config).default_backoff();
            let touched = reflector(watch.writer, events)
                .touched_objects()
                .take_until(shutdown.clone().cancelled_owned());
            touched.fold(
                watch.subscribers,
                move |mut subscribers, touched| async move {
                    match touched {
                        Ok(object) => {
                            for subscriber in &mut subscribers {
                                // A controller that stopped has nothing left to wake.
                                let _ = subscriber.send(object.clone()).await;
                            }
                        }
                        Err(error) => tracing::warn!(watched = ?followed, %error, "watch failed"),
                    }
                    subscribers
                },
            )
        });
        futures::future::join_all(watches).await;
    }
}

/// A controller of `K` woken by changes to its children of `kinds`.
fn owning<K>(client: &Client, watches: &mut SharedWatches, kinds: &[ChildKind]) -> Controller<K>
where
    K: Watched,
{
    let mut controller = Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    for kind in kinds {
        let children = watches.subscribe(Followed::Child(*kind));
        controller = controller.owns_stream_with(children, kind.api_resource());
    }
    controller
}

/// `controller`, also woken for every object of a namespace when its Broker or the Broker's
/// Exchanges change (the broker's address and exchange are rendered into its children).
fn on_broker_changes<K>(controller: Controller<K>, watches: &mut SharedWatches) -> Controller<K>
where
    K: Watched,
{
    [Followed::Broker, Followed::Exchange]
        .into_iter()
        .fold(controller, |controller, followed| {
            let store = controller.store();
            controller.watches_stream_with(
                watches.subscribe(followed),
                move |object| all_in(&store, object.namespace()),
                followed.api_resource(),
            )
        })
}

/// The TwinInterface controller: woken by its children, by eventing-rabbitmq creating a
/// trigger's queue (which unblocks that interface's bindings; the event store's queue unblocks
/// every interface of the namespace), by the Broker and its Exchanges, and by the namespace's
/// EventStores and MQTTTriggers, which the interfaces' plans depend on.
fn interfaces(client: &Client, watches: &mut SharedWatches) -> Controller<TwinInterface> {
    let wc = watcher::Config::default();
    let controller = owning::<TwinInterface>(client, watches, &INTERFACE_CHILDREN);
    let controller = on_broker_changes(controller, watches);
    let store = controller.store();
    let (by_queue, by_store, by_trigger, by_schema) =
        (store.clone(), store.clone(), store.clone(), store);
    let queues = watches.subscribe(Followed::Child(ChildKind::Queue));
    controller
        .watches_stream_with(
            queues,
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
            ChildKind::Queue.api_resource(),
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

/// The MQTTTrigger controller: woken by its children, by the Broker and its Exchanges, and by
/// the namespace's TwinInterfaces, whose declared device topics its dispatchers carry.
fn dispatchers(client: &Client, watches: &mut SharedWatches) -> Controller<MQTTTrigger> {
    let controller = owning::<MQTTTrigger>(client, watches, &DISPATCHER_CHILDREN);
    let controller = on_broker_changes(controller, watches);
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
    K: Watched,
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
