//! The backends' caches of what they committed, bounded by the bytes they hold: their keys and
//! values come from the wire (instance names, merge records of arbitrary JSON states), so a
//! bound by count would let a stranger's long names or large states take memory without limit.

use std::collections::HashMap;
use std::hash::Hash;

/// What one entry costs beyond the bytes it is charged for: the map's slot, the key's and the
/// value's fixed parts.
const ENTRY_OVERHEAD: usize = 64;

/// A map that holds at most `limit` bytes of entries, each charged the bytes its inserter
/// names plus [`ENTRY_OVERHEAD`]; an insert that would pass the limit evicts arbitrary
/// entries first, and an entry larger than the limit on its own is not kept.
pub(crate) struct BoundedCache<K, V> {
    entries: HashMap<K, (V, usize)>,
    bytes: usize,
    limit: usize,
}

impl<K: Hash + Eq, V> BoundedCache<K, V> {
    /// An empty cache holding at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    /// The value cached for `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(value, _)| value)
    }

    /// Takes the value cached for `key` out of the cache.
    pub(crate) fn take<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (value, cost) = self.entries.remove(key)?;
        self.bytes -= cost;
        Some(value)
    }

    /// Caches `value` for `key`, charged `bytes` (plus [`ENTRY_OVERHEAD`]).
    pub(crate) fn insert(&mut self, key: K, value: V, bytes: usize) {
        self.take(&key);
        let cost = bytes.saturating_add(ENTRY_OVERHEAD);
        if cost > self.limit {
            return;
        }
        while self.bytes + cost > self.limit {
            let Some((_, (_, evicted))) = self.entries.extract_if(|_, _| true).next() else {
                break;
            };
            self.bytes -= evicted;
        }
        self.bytes += cost;
        self.entries.insert(key, (value, cost));
    }

    /// The values cached.
    #[cfg(test)]
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|(value, _)| value)
    }

    /// The bytes the entries are charged, together.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_no_more_bytes_than_its_limit() {
        let mut cache = BoundedCache::new(10_000);
        for key in 0..1_000u32 {
            cache.insert(key, (), 500);
            assert!(
                cache.bytes() <= 10_000,
                "{} bytes after {key}",
                cache.bytes()
            );
        }
        // The latest insert is always kept.
        assert!(cache.get(&999).is_some());
        assert_eq!(cache.bytes(), cache.entries.len() * (500 + ENTRY_OVERHEAD));
    }

    #[test]
    fn an_entry_larger_than_the_limit_is_not_kept_and_replaces_nothing_else() {
        let mut cache = BoundedCache::new(1_000);
        cache.insert("small", 1, 10);
        cache.insert("big", 2, 5_000);
        assert_eq!(cache.get("big"), None);
        assert_eq!(cache.get("small"), Some(&1));
        // A key re-inserted too large loses its older, smaller value (it is stale).
        cache.insert("small", 3, 5_000);
        assert_eq!(cache.get("small"), None);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn taking_and_replacing_keep_the_count_of_bytes() {
        let mut cache = BoundedCache::new(10_000);
        cache.insert(1, "a", 100);
        cache.insert(1, "b", 300);
        assert_eq!(cache.bytes(), 300 + ENTRY_OVERHEAD);
        assert_eq!(cache.take(&1), Some("b"));
        assert_eq!(cache.bytes(), 0);
        assert_eq!(cache.take(&1), None);
    }
}
