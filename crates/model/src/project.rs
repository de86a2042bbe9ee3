//! ktwin projects: a directory with DTDL models, service settings per interface and a world,
//! loaded into TwinInterfaces and TwinInstances (used by `ktwin plan` and `ktwin up`).
//!
//! The format is documented in `docs/project-format.md`; `examples/smart-city` is one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec};
use ktwin_dtdl::{Document, ParseOptions};
use serde::{Deserialize, Serialize};

use crate::compile::{FileError, NameOptions, compile_documents};
use crate::crd::{
    AutoScaling, TwinInstance, TwinInterface, TwinInterfaceEventStore, TwinInterfaceService,
};
use crate::graph::{InstanceGraph, InterfaceGraph};
use crate::world::{ExpandOptions, World, WorldError};

/// The `ktwin` subcommand serving a built-in handler (`ktwin service <handler>`).
pub const SERVICE_SUBCOMMAND: &str = "service";

/// Name of the project file inside a project directory.
pub const PROJECT_FILE: &str = "ktwin.yaml";

/// The project file, `ktwin.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectFile {
    /// Project name (a DNS-1035 label).
    pub name: String,
    /// Namespace of every resource.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// DTDL files or directories (searched recursively for `*.json`), relative to the project.
    #[serde(default = "default_models")]
    pub models: Vec<PathBuf>,
    /// Prefix removed from DTMIs before they become names, e.g. `dtmi:digitaltwins:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// Accept the short non-DTMI ids of the original KTWIN ontology (`city:Pole`).
    #[serde(default)]
    pub lenient_ids: bool,
    /// World file, relative to the project; no instances when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<PathBuf>,
    /// Image used by services that set neither `image` nor `command`; `{name}` is replaced by
    /// the interface name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_template: Option<String>,
    /// Settings every service starts from (a service's own settings override them field by field).
    #[serde(default)]
    pub defaults: ServiceSettings,
    /// Services by TwinInterface name. Interfaces not listed have no service.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSettings>,
}

fn default_namespace() -> String {
    "ktwin".into()
}

fn default_models() -> Vec<PathBuf> {
    vec![PathBuf::from("models")]
}

/// How the service of one interface runs, and what its events do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSettings {
    /// Container image (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Local command (argv) run by `ktwin up`, from the project directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// An SDK handler built into the `ktwin` binary (e.g. `smart-city/pole`) that `ktwin up`
    /// mounts in-process, with no child process and no HTTP hop; `command` is the fallback
    /// when the binary does not have it (or `ktwin up --processes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Autoscaling of the service (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling: Option<AutoScaling>,
    /// Persist every real event of the interface in the event store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_real_event: Option<bool>,
    /// Persist every virtual event of the interface in the event store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_virtual_event: Option<bool>,
    /// Relationships (declared by this interface) whose targets' events this service handles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregate_data: Vec<String>,
}

impl ServiceSettings {
    /// `self` with unset fields taken from `defaults`.
    pub fn or(&self, defaults: &ServiceSettings) -> ServiceSettings {
        let mut env = defaults.env.clone();
        env.extend(self.env.clone());
        ServiceSettings {
            image: self.image.clone().or_else(|| defaults.image.clone()),
            command: if self.command.is_empty() {
                defaults.command.clone()
            } else {
                self.command.clone()
            },
            handler: self.handler.clone().or_else(|| defaults.handler.clone()),
            env,
            auto_scaling: self
                .auto_scaling
                .clone()
                .or_else(|| defaults.auto_scaling.clone()),
            persist_real_event: self.persist_real_event.or(defaults.persist_real_event),
            persist_virtual_event: self
                .persist_virtual_event
                .or(defaults.persist_virtual_event),
            aggregate_data: if self.aggregate_data.is_empty() {
                defaults.aggregate_data.clone()
            } else {
                self.aggregate_data.clone()
            },
        }
    }
}

/// Why a project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// A file could not be read (the cause is the error's source, so a chain prints it once).
    #[error("cannot read {}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A field of the project or world file is wrong.
    #[error("{file}: {field}: {message}")]
    Field {
        /// The file holding the field.
        file: String,
        /// Path of the field, e.g. `instances[0].count`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// DTDL files that do not compile.
    #[error("{}", render_file_errors(.0))]
    Models(Vec<FileError>),
}

impl From<WorldError> for ProjectError {
    fn from(e: WorldError) -> Self {
        ProjectError::Field {
            file: e.file,
            field: e.field,
            message: e.message,
        }
    }
}

fn render_file_errors(errors: &[FileError]) -> String {
    let mut out = format!("{} DTDL file(s) do not compile:", errors.len());
    for e in errors {
        for m in &e.messages {
            out.push_str(&format!("\n{}: {m}", e.document));
        }
    }
    out
}

/// Options of [`Project::load_with`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// World parameter values (e.g. `neighborhoods=20`).
    pub parameters: BTreeMap<String, u64>,
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project directory.
    pub root: PathBuf,
    /// The project file (`ktwin.yaml`) as read.
    pub file: ProjectFile,
    /// TwinInterfaces sorted by name, with services, persistence and aggregation applied.
    pub interfaces: Vec<TwinInterface>,
    /// TwinInstances of the world, in expansion order.
    pub instances: Vec<TwinInstance>,
    /// Effective (defaults applied) service settings by interface name.
    pub services: BTreeMap<String, ServiceSettings>,
    /// Inheritance and relationship edges of `interfaces`.
    pub interface_graph: InterfaceGraph,
    /// Twins and their relationships, from `instances`.
    pub instance_graph: InstanceGraph,
}

impl Project {
    /// Loads the project in `dir` with the world's default parameters.
    pub fn load(dir: impl AsRef<Path>) -> Result<Project, ProjectError> {
        Self::load_with(dir, &LoadOptions::default())
    }

    /// Loads the project in `dir`.
    pub fn load_with(
        dir: impl AsRef<Path>,
        options: &LoadOptions,
    ) -> Result<Project, ProjectError> {
        let root = dir.as_ref().to_path_buf();
        let project_path = root.join(PROJECT_FILE);
        let project_name = project_path.display().to_string();
        let text = read(&project_path)?;
        let file: ProjectFile =
            serde_yaml_ng::from_str(&text).map_err(|e| yaml_error(&project_name, &e))?;
        let field = |field: &str, message: String| ProjectError::Field {
            file: project_name.clone(),
            field: field.to_owned(),
            message,
        };
        crate::names::validate_dns1035(&file.name).map_err(|e| field("name", e.to_string()))?;
        crate::names::validate_dns1035(&file.namespace)
            .map_err(|e| field("namespace", e.to_string()))?;

        let model_paths: Vec<PathBuf> = file.models.iter().map(|m| root.join(m)).collect();
        let documents = load_documents(&model_paths)?;
        if documents.is_empty() {
            return Err(field("models", "no DTDL (*.json) file found".into()));
        }
        let names = NameOptions {
            namespace: file.namespace.clone(),
            strip_prefix: file.strip_prefix.clone(),
        };
        let parse = ParseOptions {
            lenient_ids: file.lenient_ids,
            ..Default::default()
        };
        let compilation = compile_documents(&documents, &parse, &names);
        if !compilation.errors.is_empty() {
            return Err(ProjectError::Models(compilation.errors));
        }
        let mut interfaces: Vec<TwinInterface> =
            compilation.interfaces().into_iter().cloned().collect();

        let mut services = BTreeMap::new();
        for (iface_name, own) in &file.services {
            let settings = own.or(&file.defaults);
            let f = format!("services.{iface_name}");
            let Some(iface) = interfaces
                .iter_mut()
                .find(|i| i.metadata.name.as_deref() == Some(iface_name))
            else {
                return Err(field(
                    &f,
                    format!("no model defines the interface {iface_name:?}"),
                ));
            };
            apply_service(iface, &settings, file.image_template.as_deref())
                .map_err(|e| field(&f, e.to_string()))?;
            services.insert(iface_name.clone(), settings);
        }

        let interface_graph = InterfaceGraph::from_interfaces(&interfaces);
        if let Some(problem) = interface_graph.problems().into_iter().next() {
            return Err(field("models", problem.to_string()));
        }

        let instances = match &file.world {
            None => Vec::new(),
            Some(world_path) => {
                let path = root.join(world_path);
                let world_name = path.display().to_string();
                let world = World::from_yaml(&read(&path)?, &world_name)?;
                let expand = ExpandOptions {
                    file: world_name,
                    namespace: file.namespace.clone(),
                    parameters: options.parameters.clone(),
                    ..Default::default()
                };
                world.expand(&interface_graph, &expand)?
            }
        };
        let instance_graph = InstanceGraph::from_instances(&instances);
        Ok(Project {
            root,
            file,
            interfaces,
            instances,
            services,
            interface_graph,
            instance_graph,
        })
    }

    /// The interface named `name`.
    pub fn interface(&self, name: &str) -> Option<&TwinInterface> {
        self.interfaces
            .iter()
            .find(|i| i.metadata.name.as_deref() == Some(name))
    }
}

/// Why a service cannot be attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Nothing says what to run.
    #[error("a service needs an image, a command, a handler, or the project's imageTemplate")]
    NothingToRun,
    /// `aggregateData` names a relationship the interface does not declare.
    #[error(
        "aggregateData: {interface} declares no relationship {relationship:?} (it declares: {})",
        declared.join(", ")
    )]
    UnknownRelationship {
        /// The interface.
        interface: String,
        /// The relationship named.
        relationship: String,
        /// The relationships it declares.
        declared: Vec<String>,
    },
}

/// Attaches the service described by `settings` to the interface.
pub fn apply_service(
    iface: &mut TwinInterface,
    settings: &ServiceSettings,
    image_template: Option<&str>,
) -> Result<(), ServiceError> {
    let name = iface.metadata.name.clone().unwrap_or_default();
    let image = settings.image.clone().or_else(|| {
        settings
            .command
            .is_empty()
            .then(|| image_template.map(|t| t.replace("{name}", &name)))
            .flatten()
    });
    if image.is_none() && settings.command.is_empty() && settings.handler.is_none() {
        return Err(ServiceError::NothingToRun);
    }
    for rel in &settings.aggregate_data {
        let Some(own) = iface.spec.relationships.iter_mut().find(|r| &r.name == rel) else {
            return Err(ServiceError::UnknownRelationship {
                interface: name,
                relationship: rel.clone(),
                declared: iface
                    .spec
                    .relationships
                    .iter()
                    .map(|r| r.name.clone())
                    .collect(),
            });
        };
        own.aggregate_data = true;
    }
    let persist_real = settings.persist_real_event.unwrap_or(false);
    let persist_virtual = settings.persist_virtual_event.unwrap_or(false);
    iface.spec.event_store = (persist_real || persist_virtual).then_some(TwinInterfaceEventStore {
        persist_real_event: persist_real,
        persist_virtual_event: persist_virtual,
    });
    let env: Vec<EnvVar> = settings
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    // Without an image, a built-in handler runs from the platform's `ktwin` image, which the
    // planner fills in: `ktwin service <handler>` serves it over the Knative contract.
    let args = match (&image, &settings.handler) {
        (None, Some(handler)) => Some(vec![SERVICE_SUBCOMMAND.to_owned(), handler.clone()]),
        _ => None,
    };
    let container = Container {
        name: name.clone(),
        image,
        args,
        image_pull_policy: Some("IfNotPresent".into()),
        env: (!env.is_empty()).then_some(env),
        ..Default::default()
    };
    iface.spec.service = Some(TwinInterfaceService {
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![container],
                ..Default::default()
            }),
        },
        auto_scaling: settings.auto_scaling.clone(),
    });
    Ok(())
}

fn read(path: &Path) -> Result<String, ProjectError> {
    std::fs::read_to_string(path).map_err(|source| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn yaml_error(file: &str, e: &serde_yaml_ng::Error) -> ProjectError {
    ProjectError::Field {
        file: file.to_owned(),
        field: e.location().map_or_else(
            || "(document)".into(),
            |l| format!("line {} column {}", l.line(), l.column()),
        ),
        message: e.to_string(),
    }
}

/// Reads every `*.json` file under the paths (sorted, recursive); files are taken as given.
pub fn load_documents(paths: &[PathBuf]) -> Result<Vec<Document>, ProjectError> {
    ktwin_dtdl::load_documents(paths).map_err(|e| ProjectError::Io {
        path: e.path,
        source: e.source,
    })
}
