//! CloudEvents for tests.

use cloudevents::{Event, EventBuilder, EventBuilderV10};

/// A CloudEvent with a JSON body, stamped with the current time.
///
/// # Panics
/// Never for the arguments a test passes: every required attribute is set.
pub fn cloud_event(id: &str, ty: &str, source: &str, data: serde_json::Value) -> Event {
    EventBuilderV10::new()
        .id(id)
        .ty(ty)
        .source(source)
        .time(chrono::Utc::now())
        .data("application/json", data)
        .build()
        .unwrap_or_else(|err| panic!("test event {id}: {err}"))
}

/// A short random suffix that keeps a test's queues, topics and databases apart from others'.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}
