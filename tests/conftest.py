"""Shared fixtures only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ovsdb import OvsdbServer


@pytest.fixture
def nb_server(tmp_path: Path) -> Iterator[OvsdbServer]:
    """A started ``ovsdb-server`` with an empty OVN Northbound database."""
    server = OvsdbServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()
