//! `ktwin operator`, `ktwin plan` and `ktwin install`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use ktwin_model::crd::{EventStore, Gateway, MQTTTrigger, TwinInstance, TwinInterface};
use ktwin_planner::{KtwinConfig, PlanInput, routing_table};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::bundle::{InstallOptions, install_bundle, to_yaml_stream};
use crate::render::{Discovered, render_plan};

/// Output format of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A multi-document YAML stream.
    Yaml,
    /// A JSON array (or object).
    Json,
}

/// `ktwin operator`: run the controllers against the current cluster.
#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    /// Address serving /health, /ready and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Hold a Lease before reconciling, so only one replica acts.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "ktwin-system")]
    pub lease_namespace: String,
    /// Platform configuration file (YAML KtwinConfig); defaults otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `ktwin plan`: print offline what the operator would apply for a project.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// A ktwin project (a directory with `ktwin.yaml`), or a directory of ktwin manifests
    /// (TwinInterface, TwinInstance, EventStore, MQTTTrigger, Gateway YAML, searched
    /// recursively). EventStore, MQTTTrigger and Gateway manifests are read in both cases.
    pub project_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// What to print: Kubernetes objects, the realizer-independent plan, or its routing table.
    #[arg(long, value_enum, default_value = "objects")]
    pub show: Show,
    /// Namespace of the world (default: the project's, else `ktwin`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Platform configuration file (YAML KtwinConfig).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Do not assume the install bundle's default EventStore and MQTTTrigger when the project
    /// declares none.
    #[arg(long)]
    pub no_defaults: bool,
}

/// What `ktwin plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Show {
    /// The Kubernetes objects (cluster-provided values as `${...}` placeholders).
    Objects,
    /// The abstract plan.
    Plan,
    /// Event type → subscribers.
    Routes,
}

/// `ktwin install`: the install bundle.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Print the bundle instead of applying it (pipe into `kubectl apply --server-side -f -`).
    #[arg(long)]
    pub render: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Namespace of the twin world.
    #[arg(long, default_value = "ktwin")]
    pub namespace: String,
    /// Namespace of the operator.
    #[arg(long, default_value = "ktwin-system")]
    pub operator_namespace: String,
    /// Leave out the default EventStore and MQTTTrigger.
    #[arg(long)]
    pub no_defaults: bool,
    /// Platform configuration file (YAML KtwinConfig).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn load_config(path: Option<&Path>) -> anyhow::Result<KtwinConfig> {
    match path {
        None => Ok(KtwinConfig::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading configuration {}", path.display()))?;
            serde_yaml_ng::from_str(&text)
                .with_context(|| format!("{}: not a valid KtwinConfig", path.display()))
        }
    }
}

fn print(values: &[Value], format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Yaml => to_yaml_stream(values)?,
        Format::Json => serde_json::to_string_pretty(values)? + "\n",
    };
    print!("{text}");
    Ok(())
}

fn print_one<T: serde::Serialize>(value: &T, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Yaml => serde_yaml_ng::to_string(value)?,
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
    };
    print!("{text}");
    Ok(())
}

/// Runs `ktwin operator`.
pub async fn run_operator(args: OperatorArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or ~/.kube/config)")?;
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("ktwin-operator-{}", std::process::id()));
    crate::run(
        client,
        crate::OperatorOptions {
            config,
            listen: args.listen,
            leader_elect: args.leader_elect,
            lease_namespace: args.lease_namespace,
            identity,
        },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `ktwin plan`.
pub async fn run_plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let input = load_project(
        &args.project_dir,
        args.namespace.as_deref(),
        !args.no_defaults,
    )?;
    let plan = ktwin_planner::plan(&input, &config)?;
    for diagnostic in &plan.diagnostics {
        eprintln!("note: {}: {}", diagnostic.object, diagnostic.message);
    }
    match args.show {
        Show::Objects => {
            let rendered = render_plan(&plan, &config, &Discovered::placeholders(&plan));
            let objects: Vec<Value> = rendered.objects.into_iter().map(|d| d.object).collect();
            print(&objects, args.format)?;
        }
        Show::Plan => print_one(&plan, args.format)?,
        Show::Routes => print_one(&routing_table(&plan), args.format)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `ktwin install`.
pub async fn run_install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    if !args.render {
        bail!(
            "only `ktwin install --render` is supported: pipe it into `kubectl apply --server-side -f -` (or use the Helm chart in deploy/helm/ktwin)"
        );
    }
    let config = load_config(args.config.as_deref())?;
    let options = InstallOptions {
        operator_namespace: args.operator_namespace,
        namespace: args.namespace,
        defaults: !args.no_defaults,
    };
    print(&install_bundle(&config, &options), args.format)?;
    Ok(ExitCode::SUCCESS)
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
) -> anyhow::Result<PlanInput> {
    let mut input = if dir.join(ktwin_model::project::PROJECT_FILE).is_file() {
        let project = ktwin_model::project::Project::load(dir)
            .with_context(|| format!("loading project {}", dir.display()))?;
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
    if defaults && input.event_stores.is_empty() {
        input
            .event_stores
            .push(crate::bundle::default_event_store(&input.namespace));
    }
    if defaults && input.mqtt_triggers.is_empty() {
        input
            .mqtt_triggers
            .push(crate::bundle::default_mqtt_trigger(&input.namespace));
    }
    Ok(input)
}

/// Reads every ktwin custom resource in the YAML files under `dir` (recursively, sorted by
/// path); other kinds are skipped.
pub fn load_manifests(dir: &Path, namespace: &str) -> anyhow::Result<PlanInput> {
    let mut files = Vec::new();
    collect_yaml(dir, &mut files)
        .with_context(|| format!("reading project directory {}", dir.display()))?;
    files.sort();
    let mut input = PlanInput {
        namespace: namespace.to_owned(),
        ..Default::default()
    };
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value: Value = serde::Deserialize::deserialize(document).with_context(|| {
                format!("{}: document {} is not YAML", file.display(), index + 1)
            })?;
            if value.is_null() {
                continue;
            }
            let at = || format!("{} (document {})", file.display(), index + 1);
            match (value["apiVersion"].as_str(), value["kind"].as_str()) {
                (Some("dtd.ktwin/v0"), Some("TwinInterface")) => {
                    input.interfaces.push(parse::<TwinInterface>(value, &at())?)
                }
                (Some("dtd.ktwin/v0"), Some("TwinInstance")) => {
                    input.instances.push(parse::<TwinInstance>(value, &at())?)
                }
                (Some("core.ktwin/v0"), Some("EventStore")) => {
                    input.event_stores.push(parse::<EventStore>(value, &at())?)
                }
                (Some("core.ktwin/v0"), Some("MQTTTrigger")) => {
                    input
                        .mqtt_triggers
                        .push(parse::<MQTTTrigger>(value, &at())?)
                }
                (Some("core.ktwin/v0"), Some("Gateway")) => {
                    input.gateways.push(parse::<Gateway>(value, &at())?)
                }
                _ => {}
            }
        }
    }
    Ok(input)
}

fn parse<T: DeserializeOwned>(value: Value, at: &str) -> anyhow::Result<T> {
    serde_json::from_value(value).with_context(|| format!("{at}: invalid ktwin resource"))
}

fn collect_yaml(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    Ok(())
}
