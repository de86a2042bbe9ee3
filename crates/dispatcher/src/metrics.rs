//! Prometheus series of the dispatchers. The ingress names are the original KTWIN dashboard's
//! (`rabbitmq_ingress_event_count`, shaped like the Knative RabbitMQ broker ingress metrics), with
//! the defects fixed: the response code is a real per-observation label and the histogram is
//! not named `…_bucket`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ktwin_events::EventTypeLabels;
use metrics::{Counter, Histogram};

/// Counter of events entering the broker, labels `event_type` (`other` past
/// [`ktwin_events::DEFAULT_EVENT_TYPE_LABELS`] distinct types), `response_code`,
/// `response_code_class`, `container_name`, `broker_name`.
pub const INGRESS_EVENTS: &str = "rabbitmq_ingress_event_count";
/// Histogram of the time from receiving a device message to the broker confirming its event,
/// in milliseconds, same labels.
pub const INGRESS_LATENCY: &str = "rabbitmq_mqtt_ingress_event_dispatch_latencies";
/// Counter of events sent to devices, labels `event_type`, `response_code`, `response_code_class`.
pub const EGRESS_EVENTS: &str = "ktwin_mqtt_egress_event_count";
/// Histogram of the time from receiving a virtual event to the device transport confirming it, ms.
pub const EGRESS_LATENCY: &str = "ktwin_mqtt_egress_event_dispatch_latencies";
/// Counter of dead-lettered messages, labels `dispatcher` and `reason`.
pub const DEAD_LETTERS: &str = "ktwin_dispatcher_dead_letters_total";

/// Response codes in the Knative broker ingress convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCode {
    /// Accepted by the broker.
    Accepted,
    /// Refused: bad input, dead-lettered.
    BadRequest,
    /// The broker or transport failed (will be retried).
    Failed,
}

impl ResponseCode {
    /// How many codes there are: the last variant's index + 1 (the series cache has a slot per
    /// code, indexed `code as usize`).
    const COUNT: usize = ResponseCode::Failed as usize + 1;

    fn code(self) -> &'static str {
        match self {
            ResponseCode::Accepted => "202",
            ResponseCode::BadRequest => "400",
            ResponseCode::Failed => "500",
        }
    }

    fn class(self) -> &'static str {
        match self {
            ResponseCode::Accepted => "2xx",
            ResponseCode::BadRequest => "4xx",
            ResponseCode::Failed => "5xx",
        }
    }
}

/// Which series a dispatcher writes. Cloning shares the series.
///
/// The handles of each (event type, response code) series are registered once and kept:
/// building the five labels and looking the series up in the registry for every message would
/// cost more than the rest of the dispatch.
#[derive(Clone)]
pub struct DispatchMetrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    events: &'static str,
    latency: &'static str,
    container: String,
    broker: String,
    /// The event types labelled by name; devices (any interface when no model is loaded) and
    /// posted virtual events choose the types, so later ones are `other`.
    labels: EventTypeLabels,
    /// Per event type label, the series of each response code.
    series: Mutex<HashMap<String, [Option<Series>; ResponseCode::COUNT]>>,
}

/// The counter and latency histogram of one (event type, response code).
type Series = (Counter, Histogram);

impl std::fmt::Debug for DispatchMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchMetrics")
            .field("events", &self.inner.events)
            .field("container", &self.inner.container)
            .field("broker", &self.inner.broker)
            .finish_non_exhaustive()
    }
}

impl DispatchMetrics {
    fn new(events: &'static str, latency: &'static str, container: &str, broker: &str) -> Self {
        // Series handles are kept, so the recorder they belong to must be the one `/metrics`
        // renders, installed before the first of them is registered.
        ktwin_service::prometheus();
        Self {
            inner: Arc::new(MetricsInner {
                events,
                latency,
                container: container.to_owned(),
                broker: broker.to_owned(),
                labels: EventTypeLabels::default(),
                series: Mutex::default(),
            }),
        }
    }

    /// The MQTT → CloudEvent dispatcher's series.
    pub fn ingress(container: &str, broker: &str) -> Self {
        Self::new(INGRESS_EVENTS, INGRESS_LATENCY, container, broker)
    }

    /// The CloudEvent → MQTT dispatcher's series.
    pub fn egress(container: &str, broker: &str) -> Self {
        Self::new(EGRESS_EVENTS, EGRESS_LATENCY, container, broker)
    }

    /// Counts one event and its latency.
    pub fn observe(&self, event_type: &str, code: ResponseCode, elapsed: Duration) {
        let (counter, histogram) = self.series(event_type, code);
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64() * 1000.0);
    }

    fn series(&self, event_type: &str, code: ResponseCode) -> Series {
        let inner = &self.inner;
        let mut series = inner.series.lock().expect("metrics lock");
        let slot = match series.get_mut(event_type) {
            Some(codes) => &mut codes[code as usize],
            None => {
                let label = inner.labels.label(event_type);
                &mut series.entry(label).or_default()[code as usize]
            }
        };
        slot.get_or_insert_with(|| {
            let labels = [
                ("event_type", inner.labels.label(event_type)),
                ("response_code", code.code().to_owned()),
                ("response_code_class", code.class().to_owned()),
                ("container_name", inner.container.clone()),
                ("broker_name", inner.broker.clone()),
            ];
            (
                metrics::counter!(inner.events, &labels),
                metrics::histogram!(inner.latency, &labels),
            )
        })
        .clone()
    }

    /// Counts one dead letter.
    pub fn dead_letter(&self, reason: &'static str) {
        metrics::counter!(DEAD_LETTERS, "dispatcher" => self.inner.container.clone(), "reason" => reason)
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktwin_events::DEFAULT_EVENT_TYPE_LABELS;

    #[test]
    fn invented_event_types_share_the_other_label() {
        let container = "label-bound-test";
        let metrics = DispatchMetrics::ingress(container, "ktwin");
        let invented = DEFAULT_EVENT_TYPE_LABELS + 50;
        for i in 0..invented {
            let ty = format!("ktwin.real.made-up-{i}");
            metrics.observe(&ty, ResponseCode::Accepted, Duration::from_millis(1));
        }
        let rendered = ktwin_service::prometheus().render();
        let series: Vec<&str> = rendered
            .lines()
            .filter(|l| l.starts_with(&format!("{INGRESS_EVENTS}{{")))
            .filter(|l| l.contains(&format!("container_name=\"{container}\"")))
            .collect();
        assert_eq!(series.len(), DEFAULT_EVENT_TYPE_LABELS + 1, "{rendered}");
        let other = series
            .iter()
            .find(|l| l.contains("event_type=\"other\""))
            .expect("an `other` series");
        assert!(other.ends_with(" 50"), "{other}");
        let cached = metrics.inner.series.lock().expect("metrics lock").len();
        assert_eq!(cached, DEFAULT_EVENT_TYPE_LABELS + 1);
    }
}
