//! SDK for ktwin twin services.
//!
//! A twin service is a [`TwinHandler`]: it receives a [`TwinEvent`] (kind, interface, instance
//! and command parsed from the CloudEvent type and source, data decoded case-insensitively) and
//! a [`TwinContext`] (twin graph, latest state of any twin, clock) and returns the events to
//! emit, built with [`store_event`], [`virtual_event`], [`command_event`] or
//! [`TwinContext::command_to_related`]. [`serve`] runs a handler under the Knative contract
//! (HTTP on `$PORT`, CloudEvents in, `2xx` done, non-`2xx` redeliver, emitted events in the
//! reply or posted to `KTWIN_BROKER`); the local runtime mounts the same handler in-process
//! with [`dispatch`] and its own [`GraphLookup`] / [`StateLookup`] implementations.
//!
//! Command convention: the `source` of a command event is the **target** instance, the one
//! that executes the command (as in the original Go SDK).
//!
//! This crate owns the service-side contract only; it must not know about brokers' internals,
//! storage engines, Kubernetes, or any particular twin model.

mod broker;
mod context;
mod emit;
mod error;
mod event;
mod graph;
mod handler;
mod json;
mod owned_state;
mod server;
mod state;

pub use broker::{BrokerClient, RetryPolicy, to_binary_http};
pub use context::{Clock, TwinContext};
pub use emit::{command_event, real_event, store_event, virtual_event};
pub use error::{HandlerError, LookupError};
pub use event::TwinEvent;
pub use graph::{
    GraphCachePolicy, GraphLookup, HttpGraph, Relationship, StaticGraph, TwinGraph, TwinNode,
};
pub use handler::{TwinHandler, dispatch};
pub use json::{from_json, from_json_slice};
pub use owned_state::OwnedStates;
pub use server::{ConfigError, Emitter, ServeConfig, ServeError, router, serve, serve_with};
pub use state::{HttpEventStore, MemoryStates, StateLookup};

pub use async_trait::async_trait;
pub use cloudevents;
pub use ktwin_events::{EventKind, EventType};
