//! Status of the resources ktwin reconciles: what a reconcile learnt ([`Health`]) turned into
//! conditions, a phase and the next action. `Ready=True` means the children are applied and
//! their own controllers report them ready, not merely that ktwin wrote them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::controller::{ChildError, Error, SyncReport, is_subset};
use crate::kinds::ChildKind;
use crate::render::Missing;

/// How long to wait before looking again at a missing dependency or a child that is not ready
/// yet; watches on Brokers, Queues and the children normally wake the reconciler earlier.
pub const DEPENDENCY_RETRY: std::time::Duration = std::time::Duration::from_secs(60);
/// Periodic resync of a healthy object (children are also watched).
pub const RESYNC: std::time::Duration = std::time::Duration::from_secs(600);

/// What one reconcile found out about its children.
#[derive(Debug, Default)]
pub struct Health {
    /// Dependencies the cluster does not provide (yet), APIs not served included.
    pub missing: Vec<Missing>,
    /// Children that could not be written.
    pub failed: Vec<ChildError>,
    /// Children waiting for their deletion to complete before being created again.
    pub terminating: Vec<String>,
    /// Children applied but not ready, each with why.
    pub not_ready: Vec<String>,
    /// Why the resource itself cannot be reconciled (an invalid model): a terminal failure.
    pub invalid: Option<String>,
    /// For a TwinInterface: its schemas given as ids that name no TwinInterface of the
    /// namespace (`field = "id"`), reported in `SchemasResolved`. They do not keep it from
    /// being Ready: ktwin routes events whatever their schema.
    pub unresolved_schemas: Option<Vec<String>>,
}

impl Health {
    /// The health after rendering (`missing`) and syncing (`report`); the live children are
    /// checked with [`readiness`].
    pub fn of(missing: &[Missing], report: SyncReport) -> Self {
        let mut all = missing.to_vec();
        for api in report.missing_apis {
            if !all.contains(&api) {
                all.push(api);
            }
        }
        all.sort();
        let not_ready = report
            .live
            .iter()
            .filter_map(|((kind, name), live)| {
                let why = readiness(*kind, live).err()?;
                Some(format!("{}/{name}: {why}", kind.kind()))
            })
            .collect();
        Self {
            missing: all,
            failed: report.failed,
            terminating: report.terminating,
            not_ready,
            invalid: None,
            unresolved_schemas: None,
        }
    }

    /// A resource whose model cannot be planned: nothing is applied until it changes.
    pub fn invalid(error: &Error) -> Self {
        Self {
            invalid: Some(error.to_string()),
            ..Self::default()
        }
    }

    /// Whether every child is applied and ready.
    pub fn is_ready(&self) -> bool {
        self.missing.is_empty()
            && self.failed.is_empty()
            && self.terminating.is_empty()
            && self.not_ready.is_empty()
            && self.invalid.is_none()
    }

    /// `Failed` when retrying cannot help (an invalid model, a child refused by admission or
    /// held by another controller), `Running` when ready, `Unknown` when the API server failed,
    /// `Pending` otherwise.
    pub fn phase(&self) -> &'static str {
        if self.invalid.is_some() || self.failed.iter().any(ChildError::is_refusal) {
            "Failed"
        } else if !self.failed.is_empty() {
            "Unknown"
        } else if self.is_ready() {
            "Running"
        } else {
            "Pending"
        }
    }

    /// The conditions: `DependenciesReady`, `ChildrenApplied`, `ChildrenReady`, and `Ready`
    /// (True only when the three are; otherwise it repeats the first failing one's reason).
    pub fn conditions(&self, generation: Option<i64>) -> Vec<Condition> {
        let join = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join("; ");
        let dependencies = match self.missing.first() {
            None => (
                true,
                "DependenciesFound",
                "broker, exchange, queues and APIs exist".into(),
            ),
            Some(first) => (
                false,
                first.reason(),
                join(&mut self.missing.iter().map(Missing::message)),
            ),
        };
        let applied = if let Some(invalid) = &self.invalid {
            (false, "InvalidModel", invalid.clone())
        } else if !self.failed.is_empty() {
            (
                false,
                "ApplyFailed",
                join(&mut self.failed.iter().map(ToString::to_string)),
            )
        } else if !self.terminating.is_empty() {
            (
                false,
                "Recreating",
                format!(
                    "waiting for the deletion of {} to complete (an immutable field changed, or it was being deleted)",
                    self.terminating.join(", ")
                ),
            )
        } else {
            (true, "Applied", "every child is applied".into())
        };
        let ready = if self.not_ready.is_empty() {
            (true, "ChildrenReady", "every child reports ready".into())
        } else {
            (false, "ChildrenNotReady", self.not_ready.join("; "))
        };
        let overall = [&applied, &dependencies, &ready]
            .into_iter()
            .find(|(ok, _, _)| !ok)
            .map(|(_, reason, message)| (false, *reason, message.clone()))
            .unwrap_or((true, "Ready", "every child is applied and ready".into()));
        let schemas = self.unresolved_schemas.as_ref().map(|ids| match ids.as_slice() {
            [] => (
                true,
                "SchemasResolved",
                "every schema is a DTDL schema or names a TwinInterface of the namespace".into(),
            ),
            ids => (
                false,
                "UnresolvedSchema",
                format!(
                    "no TwinInterface of the namespace has the name or DTMI of {}; the schema is kept as written",
                    ids.join(", ")
                ),
            ),
        });
        [
            ("Ready", overall),
            ("DependenciesReady", dependencies),
            ("ChildrenApplied", applied),
            ("ChildrenReady", ready),
        ]
        .into_iter()
        .chain(schemas.map(|s| ("SchemasResolved", s)))
        .map(|(type_, (ok, reason, message))| condition(type_, ok, reason, message, generation))
        .collect()
    }

    /// What the controller does next: failed children are an error (so the error policy backs
    /// off); anything not ready yet is looked at again soon; a terminal failure waits for a
    /// change of the resource; a ready resource is resynced now and then.
    pub fn into_action(self) -> Result<Action, Error> {
        if !self.failed.is_empty() {
            Err(Error::Children(self.failed))
        } else if self.invalid.is_some() {
            Ok(Action::await_change())
        } else if self.is_ready() {
            Ok(Action::requeue(RESYNC))
        } else {
            Ok(Action::requeue(DEPENDENCY_RETRY))
        }
    }
}

/// Why a live child is not ready yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// Its controller reports a `Ready` condition other than `True`.
    #[error("Ready={status} ({reason}: {message})")]
    Condition {
        /// The condition's status (`False`, `Unknown`).
        status: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// Its controller has not reconciled its current generation.
    #[error("not reconciled by its controller yet")]
    NotReconciled,
    /// Fewer replicas are ready than wanted.
    #[error("{ready}/{wanted} replicas ready")]
    Replicas {
        /// Replicas ready.
        ready: i64,
        /// Replicas wanted.
        wanted: i64,
    },
}

/// Whether a live child is ready as its own controller reports it: a Knative Service or Trigger
/// by its `Ready` condition for its current generation, a Deployment or StatefulSet by its
/// ready replicas; other kinds are ready once they exist.
pub fn readiness(kind: ChildKind, live: &Value) -> Result<(), NotReady> {
    let generation = live["metadata"]["generation"].as_i64();
    let observed = live["status"]["observedGeneration"].as_i64();
    let current = generation.is_none_or(|g| observed.is_some_and(|o| o >= g));
    match kind {
        ChildKind::KService | ChildKind::Trigger => {
            let ready = live["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
            match ready {
                Some(c) if c["status"] == "True" && current => Ok(()),
                Some(c) if current => Err(NotReady::Condition {
                    status: c["status"].as_str().unwrap_or("Unknown").to_owned(),
                    reason: c["reason"].as_str().unwrap_or_default().to_owned(),
                    message: c["message"].as_str().unwrap_or_default().to_owned(),
                }),
                _ => Err(NotReady::NotReconciled),
            }
        }
        ChildKind::Deployment | ChildKind::StatefulSet => {
            let wanted = live["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = live["status"]["readyReplicas"].as_i64().unwrap_or(0);
            if current && ready >= wanted {
                Ok(())
            } else {
                Err(NotReady::Replicas { ready, wanted })
            }
        }
        ChildKind::Binding | ChildKind::Queue | ChildKind::Service => Ok(()),
    }
}

/// Writes `fields` plus phase, observedGeneration and conditions from `health` as the status of
/// `object`, unless it already says the same. Returns whether it wrote.
pub async fn write<K>(
    api: &Api<K>,
    object: &K,
    health: &Health,
    fields: Value,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let generation = object.meta().generation;
    let mut status = json!({
        "phase": health.phase(),
        "observedGeneration": generation,
        "conditions": health.conditions(generation),
    });
    if let (Some(status), Value::Object(fields)) = (status.as_object_mut(), fields) {
        status.extend(fields);
    }
    patch_if_changed(api, object, status).await
}

/// A condition of the current time.
pub fn condition(
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

/// Patches `status` unless the object's status already says the same (conditions compared
/// without their transition times, which are kept while a condition's status does not
/// change). Returns whether it wrote.
pub async fn patch_if_changed<K>(api: &Api<K>, object: &K, mut status: Value) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let current = serde_json::to_value(object)
        .map(|o| o["status"].clone())
        .unwrap_or(Value::Null);
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
    // A null or empty value clears the field (a merge patch deletes a null): unchanged when
    // the field is already absent or empty.
    let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    let unchanged = status.as_object().is_some_and(|fields| {
        fields.iter().all(|(k, v)| {
            if empty(v) {
                current.get(k).is_none_or(empty)
            } else {
                current.get(k).is_some_and(|c| is_subset(v, c))
            }
        })
    });
    if unchanged {
        return Ok(false);
    }
    let name = object.name_any();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map_err(|source| Error::Kube {
        action: format!("writing the status of {name}"),
        source,
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_name_the_first_missing_dependency() {
        let ok = Health::default().conditions(Some(3));
        assert!(
            ok.iter()
                .all(|c| c.status == "True" && c.observed_generation == Some(3))
        );
        let health = Health {
            missing: vec![
                Missing::Broker("ktwin".into()),
                Missing::TriggerQueue("city-pole".into()),
            ],
            ..Health::default()
        };
        let missing = health.conditions(None);
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
        let ready = missing.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "BrokerNotReady")
        );
        assert_eq!(health.phase(), "Pending");
    }

    #[test]
    fn a_knative_service_is_ready_only_for_its_current_generation() {
        let ready = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(readiness(ChildKind::KService, &ready), Ok(()));
        let stale = json!({"metadata": {"generation": 3}, "status": {"observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(readiness(ChildKind::KService, &stale).is_err());
        let failing = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "False", "reason": "RevisionFailed",
                            "message": "image pull"}]}});
        let why = readiness(ChildKind::KService, &failing)
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("RevisionFailed") && why.contains("image pull"),
            "{why}"
        );
        assert!(readiness(ChildKind::Trigger, &json!({"metadata": {}})).is_err());
        let deployment = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 1}});
        assert_eq!(
            readiness(ChildKind::Deployment, &deployment).map_err(|why| why.to_string()),
            Err("1/2 replicas ready".to_owned())
        );
    }
}
