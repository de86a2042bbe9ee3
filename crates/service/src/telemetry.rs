//! Spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the OpenTelemetry
//! variable; `OTEL_SERVICE_NAME` names the service): the `tracing` spans of the process through
//! `tracing-opentelemetry`, and the spans of the steps that produced events ([`record`]), whose
//! ids are the ones the events carry in their `traceparent`, so an OTLP backend shows the same
//! chain the event store keeps.
//!
//! Off by default and free when off: no exporter, no thread, and [`record_event`] returns
//! after one atomic load, before reading or allocating anything.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use ktwin_events::trace::EventTrace;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter as _,
    SpanProcessor,
};

/// The variable whose presence turns the export on (OTLP/HTTP, `…/v1/traces` appended).
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The service name used when `OTEL_SERVICE_NAME` is not set.
const DEFAULT_SERVICE: &str = "ktwin";
/// How long [`shutdown`] waits for the last spans to be sent.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

static ENABLED: AtomicBool = AtomicBool::new(false);
static EXPORT: OnceLock<Export> = OnceLock::new();

struct Export {
    processor: Arc<BatchSpanProcessor>,
    provider: SdkTracerProvider,
    scope: InstrumentationScope,
}

/// Why the OTLP export could not start.
#[derive(Debug, thiserror::Error)]
#[error("{OTLP_ENDPOINT} is set but the OTLP exporter cannot be built")]
pub struct TelemetryError(#[source] opentelemetry_otlp::ExporterBuildError);

/// Whether spans are exported. Check it before building a [`ProducedSpan`].
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Starts the export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; returns the tracer for the
/// `tracing-opentelemetry` layer, or `None` when the export is off (or was started already).
pub(crate) fn start_from_env() -> Result<Option<SdkTracer>, TelemetryError> {
    if std::env::var_os(OTLP_ENDPOINT).is_none_or(|v| v.is_empty()) || EXPORT.get().is_some() {
        return Ok(None);
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(TelemetryError)?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(DEFAULT_SERVICE);
    }
    let resource = resource.build();
    exporter.set_resource(&resource);
    let processor = Arc::new(BatchSpanProcessor::builder(exporter).build());
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Shared(processor.clone()))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("ktwin");
    let export = Export {
        processor,
        provider,
        scope: InstrumentationScope::builder("ktwin-events").build(),
    };
    if EXPORT.set(export).is_err() {
        return Ok(None);
    }
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(tracer))
}

/// Sends the spans not sent yet and stops the export (call before the process exits).
pub fn shutdown() {
    if let Some(export) = EXPORT.get() {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(err) = export.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(%err, "flushing the last spans over OTLP failed");
        }
    }
}

/// The step that produced one event, as a span whose ids are the event's `traceparent`.
#[derive(Debug, Clone)]
pub struct ProducedSpan {
    /// What produced the event (e.g. `ingress ktwin.real.city-pole`).
    pub name: String,
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The span id the event carries.
    pub span_id: [u8; 8],
    /// The span of the event's nearest cause; `None` for a trace's root.
    pub parent: Option<[u8; 8]>,
    /// When the step began (it ends when recorded).
    pub start: SystemTime,
    /// Attributes (the event's id, type, source).
    pub attributes: Vec<(&'static str, String)>,
}

/// Exports the span of the step that produced `event` (named `step` and the event's type),
/// begun at `started` and ending now, with the ids of the event's `traceparent` and its nearest
/// cause as parent. Nothing when the export is off or the event carries no sampled trace.
pub fn record_event(event: &cloudevents::Event, step: &str, started: Instant) {
    use cloudevents::AttributesReader as _;
    if !enabled() {
        return;
    }
    let Some(trace) = EventTrace::of(event).filter(|trace| trace.parent.is_sampled()) else {
        return;
    };
    let now = SystemTime::now();
    record(ProducedSpan {
        name: format!("{step} {}", event.ty()),
        trace_id: trace.parent.trace_id.to_bytes(),
        span_id: trace.parent.span_id.to_bytes(),
        parent: trace.causes.first().map(|span| span.to_bytes()),
        start: now.checked_sub(started.elapsed()).unwrap_or(now),
        attributes: vec![
            ("cloudevents.event_id", event.id().to_owned()),
            ("cloudevents.event_type", event.ty().to_owned()),
            ("cloudevents.event_source", event.source().to_string()),
        ],
    });
}

/// Exports `span` (ending now) if the export is on.
pub fn record(span: ProducedSpan) {
    let Some(export) = EXPORT.get().filter(|_| enabled()) else {
        return;
    };
    let data = SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(span.trace_id),
            SpanId::from_bytes(span.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: span.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: span.parent.is_some(),
        span_kind: SpanKind::Producer,
        name: Cow::Owned(span.name),
        start_time: span.start,
        end_time: SystemTime::now(),
        attributes: span
            .attributes
            .into_iter()
            .map(|(key, value)| KeyValue::new(key, value))
            .collect(),
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: Status::Unset,
        instrumentation_scope: export.scope.clone(),
    };
    export.processor.on_end(data);
}

/// The batch processor, shared by the provider (spans of `tracing`) and [`record`].
#[derive(Debug)]
struct Shared(Arc<BatchSpanProcessor>);

impl SpanProcessor for Shared {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}
