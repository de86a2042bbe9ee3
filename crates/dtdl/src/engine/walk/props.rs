//! An element's properties: each key is a JSON-LD keyword, a property of the material class,
//! a property a supplemental type adds, or an undefined term; then required properties.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{Here, Outcome, Parser, resolve_iri, supplemental_chain};
use crate::digest::{SupplementalProperty, digest};
use crate::engine::{ElemId, PropValue};

/// Literal datatypes of supplemental properties (the others name elements).
const LITERAL_TYPES: &[&str] = &[
    "string", "integer", "duration", "decimal", "IRI", "boolean", "double", "long",
];

/// Properties the element's supplemental types add: property IRI → (defining type IRI, rules).
pub(crate) type SupplementalDefs =
    HashMap<&'static str, (&'static str, &'static SupplementalProperty)>;

/// True when the object carries the property under some key the context maps to it.
fn obj_has_property(here: &Here<'_>, name: &str) -> bool {
    here.obj.iter().any(|(k, v)| {
        !v.is_null()
            && (k == name
                || here
                    .ctx
                    .resolve_term(k)
                    .is_some_and(|iri| digest().property_names.get(iri).is_some_and(|n| n == name)))
    })
}

impl Parser<'_> {
    /// The properties the cotypes (and their ancestors) add; two unrelated types adding the
    /// same property conflict.
    pub(super) fn supplemental_definitions(
        &mut self,
        here: &Here<'_>,
        cotypes: &[String],
    ) -> SupplementalDefs {
        let mut defs = SupplementalDefs::new();
        let mut definer: HashMap<&'static str, &str> = HashMap::new();
        for c in cotypes {
            // Within one type's ancestry the nearest definition wins (it narrows the value type).
            let mut own = SupplementalDefs::new();
            for (tiri, t) in supplemental_chain(c) {
                for (piri, pdef) in &t.properties {
                    own.entry(piri.as_str()).or_insert((tiri, pdef));
                }
            }
            for (piri, def) in own {
                match definer.get(piri) {
                    Some(other)
                        if *other != c.as_str()
                            && defs.get(piri).is_some_and(|(t, _)| *t != def.0) =>
                    {
                        self.at(here.doc, &here.key("@type")).error(
                            "conflictingSupplementalTypes",
                            format!(
                                "supplemental types {other} and {c} both add property '{}'",
                                def.1.property_name
                            ),
                        );
                    }
                    _ => {
                        definer.insert(piri, c.as_str());
                        defs.insert(piri, def);
                    }
                }
            }
        }
        defs
    }

    /// Walks every key of the element.
    pub(super) fn walk_properties(
        &mut self,
        here: &Here<'_>,
        me: ElemId,
        class: &'static str,
        supplemental: &SupplementalDefs,
    ) {
        let mut seen = HashSet::new();
        for (key, value) in here.obj {
            if matches!(key.as_str(), "@context" | "@id" | "@type") {
                continue;
            }
            if key.starts_with('@') {
                let top_level = self.arena.elems[me].parent.is_none();
                self.walk_keyword(here, key, top_level);
                continue;
            }
            let iri = resolve_iri(here.ctx, key);
            if let Some(iri) = &iri {
                self.recommend_term(here.doc, &here.key(key), key, Some(iri), here.ctx);
                if self.walk_material_property(here, me, class, key, iri, value, &mut seen) {
                    continue;
                }
                if let Some((tiri, def)) = supplemental.get(iri.as_str()) {
                    self.walk_supplemental_key(here, me, key, iri, value, (tiri, def), &mut seen);
                    continue;
                }
            }
            self.walk_undefined_property(here, me, class, key, iri.as_deref(), value);
        }
    }

    /// A JSON-LD keyword other than `@context`, `@id` and `@type` (`@graph` of a top-level
    /// element is reported before its walk).
    fn walk_keyword(&mut self, here: &Here<'_>, key: &str, top_level: bool) {
        let version = here.version();
        if key == "@graph" {
            self.at(here.doc, &here.key(key))
                .error("graphDisallowed", "'@graph' is not allowed");
        } else if version >= 3 {
            let code = if top_level {
                "topLevelKeywordDisallowed"
            } else {
                "keywordDisallowed"
            };
            self.at(here.doc, &here.key(key)).error(
                code,
                format!("JSON-LD keyword '{key}' is not allowed in DTDL v{version}"),
            );
        }
    }

    /// A property of the material class; false when `iri` is not one in this version.
    #[allow(clippy::too_many_arguments)]
    fn walk_material_property(
        &mut self,
        here: &Here<'_>,
        me: ElemId,
        class: &'static str,
        key: &str,
        iri: &str,
        value: &Value,
        seen: &mut HashSet<String>,
    ) -> bool {
        let version = here.version();
        let Some(name) = digest().property_names.get(iri) else {
            return false;
        };
        let Some((common, rules)) = digest()
            .class(class)
            .and_then(|c| c.property(name, version))
            .filter(|_| iri.ends_with(&format!(";{version}")))
        else {
            return false;
        };
        let (doc, p) = (here.doc, here.key(key));
        if !seen.insert(name.clone()) {
            self.at(doc, &p).error(
                "duplicatePropertyName",
                format!("property '{name}' is given more than once (as a term and as a DTMI)"),
            );
        } else if value.is_null() {
            self.at(doc, &p).error(
                "ktwin:dtdl:nullValue",
                format!("property '{key}' is null; give a value or leave the property out"),
            );
        } else {
            if rules.deprecated {
                self.at(doc, &p).value(value).warning(
                    "ktwin:dtdl:deprecatedProperty",
                    format!("property '{key}' is deprecated in DTDL v{version}"),
                );
            }
            if !rules.allowed {
                self.at(doc, &p).value(value).error(
                    "noTypeThatAllows",
                    format!("property '{key}' cannot be set on a {class}"),
                );
            } else {
                let site = super::values::PropertySite {
                    me,
                    pointer: &p,
                    key,
                    name,
                    common,
                    rules,
                };
                self.walk_property(here, &site, value);
            }
        }
        true
    }

    /// A property a supplemental type adds.
    #[allow(clippy::too_many_arguments)]
    fn walk_supplemental_key(
        &mut self,
        here: &Here<'_>,
        me: ElemId,
        key: &str,
        iri: &str,
        value: &Value,
        (type_iri, def): (&str, &'static SupplementalProperty),
        seen: &mut HashSet<String>,
    ) {
        let p = here.key(key);
        if !seen.insert(iri.to_string()) {
            self.at(here.doc, &p).error(
                "duplicatePropertyName",
                format!(
                    "property '{}' is given more than once (as a term and as a DTMI)",
                    def.property_name
                ),
            );
            return;
        }
        let site = super::supplemental::SupplementalSite {
            me,
            pointer: &p,
            key,
            iri,
            type_iri,
            def,
        };
        if !self.walk_supplemental(here, &site, value) {
            // Present though invalid: do not also report it missing.
            self.arena.elems[me]
                .supplemental
                .entry(iri.to_string())
                .or_default();
        }
    }

    /// A key no active context defines for this element.
    fn walk_undefined_property(
        &mut self,
        here: &Here<'_>,
        me: ElemId,
        class: &'static str,
        key: &str,
        iri: Option<&str>,
        value: &Value,
    ) {
        let (doc, version, p) = (here.doc, here.version(), here.key(key));
        let (case, code) = match iri {
            Some(_) => (
                "irrelevantDtmiOrTermAsProperty",
                "propertyIrrelevantDtmiOrTerm",
            ),
            None if key.starts_with("dtmi:") => ("invalidDtmiAsProperty", "propertyInvalidDtmi"),
            None if key.contains(':') => ("notDtmiNorTermAsProperty", "propertyNotDtmiNorTerm"),
            None => ("undefinedTermAsProperty", "propertyUndefinedTerm"),
        };
        if self.opts.lenient_ids
            && key == "unit"
            && value.is_string()
            && matches!(class, "Property" | "Telemetry")
        {
            // The KTWIN ontology dropped semantic types but kept their units.
            self.at(doc, &p).value(value).warning("ktwin:dtdl:legacyUnit", format!("'unit' needs a semantic type such as [\"{class}\", \"Temperature\"]; kept because of --lenient-ids"));
            self.arena.elems[me].supplemental.insert(
                format!("dtmi:dtdl:property:unit;{version}"),
                vec![PropValue::Literal(value.clone())],
            );
            return;
        }
        // Unknown properties are only possible on elements co-typed with an unknown type.
        let outcome = if self.arena.elems[me].undefined_cotype {
            self.apocrypha(version, case)
        } else {
            Outcome::Invalid
        };
        match outcome {
            Outcome::Valid => {}
            Outcome::Tenable if self.opts.allow_undefined_extensions => {}
            _ => {
                self.at(doc, &p).error(code, format!("property '{key}' is not defined for @type {class} in DTDL v{version} or any active extension"));
            }
        }
    }

    /// Properties of the class and of the supplemental types that must be present.
    pub(super) fn check_required_properties(
        &mut self,
        here: &Here<'_>,
        me: ElemId,
        class_name: &'static str,
        supplemental: &SupplementalDefs,
    ) {
        let Some(class) = digest().class(class_name) else {
            return;
        };
        let mut names: Vec<&String> = class.properties.keys().collect();
        names.sort();
        for name in names {
            let Some((common, rules)) = class.property(name, here.version()) else {
                continue;
            };
            let required = rules.allowed && (rules.min_count.unwrap_or(0) >= 1 || !common.optional);
            if required
                && !self.arena.elems[me].props.contains_key(name)
                && !obj_has_property(here, name)
            {
                let code = if common.literal {
                    "missingLiteralProperty"
                } else {
                    "missingObjectProperty"
                };
                self.at(here.doc, here.pointer)
                    .error(code, format!("{class_name} requires property '{name}'"));
            }
        }
        for (piri, (tiri, pdef)) in supplemental {
            if pdef.min_count.unwrap_or(0) >= 1
                && !self.arena.elems[me].supplemental.contains_key(*piri)
            {
                let code = if LITERAL_TYPES.contains(&pdef.type_name.as_deref().unwrap_or("")) {
                    "missingSupplementalLiteralProperty"
                } else {
                    "missingSupplementalObjectProperty"
                };
                self.at(here.doc, here.pointer).error(
                    code,
                    format!("co-type {tiri} requires property '{}'", pdef.property_name),
                );
            }
        }
    }
}
