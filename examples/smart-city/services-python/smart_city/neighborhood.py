"""Neighborhood service, on the Python SDK: keeps the worst AQI level its poles reported during
the last hour (command ``updateairqualityindex``) and stores it.

The same behaviour as the Rust service (``examples/smart-city/services/src/neighborhood.rs``),
and the same stored state, so either can take over from the other: the state records when each
level was last reported, the level is the most severe one seen within the hour, and the state is
owned by the service (:class:`ktwin.OwnedStates`), updated one command at a time per
neighborhood. Fixed from the original: its one-hour window never reset, so "worst" degraded to
"last", and its read-modify-write through the event store lost updates.

Run it: ``python3 -m smart_city.neighborhood`` (``PORT``, ``KTWIN_*`` from the platform).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from ktwin import (
    Context,
    EventType,
    Fields,
    InvalidEvent,
    OwnedStates,
    TwinEvent,
    TwinService,
    parse_time,
    serve,
    store_event,
)

NEIGHBORHOOD = "s4city-city-neighborhood"
UPDATE_AQI = "updateairqualityindex"
#: How far back the worst level is taken.
WINDOW = dt.timedelta(minutes=60)
#: AQI categories from least to most severe (the US EPA's).
LEVELS = (
    "GOOD",
    "MODERATE",
    "UNHEALTHY_FOR_SENSITIVE_GROUPS",
    "UNHEALTHY",
    "VERY_UNHEALTHY",
    "HAZARDOUS",
)


def severity(level: str) -> int:
    """The rank of ``level`` in :data:`LEVELS`; an unknown level raises ``ValueError``."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError(f"aqiLevel {level!r}: expected one of {', '.join(LEVELS)}") from None


@dataclass
class NeighborhoodState:
    """The stored state of a neighborhood."""

    aqi_level: str | None = None
    """The worst level reported within the last hour."""
    date_observed: dt.datetime | None = None
    """When that level was last reported."""
    date_modified: dt.datetime | None = None
    """When the state was last updated."""
    last_seen: dict[str, dt.datetime] = field(default_factory=dict)
    """When each level was last reported (older entries are ignored, not deleted: the event
    store's merge keeps keys anyway)."""

    @classmethod
    def from_fields(cls, fields: Fields) -> NeighborhoodState:
        """The state as stored (by this service or the Rust one)."""

        def time(key: str) -> dt.datetime | None:
            value = fields.get(key)
            return parse_time(value) if isinstance(value, str) else None

        seen = fields.get("aqiLevelLastSeen") or {}
        return cls(
            aqi_level=fields.get("aqiLevel"),
            date_observed=time("dateObserved"),
            date_modified=time("dateModified"),
            last_seen={
                level: parse_time(at)
                for level, at in seen.items()
                if level in LEVELS and isinstance(at, str)
            },
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form (levels of ``aqiLevelLastSeen`` in severity order, as Rust writes
        them)."""
        return {
            "aqiLevel": self.aqi_level,
            "dateObserved": self.date_observed,
            "dateModified": self.date_modified,
            "aqiLevelLastSeen": {
                level: self.last_seen[level] for level in LEVELS if level in self.last_seen
            },
        }


def record(previous: NeighborhoodState | None, level: str, now: dt.datetime) -> NeighborhoodState:
    """The state after ``level`` is reported at ``now``."""
    severity(level)
    last_seen = dict(previous.last_seen) if previous else {}
    last_seen[level] = now
    horizon = now - WINDOW
    recent = [(lvl, seen) for lvl, seen in last_seen.items() if seen > horizon]
    worst, observed = max(recent, key=lambda item: severity(item[0]), default=(level, now))
    return NeighborhoodState(worst, observed, now, last_seen)


service = TwinService("neighborhood")
states: OwnedStates[NeighborhoodState] = OwnedStates(
    NeighborhoodState.from_fields, encode=NeighborhoodState.to_json
)


@service.on(EventType.command(NEIGHBORHOOD, UPDATE_AQI))
async def update_air_quality_index(event: TwinEvent, ctx: Context) -> CloudEvent:
    """Records the reported level and stores the neighborhood's state."""
    level = event.fields().get("aqiLevel")
    if not isinstance(level, str):
        raise InvalidEvent(f"event {event.id}: aqiLevel {level!r}: expected a level name")
    try:
        severity(level)
    except ValueError as err:
        raise InvalidEvent(f"event {event.id}: {err}") from None
    now = ctx.now()

    def update(previous: NeighborhoodState | None) -> tuple[NeighborhoodState, dict[str, Any]]:
        state = record(previous, level, now)
        # The result is the stored form: JSON values, as a redelivery answers it on a cluster.
        return state, state.to_json()

    stored = await states.update(ctx, NEIGHBORHOOD, event.instance, event.id, update)
    return store_event(NEIGHBORHOOD, event.instance, stored)


if __name__ == "__main__":
    serve(service)
