"""Configuration of a twin service, from the environment the platform injects."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from . import _env
from .broker import BrokerClient
from .context import Context
from .errors import ConfigError
from .graph import GraphLookup, HttpGraph, StaticGraph
from .state import HttpEventStore, MemoryStates, StateLookup

log = logging.getLogger("ktwin.config")

#: Port of the Knative contract when ``PORT`` is unset.
DEFAULT_PORT = 8080
#: Events handled at once when ``KTWIN_MAX_CONCURRENCY`` is unset.
DEFAULT_MAX_CONCURRENCY = 64
#: Largest accepted event body in bytes (larger → 413).
DEFAULT_BODY_LIMIT = 1024 * 1024
#: Timeout of one request to the event store (seconds).
STATE_REQUEST_TIMEOUT = 5.0

T = TypeVar("T")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(text)


@dataclass(frozen=True)
class ServeConfig:
    """Where a service listens and what it talks to (see :mod:`ktwin._env` for the names)."""

    port: int = DEFAULT_PORT
    broker: str | None = None
    event_store: str | None = None
    graph_url: str | None = None
    graph_json: str | None = None
    reply: bool = True
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    state_cache_ttl: float = 0.0
    body_limit: int = DEFAULT_BODY_LIMIT
    #: ``KTWIN_TOKEN``: bearer token for the platform's services (never shown by ``repr``).
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeConfig:
        """Reads the variables from ``environ`` (default: the process environment); a value
        that cannot be used raises :class:`ConfigError` naming it."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def parsed(name: str, parse: Callable[[str], T], default: T, expected: str) -> T:
            value = text(name)
            if value is None:
                return default
            try:
                return parse(value)
            except ValueError:
                raise ConfigError(name, value, expected) from None

        port = parsed(_env.PORT, int, DEFAULT_PORT, "a TCP port number")
        if not 0 <= port <= 65535:
            raise ConfigError(_env.PORT, str(port), "a TCP port number")
        return cls(
            port=port,
            broker=text(_env.BROKER),
            event_store=text(_env.EVENT_STORE),
            graph_url=text(_env.GRAPH_URL),
            graph_json=text(_env.GRAPH),
            reply=parsed(_env.REPLY, _parse_bool, True, "true or false"),
            max_concurrency=max(
                1,
                parsed(_env.MAX_CONCURRENCY, int, DEFAULT_MAX_CONCURRENCY, "a positive integer"),
            ),
            state_cache_ttl=max(
                0.0, parsed(_env.STATE_CACHE_TTL, float, 0.0, "seconds, e.g. 0.5")
            ),
            token=text(_env.TOKEN),
        )

    def graph(self) -> GraphLookup:
        """The graph from ``KTWIN_GRAPH`` or ``KTWIN_GRAPH_URL`` (empty, logged, when neither
        is set, so a service can run alone for development)."""
        if self.graph_json is not None:
            try:
                return StaticGraph.from_json(self.graph_json)
            except ValueError:
                raise ConfigError(
                    _env.GRAPH,
                    self.graph_json[:80],
                    'a twin graph as JSON ({"twinInstances":[...]})',
                ) from None
        if self.graph_url is not None:
            return HttpGraph(self.graph_url, token=self.token)
        log.warning("neither %s nor %s set: empty twin graph", _env.GRAPH, _env.GRAPH_URL)
        return StaticGraph()

    def states(self) -> StateLookup:
        """The latest states from ``KTWIN_EVENT_STORE`` (none stored when it is unset)."""
        if self.event_store is None:
            log.warning("%s not set: no stored states", _env.EVENT_STORE)
            return MemoryStates()
        return HttpEventStore(
            self.event_store,
            timeout=STATE_REQUEST_TIMEOUT,
            cache_ttl=self.state_cache_ttl,
            token=self.token,
        )

    def context(self) -> Context:
        """The handler context this configuration describes."""
        return Context(self.graph(), self.states())

    def broker_client(self) -> BrokerClient | None:
        """The client of ``KTWIN_BROKER``, if set."""
        return BrokerClient(self.broker, token=self.token) if self.broker else None
