"""Building and receiving events, ids, case-insensitive data."""

from __future__ import annotations

import datetime as dt
import enum
import time
import uuid
from dataclasses import dataclass

import pytest
from cloudevents.core.v1.event import CloudEvent

from ktwin import (
    Fields,
    HandlerFailed,
    InvalidEvent,
    TwinEvent,
    command_event,
    derived_id,
    real_event,
    store_event,
    virtual_event,
)


def incoming(ty: str, source: str, data: object, event_id: str = "e-1") -> CloudEvent:
    return CloudEvent({"id": event_id, "type": ty, "source": source}, data)  # type: ignore[arg-type]


def test_builders_follow_the_grammar() -> None:
    event = command_event("city-pole", "updateAirQualityIndex", "pole-1", {"a": 1})
    assert event.get_type() == "ktwin.command.city-pole.updateairqualityindex"
    assert event.get_source() == "pole-1"
    assert event.get_datacontenttype() == "application/json"
    assert event.get_specversion() == "1.0"
    assert uuid.UUID(event.get_id()).version == 7
    assert event.get_time() is not None
    assert store_event("x", "y", {}).get_type() == "ktwin.store.x"
    assert virtual_event("x", "y", {}).get_type() == "ktwin.virtual.x"
    assert real_event("x", "y", {}).get_type() == "ktwin.real.x"
    with pytest.raises(HandlerFailed, match="instance"):
        store_event("x", "a.b", {})
    with pytest.raises(HandlerFailed, match="interface"):
        store_event("a/b", "x", {})


def test_ids_of_events_built_later_sort_later() -> None:
    ids = []
    for _ in range(5):
        ids.append(store_event("x", "y", {}).get_id())
        time.sleep(0.002)
    assert ids == sorted(ids) and len(set(ids)) == 5


class Level(enum.Enum):
    GOOD = "GOOD"


@dataclass
class Reading:
    level: Level
    at: dt.datetime


def test_data_becomes_plain_json() -> None:
    at = dt.datetime(2024, 5, 20, 10, 0, tzinfo=dt.timezone.utc)
    event = store_event("x", "y", Reading(Level.GOOD, at))
    assert event.get_data() == {"level": "GOOD", "at": "2024-05-20T10:00:00Z"}
    with pytest.raises(HandlerFailed, match="not JSON"):
        store_event("x", "y", {"bad": object()})
    with pytest.raises(HandlerFailed, match="not JSON"):
        store_event("x", "y", {"nan": float("nan")})
    listed = TwinEvent(incoming("ktwin.real.x", "y", b"[1, 2]"))
    assert listed.data == [1, 2]


def test_derived_ids_match_the_rust_sdk() -> None:
    # The Rust SDK's test pins the same value (crates/sdk/src/handler.rs): ids derived for a
    # redelivered event must be equal in every SDK and every release.
    assert derived_id("pole-1", "e-1", 1) == "9bfb6287-0014-7209-ba9c-2ec19e8e2728"
    assert derived_id("pole-1", "e-1", 0) != derived_id("pole-1", "e-1", 1)
    assert derived_id("pole-1", "e-2", 0) != derived_id("pole-1", "e-1", 0)


def test_received_events_parse_type_source_and_data() -> None:
    event = TwinEvent(
        incoming(
            "ktwin.command.city-pole.UpdateAirQualityIndex",
            "city-pole-nb001-p00007",
            {"AQILevel": "GOOD"},
        )
    )
    assert event.kind.value == "command"
    assert event.interface == "city-pole"
    assert event.command == "updateairqualityindex"
    assert event.instance == "city-pole-nb001-p00007"
    fields = event.fields()
    assert fields["aqiLevel"] == "GOOD" and "aqilevel" in fields
    assert fields.to_dict() == {"AQILevel": "GOOD"}


def test_malformed_events_are_invalid_not_crashes() -> None:
    for ty in ["ktwin.real", "ktwin", "ktwin.command.city-pole", "other.real.x"]:
        with pytest.raises(InvalidEvent):
            TwinEvent(incoming(ty, "x", {}))
    with pytest.raises(InvalidEvent, match="instance"):
        TwinEvent(incoming("ktwin.real.a", "a.b", {}))
    not_json = TwinEvent(incoming("ktwin.real.a", "x", b"not json"))
    with pytest.raises(InvalidEvent, match="e-1"):
        not_json.fields()
    with pytest.raises(InvalidEvent, match="expected a JSON object"):
        TwinEvent(incoming("ktwin.real.a", "x", None)).fields()


def test_fields_prefer_exact_keys_and_read_numbers_leniently() -> None:
    fields = Fields({"windSpeed": 1, "WindSpeed": 2, "level": "12", "flag": True, "x": None})
    assert fields["windSpeed"] == 1 and fields["WindSpeed"] == 2 and fields["WINDSPEED"] == 1
    assert fields.number("Level") == 12.0
    assert fields.number("x") is None and fields.number("missing") is None
    with pytest.raises(InvalidEvent, match="flag"):
        fields.number("flag")
    with pytest.raises(KeyError):
        fields["missing"]
