"""The latest state of any twin, as the event store keeps it.

:class:`HttpEventStore` reads ``GET {KTWIN_EVENT_STORE}/api/v1/twin-events/{iface}/{instance}/latest``
(a binary-mode CloudEvent whose data is the merged state, with its version as ``ETag``, or
``404``) and writes conditionally (``POST /api/v1/twin-events`` with ``If-Match``, ``412`` when
the state moved on); :class:`MemoryStates` keeps states in memory (tests). :class:`OwnedStates`
is state a service owns and updates from event to event without lost updates.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import anyio
import httpx
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from ._cache import BoundedCache
from ._http import bearer
from .errors import HandlerFailed, Unavailable
from ._owned_store import update_in_store
from .broker import to_binary
from .events import Fields, event_json, to_json

if TYPE_CHECKING:
    from .context import Context

log = logging.getLogger("ktwin.state")


@dataclass(frozen=True)
class StoredState:
    """The latest state of one instance: the merged data and the newest event's attributes."""

    cloud_event: BaseCloudEvent
    data: dict[str, Any]
    #: The state's version (the store's ``ETag``), which a conditional write names.
    version: str | None = None

    @property
    def fields(self) -> Fields:
        """The data with case-insensitive keys."""
        return Fields(self.data)

    @property
    def id(self) -> str:
        """Id of the newest stored event."""
        return self.cloud_event.get_id()

    @property
    def time(self) -> dt.datetime | None:
        """Time of the newest stored event."""
        return self.cloud_event.get_time()

    @classmethod
    def of(
        cls, cloud_event: BaseCloudEvent, what: str, version: str | None = None
    ) -> StoredState:
        """The state carried by ``cloud_event``; data that is not a JSON object raises
        :class:`HandlerFailed` naming ``what``."""
        try:
            data = event_json(cloud_event)
        except (ValueError, UnicodeDecodeError) as err:
            raise HandlerFailed(f"{what}: stored data is not JSON: {err}") from err
        if not isinstance(data, dict):
            raise HandlerFailed(f"{what}: stored data is not a JSON object")
        return cls(cloud_event, data, version)


class StateLookup(Protocol):
    """Reads the latest stored state of a twin instance; ``None`` = nothing stored yet."""

    async def latest(self, interface: str, instance: str) -> StoredState | None:
        """The latest state of ``instance`` of ``interface``."""
        ...


class VersionedStates(StateLookup, Protocol):
    """A state lookup that also gives versions and writes conditionally (the event store)."""

    async def latest_versioned(self, interface: str, instance: str) -> StoredState | None:
        """The latest state with its :attr:`StoredState.version`, never from a cache."""
        ...

    async def write_if(self, event: BaseCloudEvent, expected: str | None) -> bool:
        """Stores ``event`` (a ``ktwin.store.<interface>`` event of its source) only if the
        instance's state is at version ``expected`` (``None``: no state stored); ``False``
        when it is not (nothing written). The same event stored already is ``True``."""
        ...


class HttpEventStore:
    """A client of the event store's ``latest`` route. With ``cache_ttl`` > 0 a state read less
    than that many seconds ago is reused (bounded by ``cache_bytes``); the default 0 always asks
    the store, since a reused state can be older than what the service itself just emitted."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 5.0,
        cache_ttl: float = 0.0,
        cache_bytes: int = 16 * 1024 * 1024,
        client: httpx.AsyncClient | None = None,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache_ttl = cache_ttl
        self._client = client or httpx.AsyncClient(timeout=timeout, headers=bearer(token))
        self._cache: BoundedCache[StoredState | None] = BoundedCache(cache_bytes)

    async def aclose(self) -> None:
        """Closes the HTTP client."""
        await self._client.aclose()

    async def latest(self, interface: str, instance: str) -> StoredState | None:
        key = f"{interface}/{instance}"
        if self.cache_ttl > 0:
            entry = self._cache.get(key)
            if entry is not None and entry.age < self.cache_ttl:
                return entry.value
        state, size = await self._fetch(interface, instance)
        if self.cache_ttl > 0:
            self._cache.put(key, state, size + len(key))
        return state

    async def latest_versioned(self, interface: str, instance: str) -> StoredState | None:
        state, _ = await self._fetch(interface, instance)
        return state

    async def write_if(self, event: BaseCloudEvent, expected: str | None) -> bool:
        url = f"{self.base_url}/api/v1/twin-events"
        what = f"conditional write of event {event.get_id()} ({url})"
        message = to_binary(event)
        headers = dict(message.headers)
        if expected is None:
            headers["If-None-Match"] = "*"
        else:
            headers["If-Match"] = f'"{expected}"'
        try:
            response = await self._client.post(url, headers=headers, content=message.body)
        except httpx.HTTPError as err:
            raise Unavailable(f"{what}: {err!r}") from err
        if response.status_code == 412:
            return False
        if not response.is_success:
            raise Unavailable(f"{what}: status {response.status_code}: {response.text[:200]}")
        return True

    async def _fetch(self, interface: str, instance: str) -> tuple[StoredState | None, int]:
        """The latest state from the store, and the size of the answer."""
        url = (
            f"{self.base_url}/api/v1/twin-events/"
            f"{quote(interface, safe='')}/{quote(instance, safe='')}/latest"
        )
        what = f"latest state of {interface}/{instance} ({url})"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as err:
            raise Unavailable(f"{what}: {err!r}") from err
        if response.status_code == 404:
            return None, len(response.content)
        if not response.is_success:
            raise Unavailable(f"{what}: status {response.status_code}: {response.text[:200]}")
        message = HTTPMessage(dict(response.headers), response.content)
        version = response.headers.get("etag", "").strip('"') or None
        try:
            state = StoredState.of(from_http_event(message), what, version)
        except HandlerFailed:
            raise
        except Exception as err:  # the cloudevents SDK raises several types
            raise Unavailable(f"{what}: not a CloudEvent: {err}") from err
        return state, len(response.content)


class MemoryStates:
    """States held in memory: the latest event put (or written) for each instance wins, whole
    (the event store merges; this stand-in does not). Each put or write is a new version."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], StoredState] = {}
        self._last_version = 0

    def put(self, cloud_event: BaseCloudEvent) -> None:
        """Records ``cloud_event`` as the latest state of its instance; the interface is the
        third segment of its type, as the event store derives it."""
        key = _instance_key(cloud_event)
        self._last_version += 1
        version = str(self._last_version)
        self._states[key] = StoredState.of(cloud_event, f"state of {key}", version)

    async def latest(self, interface: str, instance: str) -> StoredState | None:
        return self._states.get((interface, instance))

    async def latest_versioned(self, interface: str, instance: str) -> StoredState | None:
        return self._states.get((interface, instance))

    async def write_if(self, event: BaseCloudEvent, expected: str | None) -> bool:
        current = self._states.get(_instance_key(event))
        if current is not None and current.id == event.get_id():
            return True
        if (current.version if current else None) != expected:
            return False
        self.put(event)
        return True


def _instance_key(cloud_event: BaseCloudEvent) -> tuple[str, str]:
    """(interface, instance) of a store event: its type's third segment, and its source."""
    return cloud_event.get_type().split(".")[2], cloud_event.get_source()


T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T]):
    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.loaded = False
        self.epoch = 0
        self.current: T | None = None
        # The instance's last applied events and what their update returned, oldest first.
        self.applied: OrderedDict[str, Any] = OrderedDict()


class OwnedStates(Generic[T]):
    """Per-instance states a service owns, decoded from the stored data by ``decode``.

    The originals read the event store, computed and wrote back through the broker: the next
    event could read the old state while the write was still queued, and concurrent events
    overwrote each other. :meth:`update` serialises updates per instance and keeps the state it
    last produced, so the store is read only the first time an instance is seen.

    A redelivered event — any of the instance's last ``remembered_events`` applied events, in
    any order — is recognised by its id and not applied again: :meth:`update` returns what it
    returned the first time, so the handler emits the same events (with the same derived ids)
    again, as the Rust SDK's ``OwnedStates`` does.

    At most ``max_instances`` instances are kept (each with at most ``remembered_events``
    results); the least recently updated ones are forgotten and read from the store again when
    seen next.

    In memory, one replica owns an instance's state: the runtime delivers all events of an
    instance to one replica at a time. ``ktwin up`` partitions a service's events by instance
    and says in the ``ktwin-owner-epoch`` header (:attr:`Context.owner_epoch`) since when the
    replica owns it; when that number grows, the instance was handled elsewhere meanwhile and
    its state is read from the store again (docs/architecture.md, "Owned state and replicas").

    A delivery without that header (:attr:`Context.partitioned` false: a cluster, where Knative
    spreads requests over pods) is applied to the state kept in the event store instead, by a
    conditional write the store commits only if no other replica wrote in between; ``update``
    may then run more than once and must have no other effect than its return value. The state
    is stored as ``encode(state)`` (a JSON object that ``decode`` reads back; default: the
    state's JSON form), and a redelivery of any of the last ``remembered_events`` events,
    recognised by every replica, answers its first result as JSON values (a dataclass result
    comes back as a dict: return the stored form).
    """

    def __init__(
        self,
        decode: Callable[[Fields], T],
        max_instances: int = 100_000,
        remembered_events: int = 64,
        encode: Callable[[T], Any] = to_json,
    ) -> None:
        self._decode = decode
        self._encode = encode
        self._max_instances = max_instances
        self._remembered = max(1, remembered_events)
        self._slots: OrderedDict[tuple[str, str], _Slot[T]] = OrderedDict()

    def _slot(self, key: tuple[str, str]) -> _Slot[T]:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        self._slots.move_to_end(key)
        while len(self._slots) > self._max_instances:
            oldest = next(iter(self._slots))
            if self._slots[oldest].lock.locked():
                break
            del self._slots[oldest]
        return slot

    async def update(
        self,
        ctx: Context,
        interface: str,
        instance: str,
        event_id: str,
        update: Callable[[T | None], tuple[T, R]],
    ) -> R:
        """Runs ``update`` on the state of ``instance`` (loaded from the event store on first
        use), one event at a time per instance. ``update`` gets the previous state (``None`` if
        there is none) and returns the new state and a result; the new state is kept only if
        ``update`` returns. For a redelivered event (``event_id`` among the remembered ones),
        ``update`` is not called and the result of its first application is returned."""
        slot = self._slot((interface, instance))
        if not ctx.partitioned:
            # Nothing in memory to trust; the lock still keeps this replica's updates of the
            # instance from racing each other to the store.
            async with slot.lock:
                slot.loaded, slot.current = False, None
                slot.applied.clear()
                codec = (self._decode, self._encode, self._remembered)
                return await update_in_store(ctx, (interface, instance), event_id, update, codec)
        async with slot.lock:
            if event_id in slot.applied:
                result: R = slot.applied[event_id]
                return result
            if ctx.owner_epoch > slot.epoch:
                # Another replica may have handled the instance since this one last did.
                slot.loaded, slot.epoch = False, ctx.owner_epoch
            if not slot.loaded:
                stored = await ctx.latest(interface, instance)
                slot.current = None if stored is None else self._decode(stored.fields)
                slot.loaded = True
            state, result = update(slot.current)
            slot.current = state
            slot.applied[event_id] = result
            while len(slot.applied) > self._remembered:
                slot.applied.popitem(last=False)
            return result
