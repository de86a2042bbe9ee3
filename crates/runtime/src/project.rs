//! A project as `ktwin up` runs it: loaded, planned with the one event store and MQTT trigger
//! the local platform provides, and each service's way of running (in-process handler or
//! child processes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ktwin_events::DeviceBindings;
use ktwin_model::crd::{EventStore, MQTTTrigger};
use ktwin_model::project::{LoadOptions, Project};
use ktwin_planner::{KtwinConfig, Plan, PlanInput};
use ktwin_sdk::TwinHandler;

use crate::autoscale::ScalePolicy;
use crate::error::UpError;
use crate::process::ServiceCommand;
use crate::routes::LocalRoutes;

/// Name of the EventStore the local platform provides.
pub const LOCAL_EVENT_STORE: &str = "ktwin-event-store";
/// Name of the MQTTTrigger the local platform provides.
pub const LOCAL_MQTT_TRIGGER: &str = "ktwin-mqtt";

/// A project loaded and planned, ready to run or to report on (`--check`).
#[derive(Debug, Clone)]
pub struct PlannedProject {
    /// The loaded project.
    pub project: Project,
    /// Its plan, with the local event store and dispatchers.
    pub plan: Plan,
    /// The plan's routing as local broker subscriptions.
    pub routes: LocalRoutes,
}

impl PlannedProject {
    /// Loads `dir` with world `parameters` (e.g. `neighborhoods=1`) and plans it with one
    /// event store and one pair of dispatchers, as the local platform has.
    pub fn load(dir: &Path, parameters: &BTreeMap<String, u64>) -> Result<Self, UpError> {
        let project = Project::load_with(
            dir,
            &LoadOptions {
                parameters: parameters.clone(),
            },
        )
        .map_err(|source| UpError::Project {
            dir: dir.to_owned(),
            source,
        })?;
        let plan = ktwin_planner::plan(&plan_input(&project)?, &KtwinConfig::default()).map_err(
            |source| UpError::Plan {
                dir: dir.to_owned(),
                source: Box::new(source),
            },
        )?;
        let routes = LocalRoutes::realize(&plan);
        Ok(Self {
            project,
            plan,
            routes,
        })
    }

    /// The device topics the project's interfaces declare with the DTDL MQTT extension.
    pub fn device_bindings(&self) -> DeviceBindings {
        let declared = self
            .plan
            .dispatchers
            .iter()
            .flat_map(|d| d.device_bindings.clone())
            .collect();
        DeviceBindings::new(declared)
            .expect("the planner refuses the bindings DeviceBindings refuses")
    }

    /// The local command of `interface`'s service, if the project gives one.
    pub fn command(&self, interface: &str) -> Option<ServiceCommand> {
        let settings = self.project.services.get(interface)?;
        let (program, args) = settings.command.split_first()?;
        let program = if program.contains('/') {
            self.project.root.join(program)
        } else {
            PathBuf::from(program)
        };
        let mut command = ServiceCommand::new(program)
            .args(args.iter().cloned())
            .cwd(&self.project.root);
        for (name, value) in &settings.env {
            command = command.env(name, value);
        }
        Some(command)
    }

    /// The twin graph as the graph API serves it (`{"twinInstances":[…]}`).
    pub fn graph_json(&self) -> String {
        // A graph is strings, lists and maps: serialising it cannot fail.
        serde_json::to_string(&self.project.instance_graph.to_json()).unwrap_or_default()
    }

    /// How `ktwin up` runs `interface`'s service, given the `handlers` built into this binary:
    /// the project's `handler` in-process when available (unless `processes`), else its
    /// `command` as child processes.
    pub fn runner(&self, interface: &str, handlers: &Handlers, processes: bool) -> Runner {
        let settings = self.project.services.get(interface);
        let wanted = settings.and_then(|s| s.handler.as_deref());
        if let Some((name, handler)) = wanted
            .filter(|_| !processes)
            .and_then(|name| Some((name, handlers.get(name)?)))
        {
            return Runner::InProcess {
                handler_name: name.to_owned(),
                handler: handler.clone(),
            };
        }
        match self.command(interface) {
            Some(command) => Runner::Process(command),
            None => Runner::Missing(match wanted {
                Some(name) if processes => format!(
                    "--processes runs services as their `command`, and it has none (handler {name:?})"
                ),
                Some(name) => format!(
                    "this ktwin binary has no handler {name:?} (it has: {}) and the service has no `command`",
                    handler_list(handlers)
                ),
                None => format!(
                    "no `handler` or `command` in {}: it will not run locally",
                    ktwin_model::project::PROJECT_FILE
                ),
            }),
        }
    }

    /// What `--check` reports: one line per finding.
    pub fn check_report(&self, handlers: &Handlers, processes: bool) -> Vec<String> {
        let mut lines = vec![format!(
            "project {:?}: {} interfaces, {} instances, {} services, {} routes, {} subscriptions",
            self.project.file.name,
            self.project.interfaces.len(),
            self.project.instances.len(),
            self.plan.services().count(),
            self.plan.routes().count(),
            self.routes.subscriptions.len(),
        )];
        for service in self.plan.services() {
            let name = &service.interface;
            match self.runner(name, handlers, processes) {
                Runner::InProcess { handler_name, .. } => {
                    lines.push(format!("service {name}: in-process handler {handler_name}"));
                }
                Runner::Process(command) => {
                    lines.push(format!("service {name}: `{}`", command.display()));
                }
                Runner::Missing(reason) => lines.push(format!("warning: service {name}: {reason}")),
            }
            if let Some(note) = ScalePolicy::metric_note(&service.autoscaling) {
                lines.push(format!("warning: service {name}: {note}"));
            }
        }
        for diagnostic in &self.plan.diagnostics {
            lines.push(format!(
                "note: {}: {}",
                diagnostic.object, diagnostic.message
            ));
        }
        for problem in self
            .project
            .instance_graph
            .problems(&self.project.interface_graph)
        {
            lines.push(format!("warning: {problem}"));
        }
        lines
    }
}

/// SDK handlers built into a binary, by the name a project's `handler` setting uses.
pub type Handlers = BTreeMap<String, Arc<dyn TwinHandler>>;

fn handler_list(handlers: &Handlers) -> String {
    if handlers.is_empty() {
        "none".to_owned()
    } else {
        handlers.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// How one twin service runs locally.
pub enum Runner {
    /// An SDK handler mounted in the platform's process.
    InProcess {
        /// The handler's registered name.
        handler_name: String,
        /// The handler.
        handler: Arc<dyn TwinHandler>,
    },
    /// Child processes of this command, autoscaled.
    Process(ServiceCommand),
    /// Neither: why.
    Missing(String),
}

/// The planner's input for a project run locally: its interfaces and instances, plus the one
/// event store and MQTT trigger `ktwin up` always provides.
pub fn plan_input(project: &Project) -> Result<PlanInput, UpError> {
    let namespace = &project.file.namespace;
    let event_store: EventStore = local_resource(namespace, "EventStore", LOCAL_EVENT_STORE)?;
    let mqtt_trigger: MQTTTrigger = local_resource(namespace, "MQTTTrigger", LOCAL_MQTT_TRIGGER)?;
    Ok(PlanInput {
        namespace: namespace.clone(),
        interfaces: project.interfaces.clone(),
        instances: project.instances.clone(),
        event_stores: vec![event_store],
        mqtt_triggers: vec![mqtt_trigger],
        gateways: Vec::new(),
    })
}

/// A `core.ktwin/v0` resource of `kind` named `name` with an empty spec.
fn local_resource<T: serde::de::DeserializeOwned>(
    namespace: &str,
    kind: &'static str,
    name: &str,
) -> Result<T, UpError> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "core.ktwin/v0",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {},
    }))
    .map_err(|source| UpError::LocalResource { kind, source })
}
