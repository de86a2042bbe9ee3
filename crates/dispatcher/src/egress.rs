//! CloudEvent → device message translation for `ktwin.virtual.*` events. Pure: no I/O.

use cloudevents::{AttributesReader, Data, Event};
use ktwin_events::{EventType, Topic};

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
    /// Where it goes.
    pub topic: Topic,
    /// What it carries.
    pub payload: Vec<u8>,
}

/// Why an event cannot go to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Not a `ktwin.virtual.<iface>` event.
    #[error("event {id:?} has type {ty:?}; only ktwin.virtual.<iface> events go to devices")]
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
    /// Structured encoding failed.
    #[error("event {id:?} cannot be serialised: {reason}")]
    Encode {
        /// Event id.
        id: String,
        /// Why.
        reason: String,
    },
}

/// The device message of a virtual event: topic `ktwin/virtual/<iface>/<source>`, payload per
/// `format`.
pub fn to_device_message(
    event: &Event,
    format: PayloadFormat,
) -> Result<DeviceMessage, EgressError> {
    let not_virtual = || EgressError::NotVirtual {
        id: event.id().to_owned(),
        ty: event.ty().to_owned(),
    };
    let ty: EventType = event.ty().parse().map_err(|_| not_virtual())?;
    let topic = Topic::for_virtual_event(&ty, event.source().as_str())
        .ok_or_else(not_virtual)?
        .map_err(|err| EgressError::BadSource {
            id: event.id().to_owned(),
            source_name: event.source().to_string(),
            reason: err.to_string(),
        })?;
    let payload = match format {
        PayloadFormat::Data => match event.data() {
            None => Vec::new(),
            Some(Data::Binary(bytes)) => bytes.clone(),
            Some(Data::String(s)) => s.clone().into_bytes(),
            Some(Data::Json(value)) => {
                serde_json::to_vec(value).map_err(|e| EgressError::Encode {
                    id: event.id().to_owned(),
                    reason: e.to_string(),
                })?
            }
        },
        PayloadFormat::Structured => {
            serde_json::to_vec(event).map_err(|e| EgressError::Encode {
                id: event.id().to_owned(),
                reason: e.to_string(),
            })?
        }
    };
    Ok(DeviceMessage { topic, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

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
        let message = to_device_message(&event, PayloadFormat::Data).unwrap();
        assert_eq!(
            message.topic.mqtt_topic(),
            "ktwin/virtual/ngsi-ld-city-device/device-1"
        );
        assert_eq!(
            message.topic.routing_key(),
            "ktwin.virtual.ngsi-ld-city-device.device-1"
        );
        assert_eq!(message.payload, br#"{"batteryLevel":90}"#);
    }

    #[test]
    fn structured_format_keeps_the_metadata() {
        let event = virtual_event("ktwin.virtual.city-pole", "pole-1");
        let message = to_device_message(&event, PayloadFormat::Structured).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(json["id"], "e-1");
        assert_eq!(json["type"], "ktwin.virtual.city-pole");
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["data"]["batteryLevel"], 90);
        let back: Event = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn refuses_other_kinds_and_unusable_sources() {
        let real = virtual_event("ktwin.real.city-pole", "pole-1");
        assert!(matches!(
            to_device_message(&real, PayloadFormat::Data),
            Err(EgressError::NotVirtual { .. })
        ));
        let junk = virtual_event("something", "pole-1");
        assert!(matches!(
            to_device_message(&junk, PayloadFormat::Data),
            Err(EgressError::NotVirtual { .. })
        ));
        let dotted = virtual_event("ktwin.virtual.city-pole", "a.b");
        let err = to_device_message(&dotted, PayloadFormat::Data).unwrap_err();
        assert!(err.to_string().contains("\"a.b\""), "{err}");
    }
}
