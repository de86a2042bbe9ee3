//! Who made a request: the authenticated identity handlers read from the request's extensions.

use crate::grant::{Target, TwinGrant};
use crate::scope::Scope;

/// An authenticated caller. It never holds the secret it proved itself with, so it may be
/// logged and passed around freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The credential's name: a token's name, or `issuer#subject` of a JWT.
    pub name: String,
    /// What the caller may do.
    pub scope: Scope,
    /// Which twins the caller may touch.
    pub grant: TwinGrant,
    /// How the caller authenticated.
    pub kind: PrincipalKind,
}

/// How a [`Principal`] authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// A bearer token from the token file.
    Token,
    /// An OIDC JWT from this issuer.
    Jwt {
        /// The token's `iss`.
        issuer: String,
    },
    /// Nobody: authentication is off (`--insecure` on loopback).
    Anonymous,
}

impl Principal {
    /// The caller of a platform whose authentication is off: may do anything.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".to_owned(),
            scope: Scope::Admin,
            grant: TwinGrant::all(),
            kind: PrincipalKind::Anonymous,
        }
    }

    /// Whether the caller may do what needs `scope` on `target`.
    pub fn may(&self, scope: Scope, target: &Target) -> bool {
        self.scope.includes(scope) && self.grant.allows(target)
    }

    /// Whether the caller may touch twin `instance` of `interface` (for handlers that filter).
    pub fn allows_twin(&self, interface: &str, instance: &str) -> bool {
        self.grant.allows_twin(interface, instance)
    }
}
