//! Stage 2: set-level rules — identifiers, references, inheritance and descendant limits.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::graph::ChainMemo;
use super::walk::supplemental_chain;
use super::{Arena, ElemId, Element, Parser, PropValue};
use crate::digest::{DescendantControl, digest, limit_for};

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

/// Properties through which an interface's descendants are counted.
const DESCENDANT_PATH: &[&str] = &[
    "contents",
    "fields",
    "enumValues",
    "request",
    "response",
    "properties",
    "schema",
    "elementSchema",
    "mapValue",
];

fn is_complex(elem: &Element) -> bool {
    matches!(elem.class.as_str(), "Array" | "Enum" | "Map" | "Object")
}

/// Properties through which complex schemas nest.
const SCHEMA_PATH: &[&str] = &[
    "elementSchema",
    "schema",
    "fields",
    "mapKey",
    "mapValue",
    "enumValues",
];

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
            let (doc, from_version) = (from.doc, from.version);
            match self.lookup(&site.target) {
                Some((target, is_std)) => {
                    let (class, version) = (target.class.clone(), target.version);
                    let foreign = !is_std
                        && target.parent.is_some()
                        && target.partition != self.arena.elems[site.from].partition;
                    if foreign && class != "Interface" {
                        self.at(doc, &site.pointer).value(&Value::from(site.target.as_str())).error("crossPartitionReference", format!("property '{}' refers to {}, a {class} defined inside another interface; only interfaces can be referenced across interfaces", site.prop, site.target));
                        continue;
                    }
                    if let Some(required) = &site.class
                        && !digest.is_subclass(&class, required, version)
                    {
                        self.at(doc, &site.pointer).value(&Value::from(site.target.as_str())).error("notRequiredType", format!("property '{}' refers to {}, which is a {class}; expected a {required}", site.prop, site.target));
                        continue;
                    }
                    if !is_std && !site.versions.is_empty() && !site.versions.contains(&version) {
                        self.at(doc, &site.pointer).value(&Value::from(site.target.as_str())).error("disallowedVersionReference", format!("property '{}' refers to {}, written in DTDL v{version}, which a DTDL v{from_version} element cannot use here", site.prop, site.target));
                        continue;
                    }
                }
                None => {
                    let reserved = digest
                        .reserved_id_prefixes
                        .values()
                        .flatten()
                        .any(|p| site.target.starts_with(p.as_str()));
                    if reserved {
                        self.at(doc, &site.pointer).value(&Value::from(site.target.as_str())).error("undefinedReservedId", format!("property '{}' refers to {}, which is not a DTDL v{from_version} standard element", site.prop, site.target));
                    } else {
                        unresolved.insert(site.target.clone());
                    }
                }
            }
        }
        self.refs = refs;
        unresolved
    }

    fn control(
        &self,
        root_class: &str,
        version: u8,
        property: &str,
    ) -> Option<&'static DescendantControl> {
        digest().descendant_controls.iter().find(|c| {
            c.root_class == root_class
                && c.dtdl_version == version
                && c.properties.iter().any(|p| p == property)
        })
    }

    /// Set-level rules after every reference resolved.
    pub(crate) fn check_set(&mut self) {
        let mut errors: Vec<(usize, String, &'static str, String)> = Vec::new();
        let mut extends_memo = ChainMemo::new();
        let mut schema_memo = ChainMemo::new();
        let digest = digest();
        for idx in 0..self.arena.elems.len() {
            let node = self.node(idx);
            let elem = node.elem();
            let (doc, pointer, version) = (elem.doc, elem.pointer.clone(), elem.version);
            match elem.class.as_str() {
                "Interface" => self.check_interface(node, &mut extends_memo, &mut errors),
                "Array" | "Enum" | "Map" | "Object" => {
                    if let Some(ctrl) = self.control(&elem.class, version, "elementSchema") {
                        let max = ctrl
                            .max_depth
                            .as_ref()
                            .and_then(|m| limit_for(m, ""))
                            .unwrap_or(i64::MAX);
                        match self.longest_chain(node, SCHEMA_PATH, is_complex, &mut schema_memo) {
                            None if !ctrl.allow_self => errors.push((doc, pointer.clone(), "recursiveStructureWide", format!("{} contains itself", elem.id))),
                            Some(depth) if depth as i64 > max => errors.push((doc, pointer.clone(), "excessiveDepthWide", format!("{} nests complex schemas {depth} levels deep; the limit is {max}", elem.id))),
                            _ => {}
                        }
                    }
                    if elem.class == "Enum" {
                        let value_schema = self
                            .prop_nodes(node, "valueSchema")
                            .first()
                            .map(|n| n.elem().class.clone());
                        for ev in self.prop_nodes(node, "enumValues") {
                            let Some(v) = ev.elem().literal("enumValue") else {
                                continue;
                            };
                            let fits = match value_schema.as_deref() {
                                Some("Integer") => v.is_i64(),
                                Some("String") => v.is_string(),
                                _ => true,
                            };
                            if !fits {
                                errors.push((
                                    ev.elem().doc,
                                    ev.elem().pointer.clone(),
                                    "nonConformantDatatype",
                                    format!(
                                        "enumValue {v} does not match the enum's valueSchema {}",
                                        value_schema.clone().unwrap_or_default()
                                    ),
                                ));
                            }
                        }
                    }
                }
                "Component" => {
                    for iface in self.prop_nodes(node, "schema") {
                        let contents = self.flattened_contents(iface);
                        if contents.iter().any(|c| c.elem().class == "Component") {
                            errors.push((doc, pointer.clone(), "excludedType", format!("component schema {} contains a Component, which components may not", iface.elem().id)));
                        }
                    }
                }
                "Property" => {
                    if let Some(ctrl) = self.control("Property", version, "schema")
                        && let Some(excluded) = &ctrl.exclude_type
                        && self
                            .prop_nodes(node, "schema")
                            .into_iter()
                            .any(|s| self.reaches_class(s, SCHEMA_PATH, excluded))
                    {
                        errors.push((
                            doc,
                            pointer.clone(),
                            "excludedType",
                            format!(
                                "a DTDL v{version} Property schema may not contain an {excluded}"
                            ),
                        ));
                    }
                }
                _ => {}
            }
            // Constraints of supplemental types on property values (e.g. numeric schemas).
            for c in &elem.cotypes {
                for (tiri, t) in supplemental_chain(c) {
                    for constraint in &t.constraints {
                        let Some(prop) = constraint.get("property").and_then(Value::as_str) else {
                            continue;
                        };
                        if let Some(required) =
                            constraint.get("requiredTypes").and_then(Value::as_array)
                        {
                            for target in self.prop_nodes(node, prop) {
                                let te = target.elem();
                                let fits = required.iter().filter_map(Value::as_str).any(|r| {
                                    r.strip_prefix("dtmi:dtdl:class:")
                                        .and_then(|x| x.split(';').next())
                                        .is_some_and(|cls| {
                                            digest.is_subclass(&te.class, cls, te.version)
                                        })
                                        || te.cotypes.iter().any(|ct| ct == r)
                                });
                                if !fits {
                                    let names = constraint
                                        .get("requiredTypesString")
                                        .and_then(Value::as_str)
                                        .unwrap_or("");
                                    errors.push((doc, pointer.clone(), "notRequiredType", format!("co-type {tiri} requires property '{prop}' to be {names}")));
                                }
                            }
                        }
                        if let Some(values) =
                            constraint.get("requiredValues").and_then(Value::as_array)
                        {
                            for v in elem.props.get(prop).into_iter().flatten() {
                                let text = match v {
                                    PropValue::Ref(t) => Value::from(t.as_str()),
                                    PropValue::Literal(l) => l.clone(),
                                    PropValue::Child(c) => {
                                        Value::from(self.arena.elems[*c].id.as_str())
                                    }
                                };
                                if !values.contains(&text) {
                                    let names = constraint
                                        .get("requiredValuesString")
                                        .and_then(Value::as_str)
                                        .unwrap_or("");
                                    errors.push((doc, pointer.clone(), "notRequiredValue", format!("co-type {tiri} requires property '{prop}' to be {names}")));
                                }
                            }
                        }
                    }
                }
            }
        }
        for (doc, pointer, code, message) in errors {
            self.at(doc, &pointer).error(code, message);
        }
    }

    fn check_interface(
        &self,
        node: Node<'_>,
        extends_memo: &mut ChainMemo,
        errors: &mut Vec<(usize, String, &'static str, String)>,
    ) {
        let elem = node.elem();
        let (doc, pointer, version) = (elem.doc, elem.pointer.clone(), elem.version);
        let Some(ctrl) = self.control("Interface", version, "extends") else {
            return;
        };
        let max_depth = ctrl
            .max_depth
            .as_ref()
            .and_then(|m| limit_for(m, ""))
            .unwrap_or(i64::MAX);
        let max_count = ctrl
            .max_count
            .as_ref()
            .and_then(|m| limit_for(m, ""))
            .unwrap_or(i64::MAX);
        let Some(chain) = self.longest_chain(node, &["extends"], |_| true, extends_memo) else {
            errors.push((
                doc,
                pointer,
                "recursiveStructureNarrow",
                format!("{} extends itself", elem.id),
            ));
            return;
        };
        let max_seen = chain.saturating_sub(1);
        if max_seen as i64 > max_depth {
            errors.push((
                doc,
                pointer.clone(),
                "excessiveDepthNarrow",
                format!(
                    "{} has an extends chain {max_seen} levels deep; the limit is {max_depth}",
                    elem.id
                ),
            ));
            // Walking its inherited contents would cost as much as the chain is long.
            return;
        }
        if let Ok(max_count) = usize::try_from(max_count) {
            let ancestors = self.reachable(node, &["extends"], max_count).len();
            if ancestors > max_count {
                errors.push((
                    doc,
                    pointer.clone(),
                    "excessiveCount",
                    format!(
                        "{} has more than {max_count} ancestors; the limit is {max_count}",
                        elem.id
                    ),
                ));
            }
        }
        // Names must stay unique once inherited contents are imported.
        let contents = self.flattened_contents(node);
        let mut names: HashMap<String, (usize, ElemId)> = HashMap::new();
        for c in contents {
            let Some(name) = c.elem().str_prop("name") else {
                continue;
            };
            if let Some(prev) = names.insert(name.to_string(), c.key())
                && prev != c.key()
            {
                errors.push((doc, pointer.clone(), "nonUniqueImportedPropertyValue", format!("{} has more than one content named '{name}' once inherited contents are included", elem.id)));
                break;
            }
        }
        if let Some(limit) = self
            .control("Interface", version, "contents")
            .and_then(|c| c.max_count.as_ref())
            .and_then(|m| limit_for(m, ""))
        {
            let count = self
                .reachable(
                    node,
                    DESCENDANT_PATH,
                    usize::try_from(limit).unwrap_or(usize::MAX),
                )
                .len();
            if count as i64 > limit {
                errors.push((
                    doc,
                    pointer,
                    "excessiveCount",
                    format!(
                        "{} has {count} elements in its hierarchy; the limit is {limit}",
                        elem.id
                    ),
                ));
            }
        }
    }
}
