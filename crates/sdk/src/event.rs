//! The event a twin service receives: a CloudEvent with its ktwin type already parsed.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Data, Event};
use ktwin_events::{EventKind, EventType};
use serde::de::DeserializeOwned;

use crate::error::HandlerError;
use crate::json::from_json_value;

/// A received ktwin event: kind, interface and command come from the CloudEvent `type`
/// (`ktwin.<kind>.<interface>[.<command>]`), the instance from its `source`.
///
/// For command events the `source` is normally the **target** instance, the instance that must
/// execute the command (the original Go SDK's convention, the one the deployed bindings use).
/// The original Python services sent commands with the **sender** as `source`; [`dispatch`]
/// recognises those through the twin graph and resolves the target (see
/// [`TwinEvent::sender`]).
///
/// [`dispatch`]: crate::dispatch
#[derive(Debug, Clone)]
pub struct TwinEvent {
    /// Shared with the delivery that settles it after the handler: not copied to be handled.
    event: Arc<Event>,
    event_type: EventType,
    /// The executing instance of a command whose `source` is its sender.
    target: Option<String>,
}

impl TwinEvent {
    /// Parses the ktwin type of `event`; a type outside the grammar or an empty source is
    /// [`HandlerError::Invalid`].
    pub fn new(event: impl Into<Arc<Event>>) -> Result<Self, HandlerError> {
        let event = event.into();
        let event_type: EventType = event
            .ty()
            .parse()
            .map_err(|err| HandlerError::Invalid(format!("event {}: {err}", event.id())))?;
        let instance = event.source().as_str();
        ktwin_events::validate_name("instance", instance).map_err(|err| {
            HandlerError::Invalid(format!("event {} (ce-source): {err}", event.id()))
        })?;
        Ok(Self {
            event,
            event_type,
            target: None,
        })
    }

    /// This command as executed by `target`, its `source` being the sender (the original
    /// Python convention).
    pub(crate) fn sent_to(mut self, target: String) -> Self {
        self.target = Some(target);
        self
    }

    /// The parsed type.
    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }

    /// Real, virtual, store or command.
    pub fn kind(&self) -> EventKind {
        self.event_type.kind()
    }

    /// The twin interface of the type.
    pub fn interface(&self) -> &str {
        self.event_type.interface()
    }

    /// The twin instance (CloudEvent `source`); for commands, the instance that executes it,
    /// also when the `source` is the sender (see [`TwinEvent::sender`]).
    pub fn instance(&self) -> &str {
        self.target
            .as_deref()
            .unwrap_or_else(|| self.event.source().as_str())
    }

    /// The instance that sent this command, when its `source` names the sender rather than the
    /// target (the original Python services' convention; the target, [`TwinEvent::instance`],
    /// was resolved through the sender's relationship in the twin graph). `None` for events
    /// whose `source` is the instance itself.
    pub fn sender(&self) -> Option<&str> {
        self.target.as_ref().map(|_| self.event.source().as_str())
    }

    /// The lower-case command name of a command event.
    pub fn command(&self) -> Option<&str> {
        self.event_type.command_name()
    }

    /// The CloudEvent id.
    pub fn id(&self) -> &str {
        self.event.id()
    }

    /// The CloudEvent time, if the producer set one.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.event.time().copied()
    }

    /// The underlying CloudEvent.
    pub fn cloud_event(&self) -> &Event {
        &self.event
    }

    /// The data as a JSON value (`Null` when the event has none).
    pub fn json(&self) -> Result<serde_json::Value, HandlerError> {
        data_json(&self.event)
            .map_err(|err| HandlerError::Invalid(format!("event {}: {err}", self.id())))
    }

    /// The data decoded into a model, keys matched case-insensitively, unknown keys ignored.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        decode_data(&self.event).map_err(|err| {
            HandlerError::Invalid(format!(
                "event {} ({}): data is not a valid {}: {err}",
                self.id(),
                self.event_type,
                std::any::type_name::<T>()
            ))
        })
    }
}

/// The JSON data of a CloudEvent (`Null` when absent).
pub(crate) fn data_json(event: &Event) -> Result<serde_json::Value, serde_json::Error> {
    match event.data() {
        None => Ok(serde_json::Value::Null),
        Some(Data::Json(value)) => Ok(value.clone()),
        Some(Data::Binary(bytes)) => serde_json::from_slice(bytes),
        Some(Data::String(text)) => serde_json::from_str(text),
    }
}

/// Decodes the data of any CloudEvent into a model (case-insensitive keys).
pub(crate) fn decode_data<T: DeserializeOwned>(event: &Event) -> Result<T, serde_json::Error> {
    match event.data() {
        // Read in place; other data is parsed into a value first.
        Some(Data::Json(value)) => from_json_value(value),
        _ => from_json_value(&data_json(event)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder as _, EventBuilderV10};

    fn event(ty: &str, source: &str, data: &[u8]) -> Event {
        EventBuilderV10::new()
            .id("e-1")
            .ty(ty)
            .source(source)
            .data("application/json", data.to_vec())
            .build()
            .unwrap()
    }

    #[test]
    fn parses_type_and_source() {
        let ev = TwinEvent::new(event(
            "ktwin.command.city-pole.UpdateAirQualityIndex",
            "city-pole-nb001-p00007",
            br#"{"AQILevel":"GOOD"}"#,
        ))
        .unwrap();
        assert_eq!(ev.kind(), EventKind::Command);
        assert_eq!(ev.interface(), "city-pole");
        assert_eq!(ev.command(), Some("updateairqualityindex"));
        assert_eq!(ev.instance(), "city-pole-nb001-p00007");

        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Cmd {
            aqi_level: String,
        }
        assert_eq!(ev.data::<Cmd>().unwrap().aqi_level, "GOOD");
    }

    #[test]
    fn malformed_types_are_invalid_not_panics() {
        for ty in [
            "ktwin.real",
            "ktwin",
            "ktwin.command.city-pole",
            "other.real.x",
        ] {
            let err = TwinEvent::new(event(ty, "x", b"{}")).unwrap_err();
            assert!(matches!(err, HandlerError::Invalid(_)), "{ty}: {err}");
        }
        let err = TwinEvent::new(event("ktwin.real.a", "a.b", b"{}")).unwrap_err();
        assert!(err.to_string().contains("ce-source"), "{err}");
    }

    #[test]
    fn bad_data_names_the_event_and_model() {
        let ev = TwinEvent::new(event("ktwin.real.a", "x", b"not json")).unwrap();
        let err = ev
            .data::<serde_json::Map<String, serde_json::Value>>()
            .unwrap_err();
        assert!(err.to_string().contains("e-1"), "{err}");
        assert!(ev.json().is_err());
    }
}
