//! RabbitMQ users and permissions for devices on RabbitMQ's MQTT plugin, as a definitions
//! document (`rabbitmqctl import_definitions`, or the management API).
//!
//! The MQTT plugin turns a topic into a routing key on `amq.topic` (`/` → `.`, and in
//! subscriptions `+` → `*`), and checks topic permissions against it: `write` when a device
//! publishes, `read` when it subscribes. Each device's regexes are built from the same
//! [`TopicRights`] the embedded broker enforces. Its queues (`mqtt-subscription-<client id>…`)
//! are limited to client ids starting with its username, so one device cannot read another's
//! queue over AMQP.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::acl::TopicRights;
use crate::secret::{Secret, random_bytes};

/// The exchange the MQTT plugin publishes to (its default, `mqtt.exchange`).
pub const MQTT_EXCHANGE: &str = "amq.topic";

/// One device user.
#[derive(Debug, Clone)]
pub struct RabbitUser<'a> {
    /// Username (MQTT clients log in as `<vhost>:<username>` unless the vhost is the default).
    pub username: &'a str,
    /// Its password (only its salted hash goes into the document).
    pub password: &'a Secret,
    /// What it may publish and subscribe to.
    pub rights: &'a TopicRights,
}

/// RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ‖ SHA-256(salt ‖ password)) with a
/// 4-byte salt.
pub fn password_hash(password: &Secret) -> String {
    let salt: [u8; 4] = random_bytes();
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password.expose().as_bytes());
    let mut salted = salt.to_vec();
    salted.extend_from_slice(&hasher.finalize());
    STANDARD.encode(salted)
}

/// The regex matching exactly the routing keys (and binding keys) of `filters`.
pub fn routing_key_regex(filters: &[String]) -> String {
    if filters.is_empty() {
        // Matches nothing: an empty pattern would match everything.
        return "^$".to_owned();
    }
    let alternatives: Vec<String> = filters.iter().map(|f| filter_regex(f)).collect();
    format!("^(?:{})$", alternatives.join("|"))
}

fn filter_regex(filter: &str) -> String {
    let levels: Vec<&str> = filter.split('/').collect();
    let mut regex = String::new();
    for (i, level) in levels.iter().enumerate() {
        let dot = if i == 0 { "" } else { "\\." };
        match *level {
            // Any remaining levels, or none (`a/#` also covers `a`).
            "#" => regex.push_str(&format!("(?:{dot}.*)?")),
            // One level: a name, or `*` in a subscription's binding key.
            "+" => regex.push_str(&format!("{dot}(?:[^.*#]+|\\*)")),
            literal => {
                regex.push_str(dot);
                regex.push_str(&regex_escape(literal));
            }
        }
    }
    regex
}

fn regex_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if "\\.^$|?*+()[]{}-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A definitions document creating `vhost` and `users`, each with queue permissions for its
/// own MQTT subscriptions and topic permissions from its rights.
pub fn definitions(vhost: &str, users: &[RabbitUser<'_>]) -> Value {
    let own_queues = |username: &str| format!("^mqtt-subscription-{}.*$", regex_escape(username));
    json!({
        "vhosts": [{"name": vhost}],
        "users": users.iter().map(|user| json!({
            "name": user.username,
            "password_hash": password_hash(user.password),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": "",
        })).collect::<Vec<_>>(),
        "permissions": users.iter().map(|user| json!({
            "user": user.username,
            "vhost": vhost,
            "configure": own_queues(user.username),
            "write": format!("^(?:{}|mqtt-subscription-{}.*)$", regex_escape(MQTT_EXCHANGE), regex_escape(user.username)),
            "read": format!("^(?:{}|mqtt-subscription-{}.*)$", regex_escape(MQTT_EXCHANGE), regex_escape(user.username)),
        })).collect::<Vec<_>>(),
        "topic_permissions": users.iter().map(|user| json!({
            "user": user.username,
            "vhost": vhost,
            "exchange": MQTT_EXCHANGE,
            "write": routing_key_regex(&user.rights.publish),
            "read": routing_key_regex(&user.rights.subscribe),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_have_rabbitmqs_shape_and_verify() {
        let password = Secret::new("s3cret");
        let hash = STANDARD.decode(password_hash(&password)).unwrap();
        assert_eq!(hash.len(), 4 + 32);
        let mut hasher = Sha256::new();
        hasher.update(&hash[..4]);
        hasher.update(b"s3cret");
        assert_eq!(&hash[4..], hasher.finalize().as_slice());
    }

    #[test]
    fn filters_become_anchored_routing_key_regexes() {
        assert_eq!(
            routing_key_regex(&["ktwin/real/city-pole/p1".into()]),
            "^(?:ktwin\\.real\\.city\\-pole\\.p1)$"
        );
        assert_eq!(
            routing_key_regex(&["ktwin/virtual/pole/#".into(), "ktwin/real/pole/+".into()]),
            "^(?:ktwin\\.virtual\\.pole(?:\\..*)?|ktwin\\.real\\.pole\\.(?:[^.*#]+|\\*))$"
        );
        assert_eq!(routing_key_regex(&[]), "^$");
    }
}
