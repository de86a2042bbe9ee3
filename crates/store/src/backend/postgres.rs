//! PostgreSQL backend: history in `twin_event`, latest state in `twin_latest`, both written in
//! one transaction per batch with array (`unnest`) statements prepared once per connection.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::{
    AppendReport, Backend, EventPosition, HistoryQuery, InstanceRecord, Page, StoreError,
    group_by_instance,
};
use crate::event::{InstanceKey, LatestState, TwinEvent};
use crate::merge::{MergeTree, Version};

/// Migrations shipped in `crates/store/migrations`, applied in order at connect.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "events",
    include_str!("../../migrations/0001_events.sql"),
)];

/// Advisory lock id serialising concurrent migrations of several store replicas.
const MIGRATION_LOCK: i64 = 0x6b74_7769_6e01;

/// How many read connections serve queries (tokio-postgres pipelines concurrent queries on
/// each).
const READERS: usize = 2;

/// How many write transactions may run at once: two keep the server busy while the store
/// folds the next batch. Safe because each transaction locks its instances in key order first,
/// and latest states do not depend on commit order.
pub const WRITERS: usize = 2;

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// A libpq-style connection string or URL, e.g. `postgres://postgres@127.0.0.1/ktwin`.
    pub url: String,
}

/// Describes a PostgreSQL error with the server's message when there is one.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => err.to_string(),
    }
}

struct Statements {
    ensure_latest: Statement,
    lock_latest: Statement,
    insert_events: Statement,
    update_latest: Statement,
    latest: Statement,
    history: Statement,
    events: Statement,
    events_first: Statement,
    twins: Statement,
    delete_events: Statement,
    delete_latest: Statement,
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
            ensure_latest: prepare(
                "INSERT INTO twin_latest (interface_id, instance_id) \
                 SELECT * FROM unnest($1::text[], $2::text[]) \
                 ON CONFLICT (interface_id, instance_id) DO NOTHING",
                vec![text_array.clone(), text_array.clone()],
            )
            .await?,
            // Rows are locked in key order, so concurrent writers cannot deadlock on them.
            lock_latest: prepare(
                "SELECT l.interface_id, l.instance_id, l.last_id, l.last_type, l.last_time, \
                        l.event_count, l.merge_tree \
                 FROM twin_latest l \
                 JOIN unnest($1::text[], $2::text[]) AS k(interface_id, instance_id) \
                   ON l.interface_id = k.interface_id AND l.instance_id = k.instance_id \
                 ORDER BY l.interface_id, l.instance_id FOR UPDATE OF l",
                vec![text_array.clone(), text_array.clone()],
            )
            .await?,
            insert_events: prepare(
                "INSERT INTO twin_event (interface_id, instance_id, id, type, time, data) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                                      $5::timestamptz[], $6::jsonb[]) \
                 ON CONFLICT DO NOTHING \
                 RETURNING interface_id, instance_id, id",
                vec![
                    text_array.clone(),
                    text_array.clone(),
                    text_array.clone(),
                    text_array.clone(),
                    Type::TIMESTAMPTZ_ARRAY,
                    Type::JSONB_ARRAY,
                ],
            )
            .await?,
            update_latest: prepare(
                "UPDATE twin_latest AS l SET last_id = u.last_id, last_type = u.last_type, \
                        last_time = u.last_time, event_count = u.event_count, state = u.state, \
                        merge_tree = u.merge_tree, updated_at = now() \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
                             $6::int8[], $7::jsonb[], $8::bytea[]) \
                      AS u(interface_id, instance_id, last_id, last_type, last_time, \
                           event_count, state, merge_tree) \
                 WHERE l.interface_id = u.interface_id AND l.instance_id = u.instance_id",
                vec![
                    text_array.clone(),
                    text_array.clone(),
                    text_array.clone(),
                    text_array.clone(),
                    Type::TIMESTAMPTZ_ARRAY,
                    Type::INT8_ARRAY,
                    Type::JSONB_ARRAY,
                    Type::BYTEA_ARRAY,
                ],
            )
            .await?,
            latest: prepare(
                "SELECT interface_id, instance_id, last_id, last_type, last_time, event_count, state \
                 FROM twin_latest WHERE interface_id = $1 AND instance_id = $2 AND event_count > 0",
                vec![Type::TEXT, Type::TEXT],
            )
            .await?,
            history: prepare(
                "SELECT interface_id, instance_id, id, type, time, data FROM twin_event \
                 WHERE interface_id = $1 AND instance_id = $2 \
                   AND ($3::timestamptz IS NULL OR time >= $3) \
                   AND ($4::timestamptz IS NULL OR time <= $4) \
                   AND ($5::timestamptz IS NULL OR (time, id) < ($5, $6)) \
                 ORDER BY time DESC, id DESC LIMIT $7",
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
                "SELECT interface_id, instance_id, id, type, time, data FROM twin_event \
                 WHERE (interface_id, instance_id, time, id) > ($1, $2, $3, $4) \
                 ORDER BY interface_id, instance_id, time, id LIMIT $5",
                vec![Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ, Type::TEXT, Type::INT8],
            )
            .await?,
            events_first: prepare(
                "SELECT interface_id, instance_id, id, type, time, data FROM twin_event \
                 ORDER BY interface_id, instance_id, time, id LIMIT $1",
                vec![Type::INT8],
            )
            .await?,
            twins: prepare(
                "SELECT interface_id, instance_id, last_id, last_type, last_time, event_count, state \
                 FROM twin_latest WHERE interface_id = $1 AND instance_id > $2 AND event_count > 0 \
                 ORDER BY instance_id LIMIT $3",
                vec![Type::TEXT, Type::TEXT, Type::INT8],
            )
            .await?,
            delete_events: prepare(
                "DELETE FROM twin_event WHERE interface_id = $1 AND instance_id = $2",
                vec![Type::TEXT, Type::TEXT],
            )
            .await?,
            delete_latest: prepare(
                "DELETE FROM twin_latest WHERE interface_id = $1 AND instance_id = $2",
                vec![Type::TEXT, Type::TEXT],
            )
            .await?,
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

/// The PostgreSQL backend.
pub struct PostgresBackend {
    config: tokio_postgres::Config,
    /// Writing sessions, one transaction each at a time.
    writers: Vec<Mutex<Option<Session>>>,
    next_writer: std::sync::atomic::AtomicUsize,
    readers: Vec<Slot>,
    next_reader: std::sync::atomic::AtomicUsize,
}

impl PostgresBackend {
    /// Connects, applies pending migrations and prepares statements.
    pub async fn connect(config: &PostgresConfig) -> Result<Self, StoreError> {
        let pg_config: tokio_postgres::Config = config.url.parse().map_err(|err| {
            StoreError::Unavailable(format!("invalid PostgreSQL URL {:?}: {err}", config.url))
        })?;
        let (mut client, connection) = pg_config.connect(NoTls).await?;
        let migrating = tokio::spawn(connection);
        migrate(&mut client).await?;
        drop(client);
        let _ = migrating.await;
        let backend = Self {
            config: pg_config,
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

/// After a failed write transaction: `None` to retry (deadlock or serialization failure, at
/// most 3 times), else the error to report. A broken connection is dropped for a fresh one.
fn after_failure(
    writer: &mut Option<Session>,
    err: tokio_postgres::Error,
    attempt: &mut u32,
) -> Option<StoreError> {
    if *attempt < 3 && is_transient(&err) {
        *attempt += 1;
        tracing::warn!(error = %describe(&err), attempt, "retrying store transaction");
        return None;
    }
    if writer.as_ref().is_some_and(|s| s.client.is_closed()) {
        *writer = None;
    }
    Some(err.into())
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
            Value::Object(map) => map,
            _ => Map::new(),
        },
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
            Some(bytes) => serde_json::from_slice::<MergeTree>(bytes)?,
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

    async fn append(&self, events: Vec<TwinEvent>) -> Result<AppendReport, StoreError> {
        let total = events.len();
        if total == 0 {
            return Ok(AppendReport::default());
        }
        let (groups, _) = group_by_instance(events);
        let mut writer = self.writer().await;
        let mut attempt = 0;
        let stored = loop {
            let session = self.writer_session(&mut writer).await?;
            match append_transaction(session, &groups).await {
                Ok(stored) => break stored,
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
        })
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

    async fn delete(&self, key: &InstanceKey) -> Result<u64, StoreError> {
        let mut writer = self.writer().await;
        let mut attempt = 0;
        loop {
            let session = self.writer_session(&mut writer).await?;
            match delete_transaction(session, key).await {
                Ok(deleted) => return Ok(deleted),
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
}

async fn delete_transaction(
    session: &mut Session,
    key: &InstanceKey,
) -> Result<u64, tokio_postgres::Error> {
    let transaction = session.client.transaction().await?;
    let params: [&(dyn ToSql + Sync); 2] = [&key.interface, &key.instance];
    let deleted = transaction
        .execute(&session.statements.delete_events, &params)
        .await?;
    transaction
        .execute(&session.statements.delete_latest, &params)
        .await?;
    transaction.commit().await?;
    Ok(deleted)
}

/// One batch in one transaction: lock (creating) the instances' latest rows in key order,
/// insert the history skipping known ids, fold the new events into the merge trees, write the
/// latest rows back. Returns how many events were new.
async fn append_transaction(
    session: &mut Session,
    groups: &BTreeMap<InstanceKey, Vec<TwinEvent>>,
) -> Result<usize, tokio_postgres::Error> {
    let statements = &session.statements;
    let transaction = session.client.transaction().await?;
    let interfaces: Vec<&str> = groups.keys().map(|k| k.interface.as_str()).collect();
    let instances: Vec<&str> = groups.keys().map(|k| k.instance.as_str()).collect();
    let flat: Vec<&TwinEvent> = groups.values().flatten().collect();
    transaction
        .execute(&statements.ensure_latest, &[&interfaces, &instances])
        .await?;
    let locked = transaction
        .query(&statements.lock_latest, &[&interfaces, &instances])
        .await?;
    let columns: [Vec<&str>; 4] = [
        flat.iter().map(|e| e.interface_id.as_str()).collect(),
        flat.iter().map(|e| e.instance_id.as_str()).collect(),
        flat.iter().map(|e| e.id.as_str()).collect(),
        flat.iter().map(|e| e.event_type.as_str()).collect(),
    ];
    let times: Vec<DateTime<Utc>> = flat.iter().map(|e| e.time).collect();
    let data: Vec<Json<&Map<String, Value>>> = flat.iter().map(|e| Json(&e.event_data)).collect();
    let inserted = transaction
        .query(
            &statements.insert_events,
            &[
                &columns[0],
                &columns[1],
                &columns[2],
                &columns[3],
                &times,
                &data,
            ],
        )
        .await?;
    let new_ids: HashSet<(&str, &str, &str)> = inserted
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let mut updates = LatestUpdates::default();
    for row in &locked {
        let key = InstanceKey::new(row.get::<_, String>(0), row.get::<_, String>(1));
        let Some(group) = groups.get(&key) else {
            continue;
        };
        let fresh: Vec<&TwinEvent> = group
            .iter()
            .filter(|e| {
                new_ids.contains(&(
                    e.interface_id.as_str(),
                    e.instance_id.as_str(),
                    e.id.as_str(),
                ))
            })
            .collect();
        if fresh.is_empty() {
            continue;
        }
        let mut record = record_from_row(row).unwrap_or_else(|err| {
            // A tree this build cannot read is rebuilt from the new events only; logged
            // loudly because older fields are then missing from the state.
            tracing::error!(%err, ?key, "unreadable merge tree, starting afresh");
            InstanceRecord::default()
        });
        record.absorb(fresh);
        updates.push(&key, &record);
    }
    let params = updates.params();
    let params: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    transaction
        .execute(&statements.update_latest, &params)
        .await?;
    transaction.commit().await?;
    Ok(inserted.len())
}

/// Columns of the `update_latest` statement.
#[derive(Default)]
struct LatestUpdates {
    interfaces: Vec<String>,
    instances: Vec<String>,
    ids: Vec<String>,
    types: Vec<String>,
    times: Vec<DateTime<Utc>>,
    counts: Vec<i64>,
    states: Vec<Value>,
    trees: Vec<Vec<u8>>,
}

impl LatestUpdates {
    fn push(&mut self, key: &InstanceKey, record: &InstanceRecord) {
        let latest = record.latest_state(key);
        self.interfaces.push(latest.interface_id);
        self.instances.push(latest.instance_id);
        self.ids.push(latest.id);
        self.types.push(latest.event_type);
        self.times.push(latest.time);
        self.counts.push(latest.event_count);
        self.states.push(Value::Object(latest.state));
        self.trees
            .push(serde_json::to_vec(&record.tree).expect("merge trees serialize"));
    }

    fn params(self) -> Vec<Box<dyn ToSql + Sync + Send>> {
        vec![
            Box::new(self.interfaces),
            Box::new(self.instances),
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
pub fn with_database(url: &str, name: &str) -> String {
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

/// Creates database `name` (through the server at `admin_url`) and returns a URL for it; used
/// by tests and benchmarks that need a scratch database.
pub async fn create_database(admin_url: &str, name: &str) -> Result<String, StoreError> {
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
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
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
    use super::with_database;

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
