"""The ktwin event grammar, as the Rust crate ``ktwin-events`` defines it.

CloudEvent types (``ktwin.real.<iface>``, ``ktwin.virtual.<iface>``, ``ktwin.store.<iface>``,
``ktwin.command.<iface>.<command>``), device topics (``ktwin/real/<iface>/<instance>``), their
AMQP routing keys, and the rules names must follow. The test suite compares every name built
here with what ``ktwin events --format json`` prints, so both sides stay one grammar.
"""

from __future__ import annotations

import enum
import json
import unicodedata
from dataclasses import dataclass

#: The prefix of every ktwin CloudEvent type.
TYPE_PREFIX = "ktwin"
#: The CloudEvents spec version ktwin produces.
SPEC_VERSION = "1.0"
#: The content type of every ktwin event's data.
JSON_CONTENT_TYPE = "application/json"
#: Longest name accepted, in UTF-8 bytes: the Kubernetes object-name limit, since interfaces
#: and instances are Kubernetes resources.
MAX_NAME_LEN = 253


class GrammarError(ValueError):
    """A string that is not part of the ktwin event grammar."""


def _quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def validate_name(what: str, value: str) -> None:
    """Checks that ``value`` can fill the ``what`` slot ("interface", "instance", "command").

    Dots and slashes separate the parts of types, routing keys and topics, and ``#``, ``+``,
    ``*`` are subscription wildcards, so none may appear inside a name; otherwise parsing a
    formatted name would not give it back.
    """

    def fail(reason: str) -> GrammarError:
        return GrammarError(f"invalid {what} {_quoted(value)}: {reason}")

    if not value:
        raise fail("must not be empty")
    if len(value.encode("utf-8")) > MAX_NAME_LEN:
        raise fail(f"must be at most {MAX_NAME_LEN} characters")
    if "." in value or "/" in value:
        raise fail("must not contain '.' or '/' (they separate the parts of types and topics)")
    if any(c in value for c in "#+*"):
        raise fail("must not contain the wildcards '#', '+' or '*'")
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in value):
        raise fail("must not contain whitespace or control characters")


class EventKind(str, enum.Enum):
    """Which way an event flows: the second segment of its type."""

    REAL = "real"
    """Produced by a real (physical) twin, flowing to its virtual twin."""
    VIRTUAL = "virtual"
    """Produced by a virtual twin, flowing to the devices of the real twin."""
    STORE = "store"
    """A state to persist in the event store."""
    COMMAND = "command"
    """A command invoked on a virtual twin."""

    @property
    def type_prefix(self) -> str:
        """The type prefix shared by every event of this kind, e.g. ``ktwin.real.``."""
        return f"{TYPE_PREFIX}.{self.value}."


@dataclass(frozen=True, order=True)
class EventType:
    """A parsed ktwin CloudEvent type. Command names are canonical lower case."""

    kind: EventKind
    interface: str
    command_name: str | None = None

    def __post_init__(self) -> None:
        validate_name("interface", self.interface)
        if self.kind is EventKind.COMMAND:
            if self.command_name is None:
                raise GrammarError(self._shape_error(f"{TYPE_PREFIX}.command.{self.interface}"))
            validate_name("command", self.command_name)
            object.__setattr__(self, "command_name", self.command_name.lower())
        elif self.command_name is not None:
            raise GrammarError(
                f"a {self.kind.value} event type has no command ({self.command_name!r})"
            )

    @staticmethod
    def _shape_error(value: str) -> str:
        return (
            f"invalid event type {_quoted(value)}: expected ktwin.real.<iface>, "
            "ktwin.virtual.<iface>, ktwin.store.<iface> or ktwin.command.<iface>.<command>"
        )

    @classmethod
    def real(cls, interface: str) -> EventType:
        """``ktwin.real.<interface>``."""
        return cls(EventKind.REAL, interface)

    @classmethod
    def virtual(cls, interface: str) -> EventType:
        """``ktwin.virtual.<interface>``."""
        return cls(EventKind.VIRTUAL, interface)

    @classmethod
    def store(cls, interface: str) -> EventType:
        """``ktwin.store.<interface>``."""
        return cls(EventKind.STORE, interface)

    @classmethod
    def command(cls, interface: str, command: str) -> EventType:
        """``ktwin.command.<interface>.<command>``, the command name lower-cased."""
        return cls(EventKind.COMMAND, interface, command)

    @classmethod
    def parse(cls, value: str) -> EventType:
        """Parses a type; anything outside the grammar raises :class:`GrammarError`."""
        parts = value.split(".")
        if len(parts) not in (3, 4) or parts[0] != TYPE_PREFIX:
            raise GrammarError(cls._shape_error(value))
        try:
            kind = EventKind(parts[1])
        except ValueError:
            raise GrammarError(cls._shape_error(value)) from None
        has_command = len(parts) == 4
        if has_command != (kind is EventKind.COMMAND):
            raise GrammarError(cls._shape_error(value))
        return cls(kind, parts[2], parts[3] if has_command else None)

    def __str__(self) -> str:
        text = f"{TYPE_PREFIX}.{self.kind.value}.{self.interface}"
        return text if self.command_name is None else f"{text}.{self.command_name}"


class TopicKind(str, enum.Enum):
    """Direction of a device topic: devices publish ``real`` and subscribe to ``virtual``."""

    REAL = "real"
    VIRTUAL = "virtual"

    @property
    def mqtt_filter(self) -> str:
        """MQTT subscription filter for every topic of this kind, e.g. ``ktwin/real/#``."""
        return f"{TYPE_PREFIX}/{self.value}/#"

    def routing_key_pattern(self, interface: str) -> str:
        """AMQP binding pattern for every instance of ``interface``, e.g.
        ``ktwin.real.city-pole.#``."""
        validate_name("interface", interface)
        return f"{TYPE_PREFIX}.{self.value}.{interface}.#"


@dataclass(frozen=True, order=True)
class Topic:
    """The address of one device: ``ktwin/<kind>/<interface>/<instance>`` over MQTT, or
    ``ktwin.<kind>.<interface>.<instance>`` as an AMQP routing key."""

    kind: TopicKind
    interface: str
    instance: str

    def __post_init__(self) -> None:
        validate_name("interface", self.interface)
        validate_name("instance", self.instance)

    @classmethod
    def _parse(cls, value: str, separator: str, what: str, example: str) -> Topic:
        parts = value.split(separator)
        if len(parts) != 4 or parts[0] != TYPE_PREFIX or parts[1] not in ("real", "virtual"):
            raise GrammarError(f"invalid {what} {_quoted(value)}: expected {example}")
        return cls(TopicKind(parts[1]), parts[2], parts[3])

    @classmethod
    def parse_mqtt(cls, topic: str) -> Topic:
        """Parses ``ktwin/{real|virtual}/<interface>/<instance>``."""
        example = "ktwin/real/<iface>/<instance> or ktwin/virtual/<iface>/<instance>"
        return cls._parse(topic, "/", "MQTT topic", example)

    @classmethod
    def parse_routing_key(cls, key: str) -> Topic:
        """Parses ``ktwin.{real|virtual}.<interface>.<instance>``."""
        example = "ktwin.real.<iface>.<instance> or ktwin.virtual.<iface>.<instance>"
        return cls._parse(key, ".", "routing key", example)

    @property
    def mqtt_topic(self) -> str:
        """``ktwin/<kind>/<interface>/<instance>``."""
        return f"{TYPE_PREFIX}/{self.kind.value}/{self.interface}/{self.instance}"

    @property
    def routing_key(self) -> str:
        """``ktwin.<kind>.<interface>.<instance>``, as RabbitMQ's MQTT plugin maps the topic."""
        return f"{TYPE_PREFIX}.{self.kind.value}.{self.interface}.{self.instance}"

    @property
    def event_type(self) -> EventType:
        """The CloudEvent type of messages on this topic; the instance is their ``source``."""
        return EventType(EventKind(self.kind.value), self.interface)
