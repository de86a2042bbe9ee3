//! Values of the properties supplemental types add (`unit`, `ttl`, `telemetryTopic`, …).

use serde_json::Value;

use super::{Here, Parser, supplemental_chain};
use crate::digest::{SupplementalProperty, digest};
use crate::engine::pattern::matches;
use crate::engine::{ElemId, PropValue};

/// The supplemental property being walked.
pub(super) struct SupplementalSite<'s> {
    pub me: ElemId,
    pub pointer: &'s str,
    pub key: &'s str,
    /// The property's IRI.
    pub iri: &'s str,
    /// The supplemental type that adds it.
    pub type_iri: &'s str,
    pub def: &'static SupplementalProperty,
}

/// True when a literal value fits the property's datatype and limits.
fn literal_fits(def: &SupplementalProperty, raw: &Value) -> bool {
    let bound = |b: &Option<Value>| b.as_ref().and_then(Value::as_i64);
    match def.type_name.as_deref().unwrap_or("") {
        "string" | "IRI" | "duration" => raw.as_str().is_some_and(|s| {
            def.pattern.as_ref().is_none_or(|p| matches(p, s))
                && def.max_length.is_none_or(|m| s.chars().count() as i64 <= m)
        }),
        "integer" => raw.as_i64().is_some_and(|n| {
            bound(&def.min_inclusive).is_none_or(|m| n >= m)
                && bound(&def.max_inclusive).is_none_or(|m| n <= m)
        }),
        "decimal" | "double" => raw.is_number(),
        "boolean" => raw.is_boolean(),
        _ => false,
    }
}

fn is_literal_type(def: &SupplementalProperty) -> bool {
    matches!(
        def.type_name.as_deref().unwrap_or(""),
        "string" | "IRI" | "duration" | "integer" | "decimal" | "double" | "boolean"
    )
}

impl Parser<'_> {
    /// Walks the value(s); false when they are invalid (an error was recorded).
    pub(super) fn walk_supplemental(
        &mut self,
        here: &Here<'_>,
        site: &SupplementalSite<'_>,
        value: &Value,
    ) -> bool {
        let items: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        if !self.check_supplemental_count(here.doc, site, items.len()) {
            return false;
        }
        let mut values = Vec::new();
        for item in items {
            let raw = match item {
                Value::Object(o) => o.get("@value").unwrap_or(item),
                v => v,
            };
            match self.supplemental_value(here, site, raw) {
                Some(v) => values.push(v),
                None => return false,
            }
        }
        self.arena.elems[site.me]
            .supplemental
            .insert(site.iri.to_string(), values);
        true
    }

    fn check_supplemental_count(
        &mut self,
        doc: usize,
        site: &SupplementalSite<'_>,
        count: usize,
    ) -> bool {
        let (def, key) = (site.def, site.key);
        let (code, message) = if !def.plural && count > 1 {
            (
                "literalMultipleValues",
                format!("property '{key}' takes a single value"),
            )
        } else if let Some(max) = def.max_count.filter(|m| count as i64 > *m) {
            (
                "objectCountAboveMax",
                format!("property '{key}' has {count} values, at most {max} allowed"),
            )
        } else if let Some(min) = def.min_count.filter(|m| (count as i64) < *m) {
            (
                "objectCountBelowMin",
                format!("property '{key}' has {count} values, at least {min} required"),
            )
        } else {
            return true;
        };
        self.at(doc, site.pointer).error(code, message);
        false
    }

    /// One value: a literal of the property's datatype, or a term or DTMI naming an element.
    fn supplemental_value(
        &mut self,
        here: &Here<'_>,
        site: &SupplementalSite<'_>,
        raw: &Value,
    ) -> Option<PropValue> {
        let (doc, key, def) = (here.doc, site.key, site.def);
        let type_name = def.type_name.as_deref().unwrap_or("");
        if is_literal_type(def) {
            if literal_fits(def, raw) {
                return Some(PropValue::Literal(raw.clone()));
            }
            self.at(doc, site.pointer).value(raw).error(
                "stringInvalid",
                format!("property '{key}' has value {raw}, which is not a valid {type_name}"),
            );
            return None;
        }
        let Some(s) = raw.as_str() else {
            self.at(doc, site.pointer).value(raw).error(
                "refNotStringOrObject",
                format!("property '{key}' must name a {type_name}"),
            );
            return None;
        };
        let target = here
            .ctx
            .resolve_term(s)
            .map_or_else(|| s.to_string(), str::to_string);
        if !self.standard_mode && !self.supplemental_target_ok(&target, def) {
            self.at(doc, site.pointer).value(raw).error(
                "notRequiredType",
                format!(
                    "property '{key}' has value '{s}', which is not a {type_name} allowed by {}",
                    site.type_iri
                ),
            );
            return None;
        }
        Some(PropValue::Ref(target))
    }

    /// True when a supplemental object property may refer to `target` (units and the like).
    fn supplemental_target_ok(&self, target: &str, def: &SupplementalProperty) -> bool {
        let Some((elem, _)) = self.lookup(target) else {
            return false;
        };
        if let Some(parent) = def.child_of.as_deref() {
            let Some(std) = self.std else {
                return false;
            };
            let parent_id = elem
                .parent
                .as_ref()
                .map(|(p, _)| std.elems.get(*p).map(|e| e.id.as_str()).unwrap_or(""));
            return parent_id == Some(parent);
        }
        let Some(required) = def.type_iri.as_deref() else {
            return true;
        };
        if let Some(class) = required
            .strip_prefix("dtmi:dtdl:class:")
            .and_then(|r| r.split(';').next())
            && digest().is_subclass(&elem.class, class, elem.version)
        {
            return true;
        }
        elem.cotypes.iter().any(|c| {
            supplemental_chain(c)
                .iter()
                .any(|(iri, _)| *iri == required)
        })
    }
}
