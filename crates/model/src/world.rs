//! Worlds: a compact, parameterised description of a population of twins (a city, N
//! neighborhoods, 50 poles each with their sensors, …) expanded into TwinInstances.
//!
//! The format (see `docs/project-format.md`) is a tree of groups. Each group creates `count`
//! instances of `interface` under every instance of its parent group, named
//! `<prefix>-<path>` (prefix: the interface name unless set) where the path joins the `suffix`es of the group and its ancestors
//! (`{index}` / `{index:03}` expand to the 1-based index). `relationship` adds a relationship
//! from each parent instance to each child instance, `inverse` one from the child back to its
//! parent. Every relationship is checked against the interfaces (declared on the interface or a
//! parent, target of the declared interface or a derived one) before anything is expanded.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::compile::INTERFACE_LABEL;
use crate::crd::{TwinInstance, TwinInstanceRelationship, TwinInstanceSpec};
use crate::graph::InterfaceGraph;
use crate::names::validate_dns1035;

/// A world file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    /// Named integer parameters with their default values, used as `count: $name`.
    #[serde(default)]
    pub parameters: BTreeMap<String, u64>,
    /// Root groups.
    #[serde(default)]
    pub instances: Vec<Group>,
}

/// A group of instances of one interface, repeated under each parent instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// TwinInterface name.
    pub interface: String,
    /// Instances per parent instance (a number or `$parameter`); 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Count>,
    /// First part of the instance names; the interface name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Name part of this group; must contain `{index}` when `count` can exceed 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Relationship of the parent interface pointing at each instance of this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<String>,
    /// Relationship of this group's interface pointing back at the parent instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inverse: Option<String>,
    /// Groups created under each instance of this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Group>,
}

/// A count: a number, or `$name` of a world parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Count {
    /// That many instances.
    Fixed(u64),
    /// `$name` of a world parameter giving the number.
    Parameter(String),
}

/// A world problem, naming the file and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct WorldError {
    /// The world file.
    pub file: String,
    /// Path of the field, e.g. `instances[0].children[2].relationship`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// How a world is expanded.
#[derive(Debug, Clone)]
pub struct ExpandOptions {
    /// Name of the world file, for messages.
    pub file: String,
    /// Namespace of the instances.
    pub namespace: String,
    /// Parameter values overriding the world's defaults.
    pub parameters: BTreeMap<String, u64>,
    /// Refuse worlds larger than this many instances (protects against typos like 10^9).
    pub max_instances: usize,
}

impl Default for ExpandOptions {
    fn default() -> Self {
        ExpandOptions {
            file: "world.yaml".into(),
            namespace: "ktwin".into(),
            parameters: BTreeMap::new(),
            max_instances: 1_000_000,
        }
    }
}

impl World {
    /// Parses a world from YAML; errors name the file and the position.
    pub fn from_yaml(text: &str, file: &str) -> Result<World, WorldError> {
        serde_yaml_ng::from_str(text).map_err(|e| WorldError {
            file: file.to_owned(),
            field: e.location().map_or_else(
                || "(document)".into(),
                |l| format!("line {} column {}", l.line(), l.column()),
            ),
            message: e.to_string(),
        })
    }

    /// Checks the world against the interfaces and expands it into instances, in creation order
    /// (depth first). Errors name the file and the offending field.
    pub fn expand(
        &self,
        interfaces: &InterfaceGraph,
        options: &ExpandOptions,
    ) -> Result<Vec<TwinInstance>, WorldError> {
        let err = |field: String, message: String| WorldError {
            file: options.file.clone(),
            field,
            message,
        };
        for name in options.parameters.keys() {
            if !self.parameters.contains_key(name) {
                return Err(err(
                    format!("parameters.{name}"),
                    format!(
                        "unknown parameter {name:?} (the world declares: {})",
                        self.parameters
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let mut params = self.parameters.clone();
        params.extend(options.parameters.clone());

        let mut plans = Vec::new();
        for (i, group) in self.instances.iter().enumerate() {
            plans.push(plan(
                group,
                None,
                &format!("instances[{i}]"),
                interfaces,
                &params,
                &err,
            )?);
        }
        let total: u128 = plans.iter().map(Plan::total).sum();
        if total > options.max_instances as u128 {
            return Err(err(
                "instances".into(),
                format!(
                    "the world expands to {total} instances, more than the limit of {}",
                    options.max_instances
                ),
            ));
        }

        let mut out = Expansion {
            instances: Vec::with_capacity(total as usize),
            index: HashMap::with_capacity(total as usize),
            namespace: &options.namespace,
        };
        for p in &plans {
            out.expand(p, None, "", &err)?;
        }
        Ok(out.instances)
    }
}

/// A validated group with its resolved count.
struct Plan<'a> {
    group: &'a Group,
    field: String,
    count: u64,
    children: Vec<Plan<'a>>,
}

impl Plan<'_> {
    /// Instances created by one expansion of this plan.
    fn total(&self) -> u128 {
        let below: u128 = self.children.iter().map(Plan::total).sum();
        self.count as u128 * (1 + below)
    }
}

/// Validates one group (interface, count, suffix, relationships to its parent) and its
/// children, resolving `$parameter` counts.
fn plan<'a>(
    group: &'a Group,
    parent: Option<&str>,
    field: &str,
    interfaces: &InterfaceGraph,
    params: &BTreeMap<String, u64>,
    err: &impl Fn(String, String) -> WorldError,
) -> Result<Plan<'a>, WorldError> {
    let iface = group.interface.as_str();
    if !interfaces.contains(iface) {
        return Err(err(
            format!("{field}.interface"),
            format!("unknown interface {iface:?}"),
        ));
    }
    let count = resolve_count(group, field, params, err)?;
    check_suffix(group, count, field, err)?;
    let relationships = RelationshipCheck {
        interfaces,
        field,
        count,
        err,
    };
    match (parent, &group.relationship, &group.inverse) {
        (None, Some(_), _) | (None, _, Some(_)) => {
            return Err(err(
                format!("{field}.relationship"),
                "a root group has no parent to relate to: move it under a parent group".into(),
            ));
        }
        (Some(parent), rel, inverse) => {
            if let Some(rel) = rel {
                relationships.check(rel, parent, iface, "relationship", count > 1)?;
            }
            if let Some(inv) = inverse {
                relationships.check(inv, iface, parent, "inverse", false)?;
            }
        }
        (None, None, None) => {}
    }
    let children = group
        .children
        .iter()
        .enumerate()
        .map(|(i, c)| {
            plan(
                c,
                Some(iface),
                &format!("{field}.children[{i}]"),
                interfaces,
                params,
                err,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(Plan {
        group,
        field: field.to_owned(),
        count,
        children,
    })
}

/// The group's count: 1 when absent, the number, or the value of its `$parameter`.
fn resolve_count(
    group: &Group,
    field: &str,
    params: &BTreeMap<String, u64>,
    err: &impl Fn(String, String) -> WorldError,
) -> Result<u64, WorldError> {
    match &group.count {
        None => Ok(1),
        Some(Count::Fixed(n)) => Ok(*n),
        Some(Count::Parameter(p)) => {
            let key = p.strip_prefix('$').ok_or_else(|| {
                err(
                    format!("{field}.count"),
                    format!("{p:?} is neither a number nor a $parameter"),
                )
            })?;
            params.get(key).copied().ok_or_else(|| {
                err(
                    format!("{field}.count"),
                    format!("parameter {key:?} is not declared under parameters"),
                )
            })
        }
    }
}

/// The suffix uses known placeholders only, and contains `{index}` when the group can repeat
/// (otherwise its instances would share a name).
fn check_suffix(
    group: &Group,
    count: u64,
    field: &str,
    err: &impl Fn(String, String) -> WorldError,
) -> Result<(), WorldError> {
    if let Some(s) = &group.suffix {
        check_template(s).map_err(|e| err(format!("{field}.suffix"), e.to_string()))?;
    }
    let can_repeat = count > 1 || matches!(group.count, Some(Count::Parameter(_)));
    if can_repeat
        && !group
            .suffix
            .as_deref()
            .is_some_and(|s| s.contains("{index"))
    {
        return Err(err(
            format!("{field}.suffix"),
            "a group with a count above 1 needs a suffix containing {index} so names are unique"
                .into(),
        ));
    }
    Ok(())
}

/// Checks a group's `relationship` / `inverse` against the interfaces.
struct RelationshipCheck<'a, E> {
    interfaces: &'a InterfaceGraph,
    /// Path of the group.
    field: &'a str,
    /// The group's count, for the multiplicity message.
    count: u64,
    err: &'a E,
}

impl<E: Fn(String, String) -> WorldError> RelationshipCheck<'_, E> {
    /// `rel` is declared on `from` (or a parent), targets `to` (or a parent of `to`), and
    /// allows more than one target when the group is `repeated`.
    fn check(
        &self,
        rel: &str,
        from: &str,
        to: &str,
        what: &str,
        repeated: bool,
    ) -> Result<(), WorldError> {
        let (interfaces, err, count) = (self.interfaces, self.err, self.count);
        let f = format!("{}.{what}", self.field);
        let Some(declared) = interfaces.relationship(from, rel) else {
            let known: Vec<_> = interfaces
                .relationships(from)
                .iter()
                .map(|r| r.name.clone())
                .collect();
            return Err(err(
                f,
                format!(
                    "interface {from} has no relationship {rel:?} (it has: {})",
                    known.join(", ")
                ),
            ));
        };
        if let Some(target) = declared.interface.as_deref()
            && !interfaces.is_a(to, target)
        {
            return Err(err(
                f,
                format!(
                    "relationship {rel} of {from} targets {target}, but {to} is not a {target} nor derived from it"
                ),
            ));
        }
        if repeated && declared.max_multiplicity == Some(1) {
            return Err(err(
                f,
                format!(
                    "relationship {rel} of {from} allows one target, but the group creates {count}"
                ),
            ));
        }
        Ok(())
    }
}

/// Why a suffix template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TemplateError {
    #[error("unclosed '{{' in {template:?}")]
    Unclosed { template: String },
    #[error(
        "unknown placeholder {{{placeholder}}} in {template:?}: expected {{index}} or {{index:0N}}"
    )]
    UnknownPlaceholder {
        template: String,
        placeholder: String,
    },
}

/// Accepts `{index}` and `{index:0N}` placeholders only.
fn check_template(t: &str) -> Result<(), TemplateError> {
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| TemplateError::Unclosed {
                template: t.to_owned(),
            })?
            + open;
        let inner = &rest[open + 1..close];
        let ok = inner == "index"
            || inner
                .strip_prefix("index:0")
                .is_some_and(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return Err(TemplateError::UnknownPlaceholder {
                template: t.to_owned(),
                placeholder: inner.to_owned(),
            });
        }
        rest = &rest[close + 1..];
    }
    Ok(())
}

fn render(t: &str, index: u64) -> String {
    let mut out = String::with_capacity(t.len() + 8);
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| c + open);
        let width: usize = rest[open + 1..close]
            .strip_prefix("index:0")
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        out.push_str(&format!("{index:0width$}"));
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

struct Expansion<'n> {
    instances: Vec<TwinInstance>,
    index: HashMap<String, usize>,
    namespace: &'n str,
}

impl Expansion<'_> {
    fn expand(
        &mut self,
        plan: &Plan<'_>,
        parent: Option<usize>,
        parent_path: &str,
        err: &impl Fn(String, String) -> WorldError,
    ) -> Result<(), WorldError> {
        let group = plan.group;
        for i in 1..=plan.count {
            let suffix = group
                .suffix
                .as_deref()
                .map(|s| render(s, i))
                .unwrap_or_default();
            let path = match (parent_path.is_empty(), suffix.is_empty()) {
                (true, _) => suffix,
                (false, true) => parent_path.to_owned(),
                (false, false) => format!("{parent_path}-{suffix}"),
            };
            let prefix = group.prefix.as_deref().unwrap_or(&group.interface);
            let name = if path.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}-{path}")
            };
            validate_dns1035(&name).map_err(|e| {
                err(
                    format!("{}.suffix", plan.field),
                    format!("instance name: {e}"),
                )
            })?;
            if self.index.contains_key(&name) {
                return Err(err(
                    format!("{}.suffix", plan.field),
                    format!("instance name {name} is generated twice: make the suffixes distinct"),
                ));
            }
            let mut relationships = Vec::new();
            if let (Some(p), Some(inv)) = (parent, &group.inverse) {
                let parent_inst = &self.instances[p];
                relationships.push(TwinInstanceRelationship {
                    name: inv.clone(),
                    interface: parent_inst.spec.interface.clone(),
                    instance: parent_inst.metadata.name.clone().unwrap_or_default(),
                });
            }
            if let (Some(p), Some(rel)) = (parent, &group.relationship) {
                self.instances[p]
                    .spec
                    .twin_instance_relationships
                    .push(TwinInstanceRelationship {
                        name: rel.clone(),
                        interface: group.interface.clone(),
                        instance: name.clone(),
                    });
            }
            let instance = new_instance(&name, &group.interface, self.namespace, relationships);
            let position = self.instances.len();
            self.index.insert(name, position);
            self.instances.push(instance);
            for child in &plan.children {
                self.expand(child, Some(position), &path, err)?;
            }
        }
        Ok(())
    }
}

/// A TwinInstance resource with the standard labels.
pub fn new_instance(
    name: &str,
    interface: &str,
    namespace: &str,
    relationships: Vec<TwinInstanceRelationship>,
) -> TwinInstance {
    let mut inst = TwinInstance::new(
        name,
        TwinInstanceSpec {
            interface: interface.to_owned(),
            twin_instance_relationships: relationships,
            ..Default::default()
        },
    );
    inst.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([(
            INTERFACE_LABEL.to_owned(),
            interface.to_owned(),
        )])),
        ..Default::default()
    };
    inst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{TwinInterface, TwinInterfaceSpec, TwinRelationship};
    use crate::graph::InstanceGraph;

    fn iface(
        name: &str,
        parent: Option<&str>,
        rels: &[(&str, &str, Option<i64>)],
    ) -> TwinInterface {
        TwinInterface::new(
            name,
            TwinInterfaceSpec {
                extends_interface: parent.map(str::to_owned),
                relationships: rels
                    .iter()
                    .map(|(n, t, max)| TwinRelationship {
                        name: n.to_string(),
                        interface: Some(t.to_string()),
                        max_multiplicity: *max,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        )
    }

    fn interfaces() -> InterfaceGraph {
        InterfaceGraph::from_interfaces(&[
            iface("area", None, &[]),
            iface("hood", Some("area"), &[("poles", "pole", None)]),
            iface(
                "pole",
                None,
                &[("hood", "area", Some(1)), ("light", "lamp", Some(1))],
            ),
            iface("lamp", None, &[]),
            iface("smart-lamp", Some("lamp"), &[]),
        ])
    }

    const WORLD: &str = r#"
parameters: {hoods: 2}
instances:
  - interface: hood
    count: $hoods
    suffix: "nb{index:03}"
    children:
      - interface: pole
        count: 3
        suffix: "p{index}"
        relationship: poles
        inverse: hood
        children:
          - interface: smart-lamp
            relationship: light
"#;

    fn expand(yaml: &str, params: &[(&str, u64)]) -> Result<Vec<TwinInstance>, WorldError> {
        let world = World::from_yaml(yaml, "w.yaml")?;
        let options = ExpandOptions {
            file: "w.yaml".into(),
            parameters: params.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        };
        world.expand(&interfaces(), &options)
    }

    #[test]
    fn expands_counts_names_and_relationships() {
        let instances = expand(WORLD, &[("hoods", 3)]).unwrap();
        assert_eq!(instances.len(), 3 * (1 + 3 * 2));
        let graph = InstanceGraph::from_instances(&instances);
        assert!(
            graph.problems(&interfaces()).is_empty(),
            "{:?}",
            graph.problems(&interfaces())
        );
        let hood = graph.get("hood-nb002").unwrap();
        let poles: Vec<_> = hood
            .relationships
            .iter()
            .map(|r| r.instance.as_str())
            .collect();
        assert_eq!(
            poles,
            vec!["pole-nb002-p1", "pole-nb002-p2", "pole-nb002-p3"]
        );
        assert_eq!(
            graph.outgoing("pole-nb002-p1"),
            &[
                TwinInstanceRelationship {
                    name: "hood".into(),
                    interface: "hood".into(),
                    instance: "hood-nb002".into()
                },
                TwinInstanceRelationship {
                    name: "light".into(),
                    interface: "smart-lamp".into(),
                    instance: "smart-lamp-nb002-p1".into()
                },
            ]
        );
        assert_eq!(
            instances[0].metadata.labels.as_ref().unwrap()[INTERFACE_LABEL],
            "hood"
        );
    }

    #[test]
    fn bad_worlds_name_the_field() {
        let cases = [
            (
                WORLD.replace("relationship: poles", "relationship: lamps"),
                "instances[0].children[0].relationship",
                "no relationship",
            ),
            (
                WORLD.replace("interface: smart-lamp", "interface: hood"),
                "instances[0].children[0].children[0].relationship",
                "targets lamp",
            ),
            (
                WORLD.replace("interface: smart-lamp", "interface: street"),
                "instances[0].children[0].children[0].interface",
                "unknown interface",
            ),
            (
                WORLD.replace("suffix: \"p{index}\"", "suffix: \"p\""),
                "instances[0].children[0].suffix",
                "{index}",
            ),
            (
                WORLD.replace("count: $hoods", "count: $towns"),
                "instances[0].count",
                "not declared",
            ),
            (
                WORLD.replace(
                    "p{index}",
                    "{index}-a-very-long-suffix-that-makes-the-name-longer-than-sixty-three",
                ),
                "instances[0].children[0].suffix",
                "at most 63",
            ),
            (
                WORLD.replace("p{index}", "p{idx}"),
                "instances[0].children[0].suffix",
                "unknown placeholder",
            ),
        ];
        for (yaml, field, needle) in cases {
            let e = expand(&yaml, &[]).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(needle), "{e}");
            assert!(e.to_string().starts_with("w.yaml: "), "{e}");
        }
    }

    #[test]
    fn duplicates_multiplicity_and_parameters_are_checked() {
        let dup = "instances:\n  - {interface: lamp}\n  - {interface: lamp}\n";
        assert!(
            expand(dup, &[])
                .unwrap_err()
                .message
                .contains("generated twice")
        );
        let many = WORLD.replace(
            "relationship: light",
            "relationship: light\n            count: 2\n            suffix: \"l{index}\"",
        );
        assert!(
            expand(&many, &[])
                .unwrap_err()
                .message
                .contains("allows one target")
        );
        assert!(
            expand(WORLD, &[("towns", 1)])
                .unwrap_err()
                .field
                .contains("parameters.towns")
        );
        let unknown_key = "instances:\n  - {interface: lamp, colour: red}\n";
        assert!(
            expand(unknown_key, &[])
                .unwrap_err()
                .message
                .contains("unknown field")
        );
    }
}
