//! Latest state of a twin: RFC 7386 JSON merge patches applied in event order.
//!
//! Events can arrive in any order (retries, parallel queues, replays), yet the latest state must
//! be the merge of every patch in CloudEvent `time` order, ties broken by `id`. Replaying the
//! history on every late arrival would cost a read of the whole history, so the state is kept as
//! a [`MergeTree`]: for every JSON path it remembers the newest replacing write and the newest
//! object merge. Applying a patch is then commutative and idempotent, and
//! [`MergeTree::materialize`] yields exactly what sequential merge patching in version order
//! gives (proved against [`merge_patch`] by property tests below).

pub(crate) mod compact;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Applies an RFC 7386 JSON merge patch to `target` in place.
///
/// ```
/// let mut doc = serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}});
/// ktwin_store::merge_patch(&mut doc, &serde_json::json!({"a": null, "b": {"c": 5}}));
/// assert_eq!(doc, serde_json::json!({"b": {"c": 5, "d": 3}}));
/// ```
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("target was just made an object")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The order of events of one twin instance: CloudEvent `time` (microseconds), then `id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Event time in microseconds since the Unix epoch (the precision every backend keeps).
    #[serde(rename = "t")]
    pub micros: i64,
    /// Event id, the tie breaker.
    #[serde(rename = "i")]
    pub id: String,
}

impl Version {
    /// The version of an event with `time` and `id`.
    pub fn new(time: DateTime<Utc>, id: impl Into<String>) -> Self {
        Self {
            micros: time.timestamp_micros(),
            id: id.into(),
        }
    }

    /// The event time.
    pub fn time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros).unwrap_or_default()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.micros
            .cmp(&other.micros)
            .then_with(|| self.id.cmp(&other.id))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The order-independent form of a twin's latest state (see the module docs).
///
/// A slot is one JSON position (the document root or a member). Sequential merge patching
/// leaves in a slot: the value of its newest replacing write (a non-object value, or `null`
/// = removal) unless an object merge came after it, in which case an object built only from the
/// child writes newer than that replacement. So per slot it suffices to keep the newest
/// replacement, the newest object merge and the children, and to drop anything older than an
/// ancestor's replacement, which can never show again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeTree {
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    replaced: Option<Replacement>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    merged: Option<Version>,
    #[serde(rename = "c", default, skip_serializing_if = "BTreeMap::is_empty")]
    children: BTreeMap<String, MergeTree>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Replacement {
    #[serde(rename = "v")]
    version: Version,
    /// `None` when the member was removed (`null` in the patch).
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
}

impl MergeTree {
    /// An empty tree (the state of a twin without events is `{}`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `patch` written at `version`. Applying the same patch twice, or patches in any
    /// order, gives the same tree.
    pub fn apply(&mut self, version: &Version, patch: &Value) {
        self.apply_above(version, patch, None);
    }

    fn apply_above(&mut self, version: &Version, patch: &Value, cutoff: Option<&Version>) {
        if cutoff.is_some_and(|cutoff| version <= cutoff) {
            return;
        }
        match patch {
            Value::Object(members) => self.merge_members(version, members, cutoff),
            other => {
                if self
                    .replaced
                    .as_ref()
                    .is_none_or(|replaced| version > &replaced.version)
                {
                    self.replaced = Some(Replacement {
                        version: version.clone(),
                        value: (!other.is_null()).then(|| other.clone()),
                    });
                    self.prune(version);
                }
            }
        }
    }

    /// Records the object patch `members` written at `version`: [`MergeTree::apply`] without
    /// wrapping the members in a [`Value`].
    pub fn apply_members(&mut self, version: &Version, members: &Map<String, Value>) {
        self.merge_members(version, members, None);
    }

    /// [`MergeTree::apply_above`] for an object patch whose version is above `cutoff`.
    fn merge_members(
        &mut self,
        version: &Version,
        members: &Map<String, Value>,
        cutoff: Option<&Version>,
    ) {
        if self.merged.as_ref().is_none_or(|merged| version > merged) {
            self.merged = Some(version.clone());
        }
        let cutoff = max_version(cutoff, self.replaced.as_ref().map(|r| &r.version));
        for (key, value) in members {
            // The member's name is copied only the first time it is written (this runs for
            // every member of every stored event).
            match self.children.get_mut(key) {
                Some(child) => child.apply_above(version, value, cutoff),
                None => {
                    let mut child = MergeTree::default();
                    child.apply_above(version, value, cutoff);
                    self.children.insert(key.clone(), child);
                }
            }
        }
    }

    /// Drops what is older than `cutoff` below this slot; returns whether the slot is empty.
    fn prune(&mut self, cutoff: &Version) -> bool {
        if self.merged.as_ref().is_some_and(|merged| merged <= cutoff) {
            self.merged = None;
        }
        self.children.retain(|_, child| {
            if child
                .replaced
                .as_ref()
                .is_some_and(|r| &r.version <= cutoff)
            {
                child.replaced = None;
            }
            !child.prune(cutoff)
        });
        self.replaced.is_none() && self.merged.is_none() && self.children.is_empty()
    }

    /// The latest state: what merge patching every applied patch in version order onto `{}`
    /// gives.
    pub fn materialize(&self) -> Map<String, Value> {
        match self.value_above(None) {
            Some(Value::Object(members)) => members,
            _ => Map::new(),
        }
    }

    fn value_above(&self, cutoff: Option<&Version>) -> Option<Value> {
        let newer = |v: &Version| cutoff.is_none_or(|c| v > c);
        let replaced = self.replaced.as_ref().filter(|r| newer(&r.version));
        let merged = self.merged.as_ref().filter(|m| newer(m));
        match (replaced, merged) {
            (Some(r), Some(m)) if m > &r.version => Some(self.object_above(Some(&r.version))),
            (None, Some(_)) => Some(self.object_above(cutoff)),
            (Some(r), _) => r.value.clone(),
            (None, None) => None,
        }
    }

    fn object_above(&self, cutoff: Option<&Version>) -> Value {
        let members = self
            .children
            .iter()
            .filter_map(|(key, child)| child.value_above(cutoff).map(|v| (key.clone(), v)))
            .collect();
        Value::Object(members)
    }
}

fn max_version<'a>(a: Option<&'a Version>, b: Option<&'a Version>) -> Option<&'a Version> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    pub(crate) fn version(micros: i64, id: &str) -> Version {
        Version {
            micros,
            id: id.to_owned(),
        }
    }

    fn sequential(patches: &[(Version, Value)]) -> Map<String, Value> {
        let mut sorted: Vec<_> = patches.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut doc = Value::Object(Map::new());
        for (_, patch) in &sorted {
            merge_patch(&mut doc, patch);
        }
        match doc {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            let mut doc = target.clone();
            merge_patch(&mut doc, &patch);
            assert_eq!(doc, expected, "{target} + {patch}");
        }
    }

    #[test]
    fn late_arrival_lands_in_time_order() {
        let mut tree = MergeTree::new();
        tree.apply(&version(2, "b"), &json!({"level": "high"}));
        tree.apply(&version(1, "a"), &json!({"level": "low", "battery": 9}));
        assert_eq!(
            Value::Object(tree.materialize()),
            json!({"level": "high", "battery": 9})
        );
    }

    #[test]
    fn a_scalar_wipes_older_members_but_not_newer_ones() {
        let patches = [
            (version(1, "a"), json!({"x": {"old": 1}})),
            (version(2, "b"), json!({"x": 5})),
            (version(3, "c"), json!({"x": {"new": 2}})),
        ];
        let mut tree = MergeTree::new();
        for (v, p) in patches.iter().rev() {
            tree.apply(v, p);
        }
        assert_eq!(Value::Object(tree.materialize()), json!({"x": {"new": 2}}));
        assert_eq!(tree.materialize(), sequential(&patches));
    }

    #[test]
    fn ties_are_broken_by_id_and_the_tree_round_trips() {
        let mut tree = MergeTree::new();
        tree.apply(&version(1, "b"), &json!({"v": "from b"}));
        tree.apply(&version(1, "a"), &json!({"v": "from a", "w": null}));
        assert_eq!(Value::Object(tree.materialize()), json!({"v": "from b"}));
        let stored = serde_json::to_string(&tree).unwrap();
        let back: MergeTree = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, tree);
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            (0..4i64).prop_map(|n| json!(n)),
            Just(json!([1, 2])),
            Just(json!("s")),
        ]
    }

    fn patch_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 12, 3, |inner| {
            prop::collection::btree_map("[abc]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    /// An object patch of up to four members, nested up to three deep.
    pub(crate) fn patch() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[abcd]", patch_value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_arrival_order_equals_sequential_merge(
            patches in prop::collection::vec(((0..6i64), "[xy]", patch()), 0..8),
            order in any::<prop::sample::Index>(),
            duplicate in any::<prop::sample::Index>(),
        ) {
            let mut patches: Vec<(Version, Value)> = patches
                .into_iter()
                .map(|(t, id, p)| (version(t, &id), p))
                .collect();
            patches.sort_by(|a, b| a.0.cmp(&b.0));
            patches.dedup_by(|a, b| a.0 == b.0);
            let expected = sequential(&patches);
            let mut arrival = patches.clone();
            if !arrival.is_empty() {
                let n = arrival.len();
                arrival.rotate_left(order.index(n));
                arrival.swap(0, duplicate.index(n));
                let again = arrival[duplicate.index(n)].clone();
                arrival.push(again);
            }
            let mut tree = MergeTree::new();
            for (v, p) in &arrival {
                tree.apply(v, p);
            }
            prop_assert_eq!(tree.materialize(), expected);
        }
    }
}
