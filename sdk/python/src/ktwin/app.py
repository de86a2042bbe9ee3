"""The Knative contract of a twin service as an ASGI app: binary or structured CloudEvents in on
any path and method, ``2xx`` when done and non-``2xx`` to ask for redelivery; ``/health``,
``/ready`` and ``/metrics`` beside. Emitted events go back in the reply (Knative routes a
CloudEvent in a ``2xx`` reply like any other event) or are posted to ``KTWIN_BROKER``. An event
without a ``traceparent`` attribute takes the plain ``traceparent`` HTTP header Knative's
dispatchers send."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest

from .broker import BrokerClient, to_binary
from .config import DEFAULT_BODY_LIMIT, DEFAULT_MAX_CONCURRENCY, ServeConfig
from .context import Context
from .errors import HandlerError, HandlerFailed, InvalidEvent, Unavailable
from .service import TwinService
from .trace import TRACEPARENT, TRACESTATE, adopt_transport_trace

log = logging.getLogger("ktwin.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _BodyTooLarge(Exception):
    pass


def _outcome(error: HandlerError) -> str:
    """The ``outcome`` label of ``ktwin_sdk_events_total`` (as the Rust SDK labels them)."""
    if isinstance(error, InvalidEvent):
        return "invalid"
    return "unavailable" if isinstance(error, Unavailable) else "failed"


class TwinApp:
    """The ASGI app of a twin service. Serve it with any ASGI server, or with
    :func:`ktwin.serve` (uvicorn, configured from the environment)."""

    def __init__(
        self,
        service: TwinService,
        ctx: Context | None = None,
        broker: BrokerClient | None = None,
        reply: bool = True,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        body_limit: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        self.service = service
        self.ctx = ctx or Context()
        self.broker = broker
        self.reply = reply
        self.max_concurrency = max(1, max_concurrency)
        self.body_limit = body_limit
        self.ready = False
        self._slots: anyio.Semaphore | None = None
        self.registry = CollectorRegistry()
        self._events = Counter(
            "ktwin_sdk_events", "Events received, by outcome", ["outcome"], registry=self.registry
        )
        self._duration = Histogram(
            "ktwin_sdk_event_duration_seconds", "Time to handle one event", registry=self.registry
        )

    @classmethod
    def from_config(cls, service: TwinService, config: ServeConfig) -> TwinApp:
        """The app ``config`` describes (see :meth:`ServeConfig.from_env`)."""
        return cls(
            service,
            config.context(),
            config.broker_client(),
            reply=config.reply,
            max_concurrency=config.max_concurrency,
            body_limit=config.body_limit,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.ready = True
                log.info("%s ready, subscribed to %s", self.service.name,
                         ", ".join(map(str, self.service.subscriptions())))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Closes the HTTP clients of the lookups and the broker."""
        for part in (self.ctx.graph, self.ctx.states, self.broker):
            close = getattr(part, "aclose", None)
            if close is not None:
                await close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope.get("path", "/"), scope.get("method", "GET")
        if method == "GET" and path == "/health":
            await _respond(send, 200, b"ok")
        elif method == "GET" and path == "/ready":
            await _respond(send, 200 if self.ready else 503, b"ready" if self.ready else b"starting")
        elif method == "GET" and path == "/metrics":
            body = generate_latest(self.registry)
            await _respond(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])
        else:
            await self._event(scope, receive, send)

    async def _event(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        if self._slots is None:
            self._slots = anyio.Semaphore(self.max_concurrency)
        async with self._slots:
            status, headers, body, outcome = await self._handle(scope, receive)
        self._events.labels(outcome).inc()
        self._duration.observe(time.perf_counter() - started)
        await _respond(send, status, body, headers)

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, str]:
        try:
            body = await _read_body(receive, self.body_limit)
        except _BodyTooLarge:
            detail = f"request body exceeds the limit of {self.body_limit} bytes"
            return 413, [], detail.encode(), "invalid"
        try:
            reply = await self._process(_headers(scope), body)
        except HandlerError as err:
            failure = err
        except Exception as err:  # a bug in a handler: answered 500, redelivered
            log.exception("handler of %s failed", self.service.name)
            failure = HandlerFailed(f"{type(err).__name__}: {err}")
        else:
            if reply is None:
                return 200, [], b"", "ok"
            message = to_binary(reply)
            headers = [(k.lower().encode(), v.encode()) for k, v in message.headers.items()]
            return 200, headers, message.body, "ok"
        log.warning("event not processed (%s): %s", failure.status, failure)
        return failure.status, [], str(failure).encode(), _outcome(failure)

    async def _process(self, headers: dict[str, str], body: bytes) -> BaseCloudEvent | None:
        """Parses, dispatches and emits; returns the event for the reply, if any."""
        try:
            event = from_http_event(HTTPMessage(headers, body))
        except Exception as err:  # the cloudevents SDK raises several types
            raise InvalidEvent(f"not a CloudEvent: {err}") from err
        event = adopt_transport_trace(event, headers.get(TRACEPARENT), headers.get(TRACESTATE))
        ctx = self.ctx
        epoch = headers.get(OWNER_EPOCH_HEADER, "")
        if epoch.isascii() and epoch.isdigit():
            ctx = ctx.with_owner_epoch(int(epoch))
        else:
            # Nothing partitions the deliveries: other replicas may hold the same instances.
            ctx = ctx.unpartitioned()
        emitted: list[BaseCloudEvent] = list(await self.service.dispatch(event, ctx))
        reply = emitted.pop() if self.reply and emitted else None
        if emitted and self.broker is None:
            extra = " (only one fits in the reply)" if self.reply else ""
            raise HandlerFailed(f"{len(emitted)} event(s) to post but KTWIN_BROKER is not set{extra}")
        for out in emitted:
            assert self.broker is not None
            await self.broker.post(out)
        return reply


#: The runtime's header saying since when this replica owns the event's instance.
OWNER_EPOCH_HEADER = "ktwin-owner-epoch"


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = list(headers or [])
    if not any(name == b"content-type" for name, _ in all_headers) and body:
        all_headers.append((b"content-type", b"text/plain; charset=utf-8"))
    all_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
