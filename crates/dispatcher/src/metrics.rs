//! Prometheus series of the dispatchers. The ingress names are the original KTWIN dashboard's
//! (`rabbitmq_ingress_event_count`, shaped like the Knative RabbitMQ broker ingress metrics), with
//! the defects fixed: the response code is a real per-observation label and the histogram is
//! not named `…_bucket`.

use std::time::Duration;

/// Counter of events entering the broker, labels `event_type`, `response_code`,
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

/// Which series a dispatcher writes.
#[derive(Debug, Clone)]
pub struct DispatchMetrics {
    events: &'static str,
    latency: &'static str,
    container: String,
    broker: String,
}

impl DispatchMetrics {
    /// The MQTT → CloudEvent dispatcher's series.
    pub fn ingress(container: &str, broker: &str) -> Self {
        Self {
            events: INGRESS_EVENTS,
            latency: INGRESS_LATENCY,
            container: container.to_owned(),
            broker: broker.to_owned(),
        }
    }

    /// The CloudEvent → MQTT dispatcher's series.
    pub fn egress(container: &str, broker: &str) -> Self {
        Self {
            events: EGRESS_EVENTS,
            latency: EGRESS_LATENCY,
            container: container.to_owned(),
            broker: broker.to_owned(),
        }
    }

    /// Counts one event and its latency.
    pub fn observe(&self, event_type: &str, code: ResponseCode, elapsed: Duration) {
        let labels = [
            ("event_type", event_type.to_owned()),
            ("response_code", code.code().to_owned()),
            ("response_code_class", code.class().to_owned()),
            ("container_name", self.container.clone()),
            ("broker_name", self.broker.clone()),
        ];
        metrics::counter!(self.events, &labels).increment(1);
        metrics::histogram!(self.latency, &labels).record(elapsed.as_secs_f64() * 1000.0);
    }

    /// Counts one dead letter.
    pub fn dead_letter(&self, reason: &'static str) {
        metrics::counter!(DEAD_LETTERS, "dispatcher" => self.container.clone(), "reason" => reason)
            .increment(1);
    }
}
