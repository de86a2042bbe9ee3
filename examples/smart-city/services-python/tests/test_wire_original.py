"""Wire compatibility with the original KTWIN's Python services: ``tests/wire/original_service.py``
makes exactly their calls (event store, broker, graph; structured and binary CloudEvents; the
Python command convention) as the device service of ``ktwin up``, fed by a device over MQTT, and
this test checks the platform answered each call as the original platform did.

Deliberate differences (``docs/python-sdk.md``, "Wire compatibility") are asserted as such:
error bodies are problem details instead of JSON strings, and a two-segment type
(``ktwin.<iface>``) is refused with 400 instead of being stored under the interface
``ktwin.<iface>``, where nothing could read it back."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from ktwin.testing import LocalPlatform
from mqtt_device import MqttDevice

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT.parent
SERVICE = Path(__file__).resolve().parent / "wire" / "original_service.py"
DEVICE = "ngsi-ld-city-device"
INSTANCE = "ngsi-ld-city-device-aqo-nb001-p00001"
READING = {"batteryLevel": 12, "measurementFrequency": 15, "timestamp": "2024-05-20T10:00:00Z"}
STEPS = [
    "graph", "received", "latest-missing", "virtual", "store-same-id", "latest", "command",
    "store-two-segments",
]


@pytest.fixture(scope="module")
def wire_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wire") / "answers.jsonl"


@pytest.fixture(scope="module")
def platform(ktwin_bin: str, wire_log: Path) -> Iterator[LocalPlatform]:
    original = {
        "command": [sys.executable, str(SERVICE)],
        "env": {"WIRE_LOG": str(wire_log)},
        "persistRealEvent": True,
        "persistVirtualEvent": True,
    }
    # The original KTWIN service sends no token and the test device plays the original
    # simulator, which has no MQTT login; so the platform runs with auth off (loopback only).
    with LocalPlatform(
        EXAMPLE, ktwin_bin, parameters={"neighborhoods": 1}, services={DEVICE: original},
        insecure=True,
    ) as running:
        yield running


def answers(wire_log: Path, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """The recorded answers by step, once every step is there."""
    deadline = time.monotonic() + timeout
    while True:
        lines = wire_log.read_text().splitlines() if wire_log.exists() else []
        by_step = {entry["step"]: entry for entry in map(json.loads, lines)}
        assert "error" not in by_step, by_step["error"]
        if all(step in by_step for step in STEPS):
            return by_step
        assert time.monotonic() < deadline, f"steps recorded: {list(by_step)}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def recorded(platform: LocalPlatform, wire_log: Path) -> Iterator[dict[str, Any]]:
    # The original device: publishes on the slash topic, listens on its virtual topic.
    device = MqttDevice(platform.mqtt_port, f"ktwin/virtual/{DEVICE}/{INSTANCE}", "wire-device")
    device.publish(f"ktwin/real/{DEVICE}/{INSTANCE}", READING)
    by_step = answers(wire_log)
    deadline = time.monotonic() + 10
    while not device.messages() and time.monotonic() < deadline:
        time.sleep(0.1)
    device.stop()
    virtual = [payload for _, payload in device.messages()]
    yield {"steps": by_step, "virtual": virtual, "log": wire_log}


def test_the_graph_is_served_in_the_graph_cache_shape(recorded: dict[str, Any]) -> None:
    graph = recorded["steps"]["graph"]
    assert graph["status"] == 200
    nodes = {n["name"]: n for n in json.loads(graph["body"])["twinInstances"]}
    assert nodes[INSTANCE]["interface"] == DEVICE
    spot = nodes["ngsi-ld-city-offstreetparkingspot-nb001-ofp0001-s0001"]
    assert {"name": "refOffStreetParking", "interface": "ngsi-ld-city-offstreetparking",
            "instance": "ngsi-ld-city-offstreetparking-nb001-ofp0001"} in spot["relationships"]


def test_the_device_reading_arrives_as_a_binary_cloudevent(recorded: dict[str, Any]) -> None:
    received = recorded["steps"]["received"]
    assert received["ce"]["type"] == f"ktwin.real.{DEVICE}"
    assert received["ce"]["source"] == INSTANCE
    assert received["ce"]["specversion"] == "1.0"
    assert received["ce"]["id"] and received["ce"]["time"]
    assert received["content_type"].startswith("application/json")
    assert received["data"] == READING


def test_a_204_answer_is_success_and_nothing_is_redelivered(
    recorded: dict[str, Any], platform: LocalPlatform
) -> None:
    time.sleep(2)  # a redelivery would have come by now
    lines = [json.loads(line) for line in recorded["log"].read_text().splitlines()]
    assert [entry["step"] for entry in lines].count("received") == 1
    assert f"{DEVICE}" in platform.output()


def test_latest_of_an_unknown_instance_is_404(recorded: dict[str, Any]) -> None:
    # The originals only look at the status (the body was the JSON string "Not Found"; here
    # a problem document).
    assert recorded["steps"]["latest-missing"]["status"] == 404


def test_a_structured_virtual_event_is_accepted_and_reaches_the_device(
    recorded: dict[str, Any],
) -> None:
    virtual = recorded["steps"]["virtual"]
    assert virtual["status"] == 202, virtual
    assert [json.loads(p) for p in recorded["virtual"]] == [virtual["sent"]], (
        "the device gets the event's data, bare, on ktwin/virtual/<iface>/<instance>"
    )


def test_reposting_the_received_event_is_accepted(recorded: dict[str, Any]) -> None:
    # Same id, changed data (dateObserved, measurementFrequency). The original answered 202;
    # the store keeps the change as a new version under a derived id (docs/architecture.md).
    assert recorded["steps"]["store-same-id"]["status"] == 202


def test_latest_is_a_binary_cloudevent_the_originals_can_parse(recorded: dict[str, Any]) -> None:
    latest = recorded["steps"]["latest"]
    assert latest["status"] == 200
    headers = latest["headers"]
    for name in ("ce-id", "ce-type", "ce-source", "ce-specversion"):
        assert name in headers, f"cloudevents 1.x from_http needs {name}"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-source"] == INSTANCE
    assert headers["ce-type"].startswith("ktwin.") and headers["ce-type"].endswith(f".{DEVICE}")
    assert headers["content-type"].startswith("application/json")
    event = from_http_event(HTTPMessage(headers, latest["body"].encode()))
    data = event.get_data()
    assert isinstance(data, dict) and data["batteryLevel"] == 12


def test_a_python_convention_command_is_accepted(recorded: dict[str, Any]) -> None:
    assert recorded["steps"]["command"]["status"] == 202


def test_a_python_convention_command_reaches_the_related_twin(
    recorded: dict[str, Any], platform: LocalPlatform
) -> None:
    # source = the sender (the parking spot): the parking service resolves the spot's
    # relationship to an off-street parking, as the original Python receivers did, instead of
    # updating a parking named after the spot.
    parking = "ngsi-ld-city-offstreetparking-nb001-ofp0001"
    deadline = time.monotonic() + 5
    while (state := platform.latest("ngsi-ld-city-offstreetparking", parking)) is None:
        assert time.monotonic() < deadline, "the related parking was never updated"
        time.sleep(0.2)
    assert state["occupiedSpotNumber"] == 1
    spot = "ngsi-ld-city-offstreetparkingspot-nb001-ofp0001-s0001"
    assert platform.latest("ngsi-ld-city-offstreetparking", spot) is None, "misfiled"


def test_a_two_segment_type_is_refused_not_misfiled(recorded: dict[str, Any]) -> None:
    answer = recorded["steps"]["store-two-segments"]
    assert answer["status"] == 400, answer
    assert "ktwin.ngsi-ld-city-offstreetparking" in answer["body"]
    assert answer["headers"]["content-type"].startswith("application/problem+json")


def test_nothing_is_lost_on_the_way(recorded: dict[str, Any], platform: LocalPlatform) -> None:
    # persistRealEvent / persistVirtualEvent: the platform stored the reading and the virtual
    # event it routed to the device.
    history = platform.paged(f"/api/v1/twin-events/{DEVICE}/{INSTANCE}")
    types = sorted({e["type"] for e in history})
    assert f"ktwin.real.{DEVICE}" in types and f"ktwin.virtual.{DEVICE}" in types, types
    assert os.path.exists(recorded["log"])
