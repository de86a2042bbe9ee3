"""Traces: every event a service emits continues the W3C trace of the event it handled, as the
Rust SDK writes it."""

from __future__ import annotations

import uuid

import pytest
from cloudevents.core.v1.event import CloudEvent

from ktwin import Context, TwinEvent, TwinService, command_event, event_trace, store_event
from ktwin.events import derived_digest
from ktwin.trace import (
    MAX_CAUSES,
    adopt_transport_trace,
    continue_trace,
    parse_traceparent,
    root_trace,
)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def service() -> TwinService:
    twins = TwinService("trace-test")

    @twins.on("ktwin.real.city-pole")
    async def reading(event: TwinEvent, ctx: Context) -> list[CloudEvent]:
        return [
            store_event(event.interface, event.instance, event.fields()),
            command_event("s4city-city-neighborhood", "updateAirQualityIndex", "nb-1", {"a": 1}),
        ]

    return twins


def incoming(**extensions: str) -> CloudEvent:
    attributes = {"id": "e-1", "type": "ktwin.real.city-pole", "source": "pole-1", **extensions}
    return CloudEvent(attributes, {"aqi": 3})


def test_a_trace_not_sampled_carries_its_parent_and_other_vendors_but_no_causes() -> None:
    unsampled = TRACEPARENT[:-2] + "00"
    cause = incoming(traceparent=unsampled)
    out = CloudEvent({"id": "e-2", "type": "ktwin.store.x", "source": "y"}, None)
    child = continue_trace(cause, out, bytes([1] * 8))
    assert child.get_attributes()["traceparent"] == (
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0101010101010101-00"
    )
    assert "tracestate" not in child.get_attributes()
    cause = incoming(traceparent=unsampled, tracestate="ktwin=00f067aa0ba902b7,congo=t61rcWkgMzE")
    child = continue_trace(cause, out, bytes([2] * 8))
    assert child.get_attributes()["tracestate"] == "congo=t61rcWkgMzE"
    trace = event_trace(child)
    assert trace is not None and trace.flags == 0 and trace.causes == ()


@pytest.mark.anyio
async def test_an_incoming_traceparent_is_propagated_to_every_emitted_event() -> None:
    received = incoming(traceparent=TRACEPARENT, tracestate="congo=t61rcWkgMzE")
    emitted = await service().dispatch(received, Context())
    assert len(emitted) == 2
    for index, out in enumerate(emitted):
        trace = event_trace(out)
        assert trace is not None
        assert trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
        # A new span of its own, a child of the received event's span.
        assert trace.span_id == derived_digest("pole-1", "e-1", index)[16:24].hex()
        assert trace.causes == ("00f067aa0ba902b7",)
        assert trace.flags == 1
        # Other vendors' entries are kept behind ktwin's.
        assert out.get_attributes()["tracestate"] == "ktwin=00f067aa0ba902b7,congo=t61rcWkgMzE"
    # A redelivery takes the same places in the trace.
    again = await service().dispatch(received, Context())
    assert [event_trace(e) for e in again] == [event_trace(e) for e in emitted]


@pytest.mark.anyio
async def test_an_untraced_event_becomes_the_root_of_a_trace() -> None:
    emitted = await service().dispatch(incoming(), Context())
    trace = event_trace(emitted[0])
    assert trace is not None
    root = root_trace("e-1")
    assert (trace.trace_id, trace.causes) == (root.trace_id, (root.span_id,))
    # A device event's id (a UUID) is its trace's id.
    device_id = "0190f5a2-7b1c-7d3e-8f00-0123456789ab"
    assert root_trace(device_id).trace_id == uuid.UUID(device_id).hex


def test_causes_are_listed_nearest_first_and_bounded() -> None:
    event = incoming(traceparent=TRACEPARENT)
    for n in range(1, 11):
        out = CloudEvent({"id": f"e{n}", "type": "ktwin.store.x", "source": "y"}, None)
        event = continue_trace(event, out, bytes([n]) * 8)
    trace = event_trace(event)
    assert trace is not None
    assert len(trace.causes) == MAX_CAUSES
    assert trace.causes[0] == "09" * 8
    assert trace.span_id == "0a" * 8


@pytest.mark.parametrize(
    "text",
    [
        "",
        TRACEPARENT + "-more",
        "ff" + TRACEPARENT[2:],
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        TRACEPARENT.upper(),
    ],
)
def test_invalid_traceparents_are_refused(text: str) -> None:
    assert parse_traceparent(text) is None


def test_the_transport_trace_is_taken_only_when_the_event_has_none() -> None:
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    adopted = adopt_transport_trace(incoming(), header, "rojo=00f067aa0ba902b7")
    assert adopted.get_attributes()["traceparent"] == header
    assert adopted.get_attributes()["tracestate"] == "rojo=00f067aa0ba902b7"
    # The event's own trace wins; an invalid header is no trace; an invalid attribute gives way.
    own = incoming(traceparent=TRACEPARENT)
    assert adopt_transport_trace(own, header, None).get_attributes()["traceparent"] == TRACEPARENT
    assert event_trace(adopt_transport_trace(incoming(), "00-zz-b7ad6b7169203331-01", None)) is None
    broken = incoming(traceparent="garbage", tracestate="ktwin=garbage")
    fixed = adopt_transport_trace(broken, header, None).get_attributes()
    assert fixed["traceparent"] == header and "tracestate" not in fixed
