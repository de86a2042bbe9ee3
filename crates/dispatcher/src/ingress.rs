//! Device message → CloudEvent translation, and the reasons a device message is refused.
//! Pure: no I/O.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, Utc};
use cloudevents::Event;
use ktwin_events::trace::TraceSampler;
use ktwin_events::{
    DeviceBindings, EventBuilder, JSON_PAYLOAD_FORMAT, TelemetryTopic, Topic, TopicKind,
    mqtt_topic_of_routing_key,
};

/// Default largest accepted payload: 256 KiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// How the address of a device message is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicSyntax {
    /// An MQTT topic, `ktwin/real/<iface>/<instance>`.
    Mqtt,
    /// An AMQP routing key from RabbitMQ's MQTT plugin, `ktwin.real.<iface>.<instance>`.
    RoutingKey,
}

/// What device messages are accepted.
#[derive(Debug, Clone)]
pub struct IngressPolicy {
    /// Largest payload accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Interfaces of the loaded model; `None` accepts any interface.
    pub known_interfaces: Option<HashSet<String>>,
    /// Telemetry topics interfaces declare with the DTDL MQTT extension, tried before the
    /// fixed `ktwin/real/<iface>/<instance>` grammar.
    pub bindings: DeviceBindings,
    /// Which of the traces device messages start are recorded.
    pub trace_sampler: TraceSampler,
}

impl Default for IngressPolicy {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            known_interfaces: None,
            bindings: DeviceBindings::default(),
            trace_sampler: TraceSampler::default(),
        }
    }
}

/// Why a device message was refused (the `reason` label of the dead-letter counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// The payload exceeds the size limit.
    PayloadTooLarge,
    /// The payload is not JSON.
    NotJson,
    /// The payload is JSON but not an object.
    NotJsonObject,
    /// The topic is not `ktwin/real/<iface>/<instance>`.
    BadTopic,
    /// The interface is not in the loaded model.
    UnknownInterface,
    /// The topic's interface declares a payload format other than JSON.
    UnsupportedPayloadFormat,
}

impl RejectKind {
    /// Metric label.
    pub fn as_label(self) -> &'static str {
        match self {
            RejectKind::PayloadTooLarge => "payload_too_large",
            RejectKind::NotJson => "not_json",
            RejectKind::NotJsonObject => "not_json_object",
            RejectKind::BadTopic => "bad_topic",
            RejectKind::UnknownInterface => "unknown_interface",
            RejectKind::UnsupportedPayloadFormat => "unsupported_payload_format",
        }
    }
}

/// A refused device message: the kind and a sentence naming the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Rejection {
    /// Category, for metrics.
    pub kind: RejectKind,
    /// Human-readable reason, stored with the dead letter.
    pub detail: String,
}

impl Rejection {
    fn new(kind: RejectKind, detail: String) -> Self {
        Self { kind, detail }
    }
}

/// A device message that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReading {
    /// Where it came from.
    pub topic: Topic,
    /// Its JSON object payload.
    pub data: serde_json::Value,
}

impl DeviceReading {
    /// The CloudEvent: `type=ktwin.real.<iface>`, `source=<instance>`, JSON data, the given
    /// identity (a fresh UUIDv7 and now, unless this is a redelivery), and a new trace named
    /// by its id (one trace per device message; a redelivery continues the first copy's),
    /// recorded when `sampler` samples it.
    pub fn into_event(self, identity: Option<&EventIdentity>, sampler: TraceSampler) -> Event {
        let builder = EventBuilder::new(self.topic.event_type(), &self.topic.instance)
            .expect("instance validated when the topic was parsed")
            .data(self.data);
        let mut event = match identity {
            Some(identity) => builder.id(identity.id.clone()).time(identity.time).build(),
            None => builder.build(),
        };
        ktwin_events::trace::start_trace(&mut event, sampler);
        event
    }
}

/// Validates a device message: size, topic shape (a declared telemetry topic, else
/// `ktwin/real/<iface>/<instance>`), known interface, payload format, JSON object payload — in
/// that order, so oversized payloads are never parsed.
pub fn validate(
    topic: &str,
    syntax: TopicSyntax,
    payload: &[u8],
    policy: &IngressPolicy,
) -> Result<DeviceReading, Rejection> {
    if payload.len() > policy.max_payload_bytes {
        return Err(Rejection::new(
            RejectKind::PayloadTooLarge,
            format!(
                "payload of {} bytes on {topic:?} exceeds the limit of {} bytes",
                payload.len(),
                policy.max_payload_bytes
            ),
        ));
    }
    if !policy.bindings.is_empty() {
        let mqtt_topic = match syntax {
            TopicSyntax::Mqtt => Cow::Borrowed(topic),
            TopicSyntax::RoutingKey => Cow::Owned(mqtt_topic_of_routing_key(topic)),
        };
        if let Some(declared) = policy.bindings.telemetry(&mqtt_topic) {
            return declared_reading(&mqtt_topic, &declared, payload, policy);
        }
    }
    // Either spelling on either transport: the original's devices publish dotted topics, and
    // RabbitMQ's MQTT plugin swaps the separators when it makes a routing key of a topic.
    let topic = match Topic::parse_device(topic) {
        Ok(t) if t.kind == TopicKind::Real => t,
        Ok(_) => {
            return Err(Rejection::new(
                RejectKind::BadTopic,
                format!(
                    "topic {topic:?} is a virtual (platform → device) topic; devices publish on {}",
                    match syntax {
                        TopicSyntax::Mqtt => "ktwin/real/<iface>/<instance>",
                        TopicSyntax::RoutingKey => "ktwin.real.<iface>.<instance>",
                    }
                ),
            ));
        }
        Err(err) if policy.bindings.is_empty() => {
            return Err(Rejection::new(RejectKind::BadTopic, err.to_string()));
        }
        Err(_) => {
            let what = match syntax {
                TopicSyntax::Mqtt => "topic",
                TopicSyntax::RoutingKey => "routing key",
            };
            return Err(Rejection::new(
                RejectKind::BadTopic,
                format!(
                    "{what} {topic:?} matches neither the ktwin/real/<iface>/<instance> grammar nor a declared telemetry topic ({})",
                    policy.bindings.telemetry_patterns().join(", ")
                ),
            ));
        }
    };
    check_known(&topic, policy)?;
    let data = parse_json(payload, || topic.mqtt_topic())?;
    if !data.is_object() {
        return Err(not_an_object(&topic.mqtt_topic()));
    }
    Ok(DeviceReading { topic, data })
}

/// A message on a telemetry topic an interface declares: the same reading as on
/// `ktwin/real/<iface>/<instance>`; with `{telemetryName}` in the pattern, the payload is that
/// one telemetry's value.
fn declared_reading(
    topic: &str,
    declared: &TelemetryTopic<'_>,
    payload: &[u8],
    policy: &IngressPolicy,
) -> Result<DeviceReading, Rejection> {
    let interface = declared.interface;
    if !declared.is_json() {
        return Err(Rejection::new(
            RejectKind::UnsupportedPayloadFormat,
            format!(
                "topic {topic:?} is telemetry of interface {interface:?}, which declares payloadFormat {:?}; ktwin reads only {JSON_PAYLOAD_FORMAT:?}",
                declared.payload_format
            ),
        ));
    }
    let twin = Topic::new(TopicKind::Real, interface, declared.instance).map_err(|err| {
        Rejection::new(
            RejectKind::BadTopic,
            format!(
                "topic {topic:?} matches {:?} of interface {interface:?}, but its {{senderId}} is no twin instance: {err}",
                declared.pattern
            ),
        )
    })?;
    check_known(&twin, policy)?;
    let value = parse_json(payload, || topic.to_owned())?;
    let data = match declared.telemetry_name {
        Some(name) => serde_json::json!({ name: value }),
        None if value.is_object() => value,
        None => return Err(not_an_object(topic)),
    };
    Ok(DeviceReading { topic: twin, data })
}

fn check_known(topic: &Topic, policy: &IngressPolicy) -> Result<(), Rejection> {
    match &policy.known_interfaces {
        Some(known) if !known.contains(&topic.interface) => Err(Rejection::new(
            RejectKind::UnknownInterface,
            format!(
                "interface {:?} (topic {:?}) is not in the loaded model",
                topic.interface,
                topic.mqtt_topic()
            ),
        )),
        _ => Ok(()),
    }
}

/// `payload` parsed; `topic` names it in the rejection, spelled only for one (every device
/// message passes here).
fn parse_json(
    payload: &[u8],
    topic: impl FnOnce() -> String,
) -> Result<serde_json::Value, Rejection> {
    serde_json::from_slice(payload).map_err(|err| {
        Rejection::new(
            RejectKind::NotJson,
            format!("payload on {:?} is not JSON: {err}", topic()),
        )
    })
}

fn not_an_object(topic: &str) -> Rejection {
    Rejection::new(
        RejectKind::NotJsonObject,
        format!("payload on {topic:?} is JSON but not an object (expected {{...}})"),
    )
}

/// Remembers which topics were already reported, so a device publishing on a topic nothing
/// matches is logged once, not once per message. Bounded: past `capacity` topics, nothing new
/// is remembered (and nothing more is logged as new).
#[derive(Debug)]
pub struct FirstSeen {
    capacity: usize,
    seen: HashSet<String>,
}

impl FirstSeen {
    /// Remembers at most `capacity` topics.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashSet::new(),
        }
    }

    /// Whether `topic` is seen for the first time (and there was room to remember it).
    pub fn first(&mut self, topic: &str) -> bool {
        if self.seen.len() >= self.capacity || self.seen.contains(topic) {
            return false;
        }
        self.seen.insert(topic.to_owned())
    }
}

/// The id and time given to the event of a device message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIdentity {
    /// Event id.
    pub id: String,
    /// Event time.
    pub time: DateTime<Utc>,
}

/// Remembers the identity of recently dispatched messages so that a message the transport
/// flags as a redelivery (AMQP `redelivered`, MQTT DUP) gets the same event id as the first
/// time: downstream, a duplicate is then always recognisable by id. Bounded: the oldest
/// entries are forgotten first.
#[derive(Debug)]
pub struct DuplicateTracker {
    capacity: usize,
    order: VecDeque<u64>,
    identities: HashMap<u64, EventIdentity>,
}

impl DuplicateTracker {
    /// Remembers at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            identities: HashMap::new(),
        }
    }

    /// Fingerprint of a message: its address and payload.
    pub fn fingerprint(topic: &str, payload: &[u8]) -> u64 {
        let mut hasher = DefaultHasher::new();
        topic.hash(&mut hasher);
        payload.hash(&mut hasher);
        hasher.finish()
    }

    /// The identity the first copy of a redelivered message got, if remembered. Messages not
    /// flagged as redeliveries always get a new identity (identical readings are distinct
    /// events).
    pub fn identity_for(&self, fingerprint: u64, redelivered: bool) -> Option<&EventIdentity> {
        redelivered
            .then(|| self.identities.get(&fingerprint))
            .flatten()
    }

    /// Records the identity a message was dispatched with.
    pub fn remember(&mut self, fingerprint: u64, identity: EventIdentity) {
        if self.identities.insert(fingerprint, identity).is_none() {
            self.order.push_back(fingerprint);
            if self.order.len() > self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.identities.remove(&oldest);
            }
        }
    }

    /// Messages remembered.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::AttributesReader;

    fn policy() -> IngressPolicy {
        IngressPolicy {
            max_payload_bytes: 64,
            known_interfaces: Some(["city-pole".to_owned(), "vehicle".to_owned()].into()),
            bindings: DeviceBindings::new(vec![ktwin_events::DeviceBinding {
                interface: "vehicle".into(),
                model_id: "dtmi:example:Vehicle;1".into(),
                payload_format: JSON_PAYLOAD_FORMAT.into(),
                telemetry_topic: Some("vehicles/{modelId}/{senderId}/telemetry".into()),
                command_topic: None,
                commands: Vec::new(),
            }])
            .unwrap(),
            trace_sampler: TraceSampler::ALWAYS,
        }
    }

    /// A device message starts a trace whose `sampled` flag is the policy's sampler's choice;
    /// its events carry it either way.
    #[test]
    fn the_policy_decides_which_traces_are_recorded() {
        use ktwin_events::trace::EventTrace;
        for (sampler, sampled) in [(TraceSampler::ALWAYS, true), (TraceSampler::NEVER, false)] {
            let policy = IngressPolicy {
                trace_sampler: sampler,
                ..policy()
            };
            let reading = validate(
                "ktwin/real/city-pole/p-1",
                TopicSyntax::Mqtt,
                b"{}",
                &policy,
            );
            let event = reading.unwrap().into_event(None, policy.trace_sampler);
            let trace = EventTrace::of(&event).expect("every device event carries a trace");
            assert_eq!(trace.parent.is_sampled(), sampled, "{sampler}");
        }
    }

    #[test]
    fn declared_topics_give_the_event_of_the_fixed_grammar() {
        let fixed = validate(
            "ktwin/real/vehicle/car-7",
            TopicSyntax::Mqtt,
            br#"{"speed":3}"#,
            &policy(),
        )
        .unwrap();
        for (topic, syntax) in [
            (
                "vehicles/dtmi:example:Vehicle;1/car-7/telemetry",
                TopicSyntax::Mqtt,
            ),
            (
                "vehicles.dtmi:example:Vehicle;1.car-7.telemetry",
                TopicSyntax::RoutingKey,
            ),
        ] {
            let declared = validate(topic, syntax, br#"{"speed":3}"#, &policy()).unwrap();
            assert_eq!(declared, fixed, "{topic}");
        }
        let cases: [(&str, &[u8], RejectKind, &str); 4] = [
            (
                "vehicles/dtmi:example:Vehicle;1/car-7/telemetry",
                b"3",
                RejectKind::NotJsonObject,
                "not an object",
            ),
            (
                "vehicles/dtmi:example:Vehicle;1/car-7/telemetry",
                b"{",
                RejectKind::NotJson,
                "not JSON",
            ),
            (
                "vehicles/dtmi:example:Truck;1/car-7/telemetry",
                b"{}",
                RejectKind::BadTopic,
                "vehicles/{modelId}/{senderId}/telemetry",
            ),
            (
                "vehicles/dtmi:example:Vehicle;1/a.b/telemetry",
                b"{}",
                RejectKind::BadTopic,
                "no twin instance",
            ),
        ];
        for (topic, payload, kind, needle) in cases {
            let err = validate(topic, TopicSyntax::Mqtt, payload, &policy()).unwrap_err();
            assert_eq!(err.kind, kind, "{topic}: {err}");
            assert!(err.detail.contains(needle), "{err} lacks {needle:?}");
        }
    }

    #[test]
    fn one_telemetry_per_topic_and_other_formats() {
        let binding = |format: &str| ktwin_events::DeviceBinding {
            interface: "meter".into(),
            model_id: "dtmi:example:Meter;1".into(),
            payload_format: format.into(),
            telemetry_topic: Some("meters/{senderId}/{telemetryName}".into()),
            command_topic: None,
            commands: Vec::new(),
        };
        let policy = |format: &str| IngressPolicy {
            bindings: DeviceBindings::new(vec![binding(format)]).unwrap(),
            ..IngressPolicy::default()
        };
        let reading = validate(
            "meters/m-1/power",
            TopicSyntax::Mqtt,
            b"42.5",
            &policy(JSON_PAYLOAD_FORMAT),
        )
        .unwrap();
        assert_eq!(reading.topic.interface, "meter");
        assert_eq!(reading.topic.instance, "m-1");
        assert_eq!(reading.data, serde_json::json!({"power": 42.5}));
        let err = validate(
            "meters/m-1/power",
            TopicSyntax::Mqtt,
            b"42.5",
            &policy("Protobuf/3"),
        )
        .unwrap_err();
        assert_eq!(err.kind, RejectKind::UnsupportedPayloadFormat);
        assert!(err.detail.contains("Protobuf/3"), "{err:?}");
        assert_eq!(err.kind.as_label(), "unsupported_payload_format");
    }

    #[test]
    fn unmatched_topics_are_reported_once() {
        let mut seen = FirstSeen::new(2);
        assert!(seen.first("a"));
        assert!(!seen.first("a"));
        assert!(seen.first("b"));
        assert!(!seen.first("c"), "bounded");
    }

    #[test]
    fn both_topic_syntaxes_give_the_same_event() {
        // Each spelling on each transport: the original's devices publish dotted MQTT topics,
        // which RabbitMQ's MQTT plugin turns into slash-separated routing keys.
        for (topic, syntax) in [
            ("ktwin/real/city-pole/pole-1", TopicSyntax::Mqtt),
            ("ktwin.real.city-pole.pole-1", TopicSyntax::Mqtt),
            ("ktwin.real.city-pole.pole-1", TopicSyntax::RoutingKey),
            ("ktwin/real/city-pole/pole-1", TopicSyntax::RoutingKey),
        ] {
            let reading = validate(topic, syntax, br#"{"a":1}"#, &policy()).unwrap();
            let event = reading.into_event(None, TraceSampler::ALWAYS);
            assert_eq!(event.ty(), "ktwin.real.city-pole");
            assert_eq!(event.source().as_str(), "pole-1");
            assert_eq!(event.datacontenttype(), Some("application/json"));
            assert_eq!(event.specversion().as_str(), "1.0");
            assert!(event.time().is_some());
            let id = uuid::Uuid::parse_str(event.id()).unwrap();
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(
                event.data(),
                Some(&cloudevents::Data::Json(serde_json::json!({"a": 1})))
            );
            // Each device message starts a trace named by its event's id.
            let trace = ktwin_events::trace::EventTrace::of(&event).expect("a traceparent");
            assert_eq!(trace.parent.trace_id.to_bytes(), *id.as_bytes());
            assert!(trace.causes.is_empty());
        }
    }

    #[test]
    fn each_bad_input_has_its_reason() {
        let p = policy();
        let cases: [(&str, TopicSyntax, &[u8], RejectKind, &str); 8] = [
            (
                "ktwin/real/city-pole/p",
                TopicSyntax::Mqtt,
                b"not json",
                RejectKind::NotJson,
                r#"payload on "ktwin/real/city-pole/p" is not JSON"#,
            ),
            (
                "ktwin/real/city-pole/p",
                TopicSyntax::Mqtt,
                b"[1,2]",
                RejectKind::NotJsonObject,
                "not an object",
            ),
            (
                "ktwin/real/city-pole/p",
                TopicSyntax::Mqtt,
                &[b' '; 65],
                RejectKind::PayloadTooLarge,
                "65 bytes",
            ),
            (
                "ktwin/real/city-pole",
                TopicSyntax::Mqtt,
                b"{}",
                RejectKind::BadTopic,
                "ktwin/real/city-pole",
            ),
            (
                "ktwin/real/city-pole/p/extra",
                TopicSyntax::Mqtt,
                b"{}",
                RejectKind::BadTopic,
                "extra",
            ),
            (
                "ktwin.real.city-pole",
                TopicSyntax::RoutingKey,
                b"{}",
                RejectKind::BadTopic,
                "routing key",
            ),
            (
                "ktwin/virtual/city-pole/p",
                TopicSyntax::Mqtt,
                b"{}",
                RejectKind::BadTopic,
                "virtual",
            ),
            (
                "ktwin/real/city-lamp/p",
                TopicSyntax::Mqtt,
                b"{}",
                RejectKind::UnknownInterface,
                "city-lamp",
            ),
        ];
        for (topic, syntax, payload, kind, needle) in cases {
            let err = validate(topic, syntax, payload, &p).unwrap_err();
            assert_eq!(err.kind, kind, "{topic}: {err}");
            assert!(err.detail.contains(needle), "{err} lacks {needle:?}");
        }
    }

    #[test]
    fn any_interface_passes_without_a_model() {
        let open = IngressPolicy::default();
        assert!(validate("ktwin/real/anything/p", TopicSyntax::Mqtt, b"{}", &open).is_ok());
    }

    #[test]
    fn redeliveries_reuse_the_first_identity() {
        let mut tracker = DuplicateTracker::new(2);
        let fp = DuplicateTracker::fingerprint("t", b"{}");
        assert!(tracker.identity_for(fp, true).is_none());
        let identity = EventIdentity {
            id: "id-1".into(),
            time: Utc::now(),
        };
        tracker.remember(fp, identity.clone());
        assert_eq!(tracker.identity_for(fp, true), Some(&identity));
        assert!(
            tracker.identity_for(fp, false).is_none(),
            "fresh readings get new ids"
        );
        let reading = validate(
            "ktwin/real/x/y",
            TopicSyntax::Mqtt,
            b"{}",
            &IngressPolicy::default(),
        )
        .unwrap();
        let event = reading.into_event(Some(&identity), TraceSampler::ALWAYS);
        assert_eq!(event.id(), "id-1");
        assert_eq!(event.time(), Some(&identity.time));
    }

    #[test]
    fn the_tracker_is_bounded() {
        let mut tracker = DuplicateTracker::new(2);
        for i in 0..5u64 {
            tracker.remember(
                i,
                EventIdentity {
                    id: i.to_string(),
                    time: Utc::now(),
                },
            );
        }
        assert_eq!(tracker.len(), 2);
        assert!(tracker.identity_for(0, true).is_none());
        assert!(tracker.identity_for(4, true).is_some());
    }

    /// Topics near the grammars (fixed and declared) with arbitrary parts, and arbitrary ones.
    fn any_topic() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let part = prop_oneof![
            3 => prop::sample::select(vec![
                "ktwin", "real", "virtual", "city-pole", "vehicle", "vehicles",
                "dtmi:example:Vehicle;1", "telemetry", "car-7", "", "+", "#", ".", "..",
            ]).prop_map(str::to_owned),
            2 => "\\PC{0,12}",
            1 => "[a-z0-9./-]{0,300}",
        ];
        prop_oneof![
            4 => (prop::collection::vec(part, 0..7), prop::sample::select(vec!['/', '.']))
                .prop_map(|(parts, separator)| parts.join(&separator.to_string())),
            1 => "\\PC{0,64}",
        ]
    }

    fn any_payload() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            "\\PC{0,40}".prop_map(String::into_bytes),
            prop::sample::select(vec![
                r#"{"speed":3}"#,
                "3",
                "null",
                "[]",
                r#"{"a":{"b":[1,2,{"c":null}]}}"#,
                "1e999",
                r#""\ud800""#,
                "{",
                "",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(4000))]
        /// The dispatcher's topic/payload → event function on arbitrary input: no panic; an
        /// accepted message becomes an event of a known interface about the topic's twin, and a
        /// refused one has a reason naming the topic.
        #[test]
        fn arbitrary_messages_are_read_or_refused_with_a_reason(
            topic in any_topic(),
            payload in any_payload(),
            routing_key in proptest::bool::ANY,
        ) {
            let syntax = if routing_key { TopicSyntax::RoutingKey } else { TopicSyntax::Mqtt };
            let policy = policy();
            match validate(&topic, syntax, &payload, &policy) {
                Ok(reading) => {
                    let interface = reading.topic.interface.clone();
                    let instance = reading.topic.instance.clone();
                    proptest::prop_assert!(["city-pole", "vehicle"].contains(&interface.as_str()));
                    let event = reading.into_event(None, TraceSampler::ALWAYS);
                    proptest::prop_assert_eq!(event.ty(), format!("ktwin.real.{interface}"));
                    proptest::prop_assert_eq!(event.source().to_string(), instance);
                }
                Err(rejection) => {
                    proptest::prop_assert!(!rejection.detail.is_empty());
                }
            }
        }
    }
}
