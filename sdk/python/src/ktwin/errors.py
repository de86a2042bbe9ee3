"""Why a handler did not process an event. The HTTP contract maps each error to the status that
tells Knative whether redelivering can help (as the Rust SDK's ``HandlerError`` does)."""

from __future__ import annotations


class HandlerError(Exception):
    """Base of the errors a handler raises on purpose; ``status`` is the HTTP answer."""

    status = 500


class InvalidEvent(HandlerError):
    """The event itself is wrong (type, data, a twin missing from the graph): redelivering the
    same bytes cannot succeed, so it is answered ``400`` (Knative does not retry it)."""

    status = 400


class Unavailable(HandlerError):
    """A dependency (event store, graph, broker) failed: answered ``503``, Knative
    redelivers."""

    status = 503


class HandlerFailed(HandlerError):
    """Anything else: answered ``500``, Knative redelivers. Any other exception a handler
    raises is answered the same way."""

    status = 500


class ConfigError(ValueError):
    """An environment variable with an unusable value."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"environment variable {name}={value!r}: expected {expected}")
        self.name = name
        self.value = value
        self.expected = expected
