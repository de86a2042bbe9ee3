"""``OwnedStates`` on replicas that nothing partitions (a cluster): four real SDK servers, each
with its own ``OwnedStates``, over the running platform's event store, get the events of
several instances at random and concurrently, without the ``ktwin-owner-epoch`` header, with
injected redeliveries (the same event again, and one five events back, each to another replica
than its first delivery's). Every count is exact and every redelivery answers what the event's
first application did. The test plays the broker: a failed delivery goes again."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest
from cloudevents.core.v1.event import CloudEvent

from ktwin import (
    OWNED_MEMBER,
    Context,
    HttpEventStore,
    OwnedStates,
    TwinApp,
    TwinEvent,
    TwinService,
    to_binary,
)
from ktwin.testing import LocalPlatform, ServedApp

# An interface of the loaded model whose instances no service of the example updates.
INTERFACE = "ngsi-ld-city-device"
REPLICAS = 4
INSTANCES = 4
EVENTS_PER_INSTANCE = 20


def make_service() -> TwinService:
    service = TwinService("owned-cluster-test")
    counts: OwnedStates[int] = OwnedStates(
        lambda fields: int(fields["n"]), encode=lambda n: {"n": n}
    )

    @service.on(f"ktwin.real.{INTERFACE}")
    async def count(event: TwinEvent, ctx: Context) -> None:
        def increment(previous: int | None) -> tuple[int, int]:
            value = (previous or 0) + 1
            return value, value

        n = await counts.update(ctx, INTERFACE, event.instance, event.id, increment)
        # The count goes back in a header-free way: as the handler's answer to the test.
        answers[event.id].append(n)

    return service


answers: defaultdict[str, list[int]] = defaultdict(list)


@pytest.fixture(scope="module")
def replicas(platform: LocalPlatform) -> Iterator[list[str]]:
    with ExitStack() as stack:
        urls = []
        for _ in range(REPLICAS):
            ctx = Context(states=HttpEventStore(platform.url, timeout=30, token=platform.token))
            served = stack.enter_context(ServedApp(TwinApp(make_service(), ctx)))
            urls.append(served.url)
        yield urls


def schedule(run: str) -> list[tuple[str, str, int]]:
    """(instance, event id, first replica) of every delivery, redeliveries included."""
    rng = random.Random(18)
    per_instance = []
    for instance in range(INSTANCES):
        name = f"owned-{run}-{instance}"
        deliveries, first = [], []
        for index in range(EVENTS_PER_INSTANCE):
            first.append(rng.randrange(REPLICAS))
            deliveries.append((name, f"{name}-e{index}", first[index]))
            if index % 5 == 4:
                for earlier in [index] + ([index - 5] if index >= 5 else []):
                    other = (first[earlier] + 1 + rng.randrange(REPLICAS - 1)) % REPLICAS
                    deliveries.append((name, f"{name}-e{earlier}", other))
        per_instance.append(deliveries[::-1])
    merged = []
    while any(per_instance):
        pick = rng.choice([d for d in per_instance if d])
        merged.append(pick.pop())
    return merged


def deliver(replicas: list[str], delivery: tuple[str, str, int]) -> None:
    instance, event_id, replica = delivery
    event = CloudEvent(
        {"id": event_id, "type": f"ktwin.real.{INTERFACE}", "source": instance}, {"reading": 1}
    )
    message = to_binary(event)
    for attempt in range(20):
        url = replicas[(replica + attempt) % len(replicas)]
        response = httpx.post(url, headers=message.headers, content=message.body, timeout=60)
        if response.is_success:
            return
    raise AssertionError(f"{event_id} was never delivered: {response.status_code} {response.text}")


def test_owned_counts_are_exact_over_unpartitioned_replicas(
    platform: LocalPlatform, replicas: list[str]
) -> None:
    run = uuid.uuid4().hex[:8]
    deliveries = schedule(run)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda d: deliver(replicas, d), deliveries))
    by_instance: defaultdict[str, list[int]] = defaultdict(list)
    for instance, event_id in sorted({(i, e) for i, e, _ in deliveries}):
        counts = answers[event_id]
        assert counts and all(n == counts[0] for n in counts), f"{event_id}: {counts}"
        by_instance[instance].append(counts[0])
    assert len(by_instance) == INSTANCES
    for instance, counts in by_instance.items():
        # Each event got its own count: none lost, none applied twice.
        assert sorted(counts) == list(range(1, EVENTS_PER_INSTANCE + 1)), instance
        stored = platform.latest(INTERFACE, instance)
        assert stored is not None
        assert stored[OWNED_MEMBER][0]["state"] == {"n": EVENTS_PER_INSTANCE}
