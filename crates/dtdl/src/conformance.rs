//! Runner for the DTDL conformance cases (`valid`, `options`, `input`,
//! `expect.unresolvedIdentifiers`, `expect.parsingErrors`), as published with the reference
//! parser. A file holds one case (an object) or many (an array).
//!
//! An invalid case passes only when the parse fails as the case says: with exactly the
//! unresolved identifiers it lists, and with every validation id it names among the ids
//! reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{ParseError, ParseOptions, Severity, parse_values};

/// Why a case file could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConformanceError {
    /// A directory or file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A case file is not JSON.
    #[error("{file}: {source}")]
    Json {
        /// The file name.
        file: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A case file's name does not end in `V2.json`, `V3.json` or `V4.json`.
    #[error("{file}: name does not end in V2/V3/V4.json")]
    UnknownVersion {
        /// The file name.
        file: String,
    },
}

/// How a case's outcome differed from what it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// The case is not of the documented form.
    MalformedCase(&'static str),
    /// A valid case was rejected; `reported` describes the first error.
    ExpectedValid {
        /// The first error, or the unresolved identifiers.
        reported: String,
    },
    /// An invalid case was accepted.
    ExpectedInvalid,
    /// The parse stopped at other unresolved identifiers than the case lists.
    Unresolved {
        /// What the case lists.
        expected: BTreeSet<String>,
        /// What the parse asked for (empty when it failed otherwise).
        reported: BTreeSet<String>,
    },
    /// The case names validation ids the parse did not report.
    ValidationIds {
        /// The ids the case names and the parse did not report.
        missing: BTreeSet<String>,
        /// The ids the parse reported.
        reported: BTreeSet<String>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::MalformedCase(what) => write!(f, "malformed case: {what}"),
            Mismatch::ExpectedValid { reported } => write!(f, "expected valid, got: {reported}"),
            Mismatch::ExpectedInvalid => f.write_str("expected invalid, but the parse succeeded"),
            Mismatch::Unresolved { expected, reported } => {
                write!(f, "expected unresolved {expected:?}, got {reported:?}")
            }
            Mismatch::ValidationIds { missing, reported } => {
                write!(f, "expected validation ids {missing:?}, got {reported:?}")
            }
        }
    }
}

/// One case that did not behave as expected.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The case file's name.
    pub file: String,
    /// The case's index in the file.
    pub index: usize,
    /// The DTDL version of the file.
    pub version: u8,
    /// What differed.
    pub reason: Mismatch,
}

/// Pass/fail counts per DTDL version plus the failures.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// version → (passed, failed)
    pub per_version: BTreeMap<u8, (usize, usize)>,
    /// Every case that failed.
    pub failures: Vec<Failure>,
    /// Valid-but-discouraged cases (`desirable: false`): (warned about, total).
    pub discouraged: (usize, usize),
    /// Invalid cases that name validation ids: (all named ids reported, total).
    pub named_ids: (usize, usize),
}

impl Summary {
    /// Cases that behaved as expected.
    pub fn passed(&self) -> usize {
        self.per_version.values().map(|(p, _)| p).sum()
    }

    /// Cases that did not.
    pub fn failed(&self) -> usize {
        self.per_version.values().map(|(_, f)| f).sum()
    }

    /// Pass rate of a version in percent (100 when it has no case).
    pub fn rate(&self, version: u8) -> f64 {
        match self.per_version.get(&version) {
            Some(&(p, f)) if p + f > 0 => 100.0 * p as f64 / (p + f) as f64,
            _ => 100.0,
        }
    }

    fn record(&mut self, failure: Failure) {
        self.per_version.entry(failure.version).or_default().1 += 1;
        self.failures.push(failure);
    }
}

/// The DTDL version a case file is for, from its name (`…V3.json`).
pub fn version_of(file_name: &str) -> Option<u8> {
    let stem = file_name.strip_suffix(".json")?;
    [(2, "V2"), (3, "V3"), (4, "V4")]
        .into_iter()
        .find_map(|(version, suffix)| stem.ends_with(suffix).then_some(version))
}

/// What a case expects of an invalid parse.
struct Expectation {
    unresolved: Option<BTreeSet<String>>,
    validation_ids: BTreeSet<String>,
}

fn strings(value: Option<&Value>) -> Option<BTreeSet<String>> {
    value.and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

fn expectation(case: &Value) -> Expectation {
    let validation_ids = case
        .pointer("/expect/parsingErrors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("ValidationID").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Expectation {
        unresolved: strings(case.pointer("/expect/unresolvedIdentifiers")),
        validation_ids,
    }
}

/// The outcome of one case.
struct Outcome {
    result: Result<(), Mismatch>,
    /// The parse succeeded with warnings.
    warned: bool,
    /// The case names validation ids (whether they were all reported or not).
    names_ids: bool,
}

/// Runs one case.
pub fn run_case(case: &Value) -> Result<(), Mismatch> {
    evaluate(case).result
}

fn evaluate(case: &Value) -> Outcome {
    let malformed = |what| Outcome {
        result: Err(Mismatch::MalformedCase(what)),
        warned: false,
        names_ids: false,
    };
    let Some(valid) = case.get("valid").and_then(Value::as_bool) else {
        return malformed("no boolean 'valid'");
    };
    let Some(inputs) = case.get("input").and_then(Value::as_array) else {
        return malformed("no 'input' array");
    };
    let options = ParseOptions {
        allow_undefined_extensions: strings(case.get("options"))
            .is_some_and(|o| o.contains("AllowUndefinedExtensions")),
        ..ParseOptions::default()
    };
    let inputs: Vec<(String, Value)> = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("input[{i}]"), v.clone()))
        .collect();
    let expected = expectation(case);
    let outcome = parse_values(&inputs, &options);
    let warned = matches!(&outcome, Ok(set) if !set.warnings.is_empty());
    let names_ids = !valid && !expected.validation_ids.is_empty();
    let result = match (valid, outcome) {
        (true, Ok(_)) => Ok(()),
        (true, Err(e)) => Err(Mismatch::ExpectedValid {
            reported: describe(&e),
        }),
        (false, Ok(_)) => Err(Mismatch::ExpectedInvalid),
        (false, Err(e)) => judge_invalid(&expected, &e),
    };
    Outcome {
        result,
        warned,
        names_ids,
    }
}

/// An invalid case failed to parse: did it fail the way the case says?
fn judge_invalid(expected: &Expectation, error: &ParseError) -> Result<(), Mismatch> {
    let reported_unresolved = match error {
        ParseError::Unresolved { identifiers, .. } => identifiers.clone(),
        _ => BTreeSet::new(),
    };
    if let Some(unresolved) = &expected.unresolved
        && *unresolved != reported_unresolved
    {
        return Err(Mismatch::Unresolved {
            expected: unresolved.clone(),
            reported: reported_unresolved,
        });
    }
    let reported: BTreeSet<String> = error.errors().map(|d| d.id.clone()).collect();
    let missing: BTreeSet<String> = expected
        .validation_ids
        .difference(&reported)
        .cloned()
        .collect();
    if expected.unresolved.is_none() && !missing.is_empty() {
        return Err(Mismatch::ValidationIds { missing, reported });
    }
    Ok(())
}

fn describe(e: &ParseError) -> String {
    match e {
        ParseError::Invalid { diagnostics } => diagnostics
            .iter()
            .find(|d| d.severity == Severity::Error)
            .map(|d| {
                format!(
                    "[{}] {} at {}{}",
                    d.short_id(),
                    d.message,
                    d.document,
                    d.pointer
                )
            })
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

/// Runs every case of one file's text (a JSON array of cases, or one case).
pub fn run_file(
    summary: &mut Summary,
    file_name: &str,
    text: &str,
) -> Result<(), ConformanceError> {
    let version = version_of(file_name).ok_or_else(|| ConformanceError::UnknownVersion {
        file: file_name.to_string(),
    })?;
    let cases: Value =
        serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|source| {
            ConformanceError::Json {
                file: file_name.to_string(),
                source,
            }
        })?;
    let cases = match cases {
        Value::Array(cases) => cases,
        one => vec![one],
    };
    for (index, case) in cases.iter().enumerate() {
        let outcome = evaluate(case);
        if case.get("desirable").and_then(Value::as_bool) == Some(false) && outcome.result.is_ok() {
            summary.discouraged.1 += 1;
            summary.discouraged.0 += usize::from(outcome.warned);
        }
        if outcome.names_ids {
            summary.named_ids.1 += 1;
            summary.named_ids.0 += usize::from(!matches!(
                outcome.result,
                Err(Mismatch::ValidationIds { .. } | Mismatch::ExpectedInvalid)
            ));
        }
        match outcome.result {
            Ok(()) => summary.per_version.entry(version).or_default().0 += 1,
            Err(reason) => summary.record(Failure {
                file: file_name.to_string(),
                index,
                version,
                reason,
            }),
        }
    }
    Ok(())
}

/// Case files (`*V2.json`, `*V3.json`, `*V4.json`) under the directories, sorted.
pub fn case_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ConformanceError> {
    let mut files = Vec::new();
    for dir in dirs {
        collect(dir, &mut files)?;
    }
    files.retain(|f| {
        f.file_name()
            .and_then(|n| n.to_str())
            .and_then(version_of)
            .is_some()
    });
    files.sort();
    Ok(files)
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ConformanceError> {
    let read_error = |source| ConformanceError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(read_error)? {
            collect(&entry.map_err(read_error)?.path(), out)?;
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Runs every case file under the directories.
pub fn run_dirs(dirs: &[PathBuf]) -> Result<Summary, ConformanceError> {
    let mut summary = Summary::default();
    for file in case_files(dirs)? {
        let text = std::fs::read_to_string(&file).map_err(|source| ConformanceError::Read {
            path: file.clone(),
            source,
        })?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        run_file(&mut summary, &name, &text)?;
    }
    Ok(summary)
}
