//! CloudEvents ↔ AMQP messages in the Knative RabbitMQ broker format (eventing-rabbitmq
//! `CloudEventToRabbitMQMessage`): body = data, unprefixed attribute headers, `message_id` = id,
//! persistent delivery. Pure functions, no I/O.

use chrono::SecondsFormat;
use cloudevents::event::{Data, ExtensionValue};
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::BrokerError;

/// Header carrying why a message was dead-lettered.
pub const DEAD_LETTER_REASON_HEADER: &str = "x-ktwin-dead-letter-reason";
/// AMQP delivery mode 2: the message survives a broker restart.
const PERSISTENT: u8 = 2;
/// Attributes carried in headers of their own name; every other valid name is an extension.
const ATTRIBUTE_HEADERS: [&str; 8] = [
    "specversion",
    "id",
    "type",
    "source",
    "time",
    "subject",
    "dataschema",
    "content-type",
];

/// Why an AMQP message is not a CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A required attribute header is absent (or not a string).
    #[error("missing CloudEvent header {0:?}")]
    Missing(&'static str),
    /// An attribute header has an unusable value.
    #[error("invalid CloudEvent header {header:?} = {value:?}: {reason}")]
    Invalid {
        /// The header.
        header: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

/// The string value of header `name`, if it is a (short or long) UTF-8 string.
pub fn header_string(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn long(s: impl Into<LongString>) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Encodes `event` as a Knative-RabbitMQ-broker message: properties (headers, message id,
/// content type, persistent) and body.
pub fn event_to_amqp(event: &Event) -> Result<(BasicProperties, Vec<u8>), BrokerError> {
    let mut headers = FieldTable::default();
    headers.insert("specversion".into(), long(event.specversion().as_str()));
    headers.insert("id".into(), long(event.id()));
    headers.insert("type".into(), long(event.ty()));
    headers.insert("source".into(), long(event.source().as_str()));
    if let Some(time) = event.time() {
        headers.insert(
            "time".into(),
            long(time.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        );
    }
    if let Some(subject) = event.subject() {
        headers.insert("subject".into(), long(subject));
    }
    if let Some(schema) = event.dataschema() {
        headers.insert("dataschema".into(), long(schema.as_str()));
    }
    if let Some(content_type) = event.datacontenttype() {
        headers.insert("content-type".into(), long(content_type));
    }
    for (name, value) in event.iter_extensions() {
        let value = match value {
            ExtensionValue::String(s) => long(s.as_str()),
            ExtensionValue::Boolean(b) => AMQPValue::Boolean(*b),
            ExtensionValue::Integer(i) => AMQPValue::LongLongInt(*i),
        };
        headers.insert(name.into(), value);
    }
    let body = match event.data() {
        None => Vec::new(),
        Some(Data::Binary(bytes)) => bytes.clone(),
        Some(Data::String(s)) => s.as_bytes().to_vec(),
        Some(Data::Json(value)) => serde_json::to_vec(value).map_err(|e| BrokerError::Encode {
            id: event.id().to_owned(),
            reason: e.to_string(),
        })?,
    };
    let message_id = ShortString::try_new(event.id()).map_err(|e| BrokerError::Encode {
        id: event.id().to_owned(),
        reason: format!("id does not fit an AMQP message_id: {e}"),
    })?;
    let mut properties = BasicProperties::default()
        .with_headers(headers)
        .with_message_id(message_id)
        .with_delivery_mode(PERSISTENT);
    if let Some(content_type) = event.datacontenttype()
        && let Ok(content_type) = ShortString::try_new(content_type)
    {
        properties = properties.with_content_type(content_type);
    }
    Ok((properties, body))
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// A CloudEvent extension name: lower-case letters and digits (CloudEvents spec), which also
/// excludes RabbitMQ's own `x-…` headers.
fn is_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The CloudEvent extension value of a header: strings (non-empty UTF-8), booleans and
/// integers; `None` for other AMQP types.
fn extension_value(value: &AMQPValue) -> Option<ExtensionValue> {
    Some(match value {
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok("") | Err(_) => return None,
            Ok(s) => ExtensionValue::String(s.to_owned()),
        },
        AMQPValue::ShortString(s) if !s.as_str().is_empty() => {
            ExtensionValue::String(s.as_str().to_owned())
        }
        AMQPValue::Boolean(b) => ExtensionValue::Boolean(*b),
        AMQPValue::ShortShortInt(i) => ExtensionValue::Integer((*i).into()),
        AMQPValue::ShortShortUInt(i) => ExtensionValue::Integer((*i).into()),
        AMQPValue::ShortInt(i) => ExtensionValue::Integer((*i).into()),
        AMQPValue::ShortUInt(i) => ExtensionValue::Integer((*i).into()),
        AMQPValue::LongInt(i) => ExtensionValue::Integer((*i).into()),
        AMQPValue::LongUInt(i) => ExtensionValue::Integer((*i).into()),
        AMQPValue::LongLongInt(i) => ExtensionValue::Integer(*i),
        _ => return None,
    })
}

/// Decodes a Knative-RabbitMQ-broker message into a CloudEvent. `id` falls back to the
/// `message_id` property and the content type to the `content_type` property; JSON data is
/// parsed (kept as bytes if it does not parse).
pub fn event_from_amqp(properties: &BasicProperties, body: &[u8]) -> Result<Event, DecodeError> {
    let empty = FieldTable::default();
    let headers = properties.headers().as_ref().unwrap_or(&empty);
    let get = |name| header_string(headers, name).filter(|v| !v.is_empty());
    if let Some(version) = get("specversion")
        && version != "1.0"
    {
        return Err(DecodeError::Invalid {
            header: "specversion",
            value: version,
            reason: "only CloudEvents 1.0 is supported",
        });
    }
    let id = get("id")
        .or_else(|| {
            properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str().to_owned())
        })
        .filter(|v| !v.is_empty())
        .ok_or(DecodeError::Missing("id"))?;
    let ty = get("type").ok_or(DecodeError::Missing("type"))?;
    let source = get("source").ok_or(DecodeError::Missing("source"))?;
    let mut builder = EventBuilderV10::new().id(id).ty(ty).source(source);
    if let Some(time) = get("time") {
        let parsed =
            chrono::DateTime::parse_from_rfc3339(&time).map_err(|_| DecodeError::Invalid {
                header: "time",
                value: time.clone(),
                reason: "expected an RFC 3339 timestamp",
            })?;
        builder = builder.time(parsed.with_timezone(&chrono::Utc));
    }
    if let Some(subject) = get("subject") {
        builder = builder.subject(subject);
    }
    for (name, value) in headers.inner() {
        let name = name.as_str();
        if ATTRIBUTE_HEADERS.contains(&name) || !is_extension_name(name) {
            continue;
        }
        if let Some(value) = extension_value(value) {
            builder = builder.extension(name, value);
        }
    }
    let content_type = get("content-type").or_else(|| {
        properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_owned())
    });
    if !body.is_empty() || content_type.is_some() {
        let content_type = content_type.unwrap_or_else(|| "application/octet-stream".into());
        let data = if is_json(&content_type) {
            serde_json::from_slice(body)
                .map(Data::Json)
                .unwrap_or_else(|_| Data::Binary(body.to_vec()))
        } else {
            Data::Binary(body.to_vec())
        };
        builder = match get("dataschema") {
            Some(schema) => builder.data_with_schema(content_type, schema, data),
            None => builder.data(content_type, data),
        };
    }
    builder.build().map_err(|e| DecodeError::Invalid {
        header: "source",
        value: e.to_string(),
        reason: "not a valid CloudEvent (check source and dataschema)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::event::Data;

    fn sample() -> Event {
        EventBuilderV10::new()
            .id("0190a0a0-0000-7000-8000-000000000001")
            .ty("ktwin.real.city-pole")
            .source("pole-1")
            .time(
                chrono::DateTime::parse_from_rfc3339("2024-05-20T10:00:00.123Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc),
            )
            .subject("s")
            .extension("traceparent", "00-abc-def-01")
            .extension("count", 3i64)
            .data("application/json", serde_json::json!({"b": 1, "a": [1, 2]}))
            .build()
            .unwrap()
    }

    #[test]
    fn encodes_the_knative_format() {
        let (props, body) = event_to_amqp(&sample()).unwrap();
        let headers = props.headers().as_ref().unwrap();
        assert_eq!(
            header_string(headers, "type").unwrap(),
            "ktwin.real.city-pole"
        );
        assert_eq!(header_string(headers, "source").unwrap(), "pole-1");
        assert_eq!(header_string(headers, "specversion").unwrap(), "1.0");
        assert_eq!(
            header_string(headers, "content-type").unwrap(),
            "application/json"
        );
        assert_eq!(
            header_string(headers, "time").unwrap(),
            "2024-05-20T10:00:00.123Z"
        );
        assert_eq!(
            header_string(headers, "traceparent").unwrap(),
            "00-abc-def-01"
        );
        assert_eq!(
            props.message_id().as_ref().unwrap().as_str(),
            "0190a0a0-0000-7000-8000-000000000001"
        );
        assert_eq!(*props.delivery_mode(), Some(2));
        assert_eq!(body, br#"{"b":1,"a":[1,2]}"#);
    }

    #[test]
    fn round_trips() {
        let event = sample();
        let (props, body) = event_to_amqp(&event).unwrap();
        let decoded = event_from_amqp(&props, &body).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn rabbitmq_headers_are_not_extensions_and_binary_data_stays_binary() {
        let mut headers = FieldTable::default();
        headers.insert("id".into(), long("1"));
        headers.insert("type".into(), long("t"));
        headers.insert("source".into(), long("s"));
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        headers.insert("x-mqtt-dup".into(), AMQPValue::Boolean(false));
        let props = BasicProperties::default()
            .with_headers(headers)
            .with_content_type("application/octet-stream".into());
        let event = event_from_amqp(&props, b"\x00\x01").unwrap();
        assert_eq!(event.iter_extensions().count(), 0);
        assert_eq!(event.data(), Some(&Data::Binary(vec![0, 1])));
    }

    #[test]
    fn message_id_stands_in_for_a_missing_id_header() {
        let mut headers = FieldTable::default();
        headers.insert("type".into(), long("t"));
        headers.insert("source".into(), long("s"));
        let props = BasicProperties::default()
            .with_headers(headers)
            .with_message_id("m-1".into());
        let event = event_from_amqp(&props, b"").unwrap();
        assert_eq!(event.id(), "m-1");
        assert!(event.data().is_none());
    }

    #[test]
    fn rejects_non_cloudevents_naming_the_header() {
        let props = BasicProperties::default();
        assert_eq!(
            event_from_amqp(&props, b"{}"),
            Err(DecodeError::Missing("id"))
        );
        let mut headers = FieldTable::default();
        headers.insert("id".into(), long("1"));
        headers.insert("type".into(), long("t"));
        headers.insert("source".into(), long("s"));
        headers.insert("time".into(), long("yesterday"));
        let err =
            event_from_amqp(&BasicProperties::default().with_headers(headers), b"").unwrap_err();
        assert!(err.to_string().contains("\"time\""), "{err}");
    }
}
