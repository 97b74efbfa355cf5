"""Shared fixtures only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakeapi import FakeApiServer
from ovsdb import OvsdbServer, RaftCluster

NB_KINDS = ("standalone", "raft1")
"""How every NB test meets ovsdb-server: a standalone database, and a one-member Raft cluster as
Kube-OVN's ovn-central runs it (it answers a write only once committed, after later requests)."""


@pytest.fixture(params=NB_KINDS)
def nb_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OvsdbServer]:
    """A started ``ovsdb-server`` with an empty OVN Northbound database, of each kind in turn."""
    server = OvsdbServer(tmp_path / "nb", clustered=request.param == "raft1")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def raft3(tmp_path: Path) -> Iterator[RaftCluster]:
    """A started three-member OVN Northbound Raft cluster, empty; requests go to its leader."""
    cluster = RaftCluster(tmp_path / "raft")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def kube_api() -> Iterator[FakeApiServer]:
    """A started fake Kubernetes API server (KubeVirt served)."""
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kubeconfig(kube_api: FakeApiServer, tmp_path: Path) -> Path:
    return kube_api.write_kubeconfig(tmp_path / "kubeconfig")


PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert os.access(PUSHGATEWAY, os.X_OK), "prometheus-pushgateway missing: scripts/setup installs it"
    port = _free_port()
    log = (tmp_path_factory.mktemp("pushgateway") / "log").open("w")
    proc = subprocess.Popen([PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=",
                             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"pushgateway exited with {proc.returncode}"
            assert time.monotonic() < deadline, "pushgateway not ready in 15 s"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
