//! Where dead letters go to be kept: a [`DeadLetterSink`] takes a [`NewDeadLetter`] (why, from
//! where, the original payload and headers) and returns once it is kept, so that the message it
//! stands for may then be acknowledged. The event store keeps them durably; the in-memory broker
//! and the dispatchers hand theirs to a sink when they have one.

use async_trait::async_trait;
use chrono::SecondsFormat;
use cloudevents::event::{Data, ExtensionValue};
use cloudevents::{AttributesReader, Event};

use crate::BrokerError;

/// A dead letter about to be kept: the original message as it would go over HTTP in binary
/// mode (headers, body), with why it was given up on and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// Who gave up on it: a subscription name, or the ingress that refused a device message.
    pub origin: String,
    /// Why, naming the offending value.
    pub reason: String,
    /// The original headers: `ce-*` attributes and `content-type` for a CloudEvent, the topic
    /// and rejection kind for a device message.
    pub headers: Vec<(String, String)>,
    /// The original payload, byte for byte.
    pub payload: Vec<u8>,
}

/// HTTP binary-mode header of CloudEvent attribute `name`.
fn binary_header(name: &str) -> String {
    match name {
        "datacontenttype" => "content-type".to_owned(),
        name => format!("ce-{name}"),
    }
}

impl NewDeadLetter {
    /// The dead letter of `event`: its attributes as binary-mode headers (`ce-id`, `ce-type`,
    /// …, `content-type`), its data as the payload.
    pub fn of_event(origin: impl Into<String>, reason: impl Into<String>, event: &Event) -> Self {
        let mut headers = vec![
            ("ce-specversion".to_owned(), event.specversion().to_string()),
            ("ce-id".to_owned(), event.id().to_owned()),
            ("ce-type".to_owned(), event.ty().to_owned()),
            ("ce-source".to_owned(), event.source().to_string()),
        ];
        if let Some(time) = event.time() {
            let time = time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            headers.push(("ce-time".to_owned(), time));
        }
        if let Some(subject) = event.subject() {
            headers.push(("ce-subject".to_owned(), subject.to_owned()));
        }
        if let Some(schema) = event.dataschema() {
            headers.push(("ce-dataschema".to_owned(), schema.to_string()));
        }
        if let Some(content_type) = event.datacontenttype() {
            headers.push((binary_header("datacontenttype"), content_type.to_owned()));
        }
        for (name, value) in event.iter_extensions() {
            let value = match value {
                ExtensionValue::String(s) => s.clone(),
                ExtensionValue::Boolean(b) => b.to_string(),
                ExtensionValue::Integer(i) => i.to_string(),
            };
            headers.push((binary_header(name), value));
        }
        let payload = match event.data() {
            None => Vec::new(),
            Some(Data::Binary(bytes)) => bytes.clone(),
            Some(Data::String(text)) => text.as_bytes().to_vec(),
            Some(Data::Json(value)) => value.to_string().into_bytes(),
        };
        Self {
            origin: origin.into(),
            reason: reason.into(),
            headers,
            payload,
        }
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Bytes it takes: payload, headers, origin and reason (what byte bounds count).
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        self.payload.len() + headers + self.origin.len() + self.reason.len()
    }
}

/// Keeps dead letters. `put` returns once the letter is kept as durably as the sink promises,
/// so the message it stands for may be acknowledged; an error means it was not kept and the
/// message must stay with its source.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Keeps one dead letter.
    async fn put(&self, letter: NewDeadLetter) -> Result<(), BrokerError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn an_event_becomes_binary_mode_headers_and_its_data() {
        let event = EventBuilderV10::new()
            .id("e-1")
            .ty("ktwin.real.city-pole")
            .source("pole-1")
            .extension("traceparent", "00-a-b-01")
            .data("application/json", serde_json::json!({"level": 3}))
            .build()
            .unwrap();
        let letter = NewDeadLetter::of_event("store", "not a twin event", &event);
        assert_eq!(letter.header("ce-id"), Some("e-1"));
        assert_eq!(letter.header("CE-TYPE"), Some("ktwin.real.city-pole"));
        assert_eq!(letter.header("content-type"), Some("application/json"));
        assert_eq!(letter.header("ce-traceparent"), Some("00-a-b-01"));
        assert_eq!(letter.payload, br#"{"level":3}"#);
        assert!(letter.size() > letter.payload.len() + letter.reason.len());
    }
}
