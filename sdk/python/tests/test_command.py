"""Which instance executes a received command: the target named by ``source`` (the Go
convention), or, when ``source`` is a twin of another interface, the sender's related twin (the
original Python services' convention), as the Rust SDK resolves it."""

from __future__ import annotations

from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from ktwin import Context, InvalidEvent, StaticGraph, TwinEvent, TwinService, store_event
from ktwin.events import derived_id

pytestmark = pytest.mark.anyio

PARKING = "ngsi-ld-city-offstreetparking"
SPOT = "ngsi-ld-city-parkingspot"


def relation(name: str, instance: str, interface: str = PARKING) -> dict[str, str]:
    return {"name": name, "interface": interface, "instance": instance}


GRAPH = StaticGraph({"twinInstances": [
    {"name": "p1", "interface": PARKING},
    {"name": "p2", "interface": PARKING},
    {"name": "s1", "interface": SPOT, "relationships": [
        relation("refOffStreetParking", "p1"), relation("refDevice", "d1", "ngsi-ld-city-device"),
    ]},
    {"name": "s2", "interface": SPOT, "relationships": [
        relation("refOffStreetParking", "p1"), relation("refOther", "p2"),
    ]},
    {"name": "s3", "interface": SPOT},
    {"name": "s4", "interface": SPOT, "relationships": [
        relation("refOffStreetParking", "p2"), relation("refAgain", "p2"),
    ]},
]})


def parking(seen: list[tuple[str, str | None]]) -> TwinService:
    service = TwinService("parking")

    @service.on(f"ktwin.command.{PARKING}.updateVehicleCount")
    async def count(event: TwinEvent, ctx: Context) -> CloudEvent:
        seen.append((event.instance, event.sender))
        return store_event(event.interface, event.instance, {"occupiedSpotNumber": 1})

    return service


async def run(source: str) -> tuple[list[CloudEvent], list[tuple[str, str | None]]]:
    seen: list[tuple[str, str | None]] = []
    command = CloudEvent(
        {"id": "c-1", "type": f"ktwin.command.{PARKING}.updateVehicleCount", "source": source},
        {"vehicleEntranceCount": 1},
    )
    emitted = await parking(seen).dispatch(command, Context(GRAPH))
    return emitted, seen


def attribute(event: CloudEvent, name: str) -> Any:
    return event.get_attributes()[name]


async def test_a_source_of_the_command_interface_is_the_target() -> None:
    emitted, seen = await run("p1")
    assert seen == [("p1", None)]
    assert attribute(emitted[0], "source") == "p1"


async def test_a_sender_source_reaches_its_related_twin() -> None:
    emitted, seen = await run("s1")
    assert seen == [("p1", "s1")]
    assert attribute(emitted[0], "source") == "p1"
    assert attribute(emitted[0], "type") == f"ktwin.store.{PARKING}"
    # Ids derive from the received event as sent (its source), as in the Rust SDK.
    assert attribute(emitted[0], "id") == derived_id("s1", "c-1", 0)
    # Two relationships to the same twin are one target.
    _, seen = await run("s4")
    assert seen == [("p2", "s4")]


async def test_a_sender_without_a_relationship_is_invalid_not_misfiled() -> None:
    with pytest.raises(InvalidEvent) as raised:
        await run("s3")
    text = str(raised.value)
    for part in ["c-1", "s3", SPOT, "no relationship", PARKING]:
        assert part in text, text


async def test_a_sender_related_to_several_twins_is_ambiguous() -> None:
    with pytest.raises(InvalidEvent, match=r"ambiguous") as raised:
        await run("s2")
    assert "p1, p2" in str(raised.value)


async def test_a_source_the_graph_does_not_know_is_the_target() -> None:
    emitted, seen = await run("p9")
    assert seen == [("p9", None)]
    assert attribute(emitted[0], "source") == "p9"
