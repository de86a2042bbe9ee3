//! Values of the properties supplemental types add (`unit`, `ttl`, `telemetryTopic`, …).

use serde_json::Value;

use super::{Here, Parser, supplemental_chain};
use crate::digest::{SupplementalProperty, digest};
use crate::engine::pattern::matches;
use crate::engine::{ElemId, PropValue, RefSite};

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

/// An ISO 8601 duration (`PT15S`, `P1DT2H`): at least one component, time ones after `T`.
const DURATION: &str =
    r"^-?P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$";

/// Why a literal value does not fit the property's datatype and limits (`None`: it fits).
fn literal_misfit(def: &SupplementalProperty, raw: &Value) -> Option<&'static str> {
    let bound = |b: &Option<Value>| b.as_ref().and_then(Value::as_f64);
    match def.type_name.as_deref().unwrap_or("") {
        "string" | "IRI" => {
            let s = raw.as_str()?;
            if def.max_length.is_some_and(|m| s.chars().count() as i64 > m) {
                Some("stringTooLong")
            } else if def.pattern.as_ref().is_some_and(|p| !matches(p, s)) {
                Some("stringInvalid")
            } else {
                None
            }
        }
        "duration" => {
            (!raw.as_str().is_some_and(|s| matches(DURATION, s))).then_some("durationInvalid")
        }
        "integer" | "decimal" | "double" => {
            let n = raw.as_f64()?;
            if bound(&def.min_inclusive).is_some_and(|m| n < m) {
                Some("valueBelowMin")
            } else if bound(&def.max_inclusive).is_some_and(|m| n > m) {
                Some("valueAboveMax")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The id of a value of the wrong JSON type for the property's datatype, if it is one.
fn wrong_json_type(type_name: &str, raw: &Value) -> Option<&'static str> {
    match type_name {
        "string" | "IRI" => (!raw.is_string()).then_some("stringNotString"),
        "duration" => (!raw.is_string()).then_some("durationNotString"),
        "integer" => (!raw.is_i64() && !raw.is_u64()).then_some("integerNotInteger"),
        "decimal" | "double" => (!raw.is_number()).then_some("numericNotNumeric"),
        "boolean" => (!raw.is_boolean()).then_some("booleanNotBoolean"),
        _ => None,
    }
}

/// The family of validation ids of a literal property's JSON-LD value objects (`None` for
/// properties naming elements).
fn value_object_datatype(def: &SupplementalProperty) -> Option<&'static str> {
    match def.type_name.as_deref().unwrap_or("") {
        "string" | "IRI" => Some("string"),
        "duration" => Some("duration"),
        "integer" => Some("integer"),
        "decimal" | "double" => Some("numeric"),
        "boolean" => Some("boolean"),
        _ => None,
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
        let datatype = value_object_datatype(site.def);
        for item in items {
            let raw = match (item, datatype) {
                (Value::Object(o), Some(datatype)) => {
                    let version = here.version();
                    let unwrapped = self.value_object(
                        here.doc,
                        site.pointer,
                        site.key,
                        o,
                        Some(datatype),
                        version,
                    );
                    match unwrapped {
                        Some(v) => v,
                        None => return false,
                    }
                }
                (v, _) => v,
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
            let code = if is_literal_type(def) {
                "literalMultipleValues"
            } else {
                "objectMultipleValues"
            };
            (code, format!("property '{key}' takes a single value"))
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
            let Some(code) = wrong_json_type(type_name, raw).or_else(|| literal_misfit(def, raw))
            else {
                // An IRI may be written as a term of the active contexts (`"overrides": "unit"`).
                let resolved = match (type_name, raw.as_str()) {
                    ("IRI", Some(s)) => here.ctx.resolve_term(s).map(Value::from),
                    _ => None,
                };
                return Some(PropValue::Literal(resolved.unwrap_or_else(|| raw.clone())));
            };
            self.at(doc, site.pointer).value(raw).error(
                code,
                format!("property '{key}' has value {raw}, which is not a valid {type_name}"),
            );
            return None;
        }
        let Some(s) = raw.as_str() else {
            self.non_reference_value(doc, site, raw);
            return None;
        };
        let target = here
            .ctx
            .resolve_term(s)
            .map_or_else(|| s.to_string(), str::to_string);
        if self.standard_mode {
            return Some(PropValue::Ref(target));
        }
        let codes: &[&str] = match self.supplemental_target(&target, def) {
            Target::Fits => return Some(PropValue::Ref(target)),
            Target::Unknown => return self.unknown_supplemental_target(here, site, s, target),
            Target::WrongType => &["badType"],
            Target::WrongParent => &["badType", "wrongParent"],
        };
        for code in codes {
            self.at(doc, site.pointer).value(raw).secondary(&target).error(
                code,
                format!(
                    "property '{key}' has value '{s}', which is not a {type_name} allowed by {}",
                    site.type_iri
                ),
            );
        }
        None
    }

    /// A value naming no element known so far: a term of the active contexts names no
    /// element of the property's type (`badType`); a DTMI is resolved with the set's other
    /// references (it may be defined later, or be undefined); anything else is neither
    /// (`badDtmiOrTerm`), as the reference parser reads supplemental properties.
    fn unknown_supplemental_target(
        &mut self,
        here: &Here<'_>,
        site: &SupplementalSite<'_>,
        written: &str,
        target: String,
    ) -> Option<PropValue> {
        let (doc, key, version) = (here.doc, site.key, here.version());
        let raw = Value::from(written);
        if here.ctx.resolve_term(written).is_some() {
            self.at(doc, site.pointer).value(&raw).secondary(&target).error(
                "badType",
                format!("property '{key}' has value '{written}', a term that names no element it allows"),
            );
            return None;
        }
        if super::is_dtmi_syntax(written, version) {
            self.refs.push(RefSite {
                from: site.me,
                prop: site.iri.to_string(),
                target: target.clone(),
                pointer: site.pointer.to_string(),
                class: None,
                versions: Vec::new(),
                term: false,
            });
            return Some(PropValue::Ref(target));
        }
        self.at(doc, site.pointer).value(&raw).error(
            "badDtmiOrTerm",
            format!("property '{key}' has value '{written}', which is neither a DTMI nor a DTDL v{version} term"),
        );
        None
    }

    /// A value of an object property that is not a term or DTMI string: an inline object is
    /// not allowed (and then the property has no value), anything else is not a reference.
    fn non_reference_value(&mut self, doc: usize, site: &SupplementalSite<'_>, raw: &Value) {
        let (key, def) = (site.key, site.def);
        let type_name = def.type_name.as_deref().unwrap_or("");
        if !raw.is_object() {
            self.at(doc, site.pointer).value(raw).error(
                "refNotStringOrObject",
                format!("property '{key}' must name a {type_name}"),
            );
            return;
        }
        self.at(doc, site.pointer).value(raw).error(
            "refObjectNotAllowed",
            format!("property '{key}' must name a {type_name} by its term or DTMI, not define one"),
        );
        if def.min_count.unwrap_or(0) >= 1 && !def.plural {
            self.at(doc, site.pointer).error(
                "objectCountBelowMin",
                format!("property '{key}' needs a {type_name}"),
            );
        }
    }

    /// Whether a supplemental object property may refer to `target` (units and the like).
    fn supplemental_target(&self, target: &str, def: &SupplementalProperty) -> Target {
        let Some((elem, _)) = self.lookup(target) else {
            return Target::Unknown;
        };
        if let Some(parent) = def.child_of.as_deref() {
            let Some(std) = self.std else {
                return Target::Unknown;
            };
            let parent_id = elem
                .parent
                .as_ref()
                .map(|(p, _)| std.elems.get(*p).map(|e| e.id.as_str()).unwrap_or(""));
            return if parent_id == Some(parent) {
                Target::Fits
            } else {
                Target::WrongParent
            };
        }
        let Some(required) = def.type_iri.as_deref() else {
            return Target::Fits;
        };
        let of_class = required
            .strip_prefix("dtmi:dtdl:class:")
            .and_then(|r| r.split(';').next())
            .is_some_and(|class| digest().is_subclass(&elem.class, class, elem.version));
        let of_cotype = elem.cotypes.iter().any(|c| {
            supplemental_chain(c)
                .iter()
                .any(|(iri, _)| *iri == required)
        });
        if of_class || of_cotype {
            Target::Fits
        } else {
            Target::WrongType
        }
    }
}

/// How the element a supplemental object property names fits the property.
enum Target {
    Fits,
    /// Nothing is defined under that identifier.
    Unknown,
    /// The element is not of the property's type.
    WrongType,
    /// The element is not a child of the enumeration the property draws from (a unit of
    /// another quantity).
    WrongParent,
}
