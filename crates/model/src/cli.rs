//! `ktwin crds`, `ktwin compile` and `ktwin instances`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ktwin_dtdl::ParseOptions;

use crate::compile::{NameOptions, compile_documents};
use crate::crd::TwinInstance;
use crate::graph::{InstanceGraph, InterfaceGraph};
use crate::output::{crd_files, to_yaml_stream, write_file};
use crate::project::{ServiceSettings, apply_service, load_documents};
use crate::world::{ExpandOptions, World};

/// `ktwin crds`: print (or write) the CRDs of every ktwin resource.
#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write one `<group>_<plural>.yaml` per CRD into this directory instead of printing them.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `ktwin compile`: DTDL → TwinInterface YAML.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// DTDL files or directories (searched recursively for *.json).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output directory; the input layout is mirrored, one `<file>.yaml` per DTDL file.
    /// Without it the interfaces are printed.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Namespace of the TwinInterfaces.
    #[arg(long, default_value = "ktwin")]
    pub namespace: String,
    /// Prefix removed from DTMIs before they become names.
    #[arg(long, value_name = "PREFIX")]
    pub strip_prefix: Option<String>,
    /// Give every interface a service with this image (`{name}` = interface name), e.g.
    /// `ghcr.io/open-digital-twin/ktwin-{name}-service:0.1`.
    #[arg(long, value_name = "TEMPLATE")]
    pub image_template: Option<String>,
    /// Service settings (project format) applied to every interface that gets a service.
    #[arg(long, value_name = "FILE")]
    pub defaults: Option<PathBuf>,
    /// Write nothing if any file fails.
    #[arg(long)]
    pub strict: bool,
    /// Accept the short non-DTMI ids of the original KTWIN ontology (`city:Pole`).
    #[arg(long)]
    pub lenient_ids: bool,
}

/// Output format of `ktwin instances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InstancesFormat {
    /// TwinInstance resources, one file per interface.
    Yaml,
    /// The graph API document `{"twinInstances":[…]}`.
    Json,
}

/// `ktwin instances`: expand a world into TwinInstances.
#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// The world file.
    #[arg(long)]
    pub world: PathBuf,
    /// DTDL files or directories of the interfaces the world uses.
    #[arg(long, required = true, num_args = 1..)]
    pub models: Vec<PathBuf>,
    /// Output directory (`<interface>.yaml` files, or `twin-graph.json`); prints when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Output format (default `yaml`).
    #[arg(long, value_enum, default_value_t = InstancesFormat::Yaml)]
    pub format: InstancesFormat,
    /// World parameter, e.g. `--set neighborhoods=20` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = crate::parse_parameter)]
    pub parameters: Vec<(String, u64)>,
    /// Namespace of the TwinInstances (default `ktwin`).
    #[arg(long, default_value = "ktwin")]
    pub namespace: String,
    /// Prefix removed from DTMIs before they become names.
    #[arg(long, value_name = "PREFIX", default_value = "dtmi:digitaltwins:")]
    pub strip_prefix: String,
    /// Accept the short non-DTMI ids of the original KTWIN ontology.
    #[arg(long)]
    pub lenient_ids: bool,
}

/// Runs `ktwin crds`.
pub async fn run_crds(args: CrdsArgs) -> anyhow::Result<ExitCode> {
    let files = crd_files()?;
    match &args.out {
        Some(dir) => {
            for (name, yaml) in &files {
                write_file(&dir.join(name), yaml)?;
            }
            eprintln!("wrote {} CRDs to {}", files.len(), dir.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            for (_, yaml) in &files {
                write!(out, "---\n{yaml}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `ktwin compile`.
pub async fn run_compile(args: CompileArgs) -> anyhow::Result<ExitCode> {
    let defaults = match &args.defaults {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            serde_yaml_ng::from_str::<ServiceSettings>(&text).with_context(|| {
                format!(
                    "{}: expected service settings (docs/project-format.md)",
                    path.display()
                )
            })?
        }
        None => ServiceSettings::default(),
    };
    let with_service =
        args.image_template.is_some() || defaults.image.is_some() || !defaults.command.is_empty();
    let documents = load_documents(&args.paths)?;
    if documents.is_empty() {
        bail!("no DTDL (*.json) file under {}", display_paths(&args.paths));
    }
    let names = NameOptions {
        namespace: args.namespace.clone(),
        strip_prefix: args.strip_prefix.clone(),
    };
    let parse = ParseOptions {
        lenient_ids: args.lenient_ids,
        ..Default::default()
    };
    let mut compilation = compile_documents(&documents, &parse, &names);
    for warning in &compilation.warnings {
        eprintln!("{warning}");
    }
    for failure in &compilation.errors {
        for message in &failure.messages {
            eprintln!("error: {}: {message}", failure.document);
        }
    }
    if args.strict && !compilation.errors.is_empty() {
        eprintln!(
            "{} file(s) failed; nothing written (--strict)",
            compilation.errors.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    if with_service {
        for iface in compilation.by_document.values_mut().flatten() {
            apply_service(iface, &defaults, args.image_template.as_deref()).map_err(|m| {
                anyhow::anyhow!("{}: {m}", iface.metadata.name.as_deref().unwrap_or(""))
            })?;
        }
    }
    let count: usize = compilation.by_document.values().map(Vec::len).sum();
    match &args.out {
        Some(out) => {
            for (document, interfaces) in compilation
                .by_document
                .iter()
                .filter(|(_, v)| !v.is_empty())
            {
                let target = out.join(mirrored_path(Path::new(document), &args.paths));
                write_file(&target, &to_yaml_stream(interfaces)?)?;
            }
            eprintln!(
                "compiled {count} interface(s) from {} file(s) into {} ({} failed)",
                documents.len(),
                out.display(),
                compilation.errors.len()
            );
        }
        None => print!("{}", to_yaml_stream(compilation.interfaces())?),
    }
    Ok(if compilation.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `<out>/<path of the document relative to the input it was found under, with .yaml>`.
fn mirrored_path(document: &Path, inputs: &[PathBuf]) -> PathBuf {
    let relative = inputs
        .iter()
        .filter(|i| i.is_dir())
        .find_map(|i| document.strip_prefix(i).ok())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| document.file_name().map(PathBuf::from).unwrap_or_default());
    relative.with_extension("yaml")
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `ktwin instances`.
pub async fn run_instances(args: InstancesArgs) -> anyhow::Result<ExitCode> {
    let documents = load_documents(&args.models)?;
    let names = NameOptions {
        namespace: args.namespace.clone(),
        strip_prefix: Some(args.strip_prefix.clone()).filter(|p| !p.is_empty()),
    };
    let parse = ParseOptions {
        lenient_ids: args.lenient_ids,
        ..Default::default()
    };
    let compilation = compile_documents(&documents, &parse, &names);
    if !compilation.errors.is_empty() {
        for failure in &compilation.errors {
            for message in &failure.messages {
                eprintln!("error: {}: {message}", failure.document);
            }
        }
        bail!("the models do not compile: fix them first (see `ktwin compile`)");
    }
    let interfaces = InterfaceGraph::from_interfaces(compilation.interfaces());
    let world_file = args.world.display().to_string();
    let text = std::fs::read_to_string(&args.world).with_context(|| world_file.clone())?;
    let world = World::from_yaml(&text, &world_file)?;
    let options = ExpandOptions {
        file: world_file,
        namespace: args.namespace.clone(),
        parameters: args.parameters.iter().cloned().collect(),
        ..Default::default()
    };
    let instances = world.expand(&interfaces, &options)?;
    let graph = InstanceGraph::from_instances(&instances);
    let problems = graph.problems(&interfaces);
    if let Some(first) = problems.first() {
        bail!(
            "{} problem(s) in the expanded world, first: {first}",
            problems.len()
        );
    }
    match args.format {
        InstancesFormat::Json => {
            let json = serde_json::to_string(&graph.to_json())?;
            match &args.out {
                Some(out) => {
                    let path = out.join("twin-graph.json");
                    write_file(&path, &json)?;
                    eprintln!(
                        "{} instance(s), {} bytes of graph JSON in {}",
                        graph.len(),
                        json.len(),
                        path.display()
                    );
                }
                None => println!("{json}"),
            }
        }
        InstancesFormat::Yaml => {
            let mut by_interface: BTreeMap<&str, Vec<&TwinInstance>> = BTreeMap::new();
            for inst in &instances {
                by_interface
                    .entry(inst.spec.interface.as_str())
                    .or_default()
                    .push(inst);
            }
            for list in by_interface.values_mut() {
                list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            }
            match &args.out {
                Some(out) => {
                    for (iface, list) in &by_interface {
                        write_file(
                            &out.join(format!("{iface}.yaml")),
                            &to_yaml_stream(list.iter().copied())?,
                        )?;
                    }
                    eprintln!(
                        "{} instance(s) of {} interface(s) in {}",
                        instances.len(),
                        by_interface.len(),
                        out.display()
                    );
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    for list in by_interface.values() {
                        stdout.write_all(to_yaml_stream(list.iter().copied())?.as_bytes())?;
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
