//! Which events a subscription receives: a filter on the CloudEvent `type`.

use std::collections::BTreeSet;
use std::fmt;

/// Matches CloudEvent `type`s against a set of exact types and a set of prefixes; an event
/// matches when either matches. An empty filter matches nothing (use [`TypeFilter::all`]).
///
/// ```
/// use ktwin_broker::TypeFilter;
///
/// let filter = TypeFilter::exact(["ktwin.real.city-pole"]).or_prefix("ktwin.virtual.");
/// assert!(filter.matches("ktwin.real.city-pole"));
/// assert!(filter.matches("ktwin.virtual.city-pole"));
/// assert!(!filter.matches("ktwin.real.city-pole-2"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    exact: BTreeSet<String>,
    prefixes: BTreeSet<String>,
}

impl TypeFilter {
    /// Matches exactly the given types.
    pub fn exact<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            exact: types.into_iter().map(Into::into).collect(),
            prefixes: BTreeSet::new(),
        }
    }

    /// Matches every type starting with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self::default().or_prefix(prefix)
    }

    /// Matches every type.
    pub fn all() -> Self {
        Self::prefix("")
    }

    /// Also matches exactly `ty`.
    pub fn or_type(mut self, ty: impl Into<String>) -> Self {
        self.exact.insert(ty.into());
        self
    }

    /// Also matches every type starting with `prefix`.
    pub fn or_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefixes.insert(prefix.into());
        self
    }

    /// Whether an event of type `ty` passes the filter.
    pub fn matches(&self, ty: &str) -> bool {
        self.exact.contains(ty) || self.prefixes.iter().any(|p| ty.starts_with(p.as_str()))
    }

    /// The exact types.
    pub fn exact_types(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(String::as_str)
    }

    /// The prefixes.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.prefixes.iter().map(String::as_str)
    }

    /// Whether some prefix is set (brokers that only route on exact values, like a RabbitMQ
    /// headers exchange, must then receive everything and filter on the consumer side).
    pub fn has_prefixes(&self) -> bool {
        !self.prefixes.is_empty()
    }

    /// Whether nothing can match.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

impl fmt::Display for TypeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .exact
            .iter()
            .map(|t| format!("type={t}"))
            .chain(self.prefixes.iter().map(|p| format!("type^={p}")))
            .collect();
        if parts.is_empty() {
            f.write_str("(nothing)")
        } else {
            f.write_str(&parts.join(" | "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix_combine_with_or() {
        let f = TypeFilter::exact(["a.b", "a.c"]).or_prefix("x.");
        assert!(f.matches("a.b") && f.matches("a.c") && f.matches("x.y"));
        assert!(!f.matches("a.bb") && !f.matches("a") && !f.matches("x"));
        assert_eq!(f.to_string(), "type=a.b | type=a.c | type^=x.");
    }

    #[test]
    fn empty_matches_nothing_and_all_matches_everything() {
        assert!(!TypeFilter::default().matches("a"));
        assert!(TypeFilter::default().is_empty());
        assert!(TypeFilter::all().matches(""));
        assert!(TypeFilter::all().matches("anything"));
        assert!(TypeFilter::all().has_prefixes());
    }
}
