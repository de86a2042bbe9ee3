//! Applying the install bundle: CRDs first, then — once the API server serves them
//! (`Established`) — everything else, all by server-side apply under one field manager.

use std::fmt;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::Value;

/// Field manager of `ktwin install`.
pub const INSTALL_MANAGER: &str = "ktwin-install";
/// How long to wait for the API server to serve a new CRD.
pub const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the installation stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// An object's kind is not one the bundle contains.
    #[error("{api_version} {kind} is not a kind of the install bundle")]
    UnknownKind {
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
    },
    /// The API server refused or failed a request.
    #[error("{step}: {source}")]
    Api {
        /// The step.
        step: String,
        /// The API error.
        source: kube::Error,
    },
    /// A CRD was not served in time.
    #[error("CustomResourceDefinition {0} was not Established within {ESTABLISHED_TIMEOUT:?}")]
    NotEstablished(String),
}

/// One step of an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Server-side apply of an object.
    Apply {
        /// `Kind`.
        kind: String,
        /// `metadata.name`.
        name: String,
        /// `metadata.namespace`, for namespaced objects.
        namespace: Option<String>,
    },
    /// Wait until the CRD is served.
    WaitEstablished(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Apply {
                kind,
                name,
                namespace: Some(ns),
            } => write!(f, "apply {kind} {ns}/{name}"),
            Step::Apply { kind, name, .. } => write!(f, "apply {kind} {name}"),
            Step::WaitEstablished(name) => {
                write!(
                    f,
                    "wait for CustomResourceDefinition {name} to be Established"
                )
            }
        }
    }
}

fn is_crd(object: &Value) -> bool {
    object["kind"] == "CustomResourceDefinition"
}

fn apply_step(object: &Value) -> Step {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Step::Apply {
        kind: text(&object["kind"]),
        name: text(&object["metadata"]["name"]),
        namespace: object["metadata"]["namespace"].as_str().map(str::to_owned),
    }
}

/// The steps installing `objects`, in order: CRDs, a wait for each, then the rest in bundle
/// order (namespaces before what lives in them).
pub fn install_steps(objects: &[Value]) -> Vec<(Step, Option<&Value>)> {
    let crds: Vec<&Value> = objects.iter().filter(|o| is_crd(o)).collect();
    let mut steps: Vec<(Step, Option<&Value>)> =
        crds.iter().map(|o| (apply_step(o), Some(*o))).collect();
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        steps.push((Step::WaitEstablished(name.to_owned()), None));
    }
    steps.extend(
        objects
            .iter()
            .filter(|o| !is_crd(o))
            .map(|o| (apply_step(o), Some(o))),
    );
    steps
}

/// (plural, namespaced) of each kind the bundle holds.
fn resource_of(object: &Value) -> Result<(ApiResource, bool), InstallError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (plural, namespaced) = match kind {
        "Namespace" => ("namespaces", false),
        "CustomResourceDefinition" => ("customresourcedefinitions", false),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "ServiceAccount" => ("serviceaccounts", true),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "ConfigMap" => ("configmaps", true),
        "Service" => ("services", true),
        "Deployment" => ("deployments", true),
        "StatefulSet" => ("statefulsets", true),
        "EventStore" => ("eventstores", true),
        "MQTTTrigger" => ("mqtttriggers", true),
        "Gateway" => ("gateways", true),
        _ => {
            return Err(InstallError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
            });
        }
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Ok((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

async fn apply_object(
    client: &kube::Client,
    object: &Value,
    step: &Step,
) -> Result<(), InstallError> {
    let (resource, namespaced) = resource_of(object)?;
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) if namespaced => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(
        name,
        &PatchParams::apply(INSTALL_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| InstallError::Api {
        step: step.to_string(),
        source,
    })?;
    Ok(())
}

/// Applies `objects` in [`install_steps`] order, reporting each step before it runs.
pub async fn install(
    client: &kube::Client,
    objects: &[Value],
    mut progress: impl FnMut(&Step),
) -> Result<(), InstallError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (step, object) in install_steps(objects) {
        progress(&step);
        match (&step, object) {
            (Step::WaitEstablished(name), _) => {
                let established =
                    await_condition(crds.clone(), name, conditions::is_crd_established());
                match tokio::time::timeout(ESTABLISHED_TIMEOUT, established).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        return Err(InstallError::Api {
                            step: step.to_string(),
                            source: kube::Error::Service(Box::new(err)),
                        });
                    }
                    Err(_) => return Err(InstallError::NotEstablished(name.clone())),
                }
            }
            (Step::Apply { .. }, Some(object)) => apply_object(client, object, &step).await?,
            (Step::Apply { .. }, None) => {}
        }
    }
    Ok(())
}
