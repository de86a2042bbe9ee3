"""The device service's logic, as the Rust service's tests check it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
import pytest
from cloudevents.core.v1.event import CloudEvent

from ktwin import Context, InvalidEvent
from smart_city.device import measurement_frequency, service

T0 = dt.datetime(2024, 5, 20, 10, 0, tzinfo=dt.timezone.utc)
INSTANCE = "ngsi-ld-city-device-aqo-nb001-p00001"


def run(data: dict[str, Any]) -> list[tuple[str, str, Any]]:
    event = CloudEvent(
        {"id": "r-1", "type": "ktwin.real.ngsi-ld-city-device", "source": INSTANCE}, data
    )
    out = anyio.run(service.dispatch, event, Context(clock=lambda: T0))
    return [(e.get_type(), e.get_source(), e.get_data()) for e in out]


def test_policy() -> None:
    assert measurement_frequency(90) == 15
    assert measurement_frequency(15) == 15
    assert measurement_frequency(14.9) == 60
    assert measurement_frequency(0) == 60


def test_low_battery_device_is_told_to_slow_down_once() -> None:
    # The paper's battery device in window 5: level 12, still at 15 s.
    out = run({"batteryLevel": 12, "measurementFrequency": 15})
    assert len(out) == 2
    assert out[0][0] == "ktwin.store.ngsi-ld-city-device"
    assert out[0][2]["measurementFrequency"] == 60
    assert out[0][2]["dateObserved"] == "2024-05-20T10:00:00Z"
    assert out[1] == ("ktwin.virtual.ngsi-ld-city-device", INSTANCE, {"measurementFrequency": 60})
    # Already at 60: nothing to tell.
    assert len(run({"batteryLevel": "12", "measurementFrequency": 60})) == 1
    # An empty battery is a level, not an absence.
    assert run({"BatteryLevel": 0})[1][2] == {"measurementFrequency": 60}
    # No battery level: store only, frequency untouched.
    out = run({"measurementFrequency": 90})
    assert (len(out), out[0][2]["measurementFrequency"]) == (1, 90)


def test_unreadable_readings_are_invalid() -> None:
    bad: list[dict[str, Any]] = [
        {"batteryLevel": "low"},
        {"batteryLevel": 12, "measurementFrequency": "15"},
    ]
    for data in bad:
        with pytest.raises(InvalidEvent):
            run(data)
