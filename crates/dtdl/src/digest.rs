//! The DTDL metamodel digest (`data/dtdl_digest.json`, the metamodel the reference parser
//! DTDLParser is generated from, MIT licence, see `data/LICENSE-DTDLParser`), loaded once.
//!
//! Only the parts the engine uses are deserialized. Rules live in this data: classes, their
//! properties per DTDL version (counts, lengths, patterns, ranges, allowed classes and values),
//! contexts (term → IRI), supplemental types (semantic types, units, extension types),
//! standard elements and descendant controls (depth/count/recursion limits).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

static DIGEST_JSON: &str = include_str!("../data/dtdl_digest.json");

/// The loaded digest (parsed on first use).
pub(crate) fn digest() -> &'static Digest {
    static DIGEST: OnceLock<Digest> = OnceLock::new();
    DIGEST.get_or_init(|| {
        let text = DIGEST_JSON.trim_start_matches('\u{feff}');
        let mut digest: Digest =
            serde_json::from_str(text).expect("the embedded DTDL digest is valid JSON");
        digest.index();
        digest
    })
}

/// A value keyed by limit profile: `""` is the default profile, `aio_1`/`onvif_1` others.
pub(crate) type Limit = HashMap<String, i64>;

pub(crate) fn limit_for(limit: &Limit, profile: &str) -> Option<i64> {
    limit.get(profile).or_else(|| limit.get("")).copied()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Digest {
    pub apocrypha: HashMap<String, HashMap<String, String>>,
    pub contexts: HashMap<String, HashMap<String, String>>,
    pub descendant_controls: Vec<DescendantControl>,
    pub elements: Vec<Value>,
    pub identifier_definition: HashMap<String, Value>,
    pub identifier_reference: HashMap<String, IdentifierRule>,
    pub limit_contexts: HashMap<String, LimitContext>,
    pub material_classes: HashMap<String, MaterialClass>,
    pub partitions: HashMap<String, Partition>,
    /// Classes whose elements are partitions (their descendants belong to them).
    pub partition_classes: Vec<String>,
    pub reserved_id_prefixes: HashMap<String, Vec<String>>,
    pub supplemental_types: HashMap<String, SupplementalType>,
    pub affiliate_contexts_implicit_dtdl_versions: HashMap<String, u8>,
    #[serde(skip)]
    pub property_names: HashMap<String, String>,
    /// IRI → the term some context defines for it (to recommend terms over IRIs).
    #[serde(skip)]
    pub terms_by_iri: HashMap<String, String>,
}

impl Digest {
    /// Builds reverse indexes after loading.
    fn index(&mut self) {
        for ctx in self.contexts.values() {
            for (term, iri) in ctx {
                if iri.starts_with("dtmi:dtdl:property:") {
                    self.property_names.insert(iri.clone(), term.clone());
                }
                self.terms_by_iri.insert(iri.clone(), term.clone());
            }
        }
    }

    /// The material class named `name` (e.g. `Interface`).
    pub fn class(&self, name: &str) -> Option<&MaterialClass> {
        self.material_classes.get(name)
    }

    /// True when `class` is `ancestor` or one of its (transitive) subclasses in `version`.
    pub fn is_subclass(&self, class: &str, ancestor: &str, version: u8) -> bool {
        if class == ancestor {
            return true;
        }
        let key = version.to_string();
        self.class(ancestor).is_some_and(|a| {
            a.concrete_subclasses
                .get(&key)
                .is_some_and(|subs| subs.iter().any(|s| s == class))
                || a.extensible_material_subclasses
                    .get(&key)
                    .is_some_and(|subs| subs.iter().any(|s| s == class))
        })
    }

    /// The apocrypha rule outcome (`valid`, `tenable` or `invalid`) for a version and case.
    pub fn apocrypha(&self, version: u8, case: &str) -> &str {
        self.apocrypha
            .get(&version.to_string())
            .and_then(|m| m.get(case))
            .map(String::as_str)
            .unwrap_or("invalid")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdentifierRule {
    pub max_length: Limit,
    pub pattern: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LimitContext {
    #[serde(rename = "dtdlVersion")]
    pub dtdl_version: u8,
    pub spec: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Partition {
    #[serde(default)]
    pub max_bytes: Option<Limit>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescendantControl {
    pub allow_self: bool,
    pub dtdl_version: u8,
    #[serde(default)]
    pub exclude_type: Option<String>,
    #[serde(default)]
    pub max_count: Option<Limit>,
    #[serde(default)]
    pub max_depth: Option<Limit>,
    pub properties: Vec<String>,
    pub root_class: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MaterialClass {
    pub concrete_subclasses: HashMap<String, Vec<String>>,
    pub dtdl_versions: Vec<u8>,
    #[serde(default)]
    pub extensible_material_subclasses: HashMap<String, Vec<String>>,
    pub properties: HashMap<String, ClassProperty>,
    pub type_optional_versions: Vec<u8>,
    /// What a JSON value must be to be an instance of an element of this class (schemas).
    #[serde(default)]
    pub instance: Option<Instance>,
}

/// The instance rules of a schema class, per DTDL version.
#[derive(Debug, Deserialize)]
pub(crate) struct Instance {
    #[serde(rename = "2")]
    v2: Option<InstanceRule>,
    #[serde(rename = "3")]
    v3: Option<InstanceRule>,
    #[serde(rename = "4")]
    v4: Option<InstanceRule>,
    /// What an instance is, in words (`is a numeric value that conforms to …`).
    #[serde(rename = "criteriaText", default)]
    pub criteria_text: String,
}

impl Instance {
    pub fn for_version(&self, version: u8) -> Option<&InstanceRule> {
        match version {
            2 => self.v2.as_ref(),
            3 => self.v3.as_ref(),
            _ => self.v4.as_ref(),
        }
    }
}

/// The criteria on the instance itself (`element`) and on each of its members or items
/// (`eachChild`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstanceRule {
    pub each_child: InstanceCriteria,
    pub element: InstanceCriteria,
}

/// One set of instance criteria.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstanceCriteria {
    /// `number`, `string`, `boolean`, `array` or `object`.
    #[serde(default)]
    pub json_type: Option<String>,
    /// The XSD datatype (`int`, `unsignedByte`, `double`, `date` …).
    #[serde(default)]
    pub datatype: Option<String>,
    /// A pattern the value's text must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The value must also conform to the element's values of these properties.
    #[serde(default)]
    pub instance_property: Vec<String>,
    /// The value must equal the element's value of this property (an enum value).
    #[serde(default)]
    pub has_value: Option<String>,
    /// A member's name must equal the element's value of this property (an object field).
    #[serde(default)]
    pub name_has_value: Option<String>,
}

impl MaterialClass {
    /// The rules of property `name` in `version`, if the property exists there.
    pub fn property(&self, name: &str, version: u8) -> Option<(&PropertyCommon, &PropertyRules)> {
        let p = self.properties.get(name)?;
        let rules = p.for_version(version)?;
        Some((&p.common, rules))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ClassProperty {
    #[serde(rename = "_")]
    pub common: PropertyCommon,
    #[serde(rename = "2", default)]
    pub v2: Option<PropertyRules>,
    #[serde(rename = "3", default)]
    pub v3: Option<PropertyRules>,
    #[serde(rename = "4", default)]
    pub v4: Option<PropertyRules>,
}

impl ClassProperty {
    pub fn for_version(&self, version: u8) -> Option<&PropertyRules> {
        match version {
            2 => self.v2.as_ref(),
            3 => self.v3.as_ref(),
            _ => self.v4.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PropertyCommon {
    #[serde(default)]
    pub datatype: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub dtmi_segment: Option<String>,
    pub literal: bool,
    pub optional: bool,
    pub plural: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PropertyRules {
    pub allowed: bool,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub default_language: Option<String>,
    #[serde(default)]
    pub deprecated: bool,
    #[serde(default)]
    pub id_required: bool,
    #[serde(default)]
    pub max_count: Option<i64>,
    #[serde(default)]
    pub min_count: Option<i64>,
    #[serde(default)]
    pub max_length: Option<Limit>,
    #[serde(default)]
    pub max_inclusive: Option<i64>,
    #[serde(default)]
    pub min_inclusive: Option<i64>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub pattern_desc: Option<HashMap<String, String>>,
    #[serde(default)]
    pub unique_properties: Vec<String>,
    #[serde(default)]
    pub value_uris: Option<Vec<String>>,
    #[serde(default)]
    pub values: Option<Vec<String>>,
    #[serde(default)]
    pub versions: Vec<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SupplementalType {
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    #[serde(default)]
    pub cocotypes: Vec<String>,
    #[serde(default)]
    pub constraints: Vec<Value>,
    pub cotypes: Vec<String>,
    pub cotype_versions: Vec<u8>,
    #[serde(default)]
    pub discotypes: Vec<String>,
    pub parent: Option<String>,
    pub properties: HashMap<String, SupplementalProperty>,
    /// Rules about the sibling an element names through one of its properties (the
    /// annotation and overriding extensions: `annotates` names a sibling content).
    #[serde(default)]
    pub siblings: Vec<SiblingRule>,
}

/// A rule on the sibling (another content of the same interface) an element refers to: the
/// sibling whose `key` property equals the element's `keyref` property.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SiblingRule {
    pub key: String,
    pub keyref: String,
    /// The sibling must be of one of these material classes.
    #[serde(default)]
    pub required_types: Vec<String>,
    #[serde(default)]
    pub required_types_string: Option<String>,
    /// The sibling must not carry this supplemental type.
    #[serde(default)]
    pub disallowed_type: Option<String>,
    /// No two elements may refer to the same sibling with the same value of this property.
    #[serde(default)]
    pub unique_reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SupplementalProperty {
    #[serde(default)]
    pub child_of: Option<String>,
    #[serde(default)]
    pub max_count: Option<i64>,
    #[serde(default)]
    pub min_count: Option<i64>,
    #[serde(default)]
    pub max_inclusive: Option<Value>,
    #[serde(default)]
    pub min_inclusive: Option<Value>,
    #[serde(default)]
    pub max_length: Option<i64>,
    #[serde(default)]
    pub pattern: Option<String>,
    pub plural: bool,
    pub property_name: String,
    #[serde(rename = "type", default)]
    pub type_iri: Option<String>,
    #[serde(default)]
    pub type_name: Option<String>,
    /// The value is unique among the elements of the same parent property (`index`).
    #[serde(default)]
    pub unique_value: bool,
    /// The value must conform to the element's value of this property (a `maximum` to the
    /// element's `schema`).
    #[serde(default)]
    pub instance_property: Option<String>,
}
