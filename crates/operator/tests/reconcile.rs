//! Reconciler tests against an in-process fake of the Kubernetes API endpoints the operator uses
//! (get, list with label selectors, server-side apply, merge patch, status, delete, create),
//! behind a real `kube::Client`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use ktwin_model::crd::TwinInterface;
use ktwin_operator::controller::{Context, DEPENDENCY_RETRY, RESYNC, reconcile_interface};
use ktwin_operator::leader::LeaderElector;
use ktwin_planner::KtwinConfig;
use kube::Client;
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

#[derive(Default)]
struct State {
    /// Collection path → name → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// Every request that is not a read, as `METHOD path`.
    writes: Vec<String>,
    next_version: u64,
}

/// The fake API server.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

/// RFC 7386 merge; server-side apply is approximated by the same merge (enough for the fields
/// ktwin writes, which it always writes whole).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn split(path: &str) -> (String, Option<String>, Option<String>) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let at = segments
        .iter()
        .position(|s| *s == "namespaces")
        .expect("only namespaced requests");
    let collection = format!("/{}", segments[..at + 3].join("/"));
    (
        collection,
        segments.get(at + 3).map(|s| s.to_string()),
        segments.get(at + 4).map(|s| s.to_string()),
    )
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

fn matches_selector(object: &Value, query: &str) -> bool {
    let selector = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("labelSelector="))
        .map(|s| {
            s.replace("%3D", "=")
                .replace("%2F", "/")
                .replace("%2C", ",")
        });
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (key, value) = term.split_once('=').unwrap();
        object["metadata"]["labels"][key] == value
    })
}

impl Fake {
    fn client(&self) -> Client {
        let fake = self.clone();
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move {
                let (parts, body) = request.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (code, value) = fake.handle(&parts, body);
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Full::new(bytes::Bytes::from(value.to_string())))
                    .unwrap();
                Ok::<_, Infallible>(response)
            }
        });
        Client::new(service, NS)
    }

    fn handle(&self, parts: &http::request::Parts, body: Value) -> (StatusCode, Value) {
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let method = parts.method.as_str().to_owned();
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut state = self.0.lock().unwrap();
        if method != "GET" {
            state.writes.push(format!("{method} {path}"));
        }
        state.next_version += 1;
        let version = state.next_version.to_string();
        let (collection, name, subresource) = split(&path);
        let objects = state.objects.entry(collection).or_default();
        match (method.as_str(), name) {
            ("GET", None) => {
                let items: Vec<Value> = objects
                    .values()
                    .filter(|o| matches_selector(o, &query))
                    .cloned()
                    .collect();
                (
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List",
                           "metadata": {"resourceVersion": version}, "items": items}),
                )
            }
            ("GET", Some(name)) => match objects.get(&name) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => (StatusCode::NOT_FOUND, status(404, "NotFound")),
            },
            ("POST", None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("generated-{version}"));
                if objects.contains_key(&name) {
                    return (StatusCode::CONFLICT, status(409, "AlreadyExists"));
                }
                let mut object = body;
                object["metadata"]["name"] = json!(name);
                object["metadata"]["resourceVersion"] = json!(version);
                objects.insert(name, object.clone());
                (StatusCode::CREATED, object)
            }
            ("PUT", Some(name)) => {
                let Some(existing) = objects.get(&name) else {
                    return (StatusCode::NOT_FOUND, status(404, "NotFound"));
                };
                // Optimistic concurrency, as the API server does for updates.
                if body["metadata"]["resourceVersion"] != existing["metadata"]["resourceVersion"] {
                    return (StatusCode::CONFLICT, status(409, "Conflict"));
                }
                let mut object = body;
                object["metadata"]["resourceVersion"] = json!(version);
                objects.insert(name, object.clone());
                (StatusCode::OK, object)
            }
            ("PATCH", Some(name)) => {
                let apply = content_type.starts_with("application/apply-patch");
                let existing = objects.get(&name).cloned();
                let mut object = match (existing, apply) {
                    (Some(object), _) => object,
                    (None, true) => json!({"metadata": {
                        "uid": format!("uid-{name}"), "creationTimestamp": "2026-01-01T00:00:00Z"}}),
                    (None, false) => return (StatusCode::NOT_FOUND, status(404, "NotFound")),
                };
                let mut patch = body;
                if subresource.as_deref() == Some("status") {
                    patch = json!({"status": patch["status"].clone()});
                } else if let Some(meta) = patch["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                merge(&mut object, &patch);
                object["metadata"]["resourceVersion"] = json!(version);
                let finalizing = object["metadata"]["deletionTimestamp"].is_string()
                    && object["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty());
                if finalizing {
                    objects.remove(&name);
                } else {
                    objects.insert(name, object.clone());
                }
                (StatusCode::OK, object)
            }
            ("DELETE", Some(name)) => match objects.remove(&name) {
                Some(object) => (StatusCode::OK, object),
                None => (StatusCode::NOT_FOUND, status(404, "NotFound")),
            },
            other => panic!("unexpected request {other:?} {path}"),
        }
    }

    fn put(&self, collection: &str, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        self.0
            .lock()
            .unwrap()
            .objects
            .entry(collection.into())
            .or_default()
            .insert(name, object);
    }

    fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.0
            .lock()
            .unwrap()
            .objects
            .get(collection)?
            .get(name)
            .cloned()
    }

    fn names(&self, collection: &str) -> Vec<String> {
        let state = self.0.lock().unwrap();
        state
            .objects
            .get(collection)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn remove(&self, collection: &str, name: &str) {
        self.0
            .lock()
            .unwrap()
            .objects
            .get_mut(collection)
            .map(|m| m.remove(name));
    }

    fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap().writes)
    }

    fn interface(&self) -> Arc<TwinInterface> {
        Arc::new(serde_json::from_value(self.get(INTERFACES, "city-pole").unwrap()).unwrap())
    }

    fn edit_interface(&self, edit: impl FnOnce(&mut Value)) {
        let mut state = self.0.lock().unwrap();
        let object = state
            .objects
            .get_mut(INTERFACES)
            .unwrap()
            .get_mut("city-pole")
            .unwrap();
        edit(object);
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
        object["metadata"]["generation"] = json!(generation + 1);
    }
}

/// A cluster where Knative, eventing-rabbitmq and the topology operator are installed and have
/// created the broker's exchange and the triggers' queues.
fn cluster() -> Fake {
    let fake = Fake::default();
    fake.put(
        BROKERS,
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
               "metadata": {"name": "ktwin", "namespace": NS},
               "status": {"address": {"url": "http://ktwin-broker-ingress.ktwin.svc.cluster.local"}}}),
    );
    fake.put(
        EXCHANGES,
        json!({"apiVersion": "rabbitmq.com/v1beta1", "kind": "Exchange",
               "metadata": {"name": "b.ktwin", "namespace": NS,
                            "labels": {"eventing.knative.dev/broker": "ktwin"}},
               "spec": {"name": "b.ktwin.ktwin.uid"}}),
    );
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
               "metadata": {"name": "event-store", "namespace": NS, "uid": "uid-es"}, "spec": {}}),
    );
    fake.put(
        MQTT_TRIGGERS,
        json!({"apiVersion": "core.ktwin/v0", "kind": "MQTTTrigger",
               "metadata": {"name": "mqtt", "namespace": NS, "uid": "uid-mqtt"}, "spec": {}}),
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

async fn reconcile(fake: &Fake) -> Action {
    let ctx = Arc::new(Context::new(fake.client(), KtwinConfig::default()));
    reconcile_interface(fake.interface(), ctx).await.unwrap()
}

fn condition(fake: &Fake, type_: &str) -> Value {
    let object = fake.get(INTERFACES, "city-pole").unwrap();
    object["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn create_applies_every_child_and_reports_ready() {
    let fake = cluster();
    assert_eq!(reconcile(&fake).await, Action::requeue(RESYNC));
    assert_eq!(fake.names(KSVC), vec!["city-pole"]);
    assert_eq!(fake.names(TRIGGERS), vec!["city-pole"]);
    let bindings = fake.names(BINDINGS);
    assert!(
        bindings.contains(&"city-pole-reboot-command-dispatcher".to_owned()),
        "{bindings:?}"
    );
    assert_eq!(bindings.len(), 7, "{bindings:?}");
    let ksvc = fake.get(KSVC, "city-pole").unwrap();
    assert_eq!(ksvc["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(ksvc["metadata"]["labels"]["ktwin/owner-uid"], "uid-pole");
    let interface = fake.get(INTERFACES, "city-pole").unwrap();
    assert_eq!(
        interface["metadata"]["finalizers"],
        json!(["ktwin.dev/cleanup"])
    );
    assert_eq!(condition(&fake, "Ready")["status"], "True");
    assert_eq!(interface["status"]["queue"], "t.ktwin.city-pole.uid");
    assert_eq!(interface["status"]["observedGeneration"], 1);
    let writes = fake.take_writes();
    assert!(
        writes.iter().all(|w| w.starts_with("PATCH ")),
        "only server-side apply and patches: {writes:?}"
    );
}

#[tokio::test]
async fn a_second_reconcile_writes_nothing() {
    let fake = cluster();
    reconcile(&fake).await;
    fake.take_writes();
    assert_eq!(reconcile(&fake).await, Action::requeue(RESYNC));
    assert_eq!(fake.take_writes(), Vec::<String>::new());
}

#[tokio::test]
async fn changed_autoscaling_patches_only_the_service() {
    let fake = cluster();
    reconcile(&fake).await;
    fake.take_writes();
    fake.edit_interface(|o| o["spec"]["service"]["autoScaling"]["maxScale"] = json!(9));
    reconcile(&fake).await;
    let ksvc = fake.get(KSVC, "city-pole").unwrap();
    assert_eq!(
        ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"],
        "9"
    );
    let writes = fake.take_writes();
    assert!(
        writes.contains(&format!("PATCH {KSVC}/city-pole")),
        "{writes:?}"
    );
    assert!(
        !writes.iter().any(|w| w.contains("/bindings/")),
        "{writes:?}"
    );
}

#[tokio::test]
async fn a_removed_command_deletes_its_binding() {
    let fake = cluster();
    reconcile(&fake).await;
    fake.take_writes();
    fake.edit_interface(|o| o["spec"]["commands"] = json!([]));
    reconcile(&fake).await;
    let bindings = fake.names(BINDINGS);
    assert!(!bindings.contains(&"city-pole-reboot-command-dispatcher".to_owned()));
    assert_eq!(bindings.len(), 6, "{bindings:?}");
    let writes = fake.take_writes();
    assert!(
        writes.contains(&format!(
            "DELETE {BINDINGS}/city-pole-reboot-command-dispatcher"
        )),
        "{writes:?}"
    );
}

#[tokio::test]
async fn deletion_runs_the_finalizer() {
    let fake = cluster();
    reconcile(&fake).await;
    fake.edit_interface(|o| o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z"));
    assert_eq!(reconcile(&fake).await, Action::await_change());
    assert!(fake.names(KSVC).is_empty());
    assert!(fake.names(TRIGGERS).is_empty());
    assert!(fake.names(BINDINGS).is_empty());
    // The finalizer was the last one: the object is gone.
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
    reconcile(&fake).await;
    fake.remove(QUEUES, "t.city-pole");
    assert_eq!(reconcile(&fake).await, Action::requeue(DEPENDENCY_RETRY));
    assert_eq!(
        condition(&fake, "DependenciesReady")["reason"],
        "TriggerQueueMissing"
    );
    // Not pruned: the desired set is incomplete while the queue is missing.
    assert_eq!(fake.names(BINDINGS).len(), 7);
}

#[tokio::test]
async fn one_leader_at_a_time_until_its_lease_expires() {
    let fake = Fake::default();
    let lease = Duration::from_secs(15);
    let a = LeaderElector::new(fake.client(), NS, "ktwin-operator-leader", "a", lease);
    let b = LeaderElector::new(fake.client(), NS, "ktwin-operator-leader", "b", lease);
    assert!(a.try_acquire().await.unwrap());
    assert!(!b.try_acquire().await.unwrap());
    assert!(a.try_acquire().await.unwrap(), "the holder renews");
    let mut expired = fake.get(LEASES, "ktwin-operator-leader").unwrap();
    expired["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
    fake.put(LEASES, expired);
    assert!(
        b.try_acquire().await.unwrap(),
        "an expired lease is taken over"
    );
    assert!(!a.try_acquire().await.unwrap());
    let lease = fake.get(LEASES, "ktwin-operator-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ktwin/deployments";
const SERVICES: &str = "/api/v1/namespaces/ktwin/services";
const STATEFULSETS: &str = "/apis/apps/v1/namespaces/ktwin/statefulsets";

#[tokio::test]
async fn mqtt_trigger_and_event_store_reconcile_idempotently() {
    use ktwin_model::crd::{EventStore, MQTTTrigger};
    use ktwin_operator::controller::{reconcile_event_store, reconcile_mqtt_trigger};
    let fake = cluster();
    let ctx = Arc::new(Context::new(fake.client(), KtwinConfig::default()));
    let trigger = || -> Arc<MQTTTrigger> {
        Arc::new(serde_json::from_value(fake.get(MQTT_TRIGGERS, "mqtt").unwrap()).unwrap())
    };
    let store = || -> Arc<EventStore> {
        Arc::new(serde_json::from_value(fake.get(EVENT_STORES, "event-store").unwrap()).unwrap())
    };
    reconcile_mqtt_trigger(trigger(), ctx.clone())
        .await
        .unwrap();
    reconcile_event_store(store(), ctx.clone()).await.unwrap();
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
    assert_eq!(exchange.unwrap()["value"], "b.ktwin.ktwin.uid");
    let store_status = fake.get(EVENT_STORES, "event-store").unwrap()["status"].clone();
    assert_eq!(
        store_status["url"],
        "http://event-store.ktwin.svc.cluster.local"
    );
    fake.take_writes();
    reconcile_mqtt_trigger(trigger(), ctx.clone())
        .await
        .unwrap();
    reconcile_event_store(store(), ctx).await.unwrap();
    assert_eq!(fake.take_writes(), Vec::<String>::new());
}
