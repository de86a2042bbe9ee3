"""The Python variant of the smart-city project stays in step with the Rust one: same models,
world, defaults and services, except the services written in Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
#: Interfaces whose service this project runs in Python, and the module of each.
PYTHON_SERVICES = {
    "s4city-city-neighborhood": "smart_city.neighborhood",
    "ngsi-ld-city-device": "smart_city.device",
}


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def test_same_project_as_the_rust_example_but_the_python_services() -> None:
    python = load(PROJECT / "ktwin.yaml")
    rust = load(PROJECT.parent / "ktwin.yaml")
    assert (PROJECT / python["world"]).resolve() == (PROJECT.parent / rust["world"]).resolve()
    assert [(PROJECT / m).resolve() for m in python["models"]] == [
        (PROJECT.parent / m).resolve() for m in rust["models"]
    ]
    for key in ("name", "namespace", "stripPrefix", "defaults"):
        assert python[key] == rust[key], key
    assert python["services"].keys() == rust["services"].keys()
    for interface, settings in python["services"].items():
        if interface in PYTHON_SERVICES:
            assert "handler" not in settings, "a handler would run the Rust service in-process"
            assert settings["command"] == ["python3", "-m", PYTHON_SERVICES[interface]]
            assert (PROJECT / (PYTHON_SERVICES[interface].replace(".", "/") + ".py")).is_file()
            assert settings["image"].endswith("-python:0.2")
            rest = {k: v for k, v in settings.items() if k not in ("command", "image")}
            rust_rest = {
                k: v
                for k, v in rust["services"][interface].items()
                if k not in ("command", "image", "handler")
            }
            assert rest == rust_rest, interface
        else:
            assert settings == rust["services"][interface], interface
