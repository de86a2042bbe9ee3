"""Device service, on the Python SDK: battery-driven measurement frequency. A device below 15 %
battery should report every 60 s, otherwise every 15 s; when the device reports a different
``measurementFrequency``, a virtual event tells it the new one (over MQTT,
``ktwin/virtual/ngsi-ld-city-device/<instance>``). The reading is stored with the frequency and
``dateObserved``.

The same behaviour as the Rust service (``examples/smart-city/services/src/device.rs``). Fixed
from the original: a battery level of exactly 15 left the frequency unchanged and 0 (an empty
battery) was ignored as "absent"; the virtual event was re-sent on every reading even when the
device already used the right frequency, and carried the whole device JSON instead of the
setting. ``batteryLevel`` is accepted as a number or a numeric string (the model declares a
string, devices send numbers).

Run it: ``python3 -m smart_city.device`` (``PORT``, ``KTWIN_*`` from the platform).
"""

from __future__ import annotations

from cloudevents.core.v1.event import CloudEvent

from ktwin import (
    Context,
    EventType,
    InvalidEvent,
    TwinEvent,
    TwinService,
    serve,
    store_event,
    virtual_event,
)

DEVICE = "ngsi-ld-city-device"
#: Below this battery level (%) the device saves power.
LOW_BATTERY = 15.0
#: Measurement period (s) with enough battery.
NORMAL_PERIOD_S = 15
#: Measurement period (s) on low battery.
SAVING_PERIOD_S = 60


def measurement_frequency(battery_level: float) -> int:
    """The measurement period a device with ``battery_level`` % should use."""
    return SAVING_PERIOD_S if battery_level < LOW_BATTERY else NORMAL_PERIOD_S


service = TwinService("device")


@service.on(EventType.real(DEVICE))
async def reading(event: TwinEvent, ctx: Context) -> list[CloudEvent]:
    """Stores the reading; tells the device its new period when it must change."""
    fields = event.fields()
    level = fields.number("batteryLevel")
    reported = fields.get("measurementFrequency")
    if reported is not None and (
        isinstance(reported, bool) or not isinstance(reported, (int, float))
    ):
        raise InvalidEvent(
            f"event {event.id}: measurementFrequency {reported!r}: expected a number"
        )
    data = {**fields.to_dict(), "dateObserved": ctx.now()}
    out: list[CloudEvent] = []
    if level is not None:
        frequency = measurement_frequency(level)
        if reported != frequency:
            out.append(
                virtual_event(DEVICE, event.instance, {"measurementFrequency": frequency})
            )
        data["measurementFrequency"] = frequency
    return [store_event(DEVICE, event.instance, data), *out]


if __name__ == "__main__":
    serve(service)
