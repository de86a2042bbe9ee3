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
//! Each group can be switched off ([`Apis`]); a switched-off group answers 404. Every API call
//! passes a `ktwin_auth::AuthLayer` ([`router`]) enforcing [`route_policy`]: API tokens or
//! OIDC JWTs with scopes and per-twin grants, rate limits per credential (429 with
//! `Retry-After`) and an access log.
//!
//! It owns the routing of requests to upstream services and the translation of posted JSON
//! into CloudEvents; it must not know how the services store or compute anything.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod api;
#[cfg(feature = "cli")]
pub mod cli;

pub use api::{Apis, GatewayConfig, Upstreams, api, route_policy};

use axum::Router;
use ktwin_auth::AuthLayer;
use ktwin_service::{Readiness, ops_router};

/// The gateway's whole app: `/health`, `/ready`, `/metrics` (open, for the kubelet and
/// Prometheus) and the API behind `auth` (built with [`route_policy`]).
pub fn router(config: GatewayConfig, auth: AuthLayer, readiness: Readiness) -> Router {
    ktwin_service::with_service_layers(
        "gateway",
        ops_router(readiness).merge(api(config).layer(auth)),
    )
}
