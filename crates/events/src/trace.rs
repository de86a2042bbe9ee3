//! W3C Trace Context in ktwin CloudEvents, per the CloudEvents distributed-tracing extension:
//! every event carries a `traceparent` (trace id, the span id of the step that produced it,
//! flags) and a `tracestate`.
//!
//! One trace per device message: the dispatcher starts it ([`start_trace`]) with the event's
//! id as trace id (a device event's id is a UUID, 16 bytes like a trace id), so
//! `ktwin trace <event id>` needs no lookup. Every event a twin service emits continues the
//! trace of the event it handled ([`continue_trace`]): same trace id, a span id of its own, and
//! the `ktwin` entry of its `tracestate` listing the span ids of its causes, nearest first
//! ([`MAX_CAUSES`] at most). The event store keeps both attributes with each event of a sampled
//! trace, so a chain can be rebuilt from the stored events even where an event in between (a
//! command) is not stored.
//!
//! Which traces are recorded is decided once, where a trace starts ([`TraceSampler`]): every
//! event carries its `traceparent`, but only a sampled trace's events list their causes, are
//! indexed by the store and exported over OTLP, so that tracing costs next to nothing when it
//! is off (W3C's `sampled` flag, as OpenTelemetry's head sampling uses it).
//!
//! ```
//! use cloudevents::{EventBuilder as _, EventBuilderV10};
//! use ktwin_events::trace::{EventTrace, SpanId, TraceSampler, continue_trace, start_trace};
//!
//! let event = |id: &str| EventBuilderV10::new().id(id).ty("t").source("s").build().unwrap();
//! let mut reading = event("0190f5a2-7b1c-7d3e-8f00-0123456789ab");
//! start_trace(&mut reading, TraceSampler::ALWAYS);
//! let root = EventTrace::of(&reading).unwrap();
//! assert_eq!(root.parent.trace_id.to_string(), "0190f5a27b1c7d3e8f000123456789ab");
//! assert!(root.parent.is_sampled());
//!
//! let mut command = event("c-1");
//! continue_trace(&reading, &mut command, SpanId::from_bytes([7; 8]));
//! let child = EventTrace::of(&command).unwrap();
//! assert_eq!(child.parent.trace_id, root.parent.trace_id);
//! assert_eq!(child.causes, vec![root.parent.span_id]);
//! ```

use std::fmt::{self, Write as _};
use std::str::FromStr;

use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Event};
use sha2::{Digest, Sha256};

/// The CloudEvent extension attribute holding the W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The CloudEvent extension attribute holding the W3C `tracestate`.
pub const TRACESTATE: &str = "tracestate";
/// The key of ktwin's entry in `tracestate`: the span ids of an event's causes, nearest first,
/// `-`-separated.
pub const TRACESTATE_KEY: &str = "ktwin";
/// How many causes an event's `tracestate` lists at most (a W3C entry value holds 256
/// characters; 8 span ids take 135).
pub const MAX_CAUSES: usize = 8;
/// How many `tracestate` entries W3C allows.
const MAX_STATE_ENTRIES: usize = 32;
/// The `sampled` flag: the trace is recorded (the store keeps its events, spans are exported).
const SAMPLED: u8 = 1;

/// A 16-byte trace id, written as 32 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id, written as 16 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The id with these bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Its bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The trace id of a trace started at the event with `event_id`: the id's own 16 bytes
    /// when it is a UUID (a device event's id), else the first 16 bytes of its SHA-256.
    pub fn of_event_id(event_id: &str) -> Self {
        match uuid::Uuid::parse_str(event_id) {
            Ok(uuid) if !uuid.is_nil() => Self(*uuid.as_bytes()),
            _ => {
                let digest = Sha256::digest(event_id.as_bytes());
                Self(digest[..16].try_into().expect("SHA-256 has 32 bytes"))
            }
        }
    }
}

impl SpanId {
    /// The id with these bytes.
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// Its bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// A span id derived from `seed` (an event id): the first 8 bytes of its SHA-256, so a
    /// redelivered event gets the span id it had.
    pub fn derived(seed: &str) -> Self {
        let digest = Sha256::digest(seed.as_bytes());
        Self(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
    }
}

/// Lower-case hex of an id of up to 16 bytes in one `write_str`: every event that carries a
/// trace has its ids formatted, and a formatting call per byte showed in the profile
/// (docs/benchmarks.md, "where the platform's CPU goes").
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut text = [0u8; 32];
    let len = 2 * bytes.len().min(16);
    encode_hex(&mut text[..len], bytes);
    f.write_str(std::str::from_utf8(&text[..len]).expect("hex digits are ASCII"))
}

/// Writes the lower-case hex of `bytes` into `text` (two digits a byte, as many as fit).
fn encode_hex(text: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// Why a trace or span id, or a `traceparent`, is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?}: expected {expected}")]
pub struct TraceError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

/// Lower-case hex of exactly `N` bytes. Every event's `traceparent` is read where it is
/// handled and stored, so this decodes digit by digit rather than through a parse per byte.
fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    fn digit(byte: u8) -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
}

/// An id: lower-case hex of exactly `N` bytes, not all zero (W3C: an all-zero id is invalid).
fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex_bytes(text).filter(|bytes: &[u8; N]| bytes.iter().any(|b| *b != 0))
}

impl FromStr for TraceId {
    type Err = TraceError;

    fn from_str(text: &str) -> Result<Self, TraceError> {
        parse_hex(text).map(Self).ok_or_else(|| TraceError {
            what: "trace id",
            value: text.to_owned(),
            expected: "32 lower-case hex digits, not all zero",
        })
    }
}

impl FromStr for SpanId {
    type Err = TraceError;

    fn from_str(text: &str) -> Result<Self, TraceError> {
        parse_hex(text).map(Self).ok_or_else(|| TraceError {
            what: "span id",
            value: text.to_owned(),
            expected: "16 lower-case hex digits, not all zero",
        })
    }
}

/// A W3C `traceparent`: `00-<trace id>-<span id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The span that produced the event.
    pub span_id: SpanId,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

/// The length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

impl TraceParent {
    /// The header's text, written straight into its bytes: every event a service emits gets
    /// one, so it does not go through the formatting machinery.
    fn encode(&self) -> [u8; TRACEPARENT_LEN] {
        let mut text = [b'-'; TRACEPARENT_LEN];
        text[..2].copy_from_slice(b"00");
        encode_hex(&mut text[3..35], &self.trace_id.0);
        encode_hex(&mut text[36..52], &self.span_id.0);
        encode_hex(&mut text[53..], &[self.flags]);
        text
    }

    /// The header's text as an owned string (what an event's extension holds).
    fn header(&self) -> String {
        String::from(std::str::from_utf8(&self.encode()).expect("hex digits are ASCII"))
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.encode()).expect("hex digits are ASCII"))
    }
}

impl FromStr for TraceParent {
    type Err = TraceError;

    /// Version 00 exactly; a later version's first four fields (W3C: a parser of version 00
    /// reads what it knows of a higher version).
    fn from_str(text: &str) -> Result<Self, TraceError> {
        let invalid = || TraceError {
            what: "traceparent",
            value: text.chars().take(80).collect(),
            expected: "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>",
        };
        let mut fields = text.split('-');
        let [version] = fields.next().and_then(hex_bytes).ok_or_else(invalid)?;
        let (Some(trace), Some(span), Some(flags)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(invalid());
        };
        let extra = fields.next().is_some();
        if version == 0xff || (version == 0 && extra) {
            return Err(invalid());
        }
        let [flags] = hex_bytes(flags).ok_or_else(invalid)?;
        Ok(Self {
            trace_id: trace.parse().map_err(|_| invalid())?,
            span_id: span.parse().map_err(|_| invalid())?,
            flags,
        })
    }
}

impl TraceParent {
    /// The root of the trace started at the event with `event_id`: trace id from the id
    /// ([`TraceId::of_event_id`]), span id derived from it, sampled.
    pub fn root(event_id: &str) -> Self {
        Self::sampled_root(event_id, TraceSampler::ALWAYS)
    }

    /// [`TraceParent::root`], sampled when `sampler` samples its trace id.
    pub fn sampled_root(event_id: &str, sampler: TraceSampler) -> Self {
        let trace_id = TraceId::of_event_id(event_id);
        Self {
            trace_id,
            span_id: SpanId::derived(event_id),
            flags: if sampler.samples(trace_id) {
                SAMPLED
            } else {
                0
            },
        }
    }

    /// Whether the trace is recorded (the `sampled` flag).
    pub fn is_sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

/// Which of the traces started in this process are recorded: a ratio of them, chosen by a hash
/// of the trace id, so that a redelivered device message (same id) is sampled as its first copy
/// was and every process decides alike. A trace that arrives with a `traceparent` keeps its
/// own flag (parent-based sampling).
///
/// ```
/// use ktwin_events::trace::{TraceId, TraceSampler};
///
/// let tenth: TraceSampler = "0.1".parse().unwrap();
/// // Even ids that only count: 1,000 expected, σ = 30.
/// let sampled = (1..=10_000u128)
///     .filter(|n| tenth.samples(TraceId::from_bytes(n.to_be_bytes())))
///     .count();
/// assert!((850..1_150).contains(&sampled), "{sampled}");
/// assert!("1.5".parse::<TraceSampler>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceSampler {
    ratio: f64,
}

impl TraceSampler {
    /// Every trace is recorded.
    pub const ALWAYS: Self = Self { ratio: 1.0 };
    /// No trace is recorded.
    pub const NEVER: Self = Self { ratio: 0.0 };
    /// The ratio of traces recorded unless configured (`KTWIN_TRACE_SAMPLE`): one device
    /// message in twenty can be followed with `ktwin trace`, at a twentieth of the cost of
    /// recording every trace (docs/architecture.md, "Traces").
    pub const DEFAULT: Self = Self { ratio: 0.05 };

    /// Records `ratio` (0 to 1) of the traces.
    pub fn ratio(ratio: f64) -> Result<Self, TraceError> {
        if (0.0..=1.0).contains(&ratio) {
            Ok(Self { ratio })
        } else {
            Err(Self::invalid(ratio.to_string()))
        }
    }

    fn invalid(value: String) -> TraceError {
        TraceError {
            what: "trace sample ratio",
            value,
            expected: "a number from 0 (no trace recorded) to 1 (every trace)",
        }
    }

    /// The share of traces recorded, 0 to 1.
    pub fn recorded_share(self) -> f64 {
        self.ratio
    }

    /// Whether the trace `trace` is recorded.
    pub fn samples(self, trace: TraceId) -> bool {
        // The top 53 bits of the mixed id as a fraction of 1, exact in an f64.
        self.ratio >= 1.0 || ((mixed(trace) >> 11) as f64) < self.ratio * (1u64 << 53) as f64
    }
}

/// A trace id's 16 bytes folded to 8 (one half XORed into the other, turned) and mixed by
/// SplitMix64's finalizer, so every bit of the id moves every bit of the result: the ids of
/// one source are not uniform where the choice would read them (a UUIDv7 of the `uuid` crate
/// counts within a millisecond in the bits after its variant, so reading those would sample
/// whole milliseconds).
fn mixed(trace: TraceId) -> u64 {
    let (high, low) = trace.0.split_at(8);
    let half = |bytes: &[u8]| u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
    let mut x = half(high) ^ half(low).rotate_left(32);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Default for TraceSampler {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for TraceSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ratio)
    }
}

impl FromStr for TraceSampler {
    type Err = TraceError;

    fn from_str(text: &str) -> Result<Self, TraceError> {
        let ratio = text
            .trim()
            .parse::<f64>()
            .map_err(|_| Self::invalid(text.chars().take(80).collect()))?;
        Self::ratio(ratio)
    }
}

/// Where an event stands in its trace: its `traceparent` and the causes its `tracestate` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTrace {
    /// The event's `traceparent`.
    pub parent: TraceParent,
    /// The span ids of the events that caused it, nearest first (empty for a trace's root).
    pub causes: Vec<SpanId>,
}

impl EventTrace {
    /// Reads the trace of `event`; `None` when it has no valid `traceparent`.
    pub fn of(event: &Event) -> Option<Self> {
        let parent = string_extension(event, TRACEPARENT)?;
        Self::parse(parent, string_extension(event, TRACESTATE))
    }

    /// Reads a stored `traceparent` and `tracestate`; `None` when the `traceparent` is not
    /// valid. A `ktwin` entry that is not a list of span ids counts as no causes.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let parent = traceparent.parse().ok()?;
        Some(Self {
            parent,
            causes: causes(tracestate),
        })
    }
}

/// The causes the `ktwin` entry of `tracestate` lists, nearest first, up to the first that is
/// not a span id.
fn causes(tracestate: Option<&str>) -> Vec<SpanId> {
    tracestate
        .and_then(ktwin_entry)
        .map(|causes| {
            causes
                .split('-')
                .map_while(|span| span.parse().ok())
                .take(MAX_CAUSES)
                .collect()
        })
        .unwrap_or_default()
}

/// The valid `traceparent` `event` carries, if any.
fn carried_parent(event: &Event) -> Option<TraceParent> {
    string_extension(event, TRACEPARENT)?.parse().ok()
}

fn string_extension<'e>(event: &'e Event, name: &str) -> Option<&'e str> {
    match event.extension(name)? {
        ExtensionValue::String(text) => Some(text),
        _ => None,
    }
}

/// The value of the `ktwin` entry of a `tracestate`.
fn ktwin_entry(tracestate: &str) -> Option<&str> {
    tracestate.split(',').find_map(|entry| {
        let (key, value) = entry.trim().split_once('=')?;
        (key == TRACESTATE_KEY).then_some(value)
    })
}

/// Starts a trace at `event` unless it carries one ([`TraceParent::sampled_root`] of its id):
/// recorded when `sampler` samples it.
pub fn start_trace(event: &mut Event, sampler: TraceSampler) {
    if carried_parent(event).is_some() {
        return;
    }
    let root = TraceParent::sampled_root(event.id(), sampler);
    event.set_extension(TRACEPARENT, root.header());
    event.remove_extension(TRACESTATE);
}

/// Gives `event` the W3C trace context of the HTTP request that carried it when the event
/// carries no valid `traceparent` of its own: Knative's and eventing-rabbitmq's dispatchers
/// send trace context as the plain `traceparent`/`tracestate` headers, so without this a trace
/// started outside ktwin would break at every twin service. An invalid header is ignored.
pub fn adopt_transport_trace(
    event: &mut Event,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) {
    if carried_parent(event).is_some() {
        return;
    }
    let Some(parent) = traceparent.and_then(|text| text.trim().parse::<TraceParent>().ok()) else {
        return;
    };
    event.set_extension(TRACEPARENT, parent.header());
    match tracestate.map(str::trim).filter(|state| !state.is_empty()) {
        Some(state) => event.set_extension(TRACESTATE, state.to_owned()),
        None => {
            event.remove_extension(TRACESTATE);
        }
    }
}

/// Makes `event` a child of `cause` in `cause`'s trace, with span id `span`: the `ktwin` entry
/// of its `tracestate` lists `cause`'s span and causes, and other vendors' entries of `cause`'s
/// `tracestate` are kept behind it. A `cause` without a valid trace is taken as the root of
/// one ([`TraceParent::root`] of its id), so a chain entering without a trace still has one.
///
/// In a trace that is not sampled, `event` carries the `traceparent` (and other vendors'
/// entries) but no `ktwin` entry: the causes are read only to record a trace (the store and the
/// span export), so the events of the traces not recorded, most of them, are built and copied
/// without it.
pub fn continue_trace(cause: &Event, event: &mut Event, span: SpanId) {
    let (parent, cause_state) = match carried_parent(cause) {
        Some(parent) => (parent, string_extension(cause, TRACESTATE)),
        None => (TraceParent::root(cause.id()), None),
    };
    let mut state = String::new();
    if parent.is_sampled() {
        state = format!("{TRACESTATE_KEY}={}", parent.span_id);
        for cause in causes(cause_state).iter().take(MAX_CAUSES - 1) {
            // Writing to a String cannot fail.
            let _ = write!(state, "-{cause}");
        }
    }
    let others = cause_state
        .into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|e| e.split_once('=').is_some_and(|(k, _)| k != TRACESTATE_KEY))
        .take(MAX_STATE_ENTRIES - 1);
    for entry in others {
        if !state.is_empty() {
            state.push(',');
        }
        state.push_str(entry);
    }
    let child = TraceParent {
        span_id: span,
        ..parent
    };
    event.set_extension(TRACEPARENT, child.header());
    if state.is_empty() {
        event.remove_extension(TRACESTATE);
    } else {
        event.set_extension(TRACESTATE, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder as _, EventBuilderV10};

    fn event(id: &str) -> Event {
        EventBuilderV10::new()
            .id(id)
            .ty("ktwin.real.x")
            .source("y")
            .build()
            .unwrap()
    }

    #[test]
    fn traceparent_reads_back_as_written() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent: TraceParent = text.parse().unwrap();
        assert_eq!(parent.to_string(), text);
        assert_eq!(parent.flags, 1);
        // A later version's extra fields are ignored; version 00 has none.
        assert!(
            format!("01{}-more", &text[2..])
                .parse::<TraceParent>()
                .is_ok()
        );
        for bad in [
            "",
            "00",
            &format!("{text}-more"),
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            let err = bad.parse::<TraceParent>().unwrap_err();
            assert!(err.to_string().contains("traceparent"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_transport_trace_is_taken_only_when_the_event_has_none() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut bare = event("e-1");
        adopt_transport_trace(&mut bare, Some(header), Some("rojo=00f067aa0ba902b7"));
        let adopted = EventTrace::of(&bare).expect("the header's trace");
        assert_eq!(adopted.parent.to_string(), header);
        assert_eq!(
            string_extension(&bare, TRACESTATE),
            Some("rojo=00f067aa0ba902b7")
        );
        // The event's own trace wins over the transport's.
        let mut traced = event("e-2");
        start_trace(&mut traced, TraceSampler::ALWAYS);
        let own = EventTrace::of(&traced).unwrap();
        adopt_transport_trace(&mut traced, Some(header), None);
        assert_eq!(EventTrace::of(&traced).unwrap(), own);
        // An invalid header is no trace; an invalid attribute gives way to a valid header.
        let mut invalid = event("e-3");
        adopt_transport_trace(&mut invalid, Some("00-zz-00f067aa0ba902b7-01"), None);
        assert!(EventTrace::of(&invalid).is_none());
        invalid.set_extension(TRACEPARENT, "garbage");
        invalid.set_extension(TRACESTATE, "ktwin=garbage");
        adopt_transport_trace(&mut invalid, Some(header), None);
        assert_eq!(EventTrace::of(&invalid).unwrap().parent.to_string(), header);
        assert_eq!(string_extension(&invalid, TRACESTATE), None);
    }

    #[test]
    fn a_trace_is_sampled_by_its_id_and_a_carried_trace_keeps_its_flag() {
        let ids: Vec<String> = (0..20_000)
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let share = |sampler: TraceSampler| {
            ids.iter()
                .filter(|id| TraceParent::sampled_root(id, sampler).is_sampled())
                .count()
        };
        assert_eq!(share(TraceSampler::ALWAYS), ids.len());
        assert_eq!(share(TraceSampler::NEVER), 0);
        // 5 % of 20,000 UUIDv7s: 1,000 expected, σ ≈ 31; ± 4.5 σ allowed.
        let default = share(TraceSampler::DEFAULT);
        assert!(
            (860..=1_140).contains(&default),
            "{default} of 20,000 sampled"
        );
        // The same id is sampled alike wherever it starts a trace (a redelivery).
        let mut first = event(&ids[0]);
        let mut again = event(&ids[0]);
        start_trace(&mut first, TraceSampler::DEFAULT);
        start_trace(&mut again, TraceSampler::DEFAULT);
        assert_eq!(EventTrace::of(&first), EventTrace::of(&again));
        // An unsampled trace stays unsampled downstream, whatever this process samples.
        let mut unsampled = event("e-1");
        start_trace(&mut unsampled, TraceSampler::NEVER);
        let mut child = event("c-1");
        continue_trace(&unsampled, &mut child, SpanId::from_bytes([7; 8]));
        start_trace(&mut child, TraceSampler::ALWAYS);
        assert!(!EventTrace::of(&child).unwrap().parent.is_sampled());
        for bad in ["1.5", "-0.1", "NaN", "five percent"] {
            let err = bad.parse::<TraceSampler>().unwrap_err().to_string();
            assert!(
                err.contains("trace sample ratio") && err.contains("0"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_device_event_starts_a_trace_named_by_its_id() {
        let mut reading = event("0190f5a2-7b1c-7d3e-8f00-0123456789ab");
        start_trace(&mut reading, TraceSampler::ALWAYS);
        let trace = EventTrace::of(&reading).unwrap();
        assert_eq!(
            trace.parent.trace_id.to_string(),
            "0190f5a27b1c7d3e8f000123456789ab"
        );
        assert!(trace.causes.is_empty());
        // Started once: a second start keeps it, a redelivery gets the same one.
        let first = trace.parent;
        start_trace(&mut reading, TraceSampler::ALWAYS);
        assert_eq!(EventTrace::of(&reading).unwrap().parent, first);
        let mut again = event("0190f5a2-7b1c-7d3e-8f00-0123456789ab");
        start_trace(&mut again, TraceSampler::ALWAYS);
        assert_eq!(EventTrace::of(&again).unwrap().parent, first);
        // An id that is no UUID still names a trace.
        let mut other = event("reading-1");
        start_trace(&mut other, TraceSampler::ALWAYS);
        assert_ne!(
            EventTrace::of(&other).unwrap().parent.trace_id,
            first.trace_id
        );
    }

    #[test]
    fn children_list_their_causes_nearest_first_and_keep_other_vendors() {
        let mut root = event("root");
        root.set_extension(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        root.set_extension(TRACESTATE, "congo=t61rcWkgMzE");
        let mut chain = vec![root];
        for n in 1..=10u8 {
            let mut next = event(&format!("e{n}"));
            continue_trace(chain.last().unwrap(), &mut next, SpanId::from_bytes([n; 8]));
            chain.push(next);
        }
        let second = EventTrace::of(&chain[2]).unwrap();
        assert_eq!(
            second.causes,
            vec![
                SpanId::from_bytes([1; 8]),
                "00f067aa0ba902b7".parse().unwrap()
            ]
        );
        let state = string_extension(&chain[2], TRACESTATE).unwrap();
        assert_eq!(
            state,
            "ktwin=0101010101010101-00f067aa0ba902b7,congo=t61rcWkgMzE"
        );
        let last = EventTrace::of(&chain[10]).unwrap();
        assert_eq!(
            last.parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(last.parent.span_id, SpanId::from_bytes([10; 8]));
        assert_eq!(last.causes.len(), MAX_CAUSES);
        assert_eq!(last.causes[0], SpanId::from_bytes([9; 8]));
        let value = ktwin_entry(string_extension(&chain[10], TRACESTATE).unwrap()).unwrap();
        assert!(value.len() <= 256, "{value}");
    }

    #[test]
    fn a_trace_not_sampled_carries_its_parent_and_other_vendors_but_no_causes() {
        let mut root = event("root");
        root.set_extension(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        );
        let mut child = event("child");
        continue_trace(&root, &mut child, SpanId::from_bytes([1; 8]));
        assert_eq!(
            string_extension(&child, TRACEPARENT),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0101010101010101-00")
        );
        assert_eq!(string_extension(&child, TRACESTATE), None);
        root.set_extension(TRACESTATE, "ktwin=00f067aa0ba902b7,congo=t61rcWkgMzE");
        continue_trace(&root, &mut child, SpanId::from_bytes([2; 8]));
        assert_eq!(
            string_extension(&child, TRACESTATE),
            Some("congo=t61rcWkgMzE")
        );
        let trace = EventTrace::of(&child).unwrap();
        assert!(!trace.parent.is_sampled());
        assert!(trace.causes.is_empty());
    }

    #[test]
    fn a_cause_without_a_trace_becomes_a_root() {
        let cause = event("untraced");
        let mut child = event("child");
        continue_trace(&cause, &mut child, SpanId::from_bytes([3; 8]));
        let trace = EventTrace::of(&child).unwrap();
        assert_eq!(trace.parent.trace_id, TraceId::of_event_id("untraced"));
        assert_eq!(trace.causes, vec![SpanId::derived("untraced")]);
    }
}
