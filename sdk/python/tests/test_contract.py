"""The Knative contract over real HTTP: a service served by uvicorn, its lookups and emitted
events going to a running platform (``ktwin up``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.v1.event import CloudEvent

from ktwin import (
    BrokerClient,
    Context,
    HttpEventStore,
    HttpGraph,
    InvalidEvent,
    RetryPolicy,
    TwinApp,
    TwinEvent,
    TwinService,
    derived_id,
    store_event,
    to_binary,
    virtual_event,
)
from ktwin.testing import LocalPlatform, ServedApp, free_port, wait_http

DEVICE = "ngsi-ld-city-device"
DEVICE_ID = "ngsi-ld-city-device-aqo-nb001-p00001"
POLE_ID = "city-pole-nb001-p00001"
NEIGHBORHOOD_ID = "s4city-city-neighborhood-nb001"


def make_service() -> TwinService:
    service = TwinService("contract-test")

    @service.on(f"ktwin.real.{DEVICE}")
    async def device(event: TwinEvent, ctx: Context) -> list[CloudEvent]:
        previous = await ctx.latest(DEVICE, event.instance)
        seen = 1 + int(previous.fields.get("seen", 0)) if previous else 1
        stored = store_event(DEVICE, event.instance, {**event.fields(), "seen": seen})
        told = virtual_event(DEVICE, event.instance, {"measurementFrequency": 60})
        return [stored, told]

    @service.on("ktwin.command.city-pole.updateAirQualityIndex")
    def pole(event: TwinEvent, ctx: Context) -> CloudEvent:
        # A sync handler: it runs in a worker thread and uses the blocking lookups.
        assert ctx.sync.twin("city-pole", event.instance) is not None
        return ctx.sync.command_to_related(
            "city-pole", event.instance, "refNeighborhood", "updateAirQualityIndex",
            event.fields(),
        )

    @service.on("ktwin.real.ngsi-ld-city-airqualityobserved")
    async def broken(event: TwinEvent, ctx: Context) -> None:
        if event.fields().get("crash"):
            raise ZeroDivisionError("a bug")
        await ctx.relationship(event.interface, event.instance, "noSuchRelationship")

    return service


@pytest.fixture(scope="module")
def served(platform: LocalPlatform) -> Iterator[ServedApp]:
    token = platform.token
    ctx = Context(
        HttpGraph(platform.graph_url, token=token), HttpEventStore(platform.url, token=token)
    )
    app = TwinApp(make_service(), ctx, BrokerClient(platform.broker_url, token=token))
    with ServedApp(app) as running:
        yield running


def post(url: str, ty: str, source: str, data: Any, event_id: str = "e-1") -> httpx.Response:
    event = CloudEvent({"id": event_id, "type": ty, "source": source}, data)
    message = to_binary(event)
    return httpx.post(url, headers=message.headers, content=message.body, timeout=30)


def latest(platform: LocalPlatform, interface: str, instance: str) -> httpx.Response:
    return httpx.get(
        f"{platform.url}/api/v1/twin-events/{interface}/{instance}/latest",
        headers=platform.headers(),
    )


def test_emitted_events_go_to_the_reply_and_the_broker(
    platform: LocalPlatform, served: ServedApp
) -> None:
    response = post(served.url, f"ktwin.real.{DEVICE}", DEVICE_ID, {"BatteryLevel": 12})
    assert response.status_code == 200, response.text
    # The last emitted event is the reply, in binary mode, with an id derived from the input.
    assert response.headers["ce-type"] == f"ktwin.virtual.{DEVICE}"
    assert response.headers["ce-source"] == DEVICE_ID
    assert response.headers["ce-id"] == derived_id(DEVICE_ID, "e-1", 1)
    assert json.loads(response.content) == {"measurementFrequency": 60}
    # The other one was posted to the broker ingress, which routed it to the event store.
    deadline = time.monotonic() + 10
    while (stored := latest(platform, DEVICE, DEVICE_ID)).status_code == 404:
        assert time.monotonic() < deadline, "the store event never reached the store"
        time.sleep(0.1)
    assert stored.headers["ce-id"] == derived_id(DEVICE_ID, "e-1", 0)
    assert stored.json()["BatteryLevel"] == 12
    assert stored.json()["seen"] == 1
    # The service reads the state it stored (through the store's HTTP API) on the next event.
    again = post(served.url, f"ktwin.real.{DEVICE}", DEVICE_ID, {"BatteryLevel": 11}, "e-2")
    assert again.status_code == 200
    deadline = time.monotonic() + 10
    while latest(platform, DEVICE, DEVICE_ID).json()["seen"] != 2:
        assert time.monotonic() < deadline, "the second store event never arrived"
        time.sleep(0.1)


def test_an_incoming_traceparent_reaches_the_store_with_the_emitted_events(
    platform: LocalPlatform, served: ServedApp
) -> None:
    trace_id = uuid.uuid4().hex
    event = CloudEvent(
        {
            "id": "traced-1",
            "type": f"ktwin.real.{DEVICE}",
            "source": "dev-traced",
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
        },
        {"BatteryLevel": 40},
    )
    message = to_binary(event)
    response = httpx.post(served.url, headers=message.headers, content=message.body, timeout=30)
    assert response.status_code == 200, response.text
    # The reply (the virtual event) continues the trace: same trace id, a span of its own.
    _, replied_trace, replied_span, _ = response.headers["ce-traceparent"].split("-")
    assert (replied_trace, response.headers["ce-tracestate"]) == (trace_id, "ktwin=00f067aa0ba902b7")
    # The store event, posted to the broker ingress, reached the store with its trace.
    deadline = time.monotonic() + 10
    url = f"{platform.url}/api/v1/traces/{trace_id}"
    while not (stored := httpx.get(url, headers=platform.headers()).json()):
        assert time.monotonic() < deadline, "the traced store event never reached the store"
        time.sleep(0.1)
    assert [e["id"] for e in stored] == [derived_id("dev-traced", "traced-1", 0)]
    _, stored_trace, stored_span, _ = stored[0]["traceparent"].split("-")
    assert stored_trace == trace_id
    assert stored_span not in (replied_span, "00f067aa0ba902b7")
    assert stored[0]["tracestate"] == "ktwin=00f067aa0ba902b7"


def test_the_knative_traceparent_header_continues_the_trace(served: ServedApp) -> None:
    # Knative and eventing-rabbitmq send trace context as the plain HTTP header; an event
    # without the attribute continues that trace, one with it keeps its own.
    knative = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    message = to_binary(CloudEvent(
        {"id": "knative-1", "type": f"ktwin.real.{DEVICE}", "source": "dev-knative"}, {},
    ))
    headers = {**message.headers, "traceparent": knative, "tracestate": "rojo=00f067aa0ba902b7"}
    response = httpx.post(served.url, headers=headers, content=message.body, timeout=30)
    assert response.status_code == 200, response.text
    _, trace_id, _, _ = response.headers["ce-traceparent"].split("-")
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert response.headers["ce-tracestate"] == "ktwin=00f067aa0ba902b7,rojo=00f067aa0ba902b7"
    own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {**headers, "ce-traceparent": own}
    response = httpx.post(served.url, headers=headers, content=message.body, timeout=30)
    assert response.headers["ce-traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


def test_a_python_convention_command_reaches_the_related_twin(served: ServedApp) -> None:
    # The original Python services sent commands with source = the sender: the air-quality
    # sensor's command to city-pole is executed by the sensor's pole (found through the graph
    # service's instance route), which relays it to its neighborhood.
    sensor = "ngsi-ld-city-airqualityobserved-nb001-p00001"
    response = post(served.url, "ktwin.command.city-pole.updateAirQualityIndex", sensor,
                     {"aqiLevel": "GOOD"}, "python-convention-1")
    assert response.status_code == 200, response.text
    assert response.headers["ce-type"] == (
        "ktwin.command.s4city-city-neighborhood.updateairqualityindex"
    )
    assert response.headers["ce-source"] == NEIGHBORHOOD_ID
    # A sender related to many poles (the neighbourhood and each of its poles): the target is
    # ambiguous, so 400 (dead-lettered), not a command misfiled to the first pole.
    response = post(served.url, "ktwin.command.city-pole.updateAirQualityIndex",
                    NEIGHBORHOOD_ID, {"aqiLevel": "GOOD"}, "python-convention-2")
    assert response.status_code == 400, response.text
    assert "related to several twins of city-pole" in response.text
    assert "the target is ambiguous" in response.text


def test_redelivery_emits_the_same_ids(served: ServedApp) -> None:
    ids = [
        post(served.url, f"ktwin.real.{DEVICE}", "dev-x", {}, "same").headers["ce-id"]
        for _ in range(2)
    ]
    assert ids[0] == ids[1] == derived_id("dev-x", "same", 1)


def test_sync_handlers_use_blocking_lookups(served: ServedApp) -> None:
    response = post(
        served.url,
        "ktwin.command.city-pole.updateairqualityindex",
        POLE_ID,
        {"aqiLevel": "MODERATE"},
    )
    assert response.status_code == 200, response.text
    # Command convention: the source of a command is its target.
    assert response.headers["ce-type"] == (
        "ktwin.command.s4city-city-neighborhood.updateairqualityindex"
    )
    assert response.headers["ce-source"] == NEIGHBORHOOD_ID
    assert response.json() == {"aqiLevel": "MODERATE"}


def test_structured_mode_is_accepted(served: ServedApp) -> None:
    body = {
        "specversion": "1.0",
        "id": "s-1",
        "type": "ktwin.command.city-pole.updateairqualityindex",
        "source": POLE_ID,
        "datacontenttype": "application/json",
        "data": {"aqiLevel": "GOOD"},
    }
    response = httpx.post(
        served.url,
        content=json.dumps(body),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["ce-source"] == NEIGHBORHOOD_ID


def test_bad_events_are_answered_so_that_knative_does_not_retry(served: ServedApp) -> None:
    assert post(served.url, "ktwin.real", "x", {}).status_code == 400
    assert post(served.url, f"ktwin.real.{DEVICE}", "a.b", {}).status_code == 400
    not_ce = httpx.post(served.url, content=b"{}", headers={"content-type": "application/json"})
    assert not_ce.status_code == 400 and "not a CloudEvent" in not_ce.text
    missing = post(
        served.url, "ktwin.real.ngsi-ld-city-airqualityobserved", "no-such-twin", {"x": 1}
    )
    assert missing.status_code == 400 and "not in the twin graph" in missing.text
    no_relationship = post(
        served.url,
        "ktwin.real.ngsi-ld-city-airqualityobserved",
        "ngsi-ld-city-airqualityobserved-nb001-p00001",
        {"x": 1},
    )
    assert no_relationship.status_code == 400
    assert "noSuchRelationship" in no_relationship.text
    too_big = post(served.url, f"ktwin.real.{DEVICE}", "x", {"pad": "x" * 2_000_000})
    assert too_big.status_code == 413
    # An event of a type the service does not subscribe to is acknowledged and ignored.
    other = post(served.url, "ktwin.real.city-pole", POLE_ID, {})
    assert (other.status_code, other.content) == (200, b"")


def test_handler_bugs_are_500_and_redelivered(served: ServedApp) -> None:
    response = post(
        served.url,
        "ktwin.real.ngsi-ld-city-airqualityobserved",
        "ngsi-ld-city-airqualityobserved-nb001-p00001",
        {"crash": True},
    )
    assert response.status_code == 500
    assert "ZeroDivisionError" in response.text


def test_unavailable_dependencies_are_503() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    ctx = Context(HttpGraph(f"{closed}/api/v1/twin-graph"), HttpEventStore(closed))
    broker = BrokerClient(f"{closed}/api/v1/broker", RetryPolicy(attempts=2, first_backoff=0.01))
    with ServedApp(TwinApp(make_service(), ctx, broker)) as served:
        store_down = post(served.url, f"ktwin.real.{DEVICE}", DEVICE_ID, {})
        assert store_down.status_code == 503 and "latest state" in store_down.text
        graph_down = post(served.url, "ktwin.command.city-pole.updateairqualityindex", "p", {})
        assert graph_down.status_code == 503 and "twin graph" in graph_down.text
        metrics = httpx.get(f"{served.url}/metrics").text
        assert 'ktwin_sdk_events_total{outcome="unavailable"} 2.0' in metrics


def test_emitting_without_a_broker_is_an_error_not_a_loss() -> None:
    service = TwinService()

    @service.on(f"ktwin.real.{DEVICE}")
    async def two(event: TwinEvent, ctx: Context) -> list[CloudEvent]:
        return [store_event(DEVICE, event.instance, {}), store_event(DEVICE, event.instance, {})]

    with ServedApp(TwinApp(service, Context(), broker=None)) as served:
        response = post(served.url, f"ktwin.real.{DEVICE}", "d", {})
        assert response.status_code == 500 and "KTWIN_BROKER is not set" in response.text


def test_health_ready_and_metrics(served: ServedApp) -> None:
    assert httpx.get(f"{served.url}/health").status_code == 200
    assert httpx.get(f"{served.url}/ready").status_code == 200
    post(served.url, "ktwin.real.city-pole", POLE_ID, {})
    metrics = httpx.get(f"{served.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'ktwin_sdk_events_total{outcome="ok"}' in metrics.text
    assert "ktwin_sdk_event_duration_seconds_bucket" in metrics.text


SERVICE_SCRIPT = """
import time
import ktwin

service = ktwin.TwinService("from-env")

@service.on("ktwin.command.city-pole.updateairqualityindex")
async def relay(event, ctx):
    return await ctx.command_to_related(
        "city-pole", event.instance, "refNeighborhood", event.command, event.fields()
    )

@service.on("ktwin.real.city-pole")
def slow(event, ctx):
    time.sleep(1)

ktwin.serve(service)
"""


def test_serve_reads_the_platform_environment_and_drains_on_sigterm(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    script = tmp_path / "service.py"
    script.write_text(SERVICE_SCRIPT)
    port = free_port()
    env = {**os.environ, **platform.service_env(), "PORT": str(port), "KTWIN_REPLY": "false"}
    process = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 20, process)
        response = post(
            f"http://127.0.0.1:{port}/any/path",
            "ktwin.command.city-pole.updateairqualityindex",
            POLE_ID,
            {"aqiLevel": "GOOD"},
        )
        # KTWIN_REPLY=false: the command went to KTWIN_BROKER, the reply is empty; the
        # platform routed it to its neighborhood service, which stored the neighborhood.
        assert (response.status_code, response.content) == (200, b"")
        deadline = time.monotonic() + 10
        while latest(platform, "s4city-city-neighborhood", NEIGHBORHOOD_ID).status_code != 200:
            assert time.monotonic() < deadline, "the command never reached the neighborhood"
            time.sleep(0.1)
        # SIGTERM while an event is being handled: it still gets its answer.
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(
                post, f"http://127.0.0.1:{port}/", "ktwin.real.city-pole", POLE_ID, {}
            )
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            assert in_flight.result().status_code == 200
        # uvicorn re-raises the signal once drained: the exit status says "terminated".
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate()[0].decode()
    assert "subscribed to ktwin.command.city-pole.updateairqualityindex" in output, output
    assert "Application shutdown complete" in output, output


def test_twin_event_errors_are_typed() -> None:
    with pytest.raises(InvalidEvent):
        TwinEvent(CloudEvent({"type": "nope", "source": "x"}))


def test_the_runtime_owner_epoch_reaches_the_handler() -> None:
    service = TwinService()

    @service.on(f"ktwin.real.{DEVICE}")
    async def echo(event: TwinEvent, ctx: Context) -> CloudEvent:
        return store_event(DEVICE, event.instance, {"epoch": ctx.owner_epoch})

    with ServedApp(TwinApp(service, Context(), broker=None)) as served:
        for header, expected in [("7", 7), (None, 0), ("x", 0), ("-1", 0)]:
            attributes = {"id": "e", "type": f"ktwin.real.{DEVICE}", "source": "d"}
            message = to_binary(CloudEvent(attributes, {}))
            headers = dict(message.headers)
            if header is not None:
                headers["ktwin-owner-epoch"] = header
            response = httpx.post(served.url, headers=headers, content=message.body, timeout=30)
            assert response.status_code == 200, response.text
            assert json.loads(response.content)["epoch"] == expected, header
