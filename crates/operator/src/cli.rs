//! `ktwin operator`, `ktwin plan` and `ktwin install` (built with the `cli` feature, which the
//! `ktwin` binary enables).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use ktwin_events::env;
use ktwin_planner::{KtwinConfig, routing_table};
use serde_json::Value;

use crate::install::apply::{install, install_steps};
use crate::install::chart::chart_files;
use crate::install::values::{DEFAULT_OPERATOR_NAMESPACE, InstallValues};
use crate::install::{install_bundle, to_yaml_stream};
use crate::manifests::load_project_with;
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
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = env::POD_NAMESPACE, default_value = DEFAULT_OPERATOR_NAMESPACE)]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = env::POD_NAME)]
    pub identity: Option<String>,
    /// The `ktwin` image components run from when the configuration names none.
    #[arg(long, env = env::IMAGE)]
    pub image: Option<String>,
    /// Platform configuration file (YAML or JSON KtwinConfig); defaults otherwise.
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
    /// World parameter of a project, e.g. `--set neighborhoods=20` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = ktwin_model::parse_parameter)]
    pub parameters: Vec<(String, u64)>,
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
    /// The project's ktwin resources (TwinInterfaces with their services, TwinInstances,
    /// Gateways), to `kubectl apply` on a cluster where ktwin is installed.
    Resources,
}

/// `ktwin install`: install ktwin on the current cluster.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Print the bundle instead of applying it.
    #[arg(long, conflicts_with_all = ["dry_run", "chart"])]
    pub render: bool,
    /// Print the steps (apply CRDs, wait for them, apply the rest) without contacting the cluster.
    #[arg(long, conflicts_with = "chart")]
    pub dry_run: bool,
    /// Write the Helm chart generated from the same code into this directory.
    #[arg(long, value_name = "DIR")]
    pub chart: Option<PathBuf>,
    /// Output format of `--render`.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Values file, the chart's `values.yaml` format (defaults otherwise).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub values: Option<PathBuf>,
    /// Namespace of the twin world (overrides the values).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Namespace of the operator.
    #[arg(long, default_value = DEFAULT_OPERATOR_NAMESPACE)]
    pub operator_namespace: String,
    /// The `ktwin` image as `repository:tag` (overrides the values).
    #[arg(long)]
    pub image: Option<String>,
    /// Keep the event store's events in PostgreSQL: the name of a Secret in the world's
    /// namespace whose `url` key holds the database URL (the store then scales); without it the
    /// store is embedded, one replica on a PersistentVolumeClaim.
    #[arg(long, value_name = "SECRET")]
    pub event_store_database_secret: Option<String>,
    /// Leave out the world's EventStore and MQTTTrigger.
    #[arg(long)]
    pub no_defaults: bool,
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
    let mut config = load_config(args.config.as_deref())?;
    if config.images.default.is_none() {
        config.images.default = args.image;
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or ~/.kube/config)")?;
    let identity = args
        .identity
        .unwrap_or_else(|| format!("ktwin-operator-{}", std::process::id()));
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
    let options = ktwin_model::project::LoadOptions {
        parameters: args.parameters.iter().cloned().collect(),
    };
    if args.show == Show::Resources {
        let input = load_project_with(
            &args.project_dir,
            args.namespace.as_deref(),
            false,
            &options,
        )?;
        return print_resources(&input, args.format);
    }
    let input = load_project_with(
        &args.project_dir,
        args.namespace.as_deref(),
        !args.no_defaults,
        &options,
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
        Show::Resources => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the ktwin resources of `input`, each in the world's namespace.
fn print_resources(input: &ktwin_planner::PlanInput, format: Format) -> anyhow::Result<ExitCode> {
    fn placed<K: kube::Resource + serde::Serialize>(
        object: &K,
        namespace: &str,
    ) -> anyhow::Result<Value> {
        let mut value = serde_json::to_value(object)?;
        value["metadata"]["namespace"] = Value::String(namespace.to_owned());
        if let Some(meta) = value["metadata"].as_object_mut() {
            meta.remove("uid");
            meta.remove("resourceVersion");
        }
        Ok(value)
    }
    let ns = input.namespace.as_str();
    let mut objects = Vec::new();
    for interface in &input.interfaces {
        objects.push(placed(interface, ns)?);
    }
    for instance in &input.instances {
        objects.push(placed(instance, ns)?);
    }
    for store in &input.event_stores {
        objects.push(placed(store, ns)?);
    }
    for trigger in &input.mqtt_triggers {
        objects.push(placed(trigger, ns)?);
    }
    for gateway in &input.gateways {
        objects.push(placed(gateway, ns)?);
    }
    print(&objects, format)?;
    Ok(ExitCode::SUCCESS)
}

/// The installation's values: the file, then the flags over it.
pub fn install_values(args: &InstallArgs) -> anyhow::Result<InstallValues> {
    let mut values = match &args.values {
        None => InstallValues::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading values {}", path.display()))?;
            serde_yaml_ng::from_str(&text)
                .with_context(|| format!("{}: not valid ktwin install values", path.display()))?
        }
    };
    if let Some(namespace) = &args.namespace {
        values.namespace = namespace.clone();
    }
    values.create_namespace &= values.namespace != args.operator_namespace;
    if let Some(image) = &args.image {
        let (repository, tag) = image
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .with_context(|| format!("--image {image:?}: expected repository:tag"))?;
        values.image.repository = repository.to_owned();
        values.image.tag = tag.to_owned();
    }
    if let Some(secret) = &args.event_store_database_secret {
        values.event_store.spec.database = Some(ktwin_model::crd::EventStoreDatabase {
            secret_key_ref: ktwin_model::crd::DatabaseSecretKey {
                name: secret.clone(),
                key: ktwin_model::crd::DEFAULT_DATABASE_KEY.to_owned(),
            },
        });
    }
    if args.no_defaults {
        values.event_store.enabled = false;
        values.mqtt_trigger.enabled = false;
    }
    Ok(values)
}

/// Runs `ktwin install`.
pub async fn run_install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.chart {
        for (path, text) in chart_files()? {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let values = install_values(&args)?;
    let objects = install_bundle(&values, &args.operator_namespace)?;
    if args.render {
        print(&objects, args.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        for (step, _) in install_steps(&objects) {
            println!("{step}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or ~/.kube/config)")?;
    install(&client, &objects, |step| eprintln!("{step}")).await?;
    eprintln!(
        "ktwin is installed: the operator runs in {}, the world in {}",
        args.operator_namespace, values.namespace
    );
    Ok(ExitCode::SUCCESS)
}
