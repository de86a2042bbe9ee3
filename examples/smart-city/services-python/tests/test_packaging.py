"""What the image installs (``pip install ./sdk/python ./examples/smart-city/services-python``,
not editable) holds the SDK with its type marker and the services, and the services start from
there, away from this repository (no Docker engine here to build the image itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from ktwin.testing import free_port, wait_http

PROJECT = Path(__file__).resolve().parents[1]
SDK = PROJECT.parents[2] / "sdk" / "python"


def test_installed_packages_run_the_services(tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--target", str(site), str(SDK), str(PROJECT)],
        check=True, timeout=300,
    )
    assert (site / "ktwin" / "py.typed").is_file()
    away = tmp_path / "elsewhere"
    away.mkdir()
    for module in ("smart_city.neighborhood", "smart_city.device"):
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(site), "PORT": str(port),
               "KTWIN_GRAPH": '{"twinInstances":[]}'}
        where = subprocess.run(
            [sys.executable, "-c", f"import ktwin, {module} as m; print(ktwin.__file__, m.__file__)"],
            cwd=away, env=env, capture_output=True, text=True, check=True,
        ).stdout.split()
        assert all(path.startswith(str(site)) for path in where), where
        service = subprocess.Popen([sys.executable, "-m", module], cwd=away, env=env)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", 20, service)
            assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200
        finally:
            service.terminate()
            service.wait(30)
