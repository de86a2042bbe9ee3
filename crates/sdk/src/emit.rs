//! Builders for the events a handler emits, on top of `ktwin_events::EventBuilder`.

use cloudevents::Event;
use ktwin_events::{EventBuilder, EventType, GrammarError};
use serde::Serialize;

use crate::context::TwinContext;
use crate::error::HandlerError;

fn build(
    event_type: Result<EventType, GrammarError>,
    instance: &str,
    data: impl Serialize,
) -> Result<Event, HandlerError> {
    let invalid =
        |err: &dyn std::fmt::Display| HandlerError::Failed(format!("cannot build event: {err}"));
    let data = serde_json::to_value(data).map_err(|e| invalid(&e))?;
    Ok(
        EventBuilder::new(event_type.map_err(|e| invalid(&e))?, instance)
            .map_err(|e| invalid(&e))?
            .data(data)
            .build(),
    )
}

/// `ktwin.store.<interface>` for `instance`: the event store merges `data` into the
/// instance's latest state (asynchronous persistence).
pub fn store_event(
    interface: &str,
    instance: &str,
    data: impl Serialize,
) -> Result<Event, HandlerError> {
    build(EventType::store(interface), instance, data)
}

/// `ktwin.virtual.<interface>` for `instance`: delivered to the device of the real twin on
/// `ktwin/virtual/<interface>/<instance>`.
pub fn virtual_event(
    interface: &str,
    instance: &str,
    data: impl Serialize,
) -> Result<Event, HandlerError> {
    build(EventType::virtual_(interface), instance, data)
}

/// `ktwin.real.<interface>` for `instance`: re-injects a reading as if its device sent it.
pub fn real_event(
    interface: &str,
    instance: &str,
    data: impl Serialize,
) -> Result<Event, HandlerError> {
    build(EventType::real(interface), instance, data)
}

/// `ktwin.command.<interface>.<command>` executed by `target`: the `source` of a command is
/// the **target** instance (the Go SDK convention the bindings rely on); the command name is
/// lower-cased.
pub fn command_event(
    interface: &str,
    command: &str,
    target: &str,
    data: impl Serialize,
) -> Result<Event, HandlerError> {
    build(EventType::command(interface, command), target, data)
}

impl TwinContext {
    /// A command to the instance related to `instance` by `relationship`, addressed to the
    /// relationship's interface. A missing twin or relationship is [`HandlerError::Invalid`].
    pub async fn command_to_related(
        &self,
        interface: &str,
        instance: &str,
        relationship: &str,
        command: &str,
        data: impl Serialize,
    ) -> Result<Event, HandlerError> {
        let target = self.relationship(interface, instance, relationship).await?;
        command_event(&target.interface, command, &target.instance, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::AttributesReader;

    #[test]
    fn builders_follow_the_grammar() {
        let ev = command_event(
            "city-pole",
            "updateAirQualityIndex",
            "pole-1",
            serde_json::json!({"a": 1}),
        )
        .unwrap();
        assert_eq!(ev.ty(), "ktwin.command.city-pole.updateairqualityindex");
        assert_eq!(ev.source().as_str(), "pole-1");
        assert_eq!(store_event("x", "y", 1).unwrap().ty(), "ktwin.store.x");
        assert_eq!(virtual_event("x", "y", 1).unwrap().ty(), "ktwin.virtual.x");
        assert_eq!(real_event("x", "y", 1).unwrap().ty(), "ktwin.real.x");
        assert!(store_event("x", "a.b", 1).is_err());
    }
}
