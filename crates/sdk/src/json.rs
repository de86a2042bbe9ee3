//! Decoding twin data the way the original Go SDK did: struct field names match JSON keys
//! case-insensitively (devices send `WindSpeed`, services read `windSpeed`), an exact match wins
//! over a case-insensitive one, and unknown keys are ignored.
//!
//! serde tells a deserializer which field names a struct expects (`deserialize_struct`), so the
//! wrapper below renames each incoming key to the expected spelling before the derived code sees
//! it, recursively through nested objects, arrays and options. Models stay plain
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
    T::deserialize(CaseInsensitive(value))
}

/// Decodes JSON bytes into `T`, matching struct field names case-insensitively.
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    from_json(serde_json::from_slice(bytes)?)
}

/// A JSON value whose objects adapt their keys to the struct being decoded.
struct CaseInsensitive(Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for CaseInsensitive {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// Renames the keys of `object` to the spelling in `fields` when they differ only in case.
fn align_keys(object: Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    let mut aligned = Map::with_capacity(object.len());
    for (key, value) in object {
        let exact = fields.contains(&key.as_str());
        let key = match fields
            .iter()
            .find(|f| !exact && f.eq_ignore_ascii_case(&key))
        {
            Some(field) => (*field).to_owned(),
            None => key,
        };
        // An exact spelling wins over a case-insensitive one, wherever it appears.
        if !exact && aligned.contains_key(&key) {
            continue;
        }
        aligned.insert(key, value);
    }
    aligned
}

fn visit_object<'de, V: Visitor<'de>>(
    object: Map<String, Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut map = MapDeserializer::new(
        object
            .into_iter()
            .map(|(key, value)| (key, CaseInsensitive(value))),
    );
    let result = visitor.visit_map(&mut map)?;
    map.end()?;
    Ok(result)
}

fn visit_array<'de, V: Visitor<'de>>(
    array: Vec<Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut seq = SeqDeserializer::new(array.into_iter().map(CaseInsensitive));
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

impl<'de> Deserializer<'de> for CaseInsensitive {
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
            Value::Object(object) => visit_object(align_keys(object, fields), visitor),
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
            other => visitor.visit_some(CaseInsensitive(other)),
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
    fn type_errors_name_the_problem() {
        let err = from_json::<Outer>(json!({"windSpeed": "fast"})).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        let err = from_json::<Inner>(json!({})).unwrap_err();
        assert!(err.to_string().contains("aqiLevel"), "{err}");
    }
}
