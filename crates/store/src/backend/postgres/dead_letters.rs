//! Dead letters in PostgreSQL: table `dead_letter`, bounded by the one-row `dead_letter_usage`,
//! which every change locks first (so the bound holds across store replicas and changes never
//! deadlock on each other).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ktwin_broker::NewDeadLetter;
use tokio_postgres::Transaction;
use tokio_postgres::types::Json;

use super::PostgresBackend;
use crate::backend::{Page, StoreError};
use crate::dead_letters::{
    DeadLetterLimits, DeadLetterPut, DeadLetterStore, DeadLetterUsage, LetterSelection,
    OverflowPolicy, StoredDeadLetter, fit_alone, record_put, refuse,
};

const LOCK_USAGE: &str =
    "SELECT count, bytes, evicted FROM dead_letter_usage WHERE id = 1 FOR UPDATE";
const USAGE: &str = "SELECT count, bytes, evicted FROM dead_letter_usage WHERE id = 1";
/// The oldest letters whose bytes add up to at least `$1`: those with less than `$1` bytes
/// before them.
const EVICT_OLDEST: &str = "DELETE FROM dead_letter WHERE seq IN ( \
    SELECT seq FROM (SELECT seq, (sum(size) OVER (ORDER BY seq) - size)::bigint AS before \
    FROM dead_letter) d WHERE before < $1) RETURNING size";
const INSERT: &str = "INSERT INTO dead_letter (origin, reason, headers, payload, size) \
    VALUES ($1, $2, $3, $4, $5) RETURNING seq";
const SET_USAGE: &str =
    "UPDATE dead_letter_usage SET count = $1, bytes = $2, evicted = $3 WHERE id = 1";
const LIST: &str = "SELECT seq, at, origin, reason, headers, payload FROM dead_letter \
    WHERE seq > $1 ORDER BY seq LIMIT $2";
const REMOVE: &str = "DELETE FROM dead_letter WHERE $1 OR seq = ANY($2) RETURNING size";

fn as_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

async fn locked_usage(transaction: &Transaction<'_>) -> Result<DeadLetterUsage, StoreError> {
    let row = transaction.query_one(LOCK_USAGE, &[]).await?;
    Ok(DeadLetterUsage {
        count: as_u64(row.get(0)),
        bytes: as_u64(row.get(1)),
        evicted: as_u64(row.get(2)),
    })
}

async fn save_usage(
    transaction: &Transaction<'_>,
    usage: &DeadLetterUsage,
) -> Result<(), StoreError> {
    let (count, bytes, evicted) = (
        as_i64(usage.count),
        as_i64(usage.bytes),
        as_i64(usage.evicted),
    );
    transaction
        .execute(SET_USAGE, &[&count, &bytes, &evicted])
        .await?;
    Ok(())
}

/// Keeps one letter in `transaction` (not committed yet).
async fn put_in(
    transaction: &Transaction<'_>,
    letter: NewDeadLetter,
    limits: DeadLetterLimits,
) -> Result<(DeadLetterPut, DeadLetterUsage), StoreError> {
    let mut usage = locked_usage(transaction).await?;
    let size = letter.size() as u64;
    let Some((letter, truncated)) = fit_alone(letter, limits.max_bytes) else {
        return Err(refuse(size, &usage, &limits));
    };
    let size = letter.size() as u64;
    let mut evicted = 0;
    if usage.bytes + size > limits.max_bytes {
        if limits.overflow == OverflowPolicy::RefuseNew {
            return Err(refuse(size, &usage, &limits));
        }
        let need = as_i64(usage.bytes + size - limits.max_bytes);
        for row in transaction.query(EVICT_OLDEST, &[&need]).await? {
            usage.bytes -= as_u64(row.get(0));
            usage.count -= 1;
            evicted += 1;
        }
        usage.evicted += evicted;
    }
    let row = transaction
        .query_one(
            INSERT,
            &[
                &letter.origin,
                &letter.reason,
                &Json(&letter.headers),
                &letter.payload,
                &as_i64(size),
            ],
        )
        .await?;
    usage.count += 1;
    usage.bytes += size;
    save_usage(transaction, &usage).await?;
    let put = DeadLetterPut {
        seq: as_u64(row.get(0)),
        evicted,
        truncated,
    };
    Ok((put, usage))
}

#[async_trait]
impl DeadLetterStore for PostgresBackend {
    async fn put(
        &self,
        letter: NewDeadLetter,
        limits: DeadLetterLimits,
    ) -> Result<DeadLetterPut, StoreError> {
        let mut writer = self.writer().await;
        let session = self.writer_session(&mut writer).await?;
        let transaction = session.client.transaction().await?;
        let (put, usage) = put_in(&transaction, letter, limits).await?;
        transaction.commit().await?;
        record_put(&put, &limits, &usage);
        Ok(put)
    }

    async fn list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<StoredDeadLetter>, StoreError> {
        let session = self.reader().await?;
        let after = after.map_or(-1, as_i64);
        let rows = session
            .client
            .query(LIST, &[&after, &super::limit_param(limit)])
            .await?;
        let items = rows
            .iter()
            .map(|row| {
                let Json(headers): Json<Vec<(String, String)>> = row.get("headers");
                StoredDeadLetter {
                    seq: as_u64(row.get("seq")),
                    at: row.get::<_, DateTime<Utc>>("at"),
                    letter: NewDeadLetter {
                        origin: row.get("origin"),
                        reason: row.get("reason"),
                        headers,
                        payload: row.get("payload"),
                    },
                }
            })
            .collect();
        Ok(Page::from_overfetch(items, limit))
    }

    async fn remove(&self, selection: LetterSelection) -> Result<u64, StoreError> {
        let (all, seqs) = match selection {
            LetterSelection::All => (true, Vec::new()),
            LetterSelection::Numbers(seqs) => (false, seqs.into_iter().map(as_i64).collect()),
        };
        let mut writer = self.writer().await;
        let session = self.writer_session(&mut writer).await?;
        let transaction = session.client.transaction().await?;
        let mut usage = locked_usage(&transaction).await?;
        let removed = transaction.query(REMOVE, &[&all, &seqs]).await?;
        for row in &removed {
            usage.bytes -= as_u64(row.get(0));
            usage.count -= 1;
        }
        save_usage(&transaction, &usage).await?;
        transaction.commit().await?;
        Ok(removed.len() as u64)
    }

    async fn usage(&self) -> Result<DeadLetterUsage, StoreError> {
        let session = self.reader().await?;
        let row = session.client.query_one(USAGE, &[]).await?;
        Ok(DeadLetterUsage {
            count: as_u64(row.get(0)),
            bytes: as_u64(row.get(1)),
            evicted: as_u64(row.get(2)),
        })
    }
}
