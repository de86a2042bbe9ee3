//! The reconcilers against the strict fake API server of `fake_api` (admission rules of
//! Knative, eventing-rabbitmq and the topology operator, server-side apply, conflicts,
//! finalizers, unserved APIs), behind a real `kube::Client`.

mod fake_api;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fake_api::FakeApi;
use ktwin_operator::controller::{
    Context, DEPENDENCY_RETRY, Error, RESYNC, reconcile_event_store, reconcile_interface,
    reconcile_mqtt_trigger,
};
use ktwin_operator::leader::LeaderElector;
use ktwin_operator::names::knative_child_name;
use ktwin_planner::KtwinConfig;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

const NS: &str = "ktwin";
const KSVC: &str = "/apis/serving.knative.dev/v1/namespaces/ktwin/services";
const TRIGGERS: &str = "/apis/eventing.knative.dev/v1/namespaces/ktwin/triggers";
const BINDINGS: &str = "/apis/rabbitmq.com/v1beta1/namespaces/ktwin/bindings";
const QUEUES: &str = "/apis/rabbitmq.com/v1beta1/namespaces/ktwin/queues";
const EXCHANGES: &str = "/apis/rabbitmq.com/v1beta1/namespaces/ktwin/exchanges";
const BROKERS: &str = "/apis/eventing.knative.dev/v1/namespaces/ktwin/brokers";
const INTERFACES: &str = "/apis/dtd.ktwin/v0/namespaces/ktwin/twininterfaces";
const EVENT_STORES: &str = "/apis/core.ktwin/v0/namespaces/ktwin/eventstores";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ktwin/leases";
const MQTT_TRIGGERS: &str = "/apis/core.ktwin/v0/namespaces/ktwin/mqtttriggers";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ktwin/deployments";
const SERVICES: &str = "/api/v1/namespaces/ktwin/services";
const STATEFULSETS: &str = "/apis/apps/v1/namespaces/ktwin/statefulsets";
const COMMAND_BINDING: &str = "city-pole-reboot-command-dispatcher";

/// What eventing-rabbitmq creates for Broker `ktwin` with `uid`: the Broker with its address
/// and its exchange named after the uid (plus a dead-letter exchange with the same label).
fn put_broker(fake: &FakeApi, uid: &str) {
    fake.put(
        BROKERS,
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
               "metadata": {"name": "ktwin", "namespace": NS, "uid": uid},
               "status": {"address": {"url": "http://ktwin-broker-ingress.ktwin.svc.cluster.local"}}}),
    );
    for prefix in ["b.ktwin.ktwin.dlx.", "b.ktwin.ktwin."] {
        let name = knative_child_name(prefix, uid);
        fake.put(
            EXCHANGES,
            json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Exchange",
                   "metadata": {"name": name, "namespace": NS,
                                "labels": {"eventing.knative.dev/broker": "ktwin"}},
                   "spec": {"name": name, "type": "headers"}}),
        );
    }
}

fn exchange_of(uid: &str) -> String {
    knative_child_name("b.ktwin.ktwin.", uid)
}

/// A cluster where Knative, eventing-rabbitmq and the topology operator are installed and have
/// created the broker's exchange and the triggers' queues.
fn cluster() -> FakeApi {
    let fake = FakeApi::default();
    put_broker(&fake, "broker-uid-1");
    for trigger in ["city-pole", "event-store-trigger"] {
        fake.put(
            QUEUES,
            json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Queue",
                   "metadata": {"name": format!("t.{trigger}"), "namespace": NS,
                                "labels": {"eventing.knative.dev/broker": "ktwin",
                                           "eventing.knative.dev/trigger": trigger}},
                   "spec": {"name": format!("t.ktwin.{trigger}.uid")}}),
        );
    }
    fake.put(
        EVENT_STORES,
        json!({"apiVersion": "core.ktwin/v0", "kind": "EventStore",
               "metadata": {"name": "event-store", "namespace": NS, "uid": "uid-es",
                            "resourceVersion": "1", "generation": 1}, "spec": {}}),
    );
    fake.put(
        MQTT_TRIGGERS,
        json!({"apiVersion": "core.ktwin/v0", "kind": "MQTTTrigger",
               "metadata": {"name": "mqtt", "namespace": NS, "uid": "uid-mqtt",
                            "resourceVersion": "1", "generation": 1}, "spec": {}}),
    );
    fake.put(
        INTERFACES,
        json!({"apiVersion": "dtd.ktwin/v0", "kind": "TwinInterface",
               "metadata": {"name": "city-pole", "namespace": NS, "uid": "uid-pole",
                            "generation": 1, "resourceVersion": "1"},
               "spec": {
                   "commands": [{"name": "reboot"}],
                   "relationships": [{"name": "refStreetlight",
                                      "interface": "ngsi-ld-city-streetlight",
                                      "aggregateData": true}],
                   "service": {
                       "autoScaling": {"maxScale": 5},
                       "template": {"spec": {"containers": [
                           {"name": "city-pole", "image": "example.org/city-pole:1"}]}}}}}),
    );
    fake
}

/// Reconciles the object `name` of `collection` with `reconcile` as the controller's watch
/// would, until it settles (the reconcile adding the finalizer is followed by the one applying).
async fn settle<K, Fut>(
    fake: &FakeApi,
    ctx: &Arc<Context>,
    (collection, name): (&str, &str),
    reconcile: impl Fn(Arc<K>, Arc<Context>) -> Fut,
) -> Result<Action, Error>
where
    K: serde::de::DeserializeOwned,
    Fut: Future<Output = Result<Action, Error>>,
{
    ktwin_testkit::reconcile::until_settled(
        || fake.get(collection, name),
        |object| {
            reconcile(
                Arc::new(serde_json::from_value(object).unwrap()),
                ctx.clone(),
            )
        },
    )
    .await
}

fn context(fake: &FakeApi) -> Arc<Context> {
    Arc::new(Context::new(fake.client(NS), KtwinConfig::default()))
}

async fn try_reconcile(fake: &FakeApi) -> Result<Action, Error> {
    let pole = (INTERFACES, "city-pole");
    settle(fake, &context(fake), pole, reconcile_interface).await
}

/// Reconciles the MQTTTrigger `mqtt` and the EventStore `event-store` until they settle.
async fn reconcile_dispatchers_and_store(fake: &FakeApi, ctx: &Arc<Context>) {
    let mqtt = (MQTT_TRIGGERS, "mqtt");
    settle(fake, ctx, mqtt, reconcile_mqtt_trigger)
        .await
        .unwrap();
    let store = (EVENT_STORES, "event-store");
    settle(fake, ctx, store, reconcile_event_store)
        .await
        .unwrap();
}

async fn reconcile(fake: &FakeApi) -> Action {
    try_reconcile(fake).await.unwrap()
}

/// Reconciles and lets the other controllers act until the interface is Ready.
async fn converge(fake: &FakeApi) {
    for _ in 0..4 {
        if reconcile(fake).await == Action::requeue(RESYNC) {
            return;
        }
        fake.run_topology_operator();
        fake.run_controllers();
    }
    panic!(
        "did not converge: {:#}",
        fake.get(INTERFACES, "city-pole").unwrap()["status"]
    );
}

fn condition(fake: &FakeApi, type_: &str) -> Value {
    let object = fake.get(INTERFACES, "city-pole").unwrap();
    object["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:#}", object["status"]))
        .clone()
}

fn live_bindings(fake: &FakeApi) -> Vec<Value> {
    fake.all(BINDINGS)
        .into_iter()
        .filter(|b| b["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

#[tokio::test]
async fn ready_only_once_the_knative_service_is_ready() {
    let fake = cluster();
    assert_eq!(reconcile(&fake).await, Action::requeue(DEPENDENCY_RETRY));
    assert_eq!(fake.names(KSVC), vec!["city-pole"]);
    assert_eq!(fake.names(TRIGGERS), vec!["city-pole"]);
    let bindings = fake.names(BINDINGS);
    assert!(
        bindings.contains(&COMMAND_BINDING.to_owned()),
        "{bindings:?}"
    );
    assert_eq!(bindings.len(), 7, "{bindings:?}");
    let ksvc = fake.get(KSVC, "city-pole").unwrap();
    assert_eq!(ksvc["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(ksvc["metadata"]["labels"]["ktwin/owner-uid"], "uid-pole");
    let object = fake.get(INTERFACES, "city-pole").unwrap();
    assert_eq!(
        object["metadata"]["finalizers"],
        json!(["ktwin.dev/cleanup"])
    );
    // Applied is not ready: Knative has not reported the Service yet.
    assert_eq!(condition(&fake, "Ready")["status"], "False");
    assert_eq!(condition(&fake, "ChildrenApplied")["status"], "True");
    assert_eq!(condition(&fake, "Ready")["reason"], "ChildrenNotReady");
    assert_eq!(object["status"]["serviceReady"], false);
    assert_eq!(object["status"]["phase"], "Pending");
    let writes = fake.take_writes();
    assert!(
        writes.iter().all(|w| w.starts_with("PATCH ")),
        "only server-side apply and patches: {writes:?}"
    );

    fake.run_controllers();
    assert_eq!(reconcile(&fake).await, Action::requeue(RESYNC));
    let object = fake.get(INTERFACES, "city-pole").unwrap();
    assert_eq!(condition(&fake, "Ready")["status"], "True");
    assert_eq!(object["status"]["phase"], "Running");
    assert_eq!(object["status"]["serviceReady"], true);
    assert_eq!(
        object["status"]["serviceUrl"],
        "http://city-pole.ktwin.svc.cluster.local"
    );
    assert_eq!(object["status"]["queue"], "t.ktwin.city-pole.uid");
    assert_eq!(object["status"]["observedGeneration"], 1);
}

#[tokio::test]
async fn a_second_reconcile_writes_nothing() {
    let fake = cluster();
    converge(&fake).await;
    fake.take_writes();
    assert_eq!(reconcile(&fake).await, Action::requeue(RESYNC));
    assert_eq!(fake.take_writes(), Vec::<String>::new());
}

#[tokio::test]
async fn changed_autoscaling_patches_only_the_service() {
    let fake = cluster();
    converge(&fake).await;
    fake.take_writes();
    fake.edit(INTERFACES, "city-pole", |o| {
        o["spec"]["service"]["autoScaling"]["maxScale"] = json!(9)
    });
    reconcile(&fake).await;
    let ksvc = fake.get(KSVC, "city-pole").unwrap();
    assert_eq!(
        ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"],
        "9"
    );
    assert_eq!(ksvc["metadata"]["generation"], 2);
    let writes = fake.take_writes();
    assert!(
        writes.contains(&format!("PATCH {KSVC}/city-pole")),
        "{writes:?}"
    );
    assert!(
        !writes.iter().any(|w| w.contains("/bindings/")),
        "{writes:?}"
    );
    // The new generation is not ready until Knative says so.
    assert_eq!(condition(&fake, "Ready")["status"], "False");
}

#[tokio::test]
async fn a_removed_command_deletes_its_binding() {
    let fake = cluster();
    converge(&fake).await;
    fake.take_writes();
    fake.edit(INTERFACES, "city-pole", |o| {
        o["spec"]["commands"] = json!([])
    });
    reconcile(&fake).await;
    let writes = fake.take_writes();
    assert!(
        writes.contains(&format!("DELETE {BINDINGS}/{COMMAND_BINDING}")),
        "{writes:?}"
    );
    fake.run_topology_operator();
    let bindings = fake.names(BINDINGS);
    assert!(!bindings.contains(&COMMAND_BINDING.to_owned()));
    assert_eq!(bindings.len(), 6, "{bindings:?}");
}

#[tokio::test]
async fn deletion_runs_the_finalizer() {
    let fake = cluster();
    converge(&fake).await;
    fake.edit(INTERFACES, "city-pole", |o| {
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z")
    });
    assert_eq!(reconcile(&fake).await, Action::await_change());
    assert!(fake.names(KSVC).is_empty());
    assert!(fake.names(TRIGGERS).is_empty());
    // The topology operator finishes deleting the bindings on its own.
    assert!(live_bindings(&fake).is_empty());
    fake.run_topology_operator();
    assert!(fake.names(BINDINGS).is_empty());
    // Our finalizer was the last one: the object is gone.
    assert!(fake.get(INTERFACES, "city-pole").is_none());
}

#[tokio::test]
async fn a_missing_broker_is_a_condition_not_a_panic() {
    let fake = cluster();
    fake.remove(BROKERS, "ktwin");
    assert_eq!(reconcile(&fake).await, Action::requeue(DEPENDENCY_RETRY));
    let dependencies = condition(&fake, "DependenciesReady");
    assert_eq!(dependencies["status"], "False");
    assert_eq!(dependencies["reason"], "BrokerNotReady");
    assert_eq!(condition(&fake, "Ready")["status"], "False");
    // Nothing needing the broker address is applied; the trigger is, so queues get created.
    assert!(fake.names(KSVC).is_empty());
    assert_eq!(fake.names(TRIGGERS), vec!["city-pole"]);
    let writes = fake.take_writes();
    assert!(
        writes.iter().any(|w| w.contains("/events")),
        "a Warning event: {writes:?}"
    );
    assert!(DEPENDENCY_RETRY < Duration::from_secs(600));
}

#[tokio::test]
async fn a_missing_trigger_queue_keeps_existing_bindings() {
    let fake = cluster();
    converge(&fake).await;
    fake.remove(QUEUES, "t.city-pole");
    assert_eq!(reconcile(&fake).await, Action::requeue(DEPENDENCY_RETRY));
    assert_eq!(
        condition(&fake, "DependenciesReady")["reason"],
        "TriggerQueueMissing"
    );
    // Not pruned: the desired set is incomplete while the queue is missing.
    assert_eq!(live_bindings(&fake).len(), 7);
}

#[tokio::test]
async fn the_broker_exchange_is_the_one_named_after_the_broker_uid() {
    let fake = cluster();
    // A leftover exchange of an earlier Broker of the same name, sorting first.
    fake.put(
        EXCHANGES,
        json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Exchange",
               "metadata": {"name": "b.ktwin.ktwin.aaaa", "namespace": NS,
                            "labels": {"eventing.knative.dev/broker": "ktwin"}},
               "spec": {"name": "b.ktwin.ktwin.aaaa"}}),
    );
    converge(&fake).await;
    let sources: Vec<Value> = live_bindings(&fake)
        .iter()
        .filter(|b| b["spec"]["destinationType"] == "queue" && b["spec"]["routingKey"].is_null())
        .map(|b| b["spec"]["source"].clone())
        .collect();
    assert!(!sources.is_empty());
    assert!(
        sources
            .iter()
            .all(|s| *s == exchange_of("broker-uid-1").as_str()),
        "{sources:?}"
    );
}

#[tokio::test]
async fn a_recreated_broker_moves_every_binding_to_its_new_exchange() {
    let fake = cluster();
    converge(&fake).await;
    // The Broker is deleted and created again: new UID, new exchange name. A Binding's source
    // is immutable (the topology operator's webhook answers 403 to an update).
    for name in fake.names(EXCHANGES) {
        fake.remove(EXCHANGES, &name);
    }
    put_broker(&fake, "broker-uid-2");
    assert_eq!(reconcile(&fake).await, Action::requeue(DEPENDENCY_RETRY));
    let applied = condition(&fake, "ChildrenApplied");
    assert_eq!(applied["reason"], "Recreating", "{applied}");
    assert!(live_bindings(&fake).len() < 7);
    converge(&fake).await;
    let bindings = live_bindings(&fake);
    assert_eq!(bindings.len(), 7);
    let old = exchange_of("broker-uid-1");
    assert!(
        bindings.iter().all(|b| b["spec"]["source"] != old.as_str()),
        "{bindings:#?}"
    );
    assert_eq!(condition(&fake, "Ready")["status"], "True");
}

/// The objects the original operator created for `city-pole`: the same names, owned by the
/// same TwinInterface, but without ktwin's labels, with its own binding arguments (no
/// `x-ktwin-binding`) and an exchange of its time.
async fn populate_as_the_original_operator(fake: &FakeApi) {
    let scratch = cluster();
    converge(&scratch).await;
    for collection in [KSVC, TRIGGERS, BINDINGS] {
        for mut object in scratch.all(collection) {
            let meta = object["metadata"].as_object_mut().unwrap();
            meta.retain(|k, _| ["name", "namespace", "ownerReferences"].contains(&k.as_str()));
            meta.insert(
                "labels".into(),
                json!({"ktwin/twin-interface": "city-pole", "eventing.knative.dev/trigger": "city-pole"}),
            );
            meta.insert("resourceVersion".into(), json!("1"));
            meta.insert("generation".into(), json!(1));
            if let Some(arguments) = object["spec"]["arguments"].as_object_mut() {
                arguments.remove("x-ktwin-binding");
            }
            if object["spec"]["source"] == exchange_of("broker-uid-1").as_str() {
                object["spec"]["source"] = json!("b.ktwin.ktwin.original");
            }
            if let Some(fields) = object.as_object_mut() {
                fields.remove("status");
            }
            fake.put(collection, object);
        }
    }
    // A binding the original left behind when a command was removed (it never pruned).
    fake.put(
        BINDINGS,
        json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Binding",
               "metadata": {"name": "city-pole-reset-command-dispatcher", "namespace": NS,
                            "labels": {"ktwin/twin-interface": "city-pole"},
                            "ownerReferences": [{"apiVersion": "dtd.ktwin/v0",
                                "kind": "TwinInterface", "name": "city-pole",
                                "uid": "uid-pole", "controller": true}]},
               "spec": {"source": "b.ktwin.ktwin.original", "destination": "t.ktwin.city-pole.uid",
                        "destinationType": "queue",
                        "rabbitmqClusterReference": {"name": "rabbitmq"}}}),
    );
}

#[tokio::test]
async fn a_namespace_populated_by_the_original_operator_is_taken_over() {
    let fake = cluster();
    populate_as_the_original_operator(&fake).await;
    converge(&fake).await;
    let bindings = live_bindings(&fake);
    let mut names: Vec<&str> = bindings
        .iter()
        .map(|b| b["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(
        !names.contains(&"city-pole-reset-command-dispatcher"),
        "{names:?}"
    );
    for binding in &bindings {
        assert_eq!(binding["metadata"]["labels"]["ktwin/owner-uid"], "uid-pole");
        assert!(
            binding["spec"]["arguments"]["x-ktwin-binding"].is_string(),
            "{binding}"
        );
    }
    let ksvc = fake.get(KSVC, "city-pole").unwrap();
    assert_eq!(ksvc["metadata"]["labels"]["ktwin/owner-uid"], "uid-pole");
}

#[tokio::test]
async fn one_refused_child_does_not_stop_the_others() {
    let fake = cluster();
    // A Binding of a desired name controlled by another object: not ours to take.
    fake.put(
        BINDINGS,
        json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Binding",
               "metadata": {"name": COMMAND_BINDING, "namespace": NS,
                            "ownerReferences": [{"apiVersion": "dtd.ktwin/v0",
                                "kind": "TwinInterface", "name": "other",
                                "uid": "uid-other", "controller": true}]},
               "spec": {"source": "x", "destination": "y", "destinationType": "queue",
                        "rabbitmqClusterReference": {"name": "rabbitmq"}}}),
    );
    let err = try_reconcile(&fake).await.unwrap_err();
    assert!(err.to_string().contains(COMMAND_BINDING), "{err}");
    // Everything else was applied.
    assert_eq!(fake.names(KSVC), vec!["city-pole"]);
    assert_eq!(fake.names(BINDINGS).len(), 7);
    let applied = condition(&fake, "ChildrenApplied");
    assert_eq!(applied["reason"], "ApplyFailed");
    assert!(
        applied["message"]
            .as_str()
            .unwrap()
            .contains("TwinInterface/other")
    );
    let object = fake.get(INTERFACES, "city-pole").unwrap();
    assert_eq!(object["status"]["phase"], "Failed");
}

#[tokio::test]
async fn without_the_topology_crds_knative_objects_still_apply_and_deletion_completes() {
    let fake = cluster();
    for resource in [
        "bindings.rabbitmq.com",
        "queues.rabbitmq.com",
        "exchanges.rabbitmq.com",
    ] {
        fake.unserve(resource);
    }
    assert_eq!(reconcile(&fake).await, Action::requeue(DEPENDENCY_RETRY));
    assert_eq!(fake.names(KSVC), vec!["city-pole"]);
    assert_eq!(fake.names(TRIGGERS), vec!["city-pole"]);
    let dependencies = condition(&fake, "DependenciesReady");
    assert_eq!(dependencies["status"], "False");
    assert_eq!(dependencies["reason"], "ApiNotInstalled");
    let message = dependencies["message"].as_str().unwrap();
    assert!(
        message.contains("rabbitmq.com/v1beta1 Binding"),
        "{message}"
    );
    assert!(
        message.contains("rabbitmq.com/v1beta1 Exchange"),
        "{message}"
    );
    fake.edit(INTERFACES, "city-pole", |o| {
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z")
    });
    assert_eq!(reconcile(&fake).await, Action::await_change());
    assert!(fake.get(INTERFACES, "city-pole").is_none());
    assert!(fake.names(KSVC).is_empty());
}

#[tokio::test]
async fn a_model_that_cannot_be_planned_is_failed_with_the_reason() {
    let fake = cluster();
    let mut config = KtwinConfig::default();
    config.broker.namespace = Some("elsewhere".into());
    let ctx = Arc::new(Context::new(fake.client(NS), config));
    let pole = (INTERFACES, "city-pole");
    let action = settle(&fake, &ctx, pole, reconcile_interface)
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let object = fake.get(INTERFACES, "city-pole").unwrap();
    assert_eq!(object["status"]["phase"], "Failed");
    let applied = condition(&fake, "ChildrenApplied");
    assert_eq!(applied["reason"], "InvalidModel");
    assert!(
        applied["message"].as_str().unwrap().contains("elsewhere"),
        "{applied}"
    );
    assert!(fake.names(KSVC).is_empty());
}

#[tokio::test]
async fn names_and_parallelism_pass_admission() {
    let fake = cluster();
    fake.edit(INTERFACES, "city-pole", |o| {
        o["spec"]["commands"] = json!([{"name": "re_boot"}, {"name": "SwitchOff"}]);
        o["spec"]["service"]["autoScaling"]["parallelism"] = json!(5000);
    });
    converge(&fake).await;
    let trigger = fake.get(TRIGGERS, "city-pole").unwrap();
    assert_eq!(
        trigger["metadata"]["annotations"]["rabbitmq.eventing.knative.dev/parallelism"],
        "1000"
    );
    assert_eq!(live_bindings(&fake).len(), 8);
}

#[tokio::test]
async fn one_leader_at_a_time_until_its_lease_expires() {
    let fake = FakeApi::default();
    let lease = Duration::from_secs(15);
    let a = LeaderElector::new(fake.client(NS), NS, "ktwin-operator-leader", "a", lease);
    let b = LeaderElector::new(fake.client(NS), NS, "ktwin-operator-leader", "b", lease);
    assert!(a.try_acquire().await.unwrap());
    assert!(!b.try_acquire().await.unwrap());
    assert!(a.try_acquire().await.unwrap(), "the holder renews");
    fake.edit(LEASES, "ktwin-operator-leader", |l| {
        l["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z")
    });
    assert!(
        b.try_acquire().await.unwrap(),
        "an expired lease is taken over"
    );
    assert!(!a.try_acquire().await.unwrap());
    let lease = fake.get(LEASES, "ktwin-operator-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn mqtt_trigger_and_event_store_reconcile_idempotently() {
    let fake = cluster();
    let ctx = context(&fake);
    reconcile_dispatchers_and_store(&fake, &ctx).await;
    assert_eq!(
        fake.names(DEPLOYMENTS),
        vec!["cloud-event-dispatcher", "mqtt-dispatcher"]
    );
    // The default store is embedded: one replica with its volume, behind a Service.
    assert_eq!(
        fake.names(SERVICES),
        vec!["cloud-event-dispatcher", "event-store", "mqtt-dispatcher"]
    );
    let statefulset = fake.get(STATEFULSETS, "event-store").unwrap();
    assert_eq!(statefulset["spec"]["replicas"], 1);
    assert_eq!(
        statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    let queues = fake.names(QUEUES);
    assert!(
        queues.contains(&"mqtt-dispatcher-queue".to_owned()),
        "{queues:?}"
    );
    assert!(fake.names(KSVC).is_empty());
    assert_eq!(fake.names(TRIGGERS), vec!["event-store-trigger"]);
    let store_trigger = fake.get(TRIGGERS, "event-store-trigger").unwrap();
    assert_eq!(
        store_trigger["spec"]["subscriber"]["ref"],
        json!({"apiVersion": "v1", "kind": "Service", "name": "event-store"})
    );
    let mqtt = fake.get(DEPLOYMENTS, "mqtt-dispatcher").unwrap();
    let env = mqtt["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    let exchange = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PUBLISHER_EXCHANGE");
    assert_eq!(
        exchange.unwrap()["value"],
        exchange_of("broker-uid-1").as_str()
    );
    let store_status = fake.get(EVENT_STORES, "event-store").unwrap()["status"].clone();
    assert_eq!(
        store_status["url"],
        "http://event-store.ktwin.svc.cluster.local"
    );
    assert_eq!(store_status["phase"], "Pending", "{store_status}");
    let trigger_status = fake.get(MQTT_TRIGGERS, "mqtt").unwrap()["status"].clone();
    assert_eq!(
        trigger_status["mqttDispatcherReadyReplicas"], 0,
        "{trigger_status}"
    );

    fake.run_controllers();
    reconcile_dispatchers_and_store(&fake, &ctx).await;
    let trigger_status = fake.get(MQTT_TRIGGERS, "mqtt").unwrap()["status"].clone();
    assert_eq!(trigger_status["phase"], "Running", "{trigger_status}");
    assert_eq!(
        trigger_status["mqttDispatcherReadyReplicas"], 1,
        "{trigger_status}"
    );
    assert_eq!(trigger_status["cloudEventDispatcherReadyReplicas"], 1);
    let store_status = fake.get(EVENT_STORES, "event-store").unwrap()["status"].clone();
    assert_eq!(store_status["phase"], "Running", "{store_status}");
    fake.take_writes();
    reconcile_dispatchers_and_store(&fake, &ctx).await;
    assert_eq!(fake.take_writes(), Vec::<String>::new());
}

/// The fake is only worth its tests if it refuses what a real cluster refuses.
#[tokio::test]
async fn the_fake_refuses_what_a_cluster_refuses() {
    use ktwin_operator::kinds::ChildKind;
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    let fake = FakeApi::default();
    let api = |kind: ChildKind| -> Api<DynamicObject> {
        Api::namespaced_with(fake.client(NS), NS, &kind.api_resource())
    };
    let apply = |kind: ChildKind, object: Value| async move {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        api(kind)
            .patch(
                &name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&object),
            )
            .await
    };
    let code = |result: Result<DynamicObject, kube::Error>| match result {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("{other}"),
    };
    let binding = |source: &str| {
        json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Binding",
               "metadata": {"name": "b", "namespace": NS},
               "spec": {"source": source, "destination": "q", "destinationType": "queue",
                        "rabbitmqClusterReference": {"name": "rabbitmq"}}})
    };
    assert_eq!(code(apply(ChildKind::Binding, binding("x1")).await), 200);
    // binding_webhook.go: the spec is immutable (403).
    assert_eq!(code(apply(ChildKind::Binding, binding("x2")).await), 403);
    // Object names are DNS-1123 subdomains (422).
    let mut bad_name = binding("x1");
    bad_name["metadata"]["name"] = json!("ref_streetlight");
    assert_eq!(code(apply(ChildKind::Binding, bad_name).await), 422);
    // Required fields (422).
    let mut no_cluster = binding("x1");
    no_cluster["metadata"]["name"] = json!("c");
    no_cluster["spec"]
        .as_object_mut()
        .unwrap()
        .remove("rabbitmqClusterReference");
    assert_eq!(code(apply(ChildKind::Binding, no_cluster).await), 422);
    // Quorum queues must be durable (403).
    let queue = json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Queue",
        "metadata": {"name": "q", "namespace": NS},
        "spec": {"name": "q", "type": "quorum", "durable": false,
                 "rabbitmqClusterReference": {"name": "rabbitmq"}}});
    assert_eq!(code(apply(ChildKind::Queue, queue).await), 403);
    // eventing-rabbitmq: parallelism in 1..=1000 (400).
    let trigger = |parallelism: &str| {
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": "t", "namespace": NS,
                            "annotations": {"rabbitmq.eventing.knative.dev/parallelism": parallelism}},
               "spec": {"broker": "ktwin", "filter": {"attributes": {"type": "a"}},
                        "subscriber": {"uri": "http://s"}}})
    };
    assert_eq!(code(apply(ChildKind::Trigger, trigger("1001")).await), 400);
    assert_eq!(code(apply(ChildKind::Trigger, trigger("1000")).await), 200);
    // Knative Serving: reserved environment variables (400).
    let ksvc = json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "s", "namespace": NS},
        "spec": {"template": {"spec": {"containers": [
            {"image": "i", "env": [{"name": "K_SERVICE", "value": "x"}]}]}}}});
    assert_eq!(code(apply(ChildKind::KService, ksvc).await), 400);
    // Server-side apply removes what the manager no longer applies.
    let mut labelled = trigger("1");
    labelled["metadata"]["labels"] = json!({"a": "1", "b": "2"});
    apply(ChildKind::Trigger, labelled.clone()).await.unwrap();
    labelled["metadata"]["labels"] = json!({"a": "1"});
    let written = apply(ChildKind::Trigger, labelled).await.unwrap();
    assert_eq!(written.metadata.labels.unwrap().get("b"), None);
    // A write carrying a stale resourceVersion is a conflict (409). (A patch: the operator
    // may not `update` a Trigger, and the fake enforces its RBAC.)
    let stale = json!({"metadata": {"resourceVersion": "1", "labels": {"c": "3"}}});
    let patched = api(ChildKind::Trigger)
        .patch("t", &PatchParams::default(), &Patch::Merge(&stale))
        .await;
    assert_eq!(code(patched), 409);
    // JSON patch (RFC 6902) as kube's finalizer helper sends it. As in evanphx/json-patch, a
    // `test` of null passes on an absent path; a failed `test` refuses the whole patch with
    // 422 Invalid (apiserver endpoints/handlers/patch.go) and changes nothing.
    let json_patch = |operations: Value| async move {
        let patch: json_patch::Patch = serde_json::from_value(operations).unwrap();
        api(ChildKind::Trigger)
            .patch("t", &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
    };
    let add_first = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                           {"op": "add", "path": "/metadata/finalizers", "value": ["a"]}]);
    assert_eq!(code(json_patch(add_first.clone()).await), 200);
    assert_eq!(
        code(json_patch(add_first).await),
        422,
        "the list exists now"
    );
    let add_to_stale = json!([{"op": "test", "path": "/metadata/finalizers", "value": ["b"]},
                              {"op": "add", "path": "/metadata/finalizers/-", "value": "c"}]);
    assert_eq!(code(json_patch(add_to_stale).await), 422);
    let live = api(ChildKind::Trigger).get("t").await.unwrap();
    assert_eq!(live.metadata.finalizers, Some(vec!["a".to_owned()]));
    // A resourceVersion the patch sets is a precondition (409), as in any other write.
    let stale_version =
        json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": "1"}]);
    assert_eq!(code(json_patch(stale_version).await), 409);
    let remove = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "a"},
                        {"op": "remove", "path": "/metadata/finalizers/0"}]);
    assert_eq!(code(json_patch(remove).await), 200);
}

/// kube's finalizer helper tests the finalizer list it read: when another controller added
/// one in between, the patch fails (422) and the failure is retried as a conflict, at once,
/// not backed off as a refusal; the next reconcile, with the object as it is, adds ours.
#[tokio::test]
async fn a_stale_finalizer_list_is_a_conflict_not_a_refusal() {
    let fake = cluster();
    let read = fake.get(INTERFACES, "city-pole").unwrap();
    fake.edit(INTERFACES, "city-pole", |o| {
        o["metadata"]["finalizers"] = json!(["example.org/other"])
    });
    let stale = Arc::new(serde_json::from_value(read).unwrap());
    let err = reconcile_interface(stale, context(&fake))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Finalizer(_)), "{err:?}");
    assert_eq!(err.status_code(), Some(422));
    assert!(err.is_conflict() && !err.is_refusal(), "{err}");
    assert_eq!(
        ktwin_operator::backoff::base_delay(&err),
        Duration::from_secs(1)
    );
    assert!(
        fake.names(KSVC).is_empty(),
        "nothing applied without the finalizer"
    );
    try_reconcile(&fake).await.unwrap();
    let object = fake.get(INTERFACES, "city-pole").unwrap();
    assert_eq!(
        object["metadata"]["finalizers"],
        json!(["example.org/other", "ktwin.dev/cleanup"])
    );
    assert_eq!(fake.names(KSVC), vec!["city-pole"]);
}

const INSTANCES: &str = "/apis/dtd.ktwin/v0/namespaces/ktwin/twininstances";

#[tokio::test]
async fn twin_instance_status_reports_dangling_relationships_and_device_topics() {
    use ktwin_model::crd::TwinInstance;
    use ktwin_operator::instance::reconcile_twin_instance;
    let fake = cluster();
    let instance = |name: &str, interface: &str, relationships: Value| {
        json!({"apiVersion": "dtd.ktwin/v0", "kind": "TwinInstance",
               "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
                            "generation": 1, "resourceVersion": "1"},
               "spec": {"interface": interface, "twinInstanceRelationships": relationships}})
    };
    fake.put(
        INSTANCES,
        instance(
            "pole-1",
            "city-pole",
            json!([{"name": "refStreetlight", "interface": "ngsi-ld-city-streetlight",
                    "instance": "light-1"}]),
        ),
    );
    let ctx = Arc::new(Context::new(fake.client(NS), KtwinConfig::default()));
    let reconcile_pole = || async {
        let pole: TwinInstance =
            serde_json::from_value(fake.get(INSTANCES, "pole-1").unwrap()).unwrap();
        reconcile_twin_instance(Arc::new(pole), ctx.clone())
            .await
            .unwrap();
        fake.get(INSTANCES, "pole-1").unwrap()["status"].clone()
    };
    let status = reconcile_pole().await;
    assert_eq!(status["phase"], "Pending", "{status}");
    assert_eq!(status["danglingRelationships"][0]["instance"], "light-1");
    assert_eq!(status["mqttPublishTopic"], "ktwin/real/city-pole/pole-1");
    assert_eq!(
        status["mqttSubscribeTopic"],
        "ktwin/virtual/city-pole/pole-1"
    );
    // A target of another interface still dangles; the right one resolves it.
    fake.put(INSTANCES, instance("light-1", "city-pole", json!([])));
    assert_eq!(
        reconcile_pole().await["danglingRelationships"][0]["instance"],
        "light-1"
    );
    fake.put(
        INSTANCES,
        instance("light-1", "ngsi-ld-city-streetlight", json!([])),
    );
    let status = reconcile_pole().await;
    assert_eq!(status["phase"], "Running", "{status}");
    assert!(
        status["danglingRelationships"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{status}"
    );
    fake.take_writes();
    reconcile_pole().await;
    assert_eq!(
        fake.take_writes(),
        Vec::<String>::new(),
        "an unchanged status is not rewritten"
    );
}

/// Polls `done` while the operator works; a guard against hanging, not a timing assertion.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..3000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

fn operator_options(leader_elect: bool) -> ktwin_operator::OperatorOptions {
    ktwin_operator::OperatorOptions {
        config: KtwinConfig::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        leader_elect,
        lease_namespace: NS.into(),
        identity: "operator-a".into(),
    }
}

#[tokio::test]
async fn the_running_controllers_react_to_watched_changes() {
    let fake = cluster();
    let operator = tokio::spawn(ktwin_operator::run(
        fake.client(NS),
        operator_options(false),
    ));
    eventually("the interface's children are applied", || {
        fake.get(KSVC, "city-pole").is_some() && live_bindings(&fake).len() == 7
    })
    .await;
    eventually("the dispatchers and the store are applied", || {
        fake.names(DEPLOYMENTS).len() == 2 && fake.get(STATEFULSETS, "event-store").is_some()
    })
    .await;
    // Knative reporting the Service Ready is seen through the watch on owned children.
    fake.run_controllers();
    eventually("Ready follows the Knative Service", || {
        fake.get(INTERFACES, "city-pole").unwrap()["status"]["serviceReady"] == true
    })
    .await;
    // A user's edit reaches the children.
    fake.take_lists();
    fake.edit(INTERFACES, "city-pole", |o| {
        o["spec"]["service"]["autoScaling"]["maxScale"] = json!(9)
    });
    eventually("the edit is applied", || {
        fake.get(KSVC, "city-pole").unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["autoscaling.knative.dev/max-scale"]
            == "9"
    })
    .await;
    // The reconciles read children, trigger queues, EventStores, MQTTTriggers, interfaces, the
    // Broker and its Exchanges from the reflectors' stores: nothing of those is listed in the
    // namespace.
    let lists = fake.take_lists();
    let listed: Vec<&String> = lists
        .iter()
        .filter(|l| {
            l.contains("/namespaces/")
                && [
                    "bindings",
                    "queues",
                    "services",
                    "triggers",
                    "deployments",
                    "statefulsets",
                    "eventstores",
                    "mqtttriggers",
                    "twininterfaces",
                    "brokers",
                    "exchanges",
                ]
                .iter()
                .any(|plural| l.contains(&format!("/{plural}?")))
        })
        .collect();
    assert!(listed.is_empty(), "listed per reconcile: {listed:?}");
    // A deleted child is restored.
    fake.remove(TRIGGERS, "city-pole");
    eventually("the deleted Trigger is restored", || {
        fake.get(TRIGGERS, "city-pole").is_some()
    })
    .await;
    // A recreated Broker (new UID, new exchange) reaches the stores and wakes the interface:
    // every Binding moves to the new exchange.
    for name in fake.names(EXCHANGES) {
        fake.remove(EXCHANGES, &name);
    }
    put_broker(&fake, "broker-uid-2");
    let old = exchange_of("broker-uid-1");
    eventually("the Bindings move to the new exchange", || {
        fake.run_topology_operator();
        let bindings = live_bindings(&fake);
        bindings.len() == 7 && bindings.iter().all(|b| b["spec"]["source"] != old.as_str())
    })
    .await;
    assert!(!operator.is_finished(), "{:?}", operator.await);
    operator.abort();
}

/// With the topology CRDs missing, the running operator's watches of Bindings, Queues and
/// Exchanges never fill their stores: the reconciles list them, report the missing APIs, apply
/// the rest, and deletion completes.
#[tokio::test]
async fn the_running_operator_without_the_topology_crds_applies_the_rest() {
    let fake = cluster();
    for resource in [
        "bindings.rabbitmq.com",
        "queues.rabbitmq.com",
        "exchanges.rabbitmq.com",
    ] {
        fake.unserve(resource);
    }
    let operator = tokio::spawn(ktwin_operator::run(
        fake.client(NS),
        operator_options(false),
    ));
    eventually(
        "the Knative objects are applied, the missing APIs reported",
        || {
            let status = &fake.get(INTERFACES, "city-pole").unwrap()["status"];
            fake.get(KSVC, "city-pole").is_some()
                && status.to_string().contains("ApiNotInstalled")
                && status.to_string().contains("rabbitmq.com/v1beta1 Binding")
                && status.to_string().contains("rabbitmq.com/v1beta1 Exchange")
        },
    )
    .await;
    fake.edit(INTERFACES, "city-pole", |o| {
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z")
    });
    eventually("the interface's finalizer ran", || {
        fake.get(INTERFACES, "city-pole").is_none() && fake.names(KSVC).is_empty()
    })
    .await;
    assert!(!operator.is_finished(), "{:?}", operator.await);
    operator.abort();
}

#[tokio::test]
async fn a_replica_that_loses_the_lease_stops() {
    let fake = cluster();
    let operator = tokio::spawn(ktwin_operator::run(fake.client(NS), operator_options(true)));
    eventually("the leader reconciles", || {
        fake.get(KSVC, "city-pole").is_some()
    })
    .await;
    let lease = fake.get(LEASES, "ktwin-operator-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "operator-a");
    // Another replica holds the lease now (as after a partition).
    fake.edit(LEASES, "ktwin-operator-leader", |l| {
        l["spec"]["holderIdentity"] = json!("operator-b");
        l["spec"]["renewTime"] = json!("2099-01-01T00:00:00.000000Z");
    });
    // The hang guard is generous: the replica notices at its next renewal.
    let result = tokio::time::timeout(Duration::from_secs(120), operator)
        .await
        .map(|joined| joined.unwrap());
    let result = result.expect("the replica kept running without the lease");
    assert!(
        matches!(result, Err(ktwin_operator::RunError::LostLeadership)),
        "{result:?}"
    );
}

const GATEWAYS: &str = "/apis/core.ktwin/v0/namespaces/ktwin/gateways";

/// A Gateway `front-door` behind a LoadBalancer, authenticating with a bearer token.
fn put_gateway(fake: &FakeApi) {
    fake.put(
        GATEWAYS,
        json!({"apiVersion": "core.ktwin/v0", "kind": "Gateway",
               "metadata": {"name": "front-door", "namespace": NS, "uid": "uid-gw",
                            "generation": 1},
               "spec": {"auth": {"bearerTokenSecret": {"name": "front-door-token"}},
                        "service": {"type": "LoadBalancer", "port": 8080}}}),
    );
}

#[tokio::test]
async fn a_gateway_is_deployed_reported_and_cleaned_up() {
    use ktwin_operator::controller::reconcile_gateway;
    let fake = cluster();
    put_gateway(&fake);
    let ctx = context(&fake);
    let front_door = (GATEWAYS, "front-door");
    let reconcile = || settle(&fake, &ctx, front_door, reconcile_gateway);
    reconcile().await.unwrap();
    let deployment = fake.get(DEPLOYMENTS, "front-door").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "gateway"
    );
    assert_eq!(
        fake.get(SERVICES, "front-door").unwrap()["spec"]["type"],
        "LoadBalancer"
    );
    assert_eq!(
        fake.get(GATEWAYS, "front-door").unwrap()["status"]["phase"],
        "Pending"
    );
    fake.run_controllers();
    reconcile().await.unwrap();
    let status = fake.get(GATEWAYS, "front-door").unwrap()["status"].clone();
    assert_eq!(status["phase"], "Running", "{status}");
    assert_eq!(
        status["url"],
        "http://front-door.ktwin.svc.cluster.local:8080"
    );
    fake.edit(GATEWAYS, "front-door", |g| {
        g["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z")
    });
    assert_eq!(reconcile().await.unwrap(), Action::await_change());
    assert!(fake.get(DEPLOYMENTS, "front-door").is_none());
    assert!(fake.get(SERVICES, "front-door").is_none());
    assert!(fake.get(GATEWAYS, "front-door").is_none());
}

#[tokio::test]
async fn deleting_an_mqtt_trigger_or_event_store_removes_their_children() {
    let fake = cluster();
    fake.unserve("queues.rabbitmq.com");
    let ctx = context(&fake);
    reconcile_dispatchers_and_store(&fake, &ctx).await;
    let conditions = fake.get(MQTT_TRIGGERS, "mqtt").unwrap()["status"]["conditions"].clone();
    assert!(
        conditions
            .to_string()
            .contains("rabbitmq.com/v1beta1 Queue"),
        "{conditions}"
    );
    assert_eq!(
        fake.names(DEPLOYMENTS).len(),
        2,
        "the dispatchers run without their queues"
    );
    for (collection, name) in [(MQTT_TRIGGERS, "mqtt"), (EVENT_STORES, "event-store")] {
        fake.edit(collection, name, |o| {
            o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z")
        });
    }
    reconcile_dispatchers_and_store(&fake, &ctx).await;
    assert!(fake.names(DEPLOYMENTS).is_empty());
    assert!(fake.names(STATEFULSETS).is_empty());
    assert!(fake.names(SERVICES).is_empty());
    assert!(fake.names(TRIGGERS).is_empty());
    assert!(fake.get(MQTT_TRIGGERS, "mqtt").is_none());
    assert!(fake.get(EVENT_STORES, "event-store").is_none());
}

#[tokio::test]
async fn two_event_stores_without_a_choice_fail_with_the_fix() {
    let fake = cluster();
    fake.put(
        EVENT_STORES,
        json!({"apiVersion": "core.ktwin/v0", "kind": "EventStore",
               "metadata": {"name": "event-store-2", "namespace": NS, "uid": "uid-es2"},
               "spec": {}}),
    );
    assert_eq!(reconcile(&fake).await, Action::await_change());
    let object = fake.get(INTERFACES, "city-pole").unwrap();
    assert_eq!(object["status"]["phase"], "Failed");
    let message = condition(&fake, "Ready")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("eventStore") && message.contains("event-store-2"),
        "{message}"
    );
}

/// Least privilege: the fake enforces the bundle's RBAC on every test of this file (a call it
/// does not grant is a 403, as on a cluster); this test runs the operator through a whole
/// lifecycle — every kind created, made ready, changed and deleted, leader election on — and
/// requires that what the bundle grants is exactly what the operator used.
#[tokio::test]
async fn the_operator_is_granted_exactly_the_api_calls_it_makes() {
    let fake = cluster();
    put_gateway(&fake);
    fake.put(
        INSTANCES,
        json!({"apiVersion": "dtd.ktwin/v0", "kind": "TwinInstance",
               "metadata": {"name": "pole-1", "namespace": NS, "uid": "uid-pole-1",
                            "generation": 1, "resourceVersion": "1"},
               "spec": {"interface": "city-pole"}}),
    );
    let operator = tokio::spawn(ktwin_operator::run(fake.client(NS), operator_options(true)));
    eventually("every child is applied", || {
        fake.get(KSVC, "city-pole").is_some()
            && fake.get(STATEFULSETS, "event-store").is_some()
            && fake.get(DEPLOYMENTS, "front-door").is_some()
    })
    .await;
    fake.run_controllers();
    eventually("Ready follows the children", || {
        fake.get(INTERFACES, "city-pole").unwrap()["status"]["serviceReady"] == true
            && fake.get(GATEWAYS, "front-door").unwrap()["status"]["phase"] == "Running"
            && !fake.get(INSTANCES, "pole-1").unwrap()["status"].is_null()
    })
    .await;
    fake.edit(INTERFACES, "city-pole", |o| {
        o["spec"]["commands"] = json!([])
    });
    eventually("the removed command's binding is deleted", || {
        live_bindings(&fake)
            .iter()
            .all(|b| b["metadata"]["name"] != COMMAND_BINDING)
    })
    .await;
    for (collection, name) in [
        (GATEWAYS, "front-door"),
        (INTERFACES, "city-pole"),
        (MQTT_TRIGGERS, "mqtt"),
        (EVENT_STORES, "event-store"),
    ] {
        fake.edit(collection, name, |o| {
            o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z")
        });
    }
    eventually("every resource's finalizer ran", || {
        fake.run_topology_operator();
        [GATEWAYS, INTERFACES, MQTT_TRIGGERS, EVENT_STORES]
            .iter()
            .all(|collection| fake.names(collection).is_empty())
    })
    .await;
    operator.abort();

    let mut used = fake.calls();
    // Granted for paths this lifecycle does not take, each permitted only because the fake
    // enforces the same rules on every test of this file: a Warning Event (created, then patched
    // when it repeats) when a reconcile fails, the Lease's renewal (`update`) after its first
    // period, and `update` on an owner's finalizers, which the API server's
    // OwnerReferencesPermissionEnforcement plugin (not modelled by the fake) checks for
    // `blockOwnerDeletion`.
    let call = |group: &str, resource: &str, verb: &str| {
        (group.to_owned(), resource.to_owned(), verb.to_owned())
    };
    used.extend([
        call("events.k8s.io", "events", "create"),
        call("events.k8s.io", "events", "patch"),
        call("coordination.k8s.io", "leases", "update"),
        call("dtd.ktwin", "twininterfaces/finalizers", "update"),
        call("core.ktwin", "eventstores/finalizers", "update"),
        call("core.ktwin", "mqtttriggers/finalizers", "update"),
        call("core.ktwin", "gateways/finalizers", "update"),
    ]);
    let granted = fake_api::rbac::granted_calls(&fake_api::rbac::granted_rules());
    let unused: Vec<_> = granted.difference(&used).collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(missing.is_empty(), "used but not granted: {missing:?}");
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
    // And never a Secret, anywhere.
    assert!(
        !granted
            .iter()
            .any(|(_, resource, _)| resource.starts_with("secrets"))
    );
}

/// Creates `object` in the fake as the API server would store it: admitted by ktwin's CRD
/// (nulls pruned, every field declared), with a uid and a generation.
fn create_ktwin_resource(fake: &FakeApi, object: &Value) {
    let kind = object["kind"].as_str().unwrap();
    let crd = ktwin_model::crd::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    let crd = serde_json::to_value(&crd).unwrap();
    let mut stored = ktwin_testkit::crd::admit(&crd, object)
        .unwrap_or_else(|errors| panic!("{kind} refused: {errors:#?}"));
    let name = stored["metadata"]["name"].as_str().unwrap().to_owned();
    let namespace = stored["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    stored["metadata"]["namespace"] = json!(namespace);
    stored["metadata"]["uid"] = json!(format!("uid-{name}"));
    stored["metadata"]["generation"] = json!(1);
    let group = object["apiVersion"].as_str().unwrap();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
    fake.put(
        &format!("/apis/{group}/namespaces/{namespace}/{plural}"),
        stored,
    );
}

fn status_condition(object: &Value, type_: &str) -> Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {:#}", object["status"]))
}

/// The original KTWIN's resources (its `hack/` resources, its CLI's smart-city interfaces and
/// instances, its scaffold samples) reconcile unchanged: the MQTTTrigger without a spec deploys
/// the dispatchers; a schema given as a raw ontology id is reported in `SchemasResolved` (not
/// refused) and resolves once an interface of that name exists; an instance without
/// `spec.interface` says so.
#[tokio::test]
async fn the_original_ktwin_resources_reconcile() {
    use ktwin_model::crd::TwinInstance;
    use ktwin_operator::instance::reconcile_twin_instance;
    let fake = FakeApi::default();
    put_broker(&fake, "broker-uid-1");
    for trigger in [
        "city-pole",
        "ngsi-ld-city-airqualityobserved",
        "s4city-city-neighborhood",
        "event-store-trigger",
    ] {
        fake.put(
            QUEUES,
            json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Queue",
                   "metadata": {"name": format!("t.{trigger}"), "namespace": NS,
                                "labels": {"eventing.knative.dev/trigger": trigger}},
                   "spec": {"name": format!("t.ktwin.{trigger}.uid")}}),
        );
    }
    let resources = ktwin_testkit::crd::original_ktwin_resources();
    let level = "ngsi-ld-city-airqualitylevel";
    for (file, object) in &resources {
        // The Gateway sample is refused by the schema (no unauthenticated gateway), and the
        // interface an id names is added later.
        if file.contains("gateway") || object["metadata"]["name"] == level {
            continue;
        }
        create_ktwin_resource(&fake, object);
    }
    let ctx = context(&fake);

    let mqtt = (MQTT_TRIGGERS, "mqtttrigger");
    settle(&fake, &ctx, mqtt, reconcile_mqtt_trigger)
        .await
        .unwrap();
    assert_eq!(
        fake.names(DEPLOYMENTS),
        vec!["cloud-event-dispatcher", "mqtt-dispatcher"]
    );
    let store = (EVENT_STORES, "event-store");
    settle(&fake, &ctx, store, reconcile_event_store)
        .await
        .unwrap();

    let reconcile_named = |name: &'static str| {
        let ctx = ctx.clone();
        let fake = fake.clone();
        async move {
            settle(&fake, &ctx, (INTERFACES, name), reconcile_interface)
                .await
                .unwrap();
            fake.get(INTERFACES, name).unwrap()
        }
    };
    let pole = reconcile_named("city-pole").await;
    assert_eq!(
        status_condition(&pole, "ChildrenApplied")["status"],
        "True",
        "{:#}",
        pole["status"]
    );
    assert_eq!(status_condition(&pole, "SchemasResolved")["status"], "True");
    let trigger = fake.get(TRIGGERS, "city-pole").unwrap();
    assert_eq!(
        trigger["metadata"]["annotations"]["rabbitmq.eventing.knative.dev/parallelism"],
        "100"
    );
    let neighborhood = reconcile_named("s4city-city-neighborhood").await;
    // The command's binding (its name shortened to 63 characters with a hash).
    assert!(
        fake.names(BINDINGS)
            .iter()
            .any(|n| n.starts_with("s4city-city-neighborhood-updateairqualityindex-command")),
        "{:?}",
        fake.names(BINDINGS)
    );
    let schemas = status_condition(&neighborhood, "SchemasResolved");
    assert_eq!(schemas["status"], "False");
    assert_eq!(schemas["reason"], "UnresolvedSchema");
    let observed = reconcile_named("ngsi-ld-city-airqualityobserved").await;
    let schemas = status_condition(&observed, "SchemasResolved");
    assert_eq!(schemas["status"], "False");
    let message = schemas["message"].as_str().unwrap();
    assert!(
        message.contains("spec.properties[0].schema.primitiveType")
            && message.contains("ngsi_ld:city:AirQualityLevel"),
        "{message}"
    );
    assert_eq!(
        status_condition(&observed, "ChildrenApplied")["status"],
        "True",
        "an unresolved schema does not keep the children from being applied"
    );

    let (_, level_object) = resources
        .iter()
        .find(|(_, o)| o["metadata"]["name"] == level)
        .unwrap();
    create_ktwin_resource(&fake, level_object);
    let observed = reconcile_named("ngsi-ld-city-airqualityobserved").await;
    assert_eq!(
        status_condition(&observed, "SchemasResolved")["status"],
        "True",
        "{:#}",
        observed["status"]
    );

    let instance: TwinInstance =
        serde_json::from_value(fake.get(INSTANCES, "city-pole-001").unwrap()).unwrap();
    reconcile_twin_instance(Arc::new(instance), ctx.clone())
        .await
        .unwrap();
    let status = fake.get(INSTANCES, "city-pole-001").unwrap()["status"].clone();
    assert_eq!(
        status["conditions"][1]["reason"], "InterfaceFound",
        "{status}"
    );

    // The scaffold samples, created in `default` as `kubectl apply -f config/samples/` would.
    let samples = Context::new(fake.client("default"), KtwinConfig::default());
    let sample_instance: TwinInstance = serde_json::from_value(
        fake.get(
            "/apis/dtd.ktwin/v0/namespaces/default/twininstances",
            "twininstance-sample",
        )
        .unwrap(),
    )
    .unwrap();
    reconcile_twin_instance(Arc::new(sample_instance), Arc::new(samples))
        .await
        .unwrap();
    let status = fake
        .get(
            "/apis/dtd.ktwin/v0/namespaces/default/twininstances",
            "twininstance-sample",
        )
        .unwrap()["status"]
        .clone();
    assert_eq!(status["conditions"][0]["reason"], "NoInterface", "{status}");
}

/// An interface co-typed `Mqtt` (DTDL MQTT extension): its declared telemetry topic is bound
/// into the MQTT dispatcher's queue as RabbitMQ's MQTT plugin makes a routing key of it, its
/// commands into the CloudEvent dispatcher's queue, and the dispatchers are told the binding.
#[tokio::test]
async fn declared_device_topics_are_bound_and_handed_to_the_dispatchers() {
    let fake = cluster();
    fake.put(
        QUEUES,
        json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Queue",
               "metadata": {"name": "t.vehicle", "namespace": NS,
                            "labels": {"eventing.knative.dev/trigger": "vehicle"}},
               "spec": {"name": "t.ktwin.vehicle.uid"}}),
    );
    fake.put(
        INTERFACES,
        json!({"apiVersion": "dtd.ktwin/v0", "kind": "TwinInterface",
               "metadata": {"name": "vehicle", "namespace": NS, "uid": "uid-vehicle",
                            "generation": 1, "resourceVersion": "1"},
               "spec": {
                   "dtmi": "dtmi:example:Vehicle;1",
                   "commands": [{"name": "setColor"}],
                   "mqtt": {"payloadFormat": "Json/ecma/404",
                            "telemetryTopic": "vehicles/{modelId}/{senderId}/telemetry",
                            "commandTopic": "vehicles/{executorId}/command/{commandName}"},
                   "service": {"template": {"spec": {"containers": [
                       {"name": "vehicle", "image": "example.org/vehicle:1"}]}}}}}),
    );
    let ctx = context(&fake);
    settle(&fake, &ctx, (INTERFACES, "vehicle"), reconcile_interface)
        .await
        .unwrap();
    let telemetry = fake
        .get(BINDINGS, "vehicle-declared-mqtt-dispatcher")
        .unwrap_or_else(|| panic!("{:?}", fake.names(BINDINGS)));
    assert_eq!(telemetry["spec"]["source"], "amq.topic");
    assert_eq!(telemetry["spec"]["destination"], "mqtt-dispatcher-queue");
    assert_eq!(telemetry["spec"]["routingKey"], "vehicles.*.*.telemetry");
    let command = fake
        .get(BINDINGS, "vehicle-setcolor-device-command-dispatcher")
        .unwrap_or_else(|| panic!("{:?}", fake.names(BINDINGS)));
    assert_eq!(
        command["spec"]["destination"],
        "cloud-event-dispatcher-queue"
    );
    assert_eq!(
        command["spec"]["arguments"]["type"],
        "ktwin.command.vehicle.setcolor"
    );
    // The service still gets the command too.
    assert!(
        fake.get(BINDINGS, "vehicle-setcolor-command-dispatcher")
            .is_some()
    );
    // The real-topic binding carries the dotted spelling too (the plugin keeps `.`).
    let real = fake.get(BINDINGS, "vehicle-real-mqtt-dispatcher").unwrap();
    assert_eq!(real["spec"]["routingKey"], "ktwin.real.vehicle.#");

    settle(&fake, &ctx, (MQTT_TRIGGERS, "mqtt"), reconcile_mqtt_trigger)
        .await
        .unwrap();
    for dispatcher in ["mqtt-dispatcher", "cloud-event-dispatcher"] {
        let deployment = fake.get(DEPLOYMENTS, dispatcher).unwrap();
        let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
        let bindings = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == ktwin_events::env::DEVICE_BINDINGS)
            .unwrap_or_else(|| panic!("{dispatcher}: {env:#}"));
        assert!(
            bindings["value"]
                .as_str()
                .unwrap()
                .contains("vehicles/{modelId}/{senderId}/telemetry"),
            "{bindings}"
        );
    }
}
