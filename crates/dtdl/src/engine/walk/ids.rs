//! `@id`: an explicit identifier (checked against the identifier rules) or one derived from
//! the element's place under its parent.

use serde_json::Value;

use super::{ChildLink, Here, Parser};
use crate::digest::digest;
use crate::engine::context::ActiveContext;
use crate::engine::pattern::{is_lenient_id, matches};

/// The digest's `maxLength` of an identifier rule under a limit profile.
fn max_length(rule: Option<&Value>, profile: &str) -> Option<i64> {
    rule?
        .get("maxLength")
        .and_then(|m| m.get(profile).or_else(|| m.get("")))
        .and_then(Value::as_i64)
}

impl Parser<'_> {
    /// The element's identifier and whether it was written (`@id`) rather than derived.
    pub(super) fn element_id(
        &mut self,
        here: &Here<'_>,
        class: &str,
        link: Option<&ChildLink<'_>>,
    ) -> Option<(String, bool)> {
        let doc = here.doc;
        match (here.obj.get("@id"), link) {
            (Some(v), _) => {
                let pointer = here.key("@id");
                let Some(s) = v.as_str().filter(|s| !s.is_empty()) else {
                    self.at(doc, &pointer)
                        .value(v)
                        .error("idNotString", "'@id' must be a non-empty string");
                    return None;
                };
                self.check_id_definition(doc, &pointer, s, here.ctx, class)
                    .then(|| (s.to_string(), true))
            }
            // A top-level element without `@id` (missingTopLevelId) is not walked.
            (None, None) => None,
            (None, Some(l)) if l.id_required => {
                self.at(doc, here.pointer).error(
                    "missingRequiredId",
                    format!("value of property '{}' must have an '@id'", l.prop),
                );
                None
            }
            (None, Some(l)) => Some((self.derived_id(l), false)),
        }
    }

    /// `<parent base>:_<property>[:__<segment>];<parent version>`, as the reference parser
    /// names elements without `@id`.
    pub(super) fn derived_id(&self, link: &ChildLink<'_>) -> String {
        let parent = &self.arena.elems[link.parent].id;
        let (base, version) = match parent.rsplit_once(';') {
            Some((b, v)) => (b, Some(v)),
            None => (parent.as_str(), None),
        };
        let mut id = format!("{base}:_{}", link.prop);
        if !link.segment.is_empty() {
            id.push_str(":__");
            id.push_str(&link.segment);
        }
        if let Some(v) = version {
            id.push(';');
            id.push_str(v);
        }
        id
    }

    /// Form, length and reserved prefixes of a written identifier.
    fn check_id_definition(
        &mut self,
        doc: usize,
        pointer: &str,
        id: &str,
        ctx: &ActiveContext,
        class: &str,
    ) -> bool {
        let (version, profile) = (ctx.version, ctx.profile.as_str());
        let digest = digest();
        let vkey = version.to_string();
        let rule = digest.identifier_definition.get(&vkey);
        let quoted = Value::from(id);
        if id.contains('#') {
            self.at(doc, pointer).value(&quoted).error(
                "disallowedIdFragment",
                format!("identifier '{id}' has a fragment"),
            );
            // Nor is it a DTMI, whose syntax has no fragment: the reference parser's
            // identifier check says so first.
            self.at(doc, pointer).value(&quoted).error(
                "invalidId",
                format!("identifier '{id}' is not a valid DTMI for DTDL v{version}"),
            );
            return false;
        }
        // The reference parser measures the identifier before it checks its form.
        if let Some(max) = max_length(rule, profile).filter(|m| id.len() as i64 > *m) {
            self.at(doc, pointer).value(&quoted).error(
                "idTooLong",
                format!(
                    "identifier is {} characters long, the limit is {max}",
                    id.len()
                ),
            );
            return false;
        }
        let pattern = rule
            .and_then(|r| r.get("pattern"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !matches(pattern, id) {
            return self.non_dtmi_id(doc, pointer, id, version);
        }
        let type_rule = digest
            .identifier_definition
            .get(class)
            .and_then(|c| c.get(&vkey));
        if let Some(max) = max_length(type_rule, profile).filter(|m| id.len() as i64 > *m) {
            self.at(doc, pointer).value(&quoted).error(
                "idTooLongForType",
                format!(
                    "identifier of a {class} is {} characters long, the limit is {max}",
                    id.len()
                ),
            );
            return false;
        }
        // A prefix is reserved by a context (`dtmi:iotcentral:` by the iotcentral context):
        // only while that context is in force.
        let reserved = digest
            .reserved_id_prefixes
            .iter()
            .filter(|(context, _)| {
                *context == ctx.dtdl_context() || ctx.extensions.contains(*context)
            })
            .flat_map(|(_, prefixes)| prefixes)
            .any(|prefix| id.starts_with(prefix.as_str()));
        if reserved && !self.standard_mode {
            self.at(doc, pointer).value(&quoted).error(
                "reservedId",
                format!("identifier '{id}' begins with a reserved prefix"),
            );
            return false;
        }
        true
    }

    /// An identifier that is not a DTMI: accepted with a warning under `lenient_ids` when it
    /// has the form of the original KTWIN ontology's identifiers.
    fn non_dtmi_id(&mut self, doc: usize, pointer: &str, id: &str, version: u8) -> bool {
        let quoted = Value::from(id);
        if self.opts.lenient_ids && is_lenient_id(id) {
            self.at(doc, pointer).value(&quoted).warning(
                "ktwin:dtdl:lenientId",
                format!("identifier '{id}' is not a DTMI; accepted because of --lenient-ids"),
            );
            return true;
        }
        let hint = if is_lenient_id(id) {
            " (non-DTMI KTWIN identifiers need --lenient-ids)"
        } else {
            ""
        };
        self.at(doc, pointer).value(&quoted).error("invalidId", format!("identifier '{id}' is not a valid DTMI for DTDL v{version}; expected e.g. \"dtmi:example:Thing;1\"{hint}"));
        false
    }
}
