//! How an interface is conveyed over MQTT, as the DTDL MQTT extension
//! (`dtmi:dtdl:extension:mqtt;1`…`;4`) declares it with the `Mqtt` co-type.
//!
//! ```
//! use ktwin_dtdl::{Document, ParseOptions, parse};
//!
//! let doc = Document::new("vehicle.json", r#"{
//!   "@context": ["dtmi:dtdl:context;4", "dtmi:dtdl:extension:mqtt;3"],
//!   "@id": "dtmi:example:Vehicle;1",
//!   "@type": ["Interface", "Mqtt"],
//!   "telemetryTopic": "vehicles/{modelId}/{senderId}/telemetry",
//!   "commandTopic": "vehicles/{executorId}/command/{commandName}",
//!   "payloadFormat": "Json/ecma/404",
//!   "contents": [{ "@type": "Telemetry", "name": "speed", "schema": "double" }]
//! }"#);
//! let models = parse(&[doc], &ParseOptions::default()).expect("valid model");
//! let mqtt = models.interface("dtmi:example:Vehicle;1").unwrap().mqtt().unwrap();
//! assert_eq!(mqtt.payload_format, "Json/ecma/404");
//! let telemetry = mqtt.telemetry_topic.as_ref().unwrap();
//! let tokens = telemetry.captures("vehicles/dtmi:example:Vehicle;1/car-7/telemetry").unwrap();
//! assert_eq!(tokens["senderId"], "car-7");
//! let command = mqtt.command_topic.as_ref().unwrap();
//! let topic = command.fill(&[("executorId", "car-7"), ("commandName", "honk")].into()).unwrap();
//! assert_eq!(topic, "vehicles/car-7/command/honk");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Prefix of the supplemental types of the MQTT extension (`…:v3:Mqtt`).
const MQTT_TYPE_PREFIX: &str = "dtmi:dtdl:extension:mqtt:v";

/// The MQTT binding of an interface co-typed `Mqtt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MqttBinding {
    /// Version of the MQTT extension the interface uses (1 to 4).
    pub extension_version: u8,
    /// How instances are serialized in payloads (`Json/ecma/404`, `Avro/1.11.0`, `Protobuf/3`, …).
    pub payload_format: String,
    /// Where telemetry is published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_topic: Option<TopicPattern>,
    /// Where command requests are published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_topic: Option<TopicPattern>,
    /// Where property requests and notifications are published (extension v4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property_topic: Option<TopicPattern>,
    /// Shared-subscription group of telemetry consumers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_service_group_id: Option<String>,
    /// Shared-subscription group of command executors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_service_group_id: Option<String>,
}

impl MqttBinding {
    /// The binding declared by an element's supplemental types and properties (`None` when
    /// it is not co-typed `Mqtt`).
    pub(crate) fn from_supplemental(
        types: &[String],
        properties: &BTreeMap<String, serde_json::Value>,
    ) -> Option<MqttBinding> {
        let extension_version = types.iter().find_map(|t| {
            let version = t.strip_prefix(MQTT_TYPE_PREFIX)?.strip_suffix(":Mqtt")?;
            version.parse().ok()
        })?;
        let text = |name: &str| properties.get(name).and_then(|v| v.as_str());
        let topic = |name: &str| text(name).map(TopicPattern::new);
        Some(MqttBinding {
            extension_version,
            payload_format: text("payloadFormat").unwrap_or_default().to_string(),
            telemetry_topic: topic("telemetryTopic"),
            command_topic: topic("commandTopic"),
            property_topic: topic("propertyTopic"),
            telemetry_service_group_id: text("telemServiceGroupId").map(str::to_string),
            command_service_group_id: text("cmdServiceGroupId").map(str::to_string),
        })
    }
}

/// One level of a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// A brace-enclosed token, `{senderId}` or `{ex:tenant}` (named `ex:tenant`).
    Token(String),
}

/// An MQTT topic pattern of the extension: `/`-separated levels, each a literal or a
/// brace-enclosed token such as `{senderId}`, `{commandName}` or `{ex:tenant}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    text: String,
    levels: Vec<Level>,
}

impl TopicPattern {
    /// Reads a pattern (already validated against the extension's topic pattern by the parser).
    pub fn new(text: &str) -> TopicPattern {
        let levels = text
            .split('/')
            .map(
                |level| match level.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
                    Some(token) => Level::Token(token.to_string()),
                    None => Level::Literal(level.to_string()),
                },
            )
            .collect();
        TopicPattern {
            text: text.to_string(),
            levels,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The tokens of the pattern, in order.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|l| match l {
            Level::Token(t) => Some(t.as_str()),
            Level::Literal(_) => None,
        })
    }

    /// The MQTT subscription filter that receives every topic of the pattern (each token
    /// becomes `+`).
    pub fn subscription_filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Token(_) => "+",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The token values of a concrete topic, or `None` when the topic does not match.
    pub fn captures(&self, topic: &str) -> Option<BTreeMap<String, String>> {
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != self.levels.len() {
            return None;
        }
        let mut tokens = BTreeMap::new();
        for (level, part) in self.levels.iter().zip(parts) {
            match level {
                Level::Literal(s) if s == part => {}
                Level::Token(t) if !part.is_empty() => {
                    tokens.insert(t.clone(), part.to_string());
                }
                _ => return None,
            }
        }
        Some(tokens)
    }

    /// The concrete topic with every token replaced by its value; `None` when a token has no
    /// value, or a value is empty or would change the topic's levels (`/`, `+`, `#`).
    pub fn fill(&self, values: &BTreeMap<&str, &str>) -> Option<String> {
        let mut levels = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            match level {
                Level::Literal(s) => levels.push(s.as_str()),
                Level::Token(t) => {
                    let value = values.get(t.as_str())?;
                    if value.is_empty() || value.contains(['/', '+', '#']) {
                        return None;
                    }
                    levels.push(value);
                }
            }
        }
        Some(levels.join("/"))
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for TopicPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_fill_and_subscribe_by_level() {
        let pattern = TopicPattern::new("{ex:tenant}/vehicles/{senderId}/telemetry");
        assert_eq!(
            pattern.tokens().collect::<Vec<_>>(),
            ["ex:tenant", "senderId"]
        );
        assert_eq!(pattern.subscription_filter(), "+/vehicles/+/telemetry");
        let tokens = pattern.captures("acme/vehicles/car-7/telemetry").unwrap();
        assert_eq!(tokens["ex:tenant"], "acme");
        assert_eq!(tokens["senderId"], "car-7");
        assert!(pattern.captures("acme/vehicles/car-7").is_none());
        assert!(pattern.captures("acme/trucks/car-7/telemetry").is_none());
        assert!(pattern.captures("acme/vehicles//telemetry").is_none());
        let values = BTreeMap::from([("ex:tenant", "acme"), ("senderId", "car-7")]);
        assert_eq!(
            pattern.fill(&values).as_deref(),
            Some("acme/vehicles/car-7/telemetry")
        );
        let bad = BTreeMap::from([("ex:tenant", "a/b"), ("senderId", "car-7")]);
        assert_eq!(pattern.fill(&bad), None);
        assert_eq!(pattern.fill(&BTreeMap::from([("senderId", "x")])), None);
    }
}
