//! A fake Kubernetes API server for the operator's tests, behind a real `kube::Client`, as
//! strict as a real cluster where ktwin depends on it:
//!
//! - admission: names, labels, required fields, immutable fields and value ranges of Knative,
//!   eventing-rabbitmq, the messaging topology operator and apps, with their status codes
//!   ([`admission`]);
//! - server-side apply: a field a manager applied before and no longer applies is removed;
//! - optimistic concurrency: a write carrying a stale `resourceVersion` is a 409 Conflict;
//! - `generation` bumps on spec changes, the `status` subresource is the only way to write
//!   status, finalizers hold a deleted object (with `deletionTimestamp`) until removed;
//! - APIs can be left unserved (a CRD not installed): every request to them is a 404;
//! - lists and watches across namespaces, so kube-runtime controllers run against it;
//! - the topology operator's finalizers on Bindings, Queues and Exchanges.
//!
//! - RBAC: only what the install bundle grants the operator ([`rbac`]); each call recorded.
//!
//! Other controllers (Knative, the topology operator) act only when a test calls them.

pub mod admission;
pub mod rbac;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use serde_json::{Value, json};
use tokio::sync::watch;

/// Where a request goes.
struct Target {
    /// Collection path, e.g. `/apis/rabbitmq.com/v1beta1/namespaces/ktwin/bindings`; for a
    /// request across namespaces, `/apis/rabbitmq.com/v1beta1/bindings`.
    collection: String,
    /// `/apis/<group>/<version>` or `/api/v1`.
    prefix: String,
    /// The plural.
    plural: String,
    /// Whether the request is for one namespace.
    namespaced: bool,
    /// `plural.group` (`plural` for the core group).
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    /// Whether objects stored under `collection` are in this request's scope.
    fn covers(&self, collection: &str) -> bool {
        if self.namespaced {
            return collection == self.collection;
        }
        collection
            .strip_prefix(&format!("{}/namespaces/", self.prefix))
            .and_then(|rest| rest.strip_suffix(&format!("/{}", self.plural)))
            .is_some_and(|namespace| !namespace.contains('/'))
    }
}

fn target_of(target: &Target) -> Target {
    Target {
        collection: target.collection.clone(),
        prefix: target.prefix.clone(),
        plural: target.plural.clone(),
        namespaced: target.namespaced,
        resource: target.resource.clone(),
        name: target.name.clone(),
        subresource: target.subresource.clone(),
    }
}

fn target(path: &str) -> Target {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let base = if segments[0] == "api" { 2 } else { 3 };
    let prefix = format!("/{}", segments[..base].join("/"));
    let namespaced = segments.get(base) == Some(&"namespaces");
    let at = if namespaced { base + 2 } else { base };
    let plural = segments[at].to_owned();
    let resource = if segments[0] == "api" {
        plural.clone()
    } else {
        format!("{plural}.{}", segments[1])
    };
    Target {
        collection: format!("/{}", segments[..=at].join("/")),
        prefix,
        plural,
        namespaced,
        resource,
        name: segments.get(at + 1).map(|s| s.to_string()),
        subresource: segments.get(at + 2).map(|s| s.to_string()),
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| decode(v))
    })
}

/// Equality terms of a label selector, and `metadata.name` of a field selector.
fn selected(object: &Value, query: &str) -> bool {
    let labels = query_param(query, "labelSelector").unwrap_or_default();
    let by_label = labels.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (key, value) = term.split_once('=').expect("equality selectors only");
        object["metadata"]["labels"][key] == value
    });
    let fields = query_param(query, "fieldSelector").unwrap_or_default();
    let by_field = fields.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (key, value) = term.split_once('=').expect("equality selectors only");
        assert_eq!(key, "metadata.name", "the fake selects fields by name only");
        object["metadata"]["name"] == value
    });
    by_label && by_field
}

/// RFC 7386 merge.
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

/// Server-side apply by one manager: fields it applied before and no longer applies are
/// removed, then what it applies is set (maps merged, lists replaced: ktwin owns its lists
/// whole).
fn apply(object: &mut Value, previous: Option<&Value>, applied: &Value) {
    if let (Some(Value::Object(previous)), Value::Object(applied), Value::Object(object)) =
        (previous, applied, &mut *object)
    {
        for (key, before) in previous {
            match applied.get(key) {
                None => {
                    object.remove(key);
                }
                Some(now) => {
                    if let Some(current) = object.get_mut(key) {
                        apply(current, Some(before), now);
                    }
                }
            }
        }
    }
    match (object, applied) {
        (Value::Object(o), Value::Object(a)) => {
            for (k, v) in a {
                let entry = o.entry(k.clone()).or_insert(Value::Null);
                if entry.is_object() && v.is_object() {
                    apply(entry, None, v);
                } else {
                    *entry = v.clone();
                }
            }
        }
        (o, a) => *o = a.clone(),
    }
}

/// The object without server-managed parts, to tell a spec change from a metadata one.
fn content(object: &Value) -> Value {
    let mut content = object.clone();
    if let Some(fields) = content.as_object_mut() {
        fields.remove("metadata");
        fields.remove("status");
    }
    content
}

#[derive(Default)]
struct State {
    /// Collection path → name → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// (collection, name) → field manager → the configuration it last applied.
    applied: BTreeMap<(String, String), BTreeMap<String, Value>>,
    /// `plural.group` of APIs the server does not serve.
    unserved: BTreeSet<String>,
    /// Every request that is not a read, as `METHOD path`.
    writes: Vec<String>,
    /// Every list (not a watch), as `path?query`.
    lists: Vec<String>,
    /// Every API call allowed, as RBAC names it.
    calls: BTreeSet<rbac::Call>,
    /// Every change, for watches: (resourceVersion, collection, ADDED/MODIFIED/DELETED, object).
    events: Vec<(u64, String, &'static str, Value)>,
    next_version: u64,
}

/// The fake API server.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    /// What RBAC allows: the install bundle's grants to the operator.
    granted: Arc<BTreeSet<rbac::Call>>,
    /// Counts changes, waking watches.
    changes: Arc<watch::Sender<u64>>,
}

impl Default for FakeApi {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            granted: Arc::new(rbac::granted_calls(&rbac::granted_rules())),
            changes: Arc::new(watch::channel(0).0),
        }
    }
}

type Answer = (StatusCode, Value);

fn answer(code: u16, value: Value) -> Answer {
    (
        StatusCode::from_u16(code).expect("a valid status code"),
        value,
    )
}

impl State {
    fn version(&mut self) -> String {
        self.next_version += 1;
        self.next_version.to_string()
    }

    /// Records a change of `object` for watches. A deletion gets a new resourceVersion, as on
    /// a real server (watches resume after the version they saw, so an event carrying an old
    /// one would be lost).
    fn emit(&mut self, collection: &str, type_: &'static str, object: &Value) {
        let mut object = object.clone();
        if type_ == "DELETED" {
            object["metadata"]["resourceVersion"] = json!(self.version());
        }
        let version = object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("a stored object has a resourceVersion");
        self.events
            .push((version, collection.to_owned(), type_, object));
    }

    /// Stores `object` as another controller would, recording the change.
    fn put_as_is(&mut self, collection: &str, mut object: Value) {
        let version = self.version();
        object["metadata"]["resourceVersion"] = json!(version);
        let name = object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        let objects = self.objects.entry(collection.into()).or_default();
        let type_ = if objects.contains_key(&name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        objects.insert(name, object.clone());
        self.emit(collection, type_, &object);
    }

    /// Stores `new` (built from the request) after admission, over `old` if any.
    fn store(&mut self, target: &Target, name: &str, mut new: Value, old: Option<Value>) -> Answer {
        let status_only = target.subresource.as_deref() == Some("status");
        match &old {
            Some(old) if status_only => {
                let status = new["status"].take();
                new = old.clone();
                new["status"] = status;
            }
            // The status subresource is the only way to write status.
            Some(old) => new["status"] = old["status"].clone(),
            None => {
                if let Some(fields) = new.as_object_mut() {
                    fields.remove("status");
                }
            }
        }
        if !status_only {
            admission::default(&target.resource, &mut new, old.is_none());
            let write = admission::Write {
                resource: &target.resource,
                new: &new,
                old: old.as_ref(),
            };
            if let Err((code, message)) = admission::admit(&write) {
                let reason = if code == 422 { "Invalid" } else { "BadRequest" };
                return answer(code, status(code, reason, &message));
            }
        }
        let version = self.version();
        let meta = &mut new["metadata"];
        meta["name"] = json!(name);
        meta["resourceVersion"] = json!(version);
        match &old {
            Some(old) => {
                for key in ["uid", "creationTimestamp", "deletionTimestamp"] {
                    if !old["metadata"][key].is_null() {
                        new["metadata"][key] = old["metadata"][key].clone();
                    }
                }
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = content(old) != content(&new);
                new["metadata"]["generation"] = json!(generation + i64::from(changed));
            }
            None => {
                meta["uid"] = json!(format!("uid-{name}-{version}"));
                meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                meta["generation"] = json!(1);
                if let Some(kind) = target.resource.strip_suffix(".rabbitmq.com") {
                    // The topology operator's finalizer (internal/controller/
                    // topology_controller.go), added as soon as it sees the object.
                    meta["finalizers"] =
                        json!([format!("deletion.finalizers.{kind}.rabbitmq.com")]);
                }
            }
        }
        let objects = self.objects.entry(target.collection.clone()).or_default();
        let released = new["metadata"]["deletionTimestamp"].is_string()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        if released {
            objects.remove(name);
            self.applied
                .remove(&(target.collection.clone(), name.to_owned()));
            self.emit(&target.collection, "DELETED", &new);
        } else {
            objects.insert(name.to_owned(), new.clone());
            let type_ = if old.is_some() { "MODIFIED" } else { "ADDED" };
            self.emit(&target.collection, type_, &new);
        }
        answer(if old.is_some() { 200 } else { 201 }, new)
    }

    fn handle(&mut self, parts: &http::request::Parts, body: Value) -> Answer {
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let method = parts.method.as_str().to_owned();
        let target = target(&path);
        if method != "GET" {
            self.writes.push(format!("{method} {path}"));
        } else if target.name.is_none() {
            self.lists.push(format!("{path}?{query}"));
        }
        if self.unserved.contains(&target.resource) {
            return answer(
                404,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            );
        }
        let existing = target.name.as_ref().and_then(|name| {
            self.objects
                .get(&target.collection)
                .and_then(|c| c.get(name))
                .cloned()
        });
        let not_found = || answer(404, status(404, "NotFound", "not found"));
        let stale = |old: &Option<Value>, body: &Value| {
            let sent = body["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            !sent.is_empty()
                && old
                    .as_ref()
                    .is_some_and(|o| o["metadata"]["resourceVersion"] != sent)
        };
        let conflict = || {
            answer(
                409,
                status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                ),
            )
        };
        match (method.as_str(), target.name.clone()) {
            ("GET", None) => {
                let version = self.version();
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(collection, _)| target.covers(collection))
                    .flat_map(|(_, c)| c.values())
                    .filter(|o| selected(o, &query))
                    .cloned()
                    .collect();
                answer(
                    200,
                    json!({"apiVersion": "v1", "kind": "List",
                           "metadata": {"resourceVersion": version}, "items": items}),
                )
            }
            ("GET", Some(_)) => existing.map_or_else(not_found, |o| answer(200, o)),
            ("POST", None) => {
                let name = match body["metadata"]["name"].as_str() {
                    Some(name) => name.to_owned(),
                    None => format!(
                        "{}{}",
                        body["metadata"]["generateName"]
                            .as_str()
                            .unwrap_or("generated-"),
                        self.next_version
                    ),
                };
                if self
                    .objects
                    .get(&target.collection)
                    .is_some_and(|c| c.contains_key(&name))
                {
                    return answer(409, status(409, "AlreadyExists", "already exists"));
                }
                self.store(&target, &name, body, None)
            }
            ("PUT", Some(name)) => {
                if existing.is_none() {
                    return not_found();
                }
                if stale(&existing, &body) {
                    return conflict();
                }
                self.store(&target, &name, body, existing)
            }
            ("PATCH", Some(name)) => self.patch(parts, &target, &name, body, existing, &query),
            ("DELETE", Some(name)) => {
                let Some(mut object) = existing else {
                    return not_found();
                };
                let held = object["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                let collection = self.objects.entry(target.collection.clone()).or_default();
                if held {
                    if object["metadata"]["deletionTimestamp"].is_null() {
                        object["metadata"]["deletionTimestamp"] = json!("2026-01-02T00:00:00Z");
                        self.next_version += 1;
                        object["metadata"]["resourceVersion"] =
                            json!(self.next_version.to_string());
                    }
                    collection.insert(name, object.clone());
                } else {
                    collection.remove(&name);
                    self.applied.remove(&(target.collection.clone(), name));
                }
                answer(200, object)
            }
            other => panic!("the fake does not serve {other:?} {path}"),
        }
    }

    fn patch(
        &mut self,
        parts: &http::request::Parts,
        target: &Target,
        name: &str,
        body: Value,
        existing: Option<Value>,
        query: &str,
    ) -> Answer {
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let sent = body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !sent.is_empty()
            && existing
                .as_ref()
                .is_some_and(|o| o["metadata"]["resourceVersion"] != sent)
        {
            return answer(409, status(409, "Conflict", "the object has been modified"));
        }
        if content_type.starts_with("application/apply-patch") {
            let manager = query_param(query, "fieldManager").expect("apply needs a field manager");
            let key = (target.collection.clone(), name.to_owned());
            let previous = self
                .applied
                .get(&key)
                .and_then(|m| m.get(&manager))
                .cloned();
            let mut object = existing.clone().unwrap_or_else(|| json!({}));
            apply(&mut object, previous.as_ref(), &body);
            let result = self.store(target, name, object, existing);
            if result.0.is_success() {
                self.applied.entry(key).or_default().insert(manager, body);
            }
            result
        } else if content_type.starts_with("application/merge-patch+json") {
            let Some(mut object) = existing.clone() else {
                return answer(404, status(404, "NotFound", "not found"));
            };
            let mut patch = body;
            if let Some(meta) = patch["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            merge(&mut object, &patch);
            self.store(target, name, object, existing)
        } else if content_type.starts_with("application/json-patch+json") {
            let Some(mut object) = existing.clone() else {
                return answer(404, status(404, "NotFound", "not found"));
            };
            if let Err(message) = json_patch_object(&mut object, body) {
                // apiserver's patch handler (endpoints/handlers/patch.go, applyJSPatch): a
                // patch that does not apply is 422 Invalid.
                return answer(422, status(422, "Invalid", &message));
            }
            // A resourceVersion the patch sets is a precondition, as in a merge patch.
            if object["metadata"]["resourceVersion"] != existing_version(existing.as_ref()) {
                return answer(409, status(409, "Conflict", "the object has been modified"));
            }
            self.store(target, name, object, existing)
        } else {
            panic!("the fake does not serve {content_type} patches");
        }
    }
}

fn existing_version(existing: Option<&Value>) -> Value {
    existing.map_or(Value::Null, |o| o["metadata"]["resourceVersion"].clone())
}

/// An RFC 6902 JSON patch as the API server applies it (evanphx/json-patch): the operations in
/// order, all or nothing. As there, a `test` of `null` passes on a path that does not exist
/// (kube's finalizer helper tests an absent `/metadata/finalizers` that way); a failed `test`,
/// like any operation that does not apply, refuses the whole patch.
fn json_patch_object(object: &mut Value, patch: Value) -> Result<(), String> {
    let operations: Vec<json_patch::PatchOperation> =
        serde_json::from_value(patch).map_err(|err| format!("invalid JSON patch: {err}"))?;
    let mut patched = object.clone();
    for operation in &operations {
        match operation {
            json_patch::PatchOperation::Test(test) if test.value.is_null() => {
                let found = patched.pointer(test.path.as_str());
                if found.is_some_and(|v| !v.is_null()) {
                    return Err(format!("testing value {} failed", test.path));
                }
            }
            operation => json_patch::patch(&mut patched, std::slice::from_ref(operation))
                .map_err(|err| format!("the JSON patch does not apply: {err}"))?,
        }
    }
    *object = patched;
    Ok(())
}

impl FakeApi {
    /// A `kube::Client` talking to this server; `namespace` is its default namespace.
    pub fn client(&self, namespace: &str) -> Client {
        let fake = self.clone();
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move {
                let (parts, body) = request.into_parts();
                let query = parts.uri.query().unwrap_or_default().to_owned();
                let call = rbac::call_of(&parts.method, parts.uri.path(), &query);
                let (code, body) = if !fake.granted.contains(&call) {
                    let (group, resource, verb) = &call;
                    let message = format!(
                        "forbidden: the operator may not {verb} {resource} in API group {group:?}"
                    );
                    let refusal = status(403, "Forbidden", &message);
                    (StatusCode::FORBIDDEN, Body::from(refusal.to_string()))
                } else if query_param(&query, "watch").as_deref() == Some("true") {
                    fake.state().calls.insert(call);
                    (StatusCode::OK, fake.watch(parts.uri.path(), &query))
                } else {
                    fake.state().calls.insert(call);
                    let bytes = body.collect().await.expect("a request body").to_bytes();
                    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let (code, value) = fake.state().handle(&parts, body);
                    fake.changed();
                    (code, Body::from(value.to_string()))
                };
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(body)
                    .expect("a response");
                Ok::<_, Infallible>(response)
            }
        });
        Client::new(service, namespace)
    }

    /// A watch: the changes after the requested resourceVersion in the request's scope, one
    /// JSON event per line, then each new one as it happens.
    fn watch(&self, path: &str, query: &str) -> Body {
        let target = target(path);
        let since: u64 = query_param(query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let query = query.to_owned();
        let changes = self.changes.subscribe();
        let stream = futures::stream::unfold(
            (self.clone(), changes, since),
            move |(fake, mut changes, mut since)| {
                let (target, query) = (target_of(&target), query.clone());
                async move {
                    loop {
                        let lines: String = {
                            let state = fake.state();
                            let batch: Vec<_> = state
                                .events
                                .iter()
                                .filter(|(v, c, _, o)| {
                                    *v > since && target.covers(c) && selected(o, &query)
                                })
                                .collect();
                            since = state.events.last().map_or(since, |(v, ..)| (*v).max(since));
                            batch
                                .iter()
                                .map(|(_, _, type_, object)| {
                                    format!("{}\n", json!({"type": type_, "object": object}))
                                })
                                .collect()
                        };
                        if !lines.is_empty() {
                            let chunk = bytes::Bytes::from(lines);
                            return Some((Ok::<_, Infallible>(chunk), (fake, changes, since)));
                        }
                        changes.changed().await.ok()?;
                    }
                }
            },
        );
        Body::from_stream(stream)
    }

    /// Wakes the watches after a change.
    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the fake's lock")
    }

    /// Stores `object` as is (what another controller or an earlier install left).
    pub fn put(&self, collection: &str, object: Value) {
        self.state().put_as_is(collection, object);
        self.changed();
    }

    /// The stored object.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state().objects.get(collection)?.get(name).cloned()
    }

    /// Every stored object of `collection`.
    pub fn all(&self, collection: &str) -> Vec<Value> {
        self.state()
            .objects
            .get(collection)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Names in `collection`, terminating objects included.
    pub fn names(&self, collection: &str) -> Vec<String> {
        self.state()
            .objects
            .get(collection)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes an object at once, whatever its finalizers.
    pub fn remove(&self, collection: &str, name: &str) {
        let mut state = self.state();
        if let Some(object) = state
            .objects
            .get_mut(collection)
            .and_then(|m| m.remove(name))
        {
            state.emit(collection, "DELETED", &object);
        }
        drop(state);
        self.changed();
    }

    /// Changes a stored object as a user's update would: `generation` follows spec changes.
    pub fn edit(&self, collection: &str, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut state = self.state();
        let mut object = state
            .objects
            .get(collection)
            .and_then(|c| c.get(name))
            .cloned()
            .expect("the object to edit");
        let before = content(&object);
        edit(&mut object);
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
        let changed = before != content(&object);
        object["metadata"]["generation"] = json!(generation + i64::from(changed));
        state.put_as_is(collection, object);
        drop(state);
        self.changed();
    }

    /// Stops serving `resource` (`plural.group`), as when its CRD is not installed.
    pub fn unserve(&self, resource: &str) {
        self.state().unserved.insert(resource.into());
    }

    /// Every API call the operator made (and RBAC allowed) so far.
    pub fn calls(&self) -> BTreeSet<rbac::Call> {
        self.state().calls.clone()
    }

    /// Requests that were not reads since the last call.
    pub fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut self.state().writes)
    }

    /// Lists (not watches) since the last call, as `path?query`.
    pub fn take_lists(&self) -> Vec<String> {
        std::mem::take(&mut self.state().lists)
    }

    /// What the topology operator does with objects being deleted: it deletes them on the
    /// RabbitMQ server and removes its finalizer, so they go.
    pub fn run_topology_operator(&self) {
        let mut state = self.state();
        let gone: Vec<(String, Value)> = state
            .objects
            .iter()
            .filter(|(collection, _)| collection.contains("/rabbitmq.com/"))
            .flat_map(|(collection, objects)| {
                objects
                    .values()
                    .filter(|o| o["metadata"]["deletionTimestamp"].is_string())
                    .map(|o| (collection.clone(), o.clone()))
            })
            .collect();
        for (collection, object) in gone {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            state.objects.get_mut(&collection).map(|c| c.remove(name));
            state.emit(&collection, "DELETED", &object);
        }
        drop(state);
        self.changed();
    }

    /// What Knative and the Kubernetes controllers do: every Knative Service and Trigger
    /// becomes Ready for its generation (a Service with its URL), every Deployment and
    /// StatefulSet gets all its replicas ready.
    pub fn run_controllers(&self) {
        let mut state = self.state();
        let mut updated = Vec::new();
        for (collection, objects) in &state.objects {
            let knative =
                collection.contains("/serving.knative.dev/") || collection.contains("/triggers");
            let apps = collection.starts_with("/apis/apps/");
            for object in objects.values() {
                let mut object = object.clone();
                let generation = object["metadata"]["generation"].clone();
                if knative {
                    object["status"]["observedGeneration"] = generation;
                    object["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
                    if collection.contains("/serving.knative.dev/") {
                        let url = format!(
                            "http://{}.{}.svc.cluster.local",
                            object["metadata"]["name"].as_str().unwrap_or_default(),
                            object["metadata"]["namespace"].as_str().unwrap_or_default()
                        );
                        object["status"]["url"] = json!(url);
                    }
                } else if apps {
                    object["status"]["observedGeneration"] = generation;
                    object["status"]["readyReplicas"] = object["spec"]["replicas"].clone();
                } else {
                    continue;
                }
                if objects.get(object["metadata"]["name"].as_str().unwrap_or_default())
                    != Some(&object)
                {
                    updated.push((collection.clone(), object));
                }
            }
        }
        for (collection, object) in updated {
            state.put_as_is(&collection, object);
        }
        drop(state);
        self.changed();
    }
}
