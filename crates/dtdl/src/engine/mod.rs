//! The table-driven parsing engine.
//!
//! Stage 1 ([`walk`]) turns every document into typed elements in an arena, checking each
//! element against the rules of its class in the digest. Stage 2 ([`resolve`]) checks the
//! set: identifiers, references, inheritance, descendant limits. Stage 3 ([`build`]) turns
//! the arena into the public [`crate::ModelSet`].

mod build;
mod check;
mod context;
mod graph;
mod instance;
mod pattern;
mod report;
mod resolve;
mod siblings;
mod walk;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::Value;

use crate::diagnostics::{Diagnostic, Severity};
use crate::{ModelSet, ParseError, ParseOptions};

/// Index of an element in an [`Arena`].
pub(crate) type ElemId = usize;

/// A value of a property of an element.
#[derive(Debug, Clone)]
pub(crate) enum PropValue {
    /// A literal JSON value (strings, numbers, booleans, language maps).
    Literal(Value),
    /// A reference to another element by identifier.
    Ref(String),
    /// An element defined inline.
    Child(ElemId),
}

/// One typed DTDL element.
#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub id: String,
    /// Material class name from the digest (`Interface`, `Property`, …).
    pub class: String,
    /// Supplemental type IRIs.
    pub cotypes: Vec<String>,
    /// True when `@type` had a term or IRI the active contexts do not define.
    pub undefined_cotype: bool,
    pub version: u8,
    /// The limit profile in force (`""`, `aio_1`, `onvif_1`).
    pub profile: String,
    pub doc: usize,
    pub pointer: String,
    pub parent: Option<(ElemId, String)>,
    /// The partition this element belongs to: the nearest enclosing element of a partition
    /// class (an Interface, nested or not; itself for an Interface).
    pub partition: ElemId,
    /// Material properties by short name.
    pub props: BTreeMap<String, Vec<PropValue>>,
    /// Supplemental properties by IRI.
    pub supplemental: BTreeMap<String, Vec<PropValue>>,
}

impl Element {
    pub fn literal(&self, prop: &str) -> Option<&Value> {
        self.props.get(prop)?.iter().find_map(|v| match v {
            PropValue::Literal(v) => Some(v),
            _ => None,
        })
    }

    pub fn str_prop(&self, prop: &str) -> Option<&str> {
        self.literal(prop).and_then(Value::as_str)
    }
}

/// Elements and their identifier index.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    pub elems: Vec<Element>,
    pub by_id: BTreeMap<String, ElemId>,
}

/// Where a reference was written.
#[derive(Debug, Clone)]
pub(crate) struct RefSite {
    pub from: ElemId,
    pub prop: String,
    pub target: String,
    pub pointer: String,
    /// Class the target must be (or subclass of).
    pub class: Option<String>,
    /// DTDL versions the target may be written in (empty: any).
    pub versions: Vec<u8>,
    /// The value was written as a term (not a DTMI): a term that names no element is of the
    /// wrong type, not an identifier to resolve.
    pub term: bool,
}

/// The standard elements (primitive schemas, geospatial objects, units…) parsed once.
pub(crate) fn standard() -> &'static Arena {
    static STD: OnceLock<Arena> = OnceLock::new();
    STD.get_or_init(|| {
        let digest = crate::digest::digest();
        let mut parser = Parser::new(&ParseOptions::default(), None);
        parser.standard_mode = true;
        for (i, element) in digest.elements.iter().enumerate() {
            parser.doc_names.push(format!("standard[{i}]"));
            parser.walk_document(i, element);
        }
        parser.arena
    })
}

/// Mutable state of one parse.
pub(crate) struct Parser<'a> {
    pub opts: ParseOptions,
    pub std: Option<&'a Arena>,
    pub standard_mode: bool,
    pub arena: Arena,
    pub roots: Vec<ElemId>,
    pub refs: Vec<RefSite>,
    pub diagnostics: Vec<Diagnostic>,
    pub doc_names: Vec<String>,
    /// Identifiers defined more than once.
    pub duplicates: BTreeSet<String>,
    /// The identifier of the element being walked: the primary id of its diagnostics.
    pub subject: Option<String>,
}

impl<'a> Parser<'a> {
    pub fn new(opts: &ParseOptions, std: Option<&'a Arena>) -> Self {
        Parser {
            opts: opts.clone(),
            std,
            standard_mode: false,
            arena: Arena::default(),
            roots: Vec::new(),
            refs: Vec::new(),
            diagnostics: Vec::new(),
            doc_names: Vec::new(),
            duplicates: BTreeSet::new(),
            subject: None,
        }
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// Looks an identifier up in this parse, then in the standard elements.
    pub fn lookup(&self, id: &str) -> Option<(&Element, bool)> {
        if let Some(&i) = self.arena.by_id.get(id) {
            return Some((&self.arena.elems[i], false));
        }
        let std = self.std?;
        std.by_id.get(id).map(|&i| (&std.elems[i], true))
    }
}

/// Appends a JSON-pointer segment.
pub(crate) fn ptr(base: &str, segment: &str) -> String {
    let escaped = segment.replace('~', "~0").replace('/', "~1");
    format!("{base}/{escaped}")
}

pub(crate) fn parse(
    documents: &[(String, Value)],
    opts: &ParseOptions,
) -> Result<ModelSet, ParseError> {
    let mut parser = Parser::new(opts, Some(standard()));
    for (i, (name, value)) in documents.iter().enumerate() {
        parser.doc_names.push(name.clone());
        parser.walk_document(i, value);
    }
    parser.check_duplicates();
    let unresolved = parser.resolve_references();
    if !parser.has_errors() && !unresolved.is_empty() {
        return Err(ParseError::Unresolved {
            identifiers: unresolved,
            warnings: parser.diagnostics,
        });
    }
    // Set-level rules run even when elements failed, so one parse reports every class of
    // error the input has (references that could not be resolved are skipped).
    parser.check_set();
    if parser.has_errors() {
        return Err(ParseError::Invalid {
            diagnostics: parser.diagnostics,
        });
    }
    Ok(parser.build())
}
