//! The world an interface is planned against: its namespace, the configuration and the shared
//! components (EventStore, MQTTTrigger) resolved once; and why no plan can be made.

use ktwin_events::{BindingError, GrammarError};
use ktwin_model::crd::{EventStore, MQTTTrigger};

use crate::config::KtwinConfig;
use crate::input::name_of;

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A name in the model cannot be used in event types, topics or object names.
    #[error("{object}: field {field}: {source}")]
    InvalidName {
        /// `Kind/name` of the offending object.
        object: String,
        /// The field holding the name.
        field: String,
        /// What is wrong with it.
        source: GrammarError,
    },
    /// The device topics interfaces declare with the DTDL MQTT extension cannot be used.
    #[error("the interfaces' MQTT bindings: {0}")]
    InvalidBinding(#[source] BindingError),
    /// A configured reference names an object that does not exist.
    #[error(
        "{what} {name:?} named in the configuration does not exist in namespace {namespace:?}; existing: {existing:?}"
    )]
    MissingReference {
        /// `EventStore` or `MQTTTrigger`.
        what: &'static str,
        /// The configured name.
        name: String,
        /// The namespace searched.
        namespace: String,
        /// The names that do exist.
        existing: Vec<String>,
    },
    /// Several candidates and no configuration saying which one to use.
    #[error(
        "namespace {namespace:?} has several {what}s {names:?}: name the one to use in the configuration ({field})"
    )]
    Ambiguous {
        /// `EventStore` or `MQTTTrigger`.
        what: &'static str,
        /// The namespace searched.
        namespace: String,
        /// The candidates.
        names: Vec<String>,
        /// The configuration field to set.
        field: &'static str,
    },
    /// The configured Broker is in another namespace: eventing-rabbitmq resolves a Trigger's
    /// broker only by `spec.broker` in the Trigger's own namespace
    /// (`../shared/reference/cluster-admission.md`, Trigger), so such a world cannot be routed.
    #[error(
        "broker.namespace is {broker_namespace:?} but the twins are in {namespace:?}: eventing-rabbitmq only uses a Broker in the Trigger's own namespace; create Broker {broker:?} in {namespace:?} and leave broker.namespace unset"
    )]
    CrossNamespaceBroker {
        /// The configured broker name.
        broker: String,
        /// Its configured namespace.
        broker_namespace: String,
        /// The world's namespace.
        namespace: String,
    },
}

/// A [`PlanError::InvalidName`] for `field` of TwinInterface `interface`.
pub(crate) fn invalid(interface: &str, field: &str) -> impl FnOnce(GrammarError) -> PlanError {
    let object = format!("TwinInterface/{interface}");
    let field = field.to_owned();
    move |source| PlanError::InvalidName {
        object,
        field,
        source,
    }
}

/// What an interface is planned against: the world's shared components, resolved once.
#[derive(Debug, Clone)]
pub struct World<'a> {
    /// Namespace of the world.
    pub namespace: &'a str,
    /// Platform configuration.
    pub config: &'a KtwinConfig,
    /// The EventStore twins persist to, if any.
    pub event_store: Option<&'a str>,
    /// The MQTTTrigger whose dispatchers carry device traffic, if any.
    pub mqtt_trigger: Option<&'a str>,
}

impl<'a> World<'a> {
    /// Whether dispatchers exist, so device routes can be made.
    pub fn has_dispatchers(&self) -> bool {
        self.mqtt_trigger.is_some()
    }

    /// Resolves the shared components of `namespace` from the EventStores and MQTTTriggers there
    /// (by configured name, or the only one).
    pub fn resolve(
        namespace: &'a str,
        config: &'a KtwinConfig,
        event_stores: &'a [EventStore],
        mqtt_triggers: &'a [MQTTTrigger],
    ) -> Result<Self, PlanError> {
        if let Some(other) = config
            .broker
            .namespace
            .as_deref()
            .filter(|ns| *ns != namespace)
        {
            return Err(PlanError::CrossNamespaceBroker {
                broker: config.broker.name.clone(),
                broker_namespace: other.to_owned(),
                namespace: namespace.to_owned(),
            });
        }
        let event_store = pick(
            Candidates {
                what: "EventStore",
                field: "eventStore",
                namespace,
                configured: config.event_store.as_deref(),
            },
            event_stores.iter().map(name_of),
        )?;
        let mqtt_trigger = pick(
            Candidates {
                what: "MQTTTrigger",
                field: "mqttTrigger",
                namespace,
                configured: config.mqtt_trigger.as_deref(),
            },
            mqtt_triggers.iter().map(name_of),
        )?;
        Ok(Self {
            namespace,
            config,
            event_store,
            mqtt_trigger,
        })
    }
}

/// What is being chosen, and what the configuration says about it.
struct Candidates<'c> {
    what: &'static str,
    field: &'static str,
    namespace: &'c str,
    configured: Option<&'c str>,
}

/// The configured candidate, or the only one, or none; an error if the choice is ambiguous.
fn pick<'a>(
    choice: Candidates<'_>,
    candidates: impl Iterator<Item = &'a str>,
) -> Result<Option<&'a str>, PlanError> {
    let names: Vec<&'a str> = candidates.collect();
    let owned = || names.iter().map(|n| n.to_string()).collect();
    match choice.configured {
        Some(wanted) => names
            .iter()
            .find(|n| **n == wanted)
            .map(|n| Some(*n))
            .ok_or_else(|| PlanError::MissingReference {
                what: choice.what,
                name: wanted.to_owned(),
                namespace: choice.namespace.to_owned(),
                existing: owned(),
            }),
        None if names.len() > 1 => Err(PlanError::Ambiguous {
            what: choice.what,
            namespace: choice.namespace.to_owned(),
            names: owned(),
            field: choice.field,
        }),
        None => Ok(names.first().copied()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ObjectRef;

    #[test]
    fn a_broker_in_another_namespace_is_refused() {
        let mut config = KtwinConfig {
            broker: ObjectRef {
                name: "ktwin".into(),
                namespace: Some("shared".into()),
            },
            ..KtwinConfig::default()
        };
        let err = World::resolve("city", &config, &[], &[]).err().unwrap();
        assert!(
            matches!(&err, PlanError::CrossNamespaceBroker { broker_namespace, .. } if broker_namespace == "shared"),
            "{err}"
        );
        assert!(err.to_string().contains("broker.namespace"), "{err}");
        config.broker.namespace = Some("city".into());
        assert!(World::resolve("city", &config, &[], &[]).is_ok());
    }
}
