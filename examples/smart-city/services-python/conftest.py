"""Tests of the Python smart-city services; this directory is on ``sys.path`` (the services'
package ``smart_city`` lives here, as when ``ktwin up`` runs them from it)."""

from __future__ import annotations

from pathlib import Path

#: This project.
PROJECT = Path(__file__).resolve().parent
#: The smart-city example it is part of (models and world).
EXAMPLE = PROJECT.parent
