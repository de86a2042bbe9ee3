//! `dtd.ktwin/v0` TwinInterface: a DTDL Interface plus the serverless service behind its twins.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AutoScaling, Phase, conditions_schema};

/// Desired state of a TwinInterface. Field names are those of the original v0 API so existing
/// YAML applies unchanged.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dtd.ktwin",
    version = "v0",
    kind = "TwinInterface",
    plural = "twininterfaces",
    shortname = "tif",
    category = "ktwin",
    namespaced,
    status = "TwinInterfaceStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A twin type: a DTDL Interface with the serverless service that runs its virtual twins.",
    printcolumn(
        name = "Extends",
        type_ = "string",
        json_path = ".spec.extendsInterface"
    ),
    printcolumn(
        name = "Service",
        type_ = "boolean",
        json_path = ".status.serviceReady"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TwinInterfaceSpec {
    /// Normalised interface name (usually equal to `metadata.name`), e.g. `city-pole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The DTDL `@id` the interface was compiled from, e.g. `dtmi:digitaltwins:city:Pole;1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtmi: Option<String>,
    /// DTDL `displayName` of the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// DTDL `description` of the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// DTDL `comment` of the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// DTDL Properties declared by this interface (inherited ones live on the parents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<TwinProperty>,
    /// DTDL Commands; each routes `ktwin.command.<iface>.<lower(name)>` to the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<TwinCommand>,
    /// DTDL Relationships.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relationships: Vec<TwinRelationship>,
    /// DTDL Telemetry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telemetries: Vec<TwinTelemetry>,
    /// DTDL Components (the original dropped them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<TwinComponent>,
    /// First parent interface (v0 field, kept for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends_interface: Option<String>,
    /// Every parent interface in declaration order when there are several; its first entry
    /// equals `extendsInterface`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extends_interfaces: Vec<String>,
    /// Which events of this interface the event store persists directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_store: Option<TwinInterfaceEventStore>,
    /// The service running the virtual twins; absent means no service (e.g. a sensor whose data
    /// a parent aggregates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<TwinInterfaceService>,
    /// The device topics the interface declares with the DTDL MQTT extension (co-type `Mqtt`),
    /// used beside `ktwin/real/<iface>/<instance>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<TwinMqtt>,
}

impl TwinInterface {
    /// Whether the schema id `id` (a `primitiveType` that is no DTDL primitive) names this
    /// interface: its DTMI, or the id normalised as the compiler names interfaces
    /// (`ngsi_ld:city:AirQualityLevel` → `ngsi-ld-city-airqualitylevel`) is its name.
    pub fn is_named_by(&self, id: &str) -> bool {
        self.spec.dtmi.as_deref() == Some(id)
            || crate::names::interface_name(id, None)
                .is_ok_and(|name| self.metadata.name.as_deref() == Some(name.as_str()))
    }
}

/// How the devices of an interface talk MQTT (the `Mqtt` co-type of the DTDL MQTT extension).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinMqtt {
    /// How payloads are serialized (`Json/ecma/404` is the one ktwin reads and writes).
    #[schemars(length(min = 1))]
    pub payload_format: String,
    /// Topic pattern devices publish telemetry on, e.g. `vehicles/{modelId}/{senderId}/telemetry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_topic: Option<String>,
    /// Topic pattern commands are sent on, e.g. `vehicles/{executorId}/command/{commandName}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_topic: Option<String>,
}

impl TwinInterfaceSpec {
    /// Direct parents: `extendsInterfaces` when set, otherwise the v0 `extendsInterface`.
    pub fn parents(&self) -> Vec<&str> {
        if self.extends_interfaces.is_empty() {
            self.extends_interface.iter().map(String::as_str).collect()
        } else {
            self.extends_interfaces.iter().map(String::as_str).collect()
        }
    }

    /// Every schema given as an id rather than a DTDL primitive (`primitiveType:
    /// ngsi_ld:city:AirQualityLevel`, as the original CLI wrote), with the field holding it
    /// (`spec.properties[2].schema.primitiveType`), in declaration order.
    pub fn schema_ids(&self) -> Vec<(String, &str)> {
        let mut schemas: Vec<(String, Option<&TwinSchema>)> = Vec::new();
        for (i, p) in self.properties.iter().enumerate() {
            schemas.push((format!("spec.properties[{i}].schema"), p.schema.as_ref()));
        }
        for (i, t) in self.telemetries.iter().enumerate() {
            schemas.push((format!("spec.telemetries[{i}].schema"), t.schema.as_ref()));
        }
        for (i, c) in self.commands.iter().enumerate() {
            for (side, payload) in [("request", &c.request), ("response", &c.response)] {
                let schema = payload.as_ref().and_then(|p| p.schema.as_ref());
                schemas.push((format!("spec.commands[{i}].{side}.schema"), schema));
            }
        }
        for (i, r) in self.relationships.iter().enumerate() {
            schemas.push((format!("spec.relationships[{i}].schema"), r.schema.as_ref()));
            for (j, p) in r.properties.iter().enumerate() {
                let path = format!("spec.relationships[{i}].properties[{j}].schema");
                schemas.push((path, p.schema.as_ref()));
            }
        }
        let mut out = Vec::new();
        for (path, schema) in schemas {
            if let Some(schema) = schema {
                schema.collect_ids(path, &mut out);
            }
        }
        out
    }
}

/// Direct persistence of real/virtual events by the event store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinInterfaceEventStore {
    /// Persist every `ktwin.real.<iface>` event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub persist_real_event: bool,
    /// Persist every `ktwin.virtual.<iface>` event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub persist_virtual_event: bool,
}

/// The serverless service behind a TwinInterface: one service serves every instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinInterfaceService {
    /// Pod template of the service; its metadata, volumes and scheduling are preserved.
    pub template: PodTemplateSpec,
    /// Autoscaling of the twin service (Knative annotations) and of its trigger (the
    /// eventing-rabbitmq dispatcher parallelism). Absent fields keep the platform defaults;
    /// unlike the original, setting one field does not silently force `maxScale: 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling: Option<AutoScaling>,
}

/// A DTDL Property.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinProperty {
    /// DTDL `@id` of the content, when the model gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// DTDL `comment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// DTDL `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// DTDL `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Optional, as in the original v0 API (its CLI always set it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Schema of the property's value: a DTDL schema, exactly one member set; nested schemas
    /// are checked by ktwin when compiling (structural CRD schemas cannot be recursive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<TwinSchema>,
    /// JSON key `writable` (the v0 spelling for properties).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable: bool,
}

/// A DTDL Telemetry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinTelemetry {
    /// DTDL `@id` of the content, when the model gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// DTDL `comment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// DTDL `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// DTDL `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Optional, as in the original v0 API (its CLI always set it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Schema of the telemetry's value: a DTDL schema, exactly one member set; nested schemas
    /// are checked by ktwin when compiling (structural CRD schemas cannot be recursive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<TwinSchema>,
    /// Unit from a semantic type, e.g. `degreeCelsius`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// A DTDL Command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinCommand {
    /// DTDL `@id` of the content, when the model gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// DTDL `comment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// DTDL `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// DTDL `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Command name; events use it lower-cased (`ktwin.command.<iface>.<lower(name)>`).
    /// Optional, as in the original v0 API (its CLI always set it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1))]
    pub name: String,
    /// The command's request payload; absent means the command takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<CommandPayload>,
    /// The command's response payload; absent means it returns none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<CommandPayload>,
}

/// A command request or response (v0 `CommandRequest`/`CommandResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandPayload {
    /// Name of the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// DTDL `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// DTDL `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// DTDL `comment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Schema of the payload: a DTDL schema, exactly one member set; nested schemas are
    /// checked by ktwin when compiling (structural CRD schemas cannot be recursive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<TwinSchema>,
}

/// A DTDL Relationship.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinRelationship {
    /// DTDL `@id` of the content, when the model gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// DTDL `comment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// DTDL `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// DTDL `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Optional, as in the original v0 API (its CLI always set it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Most instances one twin may target with this relationship; absent means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_multiplicity: Option<i64>,
    /// Fewest instances one twin must target with this relationship (DTDL v2 allows only 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_multiplicity: Option<i64>,
    /// Properties of the relationship edge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<TwinProperty>,
    /// Target TwinInterface name; absent means any interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub interface: Option<String>,
    /// Schema of the relationship's value, when it has one: a DTDL schema, exactly one member
    /// set; nested schemas are checked by ktwin when compiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<TwinSchema>,
    /// JSON key `writeable` (the v0 spelling for relationships, unlike properties).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writeable: bool,
    /// ktwin extension: this interface's service also receives the target's real events and
    /// may emit its virtual events (one parent service for many children).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aggregate_data: bool,
}

/// A DTDL Component: an interface embedded under a name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinComponent {
    /// DTDL `@id` of the content, when the model gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// DTDL `comment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// DTDL `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// DTDL `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Optional, as in the original v0 API (its CLI always set it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1))]
    pub name: String,
    /// The TwinInterface name of the component's schema.
    #[schemars(length(min = 1))]
    pub interface: String,
}

/// A DTDL schema: exactly one member is set. Nested schemas (object fields, array elements,
/// map values) are checked by ktwin when compiling, and stored without a CRD-level schema
/// because structural CRD schemas cannot be recursive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct TwinSchema {
    /// A DTDL primitive schema (boolean, date, dateTime, double, duration, float, integer, long,
    /// string, time, ...), or the id of another schema (e.g. ngsi_ld:city:AirQualityLevel),
    /// which ktwin resolves against the namespace's TwinInterfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "primitive_schema")]
    pub primitive_type: Option<PrimitiveSchema>,
    /// An Object schema (v0 `complexType`); its fields may nest any schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complex_type: Option<TwinComplexType>,
    /// An Enum schema of integer or string values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_type: Option<TwinEnumSchema>,
    /// An Array schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_type: Option<TwinArraySchema>,
    /// A Map schema (string keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_type: Option<TwinMapSchema>,
}

impl TwinSchema {
    fn collect_ids<'a>(&'a self, path: String, out: &mut Vec<(String, &'a str)>) {
        if let Some(PrimitiveSchema::Id(id)) = &self.primitive_type {
            out.push((format!("{path}.primitiveType"), id.as_str()));
        }
        if let Some(complex) = &self.complex_type {
            for (i, field) in complex.fields.iter().enumerate() {
                let path = format!("{path}.complexType.fields[{i}].schema");
                field.schema.collect_ids(path, out);
            }
        }
        if let Some(array) = &self.array_type {
            let path = format!("{path}.arrayType.elementSchema");
            array.element_schema.collect_ids(path, out);
        }
        if let Some(map) = &self.map_type {
            let path = format!("{path}.mapType.mapValue.schema");
            map.map_value.schema.collect_ids(path, out);
        }
    }

    /// A primitive schema.
    pub fn primitive(p: PrimitiveType) -> Self {
        TwinSchema {
            primitive_type: Some(PrimitiveSchema::Dtdl(p)),
            ..Default::default()
        }
    }
}

/// The DTDL primitive schemas, spelled as DTDL terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PrimitiveType {
    /// `boolean`.
    Boolean,
    /// `byte`: a signed 8-bit integer.
    Byte,
    /// `bytes`: a base64-encoded byte array.
    Bytes,
    /// `date`: a full date (RFC 3339).
    Date,
    /// `dateTime`: a date and time (RFC 3339).
    DateTime,
    /// `decimal`: a decimal number of arbitrary precision.
    Decimal,
    /// `double`: an IEEE 8-byte floating point number.
    Double,
    /// `duration`: an ISO 8601 duration.
    Duration,
    /// `float`: an IEEE 4-byte floating point number.
    Float,
    /// `integer`: a signed 4-byte integer.
    Integer,
    /// `long`: a signed 8-byte integer.
    Long,
    /// `short`: a signed 2-byte integer.
    Short,
    /// `string`: a UTF-8 string.
    String,
    /// `time`: a full time (RFC 3339).
    Time,
    /// `unsignedByte`: an unsigned 8-bit integer.
    UnsignedByte,
    /// `unsignedInteger`: an unsigned 4-byte integer.
    UnsignedInteger,
    /// `unsignedLong`: an unsigned 8-byte integer.
    UnsignedLong,
    /// `unsignedShort`: an unsigned 2-byte integer.
    UnsignedShort,
    /// `uuid`: a UUID string.
    Uuid,
}

/// What `primitiveType` holds: a DTDL primitive schema, or — as the original CLI wrote for a
/// content whose schema is another model element (`ngsi_ld:city:AirQualityLevel`) — that
/// element's id, kept as written. Ids are accepted by the CRD; the operator resolves them
/// against the namespace's interfaces and reports one that names none in a condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PrimitiveSchema {
    /// A DTDL primitive schema.
    Dtdl(PrimitiveType),
    /// Any other schema reference, kept as written.
    Id(String),
}

impl PrimitiveSchema {
    /// The DTDL primitive, when it is one.
    pub fn primitive(&self) -> Option<PrimitiveType> {
        match self {
            PrimitiveSchema::Dtdl(p) => Some(*p),
            PrimitiveSchema::Id(_) => None,
        }
    }
}

/// Schema of `primitiveType` in the CRD: any non-empty string (a DTDL primitive such as
/// `double` or `dateTime`, or a schema id), so the original CLI's output applies unchanged.
fn primitive_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "minLength": 1,
        "description": "A DTDL primitive schema (boolean, date, dateTime, double, duration, float, integer, long, string, time, ...), or the id of another schema (e.g. ngsi_ld:city:AirQualityLevel), which ktwin resolves against the namespace's TwinInterfaces."
    })
}

/// The only complex type the v0 `complexType` carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ComplexKind {
    /// A DTDL Object.
    #[default]
    Object,
}

/// An Object schema (v0 `complexType`), fields may nest any schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinComplexType {
    /// The complex type, always `Object` (the default).
    #[serde(rename = "type", default)]
    pub type_: ComplexKind,
    /// The object's fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<TwinNamedSchema>,
}

/// An object field or map key/value: a name and a nested schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinNamedSchema {
    /// Optional, as in the original v0 API (its CLI always set it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1))]
    pub name: String,
    /// DTDL `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// DTDL `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The nested schema (primitiveType, complexType, enumType, arrayType or mapType).
    #[schemars(schema_with = "nested_schema")]
    pub schema: Box<TwinSchema>,
}

/// An Array schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinArraySchema {
    /// Schema of the array's elements.
    #[schemars(schema_with = "nested_schema")]
    pub element_schema: Box<TwinSchema>,
}

/// A Map schema (string keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinMapSchema {
    /// Name and schema of the keys (always strings).
    pub map_key: TwinNamedSchema,
    /// Name and schema of the values.
    pub map_value: TwinNamedSchema,
}

/// An Enum schema; `enumValue` is an integer or a string as `valueSchema` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinEnumSchema {
    /// Optional, as in the original v0 API: when absent the values' own type tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_schema: Option<EnumValueSchema>,
    /// The enum's values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enum_values: Vec<TwinEnumValue>,
}

/// Value schemas DTDL allows for enums: `integer` or `string`.
// The variants stay undocumented: with doc comments on them, kube-core's schema for the
// optional `valueSchema` field drops `null` from its allowed values, and an API server would
// then refuse an explicit `valueSchema: null` that the v0 CRD accepted.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EnumValueSchema {
    Integer,
    String,
}

/// One enum value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinEnumValue {
    /// Optional, as in the original v0 API (its CLI always set it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1))]
    pub name: String,
    /// DTDL `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The value: an integer or a string, as `valueSchema` says.
    pub enum_value: IntOrString,
}

/// Schema of a nested TwinSchema inside the CRD: an object kept as written.
fn nested_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "A nested TwinSchema (primitiveType, complexType, enumType, arrayType or mapType).",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Observed state of a TwinInterface, written through the status subresource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinInterfaceStatus {
    /// Coarse lifecycle phase (`Pending`, `Running`, `Failed` or `Unknown`), set by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `ServiceReady`, `TriggerReady`, `BindingsReady`, `DependenciesReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Whether the interface's service is ready (absent when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ready: Option<bool>,
    /// URL of the twin service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url: Option<String>,
    /// Name of the trigger queue the routes are bound into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Names of the routing bindings the operator manages for this interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<String>,
}
