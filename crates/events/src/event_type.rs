//! CloudEvent `type` values of ktwin.

use std::fmt;
use std::str::FromStr;

use crate::TYPE_PREFIX;
use crate::name::{GrammarError, MAX_NAME_LEN, validate_name};

/// Longest type of the grammar: `ktwin.command.<interface>.<command>` with both names at their
/// longest. Anything longer is no ktwin type, and components that keep types (routes, metric
/// labels) keep none longer: types come from strangers too.
pub const MAX_EVENT_TYPE_LEN: usize = TYPE_PREFIX.len() + ".command.".len() + 2 * MAX_NAME_LEN + 1;

/// Which way an event flows, the second segment of its type.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Produced by a real (physical) twin, flowing to its virtual twin.
    Real,
    /// Produced by a virtual twin, flowing to the devices of the real twin.
    Virtual,
    /// A state to persist in the event store.
    Store,
    /// A command invoked on a virtual twin.
    Command,
}

impl EventKind {
    /// The segment used in types and topics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Real => "real",
            EventKind::Virtual => "virtual",
            EventKind::Store => "store",
            EventKind::Command => "command",
        }
    }

    /// The type prefix shared by every event of this kind, e.g. `ktwin.real.` (for prefix
    /// subscriptions).
    pub fn type_prefix(self) -> String {
        format!("{TYPE_PREFIX}.{}.", self.as_str())
    }
}

/// A parsed ktwin CloudEvent type.
///
/// Command names are canonical lower case: the original SDK lower-cased them when publishing while
/// the operator bound the declared spelling, so commands with capitals never routed. Here both
/// sides go through [`EventType::command`], which lower-cases.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType {
    kind: EventKind,
    interface: String,
    command: Option<String>,
}

impl EventType {
    /// `ktwin.real.<interface>`.
    pub fn real(interface: &str) -> Result<Self, GrammarError> {
        Self::plain(EventKind::Real, interface)
    }

    /// `ktwin.virtual.<interface>`.
    pub fn virtual_(interface: &str) -> Result<Self, GrammarError> {
        Self::plain(EventKind::Virtual, interface)
    }

    /// `ktwin.store.<interface>`.
    pub fn store(interface: &str) -> Result<Self, GrammarError> {
        Self::plain(EventKind::Store, interface)
    }

    /// `ktwin.command.<interface>.<command>`, with the command name lower-cased.
    pub fn command(interface: &str, command: &str) -> Result<Self, GrammarError> {
        validate_name("interface", interface)?;
        validate_name("command", command)?;
        Ok(Self {
            kind: EventKind::Command,
            interface: interface.to_owned(),
            command: Some(command.to_lowercase()),
        })
    }

    /// A type of `kind` for `interface`; commands need [`EventType::command`].
    pub fn plain(kind: EventKind, interface: &str) -> Result<Self, GrammarError> {
        if kind == EventKind::Command {
            return Err(GrammarError::EventType(format!(
                "{TYPE_PREFIX}.command.{interface}"
            )));
        }
        validate_name("interface", interface)?;
        Ok(Self {
            kind,
            interface: interface.to_owned(),
            command: None,
        })
    }

    /// The kind of event.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The twin interface the event belongs to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The canonical (lower-case) command name, for command events.
    pub fn command_name(&self) -> Option<&str> {
        self.command.as_deref()
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TYPE_PREFIX}.{}.{}", self.kind.as_str(), self.interface)?;
        if let Some(command) = &self.command {
            write!(f, ".{command}")?;
        }
        Ok(())
    }
}

impl FromStr for EventType {
    type Err = GrammarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || GrammarError::EventType(s.to_owned());
        let mut parts = s.split('.');
        if parts.next() != Some(TYPE_PREFIX) {
            return Err(invalid());
        }
        let kind = match parts.next() {
            Some("real") => EventKind::Real,
            Some("virtual") => EventKind::Virtual,
            Some("store") => EventKind::Store,
            Some("command") => EventKind::Command,
            _ => return Err(invalid()),
        };
        let interface = parts.next().ok_or_else(invalid)?;
        let command = parts.next();
        if parts.next().is_some() {
            return Err(invalid());
        }
        match (kind, command) {
            (EventKind::Command, Some(command)) => Self::command(interface, command),
            (EventKind::Command, None) | (_, Some(_)) => Err(invalid()),
            (kind, None) => Self::plain(kind, interface),
        }
    }
}

impl serde::Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_the_original_types() {
        assert_eq!(
            EventType::real("city-pole").unwrap().to_string(),
            "ktwin.real.city-pole"
        );
        assert_eq!(
            EventType::virtual_("city-pole").unwrap().to_string(),
            "ktwin.virtual.city-pole"
        );
        assert_eq!(
            EventType::store("city-pole").unwrap().to_string(),
            "ktwin.store.city-pole"
        );
        assert_eq!(
            EventType::command("city-pole", "UpdateAirQualityIndex")
                .unwrap()
                .to_string(),
            "ktwin.command.city-pole.updateairqualityindex"
        );
    }

    #[test]
    fn rejects_malformed_types() {
        for bad in [
            "",
            "ktwin",
            "ktwin.real",
            "ktwin.real.",
            "ktwin.real.a.b",
            "ktwin.command.a",
            "ktwin.command.a.b.c",
            "ktwin.other.a",
            "other.real.a",
            "ktwin.event-store",
        ] {
            assert!(bad.parse::<EventType>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn command_names_are_canonical_lower_case() {
        let ty: EventType = "ktwin.command.city-pole.DoIt".parse().unwrap();
        assert_eq!(ty.command_name(), Some("doit"));
        assert_eq!(ty, EventType::command("city-pole", "doit").unwrap());
    }

    #[test]
    fn names_with_separators_are_rejected() {
        assert!(EventType::real("a.b").is_err());
        assert!(EventType::real("a/b").is_err());
        assert!(EventType::command("a", "b.c").is_err());
        assert!(EventType::plain(EventKind::Command, "a").is_err());
    }

    #[test]
    fn serde_uses_the_string_form() {
        let ty = EventType::store("city-pole").unwrap();
        let json = serde_json::to_string(&ty).unwrap();
        assert_eq!(json, "\"ktwin.store.city-pole\"");
        assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), ty);
        assert!(serde_json::from_str::<EventType>("\"ktwin.nope.x\"").is_err());
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9_-]{0,40}"
    }

    proptest! {
        #[test]
        fn parse_inverts_format(kind in 0..4u8, iface in name(), command in name()) {
            let ty = match kind {
                0 => EventType::real(&iface),
                1 => EventType::virtual_(&iface),
                2 => EventType::store(&iface),
                _ => EventType::command(&iface, &command),
            }.unwrap();
            prop_assert_eq!(ty.to_string().parse::<EventType>().unwrap(), ty);
        }

        #[test]
        fn dotted_or_slashed_names_never_parse_back(iface in name(), sep in "[./]", tail in name()) {
            let bad = format!("{iface}{sep}{tail}");
            prop_assert!(EventType::real(&bad).is_err());
            prop_assert!(EventType::command(&iface, &bad).is_err());
        }
    }
}
