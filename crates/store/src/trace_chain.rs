//! The causal chain of one trace, rebuilt from the events the store kept: each event's span
//! (its `traceparent`) hangs under its nearest cause (the first span its `tracestate` lists).
//! Causes the store does not keep (commands, an interface's real events when it does not
//! persist them) are nodes without an event, placed by the cause lists of the events below
//! them, so the chain from the device message down stays connected.

use std::collections::{BTreeMap, BTreeSet};

use ktwin_events::trace::{EventTrace, SpanId, TraceId};
use serde::Serialize;

use crate::event::TwinEvent;

/// One span of a trace, in the order of a depth-first walk from the roots.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainLink {
    /// Its span id.
    pub span_id: String,
    /// The span of its nearest cause; `None` for a root (the device message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// How many causes stand between it and its root.
    pub depth: usize,
    /// The stored event of the span; `None` for a cause the store does not keep (a command).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<TwinEvent>,
}

/// The causal chain of one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CausalChain {
    /// The trace.
    pub trace_id: String,
    /// Its spans, each after its cause, children in time order.
    pub links: Vec<ChainLink>,
}

impl CausalChain {
    /// The chain of `trace` from its stored events (those of other traces, or without a valid
    /// `traceparent`, are left out).
    pub fn build(trace: TraceId, events: Vec<TwinEvent>) -> Self {
        let mut parents: BTreeMap<SpanId, SpanId> = BTreeMap::new();
        let mut stored: BTreeMap<SpanId, TwinEvent> = BTreeMap::new();
        let mut spans = BTreeSet::new();
        for event in events {
            let Some(parsed) = event
                .traceparent
                .as_deref()
                .and_then(|p| EventTrace::parse(p, event.tracestate.as_deref()))
                .filter(|t| t.parent.trace_id == trace)
            else {
                continue;
            };
            let mut span = parsed.parent.span_id;
            spans.insert(span);
            for cause in parsed.causes {
                spans.insert(cause);
                // The cause list nearest a span decides (a later entry never overrides).
                parents.entry(span).or_insert(cause);
                span = cause;
            }
            stored.entry(parsed.parent.span_id).or_insert(event);
        }
        let mut children: BTreeMap<Option<SpanId>, Vec<SpanId>> = BTreeMap::new();
        for span in &spans {
            children
                .entry(parents.get(span).copied())
                .or_default()
                .push(*span);
        }
        // Children in the time order of their events (unstored ones, which have none, first).
        for siblings in children.values_mut() {
            siblings.sort_by_key(|span| stored.get(span).map(TwinEvent::version));
        }
        let mut links = Vec::with_capacity(spans.len());
        let mut stack: Vec<(SpanId, usize)> = children
            .get(&None)
            .into_iter()
            .flatten()
            .rev()
            .map(|span| (*span, 0))
            .collect();
        while let Some((span, depth)) = stack.pop() {
            links.push(ChainLink {
                span_id: span.to_string(),
                parent_span_id: parents.get(&span).map(ToString::to_string),
                depth,
                event: stored.remove(&span),
            });
            if let Some(below) = children.get(&Some(span)) {
                stack.extend(below.iter().rev().map(|child| (*child, depth + 1)));
            }
        }
        Self {
            trace_id: trace.to_string(),
            links,
        }
    }

    /// The chain as indented lines, one per span.
    pub fn render(&self) -> String {
        let mut text = format!("trace {}\n", self.trace_id);
        for link in &self.links {
            let indent = "  ".repeat(link.depth);
            let line = match &link.event {
                Some(event) => format!(
                    "{indent}{} {} id={} time={} span={}\n",
                    event.event_type,
                    event.instance_id,
                    event.id,
                    event
                        .time
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    link.span_id
                ),
                None => format!(
                    "{indent}(not stored: a command, or an event the store does not keep) span={}\n",
                    link.span_id
                ),
            };
            text.push_str(&line);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn span(n: u8) -> String {
        format!("{n:02x}").repeat(8)
    }

    fn event(id: &str, second: i64, own: u8, causes: &[u8]) -> TwinEvent {
        let mut event = TwinEvent::new(
            &ktwin_events::EventType::store("pole").unwrap(),
            "p1",
            id,
            chrono::DateTime::from_timestamp(second, 0).unwrap(),
            Map::new(),
        );
        event.traceparent = Some(format!("00-{TRACE}-{}-01", span(own)));
        if !causes.is_empty() {
            let list: Vec<String> = causes.iter().map(|c| span(*c)).collect();
            event.tracestate = Some(format!("ktwin={}", list.join("-")));
        }
        event
    }

    #[test]
    fn unstored_commands_keep_the_chain_connected() {
        // device (1) → air-quality store (2) and command (3, not stored) → command (4, not
        // stored) → neighborhood store (5); one event of another trace.
        let mut other = event("x", 0, 9, &[]);
        other.traceparent = Some(format!("00-{}-{}-01", "1".repeat(32), span(9)));
        let events = vec![
            event("neighborhood", 3, 5, &[4, 3, 1]),
            event("air-quality", 2, 2, &[1]),
            event("device", 1, 1, &[]),
            other,
        ];
        let chain = CausalChain::build(TRACE.parse().unwrap(), events);
        let shape: Vec<(usize, String, Option<&str>)> = chain
            .links
            .iter()
            .map(|l| {
                (
                    l.depth,
                    l.span_id.clone(),
                    l.event.as_ref().map(|e| e.id.as_str()),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, span(1), Some("device")),
                (1, span(3), None),
                (2, span(4), None),
                (3, span(5), Some("neighborhood")),
                (1, span(2), Some("air-quality")),
            ]
        );
        assert_eq!(chain.links[3].parent_span_id, Some(span(4)));
        let text = chain.render();
        assert!(text.starts_with(&format!("trace {TRACE}\n")), "{text}");
        assert!(
            text.contains("      ktwin.store.pole p1 id=neighborhood"),
            "{text}"
        );
    }
}
