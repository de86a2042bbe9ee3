//! Which twins a credential may touch (per-twin authorisation in the Azure Digital Twins /
//! Eclipse Ditto sense): a token may be limited to interfaces and/or instance-name prefixes.

use std::collections::BTreeSet;
use std::fmt;

use ktwin_events::{GrammarError, validate_name};

/// The twins a credential may touch. Empty lists mean "no limit" on that axis; a twin is inside
/// the grant when its interface is listed (or none are) **and** its instance name starts with a
/// listed prefix (or none are).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TwinGrant {
    /// Interfaces whose twins the credential may touch; empty = every interface.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub interfaces: BTreeSet<String>,
    /// Instance-name prefixes the credential may touch; empty = every instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_prefixes: Vec<String>,
}

/// What one request touches, as an [`crate::AccessPolicy`] sees it from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// No twin data (an OpenAPI document, say): any grant may.
    NoTwin,
    /// Every twin (all events, the whole graph): only an unlimited grant may.
    AllTwins,
    /// Every twin of one interface: only a grant holding the whole interface may.
    Interface(String),
    /// One twin whose interface the route names.
    Twin {
        /// The twin's interface.
        interface: String,
        /// The twin's instance name.
        instance: String,
    },
    /// One instance whose interface the route does not name: a grant limited to interfaces
    /// cannot tell, so it may not.
    Instance(String),
    /// The handler decides (a POST whose body names the twins, a listing it filters): the
    /// principal is in the request's extensions for it.
    Filtered,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::NoTwin => f.write_str("no twin"),
            Target::AllTwins => f.write_str("every twin"),
            Target::Interface(interface) => write!(f, "every twin of interface {interface:?}"),
            Target::Twin {
                interface,
                instance,
            } => write!(f, "twin {instance:?} of interface {interface:?}"),
            Target::Instance(instance) => write!(f, "twin {instance:?}"),
            Target::Filtered => f.write_str("the twins named in the request"),
        }
    }
}

/// A grant naming something that cannot be a twin name or prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// An interface name is not valid in the event grammar.
    #[error("grant: {0}")]
    Interface(#[source] GrammarError),
    /// An instance prefix is empty or holds a separator or wildcard.
    #[error("grant: instance prefix {0:?} must be a non-empty start of a valid instance name")]
    Prefix(String),
}

impl TwinGrant {
    /// A grant on every twin.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether the grant has no limit at all.
    pub fn is_unlimited(&self) -> bool {
        self.interfaces.is_empty() && self.instance_prefixes.is_empty()
    }

    /// Checks that every interface is a valid name and every prefix could start one.
    pub fn validate(&self) -> Result<(), GrantError> {
        for interface in &self.interfaces {
            validate_name("interface", interface).map_err(GrantError::Interface)?;
        }
        for prefix in &self.instance_prefixes {
            if validate_name("instance", prefix).is_err() {
                return Err(GrantError::Prefix(prefix.clone()));
            }
        }
        Ok(())
    }

    fn interface_listed(&self, interface: &str) -> bool {
        self.interfaces.is_empty() || self.interfaces.contains(interface)
    }

    fn instance_listed(&self, instance: &str) -> bool {
        self.instance_prefixes.is_empty()
            || self
                .instance_prefixes
                .iter()
                .any(|prefix| instance.starts_with(prefix.as_str()))
    }

    /// Whether the twin `instance` of `interface` is inside the grant.
    pub fn allows_twin(&self, interface: &str, instance: &str) -> bool {
        self.interface_listed(interface) && self.instance_listed(instance)
    }

    /// Whether the grant may touch what a request targets.
    pub fn allows(&self, target: &Target) -> bool {
        match target {
            Target::NoTwin | Target::Filtered => true,
            Target::AllTwins => self.is_unlimited(),
            Target::Interface(interface) => {
                self.interface_listed(interface) && self.instance_prefixes.is_empty()
            }
            Target::Twin {
                interface,
                instance,
            } => self.allows_twin(interface, instance),
            Target::Instance(instance) => {
                self.interfaces.is_empty() && self.instance_listed(instance)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(interfaces: &[&str], prefixes: &[&str]) -> TwinGrant {
        TwinGrant {
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            instance_prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn twin(interface: &str, instance: &str) -> Target {
        Target::Twin {
            interface: interface.into(),
            instance: instance.into(),
        }
    }

    #[test]
    fn an_unlimited_grant_allows_everything() {
        let all = TwinGrant::all();
        for target in [
            Target::AllTwins,
            Target::Interface("x".into()),
            twin("x", "y"),
            Target::Instance("y".into()),
        ] {
            assert!(all.allows(&target), "{target}");
        }
    }

    #[test]
    fn interfaces_and_prefixes_both_apply() {
        let g = grant(&["city-pole"], &["pole-00"]);
        assert!(g.allows(&twin("city-pole", "pole-001")));
        assert!(!g.allows(&twin("city-pole", "pole-101")));
        assert!(!g.allows(&twin("parking", "pole-001")));
        assert!(!g.allows(&Target::AllTwins));
        // Part of an interface is not the whole interface.
        assert!(!g.allows(&Target::Interface("city-pole".into())));
        // Without the interface in the route, a grant limited to interfaces cannot decide.
        assert!(!g.allows(&Target::Instance("pole-001".into())));
        assert!(g.allows(&Target::NoTwin));
        assert!(g.allows(&Target::Filtered));
    }

    #[test]
    fn interface_only_and_prefix_only_grants() {
        let by_interface = grant(&["city-pole"], &[]);
        assert!(by_interface.allows(&Target::Interface("city-pole".into())));
        assert!(!by_interface.allows(&Target::Interface("parking".into())));
        let by_prefix = grant(&[], &["north-"]);
        assert!(by_prefix.allows(&Target::Instance("north-1".into())));
        assert!(!by_prefix.allows(&Target::Instance("south-1".into())));
        assert!(by_prefix.allows(&twin("anything", "north-7")));
    }

    #[test]
    fn invalid_names_are_refused_naming_them() {
        let err = grant(&["a/b"], &[]).validate().unwrap_err();
        assert!(err.to_string().contains("\"a/b\""), "{err}");
        let err = grant(&[], &[""]).validate().unwrap_err();
        assert!(err.to_string().contains("prefix \"\""), "{err}");
        assert!(grant(&["city-pole"], &["pole-"]).validate().is_ok());
    }

    #[test]
    fn grants_read_from_yaml_in_camel_case() {
        let g: TwinGrant =
            serde_yaml_ng::from_str("interfaces: [city-pole]\ninstancePrefixes: [p-]").unwrap();
        assert_eq!(g, grant(&["city-pole"], &["p-"]));
        assert!(serde_yaml_ng::from_str::<TwinGrant>("instances: [x]").is_err());
    }
}
