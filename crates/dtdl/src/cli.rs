//! `ktwin dtdl …`: validate models, run conformance cases, show a resolved interface.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::{Document, ParseError, ParseOptions, Severity, conformance, parse};

/// Arguments of `ktwin dtdl`.
#[derive(Debug, Args)]
pub struct DtdlArgs {
    #[command(subcommand)]
    pub command: DtdlCommand,
}

#[derive(Debug, Subcommand)]
pub enum DtdlCommand {
    /// Validate DTDL files or directories (recursive) as one model set.
    /// Exit status: 0 valid, 1 invalid, 2 usage or I/O error.
    Validate {
        #[command(flatten)]
        parse: ParseFlags,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Files or directories holding DTDL JSON documents.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run DTDL conformance case files and report pass rates per DTDL version.
    Conformance {
        /// List every failing case with the reason.
        #[arg(long)]
        verbose: bool,
        /// Directories (or files) of conformance cases.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Print a resolved interface (inherited contents included) as JSON.
    Show {
        /// The interface DTMI.
        dtmi: String,
        #[command(flatten)]
        parse: ParseFlags,
        /// Files or directories holding the model set.
        #[arg(long, required = true, num_args = 1..)]
        models: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ParseFlags {
    /// Tolerate unknown extension contexts and undefined types/properties.
    #[arg(long)]
    pub allow_undefined_extensions: bool,
    /// Accept non-DTMI identifiers of the original KTWIN ontology (e.g. `city:Pole`).
    #[arg(long)]
    pub lenient_ids: bool,
}

impl ParseFlags {
    fn options(&self) -> ParseOptions {
        ParseOptions {
            allow_undefined_extensions: self.allow_undefined_extensions,
            lenient_ids: self.lenient_ids,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Runs `ktwin dtdl …`.
pub async fn run(args: DtdlArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DtdlCommand::Validate {
            parse: flags,
            format,
            paths,
        } => Ok(validate(&paths, &flags.options(), format)),
        DtdlCommand::Conformance { verbose, dirs } => run_conformance(&dirs, verbose),
        DtdlCommand::Show {
            dtmi,
            parse: flags,
            models,
        } => Ok(show(&dtmi, &models, &flags.options())),
    }
}

/// Reads every `.json` file under the paths (files are taken as given).
pub fn load_documents(paths: &[PathBuf]) -> std::io::Result<Vec<Document>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            collect_json(p, &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
            Ok(Document::new(f.display().to_string(), text))
        })
        .collect()
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn validate(paths: &[PathBuf], options: &ParseOptions, format: Format) -> ExitCode {
    let docs = match load_documents(paths) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = parse(&docs, options);
    match format {
        Format::Json => {
            let report = match &result {
                Ok(set) => {
                    serde_json::json!({ "valid": true, "interfaces": set.interfaces.keys().collect::<Vec<_>>(), "diagnostics": set.warnings })
                }
                Err(ParseError::Invalid { diagnostics }) => {
                    serde_json::json!({ "valid": false, "diagnostics": diagnostics })
                }
                Err(ParseError::Unresolved {
                    identifiers,
                    warnings,
                }) => {
                    serde_json::json!({ "valid": false, "unresolvedIdentifiers": identifiers, "diagnostics": warnings })
                }
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        Format::Text => match &result {
            Ok(set) => {
                for w in &set.warnings {
                    eprintln!("{w}\n");
                }
                println!(
                    "{} document(s) valid: {} interface(s)",
                    docs.len(),
                    set.len()
                );
            }
            Err(ParseError::Invalid { diagnostics }) => {
                for d in diagnostics {
                    eprintln!("{d}\n");
                }
                let errors = diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .count();
                eprintln!("error: {errors} error(s) in {} document(s)", docs.len());
            }
            Err(ParseError::Unresolved { identifiers, .. }) => {
                for id in identifiers {
                    eprintln!(
                        "error[unresolvedIdentifier]: {id} is referenced but not defined by any document"
                    );
                }
                eprintln!(
                    "error: {} unresolved identifier(s); add the documents defining them",
                    identifiers.len()
                );
            }
        },
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_conformance(dirs: &[PathBuf], verbose: bool) -> anyhow::Result<ExitCode> {
    let summary = conformance::run_dirs(dirs)?;
    if verbose {
        for f in &summary.failures {
            println!("FAIL {}#{} (V{}): {}", f.file, f.index, f.version, f.reason);
        }
    }
    for (version, (passed, failed)) in &summary.per_version {
        println!(
            "V{version}: {passed} passed, {failed} failed ({:.2}%)",
            summary.rate(*version)
        );
    }
    let (warned, discouraged) = summary.discouraged;
    println!("discouraged-but-valid cases warned about: {warned}/{discouraged}");
    println!("{} passed, {} failed", summary.passed(), summary.failed());
    Ok(if summary.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn show(dtmi: &str, models: &[PathBuf], options: &ParseOptions) -> ExitCode {
    let docs = match load_documents(models) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match parse(&docs, options) {
        Ok(set) => match set.interface(dtmi) {
            Some(iface) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(iface).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "error: no interface {dtmi} in the {} document(s)",
                    docs.len()
                );
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("error: the models are invalid: {e}");
            ExitCode::from(1)
        }
    }
}
