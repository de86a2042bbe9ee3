//! Dead letters in the fjall database: one keyspace of letters by number, one durable batch per
//! change (a letter and the evictions that make room for it commit together).

use std::sync::{Mutex, PoisonError};

use ::fjall::{Database, Keyspace, PersistMode};
use async_trait::async_trait;
use chrono::Utc;
use ktwin_broker::NewDeadLetter;

use super::{FjallBackend, commit_failed, index_keyspace};
use crate::backend::{Page, StoreError};
use crate::dead_letters::{
    DeadLetterLimits, DeadLetterPut, DeadLetterStore, DeadLetterUsage, LetterMeta, LetterSelection,
    OverflowPolicy, StoredDeadLetter, fit_alone, record_put, refuse,
};

/// Letters by number (8 bytes, big-endian) → [`encode`]d letter.
const LETTERS: &str = "dead_letter";
/// Counters that outlive the letters: [`EVICTED`].
const META: &str = "dead_letter_meta";
/// Letters deleted to make room, ever (8 bytes, big-endian).
const EVICTED: &[u8] = b"evicted";

/// The dead letters of one database.
pub(super) struct FjallDeadLetters {
    letters: Keyspace,
    meta: Keyspace,
    /// Held by the one change running; kept equal to what is committed.
    tally: Mutex<Tally>,
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    next_seq: u64,
    usage: DeadLetterUsage,
}

/// `[size: u64][meta length: u32][meta JSON][payload]`, sizes big-endian; `size` is the
/// letter's [`NewDeadLetter::size`], what the byte budget counts.
fn encode(letter: &NewDeadLetter, at: chrono::DateTime<Utc>) -> Vec<u8> {
    let meta = serde_json::to_vec(&LetterMeta::of(letter, at)).expect("letter metadata serializes");
    let mut value = Vec::with_capacity(12 + meta.len() + letter.payload.len());
    value.extend_from_slice(&(letter.size() as u64).to_be_bytes());
    value.extend_from_slice(&u32::try_from(meta.len()).unwrap_or(u32::MAX).to_be_bytes());
    value.extend_from_slice(&meta);
    value.extend_from_slice(&letter.payload);
    value
}

fn stored_size(value: &[u8]) -> Result<u64, StoreError> {
    let bytes = value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::corrupt_data("a dead letter shorter than its header"))?;
    Ok(u64::from_be_bytes(bytes))
}

fn decode(seq: u64, value: &[u8]) -> Result<StoredDeadLetter, StoreError> {
    let corrupt = || StoreError::corrupt_data(format!("dead letter {seq}"));
    let meta_len = value
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(corrupt)? as usize;
    let meta = value.get(12..12 + meta_len).ok_or_else(corrupt)?;
    let meta: LetterMeta = serde_json::from_slice(meta)
        .map_err(|err| StoreError::corrupt(format!("dead letter {seq}"), err))?;
    Ok(meta.into_stored(seq, value[12 + meta_len..].to_vec()))
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::corrupt_data(format!("dead letter key of {} bytes", key.len())))
}

impl FjallDeadLetters {
    /// Opens the keyspaces and counts what they hold.
    pub(super) fn open(db: &Database) -> Result<Self, StoreError> {
        let letters = db.keyspace(LETTERS, index_keyspace)?;
        let meta = db.keyspace(META, index_keyspace)?;
        let mut usage = DeadLetterUsage::default();
        let mut next_seq = 0;
        for entry in letters.iter() {
            let (key, value) = entry.into_inner()?;
            usage.count += 1;
            usage.bytes += stored_size(&value)?;
            next_seq = seq_of(&key)? + 1;
        }
        usage.evicted = match meta.get(EVICTED)? {
            Some(bytes) => seq_of(&bytes)?,
            None => 0,
        };
        Ok(Self {
            letters,
            meta,
            tally: Mutex::new(Tally { next_seq, usage }),
        })
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(
        &self,
        db: &Database,
        letter: NewDeadLetter,
        limits: DeadLetterLimits,
    ) -> Result<(DeadLetterPut, DeadLetterUsage), StoreError> {
        let mut tally = self.tally();
        let size = letter.size() as u64;
        let Some((letter, truncated)) = fit_alone(letter, limits.max_bytes) else {
            return Err(refuse(size, &tally.usage, &limits));
        };
        let size = letter.size() as u64;
        let mut next = *tally;
        let mut batch = db.batch().durability(Some(PersistMode::SyncData));
        let mut evicted = 0;
        if next.usage.bytes + size > limits.max_bytes {
            if limits.overflow == OverflowPolicy::RefuseNew {
                return Err(refuse(size, &tally.usage, &limits));
            }
            for entry in self.letters.iter() {
                if next.usage.bytes + size <= limits.max_bytes {
                    break;
                }
                let (key, value) = entry.into_inner()?;
                next.usage.bytes -= stored_size(&value)?;
                next.usage.count -= 1;
                evicted += 1;
                batch.remove(&self.letters, key);
            }
            next.usage.evicted += evicted;
            batch.insert(&self.meta, EVICTED, next.usage.evicted.to_be_bytes());
        }
        let seq = next.next_seq;
        batch.insert(
            &self.letters,
            seq.to_be_bytes(),
            encode(&letter, Utc::now()),
        );
        batch.commit().map_err(commit_failed)?;
        next.next_seq += 1;
        next.usage.count += 1;
        next.usage.bytes += size;
        *tally = next;
        Ok((
            DeadLetterPut {
                seq,
                evicted,
                truncated,
            },
            next.usage,
        ))
    }

    fn list(&self, after: Option<u64>, limit: usize) -> Result<Page<StoredDeadLetter>, StoreError> {
        let start = after.map_or(0, |seq| seq.saturating_add(1));
        let items = self
            .letters
            .range(start.to_be_bytes()..)
            .take(limit.saturating_add(1))
            .map(|entry| {
                let (key, value) = entry.into_inner()?;
                decode(seq_of(&key)?, &value)
            })
            .collect::<Result<_, _>>()?;
        Ok(Page::from_overfetch(items, limit))
    }

    fn remove(&self, db: &Database, selection: LetterSelection) -> Result<u64, StoreError> {
        let mut tally = self.tally();
        let mut batch = db.batch().durability(Some(PersistMode::SyncData));
        let mut next = *tally;
        let mut remove = |key: &[u8], value: &[u8]| -> Result<(), StoreError> {
            next.usage.bytes -= stored_size(value)?;
            next.usage.count -= 1;
            batch.remove(&self.letters, key);
            Ok(())
        };
        match selection {
            LetterSelection::All => {
                for entry in self.letters.iter() {
                    let (key, value) = entry.into_inner()?;
                    remove(&key, &value)?;
                }
            }
            LetterSelection::Numbers(seqs) => {
                for seq in seqs {
                    if let Some(value) = self.letters.get(seq.to_be_bytes())? {
                        remove(&seq.to_be_bytes(), &value)?;
                    }
                }
            }
        }
        let removed = tally.usage.count - next.usage.count;
        batch.commit().map_err(commit_failed)?;
        *tally = next;
        Ok(removed)
    }
}

#[async_trait]
impl DeadLetterStore for FjallBackend {
    async fn put(
        &self,
        letter: NewDeadLetter,
        limits: DeadLetterLimits,
    ) -> Result<DeadLetterPut, StoreError> {
        let this = self.clone();
        let (put, usage) =
            tokio::task::spawn_blocking(move || this.0.dead.put(&this.0.db, letter, limits))
                .await
                .map_err(|err| StoreError::unavailable("keeping a dead letter", err))??;
        record_put(&put, &limits, &usage);
        Ok(put)
    }

    async fn list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<StoredDeadLetter>, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.0.dead.list(after, limit))
            .await
            .map_err(|err| StoreError::unavailable("listing dead letters", err))?
    }

    async fn remove(&self, selection: LetterSelection) -> Result<u64, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.0.dead.remove(&this.0.db, selection))
            .await
            .map_err(|err| StoreError::unavailable("deleting dead letters", err))?
    }

    async fn usage(&self) -> Result<DeadLetterUsage, StoreError> {
        Ok(self.0.dead.tally().usage)
    }
}
