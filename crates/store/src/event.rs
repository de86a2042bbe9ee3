//! The records the store keeps: twin events (history) and latest states, and how a CloudEvent
//! becomes a twin event.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Data, Event};
use ktwin_events::trace::{TRACEPARENT, TRACESTATE, TraceId, TraceParent};
use ktwin_events::{EventKind, EventType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::merge::Version;

/// One twin instance: the partition of the history and the key of the latest state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceKey {
    /// The twin interface (third segment of the event type).
    pub interface: String,
    /// The twin instance (the event `source`).
    pub instance: String,
}

impl InstanceKey {
    /// The key of `instance` of `interface`.
    pub fn new(interface: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            instance: instance.into(),
        }
    }
}

/// A stored twin event: a JSON merge patch of one instance's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinEvent {
    /// CloudEvent `id`; unique per instance (redeliveries are stored once).
    pub id: String,
    /// CloudEvent `time`, microsecond precision; the arrival time when the event had none.
    pub time: DateTime<Utc>,
    /// CloudEvent `source`, the twin instance.
    pub source: String,
    /// CloudEvent `type`, e.g. `ktwin.store.city-pole`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The twin instance.
    pub instance_id: String,
    /// The twin interface.
    pub interface_id: String,
    /// The event data: a JSON object applied as an RFC 7386 merge patch.
    #[schema(value_type = Object)]
    pub event_data: EventData,
    /// The W3C `traceparent` the event carried (CloudEvents distributed-tracing extension):
    /// its trace, and the span that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The W3C `tracestate` the event carried; its `ktwin` entry lists the span ids of the
    /// event's causes (see `ktwin_events::trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TwinEvent {
    /// The instance the event belongs to.
    pub fn key(&self) -> InstanceKey {
        InstanceKey::new(&self.interface_id, &self.instance_id)
    }

    /// Its place in the instance's order.
    pub fn version(&self) -> Version {
        Version::new(self.time, &self.id)
    }

    /// A twin event from parts, with the time truncated to microseconds.
    pub fn new(
        event_type: &EventType,
        instance: &str,
        id: impl Into<String>,
        time: DateTime<Utc>,
        data: impl Into<EventData>,
    ) -> Self {
        Self {
            id: id.into(),
            time: time.trunc_subsecs(6),
            source: instance.to_owned(),
            event_type: event_type.to_string(),
            instance_id: instance.to_owned(),
            interface_id: event_type.interface().to_owned(),
            event_data: data.into(),
            traceparent: None,
            tracestate: None,
        }
    }

    /// The trace id of the event's `traceparent`, if it carried a valid one.
    pub fn trace_id(&self) -> Option<TraceId> {
        let parent: TraceParent = self.traceparent.as_deref()?.parse().ok()?;
        Some(parent.trace_id)
    }

    /// Validates a CloudEvent as a twin event. `received` stands in for a missing `time`.
    pub fn from_cloudevent(event: &Event, received: DateTime<Utc>) -> Result<Self, EventError> {
        Self::convert(event, received, |members| members.clone().into())
    }

    /// [`Self::from_cloudevent`] for a shared CloudEvent: JSON data is read in place, not
    /// copied (see [`EventData`]).
    pub fn from_shared_cloudevent(
        event: Arc<Event>,
        received: DateTime<Utc>,
    ) -> Result<Self, EventError> {
        Self::convert(&event, received, |_| {
            EventData::in_event(Arc::clone(&event))
        })
    }

    /// Validates `event` as a twin event; `json_object` gives its data when the CloudEvent
    /// holds it as a JSON object.
    fn convert(
        event: &Event,
        received: DateTime<Utc>,
        json_object: impl FnOnce(&Map<String, Value>) -> EventData,
    ) -> Result<Self, EventError> {
        let event_type: EventType = event.ty().parse().map_err(|_| EventError::BadType {
            value: event.ty().to_owned(),
        })?;
        if event_type.kind() == EventKind::Command {
            return Err(EventError::BadType {
                value: event.ty().to_owned(),
            });
        }
        let instance = event.source().as_str();
        ktwin_events::validate_name("instance", instance).map_err(|err| EventError::BadSource {
            value: instance.to_owned(),
            reason: err.to_string(),
        })?;
        let data = match event.data() {
            None => return Err(EventError::DataNotObject { found: "no data" }),
            Some(Data::Json(Value::Object(members))) => json_object(members),
            Some(Data::Json(other)) => {
                return Err(EventError::DataNotObject {
                    found: json_kind(other),
                });
            }
            Some(Data::String(text)) => parsed_object(serde_json::from_str(text))?,
            Some(Data::Binary(bytes)) => parsed_object(serde_json::from_slice(bytes))?,
        };
        // PostgreSQL's jsonb cannot hold U+0000, and deeper data could not be read back once
        // stored: refusing here keeps one event from failing every batch it would join.
        check_storable(&data, MAX_DATA_DEPTH)?;
        if event.id().is_empty() || event.id().chars().any(char::is_control) {
            return Err(EventError::BadId {
                value: event.id().to_owned(),
            });
        }
        let time = event.time().copied().unwrap_or(received);
        let mut twin_event = Self::new(&event_type, instance, event.id(), time, data);
        // Kept only when the traceparent is valid and sampled: the store indexes events by
        // trace id, and a trace that is not sampled is not recorded (what makes tracing cheap
        // when off; see `ktwin_events::trace::TraceSampler`). The tracestate is kept as it
        // came (readers take a `ktwin` entry that is no list of span ids for no causes), so it
        // is not parsed here.
        twin_event.traceparent = trace_attribute(event, TRACEPARENT)
            .filter(|traceparent| {
                traceparent
                    .parse::<TraceParent>()
                    .is_ok_and(|parent| parent.is_sampled())
            })
            .map(str::to_owned);
        if twin_event.traceparent.is_some() {
            twin_event.tracestate = trace_attribute(event, TRACESTATE).map(str::to_owned);
        }
        Ok(twin_event)
    }
}

/// The data of a CloudEvent that came as text, as a twin event's data.
fn parsed_object(parsed: Result<Value, serde_json::Error>) -> Result<EventData, EventError> {
    match parsed.map_err(|e| EventError::DataNotJson(e.to_string()))? {
        Value::Object(members) => Ok(members.into()),
        other => Err(EventError::DataNotObject {
            found: json_kind(&other),
        }),
    }
}

/// A twin event's data: a JSON object (an RFC 7386 merge patch), owned, or read in place from
/// the shared CloudEvent it came in ([`TwinEvent::from_shared_cloudevent`]). The store's feed
/// holds each CloudEvent until its event is stored anyway; copying the data out of it was
/// about a third of the feed's work (docs/benchmarks.md, "Where each device message's CPU
/// goes"). Reads go through `Deref`; a change (`DerefMut`) first copies data read in place.
#[derive(Clone, Default)]
pub struct EventData {
    /// The data, unless `event` holds it.
    owned: Map<String, Value>,
    /// The CloudEvent whose JSON object data this is.
    event: Option<Arc<Event>>,
}

impl EventData {
    /// The data of `event`, which holds a JSON object (else it reads as an empty object).
    fn in_event(event: Arc<Event>) -> Self {
        Self {
            owned: Map::new(),
            event: Some(event),
        }
    }

    /// The data as an owned object (copied if read in place).
    pub fn into_map(mut self) -> Map<String, Value> {
        std::mem::take(&mut *self)
    }
}

/// The JSON object data of `event`.
fn object_of(event: &Event) -> &Map<String, Value> {
    static NONE: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    match event.data() {
        Some(Data::Json(Value::Object(members))) => members,
        _ => &NONE,
    }
}

impl std::ops::Deref for EventData {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        self.event.as_deref().map_or(&self.owned, object_of)
    }
}

impl std::ops::DerefMut for EventData {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        if let Some(event) = self.event.take() {
            self.owned = object_of(&event).clone();
        }
        &mut self.owned
    }
}

impl From<Map<String, Value>> for EventData {
    fn from(owned: Map<String, Value>) -> Self {
        Self { owned, event: None }
    }
}

impl PartialEq for EventData {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for EventData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EventData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Self::from)
    }
}

/// A trace attribute of `event`, at most [`MAX_TRACE_ATTRIBUTE`] bytes (W3C bounds
/// `tracestate` at 32 entries of 256 characters; longer is refused rather than stored).
fn trace_attribute<'e>(event: &'e Event, name: &str) -> Option<&'e str> {
    match event.extension(name)? {
        ExtensionValue::String(text) if text.len() <= MAX_TRACE_ATTRIBUTE => Some(text),
        _ => None,
    }
}

/// The longest `traceparent` or `tracestate` the store keeps.
pub const MAX_TRACE_ATTRIBUTE: usize = 8192;

/// How many levels of objects and arrays event data may have, itself included. A stored merge
/// tree takes about two JSON levels per level of the data, and serde_json reads at most 128:
/// deeper data would be stored and then never read back, failing every later append to its
/// instance.
pub const MAX_DATA_DEPTH: usize = 32;

/// Checks in one walk that the object `members` (one level) has at most `levels` levels and no
/// U+0000 in a name or string. Looks no deeper than `levels`, so data built in memory at any
/// depth is checked without a deep recursion.
fn check_storable(members: &Map<String, Value>, levels: usize) -> Result<(), EventError> {
    let below = levels.checked_sub(1).ok_or_else(too_deep)?;
    for (name, value) in members {
        if name.contains('\0') {
            return Err(nul_refused());
        }
        check_storable_value(value, below)?;
    }
    Ok(())
}

fn check_storable_value(value: &Value, levels: usize) -> Result<(), EventError> {
    match value {
        Value::String(text) if text.contains('\0') => Err(nul_refused()),
        Value::Array(items) => {
            let below = levels.checked_sub(1).ok_or_else(too_deep)?;
            items
                .iter()
                .try_for_each(|item| check_storable_value(item, below))
        }
        Value::Object(members) => check_storable(members, levels),
        _ => Ok(()),
    }
}

fn too_deep() -> EventError {
    EventError::DataTooDeep {
        limit: MAX_DATA_DEPTH,
    }
}

fn nul_refused() -> EventError {
    EventError::DataNotJson("a string contains U+0000, which cannot be stored".into())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why a CloudEvent is not a twin event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The `type` is not a persistable ktwin type.
    #[error(
        "attribute \"type\" is {value:?}; expected ktwin.store.<interface>, ktwin.real.<interface> \
         or ktwin.virtual.<interface>"
    )]
    BadType {
        /// The offending type.
        value: String,
    },
    /// The `id` is empty or contains control characters.
    #[error("attribute \"id\" is {value:?}; expected a non-empty id without control characters")]
    BadId {
        /// The offending id.
        value: String,
    },
    /// The `source` is not a usable twin instance name.
    #[error("attribute \"source\" is {value:?}: {reason}")]
    BadSource {
        /// The offending source.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data is not JSON at all.
    #[error("data is not JSON: {0}")]
    DataNotJson(String),
    /// The data is JSON but not an object, so it cannot be a merge patch of a twin's state.
    #[error("data is {found}; expected a JSON object (an RFC 7386 merge patch of the twin state)")]
    DataNotObject {
        /// What was found instead.
        found: &'static str,
    },
    /// The data nests objects and arrays more deeply than a twin's state may.
    #[error(
        "data nests objects and arrays more than {limit} levels deep; expected at most {limit}"
    )]
    DataTooDeep {
        /// The most levels allowed (`MAX_DATA_DEPTH`).
        limit: usize,
    },
}

/// The latest state of a twin instance: every event merged in version order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatestState {
    /// The twin interface.
    pub interface_id: String,
    /// The twin instance.
    pub instance_id: String,
    /// Id of the newest event (by time, then id).
    pub id: String,
    /// Type of the newest event.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Time of the newest event.
    pub time: DateTime<Utc>,
    /// How many distinct events were merged.
    pub event_count: i64,
    /// The merged state.
    #[schema(value_type = Object)]
    pub state: Map<String, Value>,
}

impl LatestState {
    /// The version of this state, which conditional appends compare with
    /// ([`crate::Precondition`]).
    pub fn version(&self) -> crate::StateVersion {
        crate::StateVersion::of(self.event_count, self.time.timestamp_micros(), &self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder as _, EventBuilderV10};
    use serde_json::json;

    fn event(ty: &str, data: Option<Value>) -> Event {
        let mut builder = EventBuilderV10::new().id("e1").ty(ty).source("pole-1");
        if let Some(data) = data {
            builder = builder.data("application/json", data);
        }
        builder.build().unwrap()
    }

    #[test]
    fn a_shared_event_is_converted_like_a_borrowed_one_and_its_data_read_in_place() {
        let now = Utc::now();
        let data = json!({"a": 1, "b": {"c": [true, null]}});
        let shared = Arc::new(event("ktwin.real.city-pole", Some(data.clone())));
        let copied = TwinEvent::from_cloudevent(&shared, now).unwrap();
        let mut in_place = TwinEvent::from_shared_cloudevent(Arc::clone(&shared), now).unwrap();
        assert_eq!(in_place, copied);
        assert!(
            in_place.event_data.event.is_some(),
            "the data is read in place"
        );
        assert_eq!(Arc::strong_count(&shared), 2);
        assert_eq!(serde_json::to_value(&in_place).unwrap()["eventData"], data);
        // A change copies the data out first and leaves the CloudEvent as it was.
        in_place.event_data.insert("d".into(), json!(2));
        assert_eq!(Arc::strong_count(&shared), 1);
        assert_eq!(in_place.event_data.len(), 3);
        assert_eq!(shared.data(), Some(&Data::Json(data)));
        // Data that came as text, or is no object, is converted and refused as before.
        let mut text = event("ktwin.real.city-pole", None);
        text.set_data("application/json", Data::String(r#"{"a": 1}"#.into()));
        let parsed = TwinEvent::from_shared_cloudevent(Arc::new(text), now).unwrap();
        assert_eq!(
            (parsed.event_data.event.is_none(), parsed.event_data.len()),
            (true, 1)
        );
        let list = Arc::new(event("ktwin.real.city-pole", Some(json!([1]))));
        assert_eq!(
            TwinEvent::from_shared_cloudevent(list, now).unwrap_err(),
            EventError::DataNotObject { found: "an array" }
        );
    }

    #[test]
    fn accepts_store_real_and_virtual_events() {
        let now = Utc::now();
        for ty in [
            "ktwin.store.city-pole",
            "ktwin.real.city-pole",
            "ktwin.virtual.city-pole",
        ] {
            let twin = TwinEvent::from_cloudevent(&event(ty, Some(json!({"a": 1}))), now).unwrap();
            assert_eq!(twin.key(), InstanceKey::new("city-pole", "pole-1"));
            assert_eq!(
                twin.time,
                now.trunc_subsecs(6),
                "missing time falls back to arrival"
            );
        }
    }

    #[test]
    fn keeps_a_valid_trace() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut traced = event("ktwin.store.pole", Some(json!({"a": 1})));
        traced.set_extension(TRACEPARENT, traceparent);
        traced.set_extension(TRACESTATE, "ktwin=0101010101010101");
        let stored = TwinEvent::from_cloudevent(&traced, Utc::now()).unwrap();
        assert_eq!(stored.traceparent.as_deref(), Some(traceparent));
        assert_eq!(stored.tracestate.as_deref(), Some("ktwin=0101010101010101"));
        assert_eq!(
            stored.trace_id().unwrap().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // An invalid traceparent is not kept (the event is): the store indexes trace ids.
        traced.set_extension(TRACEPARENT, "00-nonsense");
        let stored = TwinEvent::from_cloudevent(&traced, Utc::now()).unwrap();
        assert_eq!((stored.traceparent, stored.tracestate), (None, None));
        // Nor is a trace that is not sampled (flags 00): it is not recorded.
        traced.set_extension(TRACEPARENT, traceparent.replace("-01", "-00"));
        let stored = TwinEvent::from_cloudevent(&traced, Utc::now()).unwrap();
        assert_eq!((stored.traceparent, stored.tracestate), (None, None));
    }

    #[test]
    fn rejects_commands_and_foreign_types() {
        for ty in [
            "ktwin.command.city-pole.doit",
            "com.example",
            "ktwin.event-store",
        ] {
            let err =
                TwinEvent::from_cloudevent(&event(ty, Some(json!({}))), Utc::now()).unwrap_err();
            assert!(matches!(err, EventError::BadType { .. }), "{ty}: {err}");
        }
    }

    #[test]
    fn nul_characters_are_refused() {
        let err = TwinEvent::from_cloudevent(
            &event(
                "ktwin.store.city-pole",
                Some(json!({"a": {"b": ["x\u{0}"]}})),
            ),
            Utc::now(),
        )
        .unwrap_err();
        assert!(matches!(err, EventError::DataNotJson(_)), "{err}");
    }

    /// Data `levels` deep (at least 2): objects around an array.
    fn nested(levels: usize) -> Value {
        let mut value = json!([1]);
        for _ in 1..levels {
            value = json!({"x": value});
        }
        value
    }

    #[test]
    fn data_nested_deeper_than_a_state_may_be_is_refused() {
        use crate::backend::InstanceRecord;
        use crate::merge::compact::{decode_tree, encode_tree};
        let ty = "ktwin.store.city-pole";
        let deepest = event(ty, Some(nested(MAX_DATA_DEPTH)));
        let deepest = TwinEvent::from_cloudevent(&deepest, Utc::now()).unwrap();
        // The deepest data accepted reads back from the stored forms.
        let mut record = InstanceRecord::default();
        record.absorb([&deepest]);
        assert_eq!(InstanceRecord::decode(&record.encode()).unwrap(), record);
        assert_eq!(
            decode_tree(&encode_tree(&record.tree)).unwrap(),
            record.tree
        );

        let deeper = event(ty, Some(nested(MAX_DATA_DEPTH + 1)));
        let err = TwinEvent::from_cloudevent(&deeper, Utc::now()).unwrap_err();
        assert_eq!(
            err,
            EventError::DataTooDeep {
                limit: MAX_DATA_DEPTH
            }
        );
        assert!(
            err.to_string().contains("more than 32 levels deep"),
            "{err}"
        );
    }

    #[test]
    fn data_must_be_a_json_object() {
        let ty = "ktwin.store.city-pole";
        for (data, found) in [
            (None, "no data"),
            (Some(json!([1])), "an array"),
            (Some(json!(3)), "a number"),
        ] {
            let err = TwinEvent::from_cloudevent(&event(ty, data), Utc::now()).unwrap_err();
            assert_eq!(err, EventError::DataNotObject { found });
        }
    }
}
