"""SDK for ktwin twin services in Python.

A twin service is a :class:`TwinService` whose handlers declare the event types they subscribe
to and return the events to emit, built with :func:`store_event`, :func:`virtual_event`,
:func:`real_event`, :func:`command_event` or :meth:`Context.command_to_related`. Each handler
gets the :class:`TwinEvent` (kind, interface, instance and command parsed from the CloudEvent
type and source) and a :class:`Context` (twin graph, latest state of any twin, clock).
:func:`serve` runs the service under the Knative contract (HTTP on ``$PORT``, CloudEvents in,
``2xx`` done, non-``2xx`` redeliver, emitted events in the reply or posted to
``KTWIN_BROKER``); :class:`TwinApp` is the same as an ASGI app.

Command convention: the ``source`` of a command event is the **target** instance, the one that
executes the command (as in the original Go SDK and ktwin's Rust SDK). Commands of the original
Python services, whose ``source`` is the sender, are recognised through the twin graph and reach
the sender's related twin as the original platform delivered them (:mod:`ktwin.command`).

Traces: every emitted event continues the W3C trace of the event it answers (``traceparent``
and ``tracestate`` extension attributes, see :mod:`ktwin.trace`), so one device message's
chain of events can be followed across services of either language (``ktwin trace``).
"""

from .app import TwinApp
from .broker import BrokerClient, RetryPolicy, to_binary
from .config import ServeConfig
from .context import Context, SyncContext
from .errors import ConfigError, HandlerError, HandlerFailed, InvalidEvent, Unavailable
from .events import (
    Fields,
    TwinEvent,
    build_event,
    command_event,
    derived_id,
    parse_time,
    real_event,
    store_event,
    virtual_event,
)
from .grammar import (
    JSON_CONTENT_TYPE,
    SPEC_VERSION,
    TYPE_PREFIX,
    EventKind,
    EventType,
    GrammarError,
    Topic,
    TopicKind,
    validate_name,
)
from .graph import GraphCachePolicy, GraphLookup, HttpGraph, Relationship, StaticGraph, TwinNode
from .serve import serve
from .service import TwinService
from ._owned_store import OWNED_MEMBER
from .state import (
    HttpEventStore,
    MemoryStates,
    OwnedStates,
    StateLookup,
    StoredState,
    VersionedStates,
)
from .trace import EventTrace, event_trace

__all__ = [
    "JSON_CONTENT_TYPE",
    "SPEC_VERSION",
    "TYPE_PREFIX",
    "BrokerClient",
    "ConfigError",
    "Context",
    "EventKind",
    "EventTrace",
    "EventType",
    "Fields",
    "GrammarError",
    "GraphCachePolicy",
    "GraphLookup",
    "HandlerError",
    "HandlerFailed",
    "HttpEventStore",
    "HttpGraph",
    "InvalidEvent",
    "MemoryStates",
    "OwnedStates",
    "OWNED_MEMBER",
    "VersionedStates",
    "Relationship",
    "RetryPolicy",
    "ServeConfig",
    "StateLookup",
    "StaticGraph",
    "StoredState",
    "SyncContext",
    "Topic",
    "TopicKind",
    "TwinApp",
    "TwinEvent",
    "TwinNode",
    "TwinService",
    "Unavailable",
    "build_event",
    "command_event",
    "derived_id",
    "event_trace",
    "parse_time",
    "real_event",
    "serve",
    "store_event",
    "to_binary",
    "validate_name",
    "virtual_event",
]
