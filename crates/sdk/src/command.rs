//! Which instance executes a received command: the original platform had two conventions for a
//! command's `source`, and ktwin answers both as the original did.
//!
//! - The Go SDK (and ktwin's SDKs) send the **target** as `source`: the source is an instance
//!   of the command's interface, and it executes the command.
//! - The original Python SDK sent the **sender** as `source`; its receiver found its target as
//!   the instance of the command's interface the sender has a relationship to
//!   (`get_twin_graph_by_relation(<command interface>, <source>)`), and failed when there was
//!   none.
//!
//! The twin graph tells them apart: a source that is an instance of the command's interface is
//! the target; a source that is a twin of another interface is the sender, and the target is
//! the one instance of the command's interface it is related to. A sender related to none, or
//! to several (the original took the first; which one is then arbitrary), is
//! [`HandlerError::Invalid`] naming the command, the sender and what it relates to: the event
//! is dead-lettered rather than applied to a twin named after its sender. A source the graph
//! does not know is taken as the target, as before this module existed.

use std::collections::BTreeSet;

use crate::context::TwinContext;
use crate::error::HandlerError;
use crate::event::TwinEvent;

/// `command` with its executing instance resolved (see the module's documentation).
pub(crate) async fn resolve_target(
    command: TwinEvent,
    ctx: &TwinContext,
) -> Result<TwinEvent, HandlerError> {
    let interface = command.interface();
    let source = command.instance();
    let graph = ctx.graph();
    if graph.twin(interface, source).await?.is_some() {
        return Ok(command);
    }
    let Some(sender) = graph.instance(source).await? else {
        return Ok(command);
    };
    if sender.interface.is_empty() || sender.interface == interface {
        return Ok(command);
    }
    let targets: BTreeSet<&str> = sender
        .relationships
        .iter()
        .filter(|r| r.interface == interface)
        .map(|r| r.instance.as_str())
        .collect();
    let what = || {
        format!(
            "command {} ({}): its source {source} is a twin of {}, not of {interface}; taken \
             as the sender (the original Python convention), it",
            command.id(),
            command.event_type(),
            sender.interface
        )
    };
    let mut found = targets.iter();
    match (found.next(), found.next()) {
        (Some(target), None) => {
            let target = (*target).to_owned();
            tracing::debug!(%source, %target, "command in the sender convention");
            Ok(command.sent_to(target))
        }
        (None, _) => Err(HandlerError::Invalid(format!(
            "{} has no relationship to a twin of {interface}",
            what()
        ))),
        (Some(_), Some(_)) => Err(HandlerError::Invalid(format!(
            "{} is related to several twins of {interface} ({}), so the target is ambiguous",
            what(),
            targets.iter().copied().collect::<Vec<_>>().join(", ")
        ))),
    }
}
