"""The smart-city scenario end to end with the Python neighborhood and device services in place of
the Rust ones: ``ktwin up`` on this project (one neighborhood; those two services run as their
``command``, Python child processes; the others in-process), the simulated devices at 10× the
paper's load model over MQTT, then the checks of the Rust end-to-end test
(``crates/runtime/tests/smart_city_e2e.rs``) over the HTTP API: every device message stored,
the neighborhood's AQI the worst level the air-quality service rated, parkings' occupancy
matching their spots, virtual events delivered to devices; and every battery reading stored by
the device service with its measurement frequency."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cloudevents.core.v1.event import CloudEvent

from ktwin import to_binary
from ktwin.testing import LocalPlatform
from mqtt_device import MqttDevice

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT.parent
NEIGHBORHOOD = "s4city-city-neighborhood"
AIR_QUALITY = "ngsi-ld-city-airqualityobserved"
DEVICE = "ngsi-ld-city-device"
LEVELS = ["GOOD", "MODERATE", "UNHEALTHY_FOR_SENSITIVE_GROUPS", "UNHEALTHY", "VERY_UNHEALTHY",
          "HAZARDOUS"]
#: The interface each device type of `ktwin sim`'s report publishes to.
DEVICE_INTERFACES = {
    "air-quality": AIR_QUALITY,
    "weather": "ngsi-ld-city-weatherobserved",
    "noise": "ngsi-ld-city-noiselevelobserved",
    "crowd-flow": "ngsi-ld-city-crowdflowobserved",
    "traffic-flow": "ngsi-ld-city-trafficflowobserved",
    "parking-spot": "ngsi-ld-city-parkingspot",
    "ev-charging": "ngsi-ld-city-evchargingstation",
    "streetlight": "ngsi-ld-city-streetlight",
    "battery": DEVICE,
}
SIM_SECONDS = 30


@pytest.fixture(scope="module")
def platform(ktwin_bin: str) -> Iterator[LocalPlatform]:
    # The service's command is `python3 -m …`: the interpreter running the tests (which has
    # the SDK) comes first on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # A listener subscribed to every device's virtual topic plays a broker administrator, which
    # only an open broker allows: the platform runs with auth off (loopback only).
    with LocalPlatform(
        PROJECT, ktwin_bin, copy_root=EXAMPLE, parameters={"neighborhoods": 1},
        env={"PATH": path}, insecure=True,
    ) as running:
        yield running


def simulate(platform: LocalPlatform, ktwin_bin: str, world: Path) -> dict[str, Any]:
    """Runs the devices for SIM_SECONDS at 10×, QoS 1 so "sent" means "accepted"; meanwhile
    posts virtual events to the broker ingress as a twin service would, so that these reach
    their devices whatever the batteries' levels. Returns the simulator's report."""
    sim = subprocess.Popen(
        [ktwin_bin, "sim", "--world", str(world), "--port", str(platform.mqtt_port),
         "--qos", "1", "--speedup", "10", "--duration", str(SIM_SECONDS),
         "--connections", "4", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(5)
    graph = json.loads(world.read_text())
    targets = [n["name"] for n in graph["twinInstances"] if n["interface"] == AIR_QUALITY][:20]
    for instance in targets:
        event = CloudEvent(
            {"id": f"virtual-{instance}", "type": f"ktwin.virtual.{AIR_QUALITY}",
             "source": instance},
            {"measurementFrequency": 10},
        )
        message = to_binary(event)
        response = httpx.post(platform.broker_url, headers=message.headers, content=message.body)
        assert response.status_code == 202, response.text
    out, err = sim.communicate(timeout=SIM_SECONDS + 120)
    assert sim.returncode == 0, err
    report: dict[str, Any] = json.loads(out)
    report["virtual_targets"] = len(targets)
    return report


def handled(platform: LocalPlatform) -> float:
    """Events the platform's twin services have handled so far (``ktwin_service_events_total``
    over every service and outcome): commands are not stored, so the store alone cannot say
    whether a chain of commands has finished."""
    metrics = httpx.get(f"{platform.url}/metrics", headers=platform.headers(), timeout=30)
    metrics.raise_for_status()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.text.splitlines()
        if line.startswith("ktwin_service_events_total")
    )


def wait_until_settled(platform: LocalPlatform, expected_real: dict[str, int]) -> list[Any]:
    """Waits until every persisted device message is stored and then until nothing new is
    stored and no service handles anything for 3 s (the services' chains of events and
    commands have finished); returns every stored event."""
    deadline = time.monotonic() + 120
    while True:
        events = platform.events()
        stored = Counter(
            e["type"].removeprefix("ktwin.real.") for e in events
            if e["type"].startswith("ktwin.real.")
        )
        if all(stored[i] >= n for i, n in expected_real.items()):
            break
        assert time.monotonic() < deadline, f"stored {dict(stored)}, expected {expected_real}"
        time.sleep(1)
    progress = (len(events), handled(platform))
    while True:
        time.sleep(3)
        later = platform.events()
        now = (len(later), handled(platform))
        if now == progress:
            return later
        assert time.monotonic() < deadline, "events kept arriving"
        progress = now


def test_smart_city_with_the_python_neighborhood(
    platform: LocalPlatform, ktwin_bin: str, tmp_path: Path
) -> None:
    for python_service in (NEIGHBORHOOD, DEVICE):
        assert re.search(rf"service\s+{python_service} \(process", platform.output()), (
            f"{python_service} runs as its Python command:\n" + platform.output()
        )
    world = tmp_path / "graph.json"
    world.write_text(httpx.get(platform.graph_url).text)
    # Stays subscribed to every device's virtual topic until the end, also after the simulated
    # devices disconnected (a reading handled late still sends its virtual event).
    listener = MqttDevice(platform.mqtt_port, "ktwin/virtual/#", "e2e-virtual-listener")
    report = simulate(platform, ktwin_bin, world)
    assert report["sent"] > 500, f"half a minute at 10× sends hundreds of messages: {report}"
    assert report["errors"] == 0, report
    assert report["acknowledged"] == report["sent"], "QoS 1: every message acknowledged"
    assert report["per_type"].get("battery", {}).get("sent", 0) > 0, "batteries reported"

    # sent == stored, per device type whose interface persists its real events.
    services = yaml.safe_load((PROJECT / "ktwin.yaml").read_text())["services"]
    persisted = {i for i, s in services.items() if s.get("persistRealEvent")}
    expected = {
        DEVICE_INTERFACES[name]: figures["sent"]
        for name, figures in report["per_type"].items()
        if DEVICE_INTERFACES[name] in persisted and figures["sent"] > 0
    }
    assert len(expected) >= 4, report
    events = wait_until_settled(platform, expected)
    stored_real = Counter(
        e["type"].removeprefix("ktwin.real.") for e in events if e["type"].startswith("ktwin.real.")
    )
    for interface, sent in expected.items():
        assert stored_real[interface] == sent, f"{interface}: sent == stored"

    # The neighborhood's AQI: the worst level the air-quality service rated (all within the
    # hour), kept by the Python service.
    rated = [
        e["eventData"]["aqiLevel"] for e in events
        if e["type"] == f"ktwin.store.{AIR_QUALITY}" and "aqiLevel" in e["eventData"]
    ]
    assert rated, "air-quality observations were rated"
    worst = max(rated, key=LEVELS.index)
    neighborhoods = platform.twins(NEIGHBORHOOD)
    assert len(neighborhoods) == 1
    assert neighborhoods[0]["state"]["aqiLevel"] == worst, "neighborhood AQI"
    assert neighborhoods[0]["state"]["aqiLevelLastSeen"].keys() == set(rated)

    # Every battery reading stored by the device service, with the frequency it decided.
    stored_by_device_service = [e for e in events if e["type"] == f"ktwin.store.{DEVICE}"]
    assert len(stored_by_device_service) == report["per_type"]["battery"]["sent"]
    for event in stored_by_device_service:
        assert event["eventData"]["measurementFrequency"] in (15, 60), event
        assert "dateObserved" in event["eventData"], event

    # Parking occupancy: the spots whose last status is "occupied".
    graph = {n["name"]: n for n in json.loads(world.read_text())["twinInstances"]}
    spots = platform.twins("ngsi-ld-city-parkingspot")
    assert spots, "parking spots reported"
    occupied: Counter[str] = Counter()
    for spot in spots:
        parking = next(
            r["instance"] for r in graph[spot["instanceId"]]["relationships"]
            if r["name"] == "refOffStreetParking"
        )
        occupied[parking] += spot["state"].get("status") == "occupied"
    parkings = {p["instanceId"]: p["state"] for p in platform.twins("ngsi-ld-city-offstreetparking")}
    for parking, count in occupied.items():
        state = parkings.get(parking, {})
        assert state.get("occupiedSpotNumber", 0) == count, f"{parking}: occupancy"

    # Virtual events reached the devices, and the platform took every device message.
    assert report["received"] >= report["virtual_targets"], report
    time.sleep(1)
    listener.stop()
    output = platform.stop()
    stopped = re.search(
        r"stopped: (\d+) device messages in, \d+ events published, (\d+) sent to devices, "
        r"(\d+) rejected",
        output,
    )
    assert stopped, output[-2000:]
    ingested, to_devices, rejected = map(int, stopped.groups())
    assert (ingested, rejected) == (report["sent"], 0), "every device message became an event"
    assert to_devices == len(listener.messages()), "devices received every virtual event"
    assert to_devices >= report["received"] >= report["virtual_targets"]
