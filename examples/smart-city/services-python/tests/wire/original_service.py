"""A twin service that makes, on the wire, exactly the calls the original KTWIN's Python services
made (Flask + requests + the CloudEvents SDK 1.x; see ``docs/python-sdk.md``, "Wire
compatibility"), and records every answer the platform gives, one JSON line each, in
``$WIRE_LOG``. It uses only the standard library and httpx, so what it sends is spelled out
here rather than left to library versions.

Per device event received (``POST /``, answered ``204`` like the originals, whatever happens):

1. ``GET $KTWIN_EVENT_STORE/api/v1/twin-events/<iface>/<never-seen>/latest`` (expects 404);
2. the device service's battery rule: below 15 % the measurement frequency becomes 60 and the
   device JSON (with ``dateObserved`` = local time, no zone) is posted to ``$KTWIN_BROKER`` as a
   **structured** ``ktwin.virtual.<iface>`` event (expects 202);
3. ``POST $KTWIN_EVENT_STORE/api/v1/twin-events``: the **received** event re-posted in binary
   mode with the same id and type and the changed data (expects 202);
4. ``GET …/<iface>/<instance>/latest``: parsed as a binary CloudEvent (expects 200);
5. a command in the Python SDK's convention (``source`` = the **sender**, the parking spot) to
   ``ktwin.command.ngsi-ld-city-offstreetparking.updatevehiclecount`` (expects 202);
6. the parking service's own state write: type ``ktwin.<iface>`` (two segments) posted to the
   event store in binary mode (the original answered 202).

At start, like the services that used relationships: ``GET $KTWIN_GRAPH_URL`` (the whole
graph, expects 200).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

LOG_LOCK = threading.Lock()
CLIENT = httpx.Client(timeout=10)
SPOT = "ngsi-ld-city-offstreetparkingspot-nb001-ofp0001-s0001"


def record(step: str, response: httpx.Response | None = None, **extra: Any) -> None:
    """Appends one answer (status, CloudEvent headers, body) to ``$WIRE_LOG``."""
    entry: dict[str, Any] = {"step": step, **extra}
    if response is not None:
        entry["status"] = response.status_code
        entry["headers"] = {
            k: v for k, v in response.headers.items() if k.startswith("ce-") or k == "content-type"
        }
        entry["body"] = response.text
    with LOG_LOCK, open(os.environ["WIRE_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")


def structured(ce_type: str, source: str, data: Any) -> httpx.Response:
    """``to_structured(CloudEvent({"type", "source"}, data))`` of the CloudEvents SDK 1.x,
    posted to the broker: a fresh UUID4 id, the time as ``isoformat()`` of an aware UTC time."""
    body = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": ce_type,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(),
        "data": data,
    }
    return CLIENT.post(
        os.environ["KTWIN_BROKER"],
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(body),
    )


def binary(attributes: dict[str, str], data: Any) -> httpx.Response:
    """``to_binary(event)`` of the CloudEvents SDK 1.x, posted to the event store."""
    headers = {f"ce-{name}": value for name, value in attributes.items()}
    headers["content-type"] = "application/json"
    return CLIENT.post(
        f"{os.environ['KTWIN_EVENT_STORE']}/api/v1/twin-events",
        headers=headers,
        content=json.dumps(data),
    )


def latest(interface: str, instance: str) -> httpx.Response:
    store = os.environ["KTWIN_EVENT_STORE"]
    return CLIENT.get(f"{store}/api/v1/twin-events/{interface}/{instance}/latest")


def handle(headers: dict[str, str], body: bytes) -> None:
    """The calls of the original services for one received device event."""
    ce = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    data = json.loads(body)
    interface, instance = ce["type"].split(".")[2], ce["source"]
    record("received", ce=ce, content_type=headers.get("content-type"), data=data)
    record("latest-missing", latest(interface, f"{instance}-never-seen"))
    data["dateObserved"] = dt.datetime.now().isoformat()
    if data.get("batteryLevel", 100) < 15:
        data["measurementFrequency"] = 60
        virtual = structured(f"ktwin.virtual.{interface}", instance, data)
        record("virtual", virtual, sent=data)
    record("store-same-id", binary({**ce, "specversion": "1.0"}, data))
    record("latest", latest(interface, instance))
    command = structured(
        "ktwin.command.ngsi-ld-city-offstreetparking.updatevehiclecount",
        SPOT,
        {"vehicleEntranceCount": 1},
    )
    record("command", command)
    parking_state = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": "ktwin.ngsi-ld-city-offstreetparking",
        "source": "ngsi-ld-city-offstreetparking-nb001-ofp0001",
        "time": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    record("store-two-segments", binary(parking_state, {"occupiedSpotNumber": 1}))


class Handler(BaseHTTPRequestHandler):
    """Flask's ``@app.route("/", methods=["POST"])``: every outcome is ``204``."""

    def do_GET(self) -> None:
        # Flask: 405 for GET / and 404 elsewhere (the platform's readiness probe on /health
        # takes any answer below 500 as "serving").
        self.send_response(405 if self.path == "/" else 404)
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            handle(headers, body)
        except Exception as err:  # the originals caught and logged everything
            record("error", error=repr(err))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(format % args + "\n")


def main() -> None:
    graph = CLIENT.get(os.environ["KTWIN_GRAPH_URL"])
    record("graph", graph)
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
