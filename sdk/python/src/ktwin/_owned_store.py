""":class:`ktwin.OwnedStates` on replicas that nothing partitions (Knative on a cluster): the
state lives in the event store and every update is a read-modify-write guarded by the state's
version, as in the Rust SDK (``crates/sdk/src/owned_state/in_store.rs``), with the same stored
form, so Rust and Python replicas of one service read each other's writes.

An update reads the instance's latest state with its version, applies the event and writes the
result as a ``ktwin.store.<interface>`` event with ``If-Match: <version>``; the store commits
it only if no event was stored for the instance since the read, else the update reads and
applies again (at most :data:`ATTEMPTS` times, then :class:`Unavailable`, so that the event is
delivered again). The write's id is derived from the applied event's, so writing it again is a
no-op. Stored form, one member of the instance's state:
``"ktwinOwned": [{"state": <state>, "applied": [[<event id>, <result>], ...]}]``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import HandlerFailed, Unavailable
from .events import Fields, _typed, build_event, to_json
from .grammar import EventType

if TYPE_CHECKING:
    from .context import Context
    from .state import StoredState, VersionedStates

#: Member of an instance's stored state holding the state an ``OwnedStates`` owns.
OWNED_MEMBER = "ktwinOwned"
#: Reads and conditional writes per update before the event is handed back for redelivery.
ATTEMPTS = 8

T = TypeVar("T")
R = TypeVar("R")


def _versioned(ctx: Context) -> VersionedStates:
    states = ctx.states
    if not hasattr(states, "write_if") or not hasattr(states, "latest_versioned"):
        raise Unavailable(
            "owned state on unpartitioned replicas needs the event store: "
            "set KTWIN_EVENT_STORE"
        )
    return states  # type: ignore[return-value]


def _read(
    stored: StoredState | None, decode: Callable[[Fields], T], what: str
) -> tuple[T | None, list[list[Any]]]:
    """The owned state and applied events in ``stored``: its member, or, before any replica
    wrote one, the whole stored state with no event applied yet."""
    if stored is None:
        return None, []
    owned = stored.data.get(OWNED_MEMBER)
    if owned is None:
        return decode(stored.fields), []
    if not (isinstance(owned, list) and len(owned) == 1 and isinstance(owned[0], dict)):
        raise HandlerFailed(f"{what}: member {OWNED_MEMBER} is {owned!r}")
    state = owned[0].get("state")
    applied = owned[0].get("applied") or []
    return (None if state is None else decode(Fields(state))), list(applied)


def _write_time(now: dt.datetime, latest: dt.datetime | None) -> dt.datetime:
    """Now, but after the latest stored event, so that the store merges the write last."""
    if latest is not None and latest >= now:
        return latest + dt.timedelta(microseconds=1)
    return now


def _owned_id(interface: str, instance: str, event_id: str) -> str:
    digest = hashlib.sha256()
    for part in ("ktwin.owned", interface, instance, event_id):
        digest.update(part.encode())
        digest.update(b"\0")
    return str(uuid.UUID(bytes=digest.digest()[:16]))


async def update_in_store(
    ctx: Context,
    twin: tuple[str, str],
    event_id: str,
    update: Callable[[T | None], tuple[T, R]],
    codec: tuple[Callable[[Fields], T], Callable[[T], Any], int],
) -> R:
    """Applies ``update`` to the state of ``twin`` kept in the store, once per event whatever
    replica it reaches; a redelivery answers the stored result (as JSON values)."""
    interface, instance = twin
    decode, encode, remembered = codec
    states = _versioned(ctx)
    what = f"stored state of {interface}/{instance}"
    for _ in range(ATTEMPTS):
        stored = await states.latest_versioned(interface, instance)
        state, applied = _read(stored, decode, what)
        for applied_id, result in applied:
            if applied_id == event_id:
                answer: R = result
                return answer
        next_state, result = update(state)
        applied = [*applied, [event_id, to_json(result)]][-remembered:]
        data = {OWNED_MEMBER: [{"state": encode(next_state), "applied": applied}]}
        event = build_event(
            _typed(EventType.store, interface),
            instance,
            data,
            event_id=_owned_id(interface, instance, event_id),
            time=_write_time(ctx.now(), stored.time if stored else None),
        )
        if await states.write_if(event, stored.version if stored else None):
            return result
    raise Unavailable(
        f"the state of {interface}/{instance} changed under each of {ATTEMPTS} attempts to "
        f"apply event {event_id} (other replicas are updating it): deliver the event again"
    )
