//! The ktwin gateway: the front door of a twin world for clients outside the cluster (and for
//! `ktwin up`). One HTTP API over the platform's services:
//!
//! | Route | Does |
//! |---|---|
//! | `GET /api/v1/twin-graph[/{interface}]` | the twin graph (graph service) |
//! | `GET /api/v1/twin-events/{interface}/{instance}[/latest]` | history and latest state (event store) |
//! | `GET /api/v1/twins/{interface}` | the twins of an interface with their latest state (event store) |
//! | `POST /api/v1/events/{interface}/{instance}` | a real event from outside (`ktwin.real.<interface>`) to the broker |
//! | `POST /api/v1/commands/{interface}/{instance}/{command}` | a command (`ktwin.command.<interface>.<command>`) to the broker |
//!
//! Each group can be switched off ([`Apis`]); a switched-off group answers 404. Callers present
//! a bearer token ([`Access`]): the check is one tower layer around the API, so stricter
//! authentication, authorisation and rate limits are layers added in the same place
//! ([`router`]).
//!
//! It owns the routing of requests to upstream services and the translation of posted JSON
//! into CloudEvents; it must not know how the services store or compute anything.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod api;
mod auth;
#[cfg(feature = "cli")]
pub mod cli;

pub use api::{Apis, GatewayConfig, Upstreams, api};
pub use auth::{Access, require_bearer};

use axum::Router;
use ktwin_service::{Readiness, ops_router};

/// The gateway's whole app: `/health`, `/ready`, `/metrics` (open, for the kubelet and
/// Prometheus) and the API behind `access`.
pub fn router(config: GatewayConfig, access: Access, readiness: Readiness) -> Router {
    let api = api(config).layer(axum::middleware::from_fn_with_state(
        std::sync::Arc::new(access),
        require_bearer,
    ));
    ktwin_service::with_service_layers(ops_router(readiness).merge(api))
}
