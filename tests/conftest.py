"""Shared fixtures only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakeapi import FakeApiServer
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


@pytest.fixture
def kube_api() -> Iterator[FakeApiServer]:
    """A started fake Kubernetes API server (KubeVirt served)."""
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kubeconfig(kube_api: FakeApiServer, tmp_path: Path) -> Path:
    return kube_api.write_kubeconfig(tmp_path / "kubeconfig")
