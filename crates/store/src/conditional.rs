//! Conditional appends: optimistic concurrency on one instance's latest state.
//!
//! A writer that computes an instance's next state from its latest one (the SDKs' owned state
//! on replicas that nothing partitions) reads the latest state with its [`StateVersion`] (the
//! `ETag` of `GET …/latest`), and appends its event only if the instance is still at that
//! version ([`Precondition`], `If-Match` / `If-None-Match: *` on `POST /api/v1/twin-events`).
//! Any event stored for the instance since the read changes the version, so a lost update is
//! refused ([`crate::StoreError::PreconditionFailed`], `412`) and the writer reads again. The
//! check and the append are one step under the backend's writer for the instance (the embedded
//! engines' single writer; PostgreSQL's row lock on the instance's latest row).
//!
//! Idempotency comes first: an event whose id is stored with the same data is a redelivery and
//! succeeds as a no-op ([`ConditionalAppend::Duplicate`]) whatever the precondition, so a writer
//! that sends its append again (its first answer lost) is not told it lost a race it won.

use std::fmt;

use sha2::{Digest, Sha256};

/// The version of an instance's latest state: an opaque digest of how many events it merged
/// and of its newest event (time and id). Every event stored for the instance changes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateVersion(String);

impl StateVersion {
    /// The version of a state that merged `count` events, the newest at `micros` with `id`.
    pub fn of(count: i64, micros: i64, id: &str) -> Self {
        let mut digest = Sha256::new();
        digest.update(count.to_be_bytes());
        digest.update(micros.to_be_bytes());
        digest.update(id.as_bytes());
        let hash = digest.finalize();
        Self(hash[..16].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A version as a previous answer gave it (the `ETag` without its quotes).
    pub fn from_opaque(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The version as text (32 hex digits for versions this store made).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The version as an HTTP entity tag: the text in double quotes.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for StateVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an instance's latest state must be for a conditional append to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precondition {
    /// No event stored for the instance (`If-None-Match: *`).
    Absent,
    /// The latest state is at this version (`If-Match`).
    At(StateVersion),
}

impl Precondition {
    /// Whether an instance whose latest state is at `current` (`None`: no state) meets it.
    pub fn holds_for(&self, current: Option<&StateVersion>) -> bool {
        match self {
            Precondition::Absent => current.is_none(),
            Precondition::At(expected) => current == Some(expected),
        }
    }
}

impl fmt::Display for Precondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Precondition::Absent => f.write_str("no stored state"),
            Precondition::At(version) => write!(f, "version {version}"),
        }
    }
}

/// What a conditional append did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConditionalAppend {
    /// The event was stored (under its id, or as a new version of it when its id was stored
    /// with other data, as [`crate::Backend::append`] does).
    Stored,
    /// The event's id was stored already with the same data (a redelivery): nothing changed,
    /// whatever the precondition.
    Duplicate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_change_with_count_time_and_id() {
        let base = StateVersion::of(3, 10, "a");
        assert_eq!(base, StateVersion::of(3, 10, "a"));
        assert_eq!(base.as_str().len(), 32);
        for other in [
            StateVersion::of(4, 10, "a"),
            StateVersion::of(3, 11, "a"),
            StateVersion::of(3, 10, "b"),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base.etag(), format!("\"{base}\""));
    }

    #[test]
    fn preconditions_hold_only_for_their_state() {
        let v = StateVersion::of(1, 1, "x");
        assert!(Precondition::Absent.holds_for(None));
        assert!(!Precondition::Absent.holds_for(Some(&v)));
        assert!(Precondition::At(v.clone()).holds_for(Some(&v)));
        assert!(!Precondition::At(v.clone()).holds_for(None));
        assert!(!Precondition::At(v).holds_for(Some(&StateVersion::of(2, 1, "x"))));
    }
}
