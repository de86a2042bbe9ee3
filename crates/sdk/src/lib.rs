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
//! that executes the command (as in the original Go SDK). Commands of the original Python
//! services, whose `source` is the sender, are recognised through the twin graph and reach the
//! sender's related twin as the original platform delivered them ([`TwinEvent::sender`]).
//!
//! This crate owns the service-side contract only; it must not know about brokers' internals,
//! storage engines, Kubernetes, or any particular twin model.
//!
//! A service that stores each pole reading with its temperature in Fahrenheit, and what the
//! runtime does with one reading:
//!
//! ```
//! use std::sync::Arc;
//!
//! use ktwin_sdk::cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
//! use ktwin_sdk::{
//!     EventType, HandlerError, MemoryStates, StaticGraph, TwinContext, TwinEvent, TwinHandler,
//!     async_trait, dispatch, store_event,
//! };
//!
//! struct Pole;
//!
//! #[derive(serde::Deserialize)]
//! struct Reading {
//!     temperature: f64,
//! }
//!
//! #[async_trait]
//! impl TwinHandler for Pole {
//!     fn subscriptions(&self) -> Vec<EventType> {
//!         vec![EventType::real("city-pole").expect("a valid interface name")]
//!     }
//!
//!     async fn handle(
//!         &self,
//!         event: &TwinEvent,
//!         _ctx: &TwinContext,
//!     ) -> Result<Vec<Event>, HandlerError> {
//!         let reading: Reading = event.data()?;
//!         let stored = serde_json::json!({"fahrenheit": reading.temperature * 1.8 + 32.0});
//!         Ok(vec![store_event(event.interface(), event.instance(), stored)?])
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let ctx = TwinContext::in_memory(StaticGraph::default(), Arc::new(MemoryStates::new()));
//! let reading = EventBuilderV10::new()
//!     .id("1")
//!     .ty("ktwin.real.city-pole")
//!     .source("pole-1")
//!     .data("application/json", serde_json::json!({"temperature": 20.0}))
//!     .build()
//!     .unwrap();
//! let emitted = dispatch(&Pole, &ctx, reading).await.unwrap();
//! assert_eq!(emitted[0].ty(), "ktwin.store.city-pole");
//! assert_eq!(emitted[0].source().as_str(), "pole-1");
//! # });
//! ```
//!
//! [`serve`] runs the same handler behind HTTP on `$PORT`.

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod broker;
mod command;
mod context;
mod emit;
mod error;
mod event;
mod graph;
mod handler;
mod http_client;
mod json;
mod owned_state;
mod server;
mod state;

pub use broker::{BrokerClient, RetryPolicy, to_binary_http};
pub use context::{Clock, OWNER_EPOCH_HEADER, TwinContext};
pub use emit::{command_event, real_event, store_event, virtual_event};
pub use error::{HandlerError, LookupError};
pub use event::TwinEvent;
pub use graph::{
    GraphCachePolicy, GraphLookup, HttpGraph, Relationship, StaticGraph, TwinGraph, TwinNode,
};
pub use handler::{TwinHandler, dispatch};
pub use json::{from_json, from_json_slice};
pub use owned_state::{OWNED_MEMBER, OwnedLimits, OwnedStates};
pub use server::{ConfigError, Emitter, ServeConfig, ServeError, router, serve, serve_with};
pub use state::{ConditionalWrite, HttpEventStore, MemoryStates, StateLookup, VersionedState};

pub use async_trait::async_trait;
pub use cloudevents;
pub use ktwin_events::{EventKind, EventType};
