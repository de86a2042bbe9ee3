"""The event grammar: unit checks, and the same names as the Rust side (`ktwin events`)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from ktwin import EventKind, EventType, GrammarError, Topic, TopicKind, validate_name

NAMES = [
    "city-pole",
    "ngsi-ld-city-airqualityobserved",
    "pole_01:x",
    "UpdateAirQualityIndex",
    "straße",
    "a" * 253,
    "a" * 254,
    "é" * 127,
    "",
    "a.b",
    "a/b",
    "a#",
    "a+b",
    "a*",
    "a b",
    "a\n",
    "a\u00a0b",
    "tab\tname",
]

TYPES = [
    "ktwin.real.city-pole",
    "ktwin.virtual.city-pole",
    "ktwin.store.city-pole",
    "ktwin.command.city-pole.DoIt",
    "ktwin.command.city-pole.updateAirQualityIndex",
    "",
    "ktwin",
    "ktwin.real",
    "ktwin.real.",
    "ktwin.real.a.b",
    "ktwin.command.a",
    "ktwin.command.a.b.c",
    "ktwin.other.a",
    "other.real.a",
    "ktwin.event-store",
    "ktwin.store.a b",
    "ktwin.REAL.a",
]


def ktwin_events(binary: str, *args: str) -> dict[str, Any]:
    run = subprocess.run(
        [binary, "events", "--format", "json", *args], capture_output=True, text=True, timeout=30
    )
    assert run.returncode in (0, 1), run.stderr
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def python_valid(what: str, name: str) -> bool:
    try:
        validate_name(what, name)
        return True
    except GrammarError:
        return False


def test_formats_the_original_types() -> None:
    assert str(EventType.real("city-pole")) == "ktwin.real.city-pole"
    assert str(EventType.virtual("city-pole")) == "ktwin.virtual.city-pole"
    assert str(EventType.store("city-pole")) == "ktwin.store.city-pole"
    command = EventType.command("city-pole", "UpdateAirQualityIndex")
    assert str(command) == "ktwin.command.city-pole.updateairqualityindex"
    assert EventType.parse(str(command)) == command
    assert EventKind.REAL.type_prefix == "ktwin.real."


def test_rejects_malformed_types_and_names_with_the_value_named() -> None:
    for bad in ["ktwin.real", "ktwin.command.a", "ktwin.real.a.b", "ktwin.other.a"]:
        with pytest.raises(GrammarError, match="invalid event type"):
            EventType.parse(bad)
    with pytest.raises(GrammarError, match=r'invalid interface "a\.b"'):
        EventType.real("a.b")
    with pytest.raises(GrammarError):
        EventType(EventKind.COMMAND, "a")
    with pytest.raises(GrammarError):
        EventType(EventKind.REAL, "a", "b")


def test_topics() -> None:
    topic = Topic.parse_mqtt("ktwin/real/ngsi-ld-city-parkingspot/spot-1")
    assert topic.routing_key == "ktwin.real.ngsi-ld-city-parkingspot.spot-1"
    assert Topic.parse_routing_key(topic.routing_key) == topic
    assert str(topic.event_type) == "ktwin.real.ngsi-ld-city-parkingspot"
    assert TopicKind.REAL.mqtt_filter == "ktwin/real/#"
    assert TopicKind.VIRTUAL.routing_key_pattern("city-pole") == "ktwin.virtual.city-pole.#"
    for bad in ["ktwin/real/iface", "ktwin/store/i/x", "ktwin/real/i/x/y", "ktwin/real//x"]:
        with pytest.raises(GrammarError):
            Topic.parse_mqtt(bad)


def test_names_agree_with_ktwin_events(ktwin_bin: str) -> None:
    for name in NAMES:
        for what in ("interface", "instance", "command"):
            report = ktwin_events(ktwin_bin, f"--{what}", name)
            rust_valid = report["names"][0]["valid"]
            assert python_valid(what, name) == rust_valid, (what, name, report["names"])


def test_types_and_topics_agree_with_ktwin_events(ktwin_bin: str) -> None:
    for interface, instance, command in [
        ("city-pole", "city-pole-nb001-p00007", "updateAirQualityIndex"),
        ("ngsi-ld-city-device", "ngsi-ld-city-device-aqo-nb001-p00001", "Reset_Now"),
        ("straße", "instanz", "ÄNDERN"),
    ]:
        report = ktwin_events(
            ktwin_bin, "--interface", interface, "--instance", instance, "--command", command
        )
        assert report["typePrefix"] == "ktwin"
        assert report["specVersion"] == "1.0"
        assert report["contentType"] == "application/json"
        assert [k["kind"] for k in report["kinds"]] == [k.value for k in EventKind]
        assert [k["typePrefix"] for k in report["kinds"]] == [k.type_prefix for k in EventKind]
        assert report["types"] == {
            "real": str(EventType.real(interface)),
            "virtual": str(EventType.virtual(interface)),
            "store": str(EventType.store(interface)),
            "command": str(EventType.command(interface, command)),
        }
        for kind in TopicKind:
            topic = Topic(kind, interface, instance)
            assert report["topics"][kind.value] == {
                "mqtt": topic.mqtt_topic,
                "routingKey": topic.routing_key,
                "eventType": str(topic.event_type),
                "mqttFilter": kind.mqtt_filter,
                "routingKeyPattern": kind.routing_key_pattern(interface),
            }


def test_parsing_agrees_with_ktwin_events(ktwin_bin: str) -> None:
    args = [arg for ty in TYPES for arg in ("--parse", ty)]
    report = ktwin_events(ktwin_bin, *args)
    assert [p["input"] for p in report["parsed"]] == TYPES
    for parsed in report["parsed"]:
        try:
            ours: EventType | None = EventType.parse(parsed["input"])
        except GrammarError:
            ours = None
        assert (ours is not None) == parsed["valid"], parsed
        if ours is not None:
            assert str(ours) == parsed["canonical"]
            assert ours.kind.value == parsed["kind"]
            assert ours.interface == parsed["interface"]
            assert ours.command_name == parsed["command"]
