//! The instance graph: twins and their named relationships, as served by the graph API.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use super::InterfaceGraph;
use crate::crd::{TwinInstance, TwinInstanceRelationship};

/// The graph API document: `{"twinInstances":[{name, interface, relationships:[…]}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphJson {
    /// Every instance of the graph.
    #[serde(rename = "twinInstances", default)]
    pub twin_instances: Vec<GraphNode>,
}

/// One instance in the graph document (outgoing relationships only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphNode {
    /// Name of the TwinInstance.
    pub name: String,
    /// Name of its TwinInterface.
    pub interface: String,
    /// Outgoing relationships.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relationships: Vec<TwinInstanceRelationship>,
}

/// An instance in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceNode {
    /// Name of the instance's TwinInterface.
    pub interface: String,
    /// Outgoing relationships, sorted by (name, interface, instance) and deduplicated.
    pub relationships: Vec<TwinInstanceRelationship>,
}

/// A relationship pointing at an instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IncomingRelationship {
    /// The instance the relationship starts from.
    pub source: String,
    /// Interface of the source instance.
    pub source_interface: String,
    /// Relationship name.
    pub name: String,
}

/// Why a relationship does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceProblem {
    /// An instance names an interface that does not exist.
    #[error("instance {instance}: interface {interface} does not exist")]
    UnknownInterface {
        /// The instance.
        instance: String,
        /// The interface it names.
        interface: String,
    },
    /// The instance names a relationship its interface (and its parents) do not declare.
    #[error("instance {instance}: interface {interface} has no relationship {relationship}")]
    UnknownRelationship {
        /// The instance holding the relationship.
        instance: String,
        /// The instance's interface.
        interface: String,
        /// The undeclared relationship name.
        relationship: String,
    },
    /// A relationship points at an instance that does not exist.
    #[error("instance {instance}: relationship {relationship} points at missing instance {target}")]
    MissingTarget {
        /// The instance holding the relationship.
        instance: String,
        /// The relationship name.
        relationship: String,
        /// The missing target instance.
        target: String,
    },
    /// A relationship names an interface other than its target instance's.
    #[error(
        "instance {instance}: relationship {relationship} says {target} is a {declared} but it is a {actual}"
    )]
    InterfaceMismatch {
        /// The instance holding the relationship.
        instance: String,
        /// The relationship name.
        relationship: String,
        /// The target instance.
        target: String,
        /// The target's interface as the relationship names it.
        declared: String,
        /// The target's actual interface.
        actual: String,
    },
    /// A relationship's target is not of the interface the relationship declares (nor derived).
    #[error(
        "instance {instance}: relationship {relationship} must target a {expected} (or a derived interface), \
         but {target} is a {actual}"
    )]
    WrongTargetInterface {
        /// The instance holding the relationship.
        instance: String,
        /// The relationship name.
        relationship: String,
        /// The target instance.
        target: String,
        /// The interface the relationship declares as its target.
        expected: String,
        /// The target's interface.
        actual: String,
    },
}

/// Twins by name, with an index of incoming relationships kept in step with every change.
#[derive(Debug, Clone, Default)]
pub struct InstanceGraph {
    nodes: BTreeMap<String, InstanceNode>,
    /// target instance → (source instance, relationship name)
    incoming: BTreeMap<String, BTreeSet<(String, String)>>,
}

impl InstanceGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// A graph of these instances (a later duplicate name replaces an earlier one).
    pub fn from_instances<'a>(instances: impl IntoIterator<Item = &'a TwinInstance>) -> Self {
        let mut graph = Self::new();
        for inst in instances {
            graph.insert_instance(inst);
        }
        graph
    }

    /// A graph read back from the graph API document.
    pub fn from_json(doc: &GraphJson) -> Self {
        let mut graph = Self::new();
        for node in &doc.twin_instances {
            graph.insert(
                node.name.clone(),
                node.interface.clone(),
                node.relationships.clone(),
            );
        }
        graph
    }

    /// Adds or replaces the instance from its resource; returns the previous node.
    pub fn insert_instance(&mut self, instance: &TwinInstance) -> Option<InstanceNode> {
        self.insert(
            instance.name_any(),
            instance.spec.interface.clone(),
            instance.spec.twin_instance_relationships.clone(),
        )
    }

    /// Adds or replaces an instance; returns the previous node.
    pub fn insert(
        &mut self,
        name: String,
        interface: String,
        mut relationships: Vec<TwinInstanceRelationship>,
    ) -> Option<InstanceNode> {
        let previous = self.remove(&name);
        relationships.sort();
        relationships.dedup();
        for rel in &relationships {
            self.incoming
                .entry(rel.instance.clone())
                .or_default()
                .insert((name.clone(), rel.name.clone()));
        }
        self.nodes.insert(
            name,
            InstanceNode {
                interface,
                relationships,
            },
        );
        previous
    }

    /// Removes an instance and its outgoing relationships. Relationships of other instances
    /// that point at it stay (they belong to those instances) and show up in
    /// [`InstanceGraph::dangling`].
    pub fn remove(&mut self, name: &str) -> Option<InstanceNode> {
        let node = self.nodes.remove(name)?;
        for rel in &node.relationships {
            if let Some(sources) = self.incoming.get_mut(&rel.instance) {
                sources.remove(&(name.to_owned(), rel.name.clone()));
                if sources.is_empty() {
                    self.incoming.remove(&rel.instance);
                }
            }
        }
        Some(node)
    }

    /// The instance named `name`.
    pub fn get(&self, name: &str) -> Option<&InstanceNode> {
        self.nodes.get(name)
    }

    /// True when the graph has `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there is no instance.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Number of relationships (edges), dangling ones included.
    pub fn relationship_count(&self) -> usize {
        self.nodes.values().map(|n| n.relationships.len()).sum()
    }

    /// Instances sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &InstanceNode)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Outgoing relationships of `name` (empty when unknown).
    pub fn outgoing(&self, name: &str) -> &[TwinInstanceRelationship] {
        self.nodes
            .get(name)
            .map(|n| n.relationships.as_slice())
            .unwrap_or_default()
    }

    /// Relationships of existing instances that point at `name`, sorted by source then name.
    pub fn incoming(&self, name: &str) -> Vec<IncomingRelationship> {
        self.incoming
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|(source, rel)| {
                self.nodes.get(source).map(|n| IncomingRelationship {
                    source: source.clone(),
                    source_interface: n.interface.clone(),
                    name: rel.clone(),
                })
            })
            .collect()
    }

    /// Relationships whose target instance is missing or whose declared target interface
    /// differs from the target's actual one (needs no interface knowledge).
    pub fn dangling(&self) -> Vec<InstanceProblem> {
        let mut problems = Vec::new();
        for (name, node) in &self.nodes {
            for rel in &node.relationships {
                match self.nodes.get(&rel.instance) {
                    None => problems.push(InstanceProblem::MissingTarget {
                        instance: name.clone(),
                        relationship: rel.name.clone(),
                        target: rel.instance.clone(),
                    }),
                    Some(target) if target.interface != rel.interface => {
                        problems.push(InstanceProblem::InterfaceMismatch {
                            instance: name.clone(),
                            relationship: rel.name.clone(),
                            target: rel.instance.clone(),
                            declared: rel.interface.clone(),
                            actual: target.interface.clone(),
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        problems
    }

    /// Every problem against the interfaces: unknown interfaces, relationships the interface
    /// (or a parent) does not declare, targets of the wrong interface, and dangling references.
    pub fn problems(&self, interfaces: &InterfaceGraph) -> Vec<InstanceProblem> {
        let mut problems = Vec::new();
        for (name, node) in &self.nodes {
            if !interfaces.contains(&node.interface) {
                problems.push(InstanceProblem::UnknownInterface {
                    instance: name.clone(),
                    interface: node.interface.clone(),
                });
                continue;
            }
            for rel in &node.relationships {
                let Some(declared) = interfaces.relationship(&node.interface, &rel.name) else {
                    problems.push(InstanceProblem::UnknownRelationship {
                        instance: name.clone(),
                        interface: node.interface.clone(),
                        relationship: rel.name.clone(),
                    });
                    continue;
                };
                let Some(expected) = declared.interface.as_deref() else {
                    continue;
                };
                let actual = self
                    .nodes
                    .get(&rel.instance)
                    .map_or(rel.interface.as_str(), |t| t.interface.as_str());
                if !interfaces.is_a(actual, expected) {
                    problems.push(InstanceProblem::WrongTargetInterface {
                        instance: name.clone(),
                        relationship: rel.name.clone(),
                        target: rel.instance.clone(),
                        expected: expected.to_owned(),
                        actual: actual.to_owned(),
                    });
                }
            }
        }
        problems.extend(self.dangling());
        problems
    }

    /// The whole graph as the graph API document, instances sorted by name.
    pub fn to_json(&self) -> GraphJson {
        self.document(|_| true)
    }

    /// The instances of `interface` only (exact interface, outgoing relationships).
    pub fn subgraph(&self, interface: &str) -> GraphJson {
        self.document(|n| n.interface == interface)
    }

    /// Names of the interfaces instances use, sorted.
    pub fn interfaces(&self) -> BTreeSet<&str> {
        self.nodes.values().map(|n| n.interface.as_str()).collect()
    }

    fn document(&self, keep: impl Fn(&InstanceNode) -> bool) -> GraphJson {
        GraphJson {
            twin_instances: self
                .nodes
                .iter()
                .filter(|(_, n)| keep(n))
                .map(|(name, n)| GraphNode {
                    name: name.clone(),
                    interface: n.interface.clone(),
                    relationships: n.relationships.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{TwinInterface, TwinInterfaceSpec, TwinRelationship};

    fn rel(name: &str, interface: &str, instance: &str) -> TwinInstanceRelationship {
        TwinInstanceRelationship {
            name: name.into(),
            interface: interface.into(),
            instance: instance.into(),
        }
    }

    fn sample() -> InstanceGraph {
        let mut g = InstanceGraph::new();
        g.insert(
            "pole-2".into(),
            "pole".into(),
            vec![rel("light", "lamp", "lamp-2")],
        );
        g.insert(
            "hood".into(),
            "hood".into(),
            vec![
                rel("poles", "pole", "pole-2"),
                rel("poles", "pole", "pole-1"),
            ],
        );
        g.insert(
            "pole-1".into(),
            "pole".into(),
            vec![rel("light", "lamp", "lamp-1")],
        );
        g.insert("lamp-1".into(), "lamp".into(), vec![]);
        g.insert("lamp-2".into(), "lamp".into(), vec![]);
        g
    }

    #[test]
    fn json_is_sorted_and_has_the_graph_api_shape() {
        let g = sample();
        let json = serde_json::to_string(&g.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"twinInstances":[{"name":"hood","interface":"hood","relationships":[{"name":"poles","interface":"pole","instance":"pole-1"},{"name":"poles","interface":"pole","instance":"pole-2"}]},{"name":"lamp-1","interface":"lamp"},{"name":"lamp-2","interface":"lamp"},{"name":"pole-1","interface":"pole","relationships":[{"name":"light","interface":"lamp","instance":"lamp-1"}]},{"name":"pole-2","interface":"pole","relationships":[{"name":"light","interface":"lamp","instance":"lamp-2"}]}]}"#
        );
        let back: GraphJson = serde_json::from_str(&json).unwrap();
        assert_eq!(InstanceGraph::from_json(&back).to_json(), g.to_json());
        let sub = g.subgraph("pole");
        let names: Vec<_> = sub.twin_instances.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["pole-1", "pole-2"]);
    }

    #[test]
    fn incoming_and_outgoing_follow_add_and_remove() {
        let mut g = sample();
        assert_eq!(g.outgoing("hood").len(), 2);
        let incoming = g.incoming("pole-1");
        assert_eq!(
            incoming,
            vec![IncomingRelationship {
                source: "hood".into(),
                source_interface: "hood".into(),
                name: "poles".into()
            }]
        );
        assert!(g.dangling().is_empty());

        // Removing the target leaves the parent's reference dangling.
        g.remove("pole-1").unwrap();
        assert_eq!(
            g.dangling(),
            vec![InstanceProblem::MissingTarget {
                instance: "hood".into(),
                relationship: "poles".into(),
                target: "pole-1".into()
            }]
        );
        assert!(
            g.incoming("lamp-1").is_empty(),
            "outgoing edges of a removed node are gone"
        );

        // Replacing the source drops its old edges from the index.
        g.insert(
            "hood".into(),
            "hood".into(),
            vec![rel("poles", "pole", "pole-2")],
        );
        assert!(g.incoming("pole-1").is_empty());
        assert_eq!(g.incoming("pole-2").len(), 1);
        assert!(g.dangling().is_empty());
        assert_eq!(g.len(), 4);
        assert_eq!(g.relationship_count(), 2);
        assert!(g.remove("nope").is_none());
    }

    #[test]
    fn problems_against_interfaces() {
        let ifaces = [
            TwinInterface::new("lamp", TwinInterfaceSpec::default()),
            TwinInterface::new(
                "smart-lamp",
                TwinInterfaceSpec {
                    extends_interface: Some("lamp".into()),
                    ..Default::default()
                },
            ),
            TwinInterface::new(
                "pole",
                TwinInterfaceSpec {
                    relationships: vec![TwinRelationship {
                        name: "light".into(),
                        interface: Some("lamp".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ),
        ];
        let interfaces = InterfaceGraph::from_interfaces(&ifaces);
        let mut g = InstanceGraph::new();
        g.insert("l1".into(), "smart-lamp".into(), vec![]);
        g.insert(
            "p1".into(),
            "pole".into(),
            vec![rel("light", "smart-lamp", "l1")],
        );
        assert!(
            g.problems(&interfaces).is_empty(),
            "{:?}",
            g.problems(&interfaces)
        );

        g.insert(
            "p2".into(),
            "pole".into(),
            vec![rel("light", "pole", "p1"), rel("ghost", "lamp", "l1")],
        );
        g.insert("x".into(), "unknown".into(), vec![]);
        let problems = g.problems(&interfaces);
        assert!(problems.iter().any(|p| matches!(p, InstanceProblem::WrongTargetInterface { instance, .. } if instance == "p2")));
        assert!(problems.iter().any(|p| matches!(p, InstanceProblem::UnknownRelationship { relationship, .. } if relationship == "ghost")));
        assert!(problems.iter().any(
            |p| matches!(p, InstanceProblem::UnknownInterface { instance, .. } if instance == "x")
        ));
        assert!(problems.iter().any(
            |p| matches!(p, InstanceProblem::InterfaceMismatch { instance, .. } if instance == "p2")
        ));
    }
}
