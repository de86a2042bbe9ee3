//! Building ktwin CloudEvents with the attributes every component relies on.

use chrono::{DateTime, Utc};
use cloudevents::{Event, EventBuilder as _, EventBuilderV10};

use crate::event_type::EventType;
use crate::name::{GrammarError, validate_name};

/// CloudEvents spec version ktwin produces.
pub const SPEC_VERSION: &str = "1.0";
/// The content type of every ktwin event's data.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Builds a ktwin CloudEvent: `type` from the grammar, `source` = the twin instance, a UUIDv7
/// `id` (time-ordered, so ids of one producer sort like their creation), `time` now unless set,
/// and JSON data.
///
/// ```
/// use ktwin_events::{EventBuilder, EventType};
/// use cloudevents::AttributesReader;
///
/// let ty = EventType::store("city-pole").unwrap();
/// let event = EventBuilder::new(ty, "pole-1").unwrap()
///     .data(serde_json::json!({"aqi": 42}))
///     .build();
/// assert_eq!(event.ty(), "ktwin.store.city-pole");
/// assert_eq!(event.source().as_str(), "pole-1");
/// ```
#[derive(Debug, Clone)]
pub struct EventBuilder {
    event_type: EventType,
    instance: String,
    id: Option<String>,
    time: Option<DateTime<Utc>>,
    data: Option<serde_json::Value>,
}

impl EventBuilder {
    /// Starts an event of `event_type` whose `source` is `instance`.
    pub fn new(event_type: EventType, instance: &str) -> Result<Self, GrammarError> {
        validate_name("instance", instance)?;
        Ok(Self {
            event_type,
            instance: instance.to_owned(),
            id: None,
            time: None,
            data: None,
        })
    }

    /// Uses a given id instead of a fresh UUIDv7 (for replays that must stay idempotent).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Uses a given event time instead of now.
    pub fn time(mut self, time: DateTime<Utc>) -> Self {
        self.time = Some(time);
        self
    }

    /// Sets the JSON data.
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The finished event.
    pub fn build(self) -> Event {
        let mut builder = EventBuilderV10::new()
            .id(self.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()))
            .ty(self.event_type.to_string())
            .source(self.instance)
            .time(self.time.unwrap_or_else(Utc::now));
        if let Some(data) = self.data {
            builder = builder.data(JSON_CONTENT_TYPE, data);
        }
        builder
            .build()
            .expect("id, type, source and spec version are always set")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::AttributesReader;

    #[test]
    fn sets_every_attribute() {
        let ty = EventType::real("city-pole").unwrap();
        let event = EventBuilder::new(ty, "pole-1")
            .unwrap()
            .data(serde_json::json!({"a": 1}))
            .build();
        assert_eq!(event.ty(), "ktwin.real.city-pole");
        assert_eq!(event.source().as_str(), "pole-1");
        assert_eq!(event.datacontenttype(), Some(JSON_CONTENT_TYPE));
        assert_eq!(event.specversion().as_str(), SPEC_VERSION);
        let id = uuid::Uuid::parse_str(event.id()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert!(event.time().is_some());
    }

    #[test]
    fn explicit_id_and_time_are_kept() {
        let time = DateTime::parse_from_rfc3339("2024-05-20T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let event = EventBuilder::new(EventType::store("x").unwrap(), "y")
            .unwrap()
            .id("id-1")
            .time(time)
            .build();
        assert_eq!(event.id(), "id-1");
        assert_eq!(event.time(), Some(&time));
        assert!(event.data().is_none());
    }

    #[test]
    fn rejects_bad_instances() {
        assert!(EventBuilder::new(EventType::store("x").unwrap(), "a.b").is_err());
    }
}
