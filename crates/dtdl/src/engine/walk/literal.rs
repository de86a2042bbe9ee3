//! Literal values: strings, booleans, integers and numbers, plain or as JSON-LD value
//! objects.

use serde_json::{Map, Value};

use super::{Here, Parser};
use crate::digest::{PropertyRules, limit_for};
use crate::engine::pattern::matches;
use crate::engine::ptr;

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl Parser<'_> {
    /// Checks a literal value; returns the normalized JSON value.
    pub(super) fn check_literal(
        &mut self,
        here: &Here<'_>,
        pointer: &str,
        key: &str,
        item: &Value,
        datatype: Option<&str>,
        rules: &PropertyRules,
    ) -> Option<Value> {
        let doc = here.doc;
        let raw = match item {
            Value::Object(o) => {
                self.value_object(doc, pointer, key, o, datatype, here.version())?
            }
            v => v,
        };
        let (good, code, expected) = match datatype {
            Some("string") => {
                return self.check_string(here, pointer, key, raw, rules);
            }
            Some("boolean") => (raw.is_boolean(), "booleanNotBoolean", "true or false"),
            Some("integer") => {
                return self.check_integer(doc, pointer, key, raw, rules);
            }
            // A datatype-less literal (`enumValue`) is a string, number or boolean; whether
            // it fits the governing datatype (the enum's `valueSchema`) is a set-level rule.
            _ => (
                raw.is_string() || raw.is_number() || raw.is_boolean(),
                "literalNotValid",
                "a JSON string, number or boolean",
            ),
        };
        if !good {
            self.at(doc, pointer)
                .value(raw)
                .error(code, format!("property '{key}' must be {expected}"));
            return None;
        }
        Some(raw.clone())
    }

    fn check_string(
        &mut self,
        here: &Here<'_>,
        pointer: &str,
        key: &str,
        raw: &Value,
        rules: &PropertyRules,
    ) -> Option<Value> {
        let doc = here.doc;
        let Some(s) = raw.as_str() else {
            self.at(doc, pointer).value(raw).error(
                "stringNotString",
                format!("property '{key}' must be a JSON string"),
            );
            return None;
        };
        let length = s.chars().count() as i64;
        if let Some(max) = rules
            .max_length
            .as_ref()
            .and_then(|m| limit_for(m, &here.ctx.profile))
            .filter(|max| length > *max)
        {
            self.at(doc, pointer).value(raw).error(
                "stringTooLong",
                format!("property '{key}' is {length} characters long, the limit is {max}"),
            );
            return None;
        }
        if let Some(p) = rules.pattern.as_deref().filter(|p| !matches(p, s)) {
            let desc = rules
                .pattern_desc
                .as_ref()
                .and_then(|d| d.get("en-us"))
                .cloned()
                .unwrap_or_else(|| format!("match {p}"));
            self.at(doc, pointer).value(raw).error(
                "stringInvalid",
                format!("property '{key}' has value '{s}', which is invalid: it must {desc}"),
            );
            return None;
        }
        Some(raw.clone())
    }

    fn check_integer(
        &mut self,
        doc: usize,
        pointer: &str,
        key: &str,
        raw: &Value,
        rules: &PropertyRules,
    ) -> Option<Value> {
        let Some(n) = raw.as_i64() else {
            self.at(doc, pointer).value(raw).error(
                "integerNotInteger",
                format!("property '{key}' must be a JSON integer"),
            );
            return None;
        };
        if let Some(min) = rules.min_inclusive.filter(|min| n < *min) {
            self.at(doc, pointer).value(raw).error(
                "valueBelowMin",
                format!("property '{key}' is {n}, the minimum is {min}"),
            );
            return None;
        }
        if let Some(max) = rules.max_inclusive.filter(|max| n > *max) {
            self.at(doc, pointer).value(raw).error(
                "valueAboveMax",
                format!("property '{key}' is {n}, the maximum is {max}"),
            );
            return None;
        }
        Some(raw.clone())
    }

    /// Unwraps a JSON-LD value object (`{"@value": v, "@type": "xsd:T"}`), reporting its
    /// misplaced members, a missing or mistyped `@value` and a `@type` of another datatype
    /// with the reference parser's ids.
    pub(super) fn value_object<'v>(
        &mut self,
        doc: usize,
        pointer: &str,
        key: &str,
        o: &'v Map<String, Value>,
        datatype: Option<&str>,
        version: u8,
    ) -> Option<&'v Value> {
        let kind = datatype.unwrap_or("literal");
        self.at(doc, pointer).warning(
            "ktwin:dtdl:valueObject",
            format!("property '{key}' uses a JSON-LD value object; a plain JSON value is simpler"),
        );
        self.value_object_members(doc, pointer, key, o, version);
        let Some(v) = o.get("@value") else {
            self.at(doc, pointer).error(
                &format!("{kind}ObjectNoValue"),
                format!("property '{key}' has an object without '@value'"),
            );
            return None;
        };
        if let Some(t) = o.get("@type") {
            self.value_object_type(doc, pointer, key, t, datatype)?;
        }
        let (fits, json) = match datatype {
            Some("string") => (v.is_string(), "string"),
            Some("duration") => (v.is_string(), "string"),
            Some("integer") => (v.is_i64() || v.is_u64(), "integer"),
            Some("numeric") => (v.is_number(), "numeric"),
            Some("boolean") => (v.is_boolean(), "boolean"),
            _ => (true, ""),
        };
        if !fits {
            self.at(doc, &ptr(pointer, "@value")).value(v).error(
                &format!("{kind}ValueNot{}", capitalize(json)),
                format!("property '{key}' has a value object whose '@value' is not a JSON {json}"),
            );
            return None;
        }
        Some(v)
    }

    /// Members a value object may not have: `@context`, `@id`, `@graph` always; from DTDL v3
    /// on `@language` and other keywords; and any non-keyword member.
    fn value_object_members(
        &mut self,
        doc: usize,
        pointer: &str,
        key: &str,
        o: &Map<String, Value>,
        version: u8,
    ) {
        let restrict_keywords = version >= 3;
        for k in o.keys() {
            let code = match k.as_str() {
                "@value" | "@type" => continue,
                "@context" => "valueObjectContext",
                "@id" => "valueObjectId",
                "@graph" => "valueObjectGraph",
                "@language" if restrict_keywords => "valueObjectLanguage",
                _ if k.starts_with('@') && restrict_keywords => "valueObjectKeyword",
                _ if k.starts_with('@') => continue,
                _ => "valueObjectInvalidProp",
            };
            self.at(doc, &ptr(pointer, k)).error(
                code,
                format!("property '{key}' has a value object with member '{k}'; only '@value' and '@type' are allowed"),
            );
        }
    }

    /// The `@type` of a value object: one type, the property's datatype.
    fn value_object_type(
        &mut self,
        doc: usize,
        pointer: &str,
        key: &str,
        t: &Value,
        datatype: Option<&str>,
    ) -> Option<()> {
        let kind = datatype.unwrap_or("literal");
        let single = match t {
            Value::String(s) => Some(s.as_str()),
            Value::Array(a) if a.len() == 1 => a.first().and_then(Value::as_str),
            _ => None,
        };
        let Some(single) = single else {
            self.at(doc, &ptr(pointer, "@type")).value(t).error(
                "literalTypeNotSingular",
                format!("property '{key}' has a value object whose '@type' is not one type"),
            );
            return None;
        };
        let candidates: &[&str] = match datatype {
            Some("numeric") => &["decimal", "double"],
            Some(d) => &[d][..],
            None => &["string", "integer", "decimal", "boolean"],
        };
        let xsd = candidates.first().copied().unwrap_or("string");
        let ok = candidates.iter().any(|x| {
            single == format!("xsd:{x}")
                || single == format!("http://www.w3.org/2001/XMLSchema#{x}")
        });
        if !ok {
            let code = if datatype.is_some() {
                format!("{kind}TypeNot{}", capitalize(kind))
            } else {
                "literalNotValid".to_string()
            };
            self.at(doc, &ptr(pointer, "@type")).value(t).error(
                &code,
                format!("property '{key}' value object '@type' must be 'xsd:{xsd}'"),
            );
            return None;
        }
        Some(())
    }
}
