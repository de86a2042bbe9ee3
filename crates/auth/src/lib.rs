//! Who may use a ktwin world, and how they prove it.
//!
//! This crate owns credentials and the checks made with them: API bearer tokens with scopes
//! ([`Scope`]) and per-twin grants ([`TwinGrant`]) from a token file or a mounted Kubernetes
//! Secret, reloaded when it changes ([`Reloading`]); OIDC JWTs validated against an issuer's
//! key set ([`OidcValidator`]); the tower [`AuthLayer`] services put in front of their routes,
//! driven by each service's [`AccessPolicy`]; per-principal rate limits; MQTT device
//! credentials and topic ACLs ([`mqtt`]), with generators for Mosquitto and RabbitMQ and a gate
//! enforcing them in front of an embedded broker (which also holds devices' PUBACKs until the
//! platform reports their messages durable); and TLS
//! server configuration from PEM files ([`tls`]); and the credentials a local platform creates on
//! first start ([`local`]).
//!
//! It must not know about the event store, the graph or any other service's internals: a
//! service tells it, through its policy, what a route needs and which twin it touches.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod authn;
#[cfg(feature = "cli")]
pub mod cli;
mod files;
mod grant;
mod layer;
pub mod local;
pub mod mqtt;
mod oidc;
mod policy;
mod principal;
mod ratelimit;
mod reload;
mod scope;
mod secret;
#[cfg(feature = "cli")]
pub mod service_args;
pub mod tls;
mod token;

pub use authn::{AuthError, Authenticator};
pub use files::{FileError, MAX_CREDENTIAL_FILE_BYTES, read_bounded, write_private};
pub use grant::{GrantError, Target, TwinGrant};
pub use layer::{ACCESS_LOG_TARGET, AuthLayer, AuthLimits, AuthService};
pub use oidc::{JwksError, JwtError, OidcConfig, OidcValidator};
pub use policy::{Access, AccessPolicy, PolicyError, RoutePolicy, RoutePolicyBuilder, TwinParam};
pub use principal::{Principal, PrincipalKind};
pub use ratelimit::{KeyedLimiter, RateLimit, retry_after_seconds};
pub use reload::{DEFAULT_RELOAD_INTERVAL, Reloading};
pub use scope::{Scope, ScopeError};
pub use secret::{Secret, SecretDigest};
pub use token::{TOKEN_PREFIX, TokenEntry, TokenError, TokenFile, TokenFileError, TokenSet};
