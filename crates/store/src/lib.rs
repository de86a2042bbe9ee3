//! The ktwin event store: history and latest state of every twin.
//!
//! It owns the twin-event records, their order (CloudEvent `time`, then `id`), the latest
//! state as an RFC 7386 merge of every event in that order ([`MergeTree`], independent of
//! arrival order), idempotent group-committed ingestion ([`Ingestor`], [`ingest_feed`]), the
//! storage backends ([`PostgresBackend`], [`FjallBackend`], [`RedbBackend`]), the REST API
//! ([`router`]), and the traces the events carried: each event keeps its W3C `traceparent` and
//! `tracestate`, indexed by trace id, so the causal chain of one device message can be rebuilt
//! ([`CausalChain`]; `ktwin trace`, behind `cli`).
//!
//! It must not know about Kubernetes, the broker's transports or twin models: the set of known
//! interfaces is handed in ([`KnownInterfaces`]) and subscriptions are consumed through the
//! small [`EventFeed`] trait ([`broker::BrokerFeed`] adapts a ktwin-broker subscription).
//!
//! Backends are cargo features: `fjall` and `postgres` by default, `redb` for stores created by
//! earlier builds. `cli` adds `ktwin store` ([`cli`]) and `ktwin trace`, and `bench` adds
//! `ktwin bench store`; the `ktwin` binary enables them all.
//!
//! Embedding (as `ktwin up` does):
//! ```no_run
//! # async fn embed() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ktwin_store::{ApiConfig, BackendChoice, IngestConfig, Ingestor};
//!
//! let backend = BackendChoice::Embedded(".ktwin/store".into()).open().await?;
//! let (ingestor, ingest_task) = Ingestor::spawn(backend.clone(), IngestConfig::default());
//! let app: axum::Router = ktwin_store::router(backend, ingestor, ApiConfig::default());
//! # let _ = (app, ingest_task); Ok(()) }
//! ```

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
// A build without any backend only checks that the crate compiles.
#![cfg_attr(
    not(any(feature = "fjall", feature = "redb", feature = "postgres")),
    allow(dead_code)
)]

pub mod api;
pub mod backend;
#[cfg(feature = "bench")]
pub mod bench;
pub mod broker;
mod changed;
#[cfg(feature = "cli")]
pub mod cli;
pub mod conditional;
pub mod dead_letters;
mod event;
#[cfg(feature = "faults")]
pub mod faults;
mod ingest;
mod merge;
pub mod trace_chain;
#[cfg(feature = "cli")]
pub mod trace_cli;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use api::{
    ApiConfig, INGEST_PATH, KnownInterfaces, NEW_VERSIONS_HEADER, StoreApi, route_policy, router,
};
#[cfg(feature = "fjall")]
pub use backend::FjallBackend;
#[cfg(feature = "redb")]
pub use backend::RedbBackend;
pub use backend::{AppendReport, Backend, EventPosition, HistoryQuery, Page, StoreError};
#[cfg(feature = "postgres")]
pub use backend::{PostgresBackend, PostgresConfig};
pub use changed::{NewVersion, VERSION_SEPARATOR, version_id};
pub use conditional::{ConditionalAppend, Precondition, StateVersion};
pub use dead_letters::{
    DeadLetterLimits, DeadLetterStore, DeadLetterUsage, LetterSelection, OverflowPolicy,
    StoredDeadLetter,
};
pub use event::{EventData, EventError, InstanceKey, LatestState, TwinEvent};
pub use ingest::{EventFeed, FeedMessage, IngestConfig, Ingestor, ingest_feed, keep_readiness};
pub use merge::{MergeTree, Version, merge_patch};
pub use trace_chain::{CausalChain, ChainLink};

/// Names of the metrics the store records.
pub mod metric_names {
    /// Counter of events stored for the first time, label `backend`.
    pub const STORED: &str = "ktwin_store_events_stored_total";
    /// Counter of redelivered events skipped, label `backend`.
    pub const DUPLICATES: &str = "ktwin_store_events_duplicate_total";
    /// Counter of events stored as new versions under a derived id because their id was taken
    /// by a stored event with other data (see [`crate::version_id`]), label `backend`.
    pub const NEW_VERSIONS: &str = "ktwin_store_events_new_version_total";
    /// Counter of batches whose commit failed, label `backend`.
    pub const FAILED_BATCHES: &str = "ktwin_store_batches_failed_total";
    /// Counter of feed batches tried again after a transient failure.
    pub const RETRIED_BATCHES: &str = "ktwin_store_batches_retried_total";
    /// Gauge, 1 once a permanent failure halted ingestion.
    pub const HALTED: &str = "ktwin_store_ingestion_halted";
    /// Counter of feed messages rejected as not being twin events, label `reason`.
    pub const REJECTED: &str = "ktwin_store_events_rejected_total";
    /// Histogram of batch commit durations in seconds, label `backend`.
    pub const COMMIT_SECONDS: &str = "ktwin_store_commit_seconds";
    /// Counter of dead letters kept.
    pub const DEAD_LETTERS: &str = "ktwin_store_dead_letters_total";
    /// Counter of dead letters dropped because the backend keeps none (the legacy redb engine).
    pub const DEAD_LETTERS_UNKEPT: &str = "ktwin_store_dead_letters_unkept_total";
    /// Gauge of the bytes of kept dead letters.
    pub const DEAD_LETTER_BYTES: &str = "ktwin_store_dead_letter_bytes";
    /// Counter of what the dead letters' byte budget did, label `action`: `evicted` (an old
    /// letter deleted to make room), `refused` (a new one not kept), `truncated` (a payload cut
    /// to fit the whole budget).
    pub const DEAD_LETTER_OVERFLOW: &str = "ktwin_store_dead_letter_overflow_total";
}

/// Which backend to open.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BackendChoice {
    /// PostgreSQL at this connection URL (migrations are applied on open).
    Postgres(String),
    /// The embedded store at this path: a fjall database directory, or a redb file for a path
    /// ending in `.redb`. Where the directory does not exist yet but a redb file of the same
    /// name plus `.redb` does (a store created before fjall), that file is opened, so its
    /// history is kept.
    Embedded(PathBuf),
    /// A redb file at this path, whatever its name.
    Redb(PathBuf),
}

impl BackendChoice {
    /// Opens the backend; a backend whose cargo feature is off is refused with
    /// [`StoreError::Unsupported`].
    pub async fn open(&self) -> Result<Arc<dyn Backend>, StoreError> {
        let embedded = match self {
            BackendChoice::Postgres(url) => return open_postgres(url).await,
            BackendChoice::Embedded(path) => embedded_engine(path),
            BackendChoice::Redb(path) => EmbeddedEngine::Redb(path.clone()),
        };
        tokio::task::spawn_blocking(move || embedded.open())
            .await
            .map_err(|err| StoreError::unavailable("opening the embedded store", err))?
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Arc<dyn Backend>, StoreError> {
    let config = PostgresConfig {
        url: url.to_owned(),
    };
    Ok(Arc::new(PostgresBackend::connect(&config).await?))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str) -> Result<Arc<dyn Backend>, StoreError> {
    Err(StoreError::Unsupported {
        backend: "postgres",
    })
}

/// Which engine an embedded store at a path uses (the path is unused for an engine not built in).
#[cfg_attr(not(all(feature = "fjall", feature = "redb")), allow(dead_code))]
enum EmbeddedEngine {
    Fjall(PathBuf),
    Redb(PathBuf),
}

impl EmbeddedEngine {
    fn open(self) -> Result<Arc<dyn Backend>, StoreError> {
        match self {
            #[cfg(feature = "fjall")]
            EmbeddedEngine::Fjall(path) => Ok(Arc::new(FjallBackend::open(&path)?)),
            #[cfg(feature = "redb")]
            EmbeddedEngine::Redb(path) => Ok(Arc::new(RedbBackend::open(&path)?)),
            #[cfg(not(feature = "fjall"))]
            EmbeddedEngine::Fjall(_) => Err(StoreError::Unsupported { backend: "fjall" }),
            #[cfg(not(feature = "redb"))]
            EmbeddedEngine::Redb(_) => Err(StoreError::Unsupported { backend: "redb" }),
        }
    }
}

fn embedded_engine(path: &Path) -> EmbeddedEngine {
    if path.extension().is_some_and(|ext| ext == "redb") {
        return EmbeddedEngine::Redb(path.to_owned());
    }
    let mut legacy = OsString::from(path);
    legacy.push(".redb");
    let legacy = PathBuf::from(legacy);
    if !path.exists() && legacy.is_file() {
        tracing::info!(
            store = %legacy.display(),
            "keeping the existing redb event store; remove it to start a fjall store at {}",
            path.display()
        );
        return EmbeddedEngine::Redb(legacy);
    }
    EmbeddedEngine::Fjall(path.to_owned())
}

#[cfg(all(test, feature = "fjall", feature = "redb"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_paths_open_fjall_unless_they_name_a_redb_file() {
        let dir = tempfile::tempdir().unwrap();
        let engine = async |name: &str| {
            let choice = BackendChoice::Embedded(dir.path().join(name));
            choice.open().await.unwrap().name()
        };
        assert_eq!(engine("fresh").await, "fjall");
        assert_eq!(engine("file.redb").await, "redb");
        // A store created before fjall keeps being used, under its old name.
        RedbBackend::open(&dir.path().join("old.redb")).unwrap();
        assert_eq!(engine("old").await, "redb");
        assert!(!dir.path().join("old").exists());
        // Once the directory exists, it is the store.
        FjallBackend::open(&dir.path().join("both")).unwrap();
        RedbBackend::open(&dir.path().join("both.redb")).unwrap();
        assert_eq!(engine("both").await, "fjall");
    }
}
