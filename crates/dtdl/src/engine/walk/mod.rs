//! Stage 1: documents → typed elements, each checked against its class rules.
//!
//! [`Parser::walk_element`] runs the phases of one element in order: its `@context`, its
//! `@type` ([`types`]), its `@id` ([`ids`]), the element's registration in the arena, then its
//! properties ([`props`], with values in [`values`], literals in [`literal`], localizable
//! strings in [`lang`] and the properties that supplemental types add in [`supplemental`]).

mod ids;
mod lang;
mod literal;
mod props;
mod supplemental;
mod types;
mod values;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::context::ActiveContext;
use super::{ElemId, Element, Parser, ptr};
use crate::digest::{SupplementalType, digest, limit_for};

pub(crate) use self::types::Typing;

/// True when `s` is a syntactically valid DTMI reference in DTDL `version`.
pub(crate) fn is_dtmi_syntax(s: &str, version: u8) -> bool {
    digest()
        .identifier_reference
        .get(&version.to_string())
        .is_some_and(|rule| super::pattern::matches(&rule.pattern, s))
}

/// The supplemental type and its ancestors (nearest first).
pub(crate) fn supplemental_chain(iri: &str) -> Vec<(&'static str, &'static SupplementalType)> {
    let types = &digest().supplemental_types;
    let mut chain = Vec::new();
    let mut cur = types.get_key_value(iri);
    while let Some((k, t)) = cur {
        chain.push((k.as_str(), t));
        cur = t.parent.as_deref().and_then(|p| types.get_key_value(p));
        if chain.len() > 16 {
            break;
        }
    }
    chain
}

/// How the digest's apocrypha judge an undefined term or DTMI.
enum Outcome {
    Valid,
    Tenable,
    Invalid,
}

/// Context passed from a parent element to the child it defines inline.
pub(crate) struct ChildLink<'p> {
    pub parent: ElemId,
    pub prop: &'p str,
    pub segment: String,
    pub id_required: bool,
}

/// The element being walked: its JSON, where it is, and the contexts in force.
pub(crate) struct Here<'w> {
    pub doc: usize,
    pub pointer: &'w str,
    pub obj: &'w Map<String, Value>,
    pub ctx: &'w ActiveContext,
}

impl Here<'_> {
    fn version(&self) -> u8 {
        self.ctx.version
    }

    /// The pointer of one of the element's keys.
    fn key(&self, key: &str) -> String {
        ptr(self.pointer, key)
    }
}

impl Parser<'_> {
    fn apocrypha(&self, version: u8, case: &str) -> Outcome {
        match digest().apocrypha(version, case) {
            "valid" => Outcome::Valid,
            "tenable" => Outcome::Tenable,
            _ => Outcome::Invalid,
        }
    }

    /// Walks one top-level JSON document (an object or an array of objects).
    pub(crate) fn walk_document(&mut self, doc: usize, value: &Value) {
        match value {
            Value::Object(obj) => self.walk_top(doc, obj, ""),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("/{i}");
                    match item {
                        Value::Object(obj) => self.walk_top(doc, obj, &p),
                        other => self
                            .at(doc, &p)
                            .value(other)
                            .error("notJsonObject", "expected a JSON object (a DTDL Interface)"),
                    }
                }
            }
            other => self.at(doc, "").value(other).error(
                "notJsonObject",
                "document must be a JSON object or an array of JSON objects",
            ),
        }
    }

    fn walk_top(&mut self, doc: usize, obj: &Map<String, Value>, pointer: &str) {
        let Some(ctx_value) = obj.get("@context") else {
            self.at(doc, pointer).error("missingContext", "top-level element has no @context; expected e.g. \"@context\": \"dtmi:dtdl:context;3\"");
            return;
        };
        let Some(ctx) = self.process_context(doc, &ptr(pointer, "@context"), ctx_value, None)
        else {
            return;
        };
        if obj.contains_key("@graph") {
            self.at(doc, &ptr(pointer, "@graph"))
                .error("topLevelGraphDisallowed", "'@graph' is not allowed");
            return;
        }
        // Without an identifier the reference parser reads nothing more of the element.
        if !obj.contains_key("@id") {
            self.at(doc, pointer).error(
                "missingTopLevelId",
                "top-level element has no '@id'; expected a DTMI such as \"dtmi:example:Thing;1\"",
            );
            return;
        }
        self.check_partition_size(doc, obj, pointer, &ctx);
        let allowed = if self.standard_mode {
            "Entity"
        } else {
            "Interface"
        };
        if let Some(root) = self.walk_element(doc, obj, pointer, &ctx, allowed, None) {
            self.roots.push(root);
        }
    }

    fn check_partition_size(
        &mut self,
        doc: usize,
        obj: &Map<String, Value>,
        pointer: &str,
        ctx: &ActiveContext,
    ) {
        let Some(max) = digest()
            .partitions
            .get(&ctx.version.to_string())
            .and_then(|partition| partition.max_bytes.as_ref())
            .and_then(|m| limit_for(m, &ctx.profile))
        else {
            return;
        };
        let size = serde_json::to_string(obj).map(|s| s.len()).unwrap_or(0) as i64;
        if size > max {
            self.at(doc, pointer).error(
                "partitionTooLarge",
                format!("element JSON is {size} bytes, the limit is {max}"),
            );
        }
    }

    /// Walks one element; returns its arena index. Its diagnostics name it as their primary
    /// element (by its `@id`, or the identifier derived from its place).
    pub(crate) fn walk_element(
        &mut self,
        doc: usize,
        obj: &Map<String, Value>,
        pointer: &str,
        outer: &ActiveContext,
        allowed: &str,
        link: Option<ChildLink<'_>>,
    ) -> Option<ElemId> {
        let subject = match (obj.get("@id").and_then(Value::as_str), &link) {
            (Some(id), _) => Some(id.to_string()),
            (None, Some(l)) => Some(self.derived_id(l)),
            (None, None) => None,
        };
        let outer_subject = std::mem::replace(&mut self.subject, subject);
        let walked = self.walk_element_phases(doc, obj, pointer, outer, allowed, link);
        self.subject = outer_subject;
        walked
    }

    fn walk_element_phases(
        &mut self,
        doc: usize,
        obj: &Map<String, Value>,
        pointer: &str,
        outer: &ActiveContext,
        allowed: &str,
        link: Option<ChildLink<'_>>,
    ) -> Option<ElemId> {
        let nested_ctx;
        let ctx = match (link.is_some(), obj.get("@context")) {
            (true, Some(v)) => {
                nested_ctx =
                    self.process_context(doc, &ptr(pointer, "@context"), v, Some(outer))?;
                &nested_ctx
            }
            _ => outer,
        };
        let here = Here {
            doc,
            pointer,
            obj,
            ctx,
        };
        let typing = self.element_types(&here, allowed, link.as_ref().map(|l| l.parent))?;
        let (id, explicit_id) = self.element_id(&here, typing.class, link.as_ref())?;
        if !typing.ok {
            return None;
        }
        self.check_cotypes(&here, &typing);
        let me = self.register(&here, &typing, id, explicit_id, link.as_ref());
        let supplemental = self.supplemental_definitions(&here, &typing.cotypes);
        self.walk_properties(&here, me, typing.class, &supplemental);
        self.check_required_properties(&here, me, typing.class, &supplemental);
        Some(me)
    }

    /// Adds the element to the arena and its identifier to the index.
    fn register(
        &mut self,
        here: &Here<'_>,
        typing: &Typing,
        id: String,
        explicit_id: bool,
        link: Option<&ChildLink<'_>>,
    ) -> ElemId {
        let me = self.arena.elems.len();
        // An element of a partition class (an Interface, even one nested in a component or
        // `extends`) starts a partition; the reference parser lets nothing reach into it.
        let partition = match link {
            Some(l) if !digest().partition_classes.iter().any(|c| c == typing.class) => {
                self.arena.elems[l.parent].partition
            }
            _ => me,
        };
        self.arena.elems.push(Element {
            id: id.clone(),
            class: typing.class.to_string(),
            cotypes: typing.cotypes.clone(),
            undefined_cotype: typing.undefined_cotype,
            version: here.version(),
            profile: here.ctx.profile.clone(),
            doc: here.doc,
            pointer: here.pointer.to_string(),
            parent: link.map(|l| (l.parent, l.prop.to_string())),
            partition,
            props: BTreeMap::new(),
            supplemental: BTreeMap::new(),
        });
        if explicit_id {
            if self.arena.by_id.insert(id.clone(), me).is_some() {
                self.duplicates.insert(id);
            }
        } else {
            self.arena.by_id.entry(id).or_insert(me);
        }
        me
    }

    /// Warns when an IRI is written where the active contexts define a term for it.
    fn recommend_term(
        &mut self,
        doc: usize,
        pointer: &str,
        written: &str,
        iri: Option<&str>,
        ctx: &ActiveContext,
    ) {
        // Only IRIs can have a shorter term; plain terms return at once.
        if !written.starts_with("dtmi:") {
            return;
        }
        let Some(iri) = iri.filter(|i| *i == written) else {
            return;
        };
        if let Some(term) = digest().terms_by_iri.get(iri)
            && ctx.resolve_term(term) == Some(iri)
        {
            self.at(doc, pointer).value(&Value::from(written)).warning(
                "ktwin:dtdl:preferTerm",
                format!("write the term '{term}' instead of the IRI '{written}'"),
            );
        }
    }
}

/// The IRI a term or DTMI written as a key or type stands for, if any.
fn resolve_iri(ctx: &ActiveContext, written: &str) -> Option<String> {
    ctx.resolve_term(written).map(str::to_string).or_else(|| {
        (written.starts_with("dtmi:") && is_dtmi_syntax(written, 3)).then(|| written.to_string())
    })
}
