//! Helpers shared by ktwin's tests and benchmarks, and only by them (`publish = false`, a
//! dev-dependency everywhere): where the test servers are, where the read-only corpora and the
//! example project live, scratch PostgreSQL databases, CloudEvents built in one line, routers
//! served on a free port, a scripted MQTT peer for tests of MQTT clients, a local OIDC issuer,
//! self-signed certificates, the table-driven check of a service's access control, the
//! arbitrary requests of the route fuzz tests, and what the API server does with a custom
//! resource (schema validation, the original KTWIN's resources as fixtures), and a controller's
//! reconcile driven until it settles; with the `sdk` feature, a counting twin service.
//!
//! Without that feature it knows no ktwin crate (so any crate may use it without a dependency
//! cycle), and it holds nothing a product binary needs.

#![deny(missing_docs)]

#[cfg(feature = "sdk")]
pub mod counter;
pub mod crd;
mod event;
pub mod helm;
mod http;
pub mod http_fuzz;
pub mod mqtt_peer;
pub mod oidc;
mod paths;
mod postgres;
pub mod reconcile;
pub mod route_auth;
pub mod servers;
pub mod tls;

pub use event::{cloud_event, unique_suffix};
pub use http::{all_pages, serve};
pub use paths::{example_project, shared, workspace_root};
pub use postgres::ScratchDb;
