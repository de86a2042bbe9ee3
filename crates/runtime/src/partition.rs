//! Which replica of a service handles an event: every event of one instance (its CloudEvent
//! `source`) goes to one replica at a time, the instance's owner, so that state a service keeps
//! per instance in memory (the SDK's `OwnedStates`) is kept by one replica, not copied and
//! diverging across replicas.
//!
//! Instances hash into [`BUCKETS`] buckets. A bucket stays with its owner for as long as that
//! replica runs: the replica remembers which events it applied, so a redelivery must reach it
//! to be recognised. A bucket without a running owner goes to the running replica it prefers
//! by rendezvous hashing, once none of its events is still queued at or handled by the replica
//! that stopped (its queued events come back and are routed again). So new replicas take the
//! buckets first seen, or given up by a stopped replica, after they start. Each move stamps the
//! bucket with a new epoch, sent with the event ([`ktwin_sdk::OWNER_EPOCH_HEADER`]): a replica
//! that gets an instance it handled before reads the instance's state from the store again.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

/// Buckets instances are hashed into (bounded memory, whatever the instance names).
pub(crate) const BUCKETS: usize = 1024;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The replica (its launch index) the bucket's events go to.
    owner: Option<u32>,
    /// When the owner last changed.
    epoch: u64,
    /// Events of the bucket queued at or being handled by the owner.
    outstanding: u32,
}

/// Where a delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim<L> {
    /// To this replica's queue; [`Partitions::release`] the bucket once it is answered.
    Lane {
        /// The instance's bucket.
        bucket: usize,
        /// The owner's queue.
        lane: L,
        /// The bucket's owner epoch.
        epoch: u64,
    },
    /// No replica runs.
    NoReplica,
    /// The bucket's events are still at a replica that is stopping: wait until they are
    /// answered or come back.
    Busy,
}

/// The buckets' owners over the running replicas, each with its queue of type `L`.
pub(crate) struct Partitions<L> {
    buckets: Vec<Bucket>,
    lanes: Vec<(u32, L)>,
    generation: u64,
}

impl<L: Clone> Partitions<L> {
    /// No replica yet.
    pub(crate) fn new() -> Self {
        Self {
            buckets: vec![Bucket::default(); BUCKETS],
            lanes: Vec::new(),
            generation: 0,
        }
    }

    /// The running replicas (launch index, queue); true when they changed.
    pub(crate) fn set_lanes(&mut self, lanes: Vec<(u32, L)>) -> bool {
        let changed = !lanes
            .iter()
            .map(|(i, _)| i)
            .eq(self.lanes.iter().map(|(i, _)| i));
        self.lanes = lanes;
        changed
    }

    /// Routes one event of `instance`: to its bucket's owner, or, when that replica stopped,
    /// to the running replica the bucket prefers.
    pub(crate) fn claim(&mut self, instance: &str) -> Claim<L> {
        let bucket = bucket_of(instance);
        let Some(preferred) = self.preferred(bucket) else {
            return Claim::NoReplica;
        };
        let entry = &mut self.buckets[bucket];
        let running = |owner: &u32| self.lanes.iter().any(|(index, _)| index == owner);
        let owner = match entry.owner.filter(running) {
            Some(owner) => owner,
            None if entry.outstanding > 0 => return Claim::Busy,
            None => {
                self.generation += 1;
                entry.epoch = self.generation;
                entry.owner = Some(preferred);
                preferred
            }
        };
        let Some((_, lane)) = self.lanes.iter().find(|(index, _)| *index == owner) else {
            return Claim::Busy;
        };
        entry.outstanding += 1;
        Claim::Lane {
            bucket,
            lane: lane.clone(),
            epoch: entry.epoch,
        }
    }

    /// One claimed event of `bucket` was answered (or came back); true when the bucket is idle
    /// now and may move.
    pub(crate) fn release(&mut self, bucket: usize) -> bool {
        let entry = &mut self.buckets[bucket];
        entry.outstanding = entry.outstanding.saturating_sub(1);
        entry.outstanding == 0
    }

    /// The running replica `bucket` prefers (highest rendezvous score).
    fn preferred(&self, bucket: usize) -> Option<u32> {
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        self.lanes
            .iter()
            .map(|(index, _)| *index)
            .max_by_key(|index| hasher.hash_one((bucket, *index)))
    }
}

/// The bucket of `instance` (stable within a process: `DefaultHasher` with fixed keys).
fn bucket_of(instance: &str) -> usize {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(instance);
    usize::try_from(hash % BUCKETS as u64).expect("a bucket fits in usize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(indices: &[u32]) -> Vec<(u32, u32)> {
        indices.iter().map(|i| (*i, *i)).collect()
    }

    fn lane(claim: Claim<u32>) -> (usize, u32, u64) {
        match claim {
            Claim::Lane {
                bucket,
                lane,
                epoch,
            } => (bucket, lane, epoch),
            other => panic!("expected a lane, got {other:?}"),
        }
    }

    #[test]
    fn one_instance_goes_to_one_replica_and_instances_spread() {
        let mut partitions = Partitions::new();
        assert_eq!(partitions.claim("a"), Claim::NoReplica);
        partitions.set_lanes(lanes(&[0, 1, 2, 3]));
        let mut used = std::collections::BTreeSet::new();
        for i in 0..200 {
            let instance = format!("instance-{i}");
            let (bucket, first, epoch) = lane(partitions.claim(&instance));
            partitions.release(bucket);
            let (_, again, same_epoch) = lane(partitions.claim(&instance));
            partitions.release(bucket);
            assert_eq!((first, epoch), (again, same_epoch), "{instance}");
            used.insert(first);
        }
        assert_eq!(used.len(), 4, "200 instances over 4 replicas: {used:?}");
    }

    #[test]
    fn a_bucket_stays_with_its_owner_while_it_runs_and_moves_with_a_new_epoch_after() {
        let mut partitions = Partitions::new();
        partitions.set_lanes(lanes(&[0]));
        // An instance that prefers the replica added next.
        let instance = (0..)
            .map(|i| format!("i{i}"))
            .find(|name| {
                let mut probe = Partitions::new();
                probe.set_lanes(lanes(&[0, 1]));
                lane(probe.claim(name)).1 == 1
            })
            .unwrap();
        let (bucket, owner, epoch) = lane(partitions.claim(&instance));
        assert_eq!(owner, 0);
        assert!(partitions.release(bucket));
        assert!(partitions.set_lanes(lanes(&[0, 1])));
        let (_, still, same) = lane(partitions.claim(&instance));
        assert_eq!(
            (still, same),
            (0, epoch),
            "stays with replica 0 while it runs"
        );
        // Its owner stops while it holds an event: the bucket waits for it.
        assert!(partitions.set_lanes(lanes(&[1])));
        assert_eq!(partitions.claim(&instance), Claim::Busy);
        assert!(partitions.release(bucket));
        let (_, moved, later) = lane(partitions.claim(&instance));
        assert_eq!(moved, 1);
        assert!(later > epoch, "a new epoch");
        assert!(!partitions.set_lanes(lanes(&[1])), "unchanged");
    }
}
