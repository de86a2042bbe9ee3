//! Validation of the names (interfaces, instances, commands) embedded in types, topics and keys.

/// Why a string is not part of the ktwin event grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// A name embedded in a type, topic or key is not usable there.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which part of the grammar the name fills: "interface", "instance" or "command".
        what: &'static str,
        /// The offending value.
        value: String,
        /// What was expected instead.
        reason: &'static str,
    },
    /// The string does not have the shape of any ktwin event type.
    #[error(
        "invalid event type {0:?}: expected ktwin.real.<iface>, ktwin.virtual.<iface>, \
         ktwin.store.<iface> or ktwin.command.<iface>.<command>"
    )]
    EventType(String),
    /// The MQTT topic does not have the shape `ktwin/{real|virtual}/<iface>/<instance>`.
    #[error(
        "invalid MQTT topic {0:?}: expected ktwin/real/<iface>/<instance> or ktwin/virtual/<iface>/<instance>"
    )]
    Topic(String),
    /// The AMQP routing key does not have the shape `ktwin.{real|virtual}.<iface>.<instance>`.
    #[error(
        "invalid routing key {0:?}: expected ktwin.real.<iface>.<instance> or ktwin.virtual.<iface>.<instance>"
    )]
    RoutingKey(String),
}

/// Longest name accepted: the Kubernetes object-name limit, since interfaces and instances are
/// Kubernetes resources.
pub const MAX_NAME_LEN: usize = 253;

/// Checks that `value` can fill the `what` slot of a type, topic or routing key.
///
/// Dots and slashes are separators in types, routing keys and topics, and `#`, `+`, `*` are
/// wildcards in MQTT and AMQP subscriptions, so none of them may appear inside a name; otherwise
/// `parse(format(x))` would not give `x` back (the original split on dots and broke).
pub fn validate_name(what: &'static str, value: &str) -> Result<(), GrammarError> {
    let fail = |reason| {
        Err(GrammarError::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("must not be empty");
    }
    if value.len() > MAX_NAME_LEN {
        return fail("must be at most 253 characters");
    }
    // Names are almost always ASCII letters, digits, '-', '_' and ':': one pass over the bytes
    // (this runs for every event) instead of the checks below, which name what is wrong.
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'))
    {
        return Ok(());
    }
    if value.contains(['.', '/']) {
        return fail("must not contain '.' or '/' (they separate the parts of types and topics)");
    }
    if value.contains(['#', '+', '*']) {
        return fail("must not contain the wildcards '#', '+' or '*'");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return fail("must not contain whitespace or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_names() {
        assert!(validate_name("interface", "ngsi-ld-city-airqualityobserved").is_ok());
        assert!(validate_name("instance", "pole_01").is_ok());
    }

    #[test]
    fn rejects_separators_wildcards_and_blanks() {
        for bad in ["", "a.b", "a/b", "a#", "a+b", "a*", "a b", "a\n"] {
            let err = validate_name("instance", bad).unwrap_err();
            assert!(err.to_string().contains("invalid instance"), "{err}");
        }
        assert!(validate_name("instance", &"a".repeat(254)).is_err());
    }
}
