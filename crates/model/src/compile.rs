//! DTDL → TwinInterface: maps a parsed DTDL model set (from `ktwin-dtdl`) onto TwinInterface
//! resources, and compiles document sets with per-file error reporting.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ktwin_dtdl::{
    Annotations, CommandPayload as DtdlPayload, Content, ContentKind, Document, Interface,
    ModelSet, NamedSchema, ParseError, ParseOptions, RelationshipDef, Schema,
};

use crate::crd::{
    CommandPayload, ComplexKind, EnumValueSchema, PrimitiveType, TwinArraySchema, TwinCommand,
    TwinComplexType, TwinComponent, TwinEnumSchema, TwinEnumValue, TwinInterface,
    TwinInterfaceSpec, TwinMapSchema, TwinMqtt, TwinNamedSchema, TwinProperty, TwinRelationship,
    TwinSchema, TwinTelemetry,
};
use crate::names::{NameError, interface_name};

/// Label put on every resource ktwin generates for an interface.
pub const INTERFACE_LABEL: &str = "ktwin/twin-interface";

/// How DTMIs become names and where resources go.
#[derive(Debug, Clone)]
pub struct NameOptions {
    /// Namespace of generated resources.
    pub namespace: String,
    /// Prefix removed from DTMIs before normalisation, e.g. `dtmi:digitaltwins:`.
    pub strip_prefix: Option<String>,
}

impl Default for NameOptions {
    fn default() -> Self {
        NameOptions {
            namespace: "ktwin".into(),
            strip_prefix: None,
        }
    }
}

impl NameOptions {
    /// The TwinInterface name of a DTMI.
    pub fn name(&self, dtmi: &str) -> Result<String, NameError> {
        interface_name(dtmi, self.strip_prefix.as_deref())
    }
}

/// Why an interface could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A DTMI the interface refers to does not give a valid TwinInterface name.
    #[error("{dtmi}: {field}: {source}")]
    Name {
        /// The `@id` of the interface being compiled.
        dtmi: String,
        /// Where the DTMI was found, e.g. `@id`, `extends[0]` or `contents/<name>/target`.
        field: String,
        /// Why the name is invalid.
        #[source]
        source: NameError,
    },
    /// Two interfaces give the same TwinInterface name.
    #[error(
        "{dtmi} and {other} both normalise to the name {name}: rename one or change --strip-prefix"
    )]
    NameClash {
        /// DTMI of the interface that gives the name second.
        dtmi: String,
        /// DTMI of the interface that gave it first.
        other: String,
        /// The name both give.
        name: String,
    },
}

/// A DTDL document that could not be compiled, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The document (file path).
    pub document: String,
    /// One line per problem, each naming the JSON pointer / field and what was expected.
    pub messages: Vec<String>,
}

/// The outcome of compiling a set of documents.
#[derive(Debug, Clone, Default)]
pub struct Compilation {
    /// Compiled interfaces by the document that defines them (document order).
    pub by_document: BTreeMap<String, Vec<TwinInterface>>,
    /// Documents left out, with their errors.
    pub errors: Vec<FileError>,
    /// Warnings from the DTDL parser, rendered.
    pub warnings: Vec<String>,
}

impl Compilation {
    /// Every compiled interface, sorted by name.
    pub fn interfaces(&self) -> Vec<&TwinInterface> {
        let mut all: Vec<_> = self.by_document.values().flatten().collect();
        all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        all
    }
}

/// Parses the documents as one model set and maps every interface. A document with DTDL
/// errors, or one that references an identifier no document defines, is left out (with its
/// errors in [`Compilation::errors`]) and the rest is parsed again, so one bad file does not
/// abort the others; callers wanting all-or-nothing check `errors.is_empty()`.
pub fn compile_documents(
    documents: &[Document],
    parse: &ParseOptions,
    names: &NameOptions,
) -> Compilation {
    let mut remaining: Vec<Document> = documents.to_vec();
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    loop {
        if remaining.is_empty() {
            return finish(BTreeMap::new(), errors, Vec::new());
        }
        match ktwin_dtdl::parse(&remaining, parse) {
            Ok(models) => {
                let warnings = models.warnings.iter().map(|w| w.to_string()).collect();
                let by_document = match map_documents(&remaining, &models, names) {
                    Ok(map) => map,
                    Err(failures) => {
                        // Name problems are per interface: drop those documents and retry.
                        for (doc, message) in failures {
                            errors.entry(doc).or_default().push(message);
                        }
                        remaining.retain(|d| !errors.contains_key(&d.name));
                        continue;
                    }
                };
                return finish(by_document, errors, warnings);
            }
            Err(ParseError::Invalid { diagnostics }) => {
                let before = remaining.len();
                for d in diagnostics
                    .iter()
                    .filter(|d| d.severity == ktwin_dtdl::Severity::Error)
                {
                    errors
                        .entry(d.document.clone())
                        .or_default()
                        .push(d.to_string());
                }
                remaining.retain(|d| !errors.contains_key(&d.name));
                if remaining.len() == before {
                    // Diagnostics not tied to a document: nothing can be compiled safely.
                    for d in &remaining {
                        errors.entry(d.name.clone()).or_default().push(
                            "not compiled: the model set has errors not tied to a file".into(),
                        );
                    }
                    remaining.clear();
                }
            }
            Err(ParseError::Unresolved { identifiers, .. }) => {
                let before = remaining.len();
                for doc in &remaining {
                    let missing: Vec<&str> = identifiers
                        .iter()
                        .filter(|id| doc.text.contains(id.as_str()))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        errors.entry(doc.name.clone()).or_default().push(format!(
                            "references {} which no input file defines: add the file defining it",
                            missing.join(", ")
                        ));
                    }
                }
                remaining.retain(|d| !errors.contains_key(&d.name));
                if remaining.len() == before {
                    for d in &remaining {
                        errors.entry(d.name.clone()).or_default().push(format!(
                            "not compiled: unresolved identifiers {}",
                            identifiers.iter().cloned().collect::<Vec<_>>().join(", ")
                        ));
                    }
                    remaining.clear();
                }
            }
        }
    }
}

fn finish(
    by_document: BTreeMap<String, Vec<TwinInterface>>,
    errors: BTreeMap<String, Vec<String>>,
    warnings: Vec<String>,
) -> Compilation {
    Compilation {
        by_document,
        errors: errors
            .into_iter()
            .map(|(document, messages)| FileError { document, messages })
            .collect(),
        warnings,
    }
}

/// Compiled interfaces keyed by the document defining them.
type InterfacesByDocument = BTreeMap<String, Vec<TwinInterface>>;

/// Maps each document's top-level interfaces; on failure, (document, message) pairs.
fn map_documents(
    documents: &[Document],
    models: &ModelSet,
    names: &NameOptions,
) -> Result<InterfacesByDocument, Vec<(String, String)>> {
    let mut by_document = BTreeMap::new();
    let mut failures = Vec::new();
    let mut owner_of: BTreeMap<String, (String, String)> = BTreeMap::new();
    for doc in documents {
        let mut out = Vec::new();
        for dtmi in top_level_ids(&doc.text) {
            let Some(iface) = models.interface(&dtmi) else {
                continue;
            };
            match compile_interface(iface, names) {
                Ok(ti) => {
                    let name = ti.metadata.name.clone().unwrap_or_default();
                    if let Some((other_doc, other)) = owner_of.get(&name) {
                        let clash = CompileError::NameClash {
                            dtmi: dtmi.clone(),
                            other: other.clone(),
                            name: name.clone(),
                        };
                        failures.push((doc.name.clone(), clash.to_string()));
                        failures.push((other_doc.clone(), clash.to_string()));
                        continue;
                    }
                    owner_of.insert(name, (doc.name.clone(), dtmi.clone()));
                    out.push(ti);
                }
                Err(e) => failures.push((doc.name.clone(), e.to_string())),
            }
        }
        by_document.insert(doc.name.clone(), out);
    }
    if failures.is_empty() {
        Ok(by_document)
    } else {
        Err(failures)
    }
}

/// `@id`s of the top-level elements of a DTDL document (object or array).
fn top_level_ids(text: &str) -> Vec<String> {
    let value: serde_json::Value =
        serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap_or_default();
    let items = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    items
        .iter()
        .filter_map(|i| i.get("@id").and_then(|v| v.as_str()).map(str::to_owned))
        .collect()
}

/// Maps one resolved DTDL interface onto a TwinInterface (own contents only: inherited ones
/// are reached through `extendsInterface`). No service is attached; see
/// [`crate::project::ServiceSettings`].
pub fn compile_interface(
    iface: &Interface,
    names: &NameOptions,
) -> Result<TwinInterface, CompileError> {
    let namer = Namer { iface, names };
    let name = namer.name(&iface.id, "@id".into())?;
    let parents = iface
        .extends
        .iter()
        .enumerate()
        .map(|(i, p)| namer.name(p, format!("extends[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut spec = TwinInterfaceSpec {
        id: Some(name.clone()),
        dtmi: Some(iface.id.clone()),
        display_name: localized(&iface.annotations.display_name),
        description: localized(&iface.annotations.description),
        comment: iface.annotations.comment.clone(),
        extends_interface: parents.first().cloned(),
        extends_interfaces: if parents.len() > 1 {
            parents
        } else {
            Vec::new()
        },
        mqtt: iface.mqtt().map(|binding| TwinMqtt {
            payload_format: binding.payload_format,
            telemetry_topic: binding.telemetry_topic.map(|t| t.to_string()),
            command_topic: binding.command_topic.map(|t| t.to_string()),
        }),
        ..Default::default()
    };
    for content in iface.contents.iter().filter(|c| c.origin == iface.id) {
        add_content(&mut spec, content, &namer)?;
    }
    let mut ti = TwinInterface::new(&name, spec);
    ti.metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(names.namespace.clone()),
        labels: Some(BTreeMap::from([(INTERFACE_LABEL.to_owned(), name)])),
        ..Default::default()
    };
    Ok(ti)
}

/// Turns the DTMIs an interface refers to into TwinInterface names; errors name the
/// interface and the field.
struct Namer<'a> {
    iface: &'a Interface,
    names: &'a NameOptions,
}

impl Namer<'_> {
    fn name(&self, dtmi: &str, field: String) -> Result<String, CompileError> {
        self.names.name(dtmi).map_err(|source| CompileError::Name {
            dtmi: self.iface.id.clone(),
            field,
            source,
        })
    }
}

/// Adds one of the interface's own contents to the list of its kind.
fn add_content(
    spec: &mut TwinInterfaceSpec,
    content: &Content,
    namer: &Namer<'_>,
) -> Result<(), CompileError> {
    let id = explicit_id(&content.id);
    let a = &content.annotations;
    match &content.kind {
        ContentKind::Property(p) => spec.properties.push(TwinProperty {
            id,
            comment: a.comment.clone(),
            description: localized(&a.description),
            display_name: localized(&a.display_name),
            name: content.name.clone(),
            schema: Some(schema(&p.schema)),
            writable: p.writable,
        }),
        ContentKind::Telemetry(t) => spec.telemetries.push(TwinTelemetry {
            id,
            comment: a.comment.clone(),
            description: localized(&a.description),
            display_name: localized(&a.display_name),
            name: content.name.clone(),
            schema: Some(schema(&t.schema)),
            unit: content.unit().map(short_term),
        }),
        ContentKind::Command(c) => spec.commands.push(TwinCommand {
            id,
            comment: a.comment.clone(),
            description: localized(&a.description),
            display_name: localized(&a.display_name),
            name: content.name.clone(),
            request: c.request.as_ref().map(payload),
            response: c.response.as_ref().map(payload),
        }),
        ContentKind::Relationship(r) => spec
            .relationships
            .push(relationship(content, r, id, namer)?),
        ContentKind::Component(c) => spec.components.push(TwinComponent {
            id,
            comment: a.comment.clone(),
            description: localized(&a.description),
            display_name: localized(&a.display_name),
            name: content.name.clone(),
            interface: namer.name(&c.schema, format!("contents/{}/schema", content.name))?,
        }),
    }
    Ok(())
}

fn relationship(
    content: &Content,
    r: &RelationshipDef,
    id: Option<String>,
    namer: &Namer<'_>,
) -> Result<TwinRelationship, CompileError> {
    let a = &content.annotations;
    Ok(TwinRelationship {
        id,
        comment: a.comment.clone(),
        description: localized(&a.description),
        display_name: localized(&a.display_name),
        name: content.name.clone(),
        max_multiplicity: r.max_multiplicity.and_then(|m| i64::try_from(m).ok()),
        min_multiplicity: r.min_multiplicity.and_then(|m| i64::try_from(m).ok()),
        properties: r
            .properties
            .iter()
            .map(|p| TwinProperty {
                name: p.name.clone(),
                comment: p.annotations.comment.clone(),
                description: localized(&p.annotations.description),
                display_name: localized(&p.annotations.display_name),
                schema: Some(schema(&p.schema)),
                writable: p.writable,
                id: None,
            })
            .collect(),
        interface: r
            .target
            .as_deref()
            .map(|t| namer.name(t, format!("contents/{}/target", content.name)))
            .transpose()?,
        schema: None,
        writeable: r.writable,
        aggregate_data: false,
    })
}

/// Element ids the DTDL parser derived from the position (`…:_contents:__name;1`) are noise in
/// the resource; explicit `@id`s are kept.
fn explicit_id(id: &str) -> Option<String> {
    (!id.contains(":_")).then(|| id.to_owned())
}

/// `dtmi:standard:unit:degreeCelsius;2` → `degreeCelsius`.
fn short_term(dtmi: &str) -> String {
    let body = dtmi.split(';').next().unwrap_or(dtmi);
    body.rsplit(':').next().unwrap_or(body).to_owned()
}

/// English text when present, otherwise the first language.
fn localized(text: &BTreeMap<String, String>) -> Option<String> {
    text.iter()
        .find(|(lang, _)| lang.as_str() == "en" || lang.starts_with("en-"))
        .or_else(|| text.iter().next())
        .map(|(_, v)| v.clone())
}

fn payload(p: &DtdlPayload) -> CommandPayload {
    let Annotations {
        display_name,
        description,
        comment,
    } = &p.annotations;
    CommandPayload {
        name: Some(p.name.clone()),
        display_name: localized(display_name),
        description: localized(description),
        comment: comment.clone(),
        schema: Some(schema(&p.schema)),
    }
}

fn primitive(p: ktwin_dtdl::Primitive) -> PrimitiveType {
    use ktwin_dtdl::Primitive as P;
    match p {
        P::Boolean => PrimitiveType::Boolean,
        P::Byte => PrimitiveType::Byte,
        P::Bytes => PrimitiveType::Bytes,
        P::Date => PrimitiveType::Date,
        P::DateTime => PrimitiveType::DateTime,
        P::Decimal => PrimitiveType::Decimal,
        P::Double => PrimitiveType::Double,
        P::Duration => PrimitiveType::Duration,
        P::Float => PrimitiveType::Float,
        P::Integer => PrimitiveType::Integer,
        P::Long => PrimitiveType::Long,
        P::Short => PrimitiveType::Short,
        P::String => PrimitiveType::String,
        P::Time => PrimitiveType::Time,
        P::UnsignedByte => PrimitiveType::UnsignedByte,
        P::UnsignedInteger => PrimitiveType::UnsignedInteger,
        P::UnsignedLong => PrimitiveType::UnsignedLong,
        P::UnsignedShort => PrimitiveType::UnsignedShort,
        P::Uuid => PrimitiveType::Uuid,
    }
}

/// Maps a DTDL schema (every kind, nested to any depth).
pub fn schema(s: &Schema) -> TwinSchema {
    match s {
        Schema::Primitive { primitive: p } => TwinSchema::primitive(primitive(*p)),
        Schema::Enum {
            value_schema,
            enum_values,
            ..
        } => TwinSchema {
            enum_type: Some(TwinEnumSchema {
                value_schema: Some(if *value_schema == ktwin_dtdl::Primitive::Integer {
                    EnumValueSchema::Integer
                } else {
                    EnumValueSchema::String
                }),
                enum_values: enum_values
                    .iter()
                    .map(|v| TwinEnumValue {
                        name: v.name.clone(),
                        display_name: localized(&v.annotations.display_name),
                        enum_value: match &v.enum_value {
                            serde_json::Value::Number(n) => {
                                n.as_i64().and_then(|i| i32::try_from(i).ok()).map_or_else(
                                    || IntOrString::String(n.to_string()),
                                    IntOrString::Int,
                                )
                            }
                            serde_json::Value::String(s) => IntOrString::String(s.clone()),
                            other => IntOrString::String(other.to_string()),
                        },
                    })
                    .collect(),
            }),
            ..Default::default()
        },
        Schema::Object { fields, .. } => TwinSchema {
            complex_type: Some(TwinComplexType {
                type_: ComplexKind::Object,
                fields: fields.iter().map(named).collect(),
            }),
            ..Default::default()
        },
        Schema::Array { element_schema, .. } => TwinSchema {
            array_type: Some(TwinArraySchema {
                element_schema: Box::new(schema(element_schema)),
            }),
            ..Default::default()
        },
        Schema::Map {
            map_key, map_value, ..
        } => TwinSchema {
            map_type: Some(TwinMapSchema {
                map_key: named(map_key),
                map_value: named(map_value),
            }),
            ..Default::default()
        },
        // A schema containing itself (DTDL v4) is cut at the recursion: an Object without
        // fields, so values still validate as objects.
        Schema::Ref { .. } => TwinSchema {
            complex_type: Some(TwinComplexType::default()),
            ..Default::default()
        },
    }
}

fn named(n: &NamedSchema) -> TwinNamedSchema {
    TwinNamedSchema {
        name: n.name.clone(),
        display_name: localized(&n.annotations.display_name),
        description: localized(&n.annotations.description),
        schema: Box::new(schema(&n.schema)),
    }
}

/// Names of the DTDL documents in a compilation that defined no interface.
pub fn empty_documents(c: &Compilation) -> BTreeSet<&str> {
    c.by_document
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| k.as_str())
        .collect()
}
