//! Decoding twin data the way the original Go SDK did: struct field names match JSON keys
//! case-insensitively (devices send `WindSpeed`, services read `windSpeed`), an exact match wins
//! over a case-insensitive one, and unknown keys are ignored.
//!
//! serde tells a deserializer which field names a struct expects (`deserialize_struct`), so the
//! wrapper below hands each incoming key to the derived code in the expected spelling,
//! recursively through nested objects, arrays and options. It reads the JSON value in place:
//! a handler decoding an event's data copies only what its model keeps. Models stay plain
//! `#[derive(Deserialize)]` structs.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

/// Decodes `value` into `T`, matching struct field names case-insensitively.
///
/// ```
/// #[derive(serde::Deserialize)]
/// #[serde(rename_all = "camelCase")]
/// struct Weather { wind_speed: Option<f64>, temperature: f64 }
///
/// let w: Weather = ktwin_sdk::from_json(serde_json::json!(
///     {"WindSpeed": 3.5, "TEMPERATURE": 20.0, "unknown": true}
/// )).unwrap();
/// assert_eq!(w.wind_speed, Some(3.5));
/// assert_eq!(w.temperature, 20.0);
/// ```
pub fn from_json<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    from_json_value(&value)
}

/// Decodes JSON bytes into `T`, matching struct field names case-insensitively.
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    from_json_value(&serde_json::from_slice(bytes)?)
}

/// Decodes a borrowed `value` into `T` as [`from_json`] does, without copying the value first.
pub(crate) fn from_json_value<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(CaseInsensitive(value))
}

/// A JSON value whose objects adapt their keys to the struct being decoded.
struct CaseInsensitive<'de>(&'de Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for CaseInsensitive<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// The entries of `object` with each key in the spelling of `fields` when it differs only in
/// case. An exact spelling wins over a case-insensitive one wherever it appears, and of two
/// case-insensitive spellings of one field the first wins.
fn aligned_entries<'de>(
    object: &'de Map<String, Value>,
    fields: &'static [&'static str],
) -> impl Iterator<Item = (&'de str, CaseInsensitive<'de>)> {
    let mut aligned: Vec<&'static str> = Vec::new();
    object.iter().filter_map(move |(key, value)| {
        let key = key.as_str();
        if fields.contains(&key) {
            return Some((key, CaseInsensitive(value)));
        }
        let Some(field) = fields.iter().find(|f| f.eq_ignore_ascii_case(key)) else {
            return Some((key, CaseInsensitive(value)));
        };
        if object.contains_key(*field) || aligned.contains(field) {
            return None;
        }
        aligned.push(field);
        Some((*field, CaseInsensitive(value)))
    })
}

fn visit_entries<'de, V: Visitor<'de>>(
    entries: impl Iterator<Item = (&'de str, CaseInsensitive<'de>)>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut map = MapDeserializer::new(entries);
    let result = visitor.visit_map(&mut map)?;
    map.end()?;
    Ok(result)
}

fn visit_object<'de, V: Visitor<'de>>(
    object: &'de Map<String, Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    visit_entries(
        object
            .iter()
            .map(|(key, value)| (key.as_str(), CaseInsensitive(value))),
        visitor,
    )
}

fn visit_array<'de, V: Visitor<'de>>(
    array: &'de [Value],
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut seq = SeqDeserializer::new(array.iter().map(CaseInsensitive));
    let result = visitor.visit_seq(&mut seq)?;
    seq.end()?;
    Ok(result)
}

macro_rules! forward_to_value {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for CaseInsensitive<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(object) => visit_object(object, visitor),
            Value::Array(array) => visit_array(array, visitor),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(object) => visit_entries(aligned_entries(object, fields), visitor),
            Value::Array(array) => visit_array(array, visitor),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(object) => visit_object(object, visitor),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(array) => visit_array(array, visitor),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    forward_to_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        aqi_level: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Outer {
        wind_speed: Option<f64>,
        #[serde(rename = "CODensity")]
        co_density: Option<f64>,
        #[serde(default)]
        nested: Vec<Inner>,
        by_name: Option<std::collections::BTreeMap<String, Inner>>,
        inner: Option<Inner>,
    }

    #[test]
    fn keys_match_in_any_case_recursively() {
        let outer: Outer = from_json(json!({
            "WINDSPEED": 2.0,
            "coDensity": 1.5,
            "Nested": [{"AqiLevel": "GOOD"}],
            "byname": {"Pole-1": {"aqilevel": "MODERATE"}},
            "INNER": {"aqiLevel": "HAZARDOUS", "extra": 1},
            "ignored": {"a": 1}
        }))
        .unwrap();
        assert_eq!(outer.wind_speed, Some(2.0));
        assert_eq!(outer.co_density, Some(1.5));
        assert_eq!(
            outer.nested,
            vec![Inner {
                aqi_level: "GOOD".into()
            }]
        );
        // Map keys are data, not field names: they keep their spelling.
        let by_name = outer.by_name.unwrap();
        assert_eq!(by_name["Pole-1"].aqi_level, "MODERATE");
        assert_eq!(outer.inner.unwrap().aqi_level, "HAZARDOUS");
    }

    #[test]
    fn exact_spelling_wins_over_case_insensitive_match() {
        for doc in [
            json!({"windSpeed": 1.0, "WindSpeed": 9.0}),
            json!({"WindSpeed": 9.0, "windSpeed": 1.0}),
        ] {
            let outer: Outer = from_json(doc).unwrap();
            assert_eq!(outer.wind_speed, Some(1.0));
        }
    }

    #[test]
    fn of_two_case_insensitive_spellings_the_first_wins() {
        for (doc, expected) in [
            (json!({"WINDSPEED": 2.0, "WindSpeed": 9.0}), 2.0),
            (json!({"WindSpeed": 9.0, "WINDSPEED": 2.0}), 9.0),
        ] {
            let outer: Outer = from_json(doc).unwrap();
            assert_eq!(outer.wind_speed, Some(expected));
        }
    }

    #[test]
    fn a_borrowed_value_decodes_as_an_owned_one_and_is_left_as_it_was() {
        let doc = json!({"WINDSPEED": 2.0, "Nested": [{"AqiLevel": "GOOD"}], "extra": [1, 2]});
        let borrowed: Outer = from_json_value(&doc).unwrap();
        assert_eq!(borrowed, from_json::<Outer>(doc.clone()).unwrap());
        assert_eq!(doc["WINDSPEED"], json!(2.0));
    }

    #[test]
    fn type_errors_name_the_problem() {
        let err = from_json::<Outer>(json!({"windSpeed": "fast"})).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        let err = from_json::<Inner>(json!({})).unwrap_err();
        assert!(err.to_string().contains("aqiLevel"), "{err}");
    }
}
