"""pytest fixtures for testing twin services against the real platform (registered as a pytest
plugin when the ``ktwin`` package is installed).

``ktwin_bin``: the ``ktwin`` binary (``$KTWIN_BIN``, else ``ktwin`` on ``PATH``). When it is
missing the test is skipped with a loud message, or fails when ``CI`` is set (CI must run
every test).
"""

from __future__ import annotations

import os
import sys

import pytest

from .testing import KTWIN_BIN, find_ktwin


def require(what: str) -> None:
    """Skips the test loudly because ``what`` is missing; fails instead when ``CI`` is set."""
    message = f"SKIPPED: {what}"
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI is set, so this fails instead of skipping)")
    print(f"\n!!! {message}", file=sys.stderr)
    pytest.skip(message)


@pytest.fixture(scope="session")
def ktwin_bin() -> str:
    """The ``ktwin`` binary the tests run."""
    found = find_ktwin()
    if found is None:
        require(
            f"the ktwin binary was not found: build it (`cargo build -p ktwin`) and set "
            f"{KTWIN_BIN}=target/debug/ktwin, or put ktwin on PATH"
        )
    assert found is not None
    return found
