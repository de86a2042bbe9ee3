//! The values of a material property: counted against the metamodel, then each one a
//! literal, an identifier, a reference to another element, or an element defined inline.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{ChildLink, Here, Parser};
use crate::digest::{PropertyCommon, PropertyRules, digest, limit_for};
use crate::engine::pattern::{is_lenient_id, matches};
use crate::engine::{ElemId, PropValue, RefSite, ptr};

const LENIENT_HINT: &str = " (non-DTMI KTWIN identifiers need --lenient-ids)";

/// The property being walked: on which element, under which key, with which rules.
pub(super) struct PropertySite<'s> {
    pub me: ElemId,
    pub pointer: &'s str,
    pub key: &'s str,
    /// The property's short name (`schema`), whatever the key (a term or its DTMI).
    pub name: &'s str,
    pub common: &'static PropertyCommon,
    pub rules: &'static PropertyRules,
}

impl PropertySite<'_> {
    /// `literal` datatype, `object` or `identifier`: the family of the validation ids.
    fn kind(&self) -> &'static str {
        if self.common.literal {
            self.common.datatype.as_deref().unwrap_or("literal")
        } else if self.common.class.is_some() {
            "object"
        } else {
            "identifier"
        }
    }
}

impl Parser<'_> {
    /// Walks a material property's value (one value or an array of them).
    pub(super) fn walk_property(
        &mut self,
        here: &Here<'_>,
        site: &PropertySite<'_>,
        value: &Value,
    ) {
        if site.common.datatype.as_deref() == Some("langString") {
            self.walk_lang_string(here, site, value);
            return;
        }
        let items: Vec<(&Value, String)> = match value {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (v, ptr(site.pointer, &i.to_string())))
                .collect(),
            v => vec![(v, site.pointer.to_string())],
        };
        if !self.check_value_count(here.doc, site, items.len()) {
            return;
        }
        let mut values = Vec::new();
        for (idx, (item, p)) in items.iter().enumerate() {
            if let Some(v) = self.walk_value(here, site, idx, item, p) {
                values.push(v);
            }
        }
        self.check_unique_children(here.doc, site, &values);
        self.arena.elems[site.me]
            .props
            .insert(site.name.to_string(), values);
    }

    /// Plurality and value counts.
    fn check_value_count(&mut self, doc: usize, site: &PropertySite<'_>, count: usize) -> bool {
        let (key, kind) = (site.key, site.kind());
        if !site.common.plural && count > 1 {
            self.at(doc, site.pointer).error(
                &format!("{kind}MultipleValues"),
                format!("property '{key}' takes a single value"),
            );
            return false;
        }
        if let Some(max) = site.rules.max_count.filter(|m| count as i64 > *m) {
            let code = if kind == "object" {
                "objectCountAboveMax"
            } else {
                "identifierCountAboveMax"
            };
            self.at(doc, site.pointer).error(
                code,
                format!("property '{key}' has {count} values, at most {max} allowed"),
            );
            return false;
        }
        if let Some(min) = site.rules.min_count.filter(|m| (count as i64) < *m) {
            self.at(doc, site.pointer).error(
                &format!("{kind}CountBelowMin"),
                format!("property '{key}' has {count} values, at least {min} required"),
            );
            return false;
        }
        true
    }

    /// One value of the property.
    fn walk_value(
        &mut self,
        here: &Here<'_>,
        site: &PropertySite<'_>,
        idx: usize,
        item: &Value,
        p: &str,
    ) -> Option<PropValue> {
        if site.common.literal {
            let datatype = site.common.datatype.as_deref();
            return self
                .check_literal(here, p, site.key, item, datatype, site.rules)
                .map(PropValue::Literal);
        }
        if site.common.class.is_none() {
            return self.identifier_value(here.doc, site, item, p);
        }
        match item {
            Value::String(s) => {
                let target = self.reference(here, p, site.key, s, site.rules)?;
                self.refs.push(RefSite {
                    from: site.me,
                    prop: site.name.to_string(),
                    target: target.clone(),
                    pointer: p.to_string(),
                    class: site
                        .rules
                        .class
                        .clone()
                        .or_else(|| site.common.class.clone()),
                    versions: site.rules.versions.clone(),
                    term: here.ctx.resolve_term(s).is_some(),
                });
                Some(PropValue::Ref(target))
            }
            // In DTDL v2 an object with nothing but `@id` refers to the element (v3 on:
            // idReference, reported by `inline_child`).
            Value::Object(child) if here.version() < 3 && child.len() == 1 => {
                match child.get("@id") {
                    Some(Value::String(id)) => self.id_only_reference(here, site, idx, id, p),
                    _ => self
                        .inline_child(here, site, idx, child, p)
                        .map(PropValue::Child),
                }
            }
            Value::Object(child) if site.rules.values.is_none() => self
                .inline_child(here, site, idx, child, p)
                .map(PropValue::Child),
            Value::Object(_) => {
                self.at(here.doc, p).value(item).error(
                    "refObjectNotAllowed",
                    format!("property '{}' must be a DTMI or term string", site.key),
                );
                None
            }
            other => {
                self.at(here.doc, p).value(other).error(
                    "refNotStringOrObject",
                    format!(
                        "property '{}' must be a DTMI string or an inline {} definition",
                        site.key,
                        site.common.class.as_deref().unwrap_or("element")
                    ),
                );
                None
            }
        }
    }

    /// `{"@id": "…"}` (DTDL v2): a reference when the identifier is a DTMI or a term,
    /// `idRefBadDtmiOrTerm` otherwise.
    fn id_only_reference(
        &mut self,
        here: &Here<'_>,
        site: &PropertySite<'_>,
        idx: usize,
        id: &str,
        p: &str,
    ) -> Option<PropValue> {
        if here.ctx.resolve_term(id).is_some() || super::is_dtmi_syntax(id, here.version()) {
            return self.walk_value(here, site, idx, &Value::from(id), &ptr(p, "@id"));
        }
        self.at(here.doc, &ptr(p, "@id")).value(&Value::from(id)).error(
            "idRefBadDtmiOrTerm",
            format!(
                "property '{}' has a value whose '@id' '{id}' is neither a DTMI nor a DTDL v{} term",
                site.key,
                here.version()
            ),
        );
        None
    }

    /// An identifier-valued property (a Relationship's target): a DTMI, not resolved.
    fn identifier_value(
        &mut self,
        doc: usize,
        site: &PropertySite<'_>,
        item: &Value,
        p: &str,
    ) -> Option<PropValue> {
        if let Some(s) = item.as_str()
            && (site
                .rules
                .pattern
                .as_ref()
                .is_none_or(|pat| matches(pat, s))
                || (self.opts.lenient_ids && is_lenient_id(s)))
        {
            return Some(PropValue::Literal(item.clone()));
        }
        let hint = if item.as_str().is_some_and(is_lenient_id) {
            LENIENT_HINT
        } else {
            ""
        };
        self.at(doc, p).value(item).error(
            "identifierNotDtmi",
            format!("property '{}' must be a DTMI{hint}", site.key),
        );
        None
    }

    /// An element defined inline as the property's value.
    fn inline_child(
        &mut self,
        here: &Here<'_>,
        site: &PropertySite<'_>,
        idx: usize,
        child: &Map<String, Value>,
        p: &str,
    ) -> Option<ElemId> {
        let version = here.version();
        if version >= 3 && child.len() == 1 && child.contains_key("@id") {
            self.at(here.doc, p).value(&Value::Object(child.clone())).error("idReference", format!("property '{}' has an inline definition with nothing but '@id'; write the DTMI string instead", site.key));
            return None;
        }
        let allowed = site
            .rules
            .class
            .clone()
            .or_else(|| site.common.class.clone())
            .unwrap_or_default();
        let segment = match site.common.dtmi_segment.as_deref() {
            // An element without `@id` is named after its parent and this segment.
            Some(seg) if !child.contains_key("@id") && !site.rules.id_required => {
                self.dtmi_segment(here.doc, p, site.key, child, seg)?
            }
            _ if site.common.plural => idx.to_string(),
            _ => String::new(),
        };
        let link = ChildLink {
            parent: site.me,
            prop: site.name,
            segment,
            id_required: site.rules.id_required,
        };
        let c = self.walk_element(here.doc, child, p, here.ctx, &allowed, Some(link))?;
        let child_version = self.arena.elems[c].version;
        if !site.rules.versions.is_empty() && !site.rules.versions.contains(&child_version) {
            self.at(here.doc, p).error(
                "disallowedVersionDefinition",
                format!(
                    "property '{}' cannot hold an element in DTDL v{child_version}",
                    site.key
                ),
            );
        }
        Some(c)
    }

    /// The segment an element without `@id` is identified by: its `name` (a string or a
    /// number, `1.5` written `1_5`); an element without one cannot be identified.
    fn dtmi_segment(
        &mut self,
        doc: usize,
        p: &str,
        key: &str,
        child: &Map<String, Value>,
        seg: &str,
    ) -> Option<String> {
        let written = child.iter().find_map(|(k, v)| {
            (k == seg || digest().property_names.get(k).is_some_and(|n| n == seg)).then_some(v)
        });
        let Some(written) = written else {
            self.at(doc, p).error(
                "missingDtmiSegPropertyValue",
                format!("property '{key}' has an element with neither '@id' nor '{seg}'"),
            );
            return None;
        };
        // One value, possibly in an array or a JSON-LD value object.
        let single = match written {
            Value::Array(items) if items.len() == 1 => items.first().unwrap_or(written),
            v => v,
        };
        let value = match single {
            Value::Object(o) => o.get("@value").unwrap_or(single),
            v => v,
        };
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if n.is_f64() => Some(n.to_string().replace('.', "_")),
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.at(doc, &ptr(p, seg)).value(other).error(
                    "dtmiSegPropertyNotStringOrNumber",
                    format!(
                        "property '{key}' has an element whose '{seg}' is not a string or number"
                    ),
                );
                None
            }
        }
    }

    /// Uniqueness of names (and enum values) among inline children.
    fn check_unique_children(&mut self, doc: usize, site: &PropertySite<'_>, values: &[PropValue]) {
        for unique in &site.rules.unique_properties {
            let mut seen = HashSet::new();
            for v in values {
                let PropValue::Child(c) = v else { continue };
                let Some(val) = self.arena.elems[*c].literal(unique).cloned() else {
                    continue;
                };
                if !seen.insert(val.to_string()) {
                    self.at(doc, site.pointer).value(&val).error(
                        "nonUniquePropertyValue",
                        format!(
                            "property '{}' has more than one element whose '{unique}' is {val}",
                            site.key
                        ),
                    );
                }
            }
        }
    }

    /// Resolves a string value of an object property to an identifier.
    fn reference(
        &mut self,
        here: &Here<'_>,
        pointer: &str,
        key: &str,
        s: &str,
        rules: &PropertyRules,
    ) -> Option<String> {
        let (doc, ctx) = (here.doc, here.ctx);
        let quoted = Value::from(s);
        if let Some(uris) = &rules.value_uris {
            let iri = ctx
                .resolve_term(s)
                .map_or_else(|| s.to_string(), str::to_string);
            if uris.contains(&iri) {
                return Some(iri);
            }
            let allowed = rules
                .values
                .as_ref()
                .map(|v| v.join(", "))
                .unwrap_or_default();
            self.at(doc, pointer).value(&quoted).error(
                "notRequiredValue",
                format!("property '{key}' has value '{s}'; expected one of: {allowed}"),
            );
            return None;
        }
        if let Some(iri) = ctx.resolve_term(s) {
            return Some(iri.to_string());
        }
        self.recommend_term(doc, pointer, s, Some(s), ctx);
        if let Some(rule) = digest().identifier_reference.get(&ctx.version.to_string())
            && matches(&rule.pattern, s)
        {
            let max = limit_for(&rule.max_length, &ctx.profile).unwrap_or(i64::MAX);
            if s.len() as i64 > max {
                self.at(doc, pointer).value(&quoted).error(
                    "identifierTooLong",
                    format!(
                        "identifier is {} characters long, the limit is {max}",
                        s.len()
                    ),
                );
                return None;
            }
            return Some(s.to_string());
        }
        self.lenient_reference(here, pointer, key, s)
    }

    /// A reference that is neither a term nor a DTMI: a KTWIN identifier or a term in the
    /// wrong case under `lenient_ids`, an error otherwise.
    fn lenient_reference(
        &mut self,
        here: &Here<'_>,
        pointer: &str,
        key: &str,
        s: &str,
    ) -> Option<String> {
        let (doc, ctx) = (here.doc, here.ctx);
        if self.opts.lenient_ids && is_lenient_id(s) {
            return Some(s.to_string());
        }
        if self.opts.lenient_ids
            && let Some((term, iri)) = digest().contexts.get(ctx.dtdl_context()).and_then(|c| {
                c.iter().find(|(t, i)| {
                    t.eq_ignore_ascii_case(s) && i.starts_with("dtmi:dtdl:instance:")
                })
            })
        {
            self.at(doc, pointer).value(&Value::from(s)).warning(
                "ktwin:dtdl:legacyTermCase",
                format!("'{s}' is not a DTDL term; read as '{term}' because of --lenient-ids"),
            );
            return Some(iri.clone());
        }
        let hint = if is_lenient_id(s) { LENIENT_HINT } else { "" };
        let version = ctx.version;
        self.at(doc, pointer).value(&Value::from(s)).error("badDtmiOrTerm", format!("property '{key}' has value '{s}', which is neither a DTMI nor a DTDL v{version} term{hint}"));
        None
    }
}
