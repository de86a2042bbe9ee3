//! Stage 3: the validated arena → the public model.

use std::collections::BTreeMap;

use serde_json::Value;

use super::resolve::Node;
use super::{Parser, PropValue};
use crate::digest::digest;
use crate::model::*;

impl Parser<'_> {
    pub(crate) fn build(self) -> ModelSet {
        let mut interfaces = BTreeMap::new();
        for idx in 0..self.arena.elems.len() {
            let node = self.node(idx);
            // Inline interfaces (component schemas, parents) are included so references resolve.
            if node.elem().class == "Interface" {
                let iface = self.build_interface(node);
                interfaces.insert(iface.id.clone(), iface);
            }
        }
        ModelSet {
            interfaces,
            warnings: self.diagnostics,
        }
    }

    fn build_interface(&self, node: Node<'_>) -> Interface {
        let elem = node.elem();
        let contents = self
            .flattened_contents(node)
            .into_iter()
            .filter_map(|c| self.build_content(c))
            .collect();
        Interface {
            id: elem.id.clone(),
            dtdl_version: elem.version,
            annotations: annotations(node),
            extends: self
                .prop_nodes(node, "extends")
                .iter()
                .map(|n| n.elem().id.clone())
                .collect(),
            contents,
            schemas: self
                .prop_nodes(node, "schemas")
                .into_iter()
                .map(|s| self.build_schema(s, &mut Vec::new()))
                .collect(),
            supplemental_types: elem.cotypes.clone(),
            supplemental_properties: self.supplemental_values(node),
        }
    }

    fn build_content(&self, node: Node<'_>) -> Option<Content> {
        let elem = node.elem();
        let origin = self.origin_interface(node);
        let schema = || self.first_schema(node, "schema");
        let writable = elem
            .literal("writable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kind = match elem.class.as_str() {
            "Property" => ContentKind::Property(PropertyDef {
                schema: schema(),
                writable,
            }),
            "Telemetry" => ContentKind::Telemetry(TelemetryDef { schema: schema() }),
            "Command" => ContentKind::Command(self.build_command(node)),
            "Relationship" => ContentKind::Relationship(self.build_relationship(node)),
            "Component" => ContentKind::Component(ComponentDef {
                schema: self
                    .prop_nodes(node, "schema")
                    .first()
                    .map(|n| n.elem().id.clone())
                    .unwrap_or_default(),
            }),
            _ => return None,
        };
        Some(Content {
            name: elem.str_prop("name").unwrap_or_default().to_string(),
            id: elem.id.clone(),
            origin,
            annotations: annotations(node),
            supplemental_types: elem.cotypes.clone(),
            supplemental_properties: self.supplemental_values(node),
            kind,
        })
    }

    fn build_command(&self, node: Node<'_>) -> CommandDef {
        let elem = node.elem();
        CommandDef {
            request: self
                .prop_nodes(node, "request")
                .first()
                .map(|n| self.build_payload(*n)),
            response: self
                .prop_nodes(node, "response")
                .first()
                .map(|n| self.build_payload(*n)),
            command_type: elem
                .props
                .get("commandType")
                .and_then(|v| v.first())
                .and_then(|v| match v {
                    PropValue::Ref(iri) => iri
                        .rsplit(':')
                        .next()
                        .and_then(|t| t.split(';').next())
                        .map(str::to_string),
                    _ => None,
                }),
        }
    }

    fn build_relationship(&self, node: Node<'_>) -> RelationshipDef {
        let elem = node.elem();
        let writable = elem
            .literal("writable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        RelationshipDef {
            target: elem
                .props
                .get("target")
                .and_then(|v| v.first())
                .and_then(|v| match v {
                    PropValue::Ref(t) => Some(t.clone()),
                    PropValue::Literal(Value::String(t)) => Some(t.clone()),
                    _ => None,
                }),
            min_multiplicity: elem.literal("minMultiplicity").and_then(Value::as_u64),
            max_multiplicity: elem.literal("maxMultiplicity").and_then(Value::as_u64),
            writable,
            properties: self
                .prop_nodes(node, "properties")
                .into_iter()
                .map(|p| RelationshipProperty {
                    name: p.elem().str_prop("name").unwrap_or_default().to_string(),
                    annotations: annotations(p),
                    schema: self.first_schema(p, "schema"),
                    writable: p
                        .elem()
                        .literal("writable")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
                .collect(),
        }
    }

    /// The interface that declares a content.
    fn origin_interface(&self, node: Node<'_>) -> String {
        let mut cur = node;
        while let Some((parent, _)) = &cur.elem().parent {
            cur = Node {
                arena: cur.arena,
                idx: *parent,
            };
            if cur.elem().class == "Interface" {
                return cur.elem().id.clone();
            }
        }
        cur.elem().id.clone()
    }

    fn supplemental_values(&self, node: Node<'_>) -> BTreeMap<String, Value> {
        let elem = node.elem();
        let mut out = BTreeMap::new();
        for (iri, values) in &elem.supplemental {
            let name = digest()
                .supplemental_types
                .values()
                .find_map(|t| t.properties.get(iri).map(|p| p.property_name.clone()))
                .unwrap_or_else(|| iri.clone());
            let mut json: Vec<Value> = values
                .iter()
                .map(|v| match v {
                    PropValue::Literal(l) => l.clone(),
                    PropValue::Ref(t) => Value::from(t.as_str()),
                    PropValue::Child(c) => Value::from(node.arena.elems[*c].id.as_str()),
                })
                .collect();
            let value = if json.len() == 1 {
                json.remove(0)
            } else {
                Value::Array(json)
            };
            out.insert(name, value);
        }
        out
    }

    fn build_payload(&self, node: Node<'_>) -> CommandPayload {
        CommandPayload {
            name: node.elem().str_prop("name").unwrap_or_default().to_string(),
            annotations: annotations(node),
            schema: self.first_schema(node, "schema"),
            nullable: node
                .elem()
                .literal("nullable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    fn first_schema(&self, node: Node<'_>, prop: &str) -> Schema {
        match self.prop_nodes(node, prop).first() {
            Some(s) => self.build_schema(*s, &mut Vec::new()),
            // Validation guarantees a schema; an empty string schema keeps this total.
            None => Schema::Primitive {
                primitive: Primitive::String,
            },
        }
    }

    fn named(&self, node: Node<'_>, stack: &mut Vec<(usize, usize)>) -> NamedSchema {
        NamedSchema {
            name: node.elem().str_prop("name").unwrap_or_default().to_string(),
            annotations: annotations(node),
            schema: Box::new(match self.prop_nodes(node, "schema").first() {
                Some(s) => self.build_schema(*s, stack),
                None => Schema::Primitive {
                    primitive: Primitive::String,
                },
            }),
        }
    }

    fn build_schema(&self, node: Node<'_>, stack: &mut Vec<(usize, usize)>) -> Schema {
        let elem = node.elem();
        if let Some(p) = Primitive::from_dtmi(&elem.id).or_else(|| primitive_of_class(&elem.class))
        {
            return Schema::Primitive { primitive: p };
        }
        if stack.contains(&node.key()) {
            return Schema::Ref {
                id: elem.id.clone(),
            };
        }
        stack.push(node.key());
        let id = elem.id.clone();
        let schema = match elem.class.as_str() {
            "Array" => Schema::Array {
                id,
                annotations: annotations(node),
                element_schema: Box::new(match self.prop_nodes(node, "elementSchema").first() {
                    Some(s) => self.build_schema(*s, stack),
                    None => Schema::Primitive {
                        primitive: Primitive::String,
                    },
                }),
            },
            "Enum" => self.build_enum(node, id),
            "Map" => self.build_map(node, id, stack),
            _ => Schema::Object {
                id,
                annotations: annotations(node),
                fields: self
                    .prop_nodes(node, "fields")
                    .into_iter()
                    .map(|f| self.named(f, stack))
                    .collect(),
            },
        };
        stack.pop();
        schema
    }

    fn build_enum(&self, node: Node<'_>, id: String) -> Schema {
        Schema::Enum {
            id,
            annotations: annotations(node),
            value_schema: self
                .prop_nodes(node, "valueSchema")
                .first()
                .and_then(|n| {
                    Primitive::from_dtmi(&n.elem().id)
                        .or_else(|| primitive_of_class(&n.elem().class))
                })
                .unwrap_or(Primitive::String),
            enum_values: self
                .prop_nodes(node, "enumValues")
                .into_iter()
                .map(|v| EnumValue {
                    name: v.elem().str_prop("name").unwrap_or_default().to_string(),
                    annotations: annotations(v),
                    enum_value: v
                        .elem()
                        .literal("enumValue")
                        .cloned()
                        .unwrap_or(Value::Null),
                })
                .collect(),
        }
    }

    fn build_map(&self, node: Node<'_>, id: String, stack: &mut Vec<(usize, usize)>) -> Schema {
        let key = self
            .prop_nodes(node, "mapKey")
            .first()
            .map(|k| self.named(*k, stack));
        let value = self
            .prop_nodes(node, "mapValue")
            .first()
            .map(|v| self.named(*v, stack));
        let empty = || NamedSchema {
            name: String::new(),
            annotations: Annotations::default(),
            schema: Box::new(Schema::Primitive {
                primitive: Primitive::String,
            }),
        };
        Schema::Map {
            id,
            annotations: annotations(node),
            map_key: key.unwrap_or_else(empty),
            map_value: value.unwrap_or_else(empty),
        }
    }
}

fn primitive_of_class(class: &str) -> Option<Primitive> {
    let mut chars = class.chars();
    let first = chars.next()?;
    let term: String = first.to_lowercase().chain(chars).collect();
    Primitive::from_term(&term)
}

fn lang_map(elem: &super::Element, prop: &str) -> LocalizedString {
    elem.literal(prop)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn annotations(node: Node<'_>) -> Annotations {
    let elem = node.elem();
    Annotations {
        display_name: lang_map(elem, "displayName"),
        description: lang_map(elem, "description"),
        comment: elem.str_prop("comment").map(str::to_string),
    }
}
