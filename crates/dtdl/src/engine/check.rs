//! Set-level rules, once every reference resolved: inheritance, nesting depth and counts of
//! descendants (the digest's descendant controls, under the element's limit profile), enum
//! values against their schema, components, and the constraints of supplemental types.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::graph::ChainMemo;
use super::resolve::Node;
use super::siblings::supplemental_def;
use super::walk::supplemental_chain;
use super::{Element, Parser, PropValue};
use crate::digest::{DescendantControl, digest, limit_for};

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

/// Properties through which complex schemas nest.
pub(crate) const SCHEMA_PATH: &[&str] = &[
    "elementSchema",
    "schema",
    "fields",
    "mapKey",
    "mapValue",
    "enumValues",
];

fn is_complex(elem: &Element) -> bool {
    matches!(elem.class.as_str(), "Array" | "Enum" | "Map" | "Object")
}

/// One set-level error: where, about which element (and which other one), what.
struct Finding {
    doc: usize,
    pointer: String,
    primary: String,
    secondary: Option<String>,
    code: &'static str,
    message: String,
}

/// What the set-level pass found, and the chain lengths it already measured.
#[derive(Default)]
pub(crate) struct Findings {
    errors: Vec<Finding>,
    /// (code, primary, secondary) of the errors recorded, to record each once.
    recorded: HashSet<(&'static str, String, Option<String>)>,
    extends: ChainMemo,
    schemas: ChainMemo,
}

impl Findings {
    pub(crate) fn push(&mut self, elem: &Element, code: &'static str, message: String) {
        self.record(elem, None, code, message);
    }

    /// An error about `elem` that involves another element (or property) `secondary`.
    pub(crate) fn push_pair(
        &mut self,
        elem: &Element,
        secondary: &str,
        code: &'static str,
        message: String,
    ) {
        self.record(elem, Some(secondary.to_string()), code, message);
    }

    fn record(
        &mut self,
        elem: &Element,
        secondary: Option<String>,
        code: &'static str,
        message: String,
    ) {
        // The same rule can be reached through several interfaces that include an element.
        if !self
            .recorded
            .insert((code, elem.id.clone(), secondary.clone()))
        {
            return;
        }
        self.errors.push(Finding {
            doc: elem.doc,
            pointer: elem.pointer.clone(),
            primary: elem.id.clone(),
            secondary,
            code,
            message,
        });
    }
}

/// A limit of a descendant control under a profile (`None`: unlimited).
fn limit(value: &Option<crate::digest::Limit>, profile: &str) -> Option<i64> {
    value.as_ref().and_then(|m| limit_for(m, profile))
}

impl Parser<'_> {
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
        let mut found = Findings::default();
        for idx in 0..self.arena.elems.len() {
            let node = self.node(idx);
            match node.elem().class.as_str() {
                "Interface" => self.check_interface(node, &mut found),
                "Array" | "Map" | "Object" => self.check_schema_depth(node, &mut found),
                "Enum" => {
                    self.check_schema_depth(node, &mut found);
                    self.check_enum_values(node, &mut found);
                }
                "Component" => self.check_component(node, &mut found),
                "Property" => self.check_property_schema(node, &mut found),
                _ => {}
            }
            self.check_cotype_constraints(node, &mut found);
            self.check_instance_conformance(node, &mut found);
        }
        self.check_siblings(&mut found);
        self.check_unique_values(&mut found);
        for f in found.errors {
            let at = self.at(f.doc, &f.pointer).primary(&f.primary);
            match &f.secondary {
                Some(secondary) => at.secondary(secondary).error(f.code, f.message),
                None => at.error(f.code, f.message),
            }
        }
    }

    /// Complex schemas nest no deeper than the limit and contain themselves only where
    /// the version allows it.
    fn check_schema_depth(&self, node: Node<'_>, found: &mut Findings) {
        let elem = node.elem();
        let Some(ctrl) = self.control(&elem.class, elem.version, "elementSchema") else {
            return;
        };
        let max = limit(&ctrl.max_depth, &elem.profile).unwrap_or(i64::MAX);
        match self.longest_chain(node, SCHEMA_PATH, is_complex, &mut found.schemas) {
            None if !ctrl.allow_self => found.push(
                elem,
                "recursiveStructureWide",
                format!("{} contains itself", elem.id),
            ),
            Some(depth) if depth as i64 > max => found.push(
                elem,
                "excessiveDepthWide",
                format!(
                    "{} nests complex schemas {depth} levels deep; the limit is {max}",
                    elem.id
                ),
            ),
            _ => {}
        }
    }

    /// Each enum value is of the enum's value schema (the digest's descendant control with a
    /// `datatypeProperty`): reported on the value, naming the enum that governs it.
    fn check_enum_values(&self, node: Node<'_>, found: &mut Findings) {
        let value_schema = self
            .prop_nodes(node, "valueSchema")
            .first()
            .map(|n| n.elem().class.clone());
        for ev in self.prop_nodes(node, "enumValues") {
            let Some(v) = ev.elem().literal("enumValue") else {
                continue;
            };
            // `integer` is the XSD int of the reference parser: a 32-bit whole number.
            let fits = match value_schema.as_deref() {
                Some("Integer") => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                Some("String") => v.is_string(),
                _ => true,
            };
            if !fits {
                let schema = value_schema.clone().unwrap_or_default().to_lowercase();
                found.push_pair(
                    ev.elem(),
                    &node.elem().id,
                    "nonConformantDatatype",
                    format!(
                        "enumValue {v} is not of the datatype {schema} that the valueSchema of {} requires",
                        node.elem().id
                    ),
                );
            }
        }
    }

    /// A component's interface has no components of its own.
    fn check_component(&self, node: Node<'_>, found: &mut Findings) {
        for iface in self.prop_nodes(node, "schema") {
            let contents = self.flattened_contents(iface);
            if contents.iter().any(|c| c.elem().class == "Component") {
                found.push(
                    node.elem(),
                    "excludedType",
                    format!(
                        "component schema {} contains a Component, which components may not",
                        iface.elem().id
                    ),
                );
            }
        }
    }

    /// A property's schema excludes the classes the version excludes (arrays in DTDL v2).
    fn check_property_schema(&self, node: Node<'_>, found: &mut Findings) {
        let elem = node.elem();
        let version = elem.version;
        if let Some(ctrl) = self.control("Property", version, "schema")
            && let Some(excluded) = &ctrl.exclude_type
            && self
                .prop_nodes(node, "schema")
                .into_iter()
                .any(|s| self.reaches_class(s, SCHEMA_PATH, excluded))
        {
            found.push(
                elem,
                "excludedType",
                format!("a DTDL v{version} Property schema may not contain an {excluded}"),
            );
        }
    }

    /// Constraints of supplemental types on property values (e.g. numeric schemas).
    fn check_cotype_constraints(&self, node: Node<'_>, found: &mut Findings) {
        for c in &node.elem().cotypes {
            for (tiri, t) in supplemental_chain(c) {
                for constraint in &t.constraints {
                    let Some(prop) = constraint.get("property").and_then(Value::as_str) else {
                        continue;
                    };
                    if constraint.get("inverse").and_then(Value::as_bool) == Some(true) {
                        self.check_inverse(node, tiri, constraint, found);
                        continue;
                    }
                    self.check_required_types(node, tiri, prop, constraint, found);
                    self.check_required_values(node, tiri, prop, constraint, found);
                }
            }
        }
    }

    fn check_required_types(
        &self,
        node: Node<'_>,
        tiri: &str,
        prop: &str,
        constraint: &Value,
        found: &mut Findings,
    ) {
        let Some(required) = constraint.get("requiredTypes").and_then(Value::as_array) else {
            return;
        };
        for target in self.prop_nodes(node, prop) {
            let te = target.elem();
            let fits = required.iter().filter_map(Value::as_str).any(|r| {
                r.strip_prefix("dtmi:dtdl:class:")
                    .and_then(|x| x.split(';').next())
                    .is_some_and(|cls| digest().is_subclass(&te.class, cls, te.version))
                    || te.cotypes.iter().any(|ct| ct == r)
            });
            if !fits {
                let names = constraint
                    .get("requiredTypesString")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                found.push(
                    node.elem(),
                    "notRequiredType",
                    format!("co-type {tiri} requires property '{prop}' to be {names}"),
                );
            }
        }
    }

    fn check_required_values(
        &self,
        node: Node<'_>,
        tiri: &str,
        prop: &str,
        constraint: &Value,
        found: &mut Findings,
    ) {
        let Some(values) = constraint.get("requiredValues").and_then(Value::as_array) else {
            return;
        };
        let elem = node.elem();
        for v in elem.props.get(prop).into_iter().flatten() {
            let text = match v {
                PropValue::Ref(t) => Value::from(t.as_str()),
                PropValue::Literal(l) => l.clone(),
                PropValue::Child(c) => Value::from(node.arena.elems[*c].id.as_str()),
            };
            if !values.contains(&text) {
                let names = constraint
                    .get("requiredValuesString")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                found.push(
                    elem,
                    "notRequiredValue",
                    format!("co-type {tiri} requires property '{prop}' to be {names}"),
                );
            }
        }
    }

    /// Values that must conform to the element's schema (`maximum`, `minimum` and
    /// `scaleFactor` of a telemetry are instances of its `schema`).
    fn check_instance_conformance(&self, node: Node<'_>, found: &mut Findings) {
        let elem = node.elem();
        for (iri, values) in &elem.supplemental {
            let Some(governing) =
                supplemental_def(elem, iri).and_then(|d| d.instance_property.as_deref())
            else {
                continue;
            };
            for schema in self.prop_nodes(node, governing) {
                let violation = values.iter().find_map(|v| match v {
                    PropValue::Literal(value) => self.instance_violation(value, None, schema, 0),
                    _ => None,
                });
                if let Some(why) = violation {
                    found.push(
                        elem,
                        "nonConformantPropertyValue",
                        format!(
                            "{}'s '{iri}' does not conform to its '{governing}': {why}",
                            elem.id
                        ),
                    );
                }
            }
        }
    }

    /// Inheritance (no cycle, depth and ancestor limits), names unique once inherited
    /// contents are imported, and the count of descendants.
    fn check_interface(&self, node: Node<'_>, found: &mut Findings) {
        let elem = node.elem();
        let Some(ctrl) = self.control("Interface", elem.version, "extends") else {
            return;
        };
        if !self.check_extends(node, ctrl, found) {
            return;
        }
        // A content inherited by this interface (not one of its own, whose duplicate names
        // the walk reported as nonUniquePropertyValue).
        let inherited = |c: &Node<'_>| c.elem().parent.as_ref().is_none_or(|(p, _)| *p != node.idx);
        let mut names: HashMap<String, Node<'_>> = HashMap::new();
        for c in self.flattened_contents(node) {
            let Some(name) = c.elem().str_prop("name") else {
                continue;
            };
            if let Some(prev) = names.insert(name.to_string(), c)
                && prev.key() != c.key()
                && (inherited(&prev) || inherited(&c))
            {
                found.push(elem, "nonUniqueImportedPropertyValue", format!("{} has more than one content named '{name}' once inherited contents are included", elem.id));
                break;
            }
        }
        if let Some(max) = self
            .control("Interface", elem.version, "contents")
            .and_then(|c| limit(&c.max_count, &elem.profile))
        {
            let count = self
                .reachable(
                    node,
                    DESCENDANT_PATH,
                    usize::try_from(max).unwrap_or(usize::MAX),
                )
                .len();
            if count as i64 > max {
                found.push(
                    elem,
                    "excessiveCount",
                    format!(
                        "{} has {count} elements in its hierarchy; the limit is {max}",
                        elem.id
                    ),
                );
            }
        }
    }

    /// True when the interface's `extends` chain was measured, is acyclic and within its
    /// depth limit, so walking its inherited contents is bounded.
    pub(crate) fn contents_walkable(&self, node: Node<'_>, found: &Findings) -> bool {
        let elem = node.elem();
        let Some(ctrl) = self.control("Interface", elem.version, "extends") else {
            return true;
        };
        let max_depth = limit(&ctrl.max_depth, &elem.profile).unwrap_or(i64::MAX);
        matches!(found.extends.get(&node.key()), Some(Some(chain)) if (*chain as i64) - 1 <= max_depth)
    }

    /// The `extends` rules; false when the chain is cyclic or too deep to walk its contents.
    fn check_extends(
        &self,
        node: Node<'_>,
        ctrl: &DescendantControl,
        found: &mut Findings,
    ) -> bool {
        let elem = node.elem();
        let Some(chain) = self.longest_chain(node, &["extends"], |_| true, &mut found.extends)
        else {
            found.push(
                elem,
                "recursiveStructureNarrow",
                format!("{} extends itself", elem.id),
            );
            return false;
        };
        let depth = chain.saturating_sub(1);
        let max_depth = limit(&ctrl.max_depth, &elem.profile).unwrap_or(i64::MAX);
        if depth as i64 > max_depth {
            found.push(
                elem,
                "excessiveDepthNarrow",
                format!(
                    "{} has an extends chain {depth} levels deep; the limit is {max_depth}",
                    elem.id
                ),
            );
            // Walking its inherited contents would cost as much as the chain is long.
            return false;
        }
        if let Some(max_count) =
            limit(&ctrl.max_count, &elem.profile).and_then(|m| usize::try_from(m).ok())
            && self.reachable(node, &["extends"], max_count).len() > max_count
        {
            found.push(
                elem,
                "excessiveCount",
                format!(
                    "{} has more than {max_count} ancestors; the limit is {max_count}",
                    elem.id
                ),
            );
        }
        true
    }
}
