//! Whether a JSON value is an instance of a DTDL schema: a command's request payload is checked
//! before it becomes an event, so a twin service never receives what its model rules out, and
//! the sender learns which field is wrong, its value and what was expected.

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveTime};
use ktwin_dtdl::{Primitive, Schema};
use serde_json::Value;

/// A value that does not conform: where (`$.request.aqiLevel`), what was found, what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {found} is not {expected}")]
pub struct PayloadError {
    /// JSON path of the offending value, from `$` (the payload).
    pub path: String,
    /// The value found, abbreviated.
    pub found: String,
    /// What the schema expects there.
    pub expected: String,
}

/// Values shown in errors are cut to this many characters.
const SHOWN_CHARS: usize = 60;

/// Checks `value` against `schema`; the first non-conforming value is the error.
pub fn check(schema: &Schema, value: &Value) -> Result<(), PayloadError> {
    Checker {
        enclosing: Vec::new(),
    }
    .check(schema, value, "$")
}

/// The complex schemas around the one being checked, which a [`Schema::Ref`] names.
struct Checker<'s> {
    enclosing: Vec<&'s Schema>,
}

impl<'s> Checker<'s> {
    fn check(&mut self, schema: &'s Schema, value: &Value, path: &str) -> Result<(), PayloadError> {
        let fail = |expected: String| {
            Err(PayloadError {
                path: path.to_owned(),
                found: shown(value),
                expected,
            })
        };
        match schema {
            Schema::Primitive { primitive } => match primitive_problem(*primitive, value) {
                Some(expected) => fail(expected),
                None => Ok(()),
            },
            Schema::Enum { enum_values, .. } => {
                if enum_values.iter().any(|v| &v.enum_value == value) {
                    Ok(())
                } else {
                    let values: Vec<String> = enum_values
                        .iter()
                        .map(|v| v.enum_value.to_string())
                        .collect();
                    fail(format!("one of {}", values.join(", ")))
                }
            }
            Schema::Ref { id } => {
                let Some(target) = self.enclosing.iter().rev().find(|s| s.id() == Some(id)) else {
                    return fail(format!(
                        "checkable: it refers to {id}, not an enclosing schema"
                    ));
                };
                self.check(target, value, path)
            }
            complex => {
                self.enclosing.push(complex);
                let result = self.complex(complex, value, path);
                self.enclosing.pop();
                result
            }
        }
    }

    /// Arrays, maps and objects: the container, then each member.
    fn complex(
        &mut self,
        schema: &'s Schema,
        value: &Value,
        path: &str,
    ) -> Result<(), PayloadError> {
        let fail = |expected: String| {
            Err(PayloadError {
                path: path.to_owned(),
                found: shown(value),
                expected,
            })
        };
        match (schema, value) {
            (Schema::Array { element_schema, .. }, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(element_schema, item, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            (Schema::Map { map_value, .. }, Value::Object(entries)) => {
                for (key, item) in entries {
                    self.check(&map_value.schema, item, &member(path, key))?;
                }
                Ok(())
            }
            (Schema::Object { fields, .. }, Value::Object(entries)) => {
                for (key, item) in entries {
                    let Some(field) = fields.iter().find(|f| &f.name == key) else {
                        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                        return Err(PayloadError {
                            path: member(path, key),
                            found: "a field".to_owned(),
                            expected: format!("declared (the fields are {})", names.join(", ")),
                        });
                    };
                    self.check(&field.schema, item, &member(path, key))?;
                }
                Ok(())
            }
            (Schema::Array { .. }, _) => fail("an array".to_owned()),
            (Schema::Map { .. }, _) => fail("an object (a map)".to_owned()),
            (Schema::Object { .. }, _) => fail("an object".to_owned()),
            // Primitives, enums and references are handled by `check`.
            _ => Ok(()),
        }
    }
}

/// What `value` should have been when it is not an instance of `primitive`.
fn primitive_problem(primitive: Primitive, value: &Value) -> Option<String> {
    let term = primitive.term();
    let ok = match primitive {
        Primitive::Boolean => value.is_boolean(),
        Primitive::Double | Primitive::Float | Primitive::Decimal => value.is_number(),
        Primitive::Byte => in_range(value, i8::MIN.into(), i8::MAX.into()),
        Primitive::Short => in_range(value, i16::MIN.into(), i16::MAX.into()),
        Primitive::Integer => in_range(value, i32::MIN.into(), i32::MAX.into()),
        Primitive::Long => value.is_i64(),
        Primitive::UnsignedByte => in_range(value, 0, u8::MAX.into()),
        Primitive::UnsignedShort => in_range(value, 0, u16::MAX.into()),
        Primitive::UnsignedInteger => in_range(value, 0, u32::MAX.into()),
        Primitive::UnsignedLong => value.is_u64(),
        Primitive::String => value.is_string(),
        Primitive::Date => text_is(value, |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()),
        Primitive::Time => text_is(value, |s| s.parse::<NaiveTime>().is_ok()),
        Primitive::DateTime => text_is(value, |s| DateTime::parse_from_rfc3339(s).is_ok()),
        Primitive::Duration => text_is(value, is_iso8601_duration),
        Primitive::Uuid => text_is(value, |s| uuid::Uuid::try_parse(s).is_ok()),
        Primitive::Bytes => text_is(value, |s| {
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }),
    };
    if ok {
        return None;
    }
    Some(match primitive {
        Primitive::Boolean => "a boolean (true or false)".to_owned(),
        Primitive::Double | Primitive::Float | Primitive::Decimal => format!("a number ({term})"),
        Primitive::Byte
        | Primitive::Short
        | Primitive::Integer
        | Primitive::Long
        | Primitive::UnsignedByte
        | Primitive::UnsignedShort
        | Primitive::UnsignedInteger
        | Primitive::UnsignedLong => format!("a whole number in {term}'s range"),
        Primitive::String => "a string".to_owned(),
        Primitive::Date => "a date (a string, YYYY-MM-DD)".to_owned(),
        Primitive::Time => "a time (a string, hh:mm:ss)".to_owned(),
        Primitive::DateTime => "a date and time (a string, RFC 3339)".to_owned(),
        Primitive::Duration => "a duration (a string, ISO 8601, e.g. PT5M)".to_owned(),
        Primitive::Uuid => "a UUID (a string)".to_owned(),
        Primitive::Bytes => "bytes (a base64 string)".to_owned(),
    })
}

fn in_range(value: &Value, min: i64, max: i64) -> bool {
    value.as_i64().is_some_and(|n| (min..=max).contains(&n))
}

fn text_is(value: &Value, valid: impl Fn(&str) -> bool) -> bool {
    value.as_str().is_some_and(valid)
}

/// `P[nY][nM][nW][nD][T[nH][nM][n[.n]S]]` with at least one part, and a part after `T`.
fn is_iso8601_duration(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let date_ok = units_in_order(date, "YMWD", false);
    let time_ok = time.is_none_or(|t| !t.is_empty() && units_in_order(t, "HMS", true));
    date_ok && time_ok && !(date.is_empty() && time.is_none())
}

/// `text` is numbers each followed by one of `units`, in that order, each unit at most once;
/// only the last may have a fraction when `fraction_last` (seconds).
fn units_in_order(text: &str, units: &str, fraction_last: bool) -> bool {
    let mut allowed = units;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let Some(at) = allowed.find(c) else {
            return false;
        };
        let fraction_ok = !number.contains('.') || (fraction_last && c == 'S');
        if number.is_empty() || !fraction_ok || number.parse::<f64>().is_err() {
            return false;
        }
        allowed = &allowed[at + 1..];
        number.clear();
    }
    number.is_empty()
}

fn member(path: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_owned()))
    }
}

/// `value` as JSON, cut to [`SHOWN_CHARS`] characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= SHOWN_CHARS {
        return text;
    }
    let cut: String = text.chars().take(SHOWN_CHARS).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktwin_dtdl::{Annotations, EnumValue, NamedSchema};
    use serde_json::json;

    fn primitive(primitive: Primitive) -> Schema {
        Schema::Primitive { primitive }
    }

    fn named(name: &str, schema: Schema) -> NamedSchema {
        NamedSchema {
            name: name.into(),
            annotations: Annotations::default(),
            schema: Box::new(schema),
        }
    }

    fn object(id: &str, fields: Vec<NamedSchema>) -> Schema {
        Schema::Object {
            id: id.into(),
            annotations: Annotations::default(),
            fields,
        }
    }

    fn level() -> Schema {
        Schema::Enum {
            id: "dtmi:x:Level;1".into(),
            annotations: Annotations::default(),
            value_schema: Primitive::String,
            enum_values: ["GOOD", "HAZARDOUS"]
                .iter()
                .map(|v| EnumValue {
                    name: v.to_lowercase(),
                    annotations: Annotations::default(),
                    enum_value: json!(v),
                })
                .collect(),
        }
    }

    #[test]
    fn primitives_accept_their_values_only() {
        let cases = [
            (Primitive::Boolean, json!(true), json!("true")),
            (Primitive::Integer, json!(-5), json!(1.5)),
            (Primitive::Integer, json!(2147483647), json!(2147483648_i64)),
            (Primitive::UnsignedByte, json!(255), json!(-1)),
            (Primitive::Double, json!(1.5), json!("1.5")),
            (Primitive::String, json!("a"), json!(1)),
            (Primitive::Date, json!("2026-12-04"), json!("2026-13-04")),
            (Primitive::Time, json!("23:59:01.5"), json!("25:00:00")),
            (
                Primitive::DateTime,
                json!("2026-12-04T10:00:00Z"),
                json!("2026-12-04 10:00"),
            ),
            (Primitive::Duration, json!("P1DT2H30.5S"), json!("PT")),
            (Primitive::Duration, json!("PT5M"), json!("P5M1Y")),
            (
                Primitive::Uuid,
                json!("67e55044-10b1-426f-9247-bb680e5fe0c8"),
                json!("67e5"),
            ),
            (Primitive::Bytes, json!("aGk="), json!("a?")),
        ];
        for (p, good, bad) in cases {
            assert_eq!(check(&primitive(p), &good), Ok(()), "{p:?} {good}");
            let err = check(&primitive(p), &bad).unwrap_err();
            assert_eq!(err.path, "$");
            assert_eq!(err.found, bad.to_string());
            assert!(err.expected.contains(p.term()) || !err.expected.is_empty());
        }
    }

    #[test]
    fn objects_name_the_wrong_field_with_its_value_and_expectation() {
        let schema = object(
            "dtmi:x:Request;1",
            vec![
                named("aqiLevel", level()),
                named("count", primitive(Primitive::Integer)),
            ],
        );
        assert_eq!(check(&schema, &json!({"aqiLevel": "GOOD"})), Ok(()));
        let err = check(&schema, &json!({"aqiLevel": "BAD", "count": 1})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$.aqiLevel: \"BAD\" is not one of \"GOOD\", \"HAZARDOUS\""
        );
        let err = check(&schema, &json!({"count": "1"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$.count: \"1\" is not a whole number in integer's range"
        );
        let err = check(&schema, &json!({"colour": 1})).unwrap_err();
        assert_eq!(err.path, "$.colour");
        assert!(err.expected.contains("aqiLevel, count"), "{err}");
        let err = check(&schema, &json!([1])).unwrap_err();
        assert_eq!(err.to_string(), "$: [1] is not an object");
    }

    #[test]
    fn arrays_maps_and_references_check_every_member() {
        let map = Schema::Map {
            id: "dtmi:x:Map;1".into(),
            annotations: Annotations::default(),
            map_key: named("key", primitive(Primitive::String)),
            map_value: named("value", primitive(Primitive::Double)),
        };
        let array = Schema::Array {
            id: "dtmi:x:Array;1".into(),
            annotations: Annotations::default(),
            element_schema: Box::new(map),
        };
        assert_eq!(check(&array, &json!([{"a": 1}, {}])), Ok(()));
        let err = check(&array, &json!([{"a": 1}, {"b c": "x"}])).unwrap_err();
        assert_eq!(err.path, "$[1][\"b c\"]");
        // A tree: an object whose `children` are the object itself.
        let tree = object(
            "dtmi:x:Tree;1",
            vec![
                named("label", primitive(Primitive::String)),
                named(
                    "children",
                    Schema::Array {
                        id: "dtmi:x:Children;1".into(),
                        annotations: Annotations::default(),
                        element_schema: Box::new(Schema::Ref {
                            id: "dtmi:x:Tree;1".into(),
                        }),
                    },
                ),
            ],
        );
        let value = json!({"label": "a", "children": [{"label": "b", "children": [{"label": 3}]}]});
        let err = check(&tree, &value).unwrap_err();
        assert_eq!(err.path, "$.children[0].children[0].label");
    }

    #[test]
    fn long_values_are_abbreviated() {
        let err = check(&primitive(Primitive::Integer), &json!("x".repeat(500))).unwrap_err();
        assert!(
            err.found.chars().count() <= SHOWN_CHARS + 1,
            "{}",
            err.found
        );
        assert!(err.found.ends_with('…'));
    }
}
