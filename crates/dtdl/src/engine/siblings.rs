//! Rules between elements of one container, as extensions state them in the digest:
//!
//! - an interface's contents (inherited ones included) that name a sibling by its `name`:
//!   a `ValueAnnotation` annotates a Property or Telemetry that is not itself an annotation;
//!   an `Override` replaces a supplemental property (`unit`) the annotated sibling has, with a
//!   schema of that property's type, and no two overrides replace the same property of the
//!   same sibling (the digest's `siblings` rules and `siblingKey` constraints);
//! - an object's fields co-typed for MQTT results and errors: the parent carries the co-type
//!   the field needs, no sibling repeats it, and a sibling the field needs is there (the
//!   digest's `inverse` constraints);
//! - values declared unique among the elements of one parent property (`index`).

use std::collections::HashMap;

use serde_json::Value;

use super::check::Findings;
use super::resolve::Node;
use super::walk::supplemental_chain;
use super::{ElemId, Element, Parser, PropValue};
use crate::digest::{SiblingRule, SupplementalProperty};

/// The first string value of a supplemental property.
fn supplemental_str<'e>(elem: &'e Element, iri: &str) -> Option<&'e str> {
    elem.supplemental.get(iri)?.iter().find_map(|v| match v {
        PropValue::Literal(Value::String(s)) => Some(s.as_str()),
        PropValue::Ref(s) => Some(s.as_str()),
        _ => None,
    })
}

/// True when one of the element's supplemental types is `iri` or derives from it.
pub(crate) fn has_cotype(elem: &Element, iri: &str) -> bool {
    elem.cotypes
        .iter()
        .any(|c| supplemental_chain(c).iter().any(|(t, _)| *t == iri))
}

/// The definition of supplemental property `iri` among the element's supplemental types.
pub(crate) fn supplemental_def(elem: &Element, iri: &str) -> Option<&'static SupplementalProperty> {
    elem.cotypes.iter().find_map(|c| {
        supplemental_chain(c)
            .into_iter()
            .find_map(|(_, t)| t.properties.get(iri))
    })
}

/// True when the element's class is one of the class IRIs (`dtmi:dtdl:class:Property;3`).
fn is_of_classes(elem: &Element, classes: &[String]) -> bool {
    classes.iter().any(|iri| {
        iri.strip_prefix("dtmi:dtdl:class:")
            .and_then(|rest| rest.split_once(';'))
            .is_some_and(|(name, v)| name == elem.class && v == elem.version.to_string())
    })
}

/// An interface's contents (inherited ones included) and their index by name.
struct Siblings<'s> {
    iface: Node<'s>,
    contents: Vec<Node<'s>>,
    by_name: HashMap<&'s str, Node<'s>>,
}

impl<'s> Siblings<'s> {
    /// The sibling whose `key` property has the value `element` gives in `keyref`.
    fn named(&self, element: &Element, key: &str, keyref: &str) -> Option<Node<'s>> {
        let name = supplemental_str(element, keyref)?;
        let sibling = (key == "name").then(|| self.by_name.get(name))??;
        (!std::ptr::eq(sibling.elem(), element)).then_some(*sibling)
    }
}

impl Parser<'_> {
    /// The sibling rules of every interface's contents.
    pub(crate) fn check_siblings(&self, found: &mut Findings) {
        let relevant = self.arena.elems.iter().any(|e| {
            e.cotypes.iter().any(|c| {
                supplemental_chain(c).iter().any(|(_, t)| {
                    !t.siblings.is_empty()
                        || t.constraints.iter().any(|k| k.get("siblingKey").is_some())
                })
            })
        });
        if !relevant {
            return;
        }
        for idx in 0..self.arena.elems.len() {
            if self.arena.elems[idx].class != "Interface" {
                continue;
            }
            let iface = self.node(idx);
            if !self.contents_walkable(iface, found) {
                continue;
            }
            let contents = self.flattened_contents(iface);
            let mut by_name = HashMap::new();
            for c in &contents {
                if let Some(name) = c.elem().str_prop("name") {
                    by_name.entry(name).or_insert(*c);
                }
            }
            let siblings = Siblings {
                iface,
                contents,
                by_name,
            };
            self.check_sibling_rules(&siblings, found);
        }
    }

    fn check_sibling_rules(&self, siblings: &Siblings<'_>, found: &mut Findings) {
        // (rule's unique property, sibling name, value) → the element that used it first.
        let mut references: HashMap<(&str, &str, &str), ElemId> = HashMap::new();
        for content in &siblings.contents {
            let elem = content.elem();
            for c in &elem.cotypes {
                for (_, t) in supplemental_chain(c) {
                    for rule in &t.siblings {
                        self.check_sibling_rule(siblings, elem, rule, found);
                        self.check_unique_reference(siblings, elem, rule, &mut references, found);
                    }
                    for constraint in &t.constraints {
                        self.check_override(siblings, elem, constraint, found);
                    }
                }
            }
        }
    }

    /// The sibling an element names is of a required class and not of a disallowed type.
    fn check_sibling_rule(
        &self,
        siblings: &Siblings<'_>,
        elem: &Element,
        rule: &SiblingRule,
        found: &mut Findings,
    ) {
        let Some(sibling) = siblings.named(elem, &rule.key, &rule.keyref) else {
            return;
        };
        let target = sibling.elem();
        let name = target.str_prop("name").unwrap_or_default();
        if !rule.required_types.is_empty() && !is_of_classes(target, &rule.required_types) {
            let wanted = rule.required_types_string.as_deref().unwrap_or_default();
            found.push_pair(
                elem,
                &target.id,
                "notSiblingRequiredType",
                format!(
                    "{} refers to sibling '{name}', a {}; it must be a {wanted}",
                    elem.id, target.class
                ),
            );
        }
        if let Some(banned) = &rule.disallowed_type
            && has_cotype(target, banned)
        {
            found.push_pair(
                elem,
                &target.id,
                "disallowedType",
                format!(
                    "{} refers to sibling '{name}', which is itself co-typed {banned}",
                    elem.id
                ),
            );
        }
    }

    /// No two elements refer to the same sibling with the same value of the unique property.
    fn check_unique_reference<'r>(
        &self,
        siblings: &Siblings<'_>,
        elem: &'r Element,
        rule: &'r SiblingRule,
        seen: &mut HashMap<(&'r str, &'r str, &'r str), ElemId>,
        found: &mut Findings,
    ) {
        let Some(unique) = rule.unique_reference.as_deref() else {
            return;
        };
        let (Some(name), Some(value)) = (
            supplemental_str(elem, &rule.keyref),
            supplemental_str(elem, unique),
        ) else {
            return;
        };
        let first = *seen
            .entry((unique, name, value))
            .or_insert(elem_index(elem, siblings));
        if first != elem_index(elem, siblings) {
            let iface = siblings.iface.elem();
            found.push_pair(
                iface,
                unique,
                "multipleReference",
                format!(
                    "{} has more than one content that overrides '{value}' of '{name}'",
                    iface.id
                ),
            );
        }
    }

    /// An override replaces a supplemental property the annotated sibling has, with a value
    /// of that property's type.
    fn check_override(
        &self,
        siblings: &Siblings<'_>,
        elem: &Element,
        constraint: &Value,
        found: &mut Findings,
    ) {
        let field = |k: &str| constraint.get(k).and_then(Value::as_str);
        let (Some(key), Some(keyref), Some(parent_of), Some(prop)) = (
            field("siblingKey"),
            field("siblingKeyref"),
            field("siblingParentOf"),
            field("property"),
        ) else {
            return;
        };
        let Some(sibling) = siblings.named(elem, key, keyref) else {
            return;
        };
        let Some(overridden) = supplemental_str(elem, parent_of) else {
            return;
        };
        let target = sibling.elem();
        if overridden.starts_with("dtmi:dtdl:property:") {
            found.push_pair(elem, &target.id, "matchingPropertyNotSupplemental", format!("{} overrides '{overridden}' of {}, a property of its material type that cannot be overridden", elem.id, target.id));
            return;
        }
        let Some(def) = supplemental_def(target, overridden) else {
            found.push_pair(
                elem,
                &target.id,
                "noMatchingSupplementalProperty",
                format!(
                    "{} overrides '{overridden}', which no supplemental type of {} has",
                    elem.id, target.id
                ),
            );
            return;
        };
        let Some(expected) = def.child_of.as_deref().or(def.type_iri.as_deref()) else {
            return;
        };
        let fits = elem.props.get(prop).is_some_and(|values| {
            values
                .iter()
                .all(|v| matches!(v, PropValue::Ref(r) if r == expected))
        });
        if !fits {
            found.push(
                elem,
                "siblingPropertyMismatch",
                format!(
                    "{} overrides '{overridden}' of {}, so its '{prop}' must be {expected}",
                    elem.id, target.id
                ),
            );
        }
    }

    /// A field co-typed for a result or error sits in an object with the co-type it needs,
    /// alone of its kind, next to the sibling it needs (an `inverse` constraint).
    pub(crate) fn check_inverse(
        &self,
        node: Node<'_>,
        type_iri: &str,
        constraint: &Value,
        found: &mut Findings,
    ) {
        let elem = node.elem();
        let prop = constraint.get("property").and_then(Value::as_str);
        let Some((parent, _)) = elem
            .parent
            .as_ref()
            .filter(|(_, p)| Some(p.as_str()) == prop)
        else {
            return;
        };
        let parent = self.node(*parent);
        let prop = prop.unwrap_or_default();
        let iris = |k: &str| -> Vec<&str> {
            match constraint.get(k) {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(s)) => vec![s.as_str()],
                _ => Vec::new(),
            }
        };
        let required = iris("requiredTypes");
        if !required.is_empty() && !required.iter().any(|r| has_cotype(parent.elem(), r)) {
            let wanted = constraint
                .get("requiredTypesString")
                .and_then(Value::as_str)
                .unwrap_or_default();
            found.push(elem, "parentMissingCotype", format!("{} is co-typed {type_iri}, which is only allowed in the '{prop}' of an element co-typed {wanted}", elem.id));
        }
        let others: Vec<Node<'_>> = self
            .prop_nodes(parent, prop)
            .into_iter()
            .filter(|n| n.key() != node.key())
            .collect();
        for none in iris("noneOtherType") {
            if let Some(earlier) = others
                .iter()
                .find(|n| n.idx < node.idx && has_cotype(n.elem(), none))
            {
                found.push_pair(
                    elem,
                    &earlier.elem().id,
                    "siblingDuplicatesCotype",
                    format!(
                        "{} and {} are both co-typed {none} in the '{prop}' of {}",
                        earlier.elem().id,
                        elem.id,
                        parent.elem().id
                    ),
                );
            }
        }
        for some in iris("someOtherType") {
            if !others.iter().any(|n| has_cotype(n.elem(), some)) {
                found.push(elem, "siblingMissingCotype", format!("{} is co-typed {type_iri}, which needs a sibling in '{prop}' co-typed {some}", elem.id));
            }
        }
    }

    /// Values declared unique (`index`) differ among the elements of one parent property.
    pub(crate) fn check_unique_values(&self, found: &mut Findings) {
        let mut seen: HashMap<(ElemId, &str, &str, String), ElemId> = HashMap::new();
        for (idx, elem) in self.arena.elems.iter().enumerate() {
            let Some((parent, prop)) = &elem.parent else {
                continue;
            };
            for (iri, values) in &elem.supplemental {
                if !supplemental_def(elem, iri).is_some_and(|d| d.unique_value) {
                    continue;
                }
                for v in values {
                    let PropValue::Literal(v) = v else { continue };
                    let first = *seen
                        .entry((*parent, prop.as_str(), iri.as_str(), v.to_string()))
                        .or_insert(idx);
                    if first != idx {
                        let owner = &self.arena.elems[*parent];
                        found.push(
                            owner,
                            "nonUniquePropertyValue",
                            format!(
                                "{} has more than one element in '{prop}' whose '{iri}' is {v}",
                                owner.id
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// A stable identity of a content within one interface's walk.
fn elem_index(elem: &Element, siblings: &Siblings<'_>) -> ElemId {
    siblings
        .contents
        .iter()
        .find(|n| std::ptr::eq(n.elem(), elem))
        .map_or(usize::MAX, |n| n.idx)
}
