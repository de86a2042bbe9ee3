//! CloudEvent → device message translation for `ktwin.virtual.*` events, and for the commands
//! of interfaces that declare an MQTT command topic (DTDL MQTT extension). Pure: no I/O.

use cloudevents::{AttributesReader, Data, Event};
use ktwin_events::{
    CommandTopicError, DeviceBindings, EventKind, EventType, Topic, routing_key_of_mqtt_topic,
};

/// What devices receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum PayloadFormat {
    /// The event data only (what the original dispatcher sent; devices stay compatible).
    #[default]
    Data,
    /// The whole CloudEvent in JSON structured mode, so id, type and time reach the device.
    Structured,
}

/// A message for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMessage {
    /// The MQTT topic it goes to.
    pub topic: String,
    /// What it carries.
    pub payload: Vec<u8>,
}

impl DeviceMessage {
    /// The AMQP routing key RabbitMQ's MQTT plugin delivers to subscribers of the topic.
    pub fn routing_key(&self) -> String {
        routing_key_of_mqtt_topic(&self.topic)
    }
}

/// Why an event cannot go to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Not a `ktwin.virtual.<iface>` event, nor a command of an interface with an MQTT
    /// command topic.
    #[error(
        "event {id:?} has type {ty:?}; devices get ktwin.virtual.<iface> events, and the commands of interfaces declaring an MQTT commandTopic"
    )]
    NotVirtual {
        /// Event id.
        id: String,
        /// Its type.
        ty: String,
    },
    /// The source is not a usable instance name.
    #[error(
        "event {id:?} has source {source_name:?}, which cannot be a device topic segment: {reason}"
    )]
    BadSource {
        /// Event id.
        id: String,
        /// Its source.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The command cannot be sent on its interface's declared command topic.
    #[error("event {id:?}: {source}")]
    CommandTopic {
        /// Event id.
        id: String,
        /// Why.
        #[source]
        source: CommandTopicError,
    },
    /// Structured encoding failed.
    #[error("event {id:?} cannot be serialised: {reason}")]
    Encode {
        /// Event id.
        id: String,
        /// Why.
        reason: String,
    },
}

impl EgressError {
    /// The dead-letter counter's `reason` label.
    pub fn as_label(&self) -> &'static str {
        match self {
            EgressError::CommandTopic {
                source: CommandTopicError::UnsupportedPayloadFormat { .. },
                ..
            } => "unsupported_payload_format",
            EgressError::CommandTopic { .. } => "bad_command",
            EgressError::NotVirtual { .. }
            | EgressError::BadSource { .. }
            | EgressError::Encode { .. } => "not_a_device_event",
        }
    }
}

/// The device message of an event: a virtual event goes to `ktwin/virtual/<iface>/<source>`,
/// a command `ktwin.command.<iface>.<command>` to the command topic `bindings` declares for the
/// interface (`{executorId}` is the event's source); the payload per `format`.
pub fn to_device_message(
    event: &Event,
    format: PayloadFormat,
    bindings: &DeviceBindings,
) -> Result<DeviceMessage, EgressError> {
    let not_virtual = || EgressError::NotVirtual {
        id: event.id().to_owned(),
        ty: event.ty().to_owned(),
    };
    let ty: EventType = event.ty().parse().map_err(|_| not_virtual())?;
    let source = event.source().as_str();
    let topic = match (ty.kind(), ty.command_name()) {
        (EventKind::Command, Some(command)) => {
            bindings
                .command(ty.interface(), command, source)
                .ok_or_else(not_virtual)?
                .map_err(|source| EgressError::CommandTopic {
                    id: event.id().to_owned(),
                    source,
                })?
                .topic
        }
        _ => Topic::for_virtual_event(&ty, source)
            .ok_or_else(not_virtual)?
            .map_err(|err| EgressError::BadSource {
                id: event.id().to_owned(),
                source_name: event.source().to_string(),
                reason: err.to_string(),
            })?
            .mqtt_topic(),
    };
    let encode = |e: serde_json::Error| EgressError::Encode {
        id: event.id().to_owned(),
        reason: e.to_string(),
    };
    let payload = match format {
        PayloadFormat::Data => match event.data() {
            None => Vec::new(),
            Some(Data::Binary(bytes)) => bytes.clone(),
            Some(Data::String(s)) => s.clone().into_bytes(),
            Some(Data::Json(value)) => serde_json::to_vec(value).map_err(encode)?,
        },
        PayloadFormat::Structured => serde_json::to_vec(event).map_err(encode)?,
    };
    Ok(DeviceMessage { topic, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use ktwin_events::DeviceBinding;

    fn none() -> DeviceBindings {
        DeviceBindings::default()
    }

    fn vehicle(payload_format: &str) -> DeviceBindings {
        DeviceBindings::new(vec![DeviceBinding {
            interface: "vehicle".into(),
            model_id: "dtmi:example:Vehicle;1".into(),
            payload_format: payload_format.into(),
            telemetry_topic: None,
            command_topic: Some("vehicles/{executorId}/command/{commandName}".into()),
            commands: vec!["setColor".into()],
        }])
        .unwrap()
    }

    #[test]
    fn commands_go_to_the_declared_command_topic() {
        let bindings = vehicle(ktwin_events::JSON_PAYLOAD_FORMAT);
        let command = virtual_event("ktwin.command.vehicle.setcolor", "car-7");
        let message = to_device_message(&command, PayloadFormat::Data, &bindings).unwrap();
        assert_eq!(message.topic, "vehicles/car-7/command/setColor");
        assert_eq!(message.routing_key(), "vehicles.car-7.command.setColor");
        assert_eq!(message.payload, br#"{"batteryLevel":90}"#);
        // Virtual events of the interface still use the fixed grammar.
        let virtual_ = virtual_event("ktwin.virtual.vehicle", "car-7");
        let message = to_device_message(&virtual_, PayloadFormat::Data, &bindings).unwrap();
        assert_eq!(message.topic, "ktwin/virtual/vehicle/car-7");
        // Commands of other interfaces do not go to devices.
        let other = virtual_event("ktwin.command.city-pole.reboot", "pole-1");
        let err = to_device_message(&other, PayloadFormat::Data, &bindings).unwrap_err();
        assert_eq!(err.as_label(), "not_a_device_event");
        let undeclared = virtual_event("ktwin.command.vehicle.honk", "car-7");
        let err = to_device_message(&undeclared, PayloadFormat::Data, &bindings).unwrap_err();
        assert_eq!(err.as_label(), "bad_command", "{err}");
        let avro = vehicle("Avro/1.11.0");
        let err = to_device_message(&command, PayloadFormat::Data, &avro).unwrap_err();
        assert_eq!(err.as_label(), "unsupported_payload_format");
        assert!(err.to_string().contains("Avro/1.11.0"), "{err}");
    }

    fn virtual_event(ty: &str, source: &str) -> Event {
        EventBuilderV10::new()
            .id("e-1")
            .ty(ty)
            .source(source)
            .data("application/json", serde_json::json!({"batteryLevel": 90}))
            .build()
            .unwrap()
    }

    #[test]
    fn data_format_sends_the_bare_body_to_the_instance_topic() {
        let event = virtual_event("ktwin.virtual.ngsi-ld-city-device", "device-1");
        let message = to_device_message(&event, PayloadFormat::Data, &none()).unwrap();
        assert_eq!(message.topic, "ktwin/virtual/ngsi-ld-city-device/device-1");
        assert_eq!(
            message.routing_key(),
            "ktwin.virtual.ngsi-ld-city-device.device-1"
        );
        assert_eq!(message.payload, br#"{"batteryLevel":90}"#);
    }

    #[test]
    fn structured_format_keeps_the_metadata() {
        let event = virtual_event("ktwin.virtual.city-pole", "pole-1");
        let message = to_device_message(&event, PayloadFormat::Structured, &none()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(json["id"], "e-1");
        assert_eq!(json["type"], "ktwin.virtual.city-pole");
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["data"]["batteryLevel"], 90);
        let back: Event = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(back, event);
    }

    /// MQTT 3.1.1 has no headers: the trace reaches a device only inside a structured payload
    /// (docs/architecture.md, "Traces"); the data format stays the bare data original devices
    /// parse.
    #[test]
    fn only_the_structured_format_carries_the_trace_to_the_device() {
        let mut event = virtual_event("ktwin.virtual.city-pole", "pole-1");
        ktwin_events::trace::start_trace(&mut event, ktwin_events::trace::TraceSampler::ALWAYS);
        let traceparent = ktwin_events::trace::EventTrace::of(&event)
            .unwrap()
            .parent
            .to_string();
        let message = to_device_message(&event, PayloadFormat::Structured, &none()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(json["traceparent"], traceparent.as_str());
        let message = to_device_message(&event, PayloadFormat::Data, &none()).unwrap();
        assert_eq!(message.payload, br#"{"batteryLevel":90}"#);
    }

    #[test]
    fn refuses_other_kinds_and_unusable_sources() {
        let real = virtual_event("ktwin.real.city-pole", "pole-1");
        assert!(matches!(
            to_device_message(&real, PayloadFormat::Data, &none()),
            Err(EgressError::NotVirtual { .. })
        ));
        let junk = virtual_event("something", "pole-1");
        assert!(matches!(
            to_device_message(&junk, PayloadFormat::Data, &none()),
            Err(EgressError::NotVirtual { .. })
        ));
        let dotted = virtual_event("ktwin.virtual.city-pole", "a.b");
        let err = to_device_message(&dotted, PayloadFormat::Data, &none()).unwrap_err();
        assert!(err.to_string().contains("\"a.b\""), "{err}");
    }
}
