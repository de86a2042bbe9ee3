//! The resolved, typed DTDL model handed to the rest of ktwin.
//!
//! Everything here is plain data: references between interfaces are DTMI strings, contents
//! inherited through `extends` are already flattened into [`Interface::contents`] with their
//! [`Content::origin`], and every schema is inlined (a schema that contains itself, allowed in
//! DTDL v4, is cut with [`Schema::Ref`]).

use std::collections::BTreeMap;

use serde::Serialize;

/// A localizable string: language code (as written, e.g. `en`, `en-US`) → text.
pub type LocalizedString = BTreeMap<String, String>;

/// A resolved, validated set of DTDL interfaces.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelSet {
    /// Every interface defined in the parsed documents, by DTMI.
    pub interfaces: BTreeMap<String, Interface>,
    /// Valid-but-discouraged constructs found while parsing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<crate::Diagnostic>,
}

impl ModelSet {
    /// The interface with this DTMI, if the set defines it.
    pub fn interface(&self, dtmi: &str) -> Option<&Interface> {
        self.interfaces.get(dtmi)
    }

    /// All interfaces, ordered by DTMI.
    pub fn iter(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.values()
    }

    /// Number of interfaces in the set.
    pub fn len(&self) -> usize {
        self.interfaces.len()
    }

    /// True when the set defines no interface.
    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty()
    }
}

/// Properties every DTDL element may carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    /// `displayName`, by language.
    pub display_name: LocalizedString,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    /// `description`, by language.
    pub description: LocalizedString,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `comment`, a note for model authors.
    pub comment: Option<String>,
}

/// A DTDL Interface with its inherited contents flattened in.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// The interface DTMI, e.g. `dtmi:example:Thermostat;1`.
    pub id: String,
    /// DTDL language version the interface is written in (2, 3 or 4).
    pub dtdl_version: u8,
    #[serde(flatten)]
    /// Display name, description and comment.
    pub annotations: Annotations,
    /// Direct parents (`extends`), in declaration order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extends: Vec<String>,
    /// Own and inherited contents (inherited ones first, in `extends` order), each with its origin.
    pub contents: Vec<Content>,
    /// Complex schemas declared in this interface's `schemas` section.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<Schema>,
    /// Supplemental (co-)types written on the interface itself, as DTMIs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplemental_types: Vec<String>,
    /// Values of properties added by those co-types (e.g. the MQTT extension's
    /// `telemetryTopic`), keyed by the property's short name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub supplemental_properties: BTreeMap<String, serde_json::Value>,
}

impl Interface {
    /// How the interface is conveyed over MQTT, when it is co-typed `Mqtt` (DTDL MQTT
    /// extension v1–v4): payload format, telemetry/command/property topic patterns and
    /// shared-subscription groups.
    pub fn mqtt(&self) -> Option<crate::MqttBinding> {
        crate::MqttBinding::from_supplemental(
            &self.supplemental_types,
            &self.supplemental_properties,
        )
    }

    /// The content named `name`, own or inherited.
    pub fn content(&self, name: &str) -> Option<&Content> {
        self.contents.iter().find(|c| c.name == name)
    }

    /// Properties (own and inherited).
    pub fn properties(&self) -> impl Iterator<Item = (&Content, &PropertyDef)> {
        self.contents.iter().filter_map(|c| match &c.kind {
            ContentKind::Property(p) => Some((c, p)),
            _ => None,
        })
    }

    /// Telemetries (own and inherited).
    pub fn telemetries(&self) -> impl Iterator<Item = (&Content, &TelemetryDef)> {
        self.contents.iter().filter_map(|c| match &c.kind {
            ContentKind::Telemetry(t) => Some((c, t)),
            _ => None,
        })
    }

    /// Commands (own and inherited).
    pub fn commands(&self) -> impl Iterator<Item = (&Content, &CommandDef)> {
        self.contents.iter().filter_map(|c| match &c.kind {
            ContentKind::Command(x) => Some((c, x)),
            _ => None,
        })
    }

    /// Relationships (own and inherited).
    pub fn relationships(&self) -> impl Iterator<Item = (&Content, &RelationshipDef)> {
        self.contents.iter().filter_map(|c| match &c.kind {
            ContentKind::Relationship(x) => Some((c, x)),
            _ => None,
        })
    }

    /// Components (own and inherited).
    pub fn components(&self) -> impl Iterator<Item = (&Content, &ComponentDef)> {
        self.contents.iter().filter_map(|c| match &c.kind {
            ContentKind::Component(x) => Some((c, x)),
            _ => None,
        })
    }
}

/// One element of an interface's `contents`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// The content name, unique within the (flattened) interface.
    pub name: String,
    /// The element's DTMI: the explicit `@id` or the identifier derived from its position.
    pub id: String,
    /// DTMI of the interface that declares this content (differs from the owner when inherited).
    pub origin: String,
    #[serde(flatten)]
    /// Display name, description and comment.
    pub annotations: Annotations,
    /// Supplemental types (semantic types such as `Temperature`, extension types such as
    /// `Historized`), as DTMIs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplemental_types: Vec<String>,
    /// Values of properties added by supplemental types (e.g. `unit`), keyed by the property's
    /// short name; references are given as DTMIs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub supplemental_properties: BTreeMap<String, serde_json::Value>,
    #[serde(flatten)]
    /// What the content is, with its kind-specific definition.
    pub kind: ContentKind,
}

impl Content {
    /// The unit DTMI given by a semantic type (`unit` supplemental property), if any.
    pub fn unit(&self) -> Option<&str> {
        self.supplemental_properties
            .get("unit")
            .and_then(|v| v.as_str())
    }
}

/// What a content is.
// Built once per parse and read by reference; boxing the payloads would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum ContentKind {
    /// A Property.
    Property(PropertyDef),
    /// A Telemetry.
    Telemetry(TelemetryDef),
    /// A Command.
    Command(CommandDef),
    /// A Relationship.
    Relationship(RelationshipDef),
    /// A Component.
    Component(ComponentDef),
}

/// A Property content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertyDef {
    /// The value schema.
    pub schema: Schema,
    /// True when a twin's clients may set the value (DTDL default: false).
    pub writable: bool,
}

/// A Telemetry content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryDef {
    /// The value schema.
    pub schema: Schema,
}

/// A Command content.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandDef {
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The request payload, if the command takes one.
    pub request: Option<CommandPayload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The response payload, if the command returns one.
    pub response: Option<CommandPayload>,
    /// `synchronous`/`asynchronous` (DTDL v2, deprecated afterwards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_type: Option<String>,
}

/// A Command request or response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandPayload {
    /// The name (unique among its siblings).
    pub name: String,
    #[serde(flatten)]
    /// Display name, description and comment.
    pub annotations: Annotations,
    /// The value schema.
    pub schema: Schema,
    /// DTDL v4: the payload may be null.
    pub nullable: bool,
}

/// A Relationship content.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelationshipDef {
    /// DTMI of the target interface; `None` means any interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Minimum number of targets (DTDL v2).
    pub min_multiplicity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Maximum number of targets.
    pub max_multiplicity: Option<u64>,
    /// True when clients may set it (DTDL default: false).
    pub writable: bool,
    /// Properties of the relationship edge itself.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<RelationshipProperty>,
}

/// A property carried by a relationship.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelationshipProperty {
    /// The name (unique among its siblings).
    pub name: String,
    #[serde(flatten)]
    /// Display name, description and comment.
    pub annotations: Annotations,
    /// The value schema.
    pub schema: Schema,
    /// True when clients may set it (DTDL default: false).
    pub writable: bool,
}

/// A Component content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentDef {
    /// DTMI of the component's interface.
    pub schema: String,
}

/// A DTDL schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Schema {
    /// A primitive schema.
    /// A primitive schema.
    Primitive {
        /// Which primitive.
        primitive: Primitive,
    },
    /// A homogeneous array.
    Array {
        /// The schema's DTMI (explicit or derived).
        id: String,
        #[serde(flatten)]
        /// Display name, description and comment.
        annotations: Annotations,
        #[serde(rename = "elementSchema")]
        /// The schema of every element.
        element_schema: Box<Schema>,
    },
    /// An enumeration.
    Enum {
        /// The schema's DTMI (explicit or derived).
        id: String,
        #[serde(flatten)]
        /// Display name, description and comment.
        annotations: Annotations,
        #[serde(rename = "valueSchema")]
        /// The schema of the enum values (`integer` or `string`).
        value_schema: Primitive,
        #[serde(rename = "enumValues")]
        /// The values.
        enum_values: Vec<EnumValue>,
    },
    /// A map from string keys to values.
    Map {
        /// The schema's DTMI (explicit or derived).
        id: String,
        #[serde(flatten)]
        /// Display name, description and comment.
        annotations: Annotations,
        #[serde(rename = "mapKey")]
        /// The key (a string schema).
        map_key: NamedSchema,
        #[serde(rename = "mapValue")]
        /// The value.
        map_value: NamedSchema,
    },
    /// A record of named fields.
    Object {
        /// The schema's DTMI (explicit or derived).
        id: String,
        #[serde(flatten)]
        /// Display name, description and comment.
        annotations: Annotations,
        /// The fields.
        fields: Vec<NamedSchema>,
    },
    /// A reference to an enclosing complex schema (self-referential schemas, DTDL v4).
    /// A reference to an enclosing complex schema by DTMI.
    Ref {
        /// The DTMI of the enclosing schema.
        id: String,
    },
}

impl Schema {
    /// The DTMI of a complex schema (`None` for primitives).
    pub fn id(&self) -> Option<&str> {
        match self {
            Schema::Primitive { .. } => None,
            Schema::Array { id, .. }
            | Schema::Enum { id, .. }
            | Schema::Map { id, .. }
            | Schema::Object { id, .. }
            | Schema::Ref { id } => Some(id),
        }
    }
}

/// A map key, map value or object field: a name with a schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedSchema {
    /// The name (unique among its siblings).
    pub name: String,
    #[serde(flatten)]
    /// Display name, description and comment.
    pub annotations: Annotations,
    /// The schema.
    pub schema: Box<Schema>,
}

/// One value of an Enum.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnumValue {
    /// The name (unique among its siblings).
    pub name: String,
    #[serde(flatten)]
    /// Display name, description and comment.
    pub annotations: Annotations,
    /// The value: a JSON integer or string, as the enum's value schema says.
    pub enum_value: serde_json::Value,
}

/// The DTDL primitive schemas (v2 to v4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Primitive {
    /// The DTDL `boolean` schema.
    Boolean,
    /// The DTDL `byte` schema.
    Byte,
    /// The DTDL `bytes` schema.
    Bytes,
    /// The DTDL `date` schema.
    Date,
    /// The DTDL `dateTime` schema.
    DateTime,
    /// The DTDL `decimal` schema.
    Decimal,
    /// The DTDL `double` schema.
    Double,
    /// The DTDL `duration` schema.
    Duration,
    /// The DTDL `float` schema.
    Float,
    /// The DTDL `integer` schema.
    Integer,
    /// The DTDL `long` schema.
    Long,
    /// The DTDL `short` schema.
    Short,
    /// The DTDL `string` schema.
    String,
    /// The DTDL `time` schema.
    Time,
    /// The DTDL `unsignedByte` schema.
    UnsignedByte,
    /// The DTDL `unsignedInteger` schema.
    UnsignedInteger,
    /// The DTDL `unsignedLong` schema.
    UnsignedLong,
    /// The DTDL `unsignedShort` schema.
    UnsignedShort,
    /// The DTDL `uuid` schema.
    Uuid,
}

impl Primitive {
    /// Every primitive, in declaration order.
    pub const ALL: [Primitive; 19] = [
        Primitive::Boolean,
        Primitive::Byte,
        Primitive::Bytes,
        Primitive::Date,
        Primitive::DateTime,
        Primitive::Decimal,
        Primitive::Double,
        Primitive::Duration,
        Primitive::Float,
        Primitive::Integer,
        Primitive::Long,
        Primitive::Short,
        Primitive::String,
        Primitive::Time,
        Primitive::UnsignedByte,
        Primitive::UnsignedInteger,
        Primitive::UnsignedLong,
        Primitive::UnsignedShort,
        Primitive::Uuid,
    ];

    /// The DTDL term, e.g. `dateTime`.
    pub fn term(self) -> &'static str {
        match self {
            Primitive::Boolean => "boolean",
            Primitive::Byte => "byte",
            Primitive::Bytes => "bytes",
            Primitive::Date => "date",
            Primitive::DateTime => "dateTime",
            Primitive::Decimal => "decimal",
            Primitive::Double => "double",
            Primitive::Duration => "duration",
            Primitive::Float => "float",
            Primitive::Integer => "integer",
            Primitive::Long => "long",
            Primitive::Short => "short",
            Primitive::String => "string",
            Primitive::Time => "time",
            Primitive::UnsignedByte => "unsignedByte",
            Primitive::UnsignedInteger => "unsignedInteger",
            Primitive::UnsignedLong => "unsignedLong",
            Primitive::UnsignedShort => "unsignedShort",
            Primitive::Uuid => "uuid",
        }
    }

    /// The primitive named by a DTDL term.
    pub fn from_term(term: &str) -> Option<Primitive> {
        Primitive::ALL.into_iter().find(|p| p.term() == term)
    }

    /// The primitive whose standard instance DTMI is `dtmi:dtdl:instance:Schema:<term>;<v>`.
    pub fn from_dtmi(dtmi: &str) -> Option<Primitive> {
        let rest = dtmi.strip_prefix("dtmi:dtdl:instance:Schema:")?;
        let term = rest.split(';').next()?;
        Primitive::from_term(term)
    }
}
