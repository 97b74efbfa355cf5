"""`kube-ovn-gc doctor` end to end: a real ovsdb-server, the fake API server over HTTP, the real clients.

A consistent cluster yields nothing; each finding kind is introduced on it one at a time; the doctor
never writes; a port written between the NB and the Kubernetes reads is not reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fakeapi import FakeApiServer
from kube_ovn_gc.cli import main
from ovsdb import OvsdbServer
from scenario import OLD, Cluster, ago, mac_for, pod_only, seed_clean, seed_doctor, settled_status, terminating

RESOURCES = ("ips", "subnets", "pods", "nodes", "statefulsets", "virtualmachines", "virtualmachineinstances")


def doctor(kubeconfig: Path, nb: OvsdbServer | str, *args: str, output: str = "json") -> tuple[Result, Any]:
    remote = nb if isinstance(nb, str) else nb.unix_remote
    result = CliRunner().invoke(main, ["doctor", "--kubeconfig", str(kubeconfig), "--ovn-nb", remote,
                                       "--output", output, "--retry-attempts", "1", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, json.loads(result.stdout) if output == "json" else result.stdout


def world(api: FakeApiServer, nb: OvsdbServer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return {r: api.list(r) for r in RESOURCES}, sorted(nb.ports(), key=lambda p: p["uuid"])


def objects(finding: dict[str, Any]) -> list[str]:
    """``Kind ns/name`` (``!`` marks a missing one) for compact assertions."""
    out = []
    for o in finding["objects"]:
        where = f"{o['namespace']}/{o['name']}" if o.get("namespace") else o["name"]
        out.append(f"{o['kind']} {where}{'!' if o.get('missing') else ''}")
    return out


def port_uuid(nb: OvsdbServer, name: str) -> str:
    return str(next(p["uuid"] for p in nb.ports() if p["name"] == name))


@pytest.fixture
def clean(kube_api: FakeApiServer, nb_server: OvsdbServer) -> Cluster:
    return seed_clean(kube_api, nb_server)


def test_a_consistent_cluster_yields_nothing(clean: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer,
                                            kubeconfig: Path) -> None:
    result, report = doctor(kubeconfig, nb_server)
    assert result.exit_code == 0, report
    assert report["exit_code"] == 0 and report["findings"] == [] and report["counts"] == {}
    assert report["inventory"]["ips"] == 7 and report["inventory"]["logical_switch_ports"] == 7
    text, _ = doctor(kubeconfig, nb_server, output="text")
    assert text.exit_code == 0
    assert text.stdout.startswith("consistent: nothing found (read 7 ports, 7 IPs, 5 pods, 1 nodes, 2 VMs")


# --- one inconsistency at a time ---------------------------------------------------------------


def leak_a_pod(c: Cluster) -> None:
    c.api.delete("pods", "web-1", "default")


def stray_port(c: Cluster) -> None:
    c.port("old-pod.default", "ovn-default", "10.16.0.8", pod_key="default/old-pod")


def stale_status(c: Cluster) -> None:
    subnet = c.api.get("subnets", "ovn-default")
    assert subnet is not None
    subnet["status"]["v4usingIPs"] = 9
    c.api.put("subnets", subnet)


def lose_a_pods_port(c: Cluster) -> None:
    c.nb.delete_ports([port_uuid(c.nb, "web-2.default")])


def lose_a_stopped_vms_port(c: Cluster) -> None:
    c.nb.delete_ports([port_uuid(c.nb, "vm-stopped.default")])


def lose_a_nodes_port(c: Cluster) -> None:
    c.nb.delete_ports([port_uuid(c.nb, "node-node1")])


def allocate_a_pod_without_addresses(c: Cluster) -> None:
    pod_only(c, "default", "web-3", "10.16.0.11")


def rewrite_a_ports_address(c: Cluster) -> None:
    c.nb.set_port(port_uuid(c.nb, "web-2.default"), addresses=[f"{mac_for('10.16.0.3')} 10.16.0.33"])


def move_a_port_to_another_switch(c: Cluster) -> None:
    uuid = port_uuid(c.nb, "web-2.default")
    c.nb.delete_ports([uuid])
    c.port("web-2.default", "join", "10.16.0.3", pod_key="default/web-2")


def hand_out_an_address_twice(c: Cluster) -> None:
    c.pod("default", "api-1", "10.16.0.2")


def leave_an_ip_cr_terminating(c: Cluster) -> None:
    terminating(c, "ips", "web-2.default", ago(hours=2))


def leave_a_subnet_terminating(c: Cluster) -> None:
    c.subnet("legacy", "10.20.0.0/24", "10.20.0.1",
             status=settled_status(1, 252, "10.20.0.2", "10.20.0.3-10.20.0.254"))
    c.pod("default", "legacy-app", "10.20.0.2", subnet="legacy")
    terminating(c, "subnets", "legacy", ago(hours=2))


def write_an_unreadable_ip_cr(c: Cluster) -> None:
    c.api.put("ips", {"apiVersion": "kubeovn.io/v1", "kind": "IP",
                      "metadata": {"name": "broken.default", "creationTimestamp": "2026-01-01T00:00:00Z"},
                      "spec": {"podName": "broken", "namespace": "default", "v4IpAddress": "10.16.0.77"}})


CASES: list[tuple[Callable[[Cluster], None], str, list[str], set[str]]] = [
    # (break the cluster, the kind reported, its objects, other kinds the change necessarily brings)
    (leak_a_pod, "leaked-ip", ["IP web-1.default", "LSP web-1.default"], {"status-drift"}),
    (stray_port, "leaked-port", ["LSP old-pod.default"], set()),
    (stale_status, "status-drift", ["Subnet ovn-default"], set()),
    (lose_a_pods_port, "missing", ["Pod default/web-2", "LSP web-2.default!"], set()),
    (lose_a_stopped_vms_port, "missing", ["VirtualMachine default/vm-stopped", "LSP vm-stopped.default!"], set()),
    (lose_a_nodes_port, "missing", ["Node node1", "LSP node-node1!"], set()),
    (allocate_a_pod_without_addresses, "missing", ["Pod default/web-3", "IP web-3.default!", "LSP web-3.default!"],
     set()),
    (rewrite_a_ports_address, "mismatch", ["IP web-2.default", "LSP web-2.default"], set()),
    (move_a_port_to_another_switch, "mismatch", ["IP web-2.default", "LSP web-2.default"], set()),
    (hand_out_an_address_twice, "duplicate-address",
     ["IP api-1.default", "IP web-1.default", "LSP api-1.default", "LSP web-1.default"], {"status-drift"}),
    (leave_an_ip_cr_terminating, "stuck", ["IP web-2.default", "LSP web-2.default"], {"status-drift"}),
    (leave_a_subnet_terminating, "stuck", ["Subnet legacy", "IP legacy-app.default"], set()),
    (write_an_unreadable_ip_cr, "unjudged", ["IP broken.default"], set()),
]


@pytest.mark.parametrize(("breakage", "kind", "involved", "also"), CASES, ids=[c[0].__name__ for c in CASES])
def test_each_finding_kind(clean: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path,
                           breakage: Callable[[Cluster], None], kind: str, involved: list[str],
                           also: set[str]) -> None:
    breakage(clean)
    before = world(kube_api, nb_server)
    kube_api.reset_log()
    result, report = doctor(kubeconfig, nb_server)
    assert result.exit_code == 1, report
    found = [f for f in report["findings"] if f["kind"] == kind]
    assert len(found) == 1, report["findings"]
    assert objects(found[0]) == involved
    assert found[0]["message"] and found[0]["remedy"]
    assert set(report["counts"]) == {kind} | also, report["findings"]
    # Read-only: every request was a read, and both sides are as they were.
    assert {r.method for r in kube_api.requests} == {"GET"}
    assert world(kube_api, nb_server) == before


def test_stuck_after_sets_the_threshold(clean: Cluster, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    leave_a_subnet_terminating(clean)
    assert doctor(kubeconfig, nb_server, "--stuck-after", "3h")[0].exit_code == 0
    result, report = doctor(kubeconfig, nb_server, "--stuck-after", "90m")
    assert result.exit_code == 1
    assert report["findings"][0]["remedy"] == ("move or delete what still uses it: "
                                               "kubectl delete pod -n default legacy-app")


# --- legal shapes Kube-OVN writes: nothing to report (issue 10) --------------------------------------


def subnet_owned_addresses(c: Cluster) -> None:
    """v1.13.0-v1.15.0 acquireMcastQuerierIP / acquireU2OIP: namespace default, podName = own name, no owner."""
    c.subnet("s1", "10.18.0.0/24", "10.18.0.1",
             status=settled_status(2, 251, "10.18.0.2-10.18.0.3", "10.18.0.4-10.18.0.254"))
    c.ip_cr("mcast-querier.s1", "s1", "10.18.0.2", pod_name="mcast-querier.s1", namespace="default", node="")
    c.port("mcast-querier.s1", "s1", "10.18.0.2", pod_key="default/mcast-querier.s1")
    c.ip_cr("u2o-interconnection.ovn-cluster.s1", "s1", "10.18.0.3", pod_name="u2o-interconnection.ovn-cluster.s1",
            namespace="default", node="")


def cidr_less_underlay_subnet(c: Cluster) -> None:
    """A Subnet on a vlan without cidrBlock: Kube-OVN computes no status for it."""
    c.api.create("subnets", {"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                             "metadata": {"name": "underlay", "creationTimestamp": OLD},
                             "spec": {"vlan": "vlan10", "provider": "ovn", "vpc": "ovn-cluster"}, "status": {}})


def ipam_only_nad_in_namespace_ovn(c: Cluster) -> None:
    """A macvlan NAD ``mv1`` with Kube-OVN IPAM in namespace ``ovn``: provider ``mv1.ovn``, an IP CR, no port."""
    c.subnet("mv", "192.168.7.0/24", "192.168.7.1", provider="mv1.ovn",
             status=settled_status(1, 252, "192.168.7.2", "192.168.7.3-192.168.7.254"))
    attach(c, "default", "web-1", "mv1.ovn", "mv", "192.168.7.2")


def attach(c: Cluster, namespace: str, name: str, provider: str, subnet: str, address: str) -> None:
    """An attachment as kube-ovn annotates it on the pod, and its IP CR."""
    the_pod = c.api.get("pods", name, namespace)
    assert the_pod is not None
    the_pod["metadata"]["annotations"].update({f"{provider}.kubernetes.io/allocated": "true",
                                               f"{provider}.kubernetes.io/ip_address": address,
                                               f"{provider}.kubernetes.io/mac_address": mac_for(address),
                                               f"{provider}.kubernetes.io/logical_switch": subnet})
    c.api.put("pods", the_pod)
    c.ip_cr(f"{name}.{namespace}.{provider}", subnet, address, pod_name=name, namespace=namespace)


LEGAL = [subnet_owned_addresses, cidr_less_underlay_subnet, ipam_only_nad_in_namespace_ovn]


@pytest.mark.parametrize("shape", LEGAL, ids=[f.__name__ for f in LEGAL])
def test_legal_shapes_are_consistent(clean: Cluster, nb_server: OvsdbServer, kubeconfig: Path,
                                     shape: Callable[[Cluster], None]) -> None:
    shape(clean)
    result, report = doctor(kubeconfig, nb_server)
    assert (result.exit_code, report["findings"]) == (0, [])


def test_a_nad_attached_twice_is_missing_the_port_it_lacks(clean: Cluster, nb_server: OvsdbServer,
                                                           kubeconfig: Path) -> None:
    # v1.16.0 getPodKubeovnNets: <nad>.<ns>.ovn.<ifname> for each attachment of a NAD attached twice.
    clean.subnet("n1", "10.17.0.0/24", "10.17.0.1", provider="n1.default.ovn",
                 status=settled_status(2, 251, "10.17.0.2-10.17.0.3", "10.17.0.4-10.17.0.254"))
    attach(clean, "default", "web-1", "n1.default.ovn.net1", "n1", "10.17.0.2")
    attach(clean, "default", "web-1", "n1.default.ovn.net2", "n1", "10.17.0.3")
    clean.port("web-1.default.n1.default.ovn.net1", "n1", "10.17.0.2", pod_key="default/web-1")
    result, report = doctor(kubeconfig, nb_server)
    assert result.exit_code == 1, report
    assert [objects(f) for f in report["findings"]] == [["Pod default/web-1", "LSP web-1.default.n1.default.ovn.net2!"]]


def test_a_node_with_an_fqdn_keeps_its_ip_cr_in_the_remedy(clean: Cluster, nb_server: OvsdbServer,
                                                           kubeconfig: Path) -> None:
    status = settled_status(2, 65531, "100.64.0.2-100.64.0.3", "100.64.0.4-100.64.255.254")
    join = clean.api.get("subnets", "join")
    assert join is not None
    clean.api.put("subnets", {**join, "status": status})
    clean.node("w1.example.com", "100.64.0.3")
    clean.nb.set_port(port_uuid(clean.nb, "node-w1.example.com"), addresses=[f"{mac_for('100.64.0.3')} 100.64.0.33"])
    result, report = doctor(kubeconfig, nb_server)
    assert result.exit_code == 1, report
    [finding] = report["findings"]
    assert objects(finding) == ["IP node-w1.example.com", "LSP node-w1.example.com"]
    assert finding["remedy"].startswith("kubectl -n kube-system rollout restart deployment/kube-ovn-controller")


# --- the doctor sandbox: every kind at once ------------------------------------------------------


def test_every_kind_on_the_doctor_sandbox(kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    seed_doctor(kube_api, nb_server)
    before = world(kube_api, nb_server)
    result, report = doctor(kubeconfig, nb_server)
    assert result.exit_code == 1
    assert report["counts"] == {"leaked-ip": 3, "leaked-port": 1, "status-drift": 2, "missing": 2, "mismatch": 1,
                                "duplicate-address": 1, "stuck": 2}
    by_kind: dict[str, list[list[str]]] = {}
    for f in report["findings"]:
        by_kind.setdefault(f["kind"], []).append(objects(f))
    assert by_kind["missing"] == [["Node node2", "LSP node-node2!"], ["Pod default/web-3", "LSP web-3.default!"]]
    assert by_kind["mismatch"] == [["IP web-4.default", "LSP web-4.default"]]
    assert by_kind["stuck"] == [["IP batch-9.default"], ["Subnet legacy", "IP legacy-app.default"]]
    assert world(kube_api, nb_server) == before

    text, _ = doctor(kubeconfig, nb_server, output="text")
    lines = text.stdout.splitlines()
    assert lines[0] == "leaked-ip (3)"
    assert "missing (2)" in lines and "stuck (2)" in lines
    assert lines[-1].startswith("12 findings: 3 leaked-ip, 1 leaked-port, 2 status-drift, 2 missing, 1 mismatch, "
                                "1 duplicate-address, 2 stuck (read ")
    assert lines[-1].endswith("→ exit 1")


# --- the two reads ------------------------------------------------------------------------------


def test_a_port_written_between_the_reads_is_not_reported(clean: Cluster, kube_api: FakeApiServer,
                                                          nb_server: OvsdbServer, kubeconfig: Path) -> None:
    lose_a_pods_port(clean)
    # kube-ovn re-creates the port after doctor read NB and before it lists the pods.
    kube_api.before("GET", r"^/api/v1/pods$",
                    lambda _: clean.port("web-2.default", "ovn-default", "10.16.0.3", pod_key="default/web-2"))
    result, report = doctor(kubeconfig, nb_server)
    assert result.exit_code == 0, report
    assert report["findings"] == []
    assert "1 findings did not hold on a second read" in result.stderr  # the first read did see it missing


# --- could not read everything ----------------------------------------------------------------------


def test_unreachable_nb_exits_3(clean: Cluster, kubeconfig: Path, tmp_path: Path) -> None:
    result, report = doctor(kubeconfig, f"unix:{tmp_path}/nowhere.sock")
    assert result.exit_code == 3
    assert report["exit_code"] == 3 and report["error"] and "findings" not in report


def test_a_doctor_that_did_not_run_says_what_stopped_it_and_nothing_else(
        clean: Cluster, nb_server: OvsdbServer, kubeconfig: Path, tmp_path: Path) -> None:
    """As a pass's report (test_e2e.py::test_a_pass_that_did_not_run_says_what_stopped_it_and_nothing_else):
    no read counts, no empty findings, of reads that did not happen."""
    broken = tmp_path / "broken-kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [oops\n")
    for config, nb, code, error in ((broken, nb_server, 2, f"configuration: cannot load kubeconfig {broken}"),
                                    (kubeconfig, f"unix:{tmp_path}/nowhere.sock", 3, "")):
        text, _ = doctor(config, nb, output="text")
        assert text.exit_code == code, text.output
        [line] = text.stdout.splitlines()
        assert line.startswith(f"did not run: {error}") and line.endswith(f"→ exit {code}"), line
        assert "read 0" not in line and "could not read everything" not in line
        result, report = doctor(config, nb)
        assert result.exit_code == code
        assert set(report) == {"exit_code", "started_at", "duration_seconds", "error"}, report
        assert report["exit_code"] == code and report["error"].startswith(error)


def test_failing_api_exits_3(clean: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer,
                             kubeconfig: Path) -> None:
    kube_api.inject("GET", r"^/api/v1/pods$", 503, times=None)
    result, report = doctor(kubeconfig, nb_server)
    assert result.exit_code == 3 and report["error"]


def test_unreadable_kubevirt_exits_3_with_what_was_found(clean: Cluster, kube_api: FakeApiServer,
                                                         nb_server: OvsdbServer, kubeconfig: Path) -> None:
    stray_port(clean)  # might be a VM's: not reported while KubeVirt cannot be read
    stale_status(clean)
    kube_api.inject("GET", r"/virtualmachines$", 403, times=None)
    result, report = doctor(kubeconfig, nb_server)
    assert result.exit_code == 3, report
    assert "KubeVirt" in report["warnings"][0]
    assert [f["kind"] for f in report["findings"]] == ["status-drift"]
