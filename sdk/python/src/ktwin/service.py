"""A twin service: handlers, each for the event types it subscribes to, returning the events to
emit. :meth:`TwinService.dispatch` is the step shared by the HTTP contract and tests."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Union

import anyio.to_thread
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.v1.event import CloudEvent

from .command import resolve_target
from .context import Context
from .events import TwinEvent, derived_digest, with_id
from .grammar import EventKind, EventType, GrammarError
from .trace import continue_trace

log = logging.getLogger("ktwin.service")

#: What a handler returns: nothing, one event, or several.
HandlerResult = Union[None, BaseCloudEvent, Iterable[BaseCloudEvent]]
AsyncHandler = Callable[[TwinEvent, Context], Awaitable[HandlerResult]]
SyncHandler = Callable[[TwinEvent, Context], HandlerResult]
Handler = Union[AsyncHandler, SyncHandler]


def _is_event(value: object) -> bool:
    # BaseCloudEvent is a typing Protocol that isinstance() cannot check.
    return callable(getattr(value, "get_attributes", None)) and hasattr(value, "get_data")


def _as_list(result: object) -> list[BaseCloudEvent]:
    if result is None:
        return []
    items: list[Any] = [result] if _is_event(result) else list(result)  # type: ignore[call-overload]
    for item in items:
        if not _is_event(item):
            raise TypeError(f"handler returned {type(item).__name__}, expected CloudEvents")
    return items


class TwinService:
    """Handlers by the event types they subscribe to.

    >>> from ktwin import EventType, TwinService, store_event
    >>> service = TwinService("pole")
    >>> @service.on(EventType.real("city-pole"))
    ... async def reading(event, ctx):
    ...     return store_event(event.interface, event.instance, event.fields())
    >>> [str(t) for t in service.subscriptions()]
    ['ktwin.real.city-pole']

    Async handlers run on the service's event loop; plain functions run in worker threads (use
    ``ctx.sync`` for lookups there), so a blocking handler does not stall the others.
    """

    def __init__(self, name: str = "twin-service") -> None:
        self.name = name
        self._handlers: dict[EventType, Handler] = {}

    def on(self, *event_types: EventType | str) -> Callable[[Handler], Handler]:
        """Registers the decorated function for ``event_types`` (types or their strings)."""
        parsed = [t if isinstance(t, EventType) else EventType.parse(t) for t in event_types]
        if not parsed:
            raise GrammarError("a handler subscribes to at least one event type")

        def register(handler: Handler) -> Handler:
            for event_type in parsed:
                if event_type in self._handlers:
                    raise ValueError(f"{event_type} already has a handler in {self.name}")
                self._handlers[event_type] = handler
            return handler

        return register

    def subscriptions(self) -> list[EventType]:
        """The event types this service takes, sorted."""
        return sorted(self._handlers)

    async def dispatch(self, event: BaseCloudEvent, ctx: Context) -> list[CloudEvent]:
        """Parses ``event``, calls the handler of its type (an event of another type is
        acknowledged without calling anything) and returns the events to emit, with ids derived
        from the received event's source and id (a redelivery emits the same ids), each a child
        of the received event in its trace (W3C ``traceparent``, see :mod:`ktwin.trace`).

        A command whose ``source`` is a twin of another interface is taken as sent in the
        original Python convention (``source`` = the sender): the handler sees the related
        instance of the command's interface as :attr:`TwinEvent.instance`, and
        :class:`InvalidEvent` is raised when the sender has no such relationship or several
        (:mod:`ktwin.command`)."""
        twin_event = TwinEvent(event)
        handler = self._handlers.get(twin_event.event_type)
        if handler is None:
            log.debug("%s: not subscribed to %s, skipping", self.name, twin_event.event_type)
            return []
        if twin_event.kind is EventKind.COMMAND:
            twin_event = await resolve_target(twin_event, ctx)
        if inspect.iscoroutinefunction(handler):
            result = await handler(twin_event, ctx)
        else:
            call = functools.partial(handler, twin_event, ctx)
            result = await anyio.to_thread.run_sync(call)
        emitted = _as_list(result)
        return [_derived(event, twin_event, index, out) for index, out in enumerate(emitted)]


def _derived(received: BaseCloudEvent, twin_event: TwinEvent, index: int,
             out: BaseCloudEvent) -> CloudEvent:
    """The ``index``-th emitted event with its derived id, a child of ``received`` in its trace
    (a span id of its own from the same digest, as the Rust SDK derives it)."""
    digest = derived_digest(received.get_source(), twin_event.id, index)
    with_derived_id = with_id(out, str(uuid.UUID(bytes=digest[:16])))
    return continue_trace(received, with_derived_id, digest[16:24])

