//! Diagnostics: what went wrong, where, and what was expected.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

/// Prefix of the DTDL reference parser's validation identifiers.
pub const PARSING_ERROR_PREFIX: &str = "dtmi:dtdl:parsingError:";

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Valid but discouraged input.
    Warning,
    /// The model set is invalid.
    Error,
}

/// One finding about the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable validation id: `dtmi:dtdl:parsingError:<name>` where DTDL defines one,
    /// `ktwin:dtdl:<name>` otherwise.
    pub id: String,
    /// Name of the document (file path or `input[i]`).
    pub document: String,
    /// JSON pointer to the offending value inside the document.
    pub pointer: String,
    /// The offending value, abbreviated, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The element the finding is about (its DTMI, written or derived), as the reference
    /// parser reports it.
    #[serde(rename = "primaryId", skip_serializing_if = "Option::is_none")]
    pub primary_id: Option<String>,
    /// The other element involved (the target of a bad reference, a conflicting definition).
    #[serde(rename = "secondaryId", skip_serializing_if = "Option::is_none")]
    pub secondary_id: Option<String>,
    /// One line saying what is wrong and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// The short validation name (`stringTooLong` for `dtmi:dtdl:parsingError:stringTooLong`).
    pub fn short_id(&self) -> &str {
        self.id
            .strip_prefix(PARSING_ERROR_PREFIX)
            .or_else(|| self.id.strip_prefix("ktwin:dtdl:"))
            .unwrap_or(&self.id)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{level}[{}]: {}", self.short_id(), self.message)?;
        write!(f, "\n  --> {}#{}", self.document, self.pointer)?;
        if let Some(id) = &self.primary_id {
            write!(f, "\n  = element: {id}")?;
        }
        if let Some(v) = &self.value {
            write!(f, "\n  = value: {v}")?;
        }
        Ok(())
    }
}

/// Why a model set could not be produced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ParseError {
    /// The input breaks DTDL rules.
    #[error("{} DTDL error(s), first: {}", .diagnostics.iter().filter(|d| d.severity == Severity::Error).count(), .diagnostics.iter().find(|d| d.severity == Severity::Error).map(|d| d.message.as_str()).unwrap_or(""))]
    Invalid {
        /// Errors (and warnings) found.
        diagnostics: Vec<Diagnostic>,
    },
    /// The input is valid so far but references identifiers it does not define: load the
    /// models defining them and parse again.
    #[error("unresolved identifiers: {}", .identifiers.iter().cloned().collect::<Vec<_>>().join(", "))]
    Unresolved {
        /// Exactly the DTMIs referenced but not defined.
        identifiers: BTreeSet<String>,
        /// Warnings found so far.
        warnings: Vec<Diagnostic>,
    },
}

impl ParseError {
    /// Error diagnostics (empty for [`ParseError::Unresolved`]).
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        let list: &[Diagnostic] = match self {
            ParseError::Invalid { diagnostics } => diagnostics,
            ParseError::Unresolved { .. } => &[],
        };
        list.iter().filter(|d| d.severity == Severity::Error)
    }
}

/// Shortens a JSON value for display in a diagnostic.
pub(crate) fn abbreviate(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    const MAX: usize = 80;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        text
    }
}
