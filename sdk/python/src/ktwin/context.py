"""What a handler may consult besides its event: the twin graph, the latest state of any twin
and the clock. Async handlers ``await`` the methods of :class:`Context`; sync handlers, which
the SDK runs in worker threads, call the same methods on ``ctx.sync``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio.from_thread
from cloudevents.core.v1.event import CloudEvent

from .errors import InvalidEvent
from .events import command_event
from .graph import GraphLookup, Relationship, StaticGraph, TwinNode
from .state import MemoryStates, StateLookup, StoredState

Clock = Callable[[], dt.datetime]
T = TypeVar("T")


def utc_now() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(dt.timezone.utc)


class Context:
    """The context handed to a handler with every event."""

    def __init__(
        self,
        graph: GraphLookup | None = None,
        states: StateLookup | None = None,
        clock: Clock = utc_now,
        owner_epoch: int = 0,
        partitioned: bool = True,
    ) -> None:
        self.graph: GraphLookup = graph or StaticGraph()
        self.states: StateLookup = states or MemoryStates()
        self.clock = clock
        #: Since when this replica owns the delivered event's instance (the runtime's
        #: ``ktwin-owner-epoch`` header, see :class:`ktwin.OwnedStates`); 0 when not said.
        self.owner_epoch = owner_epoch
        #: Whether all events of the delivered event's instance reach this replica, one at a
        #: time (``ktwin up``); false for a delivery without ``ktwin-owner-epoch`` (a cluster),
        #: whose :class:`ktwin.OwnedStates` then keeps the state in the event store.
        self.partitioned = partitioned

    def with_owner_epoch(self, epoch: int) -> Context:
        """The same context for a delivery whose instance this replica owns since ``epoch``."""
        return Context(self.graph, self.states, self.clock, epoch)

    def unpartitioned(self) -> Context:
        """The same context for a delivery that nothing partitioned: other replicas may handle
        events of the same instance at the same time."""
        return Context(self.graph, self.states, self.clock, self.owner_epoch, partitioned=False)

    def now(self) -> dt.datetime:
        """Now, per the context's clock."""
        return self.clock()

    async def twin(self, interface: str, instance: str) -> TwinNode | None:
        """The graph node of ``instance``; ``None`` when it is not in the graph."""
        return await self.graph.twin(interface, instance)

    async def find_relationship(
        self, interface: str, instance: str, names: Sequence[str]
    ) -> Relationship | None:
        """The first relationship of ``instance`` whose name is one of ``names`` (in that order
        of preference); ``None`` when it has none of them. A twin missing from the graph is
        :class:`InvalidEvent`: redelivering cannot help, the model and the world disagree."""
        node = await self.graph.twin(interface, instance)
        if node is None:
            raise InvalidEvent(f"twin {interface}/{instance} is not in the twin graph")
        return next((r for n in names if (r := node.relationship(n)) is not None), None)

    async def relationship(self, interface: str, instance: str, name: str) -> Relationship:
        """The relationship ``name`` of ``instance``; missing → :class:`InvalidEvent`."""
        found = await self.find_relationship(interface, instance, [name])
        if found is None:
            raise InvalidEvent(
                f"relationship {name!r} not found for twin {interface}/{instance} in the twin graph"
            )
        return found

    async def latest(self, interface: str, instance: str) -> StoredState | None:
        """The latest stored state of ``instance``; ``None`` when nothing is stored."""
        return await self.states.latest(interface, instance)

    async def command_to_related(
        self, interface: str, instance: str, relationship: str, command: str, data: Any
    ) -> CloudEvent:
        """A command to the instance related to ``instance`` by ``relationship``, addressed to
        the relationship's interface (its ``source`` is that target instance)."""
        target = await self.relationship(interface, instance, relationship)
        return command_event(target.interface, command, target.instance, data)

    @property
    def sync(self) -> SyncContext:
        """The same lookups, blocking: for sync handlers (they run in worker threads)."""
        return SyncContext(self)


class SyncContext:
    """Blocking forms of :class:`Context`'s lookups, usable from the worker thread the SDK runs
    a sync handler in (they run on the service's event loop and wait for the answer)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await call()

        return anyio.from_thread.run(run)

    def now(self) -> dt.datetime:
        """Now, per the context's clock."""
        return self._ctx.now()

    def twin(self, interface: str, instance: str) -> TwinNode | None:
        """See :meth:`Context.twin`."""
        return self._run(lambda: self._ctx.twin(interface, instance))

    def find_relationship(
        self, interface: str, instance: str, names: Sequence[str]
    ) -> Relationship | None:
        """See :meth:`Context.find_relationship`."""
        return self._run(lambda: self._ctx.find_relationship(interface, instance, names))

    def relationship(self, interface: str, instance: str, name: str) -> Relationship:
        """See :meth:`Context.relationship`."""
        return self._run(lambda: self._ctx.relationship(interface, instance, name))

    def latest(self, interface: str, instance: str) -> StoredState | None:
        """See :meth:`Context.latest`."""
        return self._run(lambda: self._ctx.latest(interface, instance))

    def command_to_related(
        self, interface: str, instance: str, relationship: str, command: str, data: Any
    ) -> CloudEvent:
        """See :meth:`Context.command_to_related`."""
        return self._run(
            lambda: self._ctx.command_to_related(interface, instance, relationship, command, data)
        )
