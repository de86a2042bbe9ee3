//! A twin service's replicas behind one delivery queue: events wait in a bounded queue, each
//! replica takes at most its concurrency from it and receives them as binary-mode CloudEvents
//! over HTTP, and a scaler task starts and stops replicas as the [`Autoscaler`] decides.
//!
//! A `2xx` answer completes the delivery (a CloudEvent in the reply is handed back to be
//! published, Knative reply semantics); anything else, an unreachable replica or a timeout is
//! a failed delivery the caller nacks, so the broker delivers the event again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::autoscale::{Autoscaler, ScalePolicy};
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
    /// Events waiting for a replica, at most; [`ServicePool::deliver`] waits beyond.
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
    event: Event,
    reply: oneshot::Sender<Result<Vec<Event>, DeliveryError>>,
}

struct Shared {
    name: String,
    config: PoolConfig,
    client: reqwest::Client,
    jobs: Mutex<mpsc::Receiver<Job>>,
    waiting: AtomicUsize,
    in_flight: AtomicUsize,
    replicas: AtomicUsize,
    demand: Notify,
}

/// The replicas of one twin service and the queue in front of them.
pub struct ServicePool {
    shared: Arc<Shared>,
    sender: mpsc::Sender<Job>,
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
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.policy.replica_concurrency as usize)
            .build()
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            config,
            client,
            jobs: Mutex::new(receiver),
            waiting: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            replicas: AtomicUsize::new(0),
            demand: Notify::new(),
        });
        let stop = CancellationToken::new();
        let scaler = tokio::spawn(scale_loop(Arc::clone(&shared), launcher, stop.clone()));
        Self {
            shared,
            sender,
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
        PoolStats {
            replicas: self.shared.replicas.load(Ordering::Relaxed),
            in_flight: self.shared.in_flight.load(Ordering::Relaxed),
            waiting: self.shared.waiting.load(Ordering::Relaxed),
        }
    }

    /// Delivers `event` to one replica (starting one if none runs) and returns the events its
    /// reply carries.
    pub async fn deliver(&self, event: Event) -> Result<Vec<Event>, DeliveryError> {
        if self.stop.is_cancelled() {
            return Err(DeliveryError::ShuttingDown(self.shared.name.clone()));
        }
        let started = Instant::now();
        let wait_timeout = self.shared.config.wait_timeout;
        let (reply, answer) = oneshot::channel();
        self.shared.waiting.fetch_add(1, Ordering::Relaxed);
        if self.shared.replicas.load(Ordering::Relaxed) == 0 {
            self.shared.demand.notify_one();
        }
        let no_replica = || DeliveryError::NoReplica {
            service: self.shared.name.clone(),
            waited: started.elapsed(),
        };
        match tokio::time::timeout(wait_timeout, self.sender.send(Job { event, reply })).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(DeliveryError::ShuttingDown(self.shared.name.clone()));
            }
            Err(_) => {
                self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(no_replica());
            }
        }
        let remaining = wait_timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DeliveryError::ShuttingDown(self.shared.name.clone())),
            // The job stays queued; the worker that takes it sees nobody waits and skips it.
            Err(_) => Err(no_replica()),
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

/// A replica with its workers.
struct Running {
    replica: Box<dyn Replica>,
    workers: CancellationToken,
    tasks: TaskGroup,
}

impl Running {
    async fn stop(mut self) {
        self.workers.cancel();
        self.tasks.join().await;
        self.replica.stop().await;
    }
}

/// The scaler task's state: replicas running and being launched, and the autoscaler deciding
/// how many there should be.
struct Scaler {
    shared: Arc<Shared>,
    launcher: Arc<dyn Launcher>,
    autoscaler: Autoscaler,
    running: Vec<Running>,
    launching: JoinSet<Result<Box<dyn Replica>, LaunchError>>,
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
    fn publish_replicas(&self) {
        let running = self.running.len();
        self.shared.replicas.store(running, Ordering::Relaxed);
        // Also when no event comes: a service scaled to zero shows zero.
        metrics::gauge!(crate::service::metric_names::REPLICAS, "service" => self.shared.name.clone())
            .set(running as f64);
    }

    /// A launch finished: the replica starts taking events, or the next launch backs off.
    fn launched(&mut self, launched: Result<Result<Box<dyn Replica>, LaunchError>, JoinError>) {
        let service = &self.shared.name;
        match launched {
            Ok(Ok(replica)) => {
                self.launch_backoff = Duration::ZERO;
                tracing::info!(
                    replica = replica.label(),
                    url = replica.url(),
                    "replica ready"
                );
                self.running.push(start_workers(&self.shared, replica));
            }
            Ok(Err(err)) => {
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
        for replica in self.running.drain(..) {
            if replica.replica.is_alive().await {
                alive.push(replica);
            } else {
                tracing::warn!(
                    replica = replica.replica.label(),
                    "replica exited unexpectedly"
                );
                replica.workers.cancel();
                self.stopping.spawn(
                    replica.replica.label().to_owned(),
                    replica.tasks.join_quietly(),
                );
            }
        }
        self.running = alive;
        self.publish_replicas();
    }

    /// Starts or stops replicas as the autoscaler decides from the observed concurrency.
    fn rescale(&mut self) {
        let shared = &self.shared;
        let now = Instant::now();
        let concurrency =
            shared.waiting.load(Ordering::Relaxed) + shared.in_flight.load(Ordering::Relaxed);
        self.autoscaler.observe(now, concurrency);
        let current = u32::try_from(self.running.len() + self.launching.len()).unwrap_or(u32::MAX);
        let desired = self.autoscaler.desired(now, current);
        if desired > current && now >= self.retry_launch_at {
            for _ in current..desired {
                let launcher = Arc::clone(&self.launcher);
                let index = self.next_index;
                self.next_index += 1;
                self.launching
                    .spawn(async move { launcher.launch(index).await });
            }
            tracing::info!(service = %shared.name, from = current, to = desired, concurrency, "scaling out");
        } else if desired < current && self.launching.is_empty() {
            let excess = (current - desired) as usize;
            tracing::info!(service = %shared.name, from = current, to = desired, "scaling in");
            let keep = self.running.len().saturating_sub(excess);
            for replica in self.running.split_off(keep) {
                self.stopping
                    .spawn(replica.replica.label().to_owned(), replica.stop());
            }
            self.publish_replicas();
        }
    }

    /// Shutdown: replicas finish what they took; events still queued fail and are redelivered.
    async fn finish(mut self) {
        self.launching.abort_all();
        self.shared.replicas.store(0, Ordering::Relaxed);
        let stops: Vec<_> = self.running.drain(..).map(Running::stop).collect();
        futures::future::join_all(stops).await;
        self.stopping.join().await;
        let mut jobs = self.shared.jobs.lock().await;
        jobs.close();
        while let Ok(job) = jobs.try_recv() {
            self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
            // Nobody may wait for the answer any more; that is fine.
            let _ = job
                .reply
                .send(Err(DeliveryError::ShuttingDown(self.shared.name.clone())));
        }
    }
}

fn start_workers(shared: &Arc<Shared>, replica: Box<dyn Replica>) -> Running {
    let workers = CancellationToken::new();
    let mut tasks = TaskGroup::new("replica workers");
    for worker in 0..shared.config.policy.replica_concurrency.max(1) {
        tasks.spawn(
            format!("{} worker {worker}", replica.label()),
            work(
                Arc::clone(shared),
                replica.url().to_owned(),
                replica.label().to_owned(),
                workers.clone(),
            ),
        );
    }
    Running {
        replica,
        workers,
        tasks,
    }
}

/// Takes events from the pool's queue one at a time and delivers them to one replica.
async fn work(shared: Arc<Shared>, url: String, label: String, cancel: CancellationToken) {
    loop {
        let job = {
            let mut jobs = tokio::select! {
                () = cancel.cancelled() => return,
                jobs = shared.jobs.lock() => jobs,
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                job = jobs.recv() => job,
            }
        };
        let Some(job) = job else { return };
        shared.waiting.fetch_sub(1, Ordering::Relaxed);
        if job.reply.is_closed() {
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = post_event(&shared.client, &url, &label, job.event).await;
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        // The deliverer may have given up waiting; the outcome is then nobody's to take.
        let _ = job.reply.send(result);
    }
}

/// POSTs `event` in binary mode; a `2xx` reply may carry one CloudEvent to publish.
pub(crate) async fn post_event(
    client: &reqwest::Client,
    url: &str,
    replica: &str,
    event: Event,
) -> Result<Vec<Event>, DeliveryError> {
    let id = event.id().to_owned();
    let (headers, body) = ktwin_sdk::to_binary_http(event)
        .map_err(|err| DeliveryError::Encode(format!("{id}: {err}")))?;
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
