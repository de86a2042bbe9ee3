//! The backends' caches of what they committed, bounded by the bytes they hold: their keys and
//! values come from the wire (instance names, merge records of arbitrary JSON states), so a
//! bound by count would let a stranger's long names or large states take memory without limit.

use std::hash::Hash;
use std::mem::size_of;

use quick_cache::{Equivalent, Weighter};

/// What the cache keeps per entry besides the key and value themselves (its slot's metadata,
/// the ghost entries of its eviction policy).
const SLOT_OVERHEAD: u64 = 32;

/// A value with the bytes it is charged.
struct Charged<V> {
    value: V,
    cost: u64,
}

/// Weighs an entry by what it was charged when inserted.
#[derive(Clone)]
struct ByCharge;

impl<K, V> Weighter<K, Charged<V>> for ByCharge {
    fn weight(&self, _key: &K, charged: &Charged<V>) -> u64 {
        charged.cost
    }
}

/// A cache (quick_cache's CLOCK-PRO) holding at most `limit` bytes of entries, each charged
/// the bytes its inserter names plus the size of its key, its value and [`SLOT_OVERHEAD`]; an
/// entry larger than the cache on its own is not kept.
pub(crate) struct BoundedCache<K, V> {
    entries: quick_cache::unsync::Cache<K, Charged<V>, ByCharge>,
}

impl<K: Hash + Eq, V> BoundedCache<K, V> {
    /// An empty cache holding at most `limit` bytes, expecting entries of `typical` bytes.
    pub(crate) fn new(limit: u64, typical: u64) -> Self {
        let items = limit / (typical + Self::fixed_cost());
        Self {
            entries: quick_cache::unsync::Cache::with_weighter(
                usize::try_from(items).unwrap_or(usize::MAX),
                limit,
                ByCharge,
            ),
        }
    }

    /// What every entry costs besides the bytes it is charged.
    fn fixed_cost() -> u64 {
        (size_of::<K>() + size_of::<Charged<V>>()) as u64 + SLOT_OVERHEAD
    }

    /// The value cached for `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.get(key).map(|charged| &charged.value)
    }

    /// Takes the value cached for `key` out of the cache.
    #[cfg(any(feature = "fjall", test))]
    pub(crate) fn take<Q>(&mut self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.remove(key).map(|(_, charged)| charged.value)
    }

    /// Forgets what is cached for `key`.
    pub(crate) fn remove<Q>(&mut self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.remove(key);
    }

    /// Caches `value` for `key`, charged `bytes` besides its fixed cost; evicts what the cache's
    /// policy finds least worth keeping to make room.
    pub(crate) fn insert(&mut self, key: K, value: V, bytes: usize) {
        let cost = (bytes as u64).saturating_add(Self::fixed_cost());
        self.entries.insert(key, Charged { value, cost });
    }

    /// The values cached.
    #[cfg(all(test, feature = "fjall"))]
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, charged)| &charged.value)
    }

    /// The bytes the entries are charged, together.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.entries.weight()
    }

    /// Whether `key` is cached (without counting as a use of it).
    #[cfg(all(test, feature = "fjall"))]
    pub(crate) fn contains<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cache = BoundedCache<u32, ()>;

    #[test]
    fn holds_no_more_bytes_than_its_limit() {
        let mut cache = Cache::new(10_000, 500);
        for key in 0..1_000u32 {
            cache.insert(key, (), 500);
            assert!(
                cache.bytes() <= 10_000,
                "{} bytes after {key}",
                cache.bytes()
            );
        }
        assert_eq!(
            cache.bytes(),
            cache.entries.len() as u64 * (500 + Cache::fixed_cost())
        );
    }

    /// The writer takes a twin's record out and puts it back on every write, and twins are
    /// written in turns: with more twins than fit, the cache must still serve about as many
    /// as it holds (a policy that evicts the oldest would serve none of them).
    #[test]
    fn twins_written_in_turns_are_served_as_far_as_they_fit() {
        let fitting = 100;
        let mut cache = Cache::new(fitting * (500 + Cache::fixed_cost()), 500);
        let twins = 2 * fitting as u32;
        let mut hits = 0;
        for round in 0..10 {
            for twin in 0..twins {
                let hit = cache.take(&twin).is_some();
                if round >= 5 && hit {
                    hits += 1;
                }
                cache.insert(twin, (), 500);
            }
        }
        let served = hits as f64 / (5.0 * f64::from(twins));
        assert!(
            served >= 0.4,
            "{served:.2} of the writes found their record cached"
        );
    }

    #[test]
    fn an_entry_larger_than_the_cache_is_not_kept_and_replaces_its_older_value() {
        let mut cache = BoundedCache::<&str, u32>::new(1_000, 10);
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
        let mut cache = BoundedCache::<u32, &str>::new(10_000, 100);
        let fixed = BoundedCache::<u32, &str>::fixed_cost();
        cache.insert(1, "a", 100);
        cache.insert(1, "b", 300);
        assert_eq!(cache.bytes(), 300 + fixed);
        assert_eq!(cache.take(&1), Some("b"));
        assert_eq!(cache.bytes(), 0);
        assert_eq!(cache.take(&1), None);
    }
}
