//! `GET /api/v1/events/stream?type=ktwin.real.*`: the events published on the platform's
//! broker, pushed as server-sent events (one structured-mode CloudEvent per SSE message), for
//! the dashboard's live view and for any script (`curl -N`).
//!
//! One broker subscription feeds an [`EventTap`]: a ring of the latest events, numbered, kept
//! up to [`RING_BYTES`] bytes, and a broadcast to open streams. The subscription is taken when
//! the first stream opens, not before: until a client has seen an event number there is
//! nothing to resume, and serializing every event for nobody cost the platform a few percent
//! of its CPU under load (docs/benchmarks.md, "Where the platform's CPU goes"). Each SSE message carries its
//! number as `id`, so a client that pauses (or loses its connection) resumes with
//! `Last-Event-ID` and is sent what was published meanwhile, as far back as the ring holds; if
//! it holds less, a `gap` message says how many events were missed. Nothing waits for a slow
//! stream: the tap never blocks the broker, and a stream that falls behind the broadcast gets a
//! `gap` message instead of unbounded buffering.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cloudevents::AttributesReader as _;
use ktwin_broker::{Broker, BrokerError, Subscription, SubscriptionSpec, TypeFilter};
use ktwin_service::query::{percent_decode, query_pairs};
use ktwin_service::{PROBLEM_JSON, Problem};
use serde::Deserialize;
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, OpenApi};

/// Path of the stream.
pub const STREAM_PATH: &str = "/api/v1/events/stream";
/// Path of the stream's OpenAPI document.
pub const STREAM_OPENAPI_PATH: &str = "/api/v1/events/openapi.json";
/// Broker subscription feeding the tap.
pub const TAP_SUBSCRIPTION: &str = "event-stream";
/// Bytes of event JSON the ring keeps for resuming streams.
pub const RING_BYTES: usize = 8 * 1024 * 1024;
/// Events the broadcast holds for streams that are behind (each also held by the ring).
const BROADCAST_EVENTS: usize = 512;
/// Open streams at most; more are refused with 503.
pub const MAX_STREAMS: usize = 64;
/// SSE messages buffered per stream before it counts as behind.
const STREAM_BUFFER: usize = 256;

/// One published event, numbered.
#[derive(Debug)]
struct Numbered {
    seq: u64,
    event_type: String,
    json: String,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Arc<Numbered>>,
    bytes: usize,
    next: u64,
}

/// The latest published events and their broadcast to open streams.
pub struct EventTap {
    /// The bus the tap subscribes to when the first stream opens.
    broker: Arc<dyn Broker>,
    /// Set once the tap's subscription is taken and its feeding task runs.
    fed: tokio::sync::OnceCell<()>,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Numbered>>,
    streams: Arc<Semaphore>,
    /// Cancelled when the tap is dropped, which ends its feeding task.
    closed: CancellationToken,
}

impl Drop for EventTap {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl std::fmt::Debug for EventTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventTap")
            .field("fed", &self.fed.initialized())
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

impl EventTap {
    /// A tap of `broker`, not yet subscribed.
    fn new(broker: Arc<dyn Broker>) -> Arc<Self> {
        Arc::new(Self {
            broker,
            fed: tokio::sync::OnceCell::new(),
            ring: Mutex::new(Ring {
                next: 1,
                ..Ring::default()
            }),
            live: broadcast::channel(BROADCAST_EVENTS).0,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            closed: CancellationToken::new(),
        })
    }

    /// Subscribes to every event on the bus and feeds the tap until it is dropped, unless
    /// that is done already.
    async fn ensure_fed(self: &Arc<Self>) -> Result<(), BrokerError> {
        self.fed
            .get_or_try_init(|| async {
                let subscription = self
                    .broker
                    .subscribe(SubscriptionSpec::new(TAP_SUBSCRIPTION, TypeFilter::all()))
                    .await?;
                tokio::spawn(feed(
                    Arc::downgrade(self),
                    self.closed.clone(),
                    subscription,
                ));
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Numbers `event` and keeps it.
    fn push(&self, event_type: String, json: String) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let numbered = Arc::new(Numbered {
            seq: ring.next,
            event_type,
            json,
        });
        ring.next += 1;
        ring.bytes += numbered.json.len();
        ring.events.push_back(numbered.clone());
        while ring.bytes > RING_BYTES {
            let Some(old) = ring.events.pop_front() else {
                break;
            };
            ring.bytes -= old.json.len();
        }
        // No receiver is fine: nobody is watching.
        let _ = self.live.send(numbered);
    }

    /// Kept events after `last` (and how many after it are no longer kept), subscribed to
    /// what follows them.
    fn resume(
        &self,
        last: Option<u64>,
    ) -> (Vec<Arc<Numbered>>, u64, broadcast::Receiver<Arc<Numbered>>) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = self.live.subscribe();
        let Some(last) = last else {
            return (Vec::new(), 0, receiver);
        };
        let oldest = ring.events.front().map_or(ring.next, |e| e.seq);
        let missed = oldest
            .saturating_sub(last + 1)
            .min(ring.next.saturating_sub(last + 1));
        let kept = ring
            .events
            .iter()
            .filter(|e| e.seq > last)
            .cloned()
            .collect();
        (kept, missed, receiver)
    }
}

/// Moves deliveries into the tap, acknowledging each at once (the tap never holds the broker).
async fn feed(
    tap: std::sync::Weak<EventTap>,
    closed: CancellationToken,
    mut subscription: Subscription,
) {
    loop {
        let deliveries = tokio::select! {
            () = closed.cancelled() => return,
            batch = subscription.recv_batch(256) => batch,
        };
        if deliveries.is_empty() {
            return;
        }
        let Some(tap) = tap.upgrade() else { return };
        for delivery in deliveries {
            let event = delivery.event();
            match serde_json::to_string(event) {
                Ok(json) => tap.push(event.ty().to_owned(), json),
                Err(err) => {
                    tracing::warn!(%err, id = event.id(), "event not streamed: not serializable")
                }
            }
            let _ = delivery.ack().await;
        }
    }
}

/// Which event types a stream wants: `type` values, each an exact type or a prefix ending in
/// `*` (`ktwin.real.*`); none or `*` = every type.
fn type_filter(uri: &Uri) -> Result<TypeFilter, Problem> {
    let mut filter = TypeFilter::exact(Vec::<String>::new());
    let mut any = false;
    for (key, value) in query_pairs(uri.query().unwrap_or("")) {
        if key != "type" {
            continue;
        }
        let value = percent_decode(value).map_err(|_| bad_type(value))?;
        any = true;
        filter = match value.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => filter.or_prefix(prefix),
            None if !value.is_empty() && !value.contains('*') => filter.or_type(value),
            _ => return Err(bad_type(&value)),
        };
    }
    Ok(if any { filter } else { TypeFilter::all() })
}

fn bad_type(value: &str) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        format!(
            "type {value:?}: expected an event type, or a prefix ending in * (e.g. ktwin.real.*)"
        ),
    )
}

/// The stream's query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the query, which `type_filter` reads (it may repeat).
struct StreamParams {
    /// An event type, or a prefix ending in `*` (`ktwin.real.*`); repeatable; default every type.
    r#type: Option<String>,
}

/// Events published on the platform, as server-sent events: each message is a structured-mode
/// CloudEvent (`event: cloudevent`, `id`: its number). Resume after a pause with the
/// `Last-Event-ID` header; a `gap` message (`{"missed": n}`) counts events no longer held.
#[utoipa::path(
    get,
    path = "/api/v1/events/stream",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "Number of the last event received: the stream resumes after it")
    ),
    responses(
        (status = 200, description = "`text/event-stream` of CloudEvents", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad `type` pattern or Last-Event-ID", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "Too many open streams", body = Problem, content_type = PROBLEM_JSON)
    )
)]
async fn stream(State(tap): State<Arc<EventTap>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(err) = tap.ensure_fed().await {
        let problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the event stream could not subscribe to the platform's bus: {err}"),
        );
        return problem.at(STREAM_PATH).into_response();
    }
    match open_stream(&tap, &uri, &headers) {
        Ok(response) => response,
        Err(problem) => problem.at(STREAM_PATH).into_response(),
    }
}

fn open_stream(tap: &Arc<EventTap>, uri: &Uri, headers: &HeaderMap) -> Result<Response, Problem> {
    let filter = type_filter(uri)?;
    let last = match headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::parse::<u64>))
    {
        None => None,
        Some(Ok(Ok(n))) => Some(n),
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "Last-Event-ID: expected the number of an event this stream sent",
            ));
        }
    };
    let permit = tap.streams.clone().try_acquire_owned().map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} event streams are open already; try again later"),
        )
    })?;
    let (kept, missed, receiver) = tap.resume(last);
    let (sender, messages) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let _permit = permit;
        forward(kept, missed, receiver, filter, last.unwrap_or(0), sender).await;
    });
    let body = futures::stream::unfold(messages, |mut messages| async move {
        messages
            .recv()
            .await
            .map(|m| (Ok::<_, Infallible>(m), messages))
    });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn message(event: &Numbered) -> SseEvent {
    SseEvent::default()
        .id(event.seq.to_string())
        .event("cloudevent")
        .data(&event.json)
}

fn gap(missed: u64) -> SseEvent {
    SseEvent::default()
        .event("gap")
        .data(format!("{{\"missed\":{missed}}}"))
}

/// Sends the kept events, then live ones, to one stream until it closes.
async fn forward(
    kept: Vec<Arc<Numbered>>,
    missed: u64,
    mut receiver: broadcast::Receiver<Arc<Numbered>>,
    filter: TypeFilter,
    mut sent: u64,
    sender: mpsc::Sender<SseEvent>,
) {
    if missed > 0 && sender.send(gap(missed)).await.is_err() {
        return;
    }
    for event in kept {
        sent = event.seq;
        if filter.matches(&event.event_type) && sender.send(message(&event)).await.is_err() {
            return;
        }
    }
    loop {
        let event = match receiver.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                if sender.send(gap(n)).await.is_err() {
                    return;
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if event.seq <= sent {
            continue;
        }
        sent = event.seq;
        if filter.matches(&event.event_type) && sender.send(message(&event)).await.is_err() {
            return;
        }
    }
}

/// The OpenAPI document of the event stream.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ktwin event stream",
        description = "Published events as server-sent events"
    ),
    paths(stream),
    components(schemas(Problem))
)]
pub struct EventStreamApi;

/// [`STREAM_PATH`] and [`STREAM_OPENAPI_PATH`] over a tap of `broker` (subscribed when the
/// first stream opens).
pub fn router(broker: Arc<dyn Broker>) -> Router {
    let tap = EventTap::new(broker);
    Router::new()
        .route(STREAM_PATH, get(stream))
        .route(
            STREAM_OPENAPI_PATH,
            get(|| async { axum::Json(EventStreamApi::openapi()) }),
        )
        .with_state(tap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> cloudevents::Event {
        use cloudevents::EventBuilder as _;
        cloudevents::EventBuilderV10::new()
            .id(id)
            .ty("ktwin.real.city-pole")
            .source("p1")
            .build()
            .unwrap()
    }

    #[test]
    fn the_ring_is_bounded_by_bytes_and_resumes_after_an_id() {
        let tap = EventTap::new(Arc::new(ktwin_broker::MemoryBroker::default()));
        let big = "x".repeat(RING_BYTES / 4);
        for _ in 0..6 {
            tap.push("ktwin.real.a".into(), big.clone());
        }
        let (kept, missed, _) = tap.resume(Some(1));
        assert_eq!(
            kept.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        assert_eq!(missed, 1, "event 2 is no longer kept");
        let (kept, missed, _) = tap.resume(Some(5));
        assert_eq!((kept.len(), missed), (1, 0));
        let (kept, missed, _) = tap.resume(None);
        assert_eq!((kept.len(), missed), (0, 0));
    }

    #[tokio::test]
    async fn the_tap_subscribes_when_the_first_stream_opens() {
        use ktwin_broker::PublishOutcome;
        let bus = ktwin_broker::MemoryBroker::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = router(Arc::new(bus.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });

        // Nobody watches: the tap takes no delivery (nothing to serialize, nothing to queue).
        let before = bus.publish(event("before")).await.unwrap();
        assert!(matches!(before, PublishOutcome::Unroutable));

        let mut response = reqwest::get(format!("http://{address}{STREAM_PATH}"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let after = bus.publish(event("after")).await.unwrap();
        assert!(matches!(after, PublishOutcome::Routed));
        let mut body = String::new();
        while !body.contains("\"after\"") {
            let chunk = response
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(
            body.contains("id: 1\n"),
            "the first event the tap saw: {body}"
        );
        assert!(!body.contains("\"before\""), "{body}");
    }

    #[test]
    fn type_patterns_are_exact_or_prefixes() {
        let filter = type_filter(
            &"/s?type=ktwin.real.*&type=ktwin.store.city-pole"
                .parse()
                .unwrap(),
        )
        .unwrap();
        assert!(filter.matches("ktwin.real.city-pole"));
        assert!(filter.matches("ktwin.store.city-pole"));
        assert!(!filter.matches("ktwin.store.city-pole-2"));
        assert!(!filter.matches("ktwin.virtual.city-pole"));
        assert!(
            type_filter(&"/s".parse().unwrap())
                .unwrap()
                .matches("anything")
        );
        assert!(
            type_filter(&"/s?type=*".parse().unwrap())
                .unwrap()
                .matches("anything")
        );
        let err = type_filter(&"/s?type=ktwin.*.x".parse().unwrap()).unwrap_err();
        assert!(err.detail.contains("ktwin.*.x"), "{}", err.detail);
    }
}
