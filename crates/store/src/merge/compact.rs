//! The storage form of a [`MergeTree`] with its versions interned.
//!
//! Every slot of a tree carries the version (time and event id) that wrote it, and a twin's
//! members are mostly written by the same few events: spelled out per slot, the same 36-character
//! event id was stored once per member and made up most of a record's bytes. Here each distinct
//! version is written once in a table and slots refer to it by position. Backends rewrite a
//! twin's record with every batch that touches it, so this is most of what they write.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::{MergeTree, Replacement, Version};

/// Positions of the distinct versions met while writing, in order of first use.
#[derive(Debug, Default)]
pub(crate) struct VersionTable<'a> {
    positions: HashMap<&'a Version, u32>,
    versions: Vec<&'a Version>,
}

impl<'a> VersionTable<'a> {
    /// The position of `version`, added to the table on first use.
    pub fn position(&mut self, version: &'a Version) -> u32 {
        let next = u32::try_from(self.versions.len()).expect("fewer than 2^32 versions");
        *self.positions.entry(version).or_insert_with(|| {
            self.versions.push(version);
            next
        })
    }
}

/// Writes the table as `[[micros, "id"], …]`.
impl Serialize for VersionTable<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.versions.len()))?;
        for version in &self.versions {
            seq.serialize_element(&(version.micros, version.id.as_str()))?;
        }
        seq.end()
    }
}

/// A tree written with its versions replaced by positions in `table`, which fills up as the
/// tree is written: write the table after the tree.
pub(crate) struct Interned<'t, 'a> {
    tree: &'a MergeTree,
    table: &'t RefCell<VersionTable<'a>>,
}

impl<'t, 'a> Interned<'t, 'a> {
    pub fn new(tree: &'a MergeTree, table: &'t RefCell<VersionTable<'a>>) -> Self {
        Self { tree, table }
    }
}

impl Serialize for Interned<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tree = self.tree;
        let mut map = serializer.serialize_map(None)?;
        if let Some(replaced) = &tree.replaced {
            let position = self.table.borrow_mut().position(&replaced.version);
            map.serialize_entry("r", &(position, &replaced.value))?;
        }
        if let Some(merged) = &tree.merged {
            map.serialize_entry("m", &self.table.borrow_mut().position(merged))?;
        }
        if !tree.children.is_empty() {
            map.serialize_entry("c", &InternedChildren(self))?;
        }
        map.end()
    }
}

struct InternedChildren<'p, 't, 'a>(&'p Interned<'t, 'a>);

impl Serialize for InternedChildren<'_, '_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Interned { tree, table } = self.0;
        serializer.collect_map(
            tree.children
                .iter()
                .map(|(key, child)| (key, Interned::new(child, table))),
        )
    }
}

/// A tree as read, its versions still positions in the table stored beside it.
#[derive(Debug, Deserialize)]
pub(crate) struct IndexedTree {
    #[serde(rename = "r", default)]
    replaced: Option<(u32, Option<Value>)>,
    #[serde(rename = "m", default)]
    merged: Option<u32>,
    #[serde(rename = "c", default)]
    children: BTreeMap<String, IndexedTree>,
}

/// A version table as read.
pub(crate) type StoredVersions = Vec<(i64, String)>;

/// Looks up stored versions by position.
pub(crate) struct Resolver(Vec<Version>);

impl Resolver {
    pub fn new(stored: StoredVersions) -> Self {
        Self(
            stored
                .into_iter()
                .map(|(micros, id)| Version { micros, id })
                .collect(),
        )
    }

    /// The version at `position`; an error naming it when the table has none there.
    pub fn version(&self, position: u32) -> Result<Version, MissingVersion> {
        self.0
            .get(position as usize)
            .cloned()
            .ok_or(MissingVersion {
                position,
                table_len: self.0.len(),
            })
    }

    /// The tree `indexed` describes.
    pub fn tree(&self, indexed: IndexedTree) -> Result<MergeTree, MissingVersion> {
        let replaced = match indexed.replaced {
            Some((position, value)) => Some(Replacement {
                version: self.version(position)?,
                value,
            }),
            None => None,
        };
        let merged = indexed.merged.map(|p| self.version(p)).transpose()?;
        let children = indexed
            .children
            .into_iter()
            .map(|(key, child)| Ok((key, self.tree(child)?)))
            .collect::<Result<_, MissingVersion>>()?;
        Ok(MergeTree {
            replaced,
            merged,
            children,
        })
    }
}

/// A whole tree in its storage form, `[tree, versions]`, for a backend that keeps the rest of
/// a record in columns of its own.
#[cfg(any(test, feature = "postgres"))]
pub(crate) fn encode_tree(tree: &MergeTree) -> Vec<u8> {
    let table = RefCell::new(VersionTable::default());
    // The table is written after the tree, which fills it (a `RefCell` is read when written).
    serde_json::to_vec(&(Interned::new(tree, &table), &table))
        .expect("a merge tree has only string keys")
}

/// Reads a tree [`encode_tree`]d, or stored as a JSON object by earlier builds.
#[cfg(any(test, feature = "postgres"))]
pub(crate) fn decode_tree(bytes: &[u8]) -> Result<MergeTree, serde_json::Error> {
    if bytes.first() != Some(&b'[') {
        return serde_json::from_slice(bytes);
    }
    let (tree, versions): (IndexedTree, StoredVersions) = serde_json::from_slice(bytes)?;
    Resolver::new(versions).tree(tree).map_err(invalid)
}

/// A stored tree refers to a position its record's version table does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version {position} is referred to but the record's table has {table_len}")]
pub(crate) struct MissingVersion {
    /// The position referred to.
    position: u32,
    /// How many versions the table has.
    table_len: usize,
}

/// A stored tree whose positions do not match its table, as a decoding error.
pub(crate) fn invalid(error: MissingVersion) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(format!("merge record: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::{patch, version};
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn trees_read_back_as_written(
            patches in prop::collection::vec(((0..6i64), "[xy]", patch()), 0..8),
        ) {
            let mut tree = MergeTree::new();
            for (t, id, p) in &patches {
                tree.apply(&version(*t, id), p);
            }
            prop_assert_eq!(decode_tree(&encode_tree(&tree)).unwrap(), tree);
        }
    }

    #[test]
    fn trees_of_earlier_builds_still_read() {
        let mut tree = MergeTree::new();
        tree.apply(&version(1, "a"), &json!({"level": 3, "gone": null}));
        tree.apply(&version(2, "b"), &json!({"nested": {"x": [1, 2]}}));
        let earlier = serde_json::to_vec(&tree).unwrap();
        assert_eq!(earlier.first(), Some(&b'{'));
        assert_eq!(decode_tree(&earlier).unwrap(), tree);
        assert!(encode_tree(&tree).len() < earlier.len());
    }
}
