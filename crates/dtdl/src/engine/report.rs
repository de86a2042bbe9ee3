//! The diagnostics builder: `self.at(doc, pointer).value(v).error(code, message)`.

use serde_json::Value;

use super::Parser;
use crate::diagnostics::{Diagnostic, PARSING_ERROR_PREFIX, Severity, abbreviate};

/// A place in the input a diagnostic is about, and what else it reports.
#[must_use = "a place only records a diagnostic once `error` or `warning` is called"]
pub(crate) struct At<'p, 'a> {
    parser: &'p mut Parser<'a>,
    doc: usize,
    pointer: String,
    value: Option<String>,
    primary: Option<String>,
    secondary: Option<String>,
}

impl<'a> Parser<'a> {
    /// Starts a diagnostic about the value at `pointer` in document `doc`.
    pub(crate) fn at(&mut self, doc: usize, pointer: &str) -> At<'_, 'a> {
        let primary = self.subject.clone();
        At {
            parser: self,
            doc,
            pointer: pointer.to_string(),
            value: None,
            primary,
            secondary: None,
        }
    }
}

impl At<'_, '_> {
    /// Quotes the offending value (abbreviated).
    pub(crate) fn value(mut self, value: &Value) -> Self {
        self.value = Some(abbreviate(value));
        self
    }

    /// Names the element the diagnostic is about (by default the element being walked).
    pub(crate) fn primary(mut self, id: &str) -> Self {
        self.primary = Some(id.to_string());
        self
    }

    /// Names the other element involved.
    pub(crate) fn secondary(mut self, id: &str) -> Self {
        self.secondary = Some(id.to_string());
        self
    }

    /// Records an error. `code` is a DTDL validation name (`stringTooLong`) or a full id
    /// (`ktwin:dtdl:…`).
    pub(crate) fn error(self, code: &str, message: impl Into<String>) {
        self.push(Severity::Error, code, message.into());
    }

    /// Records a warning (valid but discouraged input).
    pub(crate) fn warning(self, code: &str, message: impl Into<String>) {
        self.push(Severity::Warning, code, message.into());
    }

    fn push(self, severity: Severity, code: &str, message: String) {
        let id = if code.contains(':') {
            code.to_string()
        } else {
            format!("{PARSING_ERROR_PREFIX}{code}")
        };
        let document = self
            .parser
            .doc_names
            .get(self.doc)
            .cloned()
            .unwrap_or_default();
        self.parser.diagnostics.push(Diagnostic {
            severity,
            id,
            document,
            pointer: self.pointer,
            value: self.value,
            primary_id: self.primary,
            secondary_id: self.secondary,
            message,
        });
    }
}
