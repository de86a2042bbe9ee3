//! `ktwin-dtdl`: a DTDL v2/v3/v4 parser and validator.
//!
//! It owns the DTDL language: reading JSON documents, applying the rules of the DTDL
//! metamodel (driven by the reference parser's digest, `data/dtdl_digest.json`, not
//! hand-coded), resolving references across a set of documents, flattening `extends` and
//! producing a typed [`ModelSet`]. It knows nothing about Kubernetes, twins at run time or
//! ktwin services; other crates compile its model into their own resources.
//!
//! ```
//! use ktwin_dtdl::{parse, Document, ParseOptions, ContentKind};
//!
//! let doc = Document::new("thermostat.json", r#"{
//!   "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"],
//!   "@id": "dtmi:example:Thermostat;1",
//!   "@type": "Interface",
//!   "contents": [
//!     { "@type": "Property", "name": "target", "schema": "double", "writable": true },
//!     { "@type": ["Telemetry", "Temperature"], "name": "temp", "schema": "double",
//!       "unit": "degreeCelsius" }
//!   ]
//! }"#);
//! let models = parse(&[doc], &ParseOptions::default()).expect("valid model");
//! let thermostat = models.interface("dtmi:example:Thermostat;1").unwrap();
//! let (_, target) = thermostat.properties().next().unwrap();
//! assert!(target.writable);
//! let temp = thermostat.content("temp").unwrap();
//! assert!(matches!(temp.kind, ContentKind::Telemetry(_)));
//! assert_eq!(temp.unit(), Some("dtmi:dtdl:extension:quantitativeTypes:v1:unit:degreeCelsius"));
//! ```
//!
//! A parse either yields the model set, or [`ParseError::Invalid`] with diagnostics
//! (validation id, document, JSON pointer, value, message), or [`ParseError::Unresolved`]
//! listing exactly the DTMIs referenced but not defined; [`parse_resolving`] asks a
//! resolver for those and parses again until every reference is defined.
//!
//! Features: `cli` (the `ktwin dtdl …` subcommands, enabled by the `ktwin` binary) and
//! `conformance` (the runner of the reference parser's conformance cases, which `cli` uses);
//! a default build exports neither.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

use std::collections::BTreeSet;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "conformance")]
pub mod conformance;
mod diagnostics;
mod digest;
mod engine;
mod load;
pub mod model;
mod mqtt;

pub use diagnostics::{Diagnostic, PARSING_ERROR_PREFIX, ParseError, Severity};
pub use load::{LoadError, load_documents};
pub use model::{
    Annotations, CommandDef, CommandPayload, ComponentDef, Content, ContentKind, EnumValue,
    Interface, LocalizedString, ModelSet, NamedSchema, Primitive, PropertyDef, RelationshipDef,
    RelationshipProperty, Schema, TelemetryDef,
};
pub use mqtt::{MqttBinding, TopicPattern};

/// One input document: a name used in diagnostics (usually the file path) and its JSON text.
#[derive(Debug, Clone)]
pub struct Document {
    /// Name used in diagnostics (usually the file path).
    pub name: String,
    /// The JSON text.
    pub text: String,
}

impl Document {
    /// A document named `name` holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Document {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Parser options.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Tolerate unknown contexts and undefined `@type`/property terms (DTDL
    /// `AllowUndefinedExtensions`); by default they are errors.
    pub allow_undefined_extensions: bool,
    /// Accept the non-DTMI identifiers of the original KTWIN ontology (`city:Pole`,
    /// `ngsi_ld:city:Streetlight`) so existing models can be migrated.
    pub lenient_ids: bool,
    /// The highest DTDL version a model may be written in (a service that only understands
    /// DTDL v2 sets 2); a `dtmi:dtdl:context;N` above it is `disallowedContextVersion`.
    /// `None` accepts every version the parser knows (2 to 4).
    pub max_dtdl_version: Option<u8>,
}

/// Parses documents (each an object or an array of objects, UTF-8 with or without BOM) as
/// one model set.
pub fn parse(documents: &[Document], options: &ParseOptions) -> Result<ModelSet, ParseError> {
    let mut inputs = Vec::with_capacity(documents.len());
    let mut errors = Vec::new();
    for doc in documents {
        let text = doc.text.trim_start_matches('\u{feff}');
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => inputs.push((doc.name.clone(), value)),
            Err(e) => errors.push(Diagnostic {
                severity: Severity::Error,
                id: "ktwin:dtdl:invalidJson".into(),
                document: doc.name.clone(),
                pointer: String::new(),
                value: None,
                primary_id: None,
                secondary_id: None,
                message: format!("document is not valid JSON: {e}"),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(ParseError::Invalid {
            diagnostics: errors,
        });
    }
    parse_values(&inputs, options)
}

/// Parses documents as one model set, asking `resolve` for the definitions of the identifiers
/// they reference but do not define (a component's or an extended interface's DTMI, a
/// schema defined elsewhere), as the reference parser's `DtmiResolver` does: round by round,
/// until every reference is defined. `resolve` gets the identifiers still undefined and
/// returns documents defining them (from a model repository, a database, …); the documents it
/// returns may reference further identifiers, which the next round asks for.
///
/// Stops with [`ParseError::Unresolved`] listing the identifiers `resolve` was asked for and
/// did not define (all of them when it returns no document), and with
/// [`ParseError::Invalid`] when the documents, resolved ones included, break DTDL rules.
pub fn parse_resolving<R>(
    documents: &[Document],
    options: &ParseOptions,
    mut resolve: R,
) -> Result<ModelSet, ParseError>
where
    R: FnMut(&BTreeSet<String>) -> Vec<Document>,
{
    let mut all = documents.to_vec();
    let mut asked = BTreeSet::new();
    loop {
        let (identifiers, warnings) = match parse(&all, options) {
            Err(ParseError::Unresolved {
                identifiers,
                warnings,
            }) => (identifiers, warnings),
            other => return other,
        };
        // Asked for before and still undefined: the resolver could not define them.
        let still_missing: BTreeSet<String> = identifiers.intersection(&asked).cloned().collect();
        let resolved = if still_missing.is_empty() {
            resolve(&identifiers)
        } else {
            Vec::new()
        };
        if resolved.is_empty() {
            let identifiers = if still_missing.is_empty() {
                identifiers
            } else {
                still_missing
            };
            return Err(ParseError::Unresolved {
                identifiers,
                warnings,
            });
        }
        asked.extend(identifiers);
        all.extend(resolved);
    }
}

/// Parses already-decoded JSON documents (name, value) as one model set.
pub fn parse_values(
    documents: &[(String, serde_json::Value)],
    options: &ParseOptions,
) -> Result<ModelSet, ParseError> {
    engine::parse(documents, options)
}
