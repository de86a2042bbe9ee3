//! Device topics an interface declares itself with the DTDL MQTT extension (an Interface
//! co-typed `Mqtt`: `telemetryTopic`, `commandTopic`, `payloadFormat`), beside the fixed
//! `ktwin/real/<iface>/<instance>` grammar.
//!
//! The extension's topic patterns are `/`-separated labels, each a literal or a brace-enclosed
//! token whose meaning the extension leaves to the implementation. ktwin fills these tokens:
//!
//! | token | meaning | in |
//! | --- | --- | --- |
//! | `{modelId}` | the interface's DTMI (`dtmi:example:Vehicle;1`) | telemetry, command |
//! | `{senderId}` | the twin instance publishing telemetry (required) | telemetry |
//! | `{telemetryName}` | the one telemetry the payload carries, as a bare value | telemetry |
//! | `{executorId}` | the twin instance a command is for | command |
//! | `{commandName}` | the command's name as the model declares it | command |
//! | `{prefix:name}` | the user's own: any value when matching | telemetry |
//!
//! Anything else is refused with the token named, so a typo (`{senderID}`) fails at start-up
//! instead of silently matching nothing.
//!
//! ```
//! use ktwin_events::{DeviceBinding, DeviceBindings};
//!
//! let vehicle = DeviceBinding {
//!     interface: "vehicle".into(),
//!     model_id: "dtmi:example:Vehicle;1".into(),
//!     payload_format: "Json/ecma/404".into(),
//!     telemetry_topic: Some("vehicles/{modelId}/{senderId}/telemetry".into()),
//!     command_topic: Some("vehicles/{executorId}/command/{commandName}".into()),
//!     commands: vec!["setColor".into()],
//! };
//! let bindings = DeviceBindings::new(vec![vehicle]).unwrap();
//! let telemetry = bindings
//!     .telemetry("vehicles/dtmi:example:Vehicle;1/car-7/telemetry")
//!     .unwrap();
//! assert_eq!((telemetry.interface, telemetry.instance), ("vehicle", "car-7"));
//! let command = bindings.command("vehicle", "setcolor", "car-7").unwrap().unwrap();
//! assert_eq!(command.topic, "vehicles/car-7/command/setColor");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::TYPE_PREFIX;
use crate::event_type::EventType;
use crate::name::validate_name;

/// The `payloadFormat` of JSON payloads (RFC 8259 / ECMA-404).
pub const JSON_PAYLOAD_FORMAT: &str = "Json/ecma/404";

/// How the devices of one interface talk MQTT, as its model declares with the `Mqtt` co-type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceBinding {
    /// The TwinInterface name.
    pub interface: String,
    /// The DTMI of the interface (what `{modelId}` stands for).
    pub model_id: String,
    /// How payloads are serialized; only [`JSON_PAYLOAD_FORMAT`] is understood.
    pub payload_format: String,
    /// Where devices publish telemetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_topic: Option<String>,
    /// Where command requests are sent to devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_topic: Option<String>,
    /// The interface's commands as declared (event types carry them lower-cased).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
}

impl DeviceBinding {
    /// Whether payloads are JSON, the only format ktwin reads and writes.
    pub fn is_json(&self) -> bool {
        self.payload_format == JSON_PAYLOAD_FORMAT
    }

    /// The command events (`ktwin.command.<iface>.<command>`) devices get on the declared
    /// command topic; none without one (names unusable in event types are left out: the
    /// planner refuses them first).
    pub fn command_event_types(&self) -> impl Iterator<Item = EventType> + '_ {
        self.commands
            .iter()
            .filter(|_| self.command_topic.is_some())
            .filter_map(|command| EventType::command(&self.interface, command).ok())
    }
}

/// Why a declared binding cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// A topic pattern breaks the extension's grammar or ktwin's use of its tokens.
    #[error("interface {interface:?}: {field} {pattern:?}: {reason}")]
    Pattern {
        /// The interface declaring it.
        interface: String,
        /// `telemetryTopic` or `commandTopic`.
        field: &'static str,
        /// The pattern as declared.
        pattern: String,
        /// What is wrong, and what was expected.
        #[source]
        reason: PatternError,
    },
    /// Two interfaces declare telemetry topics that one topic can match.
    #[error(
        "interfaces {first:?} and {second:?} declare telemetry topics {first_pattern:?} and {second_pattern:?}, which the same topic can match: make them differ in a literal level or use {{modelId}}"
    )]
    Overlap {
        /// One interface.
        first: String,
        /// Its pattern.
        first_pattern: String,
        /// The other.
        second: String,
        /// Its pattern.
        second_pattern: String,
    },
    /// An interface is declared twice.
    #[error("interface {0:?} has two MQTT bindings")]
    Duplicate(String),
}

/// Why a topic pattern breaks the extension's grammar or ktwin's use of its tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The first level is the platform's own `ktwin`.
    #[error(
        "topics under {TYPE_PREFIX}/ are the platform's own (ktwin/real/<iface>/<instance>); declare another first level"
    )]
    PlatformPrefix,
    /// A token is named on two levels.
    #[error("token {0} appears twice; a topic names it once")]
    RepeatedToken(String),
    /// A telemetry topic cannot name the twin instance.
    #[error("has no {{senderId}} level, so a message cannot name its twin instance")]
    NoSenderId,
    /// A `{...}` level whose inside is not a token name.
    #[error("level {0:?} is not a token (letters, optionally after a `prefix:`)")]
    NotAToken(String),
    /// A token name that ktwin does not fill and that has no prefix of its own.
    #[error(
        "token {label:?} is not one ktwin fills: use {{modelId}}, {{senderId}}, {{telemetryName}}, {{executorId}}, {{commandName}} or a prefixed token of your own such as {{ex:{name}}}"
    )]
    UnknownToken {
        /// The level as written.
        label: String,
        /// The token's name.
        name: String,
    },
    /// A token that means nothing in this kind of topic.
    #[error("token {label:?} has no meaning in a {field}")]
    TokenOutOfPlace {
        /// The level as written.
        label: String,
        /// `telemetryTopic` or `commandTopic`.
        field: &'static str,
    },
    /// `{modelId}` in the pattern of an interface that has no DTMI to fill it with.
    #[error("uses {{modelId}} but the interface has no DTMI (spec.dtmi)")]
    ModelIdWithoutDtmi,
    /// Two `/` in a row, or one at an end.
    #[error("has an empty level (two '/' in a row, or one at an end)")]
    EmptyLevel,
    /// A first level starting with `$`.
    #[error("starts with '$', which MQTT reserves for brokers")]
    ReservedDollar,
    /// A literal level holding a character MQTT or the pattern grammar reserves.
    #[error(
        "level {label:?} holds {bad:?}: literal levels are printable ASCII without space, '\"', '+', '#', '{{' or '}}'"
    )]
    BadCharacter {
        /// The level as written.
        label: String,
        /// The first character not allowed.
        bad: char,
    },
}

/// Why a command cannot be sent on an interface's command topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandTopicError {
    /// The command is not one the interface declares.
    #[error("interface {interface:?} declares no command {command:?} (it has {declared:?})")]
    UnknownCommand {
        /// The interface.
        interface: String,
        /// The command name asked for.
        command: String,
        /// The commands it declares.
        declared: Vec<String>,
    },
    /// The instance cannot fill a topic level.
    #[error("instance {instance:?} cannot fill {{executorId}} of {pattern:?}: {reason}")]
    BadInstance {
        /// The instance.
        instance: String,
        /// The command topic pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// The interface's payloads are not JSON.
    #[error(
        "interface {interface:?} declares payloadFormat {format:?}; ktwin only writes {JSON_PAYLOAD_FORMAT:?}"
    )]
    UnsupportedPayloadFormat {
        /// The interface.
        interface: String,
        /// Its declared format.
        format: String,
    },
}

/// A token ktwin fills in a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Token {
    ModelId,
    SenderId,
    TelemetryName,
    ExecutorId,
    CommandName,
    /// A prefixed token of the user's (`{ex:tenant}`): matches any value.
    Custom(String),
}

impl Token {
    fn parse(text: &str) -> Option<Token> {
        Some(match text {
            "modelId" => Token::ModelId,
            "senderId" => Token::SenderId,
            "telemetryName" => Token::TelemetryName,
            "executorId" => Token::ExecutorId,
            "commandName" => Token::CommandName,
            custom if custom.contains(':') => Token::Custom(custom.to_owned()),
            _ => return None,
        })
    }
}

/// One level of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Token(Token),
}

/// Which topic a pattern declares: decides which tokens it may and must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Telemetry,
    Command,
}

impl Use {
    fn field(self) -> &'static str {
        match self {
            Use::Telemetry => "telemetryTopic",
            Use::Command => "commandTopic",
        }
    }

    fn allows(self, token: &Token) -> bool {
        match self {
            Use::Telemetry => !matches!(token, Token::ExecutorId | Token::CommandName),
            Use::Command => matches!(
                token,
                Token::ModelId | Token::ExecutorId | Token::CommandName
            ),
        }
    }
}

/// A validated topic pattern of the MQTT extension, with ktwin's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TopicTemplate {
    text: String,
    levels: Vec<Level>,
}

/// Whether `c` may appear in a literal label (printable ASCII but space, `"`, `+`, `#`, `{`,
/// `}` and `/`, as the extension's topic pattern says).
fn label_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '"' | '+' | '#' | '{' | '}' | '/')
}

/// Whether `text` is a token name: ASCII letters, optionally after a `letters:` prefix.
fn token_name(text: &str) -> bool {
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    match text.split_once(':') {
        Some((prefix, name)) => letters(prefix) && letters(name),
        None => letters(text),
    }
}

impl TopicTemplate {
    fn parse(text: &str, usage: Use) -> Result<TopicTemplate, PatternError> {
        let mut levels = Vec::new();
        for (i, label) in text.split('/').enumerate() {
            levels.push(Self::level(label, i, usage)?);
        }
        if matches!(levels.first(), Some(Level::Literal(first)) if first == TYPE_PREFIX) {
            return Err(PatternError::PlatformPrefix);
        }
        let count = |wanted: &Token| {
            levels
                .iter()
                .filter(|l| matches!(l, Level::Token(t) if t == wanted))
                .count()
        };
        for level in &levels {
            if let Level::Token(token) = level
                && count(token) > 1
            {
                return Err(PatternError::RepeatedToken(format!("{token:?}")));
            }
        }
        if usage == Use::Telemetry && count(&Token::SenderId) == 0 {
            return Err(PatternError::NoSenderId);
        }
        Ok(TopicTemplate {
            text: text.to_owned(),
            levels,
        })
    }

    fn level(label: &str, index: usize, usage: Use) -> Result<Level, PatternError> {
        if let Some(inner) = label.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
            if !token_name(inner) {
                return Err(PatternError::NotAToken(label.to_owned()));
            }
            let token = Token::parse(inner).ok_or_else(|| PatternError::UnknownToken {
                label: label.to_owned(),
                name: inner.to_owned(),
            })?;
            if !usage.allows(&token) {
                return Err(PatternError::TokenOutOfPlace {
                    label: label.to_owned(),
                    field: usage.field(),
                });
            }
            return Ok(Level::Token(token));
        }
        if label.is_empty() {
            return Err(PatternError::EmptyLevel);
        }
        if index == 0 && label.starts_with('$') {
            return Err(PatternError::ReservedDollar);
        }
        if let Some(bad) = label.chars().find(|c| !label_char(*c)) {
            return Err(PatternError::BadCharacter {
                label: label.to_owned(),
                bad,
            });
        }
        Ok(Level::Literal(label.to_owned()))
    }

    fn has(&self, token: &Token) -> bool {
        self.levels
            .iter()
            .any(|l| matches!(l, Level::Token(t) if t == token))
    }

    /// The MQTT subscription filter receiving every topic of the pattern (`+` per token).
    fn subscription_filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Token(_) => "+",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The token values of `topic`, or `None` when it does not match (`{modelId}` must be
    /// `model_id`).
    fn captures<'t>(&self, topic: &'t str, model_id: &str) -> Option<Vec<(&Token, &'t str)>> {
        let mut parts = topic.split('/');
        let mut values = Vec::new();
        for level in &self.levels {
            let part = parts.next()?;
            match level {
                Level::Literal(s) if s == part => {}
                Level::Token(Token::ModelId) if part == model_id => {}
                Level::Token(
                    token @ (Token::SenderId | Token::TelemetryName | Token::Custom(_)),
                ) if !part.is_empty() => {
                    values.push((token, part));
                }
                _ => return None,
            }
        }
        parts.next().is_none().then_some(values)
    }

    /// Whether some topic matches both patterns (`{modelId}` stands for each one's DTMI).
    fn overlaps(&self, own_model: &str, other: &TopicTemplate, other_model: &str) -> bool {
        let fixed = |level: &Level, model: &str| match level {
            Level::Literal(s) => Some(s.clone()),
            Level::Token(Token::ModelId) => Some(model.to_owned()),
            Level::Token(_) => None,
        };
        self.levels.len() == other.levels.len()
            && self.levels.iter().zip(&other.levels).all(|(a, b)| {
                match (fixed(a, own_model), fixed(b, other_model)) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
            })
    }

    /// The topic with every token filled from `values`.
    fn fill(&self, values: &BTreeMap<&str, &str>) -> String {
        self.levels
            .iter()
            .map(|level| match level {
                Level::Literal(s) => s.as_str(),
                Level::Token(token) => values.get(token_key(token)).copied().unwrap_or_default(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn token_key(token: &Token) -> &str {
    match token {
        Token::ModelId => "modelId",
        Token::SenderId => "senderId",
        Token::TelemetryName => "telemetryName",
        Token::ExecutorId => "executorId",
        Token::CommandName => "commandName",
        Token::Custom(name) => name,
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One interface's binding, its patterns parsed.
#[derive(Debug, Clone)]
struct Bound {
    binding: DeviceBinding,
    telemetry: Option<TopicTemplate>,
    command: Option<TopicTemplate>,
}

/// A device message on a declared telemetry topic, resolved to its twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryTopic<'a> {
    /// The interface whose pattern matched.
    pub interface: &'a str,
    /// The twin instance (`{senderId}`), not yet validated as a name.
    pub instance: &'a str,
    /// The telemetry the payload carries alone (`{telemetryName}`), if the pattern has it.
    pub telemetry_name: Option<&'a str>,
    /// The interface's declared payload format.
    pub payload_format: &'a str,
    /// The pattern that matched.
    pub pattern: &'a str,
}

impl TelemetryTopic<'_> {
    /// Whether the payload is JSON, the only format ktwin reads.
    pub fn is_json(&self) -> bool {
        self.payload_format == JSON_PAYLOAD_FORMAT
    }
}

/// Where a command goes on an interface's declared command topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTopic {
    /// The MQTT topic.
    pub topic: String,
}

/// The declared device bindings of a model, checked: every pattern parsed, no two telemetry
/// patterns matching one topic. Pure: matching and rendering only.
#[derive(Debug, Clone, Default)]
pub struct DeviceBindings {
    bound: Vec<Bound>,
}

impl DeviceBindings {
    /// Checks `bindings`; the first problem found is returned, naming the interface, the field
    /// and the pattern.
    pub fn new(bindings: Vec<DeviceBinding>) -> Result<DeviceBindings, BindingError> {
        let mut bound: Vec<Bound> = Vec::with_capacity(bindings.len());
        for binding in bindings {
            if bound
                .iter()
                .any(|b| b.binding.interface == binding.interface)
            {
                return Err(BindingError::Duplicate(binding.interface));
            }
            let parse = |pattern: &Option<String>, usage: Use| {
                pattern
                    .as_deref()
                    .map(|text| {
                        TopicTemplate::parse(text, usage).map_err(|reason| BindingError::Pattern {
                            interface: binding.interface.clone(),
                            field: usage.field(),
                            pattern: text.to_owned(),
                            reason,
                        })
                    })
                    .transpose()
            };
            let telemetry = parse(&binding.telemetry_topic, Use::Telemetry)?;
            let command = parse(&binding.command_topic, Use::Command)?;
            if binding.model_id.is_empty()
                && let Some(template) = telemetry
                    .iter()
                    .chain(&command)
                    .find(|t| t.has(&Token::ModelId))
            {
                return Err(BindingError::Pattern {
                    interface: binding.interface.clone(),
                    field: if Some(template) == telemetry.as_ref() {
                        Use::Telemetry.field()
                    } else {
                        Use::Command.field()
                    },
                    pattern: template.text.clone(),
                    reason: PatternError::ModelIdWithoutDtmi,
                });
            }
            if let Some(new) = &telemetry {
                for other in &bound {
                    if let Some(old) = &other.telemetry
                        && old.overlaps(&other.binding.model_id, new, &binding.model_id)
                    {
                        return Err(BindingError::Overlap {
                            first: other.binding.interface.clone(),
                            first_pattern: old.text.clone(),
                            second: binding.interface.clone(),
                            second_pattern: new.text.clone(),
                        });
                    }
                }
            }
            bound.push(Bound {
                binding,
                telemetry,
                command,
            });
        }
        Ok(DeviceBindings { bound })
    }

    /// Whether no interface declares a binding.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty()
    }

    /// The bindings, as declared.
    pub fn bindings(&self) -> impl Iterator<Item = &DeviceBinding> {
        self.bound.iter().map(|b| &b.binding)
    }

    /// The MQTT subscription filters receiving every declared telemetry topic.
    pub fn telemetry_filters(&self) -> Vec<String> {
        let mut filters: Vec<String> = self
            .bound
            .iter()
            .filter_map(|b| b.telemetry.as_ref())
            .map(TopicTemplate::subscription_filter)
            .collect();
        filters.sort();
        filters.dedup();
        filters
    }

    /// The MQTT subscription filter receiving `interface`'s declared telemetry topic (`+` for
    /// each token), if it declares one.
    pub fn telemetry_filter(&self, interface: &str) -> Option<String> {
        self.bound
            .iter()
            .find(|b| b.binding.interface == interface)?
            .telemetry
            .as_ref()
            .map(TopicTemplate::subscription_filter)
    }

    /// The declared telemetry patterns, for messages naming what was expected.
    pub fn telemetry_patterns(&self) -> Vec<&str> {
        self.bound
            .iter()
            .filter_map(|b| b.telemetry.as_ref())
            .map(|t| t.text.as_str())
            .collect()
    }

    /// The declared telemetry topic `topic` matches, resolved to its twin; `None` when it
    /// matches none (at most one can match: [`DeviceBindings::new`] refuses overlaps).
    pub fn telemetry<'s>(&'s self, topic: &'s str) -> Option<TelemetryTopic<'s>> {
        self.bound.iter().find_map(|b| {
            let template = b.telemetry.as_ref()?;
            let values = template.captures(topic, &b.binding.model_id)?;
            let value = |wanted: Token| values.iter().find(|(t, _)| **t == wanted).map(|(_, v)| *v);
            Some(TelemetryTopic {
                interface: &b.binding.interface,
                instance: value(Token::SenderId)?,
                telemetry_name: value(Token::TelemetryName),
                payload_format: &b.binding.payload_format,
                pattern: &template.text,
            })
        })
    }

    /// The topic command `command` (any case) of `instance` goes to on `interface`'s declared
    /// command topic; `None` when the interface declares none.
    pub fn command(
        &self,
        interface: &str,
        command: &str,
        instance: &str,
    ) -> Option<Result<CommandTopic, CommandTopicError>> {
        let bound = self
            .bound
            .iter()
            .find(|b| b.binding.interface == interface)?;
        let template = bound.command.as_ref()?;
        let binding = &bound.binding;
        Some(Self::render_command(binding, template, command, instance))
    }

    /// Whether `interface` declares a command topic.
    pub fn has_command_topic(&self, interface: &str) -> bool {
        self.bound
            .iter()
            .any(|b| b.binding.interface == interface && b.command.is_some())
    }

    fn render_command(
        binding: &DeviceBinding,
        template: &TopicTemplate,
        command: &str,
        instance: &str,
    ) -> Result<CommandTopic, CommandTopicError> {
        if !binding.is_json() {
            return Err(CommandTopicError::UnsupportedPayloadFormat {
                interface: binding.interface.clone(),
                format: binding.payload_format.clone(),
            });
        }
        let declared = binding
            .commands
            .iter()
            .find(|c| c.eq_ignore_ascii_case(command))
            .ok_or_else(|| CommandTopicError::UnknownCommand {
                interface: binding.interface.clone(),
                command: command.to_owned(),
                declared: binding.commands.clone(),
            })?;
        validate_name("instance", instance).map_err(|err| CommandTopicError::BadInstance {
            instance: instance.to_owned(),
            pattern: template.text.clone(),
            reason: err.to_string(),
        })?;
        let values = BTreeMap::from([
            ("modelId", binding.model_id.as_str()),
            ("executorId", instance),
            ("commandName", declared.as_str()),
        ]);
        Ok(CommandTopic {
            topic: template.fill(&values),
        })
    }
}

/// The MQTT topic RabbitMQ's MQTT plugin gives an AMQP routing key it delivers to an MQTT
/// subscriber: `.` becomes `/` and `*` becomes `+` (`rabbit_mqtt_util`'s `amqp2mqtt`).
pub fn mqtt_topic_of_routing_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '.' => '/',
            '*' => '+',
            c => c,
        })
        .collect()
}

/// The AMQP routing key (or binding key, for a filter) RabbitMQ's MQTT plugin gives an MQTT
/// topic: `/` becomes `.` and `+` becomes `*`; a `.` in the topic is kept
/// (`rabbit_mqtt_util`'s `mqtt2amqp`). So the dotted `ktwin.real.<iface>.<instance>` the
/// original KTWIN's devices publish on has the same routing key as
/// `ktwin/real/<iface>/<instance>`.
pub fn routing_key_of_mqtt_topic(topic: &str) -> String {
    topic
        .chars()
        .map(|c| match c {
            '/' => '.',
            '+' => '*',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding(interface: &str, telemetry: Option<&str>, command: Option<&str>) -> DeviceBinding {
        DeviceBinding {
            interface: interface.into(),
            model_id: format!("dtmi:example:{interface};1"),
            payload_format: JSON_PAYLOAD_FORMAT.into(),
            telemetry_topic: telemetry.map(str::to_owned),
            command_topic: command.map(str::to_owned),
            commands: vec!["setColor".into()],
        }
    }

    fn reason(telemetry: Option<&str>, command: Option<&str>) -> String {
        DeviceBindings::new(vec![binding("vehicle", telemetry, command)])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_spec_examples_match_and_render() {
        let bindings = DeviceBindings::new(vec![binding(
            "vehicle",
            Some("vehicles/{modelId}/{senderId}/telemetry"),
            Some("vehicles/{executorId}/command/{commandName}"),
        )])
        .unwrap();
        assert_eq!(bindings.telemetry_filters(), ["vehicles/+/+/telemetry"]);
        let hit = bindings
            .telemetry("vehicles/dtmi:example:vehicle;1/car-7/telemetry")
            .unwrap();
        assert_eq!(hit.interface, "vehicle");
        assert_eq!(hit.instance, "car-7");
        assert_eq!(hit.telemetry_name, None);
        assert!(hit.is_json());
        for miss in [
            "vehicles/dtmi:example:other;1/car-7/telemetry",
            "vehicles/dtmi:example:vehicle;1/car-7",
            "vehicles/dtmi:example:vehicle;1//telemetry",
            "vehicles/dtmi:example:vehicle;1/car-7/telemetry/extra",
            "trucks/dtmi:example:vehicle;1/car-7/telemetry",
        ] {
            assert!(bindings.telemetry(miss).is_none(), "{miss}");
        }
        let types: Vec<String> = bindings
            .bindings()
            .flat_map(DeviceBinding::command_event_types)
            .map(|t| t.to_string())
            .collect();
        assert_eq!(types, ["ktwin.command.vehicle.setcolor"]);
        let command = bindings.command("vehicle", "SETCOLOR", "car-7").unwrap();
        assert_eq!(command.unwrap().topic, "vehicles/car-7/command/setColor");
        assert!(bindings.command("other", "setColor", "car-7").is_none());
        let unknown = bindings.command("vehicle", "honk", "car-7").unwrap();
        assert!(unknown.unwrap_err().to_string().contains("\"honk\""));
        let bad = bindings.command("vehicle", "setColor", "a/b").unwrap();
        assert!(bad.unwrap_err().to_string().contains("\"a/b\""));
    }

    #[test]
    fn telemetry_name_and_custom_tokens_capture() {
        let bindings = DeviceBindings::new(vec![binding(
            "meter",
            Some("{ex:site}/meters/{senderId}/{telemetryName}"),
            None,
        )])
        .unwrap();
        let hit = bindings.telemetry("plant-a/meters/m-1/power").unwrap();
        assert_eq!(
            (hit.interface, hit.instance, hit.telemetry_name),
            ("meter", "m-1", Some("power"))
        );
        assert_eq!(bindings.telemetry_filters(), ["+/meters/+/+"]);
        assert!(bindings.command("meter", "setColor", "m-1").is_none());
    }

    #[test]
    fn bad_patterns_name_the_problem() {
        let cases = [
            (Some("vehicles/{modelId}/telemetry"), None, "{senderId}"),
            (Some("vehicles/{deviceId}"), None, "not one ktwin fills"),
            (Some("vehicles/{senderId}/{senderId}"), None, "twice"),
            (Some("$SYS/{senderId}"), None, "'$'"),
            (Some("ktwin/real/{senderId}"), None, "platform's own"),
            (Some("a//{senderId}"), None, "empty level"),
            (Some("a b/{senderId}"), None, "' '"),
            (Some("a/{senderId}/{commandName}"), None, "no meaning"),
            (None, Some("cmd/{senderId}"), "no meaning"),
            (None, Some("cmd/{ex:tenant}/{commandName}"), "no meaning"),
            (None, Some("cmd/{a1}"), "not a token"),
        ];
        for (telemetry, command, needle) in cases {
            let message = reason(telemetry, command);
            assert!(message.contains(needle), "{message} lacks {needle:?}");
            assert!(message.contains("interface \"vehicle\""), "{message}");
        }
    }

    #[test]
    fn overlapping_telemetry_topics_are_refused() {
        let overlap = DeviceBindings::new(vec![
            binding("a", Some("devices/{senderId}/data"), None),
            binding("b", Some("devices/{senderId}/{ex:kind}"), None),
        ])
        .unwrap_err();
        assert!(matches!(overlap, BindingError::Overlap { .. }), "{overlap}");
        // The model id tells them apart.
        DeviceBindings::new(vec![
            binding("a", Some("devices/{modelId}/{senderId}"), None),
            binding("b", Some("devices/{modelId}/{senderId}"), None),
        ])
        .unwrap();
        let mut anonymous = binding("a", Some("d/{modelId}/{senderId}"), None);
        anonymous.model_id = String::new();
        let message = DeviceBindings::new(vec![anonymous])
            .unwrap_err()
            .to_string();
        assert!(message.contains("no DTMI"), "{message}");
        let twice = DeviceBindings::new(vec![binding("a", None, None), binding("a", None, None)]);
        assert!(matches!(twice, Err(BindingError::Duplicate(_))));
    }

    #[test]
    fn other_payload_formats_are_not_written() {
        let mut avro = binding("vehicle", None, Some("cmd/{executorId}/{commandName}"));
        avro.payload_format = "Avro/1.11.0".into();
        let bindings = DeviceBindings::new(vec![avro]).unwrap();
        let err = bindings
            .command("vehicle", "setColor", "car-7")
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("Avro/1.11.0"), "{err}");
    }

    #[test]
    /// As RabbitMQ's MQTT plugin maps them (checked against RabbitMQ 3.10's plugin in the
    /// operator's topology test): only `/` and `+` are translated towards AMQP.
    fn routing_keys_translate_like_the_rabbitmq_plugin() {
        assert_eq!(routing_key_of_mqtt_topic("a/b.c/d"), "a.b.c.d");
        assert_eq!(
            routing_key_of_mqtt_topic("ktwin.real.city-pole.p1"),
            routing_key_of_mqtt_topic("ktwin/real/city-pole/p1")
        );
        assert_eq!(routing_key_of_mqtt_topic("v/+/t/#"), "v.*.t.#");
        assert_eq!(mqtt_topic_of_routing_key("a.b.c"), "a/b/c");
        assert_eq!(mqtt_topic_of_routing_key("v.*.t.#"), "v/+/t/#");
    }

    /// A literal level: label characters, not starting with `$` (kept off the first level
    /// anyway) and never the reserved `ktwin`.
    fn literal() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9!%&'()*,.:;<=>?@_~|-]{1,12}".prop_filter("reserved", |s| s != TYPE_PREFIX)
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => literal(),
            1 => Just("{modelId}".to_owned()),
            1 => Just("{ex:site}".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn a_rendered_topic_parses_back_to_its_twin(
            before in prop::collection::vec(level(), 0..4),
            after in prop::collection::vec(level(), 0..4),
            named in any::<bool>(),
            instance in "[a-z0-9][a-z0-9_:-]{0,20}",
            telemetry in "[a-zA-Z][a-zA-Z0-9_]{0,10}",
            site in literal(),
        ) {
            // Each token at most once: keep the first `{modelId}`/`{ex:site}` only.
            let mut seen = std::collections::HashSet::new();
            let mut levels: Vec<String> = before.into_iter().filter(|l| !l.starts_with('{') || seen.insert(l.clone())).collect();
            levels.push("{senderId}".into());
            if named {
                levels.push("{telemetryName}".into());
            }
            levels.extend(after.into_iter().filter(|l| !l.starts_with('{') || seen.insert(l.clone())));
            let pattern = levels.join("/");
            let model = binding("iface", Some(&pattern), None);
            let bindings = DeviceBindings::new(vec![model.clone()]).unwrap();
            let values = BTreeMap::from([
                ("modelId", model.model_id.as_str()),
                ("senderId", instance.as_str()),
                ("telemetryName", telemetry.as_str()),
                ("ex:site", site.as_str()),
            ]);
            let topic = bindings.bound[0].telemetry.as_ref().unwrap().fill(&values);
            let hit = bindings.telemetry(&topic).unwrap();
            prop_assert_eq!(hit.interface, "iface");
            prop_assert_eq!(hit.instance, instance.as_str());
            prop_assert_eq!(hit.telemetry_name, named.then_some(telemetry.as_str()));
        }
    }
}
