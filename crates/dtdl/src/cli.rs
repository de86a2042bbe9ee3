//! `ktwin dtdl …`: validate models, run conformance cases, show a resolved interface.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::{ParseError, ParseOptions, Severity, conformance, load_documents, parse};

/// Arguments of `ktwin dtdl`.
#[derive(Debug, Args)]
pub struct DtdlArgs {
    /// The subcommand.
    #[command(subcommand)]
    pub command: DtdlCommand,
}

/// `ktwin dtdl` subcommands.
#[derive(Debug, Subcommand)]
pub enum DtdlCommand {
    /// Validate DTDL files or directories (recursive) as one model set.
    /// Exit status: 0 valid, 1 invalid, 2 usage or I/O error.
    Validate {
        #[command(flatten)]
        /// Parser options.
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
        /// Parser options.
        parse: ParseFlags,
        /// Files or directories holding the model set.
        #[arg(long, required = true, num_args = 1..)]
        models: Vec<PathBuf>,
    },
}

/// Parser options shared by the subcommands.
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

/// Output format of `ktwin dtdl validate`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Human-readable diagnostics on standard error.
    Text,
    /// One JSON report on standard output (validity, diagnostics with validation ids).
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
        Format::Json => print_json_report(&result),
        Format::Text => print_text_report(&result, docs.len()),
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The outcome as one JSON document: validity, interfaces or unresolved identifiers, and
/// every diagnostic with its validation id and the elements it is about.
fn print_json_report(result: &Result<crate::ModelSet, ParseError>) {
    let report = match result {
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

fn print_text_report(result: &Result<crate::ModelSet, ParseError>, documents: usize) {
    match result {
        Ok(set) => {
            for w in &set.warnings {
                eprintln!("{w}\n");
            }
            println!("{documents} document(s) valid: {} interface(s)", set.len());
        }
        Err(ParseError::Invalid { diagnostics }) => {
            for d in diagnostics {
                eprintln!("{d}\n");
            }
            let errors = diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            eprintln!("error: {errors} error(s) in {documents} document(s)");
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
    let (matched, named) = summary.named_ids;
    println!("invalid cases naming validation ids reported with them: {matched}/{named}");
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
