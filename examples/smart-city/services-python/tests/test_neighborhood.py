"""The neighborhood service's logic, as the Rust service's tests check it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
import pytest

from ktwin import Context, InvalidEvent, MemoryStates, StaticGraph, TwinEvent, store_event
from cloudevents.core.v1.event import CloudEvent

from smart_city.neighborhood import (
    NEIGHBORHOOD,
    NeighborhoodState,
    record,
    service,
)

T0 = dt.datetime(2024, 5, 20, 10, 0, tzinfo=dt.timezone.utc)


def at(minute: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


def test_worst_level_of_the_last_hour() -> None:
    steps = [
        (0, "MODERATE", "MODERATE"),
        (10, "GOOD", "MODERATE"),  # MODERATE seen 10 min ago
        (50, "UNHEALTHY_FOR_SENSITIVE_GROUPS", "UNHEALTHY_FOR_SENSITIVE_GROUPS"),
        (65, "GOOD", "UNHEALTHY_FOR_SENSITIVE_GROUPS"),  # MODERATE expired, USG 15 min ago
        (115, "GOOD", "GOOD"),  # USG 65 min ago expired
    ]
    state = None
    for minute, reported, expected in steps:
        state = record(state, reported, at(minute))
        assert state.aqi_level == expected, minute
    assert state is not None and state.date_observed == at(115)


def test_starts_from_the_state_the_rust_service_stored() -> None:
    stored = MemoryStates()
    # As the Rust service writes it: chrono's nanosecond times.
    stored.put(
        store_event(
            NEIGHBORHOOD,
            "s4city-city-neighborhood-nb001",
            {
                "aqiLevel": "UNHEALTHY",
                "dateObserved": "2024-05-20T09:30:00.123456789Z",
                "aqiLevelLastSeen": {"UNHEALTHY": "2024-05-20T09:30:00.123456789Z"},
            },
        )
    )
    ctx = Context(StaticGraph(), stored, clock=lambda: T0)
    event = CloudEvent(
        {
            "id": "c-1",
            "type": "ktwin.command.s4city-city-neighborhood.updateairqualityindex",
            "source": "s4city-city-neighborhood-nb001",
        },
        {"aqiLevel": "MODERATE"},
    )
    out = anyio.run(service.dispatch, event, ctx)
    assert len(out) == 1
    assert out[0].get_type() == "ktwin.store.s4city-city-neighborhood"
    assert out[0].get_source() == "s4city-city-neighborhood-nb001"
    data = out[0].get_data()
    assert isinstance(data, dict)
    assert data["aqiLevel"] == "UNHEALTHY"
    assert data["dateObserved"] == "2024-05-20T09:30:00.123456Z"
    assert data["aqiLevelLastSeen"] == {
        "MODERATE": "2024-05-20T10:00:00Z",
        "UNHEALTHY": "2024-05-20T09:30:00.123456Z",
    }
    state = NeighborhoodState.from_fields(TwinEvent(out[0]).fields())
    assert state.last_seen["MODERATE"] == T0


def test_commands_without_a_level_are_invalid() -> None:
    ctx = Context()
    bad: list[dict[str, Any]] = [{}, {"aqiLevel": "PURPLE"}, {"aqiLevel": 3}]
    for data in bad:
        event = CloudEvent(
            {
                "id": "c-2",
                "type": "ktwin.command.s4city-city-neighborhood.updateairqualityindex",
                "source": "s4city-city-neighborhood-nb001",
            },
            data,
        )
        with pytest.raises(InvalidEvent, match="aqiLevel"):
            anyio.run(service.dispatch, event, ctx)
