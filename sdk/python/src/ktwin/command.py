"""Which instance executes a received command: the original platform had two conventions for a
command's ``source``, and ktwin answers both as the original did (the Rust SDK's
``ktwin_sdk`` resolves them identically).

- The Go SDK (and ktwin's SDKs) send the **target** as ``source``: the source is an instance of
  the command's interface, and it executes the command.
- The original Python SDK sent the **sender** as ``source``; its receiver found its target as
  the instance of the command's interface the sender has a relationship to
  (``get_twin_graph_by_relation(<command interface>, <source>)``), and failed when there was
  none.

The twin graph tells them apart: a source that is an instance of the command's interface is the
target; a source that is a twin of another interface is the sender, and the target is the one
instance of the command's interface it is related to. A sender related to none, or to several
(the original took the first; which one is then arbitrary), is :class:`InvalidEvent` naming the
command, the sender and what it relates to: the event is dead-lettered rather than applied to a
twin named after its sender. A source the graph does not know is taken as the target.
"""

from __future__ import annotations

import logging

from .context import Context
from .errors import InvalidEvent
from .events import TwinEvent

log = logging.getLogger("ktwin.command")


async def resolve_target(command: TwinEvent, ctx: Context) -> TwinEvent:
    """``command`` with its executing instance resolved (see the module's documentation)."""
    interface, source = command.interface, command.instance
    if await ctx.graph.twin(interface, source) is not None:
        return command
    sender = await ctx.graph.instance(source)
    if sender is None or not sender.interface or sender.interface == interface:
        return command
    targets = sorted({r.instance for r in sender.relationships if r.interface == interface})
    what = (
        f"command {command.id} ({command.event_type}): its source {source} is a twin of "
        f"{sender.interface}, not of {interface}; taken as the sender (the original Python "
        f"convention), it"
    )
    if not targets:
        raise InvalidEvent(f"{what} has no relationship to a twin of {interface}")
    if len(targets) > 1:
        raise InvalidEvent(
            f"{what} is related to several twins of {interface} ({', '.join(targets)}), so the "
            "target is ambiguous"
        )
    log.debug("command in the sender convention: %s -> %s", source, targets[0])
    return command.sent_to(targets[0])
