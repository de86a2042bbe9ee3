//! Event types as metric labels, bounded: types come from the wire (HTTP posts, MQTT topics),
//! and a metrics recorder keeps every series it has seen, so each distinct type would be a
//! series for the life of the process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The label of every event type past the bound.
pub const OTHER_LABEL: &str = "other";

/// Distinct event types labelled by name before later ones collapse into [`OTHER_LABEL`]: far
/// more than a model's types (a few per interface), few enough that a flood of invented
/// types costs a bounded number of series.
pub const DEFAULT_EVENT_TYPE_LABELS: usize = 256;

/// The event types a set of series is labelled with: the first `capacity` distinct types keep
/// their name, every later one is [`OTHER_LABEL`]. Cloning shares the set.
///
/// ```
/// use ktwin_events::{EventTypeLabels, OTHER_LABEL};
///
/// let labels = EventTypeLabels::new(1);
/// assert_eq!(labels.label("ktwin.real.city-pole"), "ktwin.real.city-pole");
/// assert_eq!(labels.label("ktwin.real.made-up"), OTHER_LABEL);
/// assert_eq!(labels.label("ktwin.real.city-pole"), "ktwin.real.city-pole");
/// ```
#[derive(Debug, Clone)]
pub struct EventTypeLabels {
    capacity: usize,
    named: Arc<Mutex<HashSet<String>>>,
}

impl Default for EventTypeLabels {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_TYPE_LABELS)
    }
}

impl EventTypeLabels {
    /// Names at most `capacity` types.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            named: Arc::default(),
        }
    }

    /// The label of `event_type`: its name while there is room (or it already has one), else
    /// [`OTHER_LABEL`]; a type longer than any of the grammar's
    /// ([`MAX_EVENT_TYPE_LEN`](crate::MAX_EVENT_TYPE_LEN)) is never named.
    pub fn label(&self, event_type: &str) -> String {
        if event_type.len() > crate::MAX_EVENT_TYPE_LEN {
            return OTHER_LABEL.to_owned();
        }
        let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        if named.contains(event_type) {
            return event_type.to_owned();
        }
        if named.len() < self.capacity {
            named.insert(event_type.to_owned());
            return event_type.to_owned();
        }
        OTHER_LABEL.to_owned()
    }

    /// How many types are labelled by name.
    pub fn named(&self) -> usize {
        self.named.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_past_the_bound_are_other() {
        let labels = EventTypeLabels::new(3);
        let seen: Vec<String> = (0..1000)
            .map(|i| labels.label(&format!("ktwin.real.iface-{}", i % 10)))
            .collect();
        assert_eq!(labels.named(), 3);
        let distinct: HashSet<&str> = seen.iter().map(String::as_str).collect();
        assert_eq!(distinct.len(), 4, "{distinct:?}");
        assert!(distinct.contains(OTHER_LABEL));
        assert_eq!(labels.label("ktwin.real.iface-1"), "ktwin.real.iface-1");
    }

    /// The grammar's longest type is named; a longer one, which no component produces, takes
    /// no room: it could be megabytes.
    #[test]
    fn types_longer_than_the_grammar_allows_are_other() {
        let name = "n".repeat(crate::name::MAX_NAME_LEN);
        let longest = crate::EventType::command(&name, &name).unwrap().to_string();
        assert_eq!(longest.len(), crate::MAX_EVENT_TYPE_LEN);
        let labels = EventTypeLabels::new(10);
        assert_eq!(labels.label(&longest), longest);
        assert_eq!(labels.label(&format!("{longest}x")), OTHER_LABEL);
        assert_eq!(labels.named(), 1);
    }
}
