"""Graph and latest-state lookups over the platform's HTTP API, their caches, owned states and
the configuration from the environment."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from ktwin import (
    BrokerClient,
    ConfigError,
    Context,
    GraphCachePolicy,
    HttpEventStore,
    HttpGraph,
    MemoryStates,
    OwnedStates,
    ServeConfig,
    StaticGraph,
    Unavailable,
    store_event,
)
from ktwin._cache import BoundedCache
from ktwin.events import Fields
from ktwin.testing import LocalPlatform, ServedApp

pytestmark = pytest.mark.anyio


async def test_graph_lookups_are_cached(platform: LocalPlatform) -> None:
    policy = GraphCachePolicy(max_age=60, miss_refetch_after=2.0)
    graph = HttpGraph(platform.graph_url, policy, token=platform.token)
    async with anyio.create_task_group() as tasks:
        for index in range(1, 21):
            tasks.start_soon(graph.twin, "city-pole", f"city-pole-nb001-p{index:05}")
    assert graph.fetches == 1, "concurrent lookups share one fetch"
    pole = await graph.twin("city-pole", "city-pole-nb001-p00001")
    assert pole is not None
    neighborhood = pole.relationship("refNeighborhood")
    assert neighborhood is not None
    assert neighborhood.instance == "s4city-city-neighborhood-nb001"
    assert await graph.twin("city-pole", "city-pole-nb001-p00050") is not None
    assert graph.fetches == 1, "one sub-graph fetch serves every pole"
    assert await graph.twin("city-pole", "no-such-pole") is None
    assert graph.fetches == 1, "a miss in a young copy is trusted"
    await anyio.sleep(2.1)
    assert await graph.twin("city-pole", "no-such-pole") is None
    assert graph.fetches == 2, "a miss in an older copy fetches again (new twins appear)"
    assert await graph.twin("no-such-interface", "x") is None
    # The instance is found only under its own interface.
    assert await graph.twin("ngsi-ld-city-device", "city-pole-nb001-p00001") is None
    # Or by name alone (the instance route), whatever its interface; answers are cached.
    fetches = graph.fetches
    node = await graph.instance("city-pole-nb001-p00001")
    assert node is not None and node.interface == "city-pole"
    assert node.relationship("refNeighborhood") == neighborhood
    assert await graph.instance("city-pole-nb001-p00001") == node
    assert await graph.instance("no-such-twin") is None
    assert await graph.instance("no-such-twin") is None
    assert graph.fetches == fetches + 2, "one fetch per instance while fresh"
    await graph.aclose()


def graph_server(document: dict[str, Any], state: dict[str, int]) -> Any:
    """A graph service whose answers the test switches between the graph and an outage."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        status = state["status"]
        body = json.dumps(document).encode() if status == 200 else b"down"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def test_the_last_good_graph_outlives_an_outage() -> None:
    document = {"twinInstances": [{"name": "p1", "interface": "pole", "relationships": []}]}
    state = {"status": 200}
    with ServedApp(graph_server(document, state)) as server:
        graph = HttpGraph(server.url, GraphCachePolicy(max_age=0.0))
        assert await graph.twin("pole", "p1") is not None
        state["status"] = 500
        assert await graph.twin("pole", "p1") is not None, "stale copy served"
        assert graph.fetches == 2
        fresh = HttpGraph(server.url)
        with pytest.raises(Unavailable, match="status 500"):
            await fresh.twin("pole", "p1")
        await graph.aclose()
        await fresh.aclose()


def test_caches_are_bounded_by_bytes() -> None:
    cache: BoundedCache[str] = BoundedCache(max_bytes=100)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") is not None  # now the most recently used
    cache.put("c", "C", 40)
    assert cache.get("b") is None and cache.get("a") is not None and cache.bytes == 80
    cache.put("huge", "H", 101)
    assert cache.get("huge") is None and len(cache) == 2


async def test_latest_states_come_from_the_event_store(platform: LocalPlatform) -> None:
    states = HttpEventStore(platform.url, cache_ttl=30, token=platform.token)
    instance = "ngsi-ld-city-device-wo-nb001-p00002"
    assert await states.latest("ngsi-ld-city-device", instance) is None
    broker = BrokerClient(platform.broker_url, token=platform.token)
    await broker.post(store_event("ngsi-ld-city-device", instance, {"batteryLevel": 42}))
    # The 404 above is cached for 30 s; a client without a cache sees the new state.
    assert await states.latest("ngsi-ld-city-device", instance) is None
    uncached = HttpEventStore(platform.url, token=platform.token)
    deadline = time.monotonic() + 10
    while (state := await uncached.latest("ngsi-ld-city-device", instance)) is None:
        assert time.monotonic() < deadline
        await anyio.sleep(0.1)
    assert state.fields["BatteryLevel"] == 42
    assert state.cloud_event.get_type() == "ktwin.store.ngsi-ld-city-device"
    assert state.time is not None
    for client in (states, uncached, broker):
        await client.aclose()


async def test_owned_states_serialize_updates_and_ignore_redeliveries() -> None:
    stored = MemoryStates()
    stored.put(store_event("parking", "p1", {"n": 10}))
    ctx = Context(StaticGraph(), stored)
    owned: OwnedStates[int] = OwnedStates(lambda fields: int(fields["n"]))

    def increment(previous: int | None) -> tuple[int, int]:
        value = (previous or 0) + 1
        return value, value

    async def one(event_id: str) -> None:
        await owned.update(ctx, "parking", "p1", event_id, increment)

    async with anyio.create_task_group() as tasks:
        for index in range(50):
            tasks.start_soon(one, f"e-{index}")
    assert await owned.update(ctx, "parking", "p1", "last", increment) == 61
    assert await owned.update(ctx, "parking", "p1", "last", increment) == 61, "redelivery"
    assert await owned.update(ctx, "parking", "p2", "x", increment) == 1


async def test_redeliveries_of_any_remembered_event_return_their_first_result() -> None:
    ctx = Context()
    owned: OwnedStates[int] = OwnedStates(lambda fields: int(fields["n"]))

    def increment(previous: int | None) -> tuple[int, int]:
        value = (previous or 0) + 1
        return value, value

    for index in range(40):
        assert await owned.update(ctx, "p", "p1", f"e{index}", increment) == index + 1
        # Every third event, an earlier one comes again: the last, or one six events back.
        if index % 3 == 2:
            earlier = index if index % 2 == 0 else max(index - 6, 0)
            again = await owned.update(ctx, "p", "p1", f"e{earlier}", increment)
            assert again == earlier + 1, f"redelivery of e{earlier}"
    for earlier in [39, 0, 17, 5, 38]:
        assert await owned.update(ctx, "p", "p1", f"e{earlier}", increment) == earlier + 1
    assert await owned.update(ctx, "p", "p1", "e40", increment) == 41


async def test_owned_states_remember_a_bounded_number_of_events() -> None:
    ctx = Context()
    owned: OwnedStates[int] = OwnedStates(lambda fields: 0, remembered_events=8)

    def increment(previous: int | None) -> tuple[int, int]:
        value = (previous or 0) + 1
        return value, value

    for index in range(100):
        await owned.update(ctx, "p", "p1", f"e{index}", increment)
    assert len(owned._slots[("p", "p1")].applied) == 8
    assert await owned.update(ctx, "p", "p1", "e92", increment) == 93, "remembered"
    assert await owned.update(ctx, "p", "p1", "e0", increment) == 101, "forgotten: applied"


async def test_a_larger_owner_epoch_reloads_the_state() -> None:
    stored = MemoryStates()
    ctx = Context(StaticGraph(), stored)
    owned: OwnedStates[int] = OwnedStates(lambda fields: int(fields["n"]))

    def increment(previous: int | None) -> tuple[int, int]:
        value = (previous or 0) + 1
        return value, value

    first = ctx.with_owner_epoch(1)
    assert await owned.update(first, "p", "p1", "e1", increment) == 1
    stored.put(store_event("p", "p1", {"n": 50}))
    assert await owned.update(first, "p", "p1", "e2", increment) == 2, "same epoch: in memory"
    later = ctx.with_owner_epoch(4)
    assert await owned.update(later, "p", "p1", "e3", increment) == 51, "moved back: reloaded"
    assert await owned.update(later, "p", "p1", "e2", increment) == 2, "still remembered"


async def test_owned_states_forget_the_least_recently_used() -> None:
    owned: OwnedStates[int] = OwnedStates(lambda f: 0, max_instances=2)
    ctx = Context()
    for name in ["a", "b", "c"]:
        await owned.update(ctx, "i", name, "e", lambda prev: (1, None))
    assert len(owned._slots) == 2


def test_configuration_from_the_environment() -> None:
    config = ServeConfig.from_env(
        {"PORT": "9000", "KTWIN_BROKER": "http://b", "KTWIN_REPLY": "false",
         "KTWIN_MAX_CONCURRENCY": "0", "KTWIN_GRAPH": '{"twinInstances":[]}'}
    )
    assert (config.port, config.broker, config.reply, config.max_concurrency) == (
        9000, "http://b", False, 1
    )
    assert isinstance(config.graph(), StaticGraph)
    assert ServeConfig.from_env({}).port == 8080
    for name, value in [("PORT", "http"), ("PORT", "70000"), ("KTWIN_REPLY", "maybe")]:
        with pytest.raises(ConfigError, match=name):
            ServeConfig.from_env({name: value})
    with pytest.raises(ConfigError, match="KTWIN_GRAPH"):
        ServeConfig.from_env({"KTWIN_GRAPH": "not json"}).graph()


def test_fields_serialize_as_their_object() -> None:
    assert store_event("x", "y", Fields({"A": 1})).get_data() == {"A": 1}
