//! Instances of schemas: whether a JSON value conforms to a schema element, by the digest's
//! instance rules of the schema's class — JSON type, XSD datatype (the range of `byte`, `int`,
//! `unsignedLong` …), pattern, enum values, object fields, map values and array items. A
//! property whose value must conform to the element's schema (`maximum`, `minimum` and
//! `scaleFactor` of the iotoperations context) is checked with it.

use serde_json::Value;

use super::Parser;
use super::pattern::matches;
use super::resolve::Node;
use crate::digest::{InstanceCriteria, digest};

/// How deep the check follows nested values; schemas may refer to themselves (DTDL v4).
const MAX_DEPTH: usize = 64;

fn json_type_matches(value: &Value, json_type: &str) -> bool {
    match json_type {
        "number" => value.is_number(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

/// The inclusive range of an XSD integral datatype.
fn integral_range(datatype: &str) -> Option<(i128, i128)> {
    let range = match datatype {
        "byte" => (i8::MIN.into(), i8::MAX.into()),
        "short" => (i16::MIN.into(), i16::MAX.into()),
        "int" => (i32::MIN.into(), i32::MAX.into()),
        "long" => (i64::MIN.into(), i64::MAX.into()),
        "unsignedByte" => (0, u8::MAX.into()),
        "unsignedShort" => (0, u16::MAX.into()),
        "unsignedInt" => (0, u32::MAX.into()),
        "unsignedLong" => (0, u64::MAX.into()),
        _ => return None,
    };
    Some(range)
}

/// Why a value is not of an XSD datatype (`None`: it is, or the pattern decides).
fn datatype_violation(value: &Value, datatype: &str) -> Option<String> {
    if let Some((low, high)) = integral_range(datatype) {
        let whole = value
            .as_i64()
            .map(i128::from)
            .or_else(|| value.as_u64().map(i128::from));
        return match whole {
            Some(n) if (low..=high).contains(&n) => None,
            Some(_) => Some(format!(
                "{value} is outside the range of '{datatype}' ({low} to {high})"
            )),
            None => Some(format!(
                "{value} is not a whole number, as '{datatype}' requires"
            )),
        };
    }
    let finite = value.as_f64().filter(|x| x.is_finite());
    match datatype {
        "float" if finite.is_none_or(|x| x.abs() > f64::from(f32::MAX)) => {
            Some(format!("{value} is not a 'float'"))
        }
        "double" if finite.is_none() => Some(format!("{value} is not a 'double'")),
        _ => None,
    }
}

impl Parser<'_> {
    /// Why `value` is not an instance of the schema element (`None`: it is one). `name` is
    /// the member name when the value is a member of a JSON object.
    pub(crate) fn instance_violation(
        &self,
        value: &Value,
        name: Option<&str>,
        schema: Node<'_>,
        depth: usize,
    ) -> Option<String> {
        let elem = schema.elem();
        let instance = digest().class(&elem.class)?.instance.as_ref()?;
        let rule = instance.for_version(elem.version)?;
        if depth > MAX_DEPTH {
            return Some(format!("the value nests more than {MAX_DEPTH} levels deep"));
        }
        let criteria = &rule.element;
        let violation = self
            .criteria_violation(value, name, criteria, schema, depth)
            .map(|why| format!("{why} ({} {})", elem.id, instance.criteria_text));
        violation.or_else(|| self.children_violation(value, &rule.each_child, schema, depth))
    }

    /// The element-level criteria.
    fn criteria_violation(
        &self,
        value: &Value,
        name: Option<&str>,
        criteria: &InstanceCriteria,
        schema: Node<'_>,
        depth: usize,
    ) -> Option<String> {
        let elem = schema.elem();
        if let Some(json_type) = criteria.json_type.as_deref()
            && !json_type_matches(value, json_type)
        {
            return Some(format!("{value} is not a JSON {json_type}"));
        }
        if let Some(why) = criteria
            .datatype
            .as_deref()
            .and_then(|d| datatype_violation(value, d))
        {
            return Some(why);
        }
        if let Some(pattern) = criteria.pattern.as_deref() {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !matches(pattern, &text) {
                return Some(format!("{value} does not match {pattern}"));
            }
        }
        if let Some(prop) = criteria.has_value.as_deref()
            && elem.literal(prop) != Some(value)
        {
            return Some(format!("{value} is not the {prop} of {}", elem.id));
        }
        if let (Some(prop), Some(name)) = (criteria.name_has_value.as_deref(), name)
            && elem.str_prop(prop) != Some(name)
        {
            return Some(format!("member '{name}' is not the {prop} of {}", elem.id));
        }
        // The value conforms to one of the element's values of each instance property (the
        // one valueSchema, any one of the enumValues).
        for prop in &criteria.instance_property {
            let nodes = self.prop_nodes(schema, prop);
            let mut first = None;
            let fits = nodes.is_empty()
                || nodes.iter().any(|n| {
                    let why = self.instance_violation(value, name, *n, depth + 1);
                    let fits = why.is_none();
                    first = first.take().or(why);
                    fits
                });
            if !fits {
                return first;
            }
        }
        None
    }

    /// The criteria on each item of an array or member of an object.
    fn children_violation(
        &self,
        value: &Value,
        criteria: &InstanceCriteria,
        schema: Node<'_>,
        depth: usize,
    ) -> Option<String> {
        let children: Vec<(Option<&str>, &Value)> = match value {
            Value::Array(items) => items.iter().map(|v| (None, v)).collect(),
            Value::Object(members) => members.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
            _ => return None,
        };
        for (name, child) in children {
            let nested = InstanceCriteria {
                instance_property: criteria.instance_property.clone(),
                ..InstanceCriteria::default()
            };
            if let Some(why) = self.criteria_violation(child, name, &nested, schema, depth) {
                return Some(why);
            }
        }
        None
    }
}
