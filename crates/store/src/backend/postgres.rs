//! PostgreSQL backend: history in `twin_event`, latest state in `twin_latest`, both written in
//! one transaction per batch. The history goes in by binary `COPY` when the batch holds no
//! known event (the common case), else by an `INSERT … ON CONFLICT DO NOTHING` that skips them;
//! latest rows are locked and rewritten with array (`unnest`) statements.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ktwin_events::trace::TraceId;
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Statement, Transaction};

use super::bounded_cache::BoundedCache;
use super::{
    AppendReport, Backend, EventPosition, Groups, HistoryQuery, InstanceRecord, Page, StoreError,
    group_by_instance,
};
use crate::changed::{NewVersion, version_id};
use crate::conditional::{ConditionalAppend, Precondition, StateVersion};
use crate::event::{EventData, InstanceKey, LatestState, TwinEvent};
use crate::merge::{MergeTree, Version, compact};

mod dead_letters;

/// Migrations shipped in `crates/store/migrations`, applied in order at connect.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "events",
        include_str!("../../migrations/0001_events.sql"),
    ),
    (
        2,
        "instance keys",
        include_str!("../../migrations/0002_instance_keys.sql"),
    ),
    (
        3,
        "dead letters",
        include_str!("../../migrations/0003_dead_letters.sql"),
    ),
    (
        4,
        "traces",
        include_str!("../../migrations/0004_traces.sql"),
    ),
];

/// The history columns a batch writes, in `COPY` and `insert_new_events` order.
const COPY_EVENTS: &str = "COPY twin_event (instance_key, id, type, time, data, traceparent, \
    tracestate) FROM STDIN (FORMAT binary)";
const EVENT_COLUMN_TYPES: [Type; 7] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::JSONB,
    Type::TEXT,
    Type::TEXT,
];

/// Advisory lock id serialising concurrent migrations of several store replicas.
const MIGRATION_LOCK: i64 = 0x6b74_7769_6e01;

/// How many read connections serve queries (tokio-postgres pipelines concurrent queries on
/// each).
const READERS: usize = 2;

/// How many write transactions may run at once: two keep the server busy while the store
/// folds the next batch, and the history insert of one overlaps the latest-state update of the
/// other. Safe because each transaction locks its instances' latest rows in key order, and
/// latest states do not depend on commit order.
pub const WRITERS: usize = 2;

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// A libpq-style connection string or URL, e.g. `postgres://postgres@127.0.0.1/ktwin`.
    pub url: String,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        if is_permanent(&err) {
            StoreError::failed("PostgreSQL", err)
        } else {
            StoreError::unavailable("PostgreSQL", err)
        }
    }
}

/// Whether retrying cannot help: the server refused the statement itself (a missing table or
/// privilege, invalid data, a violated constraint), as opposed to a lost connection, a
/// restarting or overloaded server, or a deadlock (SQLSTATE classes 08, 40, 53, 57, 58, and
/// objects in use or locked, 55006 and 55P03).
fn is_permanent(err: &tokio_postgres::Error) -> bool {
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection failed, closed or timed out.
        return false;
    };
    let code = code.code();
    let transient_class = ["08", "40", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class));
    !(transient_class || code == "55006" || code == "55P03")
}

/// Describes a PostgreSQL error with the server's message when there is one.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => err.to_string(),
    }
}

// The statements a session prepares.

/// Gives each new instance its latest-state row, which numbers it (`instance_key`).
const ENSURE_LATEST: &str = "INSERT INTO twin_latest (interface_id, instance_id) \
    SELECT * FROM unnest($1::text[], $2::text[]) \
    ON CONFLICT (interface_id, instance_id) DO NOTHING";

/// Read without a lock: a concurrent delete in between shows up when locking.
const INSTANCE_KEYS: &str = "SELECT l.interface_id, l.instance_id, l.instance_key \
    FROM twin_latest l \
    JOIN unnest($1::text[], $2::text[]) AS k(interface_id, instance_id) \
    ON l.interface_id = k.interface_id AND l.instance_id = k.instance_id";

/// Rows are locked in key order, so concurrent writers cannot deadlock on them. A
/// no-key lock is what the update takes anyway; a delete still waits for it. A join
/// rather than `= ANY($1)`: a row found updated by the writer waited for is
/// rechecked against its own key only, not against the whole array.
const LOCK_LATEST: &str = "SELECT l.instance_key, l.last_id, l.last_type, l.last_time, l.event_count, \
    l.merge_tree \
    FROM unnest($1::int8[]) AS k(instance_key) \
    JOIN twin_latest l ON l.instance_key = k.instance_key \
    ORDER BY k.instance_key FOR NO KEY UPDATE OF l";

/// A batch's history, skipping events already stored; returns those inserted.
const INSERT_NEW_EVENTS: &str = "INSERT INTO twin_event (instance_key, id, type, time, data, \
    traceparent, tracestate) \
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::timestamptz[], \
    $5::jsonb[], $6::text[], $7::text[]) \
    ON CONFLICT DO NOTHING \
    RETURNING instance_key, id";

/// Which of the events whose id is stored (their positions, from 1) have other data than the
/// stored event of their id.
const CHANGED_EVENTS: &str = "SELECT k.n \
    FROM unnest($1::int8[], $2::text[], $3::jsonb[]) WITH ORDINALITY \
    AS k(instance_key, id, data, n) \
    JOIN twin_event e ON e.instance_key = k.instance_key AND e.id = k.id \
    WHERE e.data <> k.data";

/// The new latest states and merge trees of a batch's instances.
const UPDATE_LATEST: &str = "UPDATE twin_latest AS l SET last_id = u.last_id, last_type = u.last_type, \
    last_time = u.last_time, event_count = u.event_count, state = u.state, \
    merge_tree = u.merge_tree, updated_at = now() \
    FROM unnest($1::int8[], $2::text[], $3::text[], $4::timestamptz[], \
    $5::int8[], $6::jsonb[], $7::bytea[]) \
    AS u(instance_key, last_id, last_type, last_time, \
    event_count, state, merge_tree) \
    WHERE l.instance_key = u.instance_key";

/// One instance's latest state.
const LATEST: &str = "SELECT interface_id, instance_id, last_id, last_type, last_time, event_count, state \
    FROM twin_latest WHERE interface_id = $1 AND instance_id = $2 AND event_count > 0";

/// Bounds as index conditions (no `$n IS NULL OR …`) and the limit inside the
/// lateral: a page is a bounded backward scan of the time index, whatever the
/// length of the history.
const HISTORY: &str = "SELECT l.interface_id, l.instance_id, e.id, e.type, e.time, e.data, \
    e.traceparent, e.tracestate \
    FROM twin_latest l CROSS JOIN LATERAL ( \
    SELECT id, type, time, data, traceparent, tracestate FROM twin_event e \
    WHERE e.instance_key = l.instance_key \
    AND e.time >= COALESCE($3, '-infinity') \
    AND e.time <= COALESCE($4, 'infinity') \
    AND (e.time, e.id) < (COALESCE($5, 'infinity'), $6) \
    ORDER BY e.time DESC, e.id DESC LIMIT $7) e \
    WHERE l.interface_id = $1 AND l.instance_id = $2 \
    ORDER BY e.time DESC, e.id DESC";

/// Instances in name order, each one's events in time order: only the cursor's own
/// instance starts after the cursor's event, the following ones at their start.
const EVENTS: &str = "SELECT l.interface_id, l.instance_id, e.id, e.type, e.time, e.data, \
    e.traceparent, e.tracestate \
    FROM twin_latest l CROSS JOIN LATERAL ( \
    SELECT id, type, time, data, traceparent, tracestate FROM twin_event e \
    WHERE e.instance_key = l.instance_key \
    AND (e.time, e.id) > ( \
    CASE WHEN (l.interface_id, l.instance_id) = ($1, $2) \
    THEN $3 ELSE '-infinity' END, \
    CASE WHEN (l.interface_id, l.instance_id) = ($1, $2) \
    THEN $4 ELSE '' END) \
    ORDER BY e.time, e.id LIMIT $5) e \
    WHERE (l.interface_id, l.instance_id) >= ($1, $2) \
    ORDER BY l.interface_id, l.instance_id, e.time, e.id LIMIT $5";

/// The first page of all events (see [`EVENTS`]).
const EVENTS_FIRST: &str = "SELECT l.interface_id, l.instance_id, e.id, e.type, e.time, \
    e.data, e.traceparent, e.tracestate \
    FROM twin_latest l CROSS JOIN LATERAL ( \
    SELECT id, type, time, data, traceparent, tracestate FROM twin_event e \
    WHERE e.instance_key = l.instance_key \
    ORDER BY e.time, e.id LIMIT $1) e \
    ORDER BY l.interface_id, l.instance_id, e.time, e.id LIMIT $1";

/// The events of one trace (see the index in `0004_traces.sql`), in time order.
const TRACE: &str = "SELECT l.interface_id, l.instance_id, e.id, e.type, e.time, e.data, \
    e.traceparent, e.tracestate \
    FROM twin_event e JOIN twin_latest l ON l.instance_key = e.instance_key \
    WHERE substr(e.traceparent, 4, 32) = $1 AND e.traceparent IS NOT NULL \
    ORDER BY e.time, e.id LIMIT $2";

/// The latest states of one interface's instances, after a name.
const TWINS: &str = "SELECT interface_id, instance_id, last_id, last_type, last_time, event_count, state \
    FROM twin_latest WHERE interface_id = $1 AND instance_id > $2 AND event_count > 0 \
    ORDER BY instance_id LIMIT $3";

/// The latest row goes first: deleting it waits for a writer holding its lock, and a
/// writer that has not locked it yet finds it gone and retries under a new key.
const DELETE_LATEST: &str = "DELETE FROM twin_latest WHERE interface_id = $1 AND instance_id = $2 \
    RETURNING instance_key";

/// One instance's history.
const DELETE_EVENTS: &str = "DELETE FROM twin_event WHERE instance_key = $1";

struct Statements {
    ensure_latest: Statement,
    instance_keys: Statement,
    lock_latest: Statement,
    insert_new_events: Statement,
    changed_events: Statement,
    update_latest: Statement,
    latest: Statement,
    history: Statement,
    events: Statement,
    events_first: Statement,
    twins: Statement,
    trace: Statement,
    delete_latest: Statement,
    delete_events: Statement,
}

struct Session {
    client: Client,
    statements: Statements,
}

impl Session {
    async fn connect(config: &tokio_postgres::Config) -> Result<Self, StoreError> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %describe(&err), "PostgreSQL connection closed");
            }
        });
        let statements = Statements::prepare(&client).await?;
        Ok(Self { client, statements })
    }
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, StoreError> {
        let text_array = Type::TEXT_ARRAY;
        let prepare = |sql: &'static str, types: Vec<Type>| async move {
            client.prepare_typed(sql, &types).await
        };
        Ok(Self {
            ensure_latest: prepare(ENSURE_LATEST, vec![text_array.clone(), text_array.clone()])
                .await?,
            instance_keys: prepare(INSTANCE_KEYS, vec![text_array.clone(), text_array.clone()])
                .await?,
            lock_latest: prepare(LOCK_LATEST, vec![Type::INT8_ARRAY]).await?,
            insert_new_events: prepare(
                INSERT_NEW_EVENTS,
                vec![
                    Type::INT8_ARRAY,
                    text_array.clone(),
                    text_array.clone(),
                    Type::TIMESTAMPTZ_ARRAY,
                    Type::JSONB_ARRAY,
                    text_array.clone(),
                    text_array.clone(),
                ],
            )
            .await?,
            changed_events: prepare(
                CHANGED_EVENTS,
                vec![Type::INT8_ARRAY, text_array.clone(), Type::JSONB_ARRAY],
            )
            .await?,
            update_latest: prepare(
                UPDATE_LATEST,
                vec![
                    Type::INT8_ARRAY,
                    text_array.clone(),
                    text_array.clone(),
                    Type::TIMESTAMPTZ_ARRAY,
                    Type::INT8_ARRAY,
                    Type::JSONB_ARRAY,
                    Type::BYTEA_ARRAY,
                ],
            )
            .await?,
            latest: prepare(LATEST, vec![Type::TEXT, Type::TEXT]).await?,
            history: prepare(
                HISTORY,
                vec![
                    Type::TEXT,
                    Type::TEXT,
                    Type::TIMESTAMPTZ,
                    Type::TIMESTAMPTZ,
                    Type::TIMESTAMPTZ,
                    Type::TEXT,
                    Type::INT8,
                ],
            )
            .await?,
            events: prepare(
                EVENTS,
                vec![
                    Type::TEXT,
                    Type::TEXT,
                    Type::TIMESTAMPTZ,
                    Type::TEXT,
                    Type::INT8,
                ],
            )
            .await?,
            events_first: prepare(EVENTS_FIRST, vec![Type::INT8]).await?,
            twins: prepare(TWINS, vec![Type::TEXT, Type::TEXT, Type::INT8]).await?,
            trace: prepare(TRACE, vec![Type::TEXT, Type::INT8]).await?,
            delete_latest: prepare(DELETE_LATEST, vec![Type::TEXT, Type::TEXT]).await?,
            delete_events: prepare(DELETE_EVENTS, vec![Type::INT8]).await?,
        })
    }
}

/// A slot holding a live session, reconnecting when the connection was lost.
struct Slot(Mutex<Option<Arc<Session>>>);

impl Slot {
    fn empty() -> Self {
        Self(Mutex::new(None))
    }

    async fn get(&self, config: &tokio_postgres::Config) -> Result<Arc<Session>, StoreError> {
        let mut slot = self.0.lock().await;
        if let Some(session) = slot.as_ref().filter(|s| !s.client.is_closed()) {
            return Ok(session.clone());
        }
        let session = Arc::new(Session::connect(config).await?);
        *slot = Some(session.clone());
        Ok(session)
    }
}

/// Keys of instances known to have a latest row, so that steady-state batches neither create
/// nor look up their rows. An entry goes stale when its instance is deleted (by this store or
/// another one): the batch then finds the row missing when locking it and is retried after
/// forgetting its instances.
struct KnownInstances(std::sync::Mutex<BoundedCache<InstanceKey, i64>>);

impl Default for KnownInstances {
    fn default() -> Self {
        Self(std::sync::Mutex::new(BoundedCache::new(
            Self::BYTES,
            Self::TYPICAL_KEY_BYTES,
        )))
    }
}

impl KnownInstances {
    /// The bytes of keys kept at most, counted by their names (a miss only costs a lookup):
    /// names come from the wire, up to 253 characters each.
    const BYTES: u64 = 64 * 1024 * 1024;
    /// What the names of an instance and its interface usually take together (the cache sizes
    /// its table by it).
    const TYPICAL_KEY_BYTES: u64 = 48;

    fn entries(&self) -> std::sync::MutexGuard<'_, BoundedCache<InstanceKey, i64>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The batch's instances whose keys are known, and those whose are not.
    fn split<'a>(&self, groups: &'a Groups) -> (KeyedGroups<'a>, Vec<&'a InstanceKey>) {
        let entries = self.entries();
        let mut keyed = KeyedGroups::new();
        let mut unknown = Vec::new();
        for (key, group) in groups {
            match entries.get(key) {
                Some(instance_key) => {
                    keyed.insert(*instance_key, (key, group));
                }
                None => unknown.push(key),
            }
        }
        (keyed, unknown)
    }

    /// Caches keys learned from the database (never the ones already cached: a batch's
    /// known instances cost no clone or hashing after its commit).
    fn remember(&self, learned: &[(i64, &InstanceKey)]) {
        let mut entries = self.entries();
        for (instance_key, key) in learned {
            let bytes = key.interface.len() + key.instance.len();
            entries.insert((*key).clone(), *instance_key, bytes);
        }
    }

    fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a InstanceKey>) {
        let mut entries = self.entries();
        for key in keys {
            entries.remove(key);
        }
    }
}

/// The PostgreSQL backend.
pub struct PostgresBackend {
    config: tokio_postgres::Config,
    known: KnownInstances,
    /// Writing sessions, one transaction each at a time.
    writers: Vec<Mutex<Option<Session>>>,
    next_writer: std::sync::atomic::AtomicUsize,
    readers: Vec<Slot>,
    next_reader: std::sync::atomic::AtomicUsize,
}

impl PostgresBackend {
    /// Connects, applies pending migrations and prepares statements.
    #[tracing::instrument(skip_all)]
    pub async fn connect(config: &PostgresConfig) -> Result<Self, StoreError> {
        let pg_config: tokio_postgres::Config = config.url.parse().map_err(|err| {
            StoreError::failed(format!("invalid PostgreSQL URL {:?}", config.url), err)
        })?;
        let (mut client, connection) = pg_config.connect(NoTls).await?;
        let migrating = tokio::spawn(connection);
        migrate(&mut client).await?;
        drop(client);
        let _ = migrating.await;
        let backend = Self {
            config: pg_config,
            known: KnownInstances::default(),
            writers: (0..WRITERS).map(|_| Mutex::new(None)).collect(),
            next_writer: Default::default(),
            readers: (0..READERS).map(|_| Slot::empty()).collect(),
            next_reader: Default::default(),
        };
        backend.reader().await?;
        Ok(backend)
    }

    async fn reader(&self) -> Result<Arc<Session>, StoreError> {
        let index = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        self.readers[index].get(&self.config).await
    }

    /// A free writer slot, or the next one in turn when all are busy.
    async fn writer(&self) -> tokio::sync::MutexGuard<'_, Option<Session>> {
        for slot in &self.writers {
            if let Ok(guard) = slot.try_lock() {
                return guard;
            }
        }
        let turn = self
            .next_writer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.writers[turn % self.writers.len()].lock().await
    }

    /// The writer session, (re)connected when needed.
    async fn writer_session<'a>(
        &self,
        writer: &'a mut Option<Session>,
    ) -> Result<&'a mut Session, StoreError> {
        if writer.as_ref().is_none_or(|s| s.client.is_closed()) {
            *writer = Some(Session::connect(&self.config).await?);
        }
        Ok(writer.as_mut().expect("connected above"))
    }
}

/// How often a write transaction is retried after a deadlock, a serialization failure or a
/// concurrent delete of one of its instances.
const MAX_RETRIES: u32 = 3;

/// After a failed write transaction: `None` to retry (deadlock or serialization failure, at
/// most [`MAX_RETRIES`] times), else the error to report. A broken connection is dropped for a fresh one.
fn after_failure(
    writer: &mut Option<Session>,
    err: tokio_postgres::Error,
    attempt: &mut u32,
) -> Option<StoreError> {
    if *attempt < MAX_RETRIES && is_transient(&err) {
        *attempt += 1;
        tracing::warn!(error = %describe(&err), attempt, "retrying store transaction");
        return None;
    }
    if writer.as_ref().is_some_and(|s| s.client.is_closed()) {
        *writer = None;
    }
    Some(err.into())
}

fn is_unique_violation(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

fn is_transient(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    err.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS ktwin_store_migrations (
                 version int PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: HashSet<i32> = transaction
        .query("SELECT version FROM ktwin_store_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tracing::info!(version, name, "applying event-store migration");
        transaction.batch_execute(sql).await?;
        transaction
            .execute(
                "INSERT INTO ktwin_store_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

fn event_from_row(row: &Row) -> TwinEvent {
    let instance: String = row.get("instance_id");
    let data: Value = row.get("data");
    TwinEvent {
        id: row.get("id"),
        time: row.get("time"),
        source: instance.clone(),
        event_type: row.get("type"),
        instance_id: instance,
        interface_id: row.get("interface_id"),
        event_data: match data {
            Value::Object(map) => map.into(),
            _ => EventData::default(),
        },
        traceparent: row.get("traceparent"),
        tracestate: row.get("tracestate"),
    }
}

fn latest_from_row(row: &Row) -> LatestState {
    let state: Value = row.get("state");
    LatestState {
        interface_id: row.get("interface_id"),
        instance_id: row.get("instance_id"),
        id: row.get("last_id"),
        event_type: row.get("last_type"),
        time: row.get("last_time"),
        event_count: row.get("event_count"),
        state: match state {
            Value::Object(map) => map,
            _ => Map::new(),
        },
    }
}

fn record_from_row(row: &Row) -> Result<InstanceRecord, serde_json::Error> {
    let count: i64 = row.get("event_count");
    let time: DateTime<Utc> = row.get("last_time");
    let tree: Option<&[u8]> = row.get("merge_tree");
    Ok(InstanceRecord {
        tree: match tree {
            Some(bytes) => compact::decode_tree(bytes)?,
            None => MergeTree::new(),
        },
        last: (count > 0).then(|| Version::new(time, row.get::<_, String>("last_id"))),
        last_type: row.get("last_type"),
        count,
    })
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn concurrent_appends(&self) -> usize {
        WRITERS
    }

    async fn append(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        let total = events.len();
        if total == 0 {
            return Ok(AppendReport::default());
        }
        let (groups, later) = group_by_instance(events);
        let batch = Batch {
            groups: &groups,
            later: &later,
        };
        let mut writer = self.writer().await;
        let mut mode = HistoryInsert::Copy;
        let mut attempt = 0;
        let (stored, versions) = loop {
            let session = self.writer_session(&mut writer).await?;
            match append_transaction(session, &self.known, batch, mode).await {
                Ok(Attempt::Stored(stored, versions)) => break (stored, versions),
                Ok(Attempt::InstanceVanished) if attempt < MAX_RETRIES => {
                    self.known.forget(groups.keys());
                    attempt += 1;
                }
                Ok(Attempt::InstanceVanished) => {
                    return Err(StoreError::Unavailable {
                        context: "instances of the batch kept being deleted while it was stored"
                            .into(),
                        source: None,
                    });
                }
                Ok(Attempt::Unreadable(err)) => return Err(err),
                Err(err) if mode == HistoryInsert::Copy && is_unique_violation(&err) => {
                    // Some event of the batch is stored already (a redelivery): write the batch
                    // again, skipping the known events.
                    mode = HistoryInsert::SkipKnown;
                }
                Err(err) => {
                    if let Some(err) = after_failure(&mut writer, err, &mut attempt) {
                        return Err(err);
                    }
                }
            }
        };
        Ok(AppendReport {
            stored,
            duplicates: total - stored,
            versions,
        })
    }

    async fn append_if(
        &self,
        event: TwinEvent,
        precondition: &Precondition,
    ) -> Result<ConditionalAppend, StoreError> {
        let (groups, _) = group_by_instance(vec![event]);
        let mut writer = self.writer().await;
        let mut attempt = 0;
        loop {
            let session = self.writer_session(&mut writer).await?;
            match conditional_transaction(session, &self.known, &groups, precondition).await {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(None)) if attempt < MAX_RETRIES => {
                    self.known.forget(groups.keys());
                    attempt += 1;
                }
                Ok(Err(None)) => {
                    return Err(StoreError::Unavailable {
                        context: "the instance kept being deleted while the event was stored"
                            .into(),
                        source: None,
                    });
                }
                Ok(Err(Some(refused))) => return Err(refused),
                Err(err) => {
                    if let Some(err) = after_failure(&mut writer, err, &mut attempt) {
                        return Err(err);
                    }
                }
            }
        }
    }

    async fn latest(&self, key: &InstanceKey) -> Result<Option<LatestState>, StoreError> {
        let session = self.reader().await?;
        let row = session
            .client
            .query_opt(&session.statements.latest, &[&key.interface, &key.instance])
            .await?;
        Ok(row.as_ref().map(latest_from_row))
    }

    async fn history(
        &self,
        key: &InstanceKey,
        query: &HistoryQuery,
    ) -> Result<Page<TwinEvent>, StoreError> {
        let session = self.reader().await?;
        let before_time = query.before.as_ref().map(Version::time);
        let before_id = query
            .before
            .as_ref()
            .map(|v| v.id.clone())
            .unwrap_or_default();
        let rows = session
            .client
            .query(
                &session.statements.history,
                &[
                    &key.interface,
                    &key.instance,
                    &query.since,
                    &query.until,
                    &before_time,
                    &before_id,
                    &limit_param(query.limit),
                ],
            )
            .await?;
        Ok(Page::from_overfetch(
            rows.iter().map(event_from_row).collect(),
            query.limit,
        ))
    }

    async fn events(
        &self,
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Page<TwinEvent>, StoreError> {
        let session = self.reader().await?;
        let rows = match after {
            None => {
                session
                    .client
                    .query(&session.statements.events_first, &[&limit_param(limit)])
                    .await?
            }
            Some(after) => {
                session
                    .client
                    .query(
                        &session.statements.events,
                        &[
                            &after.interface,
                            &after.instance,
                            &after.version.time(),
                            &after.version.id,
                            &limit_param(limit),
                        ],
                    )
                    .await?
            }
        };
        Ok(Page::from_overfetch(
            rows.iter().map(event_from_row).collect(),
            limit,
        ))
    }

    async fn twins(
        &self,
        interface: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<LatestState>, StoreError> {
        let session = self.reader().await?;
        let rows = session
            .client
            .query(
                &session.statements.twins,
                &[&interface, &after.unwrap_or(""), &limit_param(limit)],
            )
            .await?;
        Ok(Page::from_overfetch(
            rows.iter().map(latest_from_row).collect(),
            limit,
        ))
    }

    async fn trace(&self, trace: TraceId, limit: usize) -> Result<Page<TwinEvent>, StoreError> {
        let session = self.reader().await?;
        let rows = session
            .client
            .query(
                &session.statements.trace,
                &[&trace.to_string(), &limit_param(limit)],
            )
            .await?;
        Ok(Page::from_overfetch(
            rows.iter().map(event_from_row).collect(),
            limit,
        ))
    }

    async fn delete(&self, key: &InstanceKey) -> Result<u64, StoreError> {
        let mut writer = self.writer().await;
        let mut attempt = 0;
        loop {
            let session = self.writer_session(&mut writer).await?;
            match delete_transaction(session, key).await {
                Ok(deleted) => {
                    self.known.forget([key]);
                    return Ok(deleted);
                }
                Err(err) => {
                    if let Some(err) = after_failure(&mut writer, err, &mut attempt) {
                        return Err(err);
                    }
                }
            }
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        let session = self.reader().await?;
        session.client.simple_query("SELECT 1").await?;
        Ok(())
    }

    fn dead_letters(&self) -> Option<&dyn crate::DeadLetterStore> {
        Some(self)
    }
}

async fn delete_transaction(
    session: &mut Session,
    key: &InstanceKey,
) -> Result<u64, tokio_postgres::Error> {
    let transaction = session.client.transaction().await?;
    let Some(row) = transaction
        .query_opt(
            &session.statements.delete_latest,
            &[&key.interface, &key.instance],
        )
        .await?
    else {
        return Ok(0);
    };
    let instance_key: i64 = row.get(0);
    let deleted = transaction
        .execute(&session.statements.delete_events, &[&instance_key])
        .await?;
    transaction.commit().await?;
    Ok(deleted)
}

/// How a batch's history rows go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HistoryInsert {
    /// Binary `COPY`: the fastest way in, but it fails on an event already stored.
    Copy,
    /// `INSERT … ON CONFLICT DO NOTHING`: skips stored events and says which ones were new;
    /// those skipped with other data than the stored event of their id are stored as new
    /// versions.
    SkipKnown,
}

/// What one attempt at a batch's transaction came to.
enum Attempt {
    /// Committed; this many events were new, these of them as new versions.
    Stored(usize, Vec<NewVersion>),
    /// An instance was deleted while the batch was being written, so its key is stale; the
    /// transaction was rolled back.
    InstanceVanished,
    /// A stored merge tree could not be decoded; the transaction was rolled back.
    Unreadable(StoreError),
}

/// A batch's events by instance, one per id, and the changes of those ids it holds too (see
/// [`group_by_instance`]).
#[derive(Clone, Copy)]
struct Batch<'a> {
    groups: &'a Groups,
    later: &'a Groups,
}

/// New versions of events whose id was stored with other data, each with the id it was sent
/// with, by instance key.
type Versions = BTreeMap<i64, Vec<(String, TwinEvent)>>;

/// A batch's events by instance key in `twin_latest`.
type KeyedGroups<'a> = BTreeMap<i64, (&'a InstanceKey, &'a [TwinEvent])>;

/// One batch in one transaction: create the latest rows of instances not in `known` and learn
/// their keys, insert the history (see [`HistoryInsert`]), then lock the latest rows in key order, fold
/// the new events into the merge trees and write the rows back. The history insert runs before
/// the locks so that a concurrent writer's insert overlaps this one's latest-state update.
async fn append_transaction(
    session: &mut Session,
    known: &KnownInstances,
    batch: Batch<'_>,
    mode: HistoryInsert,
) -> Result<Attempt, tokio_postgres::Error> {
    let statements = &session.statements;
    let transaction = session.client.transaction().await?;
    let groups = batch.groups;
    let (mut keyed, unknown) = known.split(groups);
    let learned = key_new_instances(&transaction, statements, &unknown, groups, &mut keyed).await?;
    if keyed.len() != groups.len() {
        return Ok(Attempt::InstanceVanished);
    }
    let (inserted, versions) =
        insert_history(&transaction, statements, &keyed, batch.later, mode).await?;
    let new_ids = inserted.as_deref().map(new_ids);
    let instance_keys: Vec<i64> = keyed.keys().copied().collect();
    let locked = transaction
        .query(&statements.lock_latest, &[&instance_keys])
        .await?;
    if locked.len() != keyed.len() {
        return Ok(Attempt::InstanceVanished);
    }
    let fresh = Fresh {
        new_ids: new_ids.as_ref(),
        versions: &versions,
    };
    let (updates, stored, reported) = match merge_locked(&locked, &keyed, &fresh) {
        Ok(merged) => merged,
        Err(unreadable) => return Ok(Attempt::Unreadable(unreadable)),
    };
    commit_latest(transaction, statements, updates, known, &learned).await?;
    Ok(Attempt::Stored(stored, reported))
}

/// Writes the merged latest rows back and commits; the instance keys `learned` in the
/// transaction are remembered only once it committed.
async fn commit_latest(
    transaction: Transaction<'_>,
    statements: &Statements,
    updates: LatestUpdates,
    known: &KnownInstances,
    learned: &[(i64, &InstanceKey)],
) -> Result<(), tokio_postgres::Error> {
    let params = updates.params();
    let params: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    transaction
        .execute(&statements.update_latest, &params)
        .await?;
    transaction.commit().await?;
    if !learned.is_empty() {
        known.remember(learned);
    }
    Ok(())
}

/// Whether the event of an instance with an id is stored with the given data (no row: no such
/// event).
const STORED_WITH_DATA: &str =
    "SELECT data = $3::jsonb FROM twin_event WHERE instance_key = $1 AND id = $2";

/// One conditional append ([`Backend::append_if`]) in one transaction: lock the instance's
/// latest row (creating it for a new instance), answer a redelivery as a duplicate, check the
/// precondition against the locked row, then store the event as [`append_transaction`] does.
/// `Err(None)`: the instance was deleted meanwhile, retry; `Err(Some(_))`: refused, rolled back.
async fn conditional_transaction(
    session: &mut Session,
    known: &KnownInstances,
    groups: &Groups,
    precondition: &Precondition,
) -> Result<Result<ConditionalAppend, Option<StoreError>>, tokio_postgres::Error> {
    let statements = &session.statements;
    let transaction = session.client.transaction().await?;
    let (mut keyed, unknown) = known.split(groups);
    let learned = key_new_instances(&transaction, statements, &unknown, groups, &mut keyed).await?;
    let Some((&instance_key, &(key, group))) = keyed.iter().next() else {
        return Ok(Err(None));
    };
    let locked = transaction
        .query(&statements.lock_latest, &[&vec![instance_key]])
        .await?;
    let (Some(row), Some(event)) = (locked.first(), group.first()) else {
        return Ok(Err(None));
    };
    let stored = transaction
        .query_opt(
            STORED_WITH_DATA,
            &[&instance_key, &event.id, &Json(&event.event_data)],
        )
        .await?;
    if stored.is_some_and(|same| same.get::<_, bool>(0)) {
        return Ok(Ok(ConditionalAppend::Duplicate));
    }
    let count: i64 = row.get("event_count");
    let current = (count > 0).then(|| {
        let time: DateTime<Utc> = row.get("last_time");
        StateVersion::of(count, time.timestamp_micros(), row.get("last_id"))
    });
    if !precondition.holds_for(current.as_ref()) {
        return Ok(Err(Some(StoreError::PreconditionFailed {
            interface: key.interface.clone(),
            instance: key.instance.clone(),
            expected: precondition.clone(),
            current,
        })));
    }
    let (inserted, versions) = insert_history(
        &transaction,
        statements,
        &keyed,
        &Groups::new(),
        HistoryInsert::SkipKnown,
    )
    .await?;
    let new_ids = inserted.as_deref().map(new_ids);
    let fresh = Fresh {
        new_ids: new_ids.as_ref(),
        versions: &versions,
    };
    let (updates, stored, _) = match merge_locked(&locked, &keyed, &fresh) {
        Ok(merged) => merged,
        Err(unreadable) => return Ok(Err(Some(unreadable))),
    };
    if stored == 0 {
        return Ok(Ok(ConditionalAppend::Duplicate));
    }
    commit_latest(transaction, statements, updates, known, &learned).await?;
    Ok(Ok(ConditionalAppend::Stored))
}

/// The (instance key, id) pairs of inserted events.
type NewIds<'a> = HashSet<(i64, &'a str)>;

/// The (instance key, id) pairs of the rows an insert returned.
fn new_ids(inserted: &[Row]) -> NewIds<'_> {
    inserted
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Inserts the batch's history (see [`HistoryInsert`]), then the new versions of the events
/// whose id was stored with other data, among those skipped and the batch's changes (`later`).
/// Returns the rows of the events inserted (`None` after a `COPY`, which inserts all), and
/// the versions inserted.
async fn insert_history(
    transaction: &Transaction<'_>,
    statements: &Statements,
    keyed: &KeyedGroups<'_>,
    later: &Groups,
    mode: HistoryInsert,
) -> Result<(Option<Vec<Row>>, Versions), tokio_postgres::Error> {
    let (inserted, mut taken) = match mode {
        HistoryInsert::Copy => {
            copy_events(transaction, keyed).await?;
            (None, Vec::new())
        }
        HistoryInsert::SkipKnown => {
            let flat: Vec<(i64, &TwinEvent)> = keyed
                .iter()
                .flat_map(|(key, (_, group))| group.iter().map(|e| (*key, e)))
                .collect();
            let inserted = insert_new_events(transaction, statements, &flat).await?;
            let fresh = new_ids(&inserted);
            let skipped: Vec<(i64, &TwinEvent)> = flat
                .into_iter()
                .filter(|(key, e)| !fresh.contains(&(*key, e.id.as_str())))
                .collect();
            drop(fresh);
            (Some(inserted), skipped)
        }
    };
    if !later.is_empty() {
        for (instance_key, (key, _)) in keyed {
            if let Some(changes) = later.get(*key) {
                taken.extend(changes.iter().map(|e| (*instance_key, e)));
            }
        }
    }
    let versions = insert_versions(transaction, statements, keyed, &taken).await?;
    Ok((inserted, versions))
}

/// Inserts the new versions of the `taken` events (whose ids are stored) that have other data
/// than the stored event of their id; returns those not stored yet.
async fn insert_versions(
    transaction: &Transaction<'_>,
    statements: &Statements,
    keyed: &KeyedGroups<'_>,
    taken: &[(i64, &TwinEvent)],
) -> Result<Versions, tokio_postgres::Error> {
    let mut versions = Versions::new();
    if taken.is_empty() {
        return Ok(versions);
    }
    let instance_keys: Vec<i64> = taken.iter().map(|(key, _)| *key).collect();
    let ids: Vec<&str> = taken.iter().map(|(_, e)| e.id.as_str()).collect();
    let data: Vec<Json<&Map<String, Value>>> =
        taken.iter().map(|(_, e)| Json(&*e.event_data)).collect();
    let changed = transaction
        .query(&statements.changed_events, &[&instance_keys, &ids, &data])
        .await?;
    let candidates: Vec<(i64, &str, TwinEvent)> = changed
        .iter()
        .filter_map(|row| {
            let position = usize::try_from(row.get::<_, i64>(0)).ok()?.checked_sub(1)?;
            let (key, event) = taken.get(position)?;
            let version = TwinEvent {
                id: version_id(&event.id, &event.event_data),
                ..(*event).clone()
            };
            Some((*key, event.id.as_str(), version))
        })
        // An event of the batch sent with the version's id is that version.
        .filter(|(key, _, v)| {
            keyed[key]
                .1
                .binary_search_by(|e| e.id.as_str().cmp(&v.id))
                .is_err()
        })
        .collect();
    if candidates.is_empty() {
        return Ok(versions);
    }
    let flat: Vec<(i64, &TwinEvent)> = candidates.iter().map(|(key, _, v)| (*key, v)).collect();
    let inserted = insert_new_events(transaction, statements, &flat).await?;
    let inserted = new_ids(&inserted);
    for (key, sent_as, version) in candidates {
        if inserted.contains(&(key, version.id.as_str())) {
            versions
                .entry(key)
                .or_default()
                .push((sent_as.to_owned(), version));
        }
    }
    Ok(versions)
}

/// Creates the latest rows of the `unknown` instances (those already there stay) and adds their
/// keys to `keyed`; returns the keys learned. An instance missing afterwards was deleted
/// meanwhile, which the caller sees as `keyed` falling short of `groups`.
async fn key_new_instances<'a>(
    transaction: &Transaction<'_>,
    statements: &Statements,
    unknown: &[&'a InstanceKey],
    groups: &'a Groups,
    keyed: &mut KeyedGroups<'a>,
) -> Result<Vec<(i64, &'a InstanceKey)>, tokio_postgres::Error> {
    let mut learned = Vec::new();
    if unknown.is_empty() {
        return Ok(learned);
    }
    let interfaces: Vec<&str> = unknown.iter().map(|k| k.interface.as_str()).collect();
    let instances: Vec<&str> = unknown.iter().map(|k| k.instance.as_str()).collect();
    transaction
        .execute(&statements.ensure_latest, &[&interfaces, &instances])
        .await?;
    let keyed_rows = transaction
        .query(&statements.instance_keys, &[&interfaces, &instances])
        .await?;
    for row in &keyed_rows {
        let key = InstanceKey::new(row.get::<_, String>(0), row.get::<_, String>(1));
        if let Some((key, group)) = groups.get_key_value(&key) {
            let instance_key = row.get(2);
            keyed.insert(instance_key, (key, group));
            learned.push((instance_key, key));
        }
    }
    Ok(learned)
}

/// What a transaction stored: all of the batch (after a `COPY`) or the events in `new_ids`,
/// plus `versions`.
struct Fresh<'a> {
    new_ids: Option<&'a NewIds<'a>>,
    versions: &'a Versions,
}

/// Folds each locked instance's newly stored events into its merge record; returns the
/// latest-state updates, how many events were new and which of those were new versions, or
/// which record could not be read.
fn merge_locked(
    locked: &[Row],
    keyed: &KeyedGroups<'_>,
    fresh: &Fresh<'_>,
) -> Result<(LatestUpdates, usize, Vec<NewVersion>), StoreError> {
    let mut updates = LatestUpdates::default();
    let mut stored = 0;
    let mut reported = Vec::new();
    for row in locked {
        let instance_key: i64 = row.get("instance_key");
        let (key, group) = keyed[&instance_key];
        let mut new: Vec<&TwinEvent> = match fresh.new_ids {
            None => group.iter().collect(),
            Some(new_ids) => group
                .iter()
                .filter(|e| new_ids.contains(&(instance_key, e.id.as_str())))
                .collect(),
        };
        if let Some(versions) = fresh.versions.get(&instance_key) {
            for (sent_as, version) in versions {
                reported.push(NewVersion::record(key, sent_as, version.id.clone()));
                new.push(version);
            }
        }
        if new.is_empty() {
            continue;
        }
        stored += new.len();
        // A tree this build cannot read (a newer build's, or damaged) fails the batch, as in
        // the embedded backends: rebuilding it from the new events alone would overwrite the
        // stored state with theirs. The transaction rolls back and the events are retried.
        let mut record = record_from_row(row).map_err(|err| {
            StoreError::corrupt(
                format!("merge tree of {}/{}", key.interface, key.instance),
                err,
            )
        })?;
        record.absorb(new);
        updates.push(instance_key, key, &record);
    }
    Ok((updates, stored, reported))
}

/// Writes every event of the batch into the history by binary `COPY`.
async fn copy_events(
    transaction: &Transaction<'_>,
    keyed: &KeyedGroups<'_>,
) -> Result<(), tokio_postgres::Error> {
    let sink = transaction.copy_in(COPY_EVENTS).await?;
    let writer = BinaryCopyInWriter::new(sink, &EVENT_COLUMN_TYPES);
    futures::pin_mut!(writer);
    for (instance_key, (_, group)) in keyed {
        for event in *group {
            writer
                .as_mut()
                .write(&[
                    instance_key,
                    &event.id,
                    &event.event_type,
                    &event.time,
                    &Json(&event.event_data),
                    &event.traceparent,
                    &event.tracestate,
                ])
                .await?;
        }
    }
    writer.finish().await?;
    Ok(())
}

/// Writes the `events` (with their instance keys) not stored yet; returns the (instance key,
/// id) of those.
async fn insert_new_events(
    transaction: &Transaction<'_>,
    statements: &Statements,
    flat: &[(i64, &TwinEvent)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let instance_keys: Vec<i64> = flat.iter().map(|(key, _)| *key).collect();
    let ids: Vec<&str> = flat.iter().map(|(_, e)| e.id.as_str()).collect();
    let types: Vec<&str> = flat.iter().map(|(_, e)| e.event_type.as_str()).collect();
    let times: Vec<DateTime<Utc>> = flat.iter().map(|(_, e)| e.time).collect();
    let data: Vec<Json<&Map<String, Value>>> =
        flat.iter().map(|(_, e)| Json(&*e.event_data)).collect();
    let traceparents: Vec<Option<&str>> =
        flat.iter().map(|(_, e)| e.traceparent.as_deref()).collect();
    let tracestates: Vec<Option<&str>> =
        flat.iter().map(|(_, e)| e.tracestate.as_deref()).collect();
    transaction
        .query(
            &statements.insert_new_events,
            &[
                &instance_keys,
                &ids,
                &types,
                &times,
                &data,
                &traceparents,
                &tracestates,
            ],
        )
        .await
}

/// Columns of the `update_latest` statement.
#[derive(Default)]
struct LatestUpdates {
    instance_keys: Vec<i64>,
    ids: Vec<String>,
    types: Vec<String>,
    times: Vec<DateTime<Utc>>,
    counts: Vec<i64>,
    states: Vec<Value>,
    trees: Vec<Vec<u8>>,
}

impl LatestUpdates {
    fn push(&mut self, instance_key: i64, key: &InstanceKey, record: &InstanceRecord) {
        let latest = record.latest_state(key);
        self.instance_keys.push(instance_key);
        self.ids.push(latest.id);
        self.types.push(latest.event_type);
        self.times.push(latest.time);
        self.counts.push(latest.event_count);
        self.states.push(Value::Object(latest.state));
        self.trees.push(compact::encode_tree(&record.tree));
    }

    fn params(self) -> Vec<Box<dyn ToSql + Sync + Send>> {
        vec![
            Box::new(self.instance_keys),
            Box::new(self.ids),
            Box::new(self.types),
            Box::new(self.times),
            Box::new(self.counts),
            Box::new(self.states),
            Box::new(self.trees),
        ]
    }
}

/// The connection string `url` pointed at database `name` instead (URL or key=value form).
#[cfg(any(test, feature = "bench"))]
fn with_database(url: &str, name: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let (base, query) = rest
            .split_once('?')
            .map_or((rest, None), |(b, q)| (b, Some(q)));
        let authority = base.split_once('/').map_or(base, |(a, _)| a);
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{scheme}{authority}/{name}{query}")
    } else {
        format!("{url} dbname={name}")
    }
}

/// Creates database `name` (through the server at `admin_url`) and returns a URL for it: the
/// scratch database of `ktwin bench store` (tests use `ktwin_testkit::ScratchDb`).
#[cfg(feature = "bench")]
pub(crate) async fn create_database(admin_url: &str, name: &str) -> Result<String, StoreError> {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE \"{}\"", name.replace('"', "")))
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(with_database(admin_url, name))
}

/// Drops database `name`, disconnecting its sessions.
#[cfg(feature = "bench")]
pub(crate) async fn drop_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            name.replace('"', "")
        ))
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{InstanceKey, KnownInstances, with_database};

    /// Instance names come from the wire (up to 253 characters): the keys remembered are
    /// bounded by their bytes, not by how many there are.
    #[test]
    fn known_instances_are_bounded_by_bytes() {
        let known = KnownInstances::default();
        let long = "n".repeat(250);
        let per_key = 2 * (long.len() as u64 + 3);
        let keys: Vec<InstanceKey> = (0..KnownInstances::BYTES / per_key + 1_000)
            .map(|n| InstanceKey::new(format!("{long}{n:03}"), format!("{long}{n:03}")))
            .collect();
        for chunk in keys.chunks(1_000) {
            let learned: Vec<(i64, &InstanceKey)> = chunk.iter().map(|key| (1, key)).collect();
            known.remember(&learned);
        }
        let entries = known.entries();
        let held = entries.bytes();
        assert!(held <= KnownInstances::BYTES, "{held} bytes of keys held");
        // The cache still takes what is learned last.
        let last = &keys[keys.len() - 1_000..];
        let kept = last
            .iter()
            .filter(|key| entries.get(*key).is_some())
            .count();
        assert!(
            kept >= 900,
            "only {kept} of the last 1,000 keys learned are kept"
        );
    }

    #[test]
    fn database_is_swapped_in_urls_and_key_value_strings() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("host=h user=u", "x"),
            "host=h user=u dbname=x"
        );
    }
}
