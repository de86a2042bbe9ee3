"""Running the real platform and a service for tests (not imported by ``ktwin`` itself).

:class:`LocalPlatform` runs ``ktwin up`` on a copy of a project (event store, graph API, broker
ingress, MQTT, the project's services) on free ports; :class:`ServedApp` serves an ASGI app
with uvicorn in a background thread. Both are real servers: a service's tests talk to them over
HTTP exactly as in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import uvicorn

from . import _env
from ._http import bearer

#: Environment variable naming the ``ktwin`` binary the helpers run.
KTWIN_BIN = "KTWIN_BIN"
#: What ``ktwin up`` prints once every part of the platform has started.
READY_LINE = "ready; Ctrl-C stops"


def free_port() -> int:
    """A TCP port free on loopback at the time of the call."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on loopback at the time of the call (held together
    while they are chosen, so none is chosen twice)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def find_ktwin() -> str | None:
    """The ``ktwin`` binary: ``$KTWIN_BIN``, else ``ktwin`` on ``PATH``."""
    explicit = os.environ.get(KTWIN_BIN)
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("ktwin")


def wait_http(url: str, timeout: float, process: subprocess.Popen[Any] | None = None) -> None:
    """Polls ``url`` until it answers below 500; raises ``TimeoutError`` (or ``RuntimeError``
    when ``process`` exits first)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError as err:
            last = repr(err)
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s ({last})")


S = TypeVar("S", bound="_Stoppable")


class _Stoppable:
    """``with``: the server is stopped when the block ends."""

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class LocalPlatform(_Stoppable):
    """``ktwin up`` on a copy of ``project`` in a temporary directory (a copy of ``copy_root``,
    a directory containing ``project``, when the project refers to files beside it).

    ``services`` replaces entries of the project's ``services`` (YAML text of the mapping
    entries is not needed: pass a dict per interface, it is written as JSON, which is YAML).
    ``parameters`` are world parameters (``--set``). Output goes to ``log_path``. Auth is on,
    as by default: calls carry the admin token ``ktwin up`` created (:meth:`headers`), services
    started beside it get a token in :meth:`service_env`; ``insecure`` turns it off
    (``--insecure``), for tests that play a broker administrator or run services that send no
    token.
    """

    def __init__(
        self,
        project: Path,
        ktwin: str,
        copy_root: Path | None = None,
        parameters: Mapping[str, int] | None = None,
        services: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 120.0,
        insecure: bool = False,
    ) -> None:
        self.insecure = insecure
        self.workdir = Path(tempfile.mkdtemp(prefix="ktwin-up-"))
        root = copy_root or project
        ignored = shutil.ignore_patterns(".ktwin", "target", "__pycache__", ".pytest_cache")
        shutil.copytree(root, self.workdir / root.name, ignore=ignored)
        self.project = self.workdir / root.name / project.relative_to(root)
        if services:
            _override_services(self.project / "ktwin.yaml", services)
        self.port, self.mqtt_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "ktwin-up.log"
        self._stopped_output: str | None = None
        args = [ktwin, "up", str(self.project), "--port", str(self.port)]
        args += ["--mqtt-port", str(self.mqtt_port)]
        if insecure:
            args.append("--insecure")
        for name, value in (parameters or {}).items():
            args += ["--set", f"{name}={value}"]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        try:
            wait_http(f"{self.url}/health", ready_timeout, self.process)
            self.wait_for_output(READY_LINE, ready_timeout)
        except Exception as err:
            # The log goes with the work directory: keep its end, which says why.
            tail = "\n".join(self.stop().splitlines()[-20:])
            raise RuntimeError(f"{err}; ktwin up's output ended with:\n{tail}") from err

    @property
    def token(self) -> str | None:
        """The admin token ``ktwin up`` created on first start (none with ``insecure``)."""
        if self.insecure:
            return None
        path = self.project / ".ktwin" / "auth" / "admin.token"
        return path.read_text().strip()

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header of the admin token (empty with ``insecure``)."""
        return bearer(self.token)

    @property
    def broker_url(self) -> str:
        """The broker ingress (what ``KTWIN_BROKER`` points at)."""
        return f"{self.url}/api/v1/broker"

    @property
    def graph_url(self) -> str:
        """The graph API (what ``KTWIN_GRAPH_URL`` points at)."""
        return f"{self.url}/api/v1/twin-graph"

    def service_env(self) -> dict[str, str]:
        """The platform variables a twin service of this platform gets."""
        env = {
            _env.BROKER: self.broker_url,
            _env.EVENT_STORE: self.url,
            _env.GRAPH_URL: self.graph_url,
        }
        if self.token is not None:
            env[_env.TOKEN] = self.token
        return env

    def paged(self, path: str, page: int = 1000) -> list[Any]:
        """Every item of a paged list of the event store (``GET {path}?limit=…``, following
        the ``x-next-cursor`` header)."""
        items: list[Any] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": page}
            if cursor is not None:
                params["cursor"] = cursor
            response = httpx.get(
                f"{self.url}{path}", params=params, headers=self.headers(), timeout=30
            )
            response.raise_for_status()
            items.extend(response.json())
            cursor = response.headers.get("x-next-cursor")
            if cursor is None:
                return items

    def events(self) -> list[dict[str, Any]]:
        """Every stored event (``{"id", "type", "source", "time", "eventData", …}``)."""
        return self.paged("/api/v1/twin-events")

    def twins(self, interface: str) -> list[dict[str, Any]]:
        """The latest state of every stored instance of ``interface``
        (``{"instanceId", "state", …}``)."""
        return self.paged(f"/api/v1/twins/{interface}")

    def latest(self, interface: str, instance: str) -> dict[str, Any] | None:
        """The latest state of one instance, ``None`` when nothing is stored."""
        response = httpx.get(
            f"{self.url}/api/v1/twin-events/{interface}/{instance}/latest",
            headers=self.headers(),
            timeout=30,
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def wait_for_output(self, text: str, timeout: float) -> None:
        """Waits until ``ktwin up`` printed ``text``; raises ``TimeoutError`` with the output."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise TimeoutError(f"ktwin up did not print {text!r}:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        """What ``ktwin up`` printed so far."""
        if self._stopped_output is not None:
            return self._stopped_output
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> str:
        """Stops ``ktwin up`` like Ctrl-C (queued events are handled first); returns its
        output. Later calls return the same output."""
        if self._stopped_output is not None:
            return self._stopped_output
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._stopped_output = self.output()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self._stopped_output



def _override_services(project_file: Path, services: Mapping[str, Mapping[str, Any]]) -> None:
    """Rewrites the ``services`` entries of ``project_file`` named in ``services``. The file is
    edited as text (no YAML library needed): each replaced entry is the block that starts at
    ``  <name>:`` under ``services:`` and runs until the next line indented as little."""
    lines = project_file.read_text().splitlines()
    out: list[str] = []
    skipping = False
    for line in lines:
        name = line.strip().rstrip(":")
        starts_entry = line.startswith("  ") and not line.startswith("   ") and line.endswith(":")
        if skipping and (line.startswith("   ") or not line.strip()):
            continue
        skipping = False
        if starts_entry and name in services:
            out.append(f"  {name}: {json.dumps(dict(services[name]))}")
            skipping = True
            continue
        out.append(line)
    missing = [n for n in services if not any(l.startswith(f"  {n}: ") for l in out)]
    if missing:
        raise ValueError(f"{project_file} has no services entry for {missing}")
    project_file.write_text("\n".join(out) + "\n")


class ServedApp(_Stoppable):
    """An ASGI app served by uvicorn on a free loopback port in a background thread."""

    def __init__(self, app: Any, ready_timeout: float = 10.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, lifespan="on", log_config=None,
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_http(f"{self.url}/health", ready_timeout)

    def stop(self) -> None:
        """Stops the server (in-flight requests finish first)."""
        self.server.should_exit = True
        self.thread.join(timeout=30)


