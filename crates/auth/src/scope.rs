//! What a credential may do: read, write, or administer.

use std::fmt;
use std::str::FromStr;

/// The rights of a credential, ordered: each scope includes the ones below it.
///
/// `read` reads twin state, history and the graph; `write` also posts events, sends commands
/// and deletes a twin's history; `admin` may do anything, including routes no policy names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read twin state, history and graph.
    Read,
    /// Read, and post events, send commands, delete history.
    Write,
    /// Everything.
    Admin,
}

impl Scope {
    /// Every scope, lowest first.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    /// Whether a credential holding `self` may do what needs `required`.
    pub fn includes(self, required: Scope) -> bool {
        self >= required
    }

    /// The scope's name: `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {0:?}: expected read, write or admin")]
pub struct ScopeError(pub String);

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| ScopeError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered_and_include_the_lower_ones() {
        assert!(Scope::Admin.includes(Scope::Write));
        assert!(Scope::Write.includes(Scope::Read));
        assert!(Scope::Read.includes(Scope::Read));
        assert!(!Scope::Read.includes(Scope::Write));
        assert!(!Scope::Write.includes(Scope::Admin));
    }

    #[test]
    fn parse_and_display_agree() {
        for scope in Scope::ALL {
            assert_eq!(scope.to_string().parse::<Scope>().unwrap(), scope);
        }
        let err = "root".parse::<Scope>().unwrap_err();
        assert!(err.to_string().contains("\"root\""), "{err}");
    }
}
