//! Runner for the DTDL conformance cases (`valid`, `options`, `input`,
//! `expect.unresolvedIdentifiers`), as published with the reference parser.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{ParseError, ParseOptions, parse_values};

/// Outcome of one case that did not behave as expected.
#[derive(Debug, Clone)]
pub struct Failure {
    pub file: String,
    pub index: usize,
    pub version: u8,
    pub reason: String,
}

/// Pass/fail counts per DTDL version plus the failures.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// version → (passed, failed)
    pub per_version: BTreeMap<u8, (usize, usize)>,
    pub failures: Vec<Failure>,
    /// Valid-but-discouraged cases (`desirable: false`): (warned about, total).
    pub discouraged: (usize, usize),
}

impl Summary {
    pub fn passed(&self) -> usize {
        self.per_version.values().map(|(p, _)| p).sum()
    }

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

    fn record(&mut self, version: u8, failure: Option<Failure>) {
        let entry = self.per_version.entry(version).or_default();
        match failure {
            None => entry.0 += 1,
            Some(f) => {
                entry.1 += 1;
                self.failures.push(f);
            }
        }
    }
}

/// The DTDL version a case file is for, from its name (`…V3.json`).
pub fn version_of(file_name: &str) -> Option<u8> {
    let stem = file_name.strip_suffix(".json")?;
    [(2, "V2"), (3, "V3"), (4, "V4")]
        .into_iter()
        .find_map(|(version, suffix)| stem.ends_with(suffix).then_some(version))
}

/// Runs one case; `Err` says why it failed.
pub fn run_case(case: &Value) -> Result<(), String> {
    evaluate(case).0
}

/// Runs one case; also says whether the parse produced warnings.
fn evaluate(case: &Value) -> (Result<(), String>, bool) {
    match classify(case) {
        Ok((result, warned)) => (result, warned),
        Err(reason) => (Err(reason), false),
    }
}

type Classified = (Result<(), String>, bool);

fn classify(case: &Value) -> Result<Classified, String> {
    let valid = case
        .get("valid")
        .and_then(Value::as_bool)
        .ok_or("case has no boolean 'valid'")?;
    let options = ParseOptions {
        allow_undefined_extensions: case
            .get("options")
            .and_then(Value::as_array)
            .is_some_and(|o| o.iter().any(|v| v == "AllowUndefinedExtensions")),
        lenient_ids: false,
    };
    let inputs: Vec<(String, Value)> = case
        .get("input")
        .and_then(Value::as_array)
        .ok_or("case has no 'input' array")?
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("input[{i}]"), v.clone()))
        .collect();
    let expected_unresolved: Option<BTreeSet<String>> = case
        .pointer("/expect/unresolvedIdentifiers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        });
    let outcome = parse_values(&inputs, &options);
    let warned = matches!(&outcome, Ok(set) if !set.warnings.is_empty());
    let result = match (valid, outcome, expected_unresolved) {
        (true, Ok(_), _) => Ok(()),
        (true, Err(e), _) => Err(format!("expected valid, got: {}", describe(&e))),
        (false, Ok(_), _) => Err("expected invalid, but the parse succeeded".into()),
        (false, Err(ParseError::Unresolved { identifiers, .. }), Some(expected)) => {
            if identifiers == expected {
                Ok(())
            } else {
                Err(format!(
                    "expected unresolved {expected:?}, got unresolved {identifiers:?}"
                ))
            }
        }
        (false, Err(e), Some(expected)) => Err(format!(
            "expected unresolved {expected:?}, got: {}",
            describe(&e)
        )),
        (false, Err(_), None) => Ok(()),
    };
    Ok((result, warned))
}

fn describe(e: &ParseError) -> String {
    match e {
        ParseError::Invalid { diagnostics } => diagnostics
            .iter()
            .find(|d| d.severity == crate::Severity::Error)
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

/// Runs every case of one file's text.
pub fn run_file(summary: &mut Summary, file_name: &str, text: &str) -> Result<(), String> {
    let version = version_of(file_name)
        .ok_or_else(|| format!("{file_name}: name does not end in V2/V3/V4.json"))?;
    let cases: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("{file_name}: {e}"))?;
    let cases = cases
        .as_array()
        .ok_or_else(|| format!("{file_name}: expected a JSON array of cases"))?;
    for (index, case) in cases.iter().enumerate() {
        let (result, warned) = evaluate(case);
        if case.get("desirable").and_then(Value::as_bool) == Some(false) && result.is_ok() {
            summary.discouraged.1 += 1;
            summary.discouraged.0 += usize::from(warned);
        }
        let failure = result.err().map(|reason| Failure {
            file: file_name.to_string(),
            index,
            version,
            reason,
        });
        summary.record(version, failure);
    }
    Ok(())
}

/// Case files (`*V2.json`, `*V3.json`, `*V4.json`) under the directories, sorted.
pub fn case_files(dirs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
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

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect(&entry?.path(), out)?;
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Runs every case file under the directories.
pub fn run_dirs(dirs: &[PathBuf]) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    for file in case_files(dirs)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        run_file(&mut summary, &name, &text).map_err(anyhow::Error::msg)?;
    }
    Ok(summary)
}
