"""W3C Trace Context in ktwin CloudEvents (the CloudEvents distributed-tracing extension), as
the Rust side writes it (``ktwin_events::trace``): every event carries a ``traceparent`` (trace
id, the span id of the step that produced it, flags) and a ``tracestate`` whose ``ktwin`` entry
lists the span ids of the event's causes, nearest first.

A device message starts a trace; every event a service emits continues the trace of the event
it handled (:func:`continue_trace`): same trace id, a span id of its own, the handled event's
span first among its causes. The event store keeps both attributes, so ``ktwin trace`` can
follow the chain of events one device message caused.

>>> from cloudevents.core.v1.event import CloudEvent
>>> cause = CloudEvent({"id": "e-1", "type": "ktwin.real.x", "source": "y",
...     "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, None)
>>> out = CloudEvent({"id": "e-2", "type": "ktwin.store.x", "source": "y"}, None)
>>> child = continue_trace(cause, out, bytes(range(1, 9)))
>>> child.get_attributes()["traceparent"]
'00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01'
>>> child.get_attributes()["tracestate"]
'ktwin=00f067aa0ba902b7'
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.v1.event import CloudEvent

#: The CloudEvent extension attribute holding the W3C ``traceparent``.
TRACEPARENT = "traceparent"
#: The CloudEvent extension attribute holding the W3C ``tracestate``.
TRACESTATE = "tracestate"
#: The key of ktwin's entry in ``tracestate``.
TRACESTATE_KEY = "ktwin"
#: How many causes an event's ``tracestate`` lists at most.
MAX_CAUSES = 8
_MAX_STATE_ENTRIES = 32
_SAMPLED = 1

_TRACEPARENT = re.compile(
    r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$"
)
_SPAN = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class EventTrace:
    """Where an event stands in its trace."""

    trace_id: str
    """32 lower-case hex digits."""
    span_id: str
    """16 lower-case hex digits: the span that produced the event."""
    flags: int
    """The trace flags (bit 0: sampled)."""
    causes: tuple[str, ...] = ()
    """The span ids of the events that caused it, nearest first."""

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` this trace position is written as."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"


def parse_traceparent(text: str) -> tuple[str, str, int] | None:
    """(trace id, span id, flags) of a valid ``traceparent``; ``None`` otherwise (W3C: version
    ``ff`` and all-zero ids are invalid, version ``00`` has exactly four fields)."""
    match = _TRACEPARENT.match(text)
    if match is None:
        return None
    version, trace_id, span_id, flags, extra = match.groups()
    if version == "ff" or (version == "00" and extra) or set(trace_id) == {"0"}:
        return None
    if set(span_id) == {"0"}:
        return None
    return trace_id, span_id, int(flags, 16)


def _attribute(event: BaseCloudEvent, name: str) -> str | None:
    value = event.get_attributes().get(name)
    return value if isinstance(value, str) else None


def event_trace(event: BaseCloudEvent) -> EventTrace | None:
    """The trace ``event`` carries; ``None`` without a valid ``traceparent``."""
    parent = _attribute(event, TRACEPARENT)
    parsed = parse_traceparent(parent) if parent else None
    if parsed is None:
        return None
    causes: list[str] = []
    for entry in (_attribute(event, TRACESTATE) or "").split(","):
        key, _, value = entry.strip().partition("=")
        if key == TRACESTATE_KEY:
            for span in value.split("-"):
                if not _SPAN.match(span) or len(causes) == MAX_CAUSES:
                    break
                causes.append(span)
            break
    return EventTrace(*parsed, causes=tuple(causes))


def root_trace(event_id: str) -> EventTrace:
    """The root of the trace started at the event with ``event_id``: the id's 16 bytes as
    trace id when it is a UUID, else the first 16 bytes of its SHA-256; the span id is the first
    8 bytes of the id's SHA-256 (as the Rust side derives them)."""
    digest = hashlib.sha256(event_id.encode()).digest()
    try:
        parsed = uuid.UUID(event_id)
    except ValueError:
        parsed = None
    trace_id = parsed.hex if parsed is not None and parsed.int else digest[:16].hex()
    return EventTrace(trace_id, digest[:8].hex(), _SAMPLED)


def adopt_transport_trace(
    event: BaseCloudEvent, traceparent: str | None, tracestate: str | None
) -> BaseCloudEvent:
    """``event`` with the W3C trace context of the HTTP request that carried it when the event
    carries no valid ``traceparent`` of its own: Knative's and eventing-rabbitmq's dispatchers
    send trace context as the plain ``traceparent``/``tracestate`` headers, so without this a
    trace started outside ktwin would break at every twin service. An invalid header is ignored
    (as the Rust SDK's ``adopt_transport_trace`` does)."""
    if event_trace(event) is not None or traceparent is None:
        return event
    parsed = parse_traceparent(traceparent.strip())
    if parsed is None:
        return event
    attributes: dict[str, Any] = dict(event.get_attributes())
    attributes[TRACEPARENT] = EventTrace(*parsed).traceparent
    state = (tracestate or "").strip()
    if state:
        attributes[TRACESTATE] = state
    else:
        attributes.pop(TRACESTATE, None)
    return CloudEvent(attributes, event.get_data())


def continue_trace(cause: BaseCloudEvent, event: BaseCloudEvent, span: bytes) -> CloudEvent:
    """A copy of ``event`` as a child of ``cause`` in ``cause``'s trace with span id ``span``
    (8 bytes): its ``tracestate`` lists ``cause``'s span and causes under ``ktwin``, then
    ``cause``'s other vendors' entries. A ``cause`` without a valid trace is taken as the root
    of one (:func:`root_trace` of its id). In a trace that is not sampled the ``ktwin`` entry
    is left out, as the Rust side does: causes are read only to record a trace."""
    if len(span) != 8:
        raise ValueError(f"span id of {len(span)} bytes: expected 8")
    parent = event_trace(cause)
    others: list[str] = []
    if parent is None:
        parent = root_trace(cause.get_id())
    else:
        for entry in (_attribute(cause, TRACESTATE) or "").split(","):
            key, sep, _ = entry.strip().partition("=")
            if sep and key != TRACESTATE_KEY:
                others.append(entry.strip())
    sampled = bool(parent.flags & _SAMPLED)
    causes = (parent.span_id, *parent.causes[: MAX_CAUSES - 1]) if sampled else ()
    entries = [f"{TRACESTATE_KEY}={'-'.join(causes)}"] if causes else []
    state = ",".join([*entries, *others[: _MAX_STATE_ENTRIES - 1]])
    child = EventTrace(parent.trace_id, span.hex(), parent.flags, causes)
    attributes: dict[str, Any] = dict(event.get_attributes())
    attributes[TRACEPARENT] = child.traceparent
    if state:
        attributes[TRACESTATE] = state
    else:
        attributes.pop(TRACESTATE, None)
    return CloudEvent(attributes, event.get_data())
