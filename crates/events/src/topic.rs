//! MQTT topics of devices and the AMQP routing keys RabbitMQ's MQTT plugin derives from them.

use crate::TYPE_PREFIX;
use crate::event_type::{EventKind, EventType};
use crate::name::{GrammarError, validate_name};

/// Direction of a device topic: devices publish `real`, and subscribe to `virtual`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    /// `ktwin/real/...`: device → platform.
    Real,
    /// `ktwin/virtual/...`: platform → device.
    Virtual,
}

impl TopicKind {
    fn as_str(self) -> &'static str {
        match self {
            TopicKind::Real => "real",
            TopicKind::Virtual => "virtual",
        }
    }

    fn event_kind(self) -> EventKind {
        match self {
            TopicKind::Real => EventKind::Real,
            TopicKind::Virtual => EventKind::Virtual,
        }
    }

    /// MQTT subscription filter for every topic of this kind, e.g. `ktwin/real/#`.
    pub fn mqtt_filter(self) -> String {
        format!("{TYPE_PREFIX}/{}/#", self.as_str())
    }

    /// MQTT subscription filters for every device topic of this kind in both spellings a device
    /// may use: `ktwin/real/#`, and `+` for the dotted `ktwin.real.<iface>.<instance>` of the
    /// original KTWIN's devices. A dotted topic is one level, which no filter narrows by
    /// prefix: `+` lets every one-level topic through, and those outside the grammar are then
    /// refused as bad topics. A topic of more levels outside `ktwin/real/` reaches no
    /// subscriber.
    pub fn mqtt_filters(self) -> [String; 2] {
        [self.mqtt_filter(), "+".to_owned()]
    }

    /// AMQP topic-exchange binding pattern for every instance of `interface`, e.g.
    /// `ktwin.real.city-pole.#`.
    pub fn routing_key_pattern(self, interface: &str) -> Result<String, GrammarError> {
        validate_name("interface", interface)?;
        Ok(format!("{TYPE_PREFIX}.{}.{interface}.#", self.as_str()))
    }
}

/// The address of one device: `ktwin/<kind>/<interface>/<instance>` over MQTT, or
/// `ktwin.<kind>.<interface>.<instance>` as an AMQP routing key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic {
    /// Direction of the topic.
    pub kind: TopicKind,
    /// The twin interface of the device.
    pub interface: String,
    /// The twin instance of the device.
    pub instance: String,
}

impl Topic {
    /// A topic with validated names.
    pub fn new(kind: TopicKind, interface: &str, instance: &str) -> Result<Self, GrammarError> {
        validate_name("interface", interface)?;
        validate_name("instance", instance)?;
        Ok(Self {
            kind,
            interface: interface.to_owned(),
            instance: instance.to_owned(),
        })
    }

    /// The topic a virtual event for `instance` is delivered on; `None` unless `event_type` is
    /// a `ktwin.virtual.*` type.
    pub fn for_virtual_event(
        event_type: &EventType,
        instance: &str,
    ) -> Option<Result<Self, GrammarError>> {
        (event_type.kind() == EventKind::Virtual)
            .then(|| Self::new(TopicKind::Virtual, event_type.interface(), instance))
    }

    /// Parses `ktwin/{real|virtual}/<interface>/<instance>`.
    pub fn parse_mqtt(topic: &str) -> Result<Self, GrammarError> {
        Self::parse_with(topic, '/').ok_or_else(|| GrammarError::Topic(topic.to_owned()))?
    }

    /// Parses `ktwin.{real|virtual}.<interface>.<instance>`.
    pub fn parse_routing_key(key: &str) -> Result<Self, GrammarError> {
        Self::parse_with(key, '.').ok_or_else(|| GrammarError::RoutingKey(key.to_owned()))?
    }

    /// Parses a device address in either spelling: `ktwin/<kind>/<interface>/<instance>`, or
    /// the dotted `ktwin.<kind>.<interface>.<instance>` on which the original KTWIN's devices
    /// publish (RabbitMQ's MQTT plugin accepts it as a topic and, translating only `/`, gives
    /// it the same routing key as the slash form). Names contain neither separator, so an
    /// address with a `/` is read as the slash form.
    pub fn parse_device(address: &str) -> Result<Self, GrammarError> {
        if address.contains('/') {
            Self::parse_mqtt(address)
        } else {
            Self::parse_routing_key(address)
        }
    }

    /// `None` when the shape is wrong, `Some(Err)` when a name is invalid.
    fn parse_with(s: &str, sep: char) -> Option<Result<Self, GrammarError>> {
        let mut parts = s.split(sep);
        if parts.next()? != TYPE_PREFIX {
            return None;
        }
        let kind = match parts.next()? {
            "real" => TopicKind::Real,
            "virtual" => TopicKind::Virtual,
            _ => return None,
        };
        let interface = parts.next()?;
        let instance = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self::new(kind, interface, instance))
    }

    /// `ktwin/<kind>/<interface>/<instance>`.
    pub fn mqtt_topic(&self) -> String {
        format!(
            "{TYPE_PREFIX}/{}/{}/{}",
            self.kind.as_str(),
            self.interface,
            self.instance
        )
    }

    /// `ktwin.<kind>.<interface>.<instance>`, as RabbitMQ's MQTT plugin maps the topic.
    pub fn routing_key(&self) -> String {
        format!(
            "{TYPE_PREFIX}.{}.{}.{}",
            self.kind.as_str(),
            self.interface,
            self.instance
        )
    }

    /// The CloudEvent type of messages on this topic (`ktwin.real.<iface>` or
    /// `ktwin.virtual.<iface>`); the instance becomes the event's `source`.
    pub fn event_type(&self) -> EventType {
        EventType::plain(self.kind.event_kind(), &self.interface)
            .expect("interface validated at construction")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_addresses_parse_in_both_spellings() {
        let topic = Topic::new(TopicKind::Real, "city-pole", "pole-1").unwrap();
        assert_eq!(
            Topic::parse_device("ktwin/real/city-pole/pole-1").unwrap(),
            topic
        );
        assert_eq!(
            Topic::parse_device("ktwin.real.city-pole.pole-1").unwrap(),
            topic
        );
        for bad in [
            "ktwin/real/city.pole/pole-1",
            "ktwin.real.city-pole",
            "ktwin.real.city-pole.pole-1.x",
            "city.real.pole.p",
            "pole",
            "",
        ] {
            assert!(Topic::parse_device(bad).is_err(), "{bad:?}");
        }
        assert_eq!(TopicKind::Real.mqtt_filters(), ["ktwin/real/#", "+"]);
    }
    use proptest::prelude::*;

    #[test]
    fn mqtt_and_routing_key_forms_agree() {
        let t = Topic::parse_mqtt("ktwin/real/ngsi-ld-city-parkingspot/spot-1").unwrap();
        assert_eq!(
            t.routing_key(),
            "ktwin.real.ngsi-ld-city-parkingspot.spot-1"
        );
        assert_eq!(Topic::parse_routing_key(&t.routing_key()).unwrap(), t);
        assert_eq!(
            t.event_type().to_string(),
            "ktwin.real.ngsi-ld-city-parkingspot"
        );
    }

    #[test]
    fn wrong_shapes_are_rejected_with_the_input_named() {
        for bad in [
            "ktwin/real/iface",
            "ktwin/real/iface/inst/extra",
            "ktwin/store/iface/inst",
            "other/real/iface/inst",
            "ktwin/real//inst",
            "",
        ] {
            let err = Topic::parse_mqtt(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")) || bad.contains("//"),
                "{err}"
            );
        }
        assert!(Topic::parse_routing_key("ktwin.real.a").is_err());
        assert!(Topic::parse_routing_key("ktwin.real.a.b.c").is_err());
    }

    #[test]
    fn filters_and_patterns() {
        assert_eq!(TopicKind::Real.mqtt_filter(), "ktwin/real/#");
        assert_eq!(
            TopicKind::Real.routing_key_pattern("city-pole").unwrap(),
            "ktwin.real.city-pole.#"
        );
        assert!(TopicKind::Real.routing_key_pattern("a.b").is_err());
    }

    #[test]
    fn virtual_event_topics() {
        let ty = EventType::virtual_("city-pole").unwrap();
        let topic = Topic::for_virtual_event(&ty, "pole-1").unwrap().unwrap();
        assert_eq!(topic.mqtt_topic(), "ktwin/virtual/city-pole/pole-1");
        let real = EventType::real("city-pole").unwrap();
        assert!(Topic::for_virtual_event(&real, "pole-1").is_none());
    }

    proptest! {
        #[test]
        fn parse_inverts_format(real in any::<bool>(), iface in "[a-z0-9][a-z0-9_-]{0,30}", inst in "[a-z0-9][a-z0-9_-]{0,30}") {
            let kind = if real { TopicKind::Real } else { TopicKind::Virtual };
            let t = Topic::new(kind, &iface, &inst).unwrap();
            prop_assert_eq!(Topic::parse_mqtt(&t.mqtt_topic()).unwrap(), t.clone());
            prop_assert_eq!(Topic::parse_routing_key(&t.routing_key()).unwrap(), t);
        }

        #[test]
        fn separators_inside_names_are_rejected(iface in "[a-z]{1,10}", inst in "[a-z]{1,5}[./][a-z]{1,5}") {
            prop_assert!(Topic::new(TopicKind::Real, &iface, &inst).is_err());
        }
    }
}
