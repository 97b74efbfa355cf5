"""Owners as Kube-OVN really writes them, end to end through `kube-ovn-gc run` (issue 10).

A real ovsdb-server, the fake API server over HTTP, the real clients. The shapes come from Kube-OVN's
sources: the multicast-querier and U2O IP CRs of v1.13.0-v1.15.0 (``createOrUpdateIPCR("", name, …,
"default", "", "")``: namespace ``default``, ``spec.podName`` = their own name, no ownerReference) and a
bare pod named like a StatefulSet slot (``podType: ""``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fakeapi import FakeApiServer
from kube_ovn_gc.cli import main
from ovsdb import OvsdbServer
from scenario import OLD, Cluster, seed_clean, settled_status


def gc(kubeconfig: Path, nb: OvsdbServer, *args: str) -> tuple[Result, dict[str, Any]]:
    result = CliRunner().invoke(main, [*args, "--kubeconfig", str(kubeconfig), "--ovn-nb", nb.unix_remote,
                                       "--output", "json", "--retry-attempts", "1"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, json.loads(result.stdout)


def subnet_owned(c: Cluster, name: str, subnet: str, address: str, *, port: bool) -> None:
    """What acquireMcastQuerierIP / acquireU2OIP (+ handleMcastQuerierChange) leave behind, v1.13.0-v1.15.0."""
    c.ip_cr(name, subnet, address, pod_name=name, namespace="default", node="")
    if port:
        c.port(name, subnet, address, pod_key=f"default/{name}")


@pytest.fixture
def cluster(kube_api: FakeApiServer, nb_server: OvsdbServer) -> Cluster:
    c = seed_clean(kube_api, nb_server)
    c.subnet("s1", "10.18.0.0/24", "10.18.0.1",
             status=settled_status(2, 251, "10.18.0.2-10.18.0.3", "10.18.0.4-10.18.0.254"))
    subnet_owned(c, "mcast-querier.s1", "s1", "10.18.0.2", port=True)
    subnet_owned(c, "u2o-interconnection.ovn-cluster.s1", "s1", "10.18.0.3", port=False)
    # The querier port of a live Subnet whose IP CR an earlier pass deleted: the port alone says pod=default/<name>.
    c.subnet("s3", "10.21.0.0/24", "10.21.0.1", status=settled_status(0, 253, "", "10.21.0.2-10.21.0.254"))
    c.port("mcast-querier.s3", "s3", "10.21.0.2", pod_key="default/mcast-querier.s3")
    # The querier of a Subnet deleted while the controller was down.
    subnet_owned(c, "mcast-querier.s2", "s2", "10.19.0.2", port=False)
    # A bare pod cache-1 (podType "") deleted while the StatefulSet cache lives on: not a slot.
    c.api.create("statefulsets", {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                  "metadata": {"name": "cache", "namespace": "default", "creationTimestamp": OLD},
                                  "spec": {"replicas": 3}}, namespace="default")
    c.address("default", "cache-1", "10.16.0.7")
    status = settled_status(6, 65527, "10.16.0.2-10.16.0.5,10.16.0.7,10.16.0.9",
                            "10.16.0.6,10.16.0.8,10.16.0.10-10.16.255.254")
    subnet = c.api.get("subnets", "ovn-default")
    assert subnet is not None
    c.api.put("subnets", {**subnet, "status": status})
    return c


def test_run_keeps_live_subnet_owned_addresses_and_collects_a_bare_pod_named_like_a_slot(
        cluster: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0, result.stderr
    ips = {a["name"]: a for a in report["actions"] if a["kind"] == "ip"}
    assert {n: a["reason"] for n, a in ips.items()} == {
        "cache-1.default": "owner Pod default/cache-1 not found",
        "mcast-querier.s2": "owner Subnet s2 not found",
    }
    assert all(a["outcome"] == "done" for a in ips.values())
    assert [a for a in report["actions"] if a["kind"] == "port"] == []
    left = {ip["metadata"]["name"]: ip["metadata"] for ip in kube_api.list("ips")}
    for name in ("mcast-querier.s1", "u2o-interconnection.ovn-cluster.s1"):
        assert "deletionTimestamp" not in left[name], name
    assert {"mcast-querier.s1", "mcast-querier.s3"} <= {p["name"] for p in nb_server.ports()}
    s1 = kube_api.get("subnets", "s1")
    assert s1 is not None and s1["status"]["v4usingIPs"] == 2  # its counts were right and stay so

    # A second pass has nothing left to do.
    again, second = gc(kubeconfig, nb_server, "check")
    assert again.exit_code == 0, second
