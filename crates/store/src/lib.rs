//! The ktwin event store: history and latest state of every twin.
//!
//! It owns the twin-event records, their order (CloudEvent `time`, then `id`), the latest
//! state as an RFC 7386 merge of every event in that order ([`MergeTree`], independent of
//! arrival order), idempotent group-committed ingestion ([`Ingestor`], [`ingest_feed`]), the
//! storage backends ([`PostgresBackend`], [`EmbeddedBackend`]) and the REST API ([`router`]).
//!
//! It must not know about Kubernetes, the broker's transports or twin models: the set of known
//! interfaces is handed in ([`KnownInterfaces`]) and subscriptions are consumed through the
//! small [`EventFeed`] trait ([`broker::BrokerFeed`] adapts a ktwin-broker subscription).
//!
//! Embedding (as `ktwin up` does):
//! ```no_run
//! # async fn embed() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use ktwin_store::{ApiConfig, BackendChoice, IngestConfig, Ingestor};
//!
//! let backend = BackendChoice::Embedded(".ktwin/store.redb".into()).open().await?;
//! let (ingestor, ingest_task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
//! let app: axum::Router = ktwin_store::router(backend, ingestor, ApiConfig::default());
//! # let _ = (app, ingest_task); Ok(()) }
//! ```

pub mod api;
pub mod backend;
pub mod bench;
pub mod broker;
pub mod cli;
mod event;
mod ingest;
mod merge;

use std::path::PathBuf;
use std::sync::Arc;

pub use api::{ApiConfig, KnownInterfaces, StoreApi, router};
pub use backend::{
    AppendReport, Backend, EmbeddedBackend, EventPosition, HistoryQuery, Page, PostgresBackend,
    PostgresConfig, StoreError,
};
pub use event::{EventError, InstanceKey, LatestState, TwinEvent};
pub use ingest::{EventFeed, FeedMessage, IngestConfig, Ingestor, ingest_feed};
pub use merge::{MergeTree, Version, merge_patch};

/// Names of the metrics the store records.
pub mod metric_names {
    /// Counter of events stored for the first time, label `backend`.
    pub const STORED: &str = "ktwin_store_events_stored_total";
    /// Counter of redelivered events skipped, label `backend`.
    pub const DUPLICATES: &str = "ktwin_store_events_duplicate_total";
    /// Counter of batches whose commit failed, label `backend`.
    pub const FAILED_BATCHES: &str = "ktwin_store_batches_failed_total";
    /// Counter of feed messages rejected as not being twin events, label `reason`.
    pub const REJECTED: &str = "ktwin_store_events_rejected_total";
    /// Histogram of batch commit durations in seconds, label `backend`.
    pub const COMMIT_SECONDS: &str = "ktwin_store_commit_seconds";
}

/// Which backend to open.
#[derive(Debug, Clone)]
pub enum BackendChoice {
    /// PostgreSQL at this connection URL (migrations are applied on open).
    Postgres(String),
    /// An embedded redb file at this path.
    Embedded(PathBuf),
}

impl BackendChoice {
    /// Opens the backend.
    pub async fn open(&self) -> Result<Arc<dyn Backend>, StoreError> {
        Ok(match self {
            BackendChoice::Postgres(url) => {
                Arc::new(PostgresBackend::connect(&PostgresConfig { url: url.clone() }).await?)
            }
            BackendChoice::Embedded(path) => {
                let path = path.clone();
                let backend = tokio::task::spawn_blocking(move || EmbeddedBackend::open(&path))
                    .await
                    .map_err(|err| StoreError::Unavailable(err.to_string()))??;
                Arc::new(backend)
            }
        })
    }
}
