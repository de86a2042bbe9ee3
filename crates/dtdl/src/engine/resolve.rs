//! Stage 2: set-level rules — identifiers, references, inheritance and descendant limits.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

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
            self.error(
                doc,
                &pointer,
                "duplicateDefinition",
                Some(&Value::from(id.as_str())),
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
                        self.error(doc, &site.pointer, "crossPartitionReference", Some(&Value::from(site.target.as_str())), format!("property '{}' refers to {}, a {class} defined inside another interface; only interfaces can be referenced across interfaces", site.prop, site.target));
                        continue;
                    }
                    if let Some(required) = &site.class
                        && !digest.is_subclass(&class, required, version)
                    {
                        self.error(doc, &site.pointer, "notRequiredType", Some(&Value::from(site.target.as_str())), format!("property '{}' refers to {}, which is a {class}; expected a {required}", site.prop, site.target));
                        continue;
                    }
                    if !is_std && !site.versions.is_empty() && !site.versions.contains(&version) {
                        self.error(doc, &site.pointer, "disallowedVersionReference", Some(&Value::from(site.target.as_str())), format!("property '{}' refers to {}, written in DTDL v{version}, which a DTDL v{from_version} element cannot use here", site.prop, site.target));
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
                        self.error(doc, &site.pointer, "undefinedReservedId", Some(&Value::from(site.target.as_str())), format!("property '{}' refers to {}, which is not a DTDL v{from_version} standard element", site.prop, site.target));
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
        let digest = digest();
        for idx in 0..self.arena.elems.len() {
            let node = self.node(idx);
            let elem = node.elem();
            let (doc, pointer, version) = (elem.doc, elem.pointer.clone(), elem.version);
            match elem.class.as_str() {
                "Interface" => self.check_interface(node, &mut errors),
                "Array" | "Enum" | "Map" | "Object" => {
                    if let Some(ctrl) = self.control(&elem.class, version, "elementSchema") {
                        let max = ctrl
                            .max_depth
                            .as_ref()
                            .and_then(|m| limit_for(m, ""))
                            .unwrap_or(i64::MAX);
                        let mut stack = Vec::new();
                        match self.schema_depth(node, &mut stack) {
                            Err(()) if !ctrl.allow_self => errors.push((doc, pointer.clone(), "recursiveStructureWide", format!("{} contains itself", elem.id))),
                            Ok(depth) if depth as i64 > max => errors.push((doc, pointer.clone(), "excessiveDepthWide", format!("{} nests complex schemas {depth} levels deep; the limit is {max}", elem.id))),
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
                    {
                        let mut seen = HashSet::new();
                        if self
                            .prop_nodes(node, "schema")
                            .into_iter()
                            .any(|s| self.contains_class(s, excluded, &mut seen))
                        {
                            errors.push((doc, pointer.clone(), "excludedType", format!("a DTDL v{version} Property schema may not contain an {excluded}")));
                        }
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
            self.error(doc, &pointer, code, None, message);
        }
    }

    fn check_interface(
        &self,
        node: Node<'_>,
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
        // Depth-first over extends, detecting cycles.
        let mut ancestors = HashSet::new();
        let mut path = vec![node.key()];
        let mut max_seen = 0usize;
        if self
            .extends_walk(node, &mut path, &mut ancestors, &mut max_seen)
            .is_err()
        {
            errors.push((
                doc,
                pointer,
                "recursiveStructureNarrow",
                format!("{} extends itself", elem.id),
            ));
            return;
        }
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
        }
        if ancestors.len() as i64 > max_count {
            errors.push((
                doc,
                pointer.clone(),
                "excessiveCount",
                format!(
                    "{} has {} ancestors; the limit is {max_count}",
                    elem.id,
                    ancestors.len()
                ),
            ));
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
            let mut seen = HashSet::new();
            let count = self.count_descendants(node, &mut seen);
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

    fn extends_walk(
        &self,
        node: Node<'_>,
        path: &mut Vec<(usize, ElemId)>,
        ancestors: &mut HashSet<(usize, ElemId)>,
        max_depth: &mut usize,
    ) -> Result<(), ()> {
        *max_depth = (*max_depth).max(path.len() - 1);
        for parent in self.prop_nodes(node, "extends") {
            if path.contains(&parent.key()) {
                return Err(());
            }
            ancestors.insert(parent.key());
            path.push(parent.key());
            self.extends_walk(parent, path, ancestors, max_depth)?;
            path.pop();
        }
        Ok(())
    }

    /// Contents of an interface, inherited ones first (each element once).
    pub(crate) fn flattened_contents<'s>(&'s self, node: Node<'s>) -> Vec<Node<'s>> {
        let mut out = Vec::new();
        let mut seen_ifaces = HashSet::new();
        let mut seen = HashSet::new();
        self.collect_contents(node, &mut out, &mut seen_ifaces, &mut seen);
        out
    }

    fn collect_contents<'s>(
        &'s self,
        node: Node<'s>,
        out: &mut Vec<Node<'s>>,
        seen_ifaces: &mut HashSet<(usize, ElemId)>,
        seen: &mut HashSet<(usize, ElemId)>,
    ) {
        if !seen_ifaces.insert(node.key()) {
            return;
        }
        for parent in self.prop_nodes(node, "extends") {
            self.collect_contents(parent, out, seen_ifaces, seen);
        }
        for c in self.prop_nodes(node, "contents") {
            if seen.insert(c.key()) {
                out.push(c);
            }
        }
    }

    /// Nesting depth of complex schemas below (and including) `node`; Err on self-containment.
    fn schema_depth(&self, node: Node<'_>, stack: &mut Vec<(usize, ElemId)>) -> Result<usize, ()> {
        if stack.contains(&node.key()) {
            return Err(());
        }
        let complex = matches!(
            node.elem().class.as_str(),
            "Array" | "Enum" | "Map" | "Object"
        );
        stack.push(node.key());
        let mut deepest = 0;
        for prop in SCHEMA_PATH {
            for child in self.prop_nodes(node, prop) {
                deepest = deepest.max(self.schema_depth(child, stack)?);
            }
        }
        stack.pop();
        Ok(deepest + usize::from(complex))
    }

    fn contains_class(
        &self,
        node: Node<'_>,
        class: &str,
        seen: &mut HashSet<(usize, ElemId)>,
    ) -> bool {
        if !seen.insert(node.key()) {
            return false;
        }
        if node.elem().class == class {
            return true;
        }
        SCHEMA_PATH.iter().any(|p| {
            self.prop_nodes(node, p)
                .into_iter()
                .any(|c| self.contains_class(c, class, seen))
        })
    }

    fn count_descendants(&self, node: Node<'_>, seen: &mut HashSet<(usize, ElemId)>) -> usize {
        let mut count = 0;
        for prop in [
            "contents",
            "fields",
            "enumValues",
            "request",
            "response",
            "properties",
            "schema",
            "elementSchema",
            "mapValue",
        ] {
            for child in self.prop_nodes(node, prop) {
                if seen.insert(child.key()) {
                    count += 1 + self.count_descendants(child, seen);
                }
            }
        }
        count
    }
}
