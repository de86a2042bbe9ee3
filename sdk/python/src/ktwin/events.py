"""Events a twin service receives (:class:`TwinEvent`) and emits (:func:`store_event`,
:func:`virtual_event`, :func:`real_event`, :func:`command_event`), as CloudEvents of the
``cloudevents`` SDK with ktwin's attributes: type from the grammar, ``source`` = the twin
instance, a time-ordered UUIDv7 ``id``, ``time`` and JSON data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import os
import struct
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from dateutil.parser import isoparse
from cloudevents.core.v1.event import CloudEvent

from .errors import HandlerFailed, InvalidEvent
from .grammar import (
    JSON_CONTENT_TYPE,
    SPEC_VERSION,
    EventKind,
    EventType,
    GrammarError,
    validate_name,
)


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so ids of one
    producer sort like their creation (what the Rust side uses for new events)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value &= ~(0xF000 << 64)  # version bits
    value |= 0x7000 << 64
    value &= ~(0xC000 << 48)  # variant bits
    value |= 0x8000 << 48
    return uuid.UUID(int=value)


def rfc3339(moment: dt.datetime) -> str:
    """``moment`` as RFC 3339, UTC written ``Z`` (as chrono writes it on the Rust side)."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time as written by either SDK (``Z`` or an offset, any number of fraction
    digits; beyond microseconds they are dropped). A time without zone is taken as UTC;
    anything else raises ``ValueError`` naming the text."""
    try:
        moment = isoparse(text)
    except (ValueError, OverflowError) as err:
        raise ValueError(f"{text!r} is not an RFC 3339 time: {err}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Fields):
        return value.to_dict()
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return dump(mode="json", by_alias=True)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(data: Any) -> Any:
    """``data`` as plain JSON values (dicts, lists, strings, numbers, booleans, None):
    datetimes become RFC 3339 strings, enums their values, dataclasses and pydantic models
    objects. Raises :class:`HandlerFailed` for anything else."""
    try:
        return json.loads(json.dumps(data, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise HandlerFailed(f"event data is not JSON: {err}") from err


def build_event(
    event_type: EventType,
    instance: str,
    data: Any = None,
    *,
    event_id: str | None = None,
    time: dt.datetime | None = None,
) -> CloudEvent:
    """A ktwin CloudEvent of ``event_type`` whose ``source`` is ``instance``."""
    try:
        validate_name("instance", instance)
    except GrammarError as err:
        raise HandlerFailed(f"cannot build event: {err}") from err
    attributes: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": event_id or str(uuid7()),
        "type": str(event_type),
        "source": instance,
        "time": time or dt.datetime.now(dt.timezone.utc),
    }
    if data is None:
        return CloudEvent(attributes, None)
    attributes["datacontenttype"] = JSON_CONTENT_TYPE
    value = to_json(data)
    # The SDK writes dicts as JSON; other JSON values go as their encoded text.
    payload = value if isinstance(value, dict) else json.dumps(value).encode()
    return CloudEvent(attributes, payload)


def _typed(make: Any, *names: str) -> EventType:
    try:
        result: EventType = make(*names)
        return result
    except GrammarError as err:
        raise HandlerFailed(f"cannot build event: {err}") from err


def store_event(interface: str, instance: str, data: Any) -> CloudEvent:
    """``ktwin.store.<interface>`` for ``instance``: the event store merges ``data`` into the
    instance's latest state."""
    return build_event(_typed(EventType.store, interface), instance, data)


def virtual_event(interface: str, instance: str, data: Any) -> CloudEvent:
    """``ktwin.virtual.<interface>`` for ``instance``: delivered to the device on
    ``ktwin/virtual/<interface>/<instance>``."""
    return build_event(_typed(EventType.virtual, interface), instance, data)


def real_event(interface: str, instance: str, data: Any) -> CloudEvent:
    """``ktwin.real.<interface>`` for ``instance``: a reading, as if its device sent it."""
    return build_event(_typed(EventType.real, interface), instance, data)


def command_event(interface: str, command: str, target: str, data: Any) -> CloudEvent:
    """``ktwin.command.<interface>.<command>`` executed by ``target``.

    The ``source`` of a command is the **target** instance, the one that executes it (the
    original Go SDK's convention, which ktwin's routing and SDKs use); the command name is
    lower-cased."""
    return build_event(_typed(EventType.command, interface, command), target, data)


def derived_digest(source: str, event_id: str, index: int) -> bytes:
    """SHA-256(source, 0, id, 0, index as 8 little-endian bytes) of the ``index``-th event
    emitted for the received event (``source``, ``event_id``): its first 16 bytes make the
    emitted event's id (:func:`derived_id`), the next 8 its span id in the trace."""
    digest = hashlib.sha256()
    digest.update(source.encode())
    digest.update(b"\0")
    digest.update(event_id.encode())
    digest.update(b"\0")
    digest.update(struct.pack("<Q", index))
    return digest.digest()


def derived_id(source: str, event_id: str, index: int) -> str:
    """The id of the ``index``-th event emitted for the received event (``source``,
    ``event_id``): the first 16 bytes of :func:`derived_digest` in UUID groups. The Rust SDK
    derives the same ids, so a redelivered event makes any service emit the same ids again and
    consumers can deduplicate."""
    return str(uuid.UUID(bytes=derived_digest(source, event_id, index)[:16]))


def with_id(event: BaseCloudEvent, event_id: str) -> CloudEvent:
    """A copy of ``event`` with another id."""
    attributes = dict(event.get_attributes())
    attributes["id"] = event_id
    return CloudEvent(attributes, event.get_data())


def event_json(event: BaseCloudEvent) -> Any:
    """The data of ``event`` as a JSON value (``None`` when it has none); data that is not
    JSON raises ``ValueError``."""
    data = event.get_data()
    if data is None or isinstance(data, dict):
        return data
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return json.loads(data) if data.strip() else None


class Fields(Mapping[str, Any]):
    """A JSON object whose keys are also matched case-insensitively: devices of the original
    platform send ``WindSpeed`` where services read ``windSpeed`` (the Go SDK decoded
    case-insensitively). An exact match wins over a case-insensitive one."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)
        self._folded: dict[str, str] = {}
        for key in self._data:
            self._folded.setdefault(key.casefold(), key)

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return self._data[key]
        return self._data[self._folded[key.casefold()]]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._data or key.casefold() in self._folded)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Fields({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        """A copy of the object with its keys as sent."""
        return dict(self._data)

    def number(self, key: str) -> float | None:
        """The number at ``key``, also accepted as a numeric string (devices disagree with
        their models); ``None`` when absent or null. Anything else raises
        :class:`InvalidEvent`."""
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            raise InvalidEvent(f"{key} {value!r}: expected a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise InvalidEvent(f"{key} {json.dumps(value)}: expected a number")


class TwinEvent:
    """A received ktwin event: kind, interface and command come from the CloudEvent type
    (``ktwin.<kind>.<interface>[.<command>]``), the instance from its ``source``. For commands
    the source is normally the instance that executes the command; commands of the original
    Python services, whose source is the sender, are recognised through the twin graph when
    dispatched and executed by the sender's related twin (see :attr:`sender`)."""

    def __init__(self, cloud_event: BaseCloudEvent, target: str | None = None) -> None:
        self.cloud_event = cloud_event
        self._target = target
        event_id = cloud_event.get_id()
        try:
            self.event_type = EventType.parse(cloud_event.get_type())
            validate_name("instance", cloud_event.get_source())
        except GrammarError as err:
            raise InvalidEvent(f"event {event_id}: {err}") from err

    @property
    def kind(self) -> EventKind:
        """Real, virtual, store or command."""
        return self.event_type.kind

    @property
    def interface(self) -> str:
        """The twin interface of the type."""
        return self.event_type.interface

    @property
    def instance(self) -> str:
        """The twin instance (``source``); for commands, the instance that executes it, also
        when the ``source`` is the sender (see :attr:`sender`)."""
        return self._target or self.cloud_event.get_source()

    @property
    def sender(self) -> str | None:
        """The instance that sent this command, when its ``source`` names the sender rather
        than the target (the original Python services' convention; the target,
        :attr:`instance`, was resolved through the sender's relationship in the twin graph).
        ``None`` for events whose ``source`` is the instance itself."""
        return self.cloud_event.get_source() if self._target else None

    def sent_to(self, target: str) -> TwinEvent:
        """This command as executed by ``target``, its ``source`` being the sender."""
        return TwinEvent(self.cloud_event, target)

    @property
    def command(self) -> str | None:
        """The lower-case command name of a command event."""
        return self.event_type.command_name

    @property
    def id(self) -> str:
        """The CloudEvent id."""
        return self.cloud_event.get_id()

    @property
    def time(self) -> dt.datetime | None:
        """The CloudEvent time, if the producer set one."""
        return self.cloud_event.get_time()

    @property
    def data(self) -> Any:
        """The data as a JSON value (``None`` when absent); not JSON → :class:`InvalidEvent`."""
        try:
            return event_json(self.cloud_event)
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidEvent(f"event {self.id} ({self.event_type}): data is not JSON: {err}")

    def fields(self) -> Fields:
        """The data as a JSON object with case-insensitive keys; anything but an object →
        :class:`InvalidEvent`."""
        data = self.data
        if not isinstance(data, dict):
            found = "no data" if data is None else type(data).__name__
            raise InvalidEvent(
                f"event {self.id} ({self.event_type}): data is {found}, expected a JSON object"
            )
        return Fields(data)

    def __repr__(self) -> str:
        return f"TwinEvent({self.event_type}, {self.instance!r}, id={self.id!r})"
