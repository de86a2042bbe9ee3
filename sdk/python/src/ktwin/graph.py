"""The twin graph as a twin service sees it: instances and their named relationships.

:class:`HttpGraph` reads the graph service (``GET {KTWIN_GRAPH_URL}/{interface}``, the graph
cache's sub-graph shape ``{"twinInstances":[...]}``, and ``GET
{KTWIN_GRAPH_URL}/instances/{instance}`` for a twin of unknown interface) with a bounded cache;
:class:`StaticGraph` serves a graph held in memory (tests, ``KTWIN_GRAPH``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import anyio
import httpx

from ._cache import BoundedCache
from ._http import bearer
from .errors import Unavailable

log = logging.getLogger("ktwin.graph")


@dataclass(frozen=True)
class Relationship:
    """A named, outgoing relationship to another instance."""

    name: str
    interface: str
    instance: str


@dataclass(frozen=True)
class TwinNode:
    """One twin instance of the graph, with its outgoing relationships."""

    name: str
    interface: str
    relationships: tuple[Relationship, ...] = ()

    def relationship(self, name: str) -> Relationship | None:
        """The first relationship called ``name`` (exact match, as declared in the model)."""
        return next((r for r in self.relationships if r.name == name), None)


class GraphLookup(Protocol):
    """Reads nodes of the twin graph; ``None`` means the instance is not in it."""

    async def twin(self, interface: str, instance: str) -> TwinNode | None:
        """The node of ``instance``, an instance of ``interface``."""
        ...

    async def instance(self, instance: str) -> TwinNode | None:
        """The node of ``instance``, whatever its interface (the sender of a command in the
        original Python convention, whose interface the command does not name)."""
        ...


def parse_node(item: Any) -> TwinNode:
    """One ``{name, interface, relationships}`` node; another shape raises ``ValueError``."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ValueError(f"twin instance without a name: {json.dumps(item)[:200]}")
    relationships = tuple(
        Relationship(str(r["name"]), str(r.get("interface", "")), str(r["instance"]))
        for r in item.get("relationships") or []
    )
    return TwinNode(item["name"], str(item.get("interface", "")), relationships)


def parse_graph(document: Any) -> dict[str, TwinNode]:
    """Nodes by name of a ``{"twinInstances":[...]}`` document; a later node of the same name
    replaces an earlier one. A document of another shape raises ``ValueError``."""
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object {\"twinInstances\":[...]}")
    nodes: dict[str, TwinNode] = {}
    for item in document.get("twinInstances") or []:
        node = parse_node(item)
        nodes[node.name] = node
    return nodes


class StaticGraph:
    """A graph held in memory."""

    def __init__(self, document: Any = None) -> None:
        self.nodes = parse_graph(document or {})

    @classmethod
    def from_json(cls, text: str) -> StaticGraph:
        """Parses the JSON form, e.g. the ``KTWIN_GRAPH`` variable."""
        return cls(json.loads(text))

    async def twin(self, interface: str, instance: str) -> TwinNode | None:
        return _of_interface(self.nodes.get(instance), interface)

    async def instance(self, instance: str) -> TwinNode | None:
        return self.nodes.get(instance)


@dataclass(frozen=True)
class GraphCachePolicy:
    """How :class:`HttpGraph` keeps its per-interface copies fresh and small."""

    max_age: float = 30.0
    """A sub-graph older than this (seconds) is fetched again (or revalidated) before use."""
    miss_refetch_after: float = 1.0
    """An instance missing from a sub-graph fetched longer ago than this triggers a re-fetch
    (twins added since become visible at once); a younger copy is trusted."""
    request_timeout: float = 5.0
    """Timeout of one request to the graph service (seconds)."""
    max_bytes: int = 64 * 1024 * 1024
    """Budget of the cached sub-graphs, measured as the size of their JSON."""


class HttpGraph:
    """Sub-graphs from the graph service, one per interface, cached and refreshed when stale or
    when an instance is missing. ``404`` is an empty sub-graph; a failing service raises
    :class:`Unavailable`, except that a stale copy is still served (the last good graph beats
    an outage)."""

    def __init__(
        self,
        base_url: str,
        policy: GraphCachePolicy | None = None,
        client: httpx.AsyncClient | None = None,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or GraphCachePolicy()
        self._client = client or httpx.AsyncClient(
            timeout=self.policy.request_timeout, headers=bearer(token)
        )
        self._cache: BoundedCache[dict[str, TwinNode]] = BoundedCache(self.policy.max_bytes)
        # Answers of the instance route, found or not (``None``), within the same budget.
        self._instances: BoundedCache[TwinNode | None] = BoundedCache(self.policy.max_bytes)
        self._locks: dict[str, anyio.Lock] = {}
        self.fetches = 0

    async def aclose(self) -> None:
        """Closes the HTTP client."""
        await self._client.aclose()

    async def twin(self, interface: str, instance: str) -> TwinNode | None:
        entry = self._cache.get(interface)
        if entry is not None and entry.age < self.policy.max_age:
            found = entry.value.get(instance)
            if found is not None or entry.age < self.policy.miss_refetch_after:
                return _of_interface(found, interface)
        nodes = await self._refresh(interface, asked_at=time.monotonic())
        return _of_interface(nodes.get(instance), interface)

    async def instance(self, instance: str) -> TwinNode | None:
        """Cached like the sub-graphs: a found node for ``max_age``, a missing one for
        ``miss_refetch_after``; a failing service with a cached answer serves that answer."""
        entry = self._instances.get(instance)
        if entry is not None:
            fresh_for = self.policy.max_age if entry.value is not None else self.policy.miss_refetch_after
            if entry.age < fresh_for:
                return entry.value
        try:
            node, size = await self._fetch_instance(instance)
        except Unavailable as err:
            if entry is None:
                raise
            log.warning("%s; using the last answer", err)
            return entry.value
        self._instances.put(instance, node, size)
        return node

    async def _fetch_instance(self, instance: str) -> tuple[TwinNode | None, int]:
        url = f"{self.base_url}/instances/{quote(instance, safe='')}"
        what = f"twin {instance} in the twin graph ({url})"
        self.fetches += 1
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as err:
            raise Unavailable(f"{what}: {err!r}") from err
        if response.status_code == 404:
            return None, len(instance)
        if not response.is_success:
            raise Unavailable(f"{what}: status {response.status_code}")
        try:
            return parse_node(response.json()), len(response.content)
        except ValueError as err:
            raise Unavailable(f"{what}: invalid JSON: {err}") from err

    async def _refresh(self, interface: str, asked_at: float) -> dict[str, TwinNode]:
        # One fetch per interface at a time; a caller that waited for another's fetch uses it.
        lock = self._locks.setdefault(interface, anyio.Lock())
        async with lock:
            entry = self._cache.get(interface)
            if entry is not None and entry.fetched_at >= asked_at:
                return entry.value
            try:
                return await self._fetch(interface, entry.etag if entry else None)
            except Unavailable as err:
                if entry is None:
                    raise
                log.warning("%s; using the last good sub-graph of %s", err, interface)
                return entry.value

    async def _fetch(self, interface: str, etag: str | None) -> dict[str, TwinNode]:
        url = f"{self.base_url}/{quote(interface, safe='')}"
        headers = {"If-None-Match": etag} if etag else {}
        self.fetches += 1
        try:
            response = await self._client.get(url, headers=headers)
        except httpx.HTTPError as err:
            raise Unavailable(f"twin graph of {interface} ({url}): {err!r}") from err
        if response.status_code == 304 and (cached := self._cache.get(interface)):
            cached.fetched_at = time.monotonic()
            return cached.value
        if response.status_code == 404:
            nodes: dict[str, TwinNode] = {}
        elif response.is_success:
            try:
                nodes = parse_graph(response.json())
            except ValueError as err:
                raise Unavailable(f"twin graph of {interface} ({url}): invalid JSON: {err}")
        else:
            raise Unavailable(f"twin graph of {interface} ({url}): status {response.status_code}")
        size = len(response.content)
        self._cache.put(interface, nodes, size, response.headers.get("etag"))
        return nodes


def _of_interface(node: TwinNode | None, interface: str) -> TwinNode | None:
    if node is None or (node.interface and node.interface != interface):
        return None
    return node
