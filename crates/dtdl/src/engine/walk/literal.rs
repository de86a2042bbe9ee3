//! Literal values: strings, booleans, integers (plain or as JSON-LD value objects) and
//! localizable strings (a string, a language map, or language-tagged values).

use serde_json::{Map, Value};

use super::values::PropertySite;
use super::{Here, Parser};
use crate::digest::{PropertyRules, limit_for};
use crate::engine::pattern::{is_language_code, matches};
use crate::engine::{PropValue, ptr};

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A localizable string being collected: where, under which key, and its limits.
struct LangCollector<'c> {
    doc: usize,
    key: &'c str,
    max: Option<i64>,
    map: Map<String, Value>,
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
            _ => (
                raw.is_string() || raw.is_i64() || raw.is_u64() || raw.is_boolean(),
                "literalNotValid",
                "a JSON string, integer or boolean",
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

    /// Unwraps a JSON-LD value object (`{"@value": v, "@type": "xsd:T"}`).
    fn value_object<'v>(
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
        let Some(v) = o.get("@value") else {
            self.at(doc, pointer).error(
                &format!("{kind}ObjectNoValue"),
                format!("property '{key}' has an object without '@value'"),
            );
            return None;
        };
        for k in o.keys() {
            let allowed = match k.as_str() {
                "@value" | "@type" => true,
                "@id" | "@context" | "@graph" => false,
                _ => version < 3,
            };
            if !allowed {
                self.at(doc, &ptr(pointer, k)).error("valueObjectKeyword", format!("property '{key}' value object may only have '@value' and '@type', found '{k}'"));
                return None;
            }
        }
        let Some(t) = o.get("@type") else {
            return Some(v);
        };
        let single = match t {
            Value::String(s) => Some(s.as_str()),
            Value::Array(a) if a.len() == 1 => a.first().and_then(Value::as_str),
            _ => None,
        };
        let candidates: &[&str] = match datatype {
            Some(d) => &[d][..],
            None => &["string", "integer", "boolean"],
        };
        let xsd = candidates.first().copied().unwrap_or("string");
        let ok = single.is_some_and(|s| {
            candidates.iter().any(|x| {
                s == format!("xsd:{x}") || s == format!("http://www.w3.org/2001/XMLSchema#{x}")
            })
        });
        if !ok {
            self.at(doc, &ptr(pointer, "@type")).value(t).error(
                &format!("{kind}TypeNot{}", capitalize(kind)),
                format!("property '{key}' value object '@type' must be 'xsd:{xsd}'"),
            );
            return None;
        }
        Some(v)
    }

    /// A localizable string: a string (in the default language), a language map, or an
    /// array of strings and language-tagged value objects.
    pub(super) fn walk_lang_string(
        &mut self,
        here: &Here<'_>,
        site: &PropertySite<'_>,
        value: &Value,
    ) {
        let (doc, key, pointer) = (here.doc, site.key, site.pointer);
        let default_lang = site
            .rules
            .default_language
            .clone()
            .unwrap_or_else(|| "en".into());
        let mut lang = LangCollector {
            doc,
            key,
            max: site
                .rules
                .max_length
                .as_ref()
                .and_then(|m| limit_for(m, &here.ctx.profile)),
            map: Map::new(),
        };
        match value {
            Value::String(_) => self.add_lang_entry(&mut lang, &default_lang, value, pointer),
            Value::Object(o) if o.contains_key("@value") => {
                self.at(doc, pointer).value(value).error("langTagValueInLangMap", format!("property '{key}' is a language-tagged value object; expected a language map such as {{\"en\": \"text\"}}"));
            }
            Value::Object(o) => {
                for (code, text) in o {
                    if code.starts_with('@') {
                        self.at(doc, &ptr(pointer, code)).error(
                            "langMapObjKeyword",
                            format!("property '{key}' has keyword '{code}' in a language map"),
                        );
                        continue;
                    }
                    self.add_lang_entry(&mut lang, code, text, &ptr(pointer, code));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = ptr(pointer, &i.to_string());
                    self.lang_array_item(here, &mut lang, &default_lang, item, &p);
                }
            }
            other => {
                self.at(doc, pointer).value(other).error(
                    "langStringElementNotStringOrObject",
                    format!("property '{key}' must be a string or a language map"),
                );
            }
        }
        self.arena.elems[site.me].props.insert(
            site.name.to_string(),
            vec![PropValue::Literal(Value::Object(lang.map))],
        );
    }

    fn lang_array_item(
        &mut self,
        here: &Here<'_>,
        lang: &mut LangCollector<'_>,
        default_lang: &str,
        item: &Value,
        p: &str,
    ) {
        let (doc, key) = (lang.doc, lang.key);
        match item {
            Value::String(_) => self.add_lang_entry(lang, default_lang, item, p),
            Value::Object(o) if o.contains_key("@value") => {
                self.lang_value_object(here.version(), lang, p, o, default_lang)
            }
            Value::Object(_) => {
                self.at(doc, p).value(item).error("langStringElementNoValue", format!("property '{key}' array elements must be strings or {{\"@value\", \"@language\"}} objects"));
            }
            other => {
                self.at(doc, p).value(other).error(
                    "langStringElementNotStringOrObject",
                    format!("property '{key}' elements must be strings or language-tagged objects"),
                );
            }
        }
    }

    /// Adds one language's text, checking the code, the length and uniqueness.
    fn add_lang_entry(&mut self, lang: &mut LangCollector<'_>, code: &str, text: &Value, p: &str) {
        let (doc, key) = (lang.doc, lang.key);
        let Some(s) = text.as_str() else {
            self.at(doc, p).value(text).error(
                "langStringValueNotString",
                format!("property '{key}' must hold strings"),
            );
            return;
        };
        if !is_language_code(code) {
            self.at(doc, p).value(&Value::from(code)).error(
                "langStringInvalidCode",
                format!("property '{key}' has invalid language code '{code}'"),
            );
            return;
        }
        let length = s.chars().count() as i64;
        if let Some(max) = lang.max.filter(|max| length > *max) {
            self.at(doc, p).value(text).error(
                "langStringValueTooLong",
                format!("property '{key}' is {length} characters long, the limit is {max}"),
            );
            return;
        }
        if lang.map.insert(code.to_string(), Value::from(s)).is_some() {
            self.at(doc, p).value(&Value::from(code)).error(
                "langStringCodeNotUnique",
                format!("property '{key}' has several values for language '{code}'"),
            );
        }
    }

    /// `{"@value": "text", "@language": "en"}` in an array of localized strings.
    fn lang_value_object(
        &mut self,
        version: u8,
        lang: &mut LangCollector<'_>,
        pointer: &str,
        o: &Map<String, Value>,
        default_lang: &str,
    ) {
        let (doc, key) = (lang.doc, lang.key);
        for k in o.keys() {
            let allowed = matches!(k.as_str(), "@value" | "@language")
                || (version < 3 && !matches!(k.as_str(), "@id" | "@context" | "@graph"));
            if !allowed {
                self.at(doc, &ptr(pointer, k)).error(
                    "langStringElementInvalidProp",
                    format!("property '{key}' language-tagged value has extra property '{k}'"),
                );
                return;
            }
        }
        let Some(text) = o.get("@value") else {
            self.at(doc, pointer).error(
                "langStringElementNoValue",
                format!("property '{key}' language-tagged value has no '@value'"),
            );
            return;
        };
        let code = match o.get("@language") {
            Some(Value::String(l)) => l.clone(),
            Some(other) => {
                self.at(doc, pointer).value(other).error(
                    "langStringElementCodeNotString",
                    format!("property '{key}' '@language' must be a string"),
                );
                return;
            }
            None => default_lang.to_string(),
        };
        self.add_lang_entry(lang, &code, text, pointer)
    }
}
