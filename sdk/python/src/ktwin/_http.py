"""What every HTTP client of the SDK sends to the platform."""

from __future__ import annotations


def bearer(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header of ``token`` (``KTWIN_TOKEN``), if any."""
    return {"Authorization": f"Bearer {token}"} if token else {}
