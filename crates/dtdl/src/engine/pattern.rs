//! Regular expressions of the digest (string formats, topics, identifiers), compiled once.
//!
//! The digest's patterns are written for .NET regular expressions: the duration pattern uses
//! look-ahead and the MQTT topic patterns use a literal `{`, which linear-time engines
//! (`regex`, `regex-lite`) refuse. `fancy-regex` accepts both; it backtracks only inside the
//! look-around parts and gives up (an error, taken as "no match") past its backtrack limit, so
//! no value can make a match hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fancy_regex::Regex;

/// The compiled form of `pattern`, or `None` when the engine refuses it (a defect the
/// `every_digest_pattern_compiles` test guards against; the value is then taken as invalid).
fn compiled(pattern: &str) -> Option<Arc<Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<Regex>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok().map(Arc::new))
        .clone()
}

/// True when `text` matches `pattern` (false when the pattern cannot be compiled or the match
/// exceeds the backtrack limit).
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    compiled(pattern).is_some_and(|re| re.is_match(text).unwrap_or(false))
}

/// The identifiers of the original KTWIN ontology: `city:Pole`, `ngsi_ld:city:Streetlight`.
pub(crate) fn is_lenient_id(s: &str) -> bool {
    matches(r"^[A-Za-z][A-Za-z0-9_\-]*(?::[A-Za-z0-9_\-]+)+$", s)
}

/// A language code as the DTDL specification (v4, "Localizable string") and the reference
/// parser define it: a lowercase language, an optional script and an optional region
/// (`en`, `en-US`, `zh-Hant-TW`, `es-419`).
pub(crate) fn is_language_code(code: &str) -> bool {
    matches(
        r"^[a-z]{2,4}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$",
        code,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn collect<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("pattern", Value::String(p)) => out.push(p),
                        _ => collect(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_digest_pattern_compiles() {
        let digest: Value = serde_json::from_str(
            include_str!("../../data/dtdl_digest.json").trim_start_matches('\u{feff}'),
        )
        .unwrap();
        let mut patterns = Vec::new();
        collect(&digest, &mut patterns);
        assert!(
            patterns.iter().any(|p| p.contains("{(?:")),
            "the MQTT topic patterns are among the {} found",
            patterns.len()
        );
        for p in patterns {
            if let Err(e) = Regex::new(p) {
                panic!("digest pattern {p} does not compile: {e}");
            }
        }
    }

    #[test]
    fn topic_and_duration_patterns_match_what_the_specification_allows() {
        let topic = r"^(?:(?:[!%-*,-.0-z|~][!$-*,-.0-z|~]*)|(?:{(?:[A-Za-z]+:)?[A-Za-z]+}))(?:\/(?:(?:[!$-*,-.0-z|~]+)|(?:{(?:[A-Za-z]+:)?[A-Za-z]+})))*$";
        assert!(matches(topic, "sample/{modelId}/{senderId}/telemetry"));
        assert!(matches(topic, "{ex:namespace}/commands/{commandName}"));
        assert!(!matches(topic, "sample/+/telemetry"));
        assert!(!matches(topic, "$share/telemetry"));
        let duration = r"^P(?!$)(?:(?:(?:(?:\d+Y)|(?:\d+\.\d+Y$))?(?:(?:\d+M)|(?:\d+\.\d+M$))?)|(?:(?:(?:\d+W)|(?:\d+\.\d+W$))?))(?:(?:\d+D)|(?:\d+\.\d+D$))?(?:T(?!$)(?:(?:\d+H)|(?:\d+\.\d+H$))?(?:(?:\d+M)|(?:\d+\.\d+M$))?(?:\d+(?:\.\d+)?S)?)?$";
        assert!(matches(duration, "PT1H30M"));
        assert!(matches(duration, "P1.5D"));
        assert!(!matches(duration, "P"));
        assert!(!matches(duration, "PT"));
    }

    #[test]
    fn a_pattern_the_engine_refuses_matches_nothing() {
        assert!(!matches("(unclosed", "(unclosed"));
    }
}
