//! The interface graph: which interface extends which, and what each relationship targets.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kube::ResourceExt;

use crate::crd::{TwinInterface, TwinInterfaceSpec, TwinRelationship};

/// A problem in a set of interfaces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceProblem {
    /// An interface extends an interface that does not exist.
    #[error("interface {interface}: extends unknown interface {parent}")]
    UnknownParent {
        /// The extending interface.
        interface: String,
        /// The missing parent.
        parent: String,
    },
    /// A relationship targets an interface that does not exist.
    #[error(
        "interface {interface}: relationship {relationship} targets unknown interface {target}"
    )]
    UnknownTarget {
        /// The interface declaring the relationship.
        interface: String,
        /// The relationship name.
        relationship: String,
        /// The missing target interface.
        target: String,
    },
    /// An interface extends itself, directly or through its parents.
    #[error("interface {interface}: extends forms a cycle ({})", cycle.join(" -> "))]
    ExtendsCycle {
        /// An interface lying on the cycle.
        interface: String,
        /// The path `interface -> … -> interface` through `extends`.
        cycle: Vec<String>,
    },
}

/// Interfaces by name with their inheritance and relationship edges.
#[derive(Debug, Clone, Default)]
pub struct InterfaceGraph {
    interfaces: BTreeMap<String, TwinInterfaceSpec>,
}

impl InterfaceGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// A graph of these interfaces, keyed by `metadata.name`; a later duplicate replaces an
    /// earlier one (use [`InterfaceGraph::insert`] to detect duplicates).
    pub fn from_interfaces<'a>(interfaces: impl IntoIterator<Item = &'a TwinInterface>) -> Self {
        let mut graph = Self::new();
        for iface in interfaces {
            graph.insert(iface.name_any(), iface.spec.clone());
        }
        graph
    }

    /// Adds or replaces an interface; returns the previous spec under that name.
    pub fn insert(&mut self, name: String, spec: TwinInterfaceSpec) -> Option<TwinInterfaceSpec> {
        self.interfaces.insert(name, spec)
    }

    /// Removes an interface; edges pointing at it become unknown references.
    pub fn remove(&mut self, name: &str) -> Option<TwinInterfaceSpec> {
        self.interfaces.remove(name)
    }

    /// The interface named `name`.
    pub fn get(&self, name: &str) -> Option<&TwinInterfaceSpec> {
        self.interfaces.get(name)
    }

    /// True when the graph has `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.interfaces.contains_key(name)
    }

    /// Interface names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.interfaces.keys().map(String::as_str)
    }

    /// Number of interfaces.
    pub fn len(&self) -> usize {
        self.interfaces.len()
    }

    /// True when there is no interface.
    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty()
    }

    /// Direct parents of `name` (known or not).
    pub fn parents(&self, name: &str) -> Vec<&str> {
        self.interfaces
            .get(name)
            .map(|s| s.parents())
            .unwrap_or_default()
    }

    /// Known ancestors of `name`, nearest first (breadth-first, each once; safe on cycles).
    pub fn ancestors(&self, name: &str) -> Vec<&str> {
        let mut seen = BTreeSet::from([name]);
        let mut order = Vec::new();
        let mut queue: VecDeque<&str> = self.parents(name).into();
        while let Some(next) = queue.pop_front() {
            let Some((key, spec)) = self.interfaces.get_key_value(next) else {
                continue;
            };
            if seen.insert(key.as_str()) {
                order.push(key.as_str());
                queue.extend(spec.parents());
            }
        }
        order
    }

    /// True when `name` is `base` or derives from it.
    pub fn is_a(&self, name: &str, base: &str) -> bool {
        name == base || self.ancestors(name).contains(&base)
    }

    /// Interfaces that are `base` or derive from it, sorted.
    pub fn descendants_or_self(&self, base: &str) -> Vec<&str> {
        self.names().filter(|n| self.is_a(n, base)).collect()
    }

    /// Relationships of `name`: its own first, then inherited ones nearest first; a name
    /// redeclared lower in the chain hides the inherited one.
    pub fn relationships(&self, name: &str) -> Vec<&TwinRelationship> {
        let mut seen = BTreeSet::new();
        let chain = std::iter::once(name).chain(self.ancestors(name));
        let mut out = Vec::new();
        for iface in chain {
            for rel in self
                .interfaces
                .get(iface)
                .map(|s| s.relationships.as_slice())
                .unwrap_or_default()
            {
                if seen.insert(rel.name.as_str()) {
                    out.push(rel);
                }
            }
        }
        out
    }

    /// The relationship `relationship` of `name` (own or inherited).
    pub fn relationship(&self, name: &str, relationship: &str) -> Option<&TwinRelationship> {
        self.relationships(name)
            .into_iter()
            .find(|r| r.name == relationship)
    }

    /// Every unknown parent, unknown relationship target and `extends` cycle, in name order.
    pub fn problems(&self) -> Vec<InterfaceProblem> {
        let mut problems = Vec::new();
        for (name, spec) in &self.interfaces {
            for parent in spec.parents() {
                if !self.contains(parent) {
                    problems.push(InterfaceProblem::UnknownParent {
                        interface: name.clone(),
                        parent: parent.to_owned(),
                    });
                }
            }
            for rel in &spec.relationships {
                if let Some(target) = rel.interface.as_deref().filter(|t| !self.contains(t)) {
                    problems.push(InterfaceProblem::UnknownTarget {
                        interface: name.clone(),
                        relationship: rel.name.clone(),
                        target: target.to_owned(),
                    });
                }
            }
            if let Some(cycle) = self.cycle_from(name) {
                problems.push(InterfaceProblem::ExtendsCycle {
                    interface: name.clone(),
                    cycle,
                });
            }
        }
        problems
    }

    /// A path `name -> … -> name` through `extends`, if `name` lies on a cycle.
    fn cycle_from(&self, name: &str) -> Option<Vec<String>> {
        // Depth-first search keeping the path, so the reported cycle is readable.
        fn walk<'a>(
            graph: &'a InterfaceGraph,
            start: &str,
            current: &'a str,
            path: &mut Vec<&'a str>,
            visited: &mut BTreeSet<&'a str>,
        ) -> bool {
            for parent in graph.parents(current) {
                if parent == start {
                    path.push(parent);
                    return true;
                }
                if graph.contains(parent) && visited.insert(parent) {
                    path.push(parent);
                    if walk(graph, start, parent, path, visited) {
                        return true;
                    }
                    path.pop();
                }
            }
            false
        }
        let (key, _) = self.interfaces.get_key_value(name)?;
        let mut path = vec![key.as_str()];
        let mut visited = BTreeSet::new();
        walk(self, name, key, &mut path, &mut visited)
            .then(|| path.into_iter().map(str::to_owned).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn iface(name: &str, parents: &[&str], rels: &[(&str, &str)]) -> TwinInterface {
        let spec = TwinInterfaceSpec {
            extends_interface: parents.first().map(|p| p.to_string()),
            extends_interfaces: if parents.len() > 1 {
                parents.iter().map(|p| p.to_string()).collect()
            } else {
                vec![]
            },
            relationships: rels
                .iter()
                .map(|(n, t)| TwinRelationship {
                    name: n.to_string(),
                    interface: Some(t.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        TwinInterface::new(name, spec)
    }

    #[test]
    fn inheritance_and_inherited_relationships() {
        let ifaces = [
            iface("object", &[], &[("location", "place")]),
            iface("furniture", &["object"], &[]),
            iface("pole", &["furniture", "powered"], &[("light", "lamp")]),
            iface("powered", &[], &[("grid", "place")]),
            iface("place", &[], &[]),
            iface("lamp", &["powered"], &[]),
        ];
        let g = InterfaceGraph::from_interfaces(&ifaces);
        assert_eq!(g.ancestors("pole"), vec!["furniture", "powered", "object"]);
        assert!(g.is_a("pole", "object"));
        assert!(!g.is_a("object", "pole"));
        assert_eq!(
            g.descendants_or_self("powered"),
            vec!["lamp", "pole", "powered"]
        );
        let rels: Vec<_> = g
            .relationships("pole")
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(rels, vec!["light", "grid", "location"]);
        assert_eq!(
            g.relationship("pole", "location")
                .unwrap()
                .interface
                .as_deref(),
            Some("place")
        );
        assert!(g.problems().is_empty(), "{:?}", g.problems());
    }

    #[test]
    fn reports_unknown_references_and_cycles() {
        let ifaces = [
            iface("a", &["b"], &[("r", "missing")]),
            iface("b", &["c"], &[]),
            iface("c", &["a"], &[]),
            iface("d", &["nowhere"], &[]),
        ];
        let mut g = InterfaceGraph::from_interfaces(&ifaces);
        let problems = g.problems();
        assert!(problems.contains(&InterfaceProblem::UnknownTarget {
            interface: "a".into(),
            relationship: "r".into(),
            target: "missing".into()
        }));
        assert!(problems.contains(&InterfaceProblem::UnknownParent {
            interface: "d".into(),
            parent: "nowhere".into()
        }));
        let cycle = problems
            .iter()
            .find_map(|p| match p {
                InterfaceProblem::ExtendsCycle { interface, cycle } if interface == "a" => {
                    Some(cycle.clone())
                }
                _ => None,
            })
            .expect("cycle reported");
        assert_eq!(cycle, vec!["a", "b", "c", "a"]);
        // The ancestor walk terminates on the cycle.
        assert_eq!(g.ancestors("a"), vec!["b", "c"]);
        g.remove("c");
        assert!(
            g.problems()
                .iter()
                .all(|p| !matches!(p, InterfaceProblem::ExtendsCycle { .. }))
        );
    }
}
