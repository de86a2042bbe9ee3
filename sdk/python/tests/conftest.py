"""The real platform the SDK's tests talk to: ``ktwin up`` on the smart-city example (one
neighborhood), started once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ktwin.testing import LocalPlatform

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "smart-city"


@pytest.fixture(scope="session")
def platform(ktwin_bin: str) -> Iterator[LocalPlatform]:
    with LocalPlatform(EXAMPLE, ktwin_bin, parameters={"neighborhoods": 1}) as running:
        yield running


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
