//! Per-key rate limits (GCRA, `governor`) with a bounded number of keys.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: NonZeroU32,
    /// Requests allowed at once after a quiet period.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `per_second` sustained with bursts of `burst`; `None` if either is zero.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Some(Self {
            per_second: NonZeroU32::new(per_second)?,
            burst: NonZeroU32::new(burst)?,
        })
    }
}

/// Most keys a limiter tracks. Keys are token names, JWT subjects or client addresses: the
/// last is chosen by strangers, so the map is pruned (keys back at full allowance dropped)
/// when it grows past this, and cleared if that is not enough.
pub const MAX_LIMITER_KEYS: usize = 100_000;

/// A rate limit per key.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    // Replaced whole when pruning is not enough (governor cannot drop busy keys).
    limiter: RwLock<DefaultKeyedRateLimiter<K>>,
    quota: Quota,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("keys", &self.keys())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter applying `limit` to each key, tracking at most `MAX_LIMITER_KEYS`.
    pub fn new(limit: RateLimit) -> Self {
        Self::with_max_keys(limit, MAX_LIMITER_KEYS)
    }

    /// A limiter tracking at most `max_keys` keys.
    pub fn with_max_keys(limit: RateLimit, max_keys: usize) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        Self {
            limiter: RwLock::new(DefaultKeyedRateLimiter::keyed(quota)),
            quota,
            max_keys,
        }
    }

    /// Counts one request of `key`: `Err(wait)` when it is over its limit, with how long until
    /// it may retry.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.keys() >= self.max_keys {
            self.prune();
        }
        let limiter = self.limiter.read().unwrap_or_else(|e| e.into_inner());
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    fn prune(&self) {
        let mut limiter = self.limiter.write().unwrap_or_else(|e| e.into_inner());
        limiter.retain_recent();
        if limiter.len() >= self.max_keys {
            // Every tracked key is busy: forgetting them lets one burst through, which is
            // better than growing without bound.
            *limiter = DefaultKeyedRateLimiter::keyed(self.quota);
        }
        limiter.shrink_to_fit();
    }

    /// How many keys are tracked.
    pub fn keys(&self) -> usize {
        self.limiter.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Whole seconds to put in `Retry-After` for a wait (at least 1: `0` invites a retry storm).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.as_secs() == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_burst_waits_and_others_are_unaffected() {
        let limiter = KeyedLimiter::new(RateLimit::new(1, 2).unwrap());
        assert!(limiter.check(&"a").is_ok());
        assert!(limiter.check(&"a").is_ok());
        let wait = limiter.check(&"a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check(&"b").is_ok());
    }

    #[test]
    fn keys_are_bounded() {
        let limiter = KeyedLimiter::with_max_keys(RateLimit::new(1, 1).unwrap(), 100);
        for key in 0..10_000u32 {
            let _ = limiter.check(&key);
            assert!(limiter.keys() <= 100);
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
    }
}
