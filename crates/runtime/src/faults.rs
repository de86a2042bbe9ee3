//! Faults a soak injects into a running platform (feature `bench`, for `ktwin bench soak`):
//! the event store refusing commits, the embedded broker's link stalled, and a service replica
//! killed with events in flight. [`UpOptions::faults`](crate::up::UpOptions) hands them to
//! [`Platform::start`](crate::up::Platform::start), which wires them into the store, the link
//! and the victim service; the soak switches them on and off while the scenario runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cloudevents::Event;
use ktwin_store::faults::GatedBackend;
use ktwin_store::{Backend, StoreError};
use tokio::sync::watch;

use crate::pool::{DeliveryError, PoolStats};
use crate::service::ServiceEndpoint;

/// Switches for the faults of one platform; clones share them.
#[derive(Debug, Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store_down: AtomicBool,
    refused_appends: AtomicU64,
    link_stalled: watch::Sender<bool>,
    /// Bumped by each kill: deliveries in flight at that moment fail.
    kills: watch::Sender<u64>,
    /// Whether the victim's replica is down (killed, not restarted yet).
    replica_down: watch::Sender<bool>,
    killed_deliveries: AtomicU64,
    victim: String,
    restart: Duration,
}

impl Faults {
    /// Faults for a platform whose service `victim` (an interface name) is the one whose
    /// replica gets killed; a killed replica is back after `restart`.
    pub fn new(victim: &str, restart: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                store_down: AtomicBool::new(false),
                refused_appends: AtomicU64::new(0),
                link_stalled: watch::Sender::new(false),
                kills: watch::Sender::new(0),
                replica_down: watch::Sender::new(false),
                killed_deliveries: AtomicU64::new(0),
                victim: victim.to_owned(),
                restart,
            }),
        }
    }

    /// While down, the store refuses every commit as unavailable (a transient failure: the
    /// feed retries); reads and dead letters still work.
    pub fn set_store_down(&self, down: bool) {
        self.shared.store_down.store(down, Ordering::SeqCst);
    }

    /// Commits the store refused so far.
    pub fn refused_appends(&self) -> u64 {
        self.shared.refused_appends.load(Ordering::Relaxed)
    }

    /// While stalled, the platform reads nothing from the embedded broker's link (devices
    /// still get their acknowledgements; the broker's log holds the messages).
    pub fn set_link_stalled(&self, stalled: bool) {
        self.shared.link_stalled.send_replace(stalled);
    }

    /// Kills the victim's replica: its deliveries in flight fail as unreachable (the broker
    /// delivers them again) and new ones wait until a replica is back, after the restart time.
    pub fn kill_replica(&self) {
        let shared = Arc::clone(&self.shared);
        shared.replica_down.send_replace(true);
        shared.kills.send_modify(|kills| *kills += 1);
        tokio::spawn(async move {
            tokio::time::sleep(shared.restart).await;
            shared.replica_down.send_replace(false);
        });
    }

    /// Deliveries that failed because their replica was killed.
    pub fn killed_deliveries(&self) -> u64 {
        self.shared.killed_deliveries.load(Ordering::Relaxed)
    }

    /// The stall switch as the link reads it.
    pub(crate) fn link_stall(&self) -> watch::Receiver<bool> {
        self.shared.link_stalled.subscribe()
    }

    /// `backend` with the store outage switch in front of its commits.
    pub(crate) fn store(&self, backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
        let shared = Arc::clone(&self.shared);
        Arc::new(GatedBackend::new(backend, move || {
            if !shared.store_down.load(Ordering::SeqCst) {
                return Ok(());
            }
            shared.refused_appends.fetch_add(1, Ordering::Relaxed);
            Err(StoreError::unavailable(
                "committing a batch",
                "the store is down (fault injected by the soak)",
            ))
        }))
    }

    /// `endpoint` as a killable replica when `service` is the victim, else unchanged.
    pub(crate) fn service(
        &self,
        service: &str,
        endpoint: Arc<dyn ServiceEndpoint>,
    ) -> Arc<dyn ServiceEndpoint> {
        if service != self.shared.victim {
            return endpoint;
        }
        Arc::new(KillableReplica {
            inner: endpoint,
            name: service.to_owned(),
            faults: self.clone(),
        })
    }
}

/// A service replica that a kill takes down for the restart time.
struct KillableReplica {
    inner: Arc<dyn ServiceEndpoint>,
    name: String,
    faults: Faults,
}

#[async_trait]
impl ServiceEndpoint for KillableReplica {
    async fn deliver(&self, event: Arc<Event>) -> Result<Vec<Event>, DeliveryError> {
        let shared = &self.faults.shared;
        // No replica while the killed one restarts: the event waits, as in a pool.
        let _ = shared.replica_down.subscribe().wait_for(|down| !down).await;
        let mut kills = shared.kills.subscribe();
        tokio::select! {
            result = self.inner.deliver(event) => result,
            _ = kills.changed() => {
                shared.killed_deliveries.fetch_add(1, Ordering::Relaxed);
                Err(DeliveryError::Unreachable {
                    replica: self.name.clone(),
                    reason: "the replica was killed (fault injected by the soak)".to_owned(),
                })
            }
        }
    }

    fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}
