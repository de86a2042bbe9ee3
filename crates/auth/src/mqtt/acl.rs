//! What a device may publish and subscribe to.
//!
//! A credential's [`DeviceGrant`] names whole interfaces (any instance: per-interface
//! credentials, gateways carrying many devices) and single devices. From it come the MQTT
//! filters the device may publish to (`ktwin/real/<interface>/<instance>`) and subscribe to
//! (`ktwin/virtual/<interface>/<instance>`), plus the topics an interface's DTDL MQTT
//! extension declares ([`DeclaredTopics`]). The same filters drive the embedded broker's
//! checks and the Mosquitto and RabbitMQ files ktwin generates, so all three agree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use ktwin_events::{GrammarError, TYPE_PREFIX, Topic, TopicKind, validate_name};

use super::filter::is_within_any;
use crate::oidc::truncate;

/// One device: an instance of an interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRef {
    /// The device's interface.
    pub interface: String,
    /// The device's instance name.
    pub instance: String,
}

/// The devices a credential speaks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceGrant {
    /// Every instance of these interfaces.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub interfaces: BTreeSet<String>,
    /// These single devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRef>,
}

impl DeviceGrant {
    /// A grant for one device.
    pub fn device(interface: &str, instance: &str) -> Self {
        Self {
            interfaces: BTreeSet::new(),
            devices: vec![DeviceRef {
                interface: interface.to_owned(),
                instance: instance.to_owned(),
            }],
        }
    }

    /// A grant for every instance of `interfaces`.
    pub fn interfaces<I: IntoIterator<Item = S>, S: Into<String>>(interfaces: I) -> Self {
        Self {
            interfaces: interfaces.into_iter().map(Into::into).collect(),
            devices: Vec::new(),
        }
    }

    /// Checks every name against the event grammar (a name with `/` or a wildcard would widen
    /// the filters built from it).
    pub fn validate(&self) -> Result<(), GrammarError> {
        for interface in &self.interfaces {
            validate_name("interface", interface)?;
        }
        for device in &self.devices {
            Topic::new(TopicKind::Real, &device.interface, &device.instance)?;
        }
        Ok(())
    }

    /// Whether the grant speaks for nobody.
    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty() && self.devices.is_empty()
    }
}

/// An MQTT topic pattern of the DTDL MQTT extension (`telemetryTopic`, `commandTopic`), e.g.
/// `vehicles/{modelId}/{senderId}/telemetry`. `{senderId}`, `{executorId}` and `{instance}`
/// stand for the device's instance, `{modelId}` and `{interface}` for its interface, and any
/// other token (`{commandName}`, …) for one topic level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern(String);

/// A topic pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "MQTT topic pattern {0:?}: expected '/'-separated labels or {{tokens}}, without '+', '#' or spaces"
)]
pub struct PatternError(pub String);

impl TopicPattern {
    /// Checks and wraps a pattern.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let valid_level = |level: &str| {
            let token = level.starts_with('{') && level.ends_with('}') && level.len() > 2;
            let literal = !level.is_empty()
                && level
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '+' | '#' | '{' | '}'));
            token || literal
        };
        if pattern.split('/').all(valid_level) {
            Ok(Self(pattern.to_owned()))
        } else {
            Err(PatternError(pattern.to_owned()))
        }
    }

    /// The MQTT filter this pattern covers for `interface`, and for one `instance` (or any).
    pub fn filter(&self, interface: &str, instance: Option<&str>) -> String {
        self.0
            .split('/')
            .map(|level| match level {
                "{senderId}" | "{executorId}" | "{instance}" => instance.unwrap_or("+"),
                "{modelId}" | "{interface}" => interface,
                token if token.starts_with('{') => "+",
                literal => literal,
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Topics of one interface's DTDL MQTT extension beyond ktwin's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceTopics {
    /// Patterns its devices publish on (telemetry).
    pub publish: Vec<TopicPattern>,
    /// Patterns its devices subscribe to (commands).
    pub subscribe: Vec<TopicPattern>,
}

/// The hook for topics declared by DTDL MQTT extensions, per interface. Empty by default;
/// whoever reads the models fills it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredTopics(pub BTreeMap<String, InterfaceTopics>);

/// The filters one credential may publish and subscribe to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicRights {
    /// Filters every published topic must match.
    pub publish: Vec<String>,
    /// Filters every subscription must stay within.
    pub subscribe: Vec<String>,
}

impl TopicRights {
    /// The rights of `grant`, with the topics `declared` adds.
    pub fn of(grant: &DeviceGrant, declared: &DeclaredTopics) -> Self {
        let mut rights = Self::default();
        let mut add = |interface: &str, instance: Option<&str>| {
            let device = instance.unwrap_or("+");
            rights
                .publish
                .push(format!("{TYPE_PREFIX}/real/{interface}/{device}"));
            rights.subscribe.push(match instance {
                Some(instance) => format!("{TYPE_PREFIX}/virtual/{interface}/{instance}"),
                None => format!("{TYPE_PREFIX}/virtual/{interface}/#"),
            });
            if let Some(extra) = declared.0.get(interface) {
                let filters = |patterns: &[TopicPattern]| {
                    patterns
                        .iter()
                        .map(|p| p.filter(interface, instance))
                        .collect::<Vec<_>>()
                };
                rights.publish.extend(filters(&extra.publish));
                rights.subscribe.extend(filters(&extra.subscribe));
            }
        };
        for interface in &grant.interfaces {
            add(interface, None);
        }
        for device in &grant.devices {
            if !grant.interfaces.contains(&device.interface) {
                add(&device.interface, Some(&device.instance));
            }
        }
        rights
    }

    /// Whether `topic` may be published to.
    pub fn may_publish(&self, topic: &str) -> bool {
        is_within_any(topic, &self.publish)
    }

    /// Whether `filter` may be subscribed to.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        is_within_any(filter, &self.subscribe)
    }
}

/// Refusals of an MQTT front door, by kind (also exported as the metric
/// `ktwin_mqtt_refusals_total{reason}`).
pub struct Refusals {
    /// Connections with missing or wrong credentials.
    pub authentication: AtomicU64,
    /// Publishes outside the ACL.
    pub publish: AtomicU64,
    /// Subscriptions outside the ACL.
    pub subscribe: AtomicU64,
    /// A device refused in a loop must not flood the log: lines beyond this rate are only
    /// counted.
    log_budget: governor::DefaultDirectRateLimiter,
}

/// Refusal log lines per second at most (bursts of twice that).
const REFUSAL_LOG_LINES_PER_SECOND: u32 = 10;

impl Default for Refusals {
    fn default() -> Self {
        let per_second = std::num::NonZeroU32::new(REFUSAL_LOG_LINES_PER_SECOND)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let burst = per_second
            .saturating_mul(std::num::NonZeroU32::new(2).unwrap_or(std::num::NonZeroU32::MIN));
        Self {
            authentication: AtomicU64::new(0),
            publish: AtomicU64::new(0),
            subscribe: AtomicU64::new(0),
            log_budget: governor::RateLimiter::direct(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ),
        }
    }
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals")
            .field("authentication", &self.authentication)
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .finish_non_exhaustive()
    }
}

/// What was refused, for [`Refusals::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A connection's credentials.
    Authentication,
    /// A publish.
    Publish,
    /// A subscription.
    Subscribe,
}

/// Longest topic or name written to a refusal log line.
const MAX_LOGGED: usize = 256;

impl Refusals {
    /// Counts and logs a refusal of `what` (a topic or filter; nothing for authentication) by
    /// `username` on connection `client_id`. The password is never given to this function.
    pub fn record(&self, refusal: Refusal, username: &str, client_id: &str, what: &str) {
        let (counter, reason) = match refusal {
            Refusal::Authentication => (&self.authentication, "authentication"),
            Refusal::Publish => (&self.publish, "publish"),
            Refusal::Subscribe => (&self.subscribe, "subscribe"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ktwin_mqtt_refusals_total", "reason" => reason).increment(1);
        if self.log_budget.check().is_err() {
            return;
        }
        tracing::warn!(
            reason,
            username = ?truncate(username, MAX_LOGGED),
            client_id = ?truncate(client_id, MAX_LOGGED),
            topic = ?truncate(what, MAX_LOGGED),
            "MQTT request refused",
        );
    }

    /// Total refusals of every kind.
    pub fn total(&self) -> u64 {
        self.authentication.load(Ordering::Relaxed)
            + self.publish.load(Ordering::Relaxed)
            + self.subscribe.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_publishes_and_subscribes_only_its_own_topics() {
        let rights = TopicRights::of(
            &DeviceGrant::device("pole", "p1"),
            &DeclaredTopics::default(),
        );
        assert!(rights.may_publish("ktwin/real/pole/p1"));
        assert!(!rights.may_publish("ktwin/real/pole/p2"));
        assert!(!rights.may_publish("ktwin/virtual/pole/p1"));
        assert!(!rights.may_publish("ktwin/real/pole/+"));
        assert!(rights.may_subscribe("ktwin/virtual/pole/p1"));
        assert!(!rights.may_subscribe("ktwin/virtual/pole/+"));
        assert!(!rights.may_subscribe("ktwin/real/pole/p1"));
        assert!(!rights.may_subscribe("#"));
    }

    #[test]
    fn an_interface_credential_covers_every_instance_of_it_only() {
        let rights = TopicRights::of(
            &DeviceGrant::interfaces(["pole"]),
            &DeclaredTopics::default(),
        );
        assert!(rights.may_publish("ktwin/real/pole/anything"));
        assert!(!rights.may_publish("ktwin/real/parking/p1"));
        assert!(rights.may_subscribe("ktwin/virtual/pole/+"));
        assert!(rights.may_subscribe("ktwin/virtual/pole/#"));
        assert!(!rights.may_subscribe("ktwin/virtual/+/p1"));
    }

    #[test]
    fn declared_extension_topics_are_added_per_device() {
        let mut declared = DeclaredTopics::default();
        declared.0.insert(
            "vehicle".into(),
            InterfaceTopics {
                publish: vec![
                    TopicPattern::parse("vehicles/{modelId}/{senderId}/telemetry").unwrap(),
                ],
                subscribe: vec![
                    TopicPattern::parse("vehicles/{executorId}/command/{commandName}").unwrap(),
                ],
            },
        );
        let rights = TopicRights::of(&DeviceGrant::device("vehicle", "car-1"), &declared);
        assert!(rights.may_publish("vehicles/vehicle/car-1/telemetry"));
        assert!(!rights.may_publish("vehicles/vehicle/car-2/telemetry"));
        assert!(rights.may_subscribe("vehicles/car-1/command/+"));
        assert!(rights.may_subscribe("vehicles/car-1/command/stop"));
        assert!(!rights.may_subscribe("vehicles/car-2/command/stop"));
        assert!(TopicPattern::parse("a/+/b").is_err());
        assert!(TopicPattern::parse("a//b").is_err());
    }

    #[test]
    fn grants_with_separators_in_names_are_refused() {
        assert!(DeviceGrant::device("pole", "p/1").validate().is_err());
        assert!(DeviceGrant::interfaces(["po+le"]).validate().is_err());
        assert!(DeviceGrant::device("pole", "p1").validate().is_ok());
    }

    #[test]
    fn refusals_are_counted_by_kind() {
        let refusals = Refusals::default();
        refusals.record(Refusal::Publish, "dev", "c1", "ktwin/real/x/y");
        refusals.record(Refusal::Authentication, "dev", "c1", "");
        assert_eq!(refusals.publish.load(Ordering::Relaxed), 1);
        assert_eq!(refusals.total(), 2);
    }
}
