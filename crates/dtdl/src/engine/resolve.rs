//! Stage 2: references — every identifier a property names is defined, of the right class
//! and version; then the set-level rules of [`super::check`].

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Arena, ElemId, Element, Parser, PropValue};
use crate::digest::digest;

/// An element in either the parse arena or the standard arena.
#[derive(Clone, Copy)]
pub(crate) struct Node<'x> {
    pub arena: &'x Arena,
    pub idx: ElemId,
}

impl<'x> Node<'x> {
    pub fn elem(&self) -> &'x Element {
        &self.arena.elems[self.idx]
    }

    pub fn key(&self) -> (usize, ElemId) {
        (self.arena as *const Arena as usize, self.idx)
    }
}

impl Parser<'_> {
    pub(crate) fn node(&self, idx: ElemId) -> Node<'_> {
        Node {
            arena: &self.arena,
            idx,
        }
    }

    /// Resolves a property value to an element (inline child, parsed or standard element).
    pub(crate) fn value_node<'s>(&'s self, from: Node<'s>, v: &PropValue) -> Option<Node<'s>> {
        match v {
            PropValue::Child(c) => Some(Node {
                arena: from.arena,
                idx: *c,
            }),
            PropValue::Ref(t) => {
                if let Some(&i) = self.arena.by_id.get(t) {
                    return Some(Node {
                        arena: &self.arena,
                        idx: i,
                    });
                }
                let std = self.std?;
                std.by_id.get(t).map(|&i| Node { arena: std, idx: i })
            }
            PropValue::Literal(_) => None,
        }
    }

    pub(crate) fn prop_nodes<'s>(&'s self, from: Node<'s>, prop: &str) -> Vec<Node<'s>> {
        from.elem()
            .props
            .get(prop)
            .map(|vs| vs.iter().filter_map(|v| self.value_node(from, v)).collect())
            .unwrap_or_default()
    }

    pub(crate) fn check_duplicates(&mut self) {
        let dups: Vec<String> = self.duplicates.iter().cloned().collect();
        for id in dups {
            let (doc, pointer) = self
                .arena
                .by_id
                .get(&id)
                .map(|&i| (self.arena.elems[i].doc, self.arena.elems[i].pointer.clone()))
                .unwrap_or((0, String::new()));
            self.at(doc, &pointer)
                .primary(&id)
                .value(&Value::from(id.as_str()))
                .error(
                    "duplicateDefinition",
                    format!("{id} has more than one definition"),
                );
        }
    }

    /// Checks every reference; returns the identifiers no document defines.
    pub(crate) fn resolve_references(&mut self) -> BTreeSet<String> {
        let digest = digest();
        let mut unresolved = BTreeSet::new();
        let refs = std::mem::take(&mut self.refs);
        for site in &refs {
            let from = &self.arena.elems[site.from];
            let (doc, from_version, from_id) = (from.doc, from.version, from.id.clone());
            match self.lookup(&site.target) {
                Some((target, is_std)) => {
                    let (class, version) = (target.class.clone(), target.version);
                    let foreign = !is_std
                        && target.parent.is_some()
                        && target.partition != self.arena.elems[site.from].partition;
                    if foreign && class != "Interface" {
                        self.at(doc, &site.pointer).primary(&from_id).secondary(&site.target).value(&Value::from(site.target.as_str())).error("crossPartitionReference", format!("property '{}' refers to {}, a {class} defined inside another interface; only interfaces can be referenced across interfaces", site.prop, site.target));
                        continue;
                    }
                    if let Some(required) = &site.class
                        && !digest.is_subclass(&class, required, version)
                    {
                        self.at(doc, &site.pointer).primary(&from_id).secondary(&site.target).value(&Value::from(site.target.as_str())).error("badType", format!("property '{}' refers to {}, which is a {class}; expected a {required}", site.prop, site.target));
                        continue;
                    }
                    if !is_std && !site.versions.is_empty() && !site.versions.contains(&version) {
                        self.at(doc, &site.pointer).primary(&from_id).secondary(&site.target).value(&Value::from(site.target.as_str())).error("disallowedVersionReference", format!("property '{}' refers to {}, written in DTDL v{version}, which a DTDL v{from_version} element cannot use here", site.prop, site.target));
                        continue;
                    }
                }
                None if site.term => {
                    let expected = site.class.as_deref().unwrap_or("element");
                    self.at(doc, &site.pointer)
                        .primary(&from_id)
                        .secondary(&site.target)
                        .value(&Value::from(site.target.as_str()))
                        .error(
                            "badType",
                            format!(
                                "property '{}' has value '{}', a term that names no {expected}",
                                site.prop, site.target
                            ),
                        );
                }
                None => {
                    let reserved = digest
                        .reserved_id_prefixes
                        .values()
                        .flatten()
                        .any(|p| site.target.starts_with(p.as_str()));
                    if reserved {
                        self.at(doc, &site.pointer).primary(&from_id).secondary(&site.target).value(&Value::from(site.target.as_str())).error("undefinedReservedId", format!("property '{}' refers to {}, which is not a DTDL v{from_version} standard element", site.prop, site.target));
                    } else {
                        unresolved.insert(site.target.clone());
                    }
                }
            }
        }
        self.refs = refs;
        unresolved
    }
}
