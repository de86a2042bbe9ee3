//! What each route needs: services describe their routes once ([`RoutePolicy`]) and the
//! [`crate::AuthLayer`] enforces it before a handler runs.

use std::borrow::Cow;

use http::Method;

use crate::grant::Target;
use crate::scope::Scope;

/// What one request needs, from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, readiness).
    Public,
    /// A principal with `scope` whose grant allows `target`.
    Requires {
        /// The lowest scope that may.
        scope: Scope,
        /// What the request touches.
        target: Target,
    },
}

/// Decides what a request needs. Services implement it (or build a [`RoutePolicy`]); it sees
/// only the method and path, so a handler whose body names the twins gets
/// [`Target::Filtered`] and filters with the [`crate::Principal`] itself.
pub trait AccessPolicy: Send + Sync + 'static {
    /// What `method` on `path` needs.
    fn access(&self, method: &Method, path: &str) -> Access;
}

/// Where a rule finds the twin a request touches, by path parameter name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwinParam {
    /// No twin data.
    NoTwin,
    /// Every twin.
    AllTwins,
    /// Every twin of the interface in this parameter.
    Interface(&'static str),
    /// The twin named by these parameters.
    Twin {
        /// Parameter holding the interface.
        interface: &'static str,
        /// Parameter holding the instance.
        instance: &'static str,
    },
    /// The instance in this parameter (interface unknown).
    Instance(&'static str),
    /// The handler filters.
    Filtered,
}

#[derive(Debug, Clone)]
struct Rule {
    methods: Vec<Method>,
    decision: Option<(Scope, TwinParam)>,
}

/// A route policy that is not well formed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The path template is not valid or conflicts with another.
    #[error("route policy: path {path:?}: {source}")]
    Path {
        /// The template.
        path: String,
        /// Why.
        #[source]
        source: matchit::InsertError,
    },
}

/// An [`AccessPolicy`] from a table of path templates (axum's `{param}` syntax). Anything the
/// table does not name needs the fallback (`admin` on every twin unless changed): an unknown
/// route is denied to ordinary tokens, never opened by omission.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    routes: matchit::Router<Vec<Rule>>,
    paths: Vec<String>,
    fallback: Scope,
}

/// Builds a [`RoutePolicy`].
#[derive(Debug, Clone, Default)]
pub struct RoutePolicyBuilder {
    rules: Vec<(String, Rule)>,
    fallback: Option<Scope>,
}

impl RoutePolicy {
    /// An empty table.
    pub fn builder() -> RoutePolicyBuilder {
        RoutePolicyBuilder::default()
    }

    /// The path templates the table names, in the order they were added (tests check that
    /// every route of a service is named).
    pub fn paths(&self) -> &[String] {
        &self.paths
    }
}

impl RoutePolicyBuilder {
    /// `path` is open to anyone, whatever the method.
    pub fn public(self, path: &str) -> Self {
        self.public_for(&[], path)
    }

    /// `methods` on `path` are open to anyone (an empty `methods` means all). Rules for one path
    /// are tried in the order they were added, so this one wins over a later rule for it.
    pub fn public_for(mut self, methods: &[Method], path: &str) -> Self {
        self.rules.push((
            path.to_owned(),
            Rule {
                methods: methods.to_vec(),
                decision: None,
            },
        ));
        self
    }

    /// `methods` on `path` need `scope` on the twin `twin` names (an empty `methods` means all).
    pub fn rule(mut self, methods: &[Method], path: &str, scope: Scope, twin: TwinParam) -> Self {
        self.rules.push((
            path.to_owned(),
            Rule {
                methods: methods.to_vec(),
                decision: Some((scope, twin)),
            },
        ));
        self
    }

    /// Adds every rule of `other` (the policies of services mounted on one port).
    pub fn merge(mut self, other: RoutePolicyBuilder) -> Self {
        self.rules.extend(other.rules);
        self.fallback = self.fallback.or(other.fallback);
        self
    }

    /// What routes the table does not name need (on every twin).
    pub fn fallback(mut self, scope: Scope) -> Self {
        self.fallback = Some(scope);
        self
    }

    /// The policy; fails on an invalid or conflicting path template.
    pub fn build(self) -> Result<RoutePolicy, PolicyError> {
        let mut grouped: Vec<(String, Vec<Rule>)> = Vec::new();
        for (path, rule) in self.rules {
            match grouped.iter_mut().find(|(p, _)| *p == path) {
                Some((_, rules)) => rules.push(rule),
                None => grouped.push((path, vec![rule])),
            }
        }
        let mut routes = matchit::Router::new();
        let paths = grouped.iter().map(|(path, _)| path.clone()).collect();
        for (path, rules) in grouped {
            routes
                .insert(path.clone(), rules)
                .map_err(|source| PolicyError::Path { path, source })?;
        }
        Ok(RoutePolicy {
            routes,
            paths,
            fallback: self.fallback.unwrap_or(Scope::Admin),
        })
    }
}

impl AccessPolicy for RoutePolicy {
    fn access(&self, method: &Method, path: &str) -> Access {
        let fallback = Access::Requires {
            scope: self.fallback,
            target: Target::AllTwins,
        };
        let Ok(found) = self.routes.at(path) else {
            return fallback;
        };
        let Some(rule) = found
            .value
            .iter()
            .find(|rule| rule.methods.is_empty() || rule.methods.contains(method))
        else {
            return fallback;
        };
        let Some((scope, twin)) = &rule.decision else {
            return Access::Public;
        };
        // Parameters are compared decoded, as the handler will see them.
        let param = |name: &str| -> String {
            let raw = found.params.get(name).unwrap_or_default();
            let decoded: Cow<'_, str> =
                percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
            decoded.into_owned()
        };
        let target = match twin {
            TwinParam::NoTwin => Target::NoTwin,
            TwinParam::AllTwins => Target::AllTwins,
            TwinParam::Interface(name) => Target::Interface(param(name)),
            TwinParam::Twin {
                interface,
                instance,
            } => Target::Twin {
                interface: param(interface),
                instance: param(instance),
            },
            TwinParam::Instance(name) => Target::Instance(param(name)),
            TwinParam::Filtered => Target::Filtered,
        };
        Access::Requires {
            scope: *scope,
            target,
        }
    }
}

impl<F> AccessPolicy for F
where
    F: Fn(&Method, &str) -> Access + Send + Sync + 'static,
{
    fn access(&self, method: &Method, path: &str) -> Access {
        self(method, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_like() -> RoutePolicy {
        store_like_rules().build().unwrap()
    }

    fn store_like_rules() -> RoutePolicyBuilder {
        RoutePolicy::builder()
            .public("/health")
            .rule(
                &[Method::GET],
                "/api/v1/twin-events",
                Scope::Read,
                TwinParam::AllTwins,
            )
            .rule(
                &[Method::POST],
                "/api/v1/twin-events",
                Scope::Write,
                TwinParam::Filtered,
            )
            .rule(
                &[Method::GET],
                "/api/v1/twin-events/{interface}/{instance}",
                Scope::Read,
                TwinParam::Twin {
                    interface: "interface",
                    instance: "instance",
                },
            )
            .rule(
                &[Method::DELETE],
                "/api/v1/twin-events/{interface}/{instance}",
                Scope::Write,
                TwinParam::Twin {
                    interface: "interface",
                    instance: "instance",
                },
            )
    }

    #[test]
    fn rules_match_by_path_and_method() {
        let policy = store_like();
        assert_eq!(policy.access(&Method::GET, "/health"), Access::Public);
        assert_eq!(policy.access(&Method::POST, "/health"), Access::Public);
        assert_eq!(
            policy.access(&Method::POST, "/api/v1/twin-events"),
            Access::Requires {
                scope: Scope::Write,
                target: Target::Filtered
            }
        );
        assert_eq!(
            policy.access(&Method::DELETE, "/api/v1/twin-events/city-pole/pole%2D1"),
            Access::Requires {
                scope: Scope::Write,
                target: Target::Twin {
                    interface: "city-pole".into(),
                    instance: "pole-1".into()
                }
            }
        );
    }

    #[test]
    fn unnamed_routes_and_methods_need_the_fallback() {
        let admin_everywhere = Access::Requires {
            scope: Scope::Admin,
            target: Target::AllTwins,
        };
        let policy = store_like();
        assert_eq!(policy.access(&Method::GET, "/nowhere"), admin_everywhere);
        assert_eq!(
            policy.access(&Method::PUT, "/api/v1/twin-events"),
            admin_everywhere
        );
    }

    #[test]
    fn a_public_method_rule_added_first_opens_only_that_method() {
        let policy = RoutePolicy::builder()
            .public_for(&[Method::POST], "/api/v1/twin-events")
            .merge(store_like_rules())
            .build()
            .unwrap();
        assert_eq!(
            policy.access(&Method::POST, "/api/v1/twin-events"),
            Access::Public
        );
        assert_eq!(
            policy.access(&Method::GET, "/api/v1/twin-events"),
            Access::Requires {
                scope: Scope::Read,
                target: Target::AllTwins
            }
        );
    }

    #[test]
    fn conflicting_templates_are_refused_naming_the_path() {
        let err = RoutePolicy::builder()
            .rule(&[], "/a/{x}", Scope::Read, TwinParam::NoTwin)
            .rule(&[], "/a/{y}", Scope::Read, TwinParam::NoTwin)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("/a/{y}"), "{err}");
    }
}
