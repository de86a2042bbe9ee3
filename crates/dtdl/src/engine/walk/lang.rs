//! Localizable strings (`displayName`, `description`): a string in the default language, a
//! language map `{"en": "…"}`, or an array of strings and language-tagged value objects
//! `{"@value": "…", "@language": "en"}`. Each form has its own validation ids in the
//! reference parser (`langString…` for maps, `langStringElement…` for array elements).

use serde_json::{Map, Value};

use super::values::PropertySite;
use super::{Here, Parser};
use crate::digest::limit_for;
use crate::engine::pattern::is_language_code;
use crate::engine::{PropValue, ptr};

/// A localizable string being collected: where, under which key, its limits, and the
/// language codes met so far.
struct LangCollector<'c> {
    doc: usize,
    key: &'c str,
    max: Option<i64>,
    /// DTDL v3+ rejects JSON-LD keywords the value objects do not need.
    restrict_keywords: bool,
    map: Map<String, Value>,
}

impl LangCollector<'_> {
    /// Records one language's text; false when the language already has one.
    fn insert(&mut self, code: &str, text: Option<&str>) -> bool {
        if self.map.contains_key(code) {
            return false;
        }
        self.map
            .insert(code.to_string(), Value::from(text.unwrap_or_default()));
        true
    }
}

impl Parser<'_> {
    /// Walks a localizable string and stores it as a language map.
    pub(super) fn walk_lang_string(
        &mut self,
        here: &Here<'_>,
        site: &PropertySite<'_>,
        value: &Value,
    ) {
        let default_lang = site
            .rules
            .default_language
            .clone()
            .unwrap_or_else(|| "en".into());
        let mut lang = LangCollector {
            doc: here.doc,
            key: site.key,
            max: site
                .rules
                .max_length
                .as_ref()
                .and_then(|m| limit_for(m, &here.ctx.profile)),
            restrict_keywords: here.version() >= 3,
            map: Map::new(),
        };
        match value {
            Value::Object(o) => self.lang_map(&mut lang, o, site.pointer),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = ptr(site.pointer, &i.to_string());
                    self.lang_array_item(&mut lang, &default_lang, item, &p);
                }
            }
            // A lone string or value is the one element of an array.
            other => self.lang_array_item(&mut lang, &default_lang, other, site.pointer),
        }
        self.arena.elems[site.me].props.insert(
            site.name.to_string(),
            vec![PropValue::Literal(Value::Object(lang.map))],
        );
    }

    /// A language map: members named by language codes, holding strings.
    fn lang_map(&mut self, lang: &mut LangCollector<'_>, o: &Map<String, Value>, pointer: &str) {
        let (doc, key) = (lang.doc, lang.key);
        let tagged_value = o.len() == 2
            && o.get("@value").is_some_and(Value::is_string)
            && o.contains_key("@language");
        if tagged_value {
            self.at(doc, pointer).value(&Value::Object(o.clone())).error("langTagValueInLangMap", format!("property '{key}' is a language-tagged value object; outside an array a language map such as {{\"en\": \"text\"}} is expected"));
            return;
        }
        for (code, text) in o {
            let p = ptr(pointer, code);
            if code.starts_with('@') {
                self.at(doc, &p).error(
                    "langMapObjKeyword",
                    format!("property '{key}' has keyword '{code}' in a language map"),
                );
                continue;
            }
            if !is_language_code(code) {
                self.at(doc, &p).value(&Value::from(code.as_str())).error(
                    "langStringInvalidCode",
                    format!("property '{key}' has invalid language code '{code}'; expected e.g. 'en' or 'en-US'"),
                );
            }
            let Some(s) = text.as_str() else {
                self.at(doc, &p).value(text).error(
                    "langStringValueNotString",
                    format!("property '{key}' with language code '{code}' must hold a string"),
                );
                continue;
            };
            self.check_lang_length(lang, s, text, &p);
            lang.insert(code, Some(s));
        }
    }

    /// One element of a localizable-string array: a string in the default language or a
    /// language-tagged value object.
    fn lang_array_item(
        &mut self,
        lang: &mut LangCollector<'_>,
        default_lang: &str,
        item: &Value,
        p: &str,
    ) {
        let (doc, key) = (lang.doc, lang.key);
        let (code, text) = match item {
            Value::String(s) => (default_lang.to_string(), Some(s.as_str())),
            Value::Object(o) => {
                let Some(tagged) = self.lang_tagged_value(lang, default_lang, o, p) else {
                    return;
                };
                tagged
            }
            other => {
                self.at(doc, p).value(other).error(
                    "langStringElementNotStringOrObject",
                    format!("property '{key}' must be a string, a language map, or an array of strings and language-tagged objects"),
                );
                return;
            }
        };
        if let Some(s) = text {
            self.check_lang_length(lang, s, item, p);
        }
        if !lang.insert(&code, text) {
            self.at(doc, p).value(&Value::from(code.as_str())).error(
                "langStringElementCodeNotUnique",
                format!("property '{key}' has more than one value for language '{code}' (a string or an object without '@language' is in the default language '{default_lang}')"),
            );
        }
    }

    /// `{"@value": "text", "@language": "en"}`: its language code and text; `None` when the
    /// element cannot be read.
    fn lang_tagged_value<'o>(
        &mut self,
        lang: &LangCollector<'_>,
        default_lang: &str,
        o: &'o Map<String, Value>,
        p: &str,
    ) -> Option<(String, Option<&'o str>)> {
        let (doc, key) = (lang.doc, lang.key);
        let code = match o.get("@language") {
            None => default_lang.to_string(),
            Some(Value::String(l)) if !l.is_empty() => {
                if !is_language_code(l) {
                    self.at(doc, &ptr(p, "@language")).value(&Value::from(l.as_str())).error(
                        "langStringElementInvalidCode",
                        format!("property '{key}' has invalid language code '{l}'; expected e.g. 'en' or 'en-US'"),
                    );
                }
                l.clone()
            }
            Some(other) => {
                self.at(doc, &ptr(p, "@language")).value(other).error(
                    "langStringElementCodeNotString",
                    format!("property '{key}' '@language' must be a non-empty string"),
                );
                return None;
            }
        };
        let text = match o.get("@value") {
            None => {
                self.at(doc, p).error(
                    "langStringElementNoValue",
                    format!("property '{key}' array elements that are objects need '@value'"),
                );
                None
            }
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                self.at(doc, &ptr(p, "@value")).value(other).error(
                    "langStringElementValueNotString",
                    format!("property '{key}' '@value' must be a string"),
                );
                return None;
            }
        };
        self.lang_tagged_members(lang, o, p);
        Some((code, text))
    }

    /// Members a language-tagged value object may not have.
    fn lang_tagged_members(&mut self, lang: &LangCollector<'_>, o: &Map<String, Value>, p: &str) {
        let (doc, key) = (lang.doc, lang.key);
        for k in o.keys() {
            let code = match k.as_str() {
                "@value" | "@language" => continue,
                "@context" => "langStringElementContext",
                "@id" => "langStringElementId",
                "@graph" => "langStringElementGraph",
                "@type" if lang.restrict_keywords => "langStringElementType",
                _ if k.starts_with('@') && lang.restrict_keywords => "langStringElementKeyword",
                _ if k.starts_with('@') => continue,
                _ => "langStringElementInvalidProp",
            };
            self.at(doc, &ptr(p, k)).error(
                code,
                format!("property '{key}' has a language-tagged value with member '{k}'; only '@value' and '@language' are allowed"),
            );
        }
    }

    fn check_lang_length(&mut self, lang: &LangCollector<'_>, s: &str, raw: &Value, p: &str) {
        let length = s.chars().count() as i64;
        if let Some(max) = lang.max.filter(|max| length > *max) {
            self.at(lang.doc, p).value(raw).error(
                "langStringValueTooLong",
                format!(
                    "property '{}' is {length} characters long, the limit is {max}",
                    lang.key
                ),
            );
        }
    }
}
