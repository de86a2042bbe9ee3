//! Dead letters kept in the event store's database (the embedded store or PostgreSQL), beside
//! the history they failed to join: why each was given up on, by whom, and the original payload
//! and headers, so an operator can list, replay or purge them (`GET /api/v1/dead-letters`,
//! `ktwin dead-letters`).
//!
//! Strangers control what is dead-lettered (a device can publish garbage all day), so the
//! letters are bounded by bytes, with an explicit overflow policy ([`OverflowPolicy`]) whose
//! every action is counted ([`metric_names::DEAD_LETTER_OVERFLOW`]) and logged.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ktwin_broker::NewDeadLetter;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::backend::{Page, StoreError};
use crate::metric_names;

/// Header added to a letter whose payload was cut to fit the whole byte budget: the original
/// payload's length in bytes.
pub const TRUNCATED_HEADER: &str = "x-ktwin-payload-truncated-from";

/// What happens to a new dead letter when the kept ones already fill the byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum OverflowPolicy {
    /// The oldest letters are deleted until the new one fits (each counted as `evicted`):
    /// the newest failures, usually the ones being debugged, are kept.
    #[default]
    DropOldest,
    /// The new letter is refused ([`StoreError::Full`], counted as `refused`): its message
    /// stays with its source (a device keeps its QoS 1 message, a subscription redelivers),
    /// so nothing is lost but ingestion of bad messages backs up until letters are purged.
    RefuseNew,
}

impl OverflowPolicy {
    /// The policy's name, as the CLI and the summary spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowPolicy::DropOldest => "drop-oldest",
            OverflowPolicy::RefuseNew => "refuse-new",
        }
    }
}

/// How much room dead letters get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterLimits {
    /// Bytes of letters kept at most, as [`NewDeadLetter::size`] counts them.
    pub max_bytes: u64,
    /// What happens beyond.
    pub overflow: OverflowPolicy,
}

/// 64 MiB: sixteen of the largest messages the embedded MQTT broker accepts.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

impl Default for DeadLetterLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            overflow: OverflowPolicy::DropOldest,
        }
    }
}

/// A kept dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// Its number: letters are numbered in the order they were kept.
    pub seq: u64,
    /// When it was kept.
    pub at: DateTime<Utc>,
    /// The letter.
    pub letter: NewDeadLetter,
}

/// How full the dead letters are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterUsage {
    /// Letters kept.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Letters deleted to make room since the store was created.
    pub evicted: u64,
}

/// What keeping one letter did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadLetterPut {
    /// The new letter's number.
    pub seq: u64,
    /// Older letters deleted to make room for it.
    pub evicted: u64,
    /// Whether its payload was cut to fit the whole budget.
    pub truncated: bool,
}

/// Which letters an operation takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LetterSelection {
    /// Every letter.
    All,
    /// The letters with these numbers.
    Numbers(Vec<u64>),
}

/// Dead letters in a backend's database. Every method is atomic: a `put` and the evictions it
/// makes room with commit together, durably, before it returns.
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// Keeps `letter` within `limits` (see [`OverflowPolicy`]).
    async fn put(
        &self,
        letter: NewDeadLetter,
        limits: DeadLetterLimits,
    ) -> Result<DeadLetterPut, StoreError>;
    /// Letters in the order they were kept, after number `after`.
    async fn list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<StoredDeadLetter>, StoreError>;
    /// Deletes the selected letters; returns how many there were.
    async fn remove(&self, selection: LetterSelection) -> Result<u64, StoreError>;
    /// How full the dead letters are.
    async fn usage(&self) -> Result<DeadLetterUsage, StoreError>;
}

/// A letter made to fit `max_bytes` on its own: when it is larger, its payload is cut (the
/// original length goes in [`TRUNCATED_HEADER`]); `None` when even its headers and reason do not
/// fit.
pub(crate) fn fit_alone(
    mut letter: NewDeadLetter,
    max_bytes: u64,
) -> Option<(NewDeadLetter, bool)> {
    let size = letter.size() as u64;
    if size <= max_bytes {
        return Some((letter, false));
    }
    let original = letter.payload.len();
    letter
        .headers
        .push((TRUNCATED_HEADER.to_owned(), original.to_string()));
    let rest = letter.size() as u64 - original as u64;
    let room = usize::try_from(max_bytes.checked_sub(rest)?).ok()?;
    letter.payload.truncate(room);
    Some((letter, true))
}

/// Counts and logs what keeping a letter did to the others (or to itself).
pub(crate) fn record_put(put: &DeadLetterPut, limits: &DeadLetterLimits, usage: &DeadLetterUsage) {
    metrics::counter!(metric_names::DEAD_LETTERS).increment(1);
    metrics::gauge!(metric_names::DEAD_LETTER_BYTES).set(usage.bytes as f64);
    if put.evicted > 0 {
        metrics::counter!(metric_names::DEAD_LETTER_OVERFLOW, "action" => "evicted")
            .increment(put.evicted);
        tracing::warn!(
            evicted = put.evicted,
            max_bytes = limits.max_bytes,
            "dead letters over their byte budget: the oldest were deleted (policy drop-oldest)"
        );
    }
    if put.truncated {
        metrics::counter!(metric_names::DEAD_LETTER_OVERFLOW, "action" => "truncated").increment(1);
        tracing::warn!(
            seq = put.seq,
            max_bytes = limits.max_bytes,
            "a dead letter larger than the whole budget was kept with its payload cut"
        );
    }
}

/// The refusal of a letter under [`OverflowPolicy::RefuseNew`], counted and logged.
pub(crate) fn refuse(size: u64, usage: &DeadLetterUsage, limits: &DeadLetterLimits) -> StoreError {
    metrics::counter!(metric_names::DEAD_LETTER_OVERFLOW, "action" => "refused").increment(1);
    tracing::warn!(
        size,
        used = usage.bytes,
        max_bytes = limits.max_bytes,
        "dead letters full: a new one is refused (policy refuse-new); its message stays with its source"
    );
    StoreError::Full {
        context: format!(
            "dead letters hold {} of {} bytes; a letter of {size} bytes does not fit (policy \
             refuse-new: purge letters with `ktwin dead-letters purge`)",
            usage.bytes, limits.max_bytes
        ),
    }
}

/// Stored form of a letter's description (its payload is kept apart, as raw bytes).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LetterMeta {
    #[serde(rename = "t")]
    pub at_micros: i64,
    #[serde(rename = "o")]
    pub origin: String,
    #[serde(rename = "r")]
    pub reason: String,
    #[serde(rename = "h")]
    pub headers: Vec<(String, String)>,
}

impl LetterMeta {
    pub(crate) fn of(letter: &NewDeadLetter, at: DateTime<Utc>) -> Self {
        Self {
            at_micros: at.timestamp_micros(),
            origin: letter.origin.clone(),
            reason: letter.reason.clone(),
            headers: letter.headers.clone(),
        }
    }

    pub(crate) fn into_stored(self, seq: u64, payload: Vec<u8>) -> StoredDeadLetter {
        StoredDeadLetter {
            seq,
            at: DateTime::from_timestamp_micros(self.at_micros).unwrap_or_default(),
            letter: NewDeadLetter {
                origin: self.origin,
                reason: self.reason,
                headers: self.headers,
                payload,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(payload: usize) -> NewDeadLetter {
        NewDeadLetter {
            origin: "ingress".into(),
            reason: "not JSON".into(),
            headers: vec![("x-ktwin-topic".into(), "ktwin/real/a/b".into())],
            payload: vec![b'x'; payload],
        }
    }

    #[test]
    fn a_letter_larger_than_the_budget_keeps_what_fits_and_says_so() {
        let small = letter(10);
        assert_eq!(fit_alone(small.clone(), 1000), Some((small, false)));
        let (cut, truncated) = fit_alone(letter(5000), 1000).unwrap();
        assert!(truncated);
        assert_eq!(cut.size(), 1000);
        assert_eq!(cut.header(TRUNCATED_HEADER), Some("5000"));
        assert!(
            fit_alone(letter(5000), 10).is_none(),
            "not even the headers fit"
        );
    }
}
