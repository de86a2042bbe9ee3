//! A twin service's replicas, each behind its own bounded queue: every event of one instance
//! goes to the replica that owns the instance (module `partition`), each replica takes at
//! most its concurrency from its queue and receives them as binary-mode CloudEvents over HTTP,
//! and a scaler task starts and stops replicas as the [`Autoscaler`] decides.
//!
//! A `2xx` answer completes the delivery (a CloudEvent in the reply is handed back to be
//! published, Knative reply semantics); anything else, an unreachable replica or a timeout is
//! a failed delivery the caller nacks, so the broker delivers the event again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::autoscale::{Autoscaler, ScalePolicy};
use crate::partition::{Claim, Partitions};
use crate::tasks::TaskGroup;

/// Why a replica could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LaunchError(String);

impl LaunchError {
    /// An error with this description.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Starts replicas of one service (child processes in `ktwin up`).
#[async_trait]
pub trait Launcher: Send + Sync + 'static {
    /// Starts replica number `index` and returns it once it serves HTTP.
    async fn launch(&self, index: u32) -> Result<Box<dyn Replica>, LaunchError>;
}

/// One running replica serving CloudEvents over HTTP.
#[async_trait]
pub trait Replica: Send + Sync {
    /// Where events are POSTed.
    fn url(&self) -> &str;
    /// A name for logs (`<service>-<index>`).
    fn label(&self) -> &str;
    /// Whether it is still running.
    async fn is_alive(&self) -> bool;
    /// Stops it gracefully (it has no request in flight by then).
    async fn stop(self: Box<Self>);
}

/// Why a delivery failed; the event should be nacked (redelivered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The service answered with a non-`2xx` status.
    #[error("{replica} answered {status}: {body}")]
    Rejected {
        /// The replica.
        replica: String,
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The replica could not be reached or did not answer in time.
    #[error("{replica} unreachable: {reason}")]
    Unreachable {
        /// The replica.
        replica: String,
        /// The transport error.
        reason: String,
    },
    /// No replica took the event in time (none could start, or all stayed busy).
    #[error("no replica of {service} took the event within {waited:?}")]
    NoReplica {
        /// The service.
        service: String,
        /// How long the event waited.
        waited: Duration,
    },
    /// The reply is not a valid CloudEvent.
    #[error("{replica} replied with an invalid CloudEvent: {reason}")]
    BadReply {
        /// The replica.
        replica: String,
        /// What is wrong.
        reason: String,
    },
    /// The event cannot be sent over HTTP.
    #[error("event cannot be encoded for HTTP: {0}")]
    Encode(String),
    /// The pool is shutting down.
    #[error("service {0} is shutting down")]
    ShuttingDown(String),
}

/// Settings of a [`ServicePool`].
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Scaling policy.
    pub policy: ScalePolicy,
    /// Events waiting for one replica, at most; [`ServicePool::deliver`] waits beyond.
    pub queue_capacity: usize,
    /// Timeout of one HTTP delivery to a replica.
    pub request_timeout: Duration,
    /// How long an event may wait for a replica (cold starts included) before it fails.
    pub wait_timeout: Duration,
    /// How often the scaler observes concurrency.
    pub tick: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            policy: ScalePolicy::default(),
            queue_capacity: 1024,
            request_timeout: Duration::from_secs(30),
            wait_timeout: Duration::from_secs(60),
            tick: Duration::from_millis(500),
        }
    }
}

/// What a pool is doing right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Replicas serving.
    pub replicas: usize,
    /// Events being handled by a replica.
    pub in_flight: usize,
    /// Events waiting for a replica.
    pub waiting: usize,
}

struct Job {
    /// Shared with the delivery it came from: a job whose deliverer gave up waiting can stay
    /// queued while the delivery is redelivered, and must not hold a copy of its own then.
    event: Arc<Event>,
    /// The owner epoch of the event's instance ([`ktwin_sdk::OWNER_EPOCH_HEADER`]).
    epoch: u64,
    reply: oneshot::Sender<Outcome>,
}

/// What became of a job.
enum Outcome {
    /// The replica answered (or could not be reached).
    Done(Result<Vec<Event>, DeliveryError>),
    /// The replica stopped before taking it: route it again.
    Returned(Arc<Event>),
}

type Lane = mpsc::Sender<Job>;
/// A finished launch: the replica's index and the replica, or why it did not start.
type Launched = (u32, Result<Box<dyn Replica>, LaunchError>);
type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

struct Shared {
    name: String,
    config: PoolConfig,
    client: reqwest::Client,
    partitions: std::sync::Mutex<Partitions<Lane>>,
    /// Bumped when the replicas change or a bucket becomes idle: deliveries waiting for a
    /// replica or for a bucket to move look again.
    routing: watch::Sender<u64>,
    /// Deliveries not answered yet (waiting or in flight).
    pending: AtomicUsize,
    in_flight: AtomicUsize,
    replicas: AtomicUsize,
    demand: Notify,
}

impl Shared {
    fn partitions(&self) -> std::sync::MutexGuard<'_, Partitions<Lane>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routing_changed(&self) {
        self.routing.send_modify(|generation| *generation += 1);
    }

    fn release(&self, bucket: usize) {
        if self.partitions().release(bucket) {
            self.routing_changed();
        }
    }
}

/// Counts a delivery as pending until it is answered.
struct Pending<'a>(&'a Shared);

impl<'a> Pending<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.pending.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A claimed bucket, released when the delivery is answered or given up.
struct Claimed<'a> {
    shared: &'a Shared,
    bucket: usize,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.shared.release(self.bucket);
    }
}

/// The replicas of one twin service and the queues in front of them.
pub struct ServicePool {
    shared: Arc<Shared>,
    stop: CancellationToken,
    scaler: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ServicePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePool")
            .field("name", &self.shared.name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ServicePool {
    /// Starts the pool of service `name` (and its `min_scale` replicas) over `launcher`.
    pub fn start(name: &str, launcher: Arc<dyn Launcher>, config: PoolConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.policy.replica_concurrency as usize)
            .build()
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            config,
            client,
            partitions: std::sync::Mutex::new(Partitions::new()),
            routing: watch::Sender::new(0),
            pending: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            replicas: AtomicUsize::new(0),
            demand: Notify::new(),
        });
        let stop = CancellationToken::new();
        let scaler = tokio::spawn(scale_loop(Arc::clone(&shared), launcher, stop.clone()));
        Self {
            shared,
            stop,
            scaler: Mutex::new(Some(scaler)),
        }
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Current replicas, in-flight and waiting events.
    pub fn stats(&self) -> PoolStats {
        let in_flight = self.shared.in_flight.load(Ordering::Relaxed);
        PoolStats {
            replicas: self.shared.replicas.load(Ordering::Relaxed),
            in_flight,
            waiting: self
                .shared
                .pending
                .load(Ordering::Relaxed)
                .saturating_sub(in_flight),
        }
    }

    /// Delivers `event` to the replica that owns its instance (starting one if none runs) and
    /// returns the events its reply carries.
    pub async fn deliver(&self, event: impl Into<Arc<Event>>) -> Result<Vec<Event>, DeliveryError> {
        let mut event = event.into();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.shared.config.wait_timeout;
        let _pending = Pending::new(&self.shared);
        let mut routing = self.shared.routing.subscribe();
        let no_replica = || DeliveryError::NoReplica {
            service: self.shared.name.clone(),
            waited: started.elapsed(),
        };
        loop {
            if self.stop.is_cancelled() {
                return Err(DeliveryError::ShuttingDown(self.shared.name.clone()));
            }
            routing.mark_unchanged();
            let claim = self.shared.partitions().claim(event.source().as_str());
            let (bucket, lane, epoch) = match claim {
                Claim::Lane {
                    bucket,
                    lane,
                    epoch,
                } => (bucket, lane, epoch),
                waiting => {
                    if matches!(waiting, Claim::NoReplica) {
                        self.shared.demand.notify_one();
                    }
                    tokio::select! {
                        _ = routing.changed() => continue,
                        () = self.stop.cancelled() => continue,
                        () = tokio::time::sleep_until(deadline) => return Err(no_replica()),
                    }
                }
            };
            let _claimed = Claimed {
                shared: &self.shared,
                bucket,
            };
            let (reply, answer) = oneshot::channel();
            let job = Job {
                event,
                epoch,
                reply,
            };
            match tokio::time::timeout_at(deadline, lane.send(job)).await {
                Ok(Ok(())) => {}
                // The replica stopped meanwhile.
                Ok(Err(mpsc::error::SendError(job))) => {
                    event = job.event;
                    continue;
                }
                Err(_) => return Err(no_replica()),
            }
            // A job nobody waits for any more is skipped by the worker that takes it.
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(Outcome::Done(result))) => return result,
                Ok(Ok(Outcome::Returned(returned))) => event = returned,
                Ok(Err(_)) => return Err(DeliveryError::ShuttingDown(self.shared.name.clone())),
                Err(_) => return Err(no_replica()),
            }
        }
    }

    /// Stops taking events, lets replicas finish what they hold, then stops them.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        if let Some(scaler) = self.scaler.lock().await.take()
            && let Err(err) = scaler.await
        {
            tracing::error!(service = %self.shared.name, %err, "the pool's scaler task failed");
        }
    }
}

/// A replica with its queue and workers.
struct Running {
    index: u32,
    replica: Box<dyn Replica>,
    lane: Lane,
    queue: Queue,
    workers: CancellationToken,
    tasks: TaskGroup,
}

impl Running {
    /// Lets the workers finish what they took, hands back what is still queued, stops the
    /// replica.
    async fn stop(mut self) {
        self.workers.cancel();
        self.tasks.join().await;
        return_queued(&self.queue).await;
        self.replica.stop().await;
    }

    /// A replica that died: its workers end, what is queued is handed back.
    async fn abandon(self) {
        self.workers.cancel();
        self.tasks.join_quietly().await;
        return_queued(&self.queue).await;
    }
}

/// Closes a stopped replica's queue and hands each event still in it back to its deliverer,
/// to be routed to another replica.
async fn return_queued(queue: &Queue) {
    let mut jobs = queue.lock().await;
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        // Nobody may wait for it any more; that is fine.
        let _ = job.reply.send(Outcome::Returned(job.event));
    }
}

/// The scaler task's state: replicas running and being launched, and the autoscaler deciding
/// how many there should be.
struct Scaler {
    shared: Arc<Shared>,
    launcher: Arc<dyn Launcher>,
    autoscaler: Autoscaler,
    running: Vec<Running>,
    launching: JoinSet<Launched>,
    /// Replicas scaled in, finishing what they hold.
    stopping: TaskGroup,
    next_index: u32,
    launch_backoff: Duration,
    retry_launch_at: Instant,
}

async fn scale_loop(shared: Arc<Shared>, launcher: Arc<dyn Launcher>, stop: CancellationToken) {
    let mut scaler = Scaler {
        autoscaler: Autoscaler::new(shared.config.policy.clone()),
        shared,
        launcher,
        running: Vec::new(),
        launching: JoinSet::new(),
        stopping: TaskGroup::new("scaled-in replicas"),
        next_index: 0,
        launch_backoff: Duration::ZERO,
        retry_launch_at: Instant::now(),
    };
    let mut tick = tokio::time::interval(scaler.shared.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
            () = scaler.shared.demand.notified() => scaler.autoscaler.demand(Instant::now()),
            Some(launched) = scaler.launching.join_next(), if !scaler.launching.is_empty() => {
                scaler.launched(launched);
            }
        }
        scaler.replace_dead().await;
        scaler.rescale();
    }
    scaler.finish().await;
}

impl Scaler {
    /// Routes events over the running replicas and shows how many run.
    fn publish_replicas(&self) {
        let running = self.running.len();
        let lanes = self
            .running
            .iter()
            .map(|r| (r.index, r.lane.clone()))
            .collect();
        if self.shared.partitions().set_lanes(lanes) {
            self.shared.routing_changed();
        }
        self.shared.replicas.store(running, Ordering::Relaxed);
        // Also when no event comes: a service scaled to zero shows zero.
        metrics::gauge!(crate::service::metric_names::REPLICAS, "service" => self.shared.name.clone())
            .set(running as f64);
    }

    /// A launch finished: the replica starts taking events, or the next launch backs off.
    fn launched(&mut self, launched: Result<Launched, JoinError>) {
        let service = &self.shared.name;
        match launched {
            Ok((index, Ok(replica))) => {
                self.launch_backoff = Duration::ZERO;
                tracing::info!(
                    replica = replica.label(),
                    url = replica.url(),
                    "replica ready"
                );
                self.running
                    .push(start_workers(&self.shared, index, replica));
            }
            Ok((_, Err(err))) => {
                self.launch_backoff = (self.launch_backoff * 2)
                    .clamp(Duration::from_secs(1), Duration::from_secs(30));
                self.retry_launch_at = Instant::now() + self.launch_backoff;
                tracing::error!(%service, %err, retry_in = ?self.launch_backoff, "replica failed to start");
            }
            Err(err) => tracing::error!(%service, %err, "replica launch task failed"),
        }
        self.publish_replicas();
    }

    /// Replicas that died are replaced; their in-flight events fail and are redelivered.
    async fn replace_dead(&mut self) {
        let mut alive = Vec::with_capacity(self.running.len());
        let mut dead = Vec::new();
        for replica in self.running.drain(..) {
            if replica.replica.is_alive().await {
                alive.push(replica);
            } else {
                tracing::warn!(
                    replica = replica.replica.label(),
                    "replica exited unexpectedly"
                );
                dead.push(replica);
            }
        }
        self.running = alive;
        // Routed elsewhere before its queue is handed back.
        self.publish_replicas();
        for replica in dead {
            self.stopping
                .spawn(replica.replica.label().to_owned(), replica.abandon());
        }
    }

    /// Starts or stops replicas as the autoscaler decides from the observed concurrency.
    fn rescale(&mut self) {
        let shared = &self.shared;
        let now = Instant::now();
        // Waiting and in flight: every delivery not answered yet.
        let concurrency = shared.pending.load(Ordering::Relaxed);
        self.autoscaler.observe(now, concurrency);
        let current = u32::try_from(self.running.len() + self.launching.len()).unwrap_or(u32::MAX);
        let desired = self.autoscaler.desired(now, current);
        if desired > current && now >= self.retry_launch_at {
            for _ in current..desired {
                let launcher = Arc::clone(&self.launcher);
                let index = self.next_index;
                self.next_index += 1;
                self.launching
                    .spawn(async move { (index, launcher.launch(index).await) });
            }
            tracing::info!(service = %shared.name, from = current, to = desired, concurrency, "scaling out");
        } else if desired < current && self.launching.is_empty() {
            let excess = (current - desired) as usize;
            tracing::info!(service = %shared.name, from = current, to = desired, "scaling in");
            let keep = self.running.len().saturating_sub(excess);
            let stopped = self.running.split_off(keep);
            self.publish_replicas();
            for replica in stopped {
                self.stopping
                    .spawn(replica.replica.label().to_owned(), replica.stop());
            }
        }
    }

    /// Shutdown: replicas finish what they took; events still queued come back to their
    /// deliverers, which fail them (the pool is stopping) so that they are redelivered.
    async fn finish(mut self) {
        self.launching.abort_all();
        let running: Vec<_> = self.running.drain(..).collect();
        self.publish_replicas();
        let stops: Vec<_> = running.into_iter().map(Running::stop).collect();
        futures::future::join_all(stops).await;
        self.stopping.join().await;
    }
}

fn start_workers(shared: &Arc<Shared>, index: u32, replica: Box<dyn Replica>) -> Running {
    let (lane, queue) = mpsc::channel(shared.config.queue_capacity.max(1));
    let queue: Queue = Arc::new(Mutex::new(queue));
    let workers = CancellationToken::new();
    let mut tasks = TaskGroup::new("replica workers");
    for worker in 0..shared.config.policy.replica_concurrency.max(1) {
        tasks.spawn(
            format!("{} worker {worker}", replica.label()),
            work(
                Arc::clone(shared),
                Arc::clone(&queue),
                (replica.url().to_owned(), replica.label().to_owned()),
                workers.clone(),
            ),
        );
    }
    Running {
        index,
        replica,
        lane,
        queue,
        workers,
        tasks,
    }
}

/// Takes events from one replica's queue one at a time and delivers them to it.
async fn work(
    shared: Arc<Shared>,
    queue: Queue,
    (url, label): (String, String),
    cancel: CancellationToken,
) {
    loop {
        let job = {
            let mut jobs = tokio::select! {
                () = cancel.cancelled() => return,
                jobs = queue.lock() => jobs,
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                job = jobs.recv() => job,
            }
        };
        let Some(job) = job else { return };
        if job.reply.is_closed() {
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = post_event(&shared.client, &url, &label, job.event, job.epoch).await;
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        // The deliverer may have given up waiting; the outcome is then nobody's to take.
        let _ = job.reply.send(Outcome::Done(result));
    }
}

/// POSTs `event` in binary mode, with the owner `epoch` of its instance; a `2xx` reply may
/// carry one CloudEvent to publish.
async fn post_event(
    client: &reqwest::Client,
    url: &str,
    replica: &str,
    event: Arc<Event>,
    epoch: u64,
) -> Result<Vec<Event>, DeliveryError> {
    // Encoded into a request it is consumed: a copy, unless the delivery was settled meanwhile.
    let event = Arc::unwrap_or_clone(event);
    let id = event.id().to_owned();
    let (mut headers, body) = ktwin_sdk::to_binary_http(event)
        .map_err(|err| DeliveryError::Encode(format!("{id}: {err}")))?;
    headers.insert(
        ktwin_sdk::OWNER_EPOCH_HEADER,
        http::HeaderValue::from(epoch),
    );
    let response = client
        .post(url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|err| DeliveryError::Unreachable {
            replica: replica.to_owned(),
            reason: err.to_string(),
        })?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|err| DeliveryError::Unreachable {
            replica: replica.to_owned(),
            reason: format!("reading the reply: {err}"),
        })?;
    if !status.is_success() {
        return Err(DeliveryError::Rejected {
            replica: replica.to_owned(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        });
    }
    if !carries_cloudevent(&headers) {
        return Ok(Vec::new());
    }
    cloudevents::binding::http::to_event(&headers, body.to_vec())
        .map(|event| vec![event])
        .map_err(|err| DeliveryError::BadReply {
            replica: replica.to_owned(),
            reason: err.to_string(),
        })
}

/// Whether a reply is a CloudEvent (binary mode `ce-specversion`, or structured mode).
fn carries_cloudevent(headers: &http::HeaderMap) -> bool {
    headers.contains_key("ce-specversion")
        || headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/cloudevents+json"))
}
