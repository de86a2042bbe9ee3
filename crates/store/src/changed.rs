//! Same CloudEvent id, different data: the services of the original KTWIN post the event they
//! received back to the store with its id and changed data. A redelivery (same instance, id and
//! data) stays a duplicate; an event whose id is taken by one with other data is stored as a new
//! version under a derived id, [`version_id`], so that the update is neither lost nor mistaken
//! for a redelivery, and a redelivery of the update is itself a duplicate.

use std::num::NonZeroU32;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::InstanceKey;

/// Separates an event's id from the digest of its data in a [`version_id`]. It sorts after
/// every character of a UUID, and an id is a prefix of its versions' ids, so a version sorts
/// after the event it changes when both have the same time.
pub const VERSION_SEPARATOR: char = '~';

/// Hex digits of the data's SHA-256 in a [`version_id`].
const DIGEST_HEX_DIGITS: usize = 16;

/// The id a change of event `id` to `data` is stored under: `<id>~<the first 16 hex digits of
/// the SHA-256 of the canonical JSON of data>` (members sorted by name at every level, no
/// whitespace). Deterministic, so a redelivered change is a duplicate of the first.
pub fn version_id(id: &str, data: &Map<String, Value>) -> String {
    let mut canonical = Vec::new();
    write_canonical_object(&mut canonical, data);
    let digest = Sha256::digest(&canonical);
    let mut versioned = String::with_capacity(id.len() + 1 + DIGEST_HEX_DIGITS);
    versioned.push_str(id);
    versioned.push(VERSION_SEPARATOR);
    for byte in &digest[..DIGEST_HEX_DIGITS / 2] {
        versioned.push_str(&format!("{byte:02x}"));
    }
    versioned
}

fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(members) => write_canonical_object(out, members),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        scalar => {
            serde_json::to_writer(&mut *out, scalar).expect("a JSON scalar serializes");
        }
    }
}

fn write_canonical_object(out: &mut Vec<u8>, members: &Map<String, Value>) {
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name).expect("a string serializes");
        out.push(b':');
        write_canonical(out, value);
    }
    out.push(b'}');
}

/// An event stored as a new version because its id was taken by an event with other data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewVersion {
    /// The twin interface.
    pub interface: String,
    /// The twin instance.
    pub instance: String,
    /// The id the event was sent with.
    pub id: String,
    /// The id it is stored under ([`version_id`]).
    pub stored_id: String,
}

impl NewVersion {
    /// The version of an event of `key` sent as `id`, stored as `stored_id`, logged (at most a
    /// few lines a second: a service re-posting every event it receives must not flood the log).
    pub(crate) fn record(key: &InstanceKey, id: &str, stored_id: String) -> Self {
        if LOG_BUDGET.check().is_ok() {
            tracing::warn!(
                interface = %key.interface,
                instance = %key.instance,
                id,
                stored_id,
                "an event came with the id of a stored event but other data: stored as a new \
                 version under a derived id"
            );
        }
        Self {
            interface: key.interface.clone(),
            instance: key.instance.clone(),
            id: id.to_owned(),
            stored_id,
        }
    }
}

/// Log lines per second about new versions, at most (bursts of twice that).
const LOG_LINES_PER_SECOND: NonZeroU32 = NonZeroU32::new(5).expect("not zero");

static LOG_BUDGET: LazyLock<governor::DefaultDirectRateLimiter> = LazyLock::new(|| {
    governor::RateLimiter::direct(
        governor::Quota::per_second(LOG_LINES_PER_SECOND)
            .allow_burst(LOG_LINES_PER_SECOND.saturating_mul(NonZeroU32::MIN.saturating_add(1))),
    )
});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn version_ids_depend_on_the_data_not_its_member_order() {
        let a = object(json!({"b": 1, "a": {"y": [1, {"q": 2, "p": "x"}], "x": null}}));
        let b = object(json!({"a": {"x": null, "y": [1, {"p": "x", "q": 2}]}, "b": 1}));
        let id = version_id("0193-ab", &a);
        assert_eq!(id, version_id("0193-ab", &b));
        let (base, digest) = id.split_once(VERSION_SEPARATOR).unwrap();
        assert_eq!(base, "0193-ab");
        assert_eq!(digest.len(), 16);
        assert!(
            digest
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(id, version_id("0193-ab", &object(json!({"b": 2}))));
        // Fixed: stores and clients must agree on it across builds. It is the SHA-256 of
        // {"a":{"x":null,"y":[1,{"p":"x","q":2}]},"b":1} (Python: json.dumps(data,
        // sort_keys=True, separators=(",", ":"))).
        assert_eq!(digest, "85b91ba35845a4f1");
    }

    #[test]
    fn a_version_sorts_after_the_event_it_changes() {
        let changed = version_id("f47ac10b-58cc-4372-a567-0e02b2c3d479", &Map::new());
        assert!(changed.as_str() > "f47ac10b-58cc-4372-a567-0e02b2c3d479");
        assert!(changed.as_str() > "f47ac10b-58cc-4372-a567-0e02b2c3d479-zz");
    }
}
