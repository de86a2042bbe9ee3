//! Reading a world from disk for `ktwin plan` and the tests: a ktwin project (`ktwin.yaml`) or
//! a directory of ktwin manifests.

use std::path::{Path, PathBuf};

use ktwin_model::crd::{EventStore, Gateway, MQTTTrigger, TwinInstance, TwinInterface};
use ktwin_planner::PlanInput;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::install::values::InstallValues;

/// Why a world could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A file or directory could not be read.
    #[error("reading {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A document is not YAML.
    #[error("{}: document {document} is not YAML", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// 1-based document index.
        document: usize,
        /// The cause.
        source: serde_yaml_ng::Error,
    },
    /// A ktwin resource does not match its schema.
    #[error("{} (document {document}): invalid ktwin resource", path.display())]
    Resource {
        /// The file.
        path: PathBuf,
        /// 1-based document index.
        document: usize,
        /// The cause.
        source: serde_json::Error,
    },
    /// The project does not load.
    #[error("loading project {}", path.display())]
    Project {
        /// The project directory.
        path: PathBuf,
        /// The cause.
        source: ktwin_model::ProjectError,
    },
}

/// The plan input of a project directory: a ktwin project (`ktwin.yaml`: interfaces and
/// instances from its models and world) or plain manifests, plus any EventStore, MQTTTrigger and
/// Gateway manifests found in it; with `defaults`, the install bundle's EventStore and
/// MQTTTrigger stand in for absent ones, as they would on a cluster installed by
/// `ktwin install`.
pub fn load_project(
    dir: &Path,
    namespace: Option<&str>,
    defaults: bool,
) -> Result<PlanInput, ManifestError> {
    load_project_with(dir, namespace, defaults, &Default::default())
}

/// [`load_project`] with world parameters (e.g. `neighborhoods=20`).
pub fn load_project_with(
    dir: &Path,
    namespace: Option<&str>,
    defaults: bool,
    options: &ktwin_model::project::LoadOptions,
) -> Result<PlanInput, ManifestError> {
    let mut input = if dir.join(ktwin_model::project::PROJECT_FILE).is_file() {
        let project = ktwin_model::project::Project::load_with(dir, options).map_err(|source| {
            ManifestError::Project {
                path: dir.to_owned(),
                source,
            }
        })?;
        let namespace = namespace.unwrap_or(&project.file.namespace).to_owned();
        let manifests = load_manifests(dir, &namespace)?;
        PlanInput {
            namespace,
            interfaces: project.interfaces,
            instances: project.instances,
            event_stores: manifests.event_stores,
            mqtt_triggers: manifests.mqtt_triggers,
            gateways: manifests.gateways,
        }
    } else {
        load_manifests(dir, namespace.unwrap_or("ktwin"))?
    };
    if defaults {
        add_default_components(&mut input, &InstallValues::default());
    }
    Ok(input)
}

/// Adds the EventStore and MQTTTrigger an installation with `values` creates, where `input`
/// has none.
pub fn add_default_components(input: &mut PlanInput, values: &InstallValues) {
    let named = |name: &str| kube::api::ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(input.namespace.clone()),
        ..Default::default()
    };
    if input.event_stores.is_empty() && values.event_store.enabled {
        let mut store = EventStore::new(&values.event_store.name, values.event_store.spec.clone());
        store.metadata = named(&values.event_store.name);
        input.event_stores.push(store);
    }
    if input.mqtt_triggers.is_empty() && values.mqtt_trigger.enabled {
        let mut trigger =
            MQTTTrigger::new(&values.mqtt_trigger.name, values.mqtt_trigger.spec.clone());
        trigger.metadata = named(&values.mqtt_trigger.name);
        input.mqtt_triggers.push(trigger);
    }
}

/// Reads every ktwin custom resource in the YAML files under `dir` (recursively, sorted by
/// path); other kinds are skipped.
pub fn load_manifests(dir: &Path, namespace: &str) -> Result<PlanInput, ManifestError> {
    let mut files = Vec::new();
    collect_yaml(dir, &mut files)?;
    files.sort();
    let mut input = PlanInput {
        namespace: namespace.to_owned(),
        ..Default::default()
    };
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| ManifestError::Io {
            path: file.clone(),
            source,
        })?;
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value: Value = serde::Deserialize::deserialize(document).map_err(|source| {
                ManifestError::Yaml {
                    path: file.clone(),
                    document: index + 1,
                    source,
                }
            })?;
            add_resource(&mut input, value, &file, index + 1)?;
        }
    }
    Ok(input)
}

fn add_resource(
    input: &mut PlanInput,
    value: Value,
    path: &Path,
    document: usize,
) -> Result<(), ManifestError> {
    fn parse<T: DeserializeOwned>(
        value: Value,
        path: &Path,
        document: usize,
    ) -> Result<T, ManifestError> {
        serde_json::from_value(value).map_err(|source| ManifestError::Resource {
            path: path.to_owned(),
            document,
            source,
        })
    }
    match (value["apiVersion"].as_str(), value["kind"].as_str()) {
        (Some("dtd.ktwin/v0"), Some("TwinInterface")) => {
            input
                .interfaces
                .push(parse::<TwinInterface>(value, path, document)?)
        }
        (Some("dtd.ktwin/v0"), Some("TwinInstance")) => input
            .instances
            .push(parse::<TwinInstance>(value, path, document)?),
        (Some("core.ktwin/v0"), Some("EventStore")) => input
            .event_stores
            .push(parse::<EventStore>(value, path, document)?),
        (Some("core.ktwin/v0"), Some("MQTTTrigger")) => {
            input
                .mqtt_triggers
                .push(parse::<MQTTTrigger>(value, path, document)?)
        }
        (Some("core.ktwin/v0"), Some("Gateway")) => input
            .gateways
            .push(parse::<Gateway>(value, path, document)?),
        _ => {}
    }
    Ok(())
}

fn collect_yaml(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let io = |source| ManifestError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_yaml(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    Ok(())
}
