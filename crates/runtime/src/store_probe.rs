//! What the store made durable during a benchmark: first-time stores counted by distinct event
//! id with duplicates apart (so a duplicate cannot hide a loss), and the device publish →
//! durable latency of every device event published inside the measured window, however late
//! it is stored (so the slowest backlog of an overloaded platform reaches the percentiles).
//!
//! [`Tally`] is the pure counting; [`StoreProbe`] feeds it from the store's commit observer.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Event};
use ktwin_store::broker::StoredObserver;

/// Counts of stored device events and the latencies of those published in the window.
#[derive(Debug, Default)]
pub struct Tally {
    seen: DistinctIds,
    duplicates: u64,
    window_start: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    latencies_ms: Vec<f64>,
}

/// What a [`Tally`] counted, against the number of events sent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TallySummary {
    /// Device events sent.
    pub sent: u64,
    /// Distinct device events stored (first-time stores).
    pub stored: u64,
    /// Stores of an event id already stored.
    pub duplicates: u64,
    /// `sent - stored`: sent events never stored (a duplicate does not make up for one).
    pub lost: u64,
    /// Latency samples: events published in the window and stored, whenever.
    pub samples: usize,
    /// Median publish → durable latency, ms.
    pub p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub p99_ms: f64,
    /// The slowest sample, ms.
    pub max_ms: f64,
}

/// Shards of [`DistinctIds`]: each grows (and rehashes what it holds) on its own.
const ID_SHARDS: usize = 64;

/// The event ids a [`Tally`] has seen. The probe runs on the platform's runtime for every
/// stored device event, and its cost counts as the platform's: an id in the canonical UUID
/// form (the ingress's ids) is kept as a number rather than an allocated string, and the ids
/// are spread over [`ID_SHARDS`] sets, since one set of hundreds of thousands of ids rehashed
/// all of them at once when it grew, stalling the runtime's worker for tens of milliseconds
/// inside a measured window.
#[derive(Debug)]
struct DistinctIds {
    shards: Vec<HashSet<IdKey>>,
    /// Picks the shard of an id that is not a UUID.
    hasher: RandomState,
}

/// An event id as [`DistinctIds`] keeps it.
#[derive(Debug, PartialEq, Eq, Hash)]
enum IdKey {
    /// A UUID spelled in the canonical form (hyphenated, lower case).
    Uuid(u128),
    /// Any other id, as it is spelled.
    Other(Box<str>),
}

impl IdKey {
    fn of(id: &str) -> Self {
        let mut canonical = [0; uuid::fmt::Hyphenated::LENGTH];
        match uuid::Uuid::try_parse(id) {
            Ok(uuid) if uuid.hyphenated().encode_lower(&mut canonical) == id => {
                Self::Uuid(uuid.as_u128())
            }
            _ => Self::Other(id.into()),
        }
    }
}

impl Default for DistinctIds {
    fn default() -> Self {
        Self {
            shards: std::iter::repeat_with(HashSet::new)
                .take(ID_SHARDS)
                .collect(),
            hasher: RandomState::new(),
        }
    }
}

impl DistinctIds {
    /// Adds `id`; false when it was seen before.
    fn insert(&mut self, id: &str) -> bool {
        let key = IdKey::of(id);
        // A UUID's low bits are random (versions 4 and 7): they pick its shard without hashing
        // it once more than its set does.
        #[allow(clippy::cast_possible_truncation)]
        let shard = match &key {
            IdKey::Uuid(uuid) => *uuid as usize,
            IdKey::Other(_) => self.hasher.hash_one(&key) as usize,
        } % ID_SHARDS;
        self.shards[shard].insert(key)
    }

    /// How many distinct ids were added.
    fn len(&self) -> u64 {
        self.shards.iter().map(|shard| shard.len() as u64).sum()
    }
}

impl Tally {
    /// Events published from `at` on are sampled.
    pub fn open_window(&mut self, at: DateTime<Utc>) {
        self.window_start = Some(at);
    }

    /// Events published after `at` are not sampled (those before still are, when stored later).
    pub fn close_window(&mut self, at: DateTime<Utc>) {
        self.window_end = Some(at);
    }

    /// One device event made durable at `stored_at`; `published` is the device's publish time.
    pub fn stored(&mut self, id: &str, published: Option<DateTime<Utc>>, stored_at: DateTime<Utc>) {
        if !self.seen.insert(id) {
            self.duplicates += 1;
            return;
        }
        let Some(published) = published else { return };
        let in_window = self.window_start.is_some_and(|start| published >= start)
            && self.window_end.is_none_or(|end| published <= end);
        if in_window {
            let micros = stored_at
                .signed_duration_since(published)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            #[allow(clippy::cast_precision_loss)]
            self.latencies_ms.push((micros as f64 / 1000.0).max(0.0));
        }
    }

    /// Distinct events stored so far.
    pub fn distinct(&self) -> u64 {
        self.seen.len()
    }

    /// The counts and percentiles against `sent` events.
    pub fn summary(&self, sent: u64) -> TallySummary {
        let mut samples = self.latencies_ms.clone();
        samples.sort_by(f64::total_cmp);
        TallySummary {
            sent,
            stored: self.distinct(),
            duplicates: self.duplicates,
            lost: sent.saturating_sub(self.distinct()),
            samples: samples.len(),
            p50_ms: percentile(&samples, 0.50),
            p99_ms: percentile(&samples, 0.99),
            max_ms: samples.last().copied().unwrap_or(0.0),
        }
    }
}

/// The `q` quantile of sorted `samples` (nearest rank); 0 when empty.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

/// Watches what becomes durable in the store and tallies the device (`ktwin.real.*`) events,
/// their publish time read from `timestamp` in the data (which the device sets and the services
/// keep in what they store).
#[derive(Debug, Default)]
pub struct StoreProbe {
    tally: std::sync::Mutex<Tally>,
}

impl StoreProbe {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the measured window now.
    pub fn open_window(&self) {
        self.tally().open_window(Utc::now());
    }

    /// Ends the measured window now.
    pub fn close_window(&self) {
        self.tally().close_window(Utc::now());
    }

    /// Distinct device events stored so far.
    pub fn distinct(&self) -> u64 {
        self.tally().distinct()
    }

    /// The tally against `sent` device events.
    pub fn summary(&self, sent: u64) -> TallySummary {
        self.tally().summary(sent)
    }
}

impl StoredObserver for StoreProbe {
    fn stored(&self, event: &Event) {
        if !event.ty().starts_with("ktwin.real.") {
            return;
        }
        let stored_at = Utc::now();
        let published = publish_time(event);
        self.tally().stored(event.id(), published, stored_at);
    }
}

/// `timestamp` (RFC 3339) in the event's JSON data. Read in place: the probe runs for every
/// stored event, and its cost counts as the platform's in the bench's CPU figures.
fn publish_time(event: &Event) -> Option<DateTime<Utc>> {
    /// The one field read from data that came as text.
    #[derive(serde::Deserialize)]
    struct Stamped<'a> {
        #[serde(borrow)]
        timestamp: Option<std::borrow::Cow<'a, str>>,
    }
    let text = match event.data()? {
        cloudevents::Data::Json(data) => return parse_stamp(data.get("timestamp")?.as_str()?),
        cloudevents::Data::Binary(bytes) => bytes.as_slice(),
        cloudevents::Data::String(text) => text.as_bytes(),
    };
    let stamped: Stamped<'_> = serde_json::from_slice(text).ok()?;
    parse_stamp(&stamped.timestamp?)
}

/// An RFC 3339 time, in UTC.
fn parse_stamp(stamp: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(stamp)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use cloudevents::{EventBuilder, EventBuilderV10};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid") + TimeDelta::milliseconds(ms)
    }

    fn device_event(id: &str, published: DateTime<Utc>) -> Event {
        EventBuilderV10::new()
            .id(id)
            .ty("ktwin.real.city-pole")
            .source("pole-1")
            .data(
                "application/json",
                serde_json::json!({"timestamp": published.to_rfc3339()}),
            )
            .build()
            .expect("valid event")
    }

    #[test]
    fn an_injected_duplicate_does_not_hide_a_loss() {
        let mut tally = Tally::default();
        tally.stored("a", Some(at(0)), at(5));
        tally.stored("b", Some(at(1)), at(6));
        // "c" is lost; "b" is stored twice.
        tally.stored("b", Some(at(1)), at(9));
        let summary = tally.summary(3);
        assert_eq!(
            (summary.stored, summary.duplicates, summary.lost),
            (2, 1, 1)
        );
    }

    #[test]
    fn ids_are_told_apart_as_spelled_whether_or_not_they_are_uuids() {
        let uuid = "0190f3a4-5b6c-7d8e-9fa0-b1c2d3e4f506";
        let mut tally = Tally::default();
        for id in [uuid, "0190F3A4-5B6C-7D8E-9FA0-B1C2D3E4F506", "not-a-uuid"] {
            tally.stored(id, None, at(0));
        }
        tally.stored(uuid, None, at(1));
        tally.stored("not-a-uuid", None, at(1));
        for i in 0..1000 {
            tally.stored(&uuid::Uuid::now_v7().to_string(), None, at(2));
            tally.stored(&format!("device-{i}"), None, at(2));
        }
        let summary = tally.summary(2003);
        assert_eq!(
            (summary.stored, summary.duplicates, summary.lost),
            (2003, 2, 0)
        );
    }

    #[test]
    fn an_event_stored_after_the_window_still_counts_in_p99() {
        let mut tally = Tally::default();
        tally.open_window(at(0));
        for i in 0..99 {
            tally.stored(&format!("fast-{i}"), Some(at(i)), at(i + 10));
        }
        tally.close_window(at(1000));
        // Published in the window, stored 30 s later, long after the window closed.
        tally.stored("straggler", Some(at(500)), at(30_500));
        let summary = tally.summary(100);
        assert_eq!(summary.samples, 100);
        assert!((summary.p99_ms - 10.0).abs() < f64::EPSILON);
        assert!((summary.max_ms - 30_000.0).abs() < f64::EPSILON);
        tally.stored("straggler-2", Some(at(600)), at(20_600));
        let summary = tally.summary(101);
        assert!(
            (summary.p99_ms - 20_000.0).abs() < f64::EPSILON,
            "{summary:?}"
        );
    }

    #[test]
    fn only_events_published_in_the_window_are_sampled() {
        let mut tally = Tally::default();
        tally.stored("warm-up", Some(at(-10)), at(0));
        tally.open_window(at(0));
        tally.stored("early", Some(at(-1)), at(1));
        tally.stored("inside", Some(at(5)), at(7));
        tally.close_window(at(10));
        tally.stored("late", Some(at(11)), at(12));
        tally.stored("no-timestamp", None, at(12));
        let summary = tally.summary(5);
        assert_eq!((summary.samples, summary.stored, summary.lost), (1, 5, 0));
        assert!((summary.p50_ms - 2.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_duplicate_adds_no_latency_sample() {
        let mut tally = Tally::default();
        tally.open_window(at(0));
        tally.stored("a", Some(at(1)), at(2));
        tally.stored("a", Some(at(1)), at(5_000));
        let summary = tally.summary(1);
        assert_eq!((summary.samples, summary.duplicates), (1, 1));
        assert!((summary.max_ms - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn the_probe_counts_device_events_by_id() {
        let probe = StoreProbe::default();
        let now = Utc::now();
        probe.stored(&device_event("x", now));
        probe.stored(&device_event("x", now));
        probe.stored(&device_event("y", now));
        let virtual_event = EventBuilderV10::new()
            .id("z")
            .ty("ktwin.virtual.city-pole")
            .source("pole-1")
            .build()
            .expect("valid event");
        probe.stored(&virtual_event);
        let summary = probe.summary(3);
        assert_eq!(
            (summary.stored, summary.duplicates, summary.lost),
            (2, 1, 1)
        );
    }

    #[test]
    fn the_probe_reads_the_publish_time_from_the_data() {
        let probe = StoreProbe::default();
        probe.open_window();
        probe.stored(&device_event("x", Utc::now()));
        assert_eq!(probe.summary(1).samples, 1);
    }

    #[test]
    fn the_publish_time_is_read_from_json_text_and_bytes() {
        let stamp = at(250);
        let json = serde_json::json!({"timestamp": stamp.to_rfc3339(), "level": 3});
        let text = json.to_string();
        let built = |data: cloudevents::Data| {
            let mut event = device_event("x", stamp);
            event.set_data("application/json", data);
            event
        };
        for data in [
            cloudevents::Data::Json(json.clone()),
            cloudevents::Data::String(text.clone()),
            cloudevents::Data::Binary(text.clone().into_bytes()),
        ] {
            assert_eq!(publish_time(&built(data)), Some(stamp));
        }
        let unstamped = built(cloudevents::Data::String("{\"level\": 3}".into()));
        assert_eq!(publish_time(&unstamped), None);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&samples, 0.5) - 50.0).abs() < f64::EPSILON);
        assert!((percentile(&samples, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((percentile(&[7.0], 0.99) - 7.0).abs() < f64::EPSILON);
        assert!(percentile(&[], 0.5).abs() < f64::EPSILON);
    }
}
