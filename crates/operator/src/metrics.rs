//! Prometheus metrics of the operator, served on `/metrics` by `ktwin-service`.

use std::time::Duration;

use crate::controller::SyncReport;

/// Counts one reconcile of `kind` and records its duration.
pub fn reconciled(kind: &'static str, elapsed: Duration, ok: bool) {
    let result = if ok { "success" } else { "error" };
    metrics::counter!("ktwin_operator_reconciles_total", "kind" => kind, "result" => result)
        .increment(1);
    metrics::histogram!("ktwin_operator_reconcile_duration_seconds", "kind" => kind)
        .record(elapsed.as_secs_f64());
}

/// Counts children written and pruned.
pub fn children(report: &SyncReport) {
    metrics::counter!("ktwin_operator_children_applied_total")
        .increment(report.applied.len() as u64);
    metrics::counter!("ktwin_operator_children_pruned_total").increment(report.pruned.len() as u64);
}
