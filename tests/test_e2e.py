"""End to end through the CLI: a real ovsdb-server, the fake API server over HTTP, the real clients."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fakeapi import FakeApiServer
from kube_ovn_gc.cli import main
from kube_ovn_gc.model import NbSnapshot
from kube_ovn_gc.ovn import OvsdbNorthbound
from ovsdb import OvsdbServer
from scenario import OLD, Cluster, kube_ovn_controller, mac_for, seed_clean, seed_demo

RESOURCES = ("ips", "subnets", "pods", "nodes", "statefulsets", "virtualmachines", "virtualmachineinstances")


def gc(kubeconfig: Path, nb: OvsdbServer | str, *args: str) -> tuple[Result, dict[str, Any]]:
    remote = nb if isinstance(nb, str) else nb.unix_remote
    result = CliRunner().invoke(main, [*args, "--kubeconfig", str(kubeconfig), "--ovn-nb", remote,
                                       "--output", "json", "--retry-attempts", "1"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, json.loads(result.stdout)


def world(api: FakeApiServer, nb: OvsdbServer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Everything both sides hold, for "changed nothing" assertions."""
    objects = {r: api.list(r) for r in RESOURCES}
    return objects, sorted(nb.ports(), key=lambda p: p["uuid"])


def by_name(report: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in report["actions"] if a["kind"] == kind}


@pytest.fixture
def demo(kube_api: FakeApiServer, nb_server: OvsdbServer) -> Cluster:
    return seed_demo(kube_api, nb_server)


def test_run_collects_the_seed_leaks_keeps_the_living_and_fixes_the_subnet(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0, result.stderr
    assert report["dry_run"] is False and report["exit_code"] == 0
    ips = by_name(report, "ip")
    assert set(ips) == {"vm-deleted.default", "job-7f9c.default", "db-1.default"}
    assert ips["vm-deleted.default"]["outcome"] == "done"
    assert ips["vm-deleted.default"]["reason"] == "owner VirtualMachine default/vm-deleted not found"
    assert ips["vm-deleted.default"]["subnet"] == "ovn-default"
    assert ips["vm-deleted.default"]["addresses"] == "10.16.0.6"
    ports = by_name(report, "port")
    assert set(ports) == {"old-pod.default"}
    assert ports["old-pod.default"]["switch"] == "ovn-default" and ports["old-pod.default"]["uuid"]
    # listed without addresses (no rule reads them), read for the report
    assert ports["old-pod.default"]["addresses"] == [f"{mac_for('10.16.0.8')} 10.16.0.8"]

    # The leaked IP CRs are terminating (the controller's finalizer holds them); the living ones are intact.
    left = {ip["metadata"]["name"]: ip for ip in kube_api.list("ips")}
    for name in ips:
        assert left[name]["metadata"]["deletionTimestamp"]
    living = {"web-1.default", "web-2.default", "vm-running.default", "vm-stopped.default", "db-0.default",
              "node-node1"}
    assert all("deletionTimestamp" not in left[n]["metadata"] for n in living)
    port_names = {p["name"] for p in nb_server.ports()}
    assert "old-pod.default" not in port_names
    assert {"web-1.default", "vm-running.default", "vm-stopped.default", "neutron-port-1"} <= port_names

    # The subnet status counts what is left: 5 addresses in ovn-default.
    status = kube_api.get("subnets", "ovn-default")["status"]  # type: ignore[index]
    assert status["v4usingIPs"] == 5
    assert status["v4usingIPrange"] == "10.16.0.2-10.16.0.5,10.16.0.9"
    assert status["v4availableIPs"] == 65534 - 1 - 5
    assert status["v4availableIPrange"] == "10.16.0.6-10.16.0.8,10.16.0.10-10.16.255.254"
    fixed = by_name(report, "subnet-status")["ovn-default"]
    assert fixed["outcome"] == "done" and fixed["before"]["v4usingIPs"] in ("9", 9)
    assert fixed["after"]["v4usingIPs"] == 5

    # The controller finishes the deletes; a second pass has nothing to do.
    kube_ovn_controller(kube_api, nb_server)
    assert "vm-deleted.default" not in {p["name"] for p in nb_server.ports()}
    assert kube_api.get("ips", "vm-deleted.default") is None
    again, report2 = gc(kubeconfig, nb_server, "run")
    assert again.exit_code == 0
    assert [a for a in report2["actions"] if a["outcome"] != "skipped"] == []


def test_second_run_before_the_controller_acted_is_also_clean(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    assert gc(kubeconfig, nb_server, "run")[0].exit_code == 0
    again, report = gc(kubeconfig, nb_server, "run")
    assert again.exit_code == 0
    assert report["actions"] == []


def test_check_reports_leaks_with_exit_1_and_changes_nothing(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    before = world(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "check")
    assert result.exit_code == 1
    assert report["dry_run"] is True
    assert {a["outcome"] for a in report["actions"]} == {"planned"}
    assert set(by_name(report, "ip")) == {"vm-deleted.default", "job-7f9c.default", "db-1.default"}
    assert by_name(report, "subnet-status")["ovn-default"]["after"]["v4usingIPs"] == 5
    assert world(kube_api, nb_server) == before
    # `run --dry-run` is the same thing.
    result, _ = gc(kubeconfig, nb_server, "run", "--dry-run")
    assert result.exit_code == 1
    assert world(kube_api, nb_server) == before


def test_check_on_a_clean_cluster_exits_0(demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer,
                                         kubeconfig: Path) -> None:
    gc(kubeconfig, nb_server, "run")
    kube_ovn_controller(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "check")
    assert result.exit_code == 0, report
    assert report["actions"] == []


def test_stopped_vm_keeps_its_ip_and_port(demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer,
                                          kubeconfig: Path) -> None:
    _, report = gc(kubeconfig, nb_server, "run")
    assert "vm-stopped.default" not in by_name(report, "ip")
    ip = kube_api.get("ips", "vm-stopped.default")
    assert ip is not None and "deletionTimestamp" not in ip["metadata"]
    assert "vm-stopped.default" in {p["name"] for p in nb_server.ports()}
    # Delete the VM: now it is the seed case, and the next pass collects it.
    kube_api.delete("virtualmachines", "vm-stopped", "default")
    _, report = gc(kubeconfig, nb_server, "run")
    assert by_name(report, "ip")["vm-stopped.default"]["outcome"] == "done"


def test_foreign_nb_rows_are_never_touched(demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer,
                                           kubeconfig: Path) -> None:
    foreign_before = [p for p in nb_server.ports() if p["external_ids"].get("vendor") != "kube-ovn"]
    switches_before = {s["name"] for s in nb_server.switches()}
    gc(kubeconfig, nb_server, "run")
    kube_ovn_controller(kube_api, nb_server)
    foreign_after = [p for p in nb_server.ports() if p["external_ids"].get("vendor") != "kube-ovn"]
    assert foreign_after == foreign_before and foreign_before
    assert {s["name"] for s in nb_server.switches()} == switches_before


def test_unreachable_nb_exits_3_and_changes_nothing(demo: Cluster, kube_api: FakeApiServer,
                                                    nb_server: OvsdbServer, kubeconfig: Path,
                                                    tmp_path: Path) -> None:
    before = world(kube_api, nb_server)
    result, report = gc(kubeconfig, f"unix:{tmp_path}/nowhere.sock", "run")
    assert result.exit_code == 3
    assert report["exit_code"] == 3 and report["error"]
    assert set(report) == {"dry_run", "exit_code", "started_at", "duration_seconds", "error"}  # did not run
    assert world(kube_api, nb_server) == before


def test_nb_is_read_whole_before_any_owner_while_the_lease_is_taken_meanwhile(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports need no --min-age because NB is read before their owners: the NB snapshot must be complete
    before the first owner list. The start-up (imports, kubeconfig, Lease) and the Subnets -> IP CRs
    lists overlap the NB read; the owner lists start only once both NB and the IP CRs are read."""
    marks: dict[str, float] = {}
    seen = {name: threading.Event() for name in ("lease taken", "last ip page")}
    real_lsp_list = OvsdbNorthbound.lsp_list

    def slow_lsp_list(self: OvsdbNorthbound, *, addresses: bool = True) -> NbSnapshot:
        # A large NB: ovsdb-server answers only once the Lease and the IP CRs were asked for. An event,
        # not a sleep, so a loaded machine cannot reorder the marks; a pass that read them one after
        # the other would wait the full 10 s here and fail the ordering below.
        marks["nb asked"] = time.monotonic()
        for event in seen.values():
            event.wait(10)
        snapshot = real_lsp_list(self, addresses=addresses)
        marks["nb read"] = time.monotonic()
        return snapshot

    def mark(name: str) -> None:
        marks[name] = time.monotonic()
        if name in seen:
            seen[name].set()

    def first(name: str) -> Callable[[FakeApiServer], None]:
        return lambda _server: None if name in marks else mark(name)

    def last(name: str) -> Callable[[FakeApiServer], None]:
        return lambda _server: mark(name)

    monkeypatch.setattr(OvsdbNorthbound, "lsp_list", slow_lsp_list)
    kube_api.before("GET", r"^/apis/kubeovn\.io/v1/subnets$", first("first list"), times=None)
    kube_api.before("GET", r"^/apis/kubeovn\.io/v1/ips$", last("last ip page"), times=None)
    for owner in (r"/api/v1/pods", r"/api/v1/nodes", r"/apis/apps/v1/statefulsets", r"/apis/kubevirt\.io/v1/\w+",
                  r"/apis/kubeovn\.io/v1/(vips|iptables-eips|ovn-eips)"):
        kube_api.before("GET", f"^{owner}$", first("first owner list"), times=None)
    kube_api.before("POST", r"/leases$", first("lease taken"), times=None)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0, report
    assert marks["nb asked"] < marks["lease taken"] < marks["nb read"]  # the Lease while NB answers
    assert marks["nb asked"] < marks["first list"] < marks["last ip page"] < marks["nb read"]  # so are Subnets, IPs
    assert max(marks["nb read"], marks["last ip page"]) < marks["first owner list"]


def test_unreachable_api_exits_3_and_changes_nothing(demo: Cluster, kube_api: FakeApiServer,
                                                     nb_server: OvsdbServer, kubeconfig: Path) -> None:
    before = world(kube_api, nb_server)
    kube_api.inject("GET", r"^/api/v1/pods$", 503, times=None)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 3, report
    kube_api.reset_log()
    assert world(kube_api, nb_server) == before


def test_text_report_is_a_table_with_a_summary_line(demo: Cluster, nb_server: OvsdbServer,
                                                     kubeconfig: Path) -> None:
    result = CliRunner().invoke(main, ["check", "--kubeconfig", str(kubeconfig), "--ovn-nb", nb_server.unix_remote])
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "*** DRY RUN: nothing was changed ***"
    assert lines[1].split()[:4] == ["KIND", "OUTCOME", "NAME", "WHERE"]
    assert any(line.startswith("ip ") and "vm-deleted.default" in line for line in lines)
    assert lines[-1].startswith("DRY RUN: would remove 3 IP CRs; 1 ports; would fix")
    assert lines[-1].endswith("→ exit 1")


# --- IPv6 subnets wider than /64: counts beyond 64 bits, end to end ---------------------------------


def wide_v6(api: FakeApiServer, nb: OvsdbServer) -> Cluster:
    c = Cluster(api, nb)
    c.subnet("join", "100.64.0.0/16", "100.64.0.1")
    c.node("node1", "100.64.0.2")
    c.subnet("wide6", "fd00:10::/56", "fd00:10::1", protocol="IPv6")  # 2^72 addresses
    c.subnet("mid6", "fd00:20::/66", "fd00:20::1", protocol="IPv6")  # 2^62: fits int64, not float64
    c.pod("default", "v6-web", "fd00:10::2", subnet="wide6")
    c.pod("default", "v6-db", "fd00:20::2", subnet="mid6")
    c.address("default", "v6-gone", "fd00:10::3", subnet="wide6")  # leaked
    return c


def test_counts_beyond_64_bits_are_checked_written_and_reported_exactly(
        kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    wide_v6(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "check")
    assert result.exit_code == 1, result.stderr
    status = by_name(report, "subnet-status")
    assert status["wide6"]["after"]["v6availableIPs"] == 2**72 - 2 - 1 - 1  # exact, not a float
    assert status["mid6"]["after"]["v6availableIPs"] == 2**62 - 2 - 1 - 1
    assert {s["name"]: s["v6_available"] for s in report["subnets"]}["wide6"] == 2**72 - 4
    text = CliRunner().invoke(main, ["check", "--kubeconfig", str(kubeconfig), "--ovn-nb", nb_server.unix_remote])
    assert text.exit_code == 1 and "v6availableIPs ''→4722366482869645213692" in text.stdout

    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0, result.stderr
    assert by_name(report, "ip")["v6-gone.default"]["outcome"] == "done"
    assert by_name(report, "subnet-status")["wide6"]["outcome"] == "done"
    [patch] = [r for r in kube_api.requests if r.method == "PATCH" and r.name == "wide6"]
    assert patch.body["status"]["v6availableIPs"] == 2**72 - 4  # sent exactly

    # kube-ovn-controller finishes the delete; then, as Kube-OVN <= 1.15 did, rewrites mid6's count as
    # the float64 nearest to it (2^62): not the count, so stale.
    kube_ovn_controller(kube_api, nb_server)
    mid6 = kube_api.get("subnets", "mid6")
    assert mid6 is not None and mid6["status"]["v6availableIPs"] == 2**62 - 4
    mid6["status"]["v6availableIPs"] = float(2**62 - 4)
    kube_api.put("subnets", mid6)
    result, report = gc(kubeconfig, nb_server, "check")
    assert result.exit_code == 1
    assert [(a["name"], a["changed"]) for a in report["actions"]] == [("mid6", ["v6availableIPs"])]
    assert gc(kubeconfig, nb_server, "run")[0].exit_code == 0
    # Converged: wide6's count is kept by kube-apiserver as the nearest float64 (it cannot hold more),
    # mid6's exactly; neither is drift any more.
    result, report = gc(kubeconfig, nb_server, "check")
    assert result.exit_code == 0 and report["actions"] == [], report["actions"]


# --- odd but legal objects Kube-OVN may hold --------------------------------------------------------


@pytest.fixture
def clean(kube_api: FakeApiServer, nb_server: OvsdbServer) -> Cluster:
    return seed_clean(kube_api, nb_server)


def test_an_ip_cr_whose_address_does_not_parse_is_counted_and_reported_not_fixed_every_pass(
        clean: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    # Kube-OVN counts it (calculateUsingIPs: len(podUsedIPs)); its IPAM does not hold the address.
    kube_api.create("ips", {
        "apiVersion": "kubeovn.io/v1", "kind": "IP",
        "metadata": {"name": "odd.default", "creationTimestamp": OLD,
                     "labels": {"ovn.kubernetes.io/subnet": "ovn-default", "ovn-default": ""}},
        "spec": {"podName": "odd", "namespace": "default", "subnet": "ovn-default", "ipAddress": "10.16.0.999",
                 "v4IpAddress": "10.16.0.999", "v6IpAddress": "", "podType": ""}})
    subnet = kube_api.get("subnets", "ovn-default")
    assert subnet is not None
    subnet["status"] = {**subnet["status"], "v4usingIPs": 6, "v4availableIPs": 65527}
    kube_api.put("subnets", subnet)
    before = world(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "check")
    assert result.exit_code == 0, report["actions"]
    [odd] = report["actions"]
    assert (odd["kind"], odd["name"], odd["outcome"], odd["subnet"]) == ("ip", "odd.default", "skipped", "ovn-default")
    assert "10.16.0.999" in odd["reason"] and "counted" in odd["reason"]
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0 and [a["outcome"] for a in report["actions"]] == ["skipped"]
    assert world(kube_api, nb_server) == before


def test_reserved_ip_crs_do_not_make_the_inventory_brake_refuse_a_pass_that_deletes_nothing(
        clean: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    for i in range(150):  # a user's reserved pool: no owner needed, never collected
        clean.ip_cr(f"pool-{i}", "ovn-default", f"10.16.1.{i + 1}", pod_name="", namespace="", reserved=True)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0, report.get("error")
    assert [(a["kind"], a["outcome"]) for a in report["actions"]] == [("subnet-status", "done")]
    assert kube_api.get("subnets", "ovn-default")["status"]["v4usingIPs"] == 155  # type: ignore[index]
    result, report = gc(kubeconfig, nb_server, "check")
    assert result.exit_code == 0 and report["actions"] == []


# --- the report's shape -------------------------------------------------------------------------------


def test_every_action_of_a_kind_carries_the_same_keys_in_every_outcome(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    # skipped: an IP CR that does not parse, one whose address does not, a Subnet whose CIDR does not,
    # a stuck IP CR that is only reported; planned: a dry run and a plan refused whole; failed: a DELETE
    # that fails for good; done: the rest.
    kube_api.create("ips", {"metadata": {"name": "nosubnet.default", "creationTimestamp": OLD},
                            "spec": {"podName": "nosubnet"}})
    kube_api.create("ips", {"metadata": {"name": "odd.default", "creationTimestamp": OLD},
                            "spec": {"podName": "odd", "namespace": "default", "subnet": "ovn-default",
                                     "v4IpAddress": "10.16.0.999"}})
    demo.subnet("broken", "10.99.0.0/33", "10.99.0.1")
    demo.ip_cr("dying.default", "ovn-default", "10.16.0.60", pod_name="dying", namespace="default")
    kube_api.delete("ips", "dying.default")  # its finalizer keeps it terminating
    dying = kube_api.get("ips", "dying.default")
    assert dying is not None
    dying["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube_api.put("ips", dying)
    reports = [gc(kubeconfig, nb_server, "check")[1],
               gc(kubeconfig, nb_server, "run", "--max-deletions", "1")[1]]
    kube_api.inject("DELETE", r"/ips/job-7f9c\.default$", 403, times=None)
    reports.append(gc(kubeconfig, nb_server, "run")[1])
    outcomes_seen = {(a["kind"], a["outcome"]) for r in reports for a in r["actions"]}
    assert {("ip", "planned"), ("ip", "done"), ("ip", "failed"), ("ip", "skipped"), ("port", "planned"),
            ("port", "done"), ("subnet-status", "planned"), ("subnet-status", "done"),
            ("subnet-status", "skipped")} <= outcomes_seen
    shapes: dict[str, set[frozenset[str]]] = {}
    for r in reports:
        for a in r["actions"]:
            shapes.setdefault(a["kind"], set()).add(frozenset(a))
    base = {"kind", "name", "reason", "outcome"}
    assert shapes["ip"] == {frozenset(base | {"subnet", "addresses", "namespace", "pod", "pod_type", "stuck", "uid"})}
    assert shapes["port"] == {frozenset(base | {"switch", "uuid", "addresses"})}
    assert shapes["subnet-status"] == {frozenset(base | {"before", "after", "changed"})}
    nosubnet = next(a for r in reports for a in r["actions"] if a["name"] == "nosubnet.default")
    assert nosubnet["subnet"] is None and nosubnet["addresses"] is None  # unknown: null, not missing
    assert {frozenset(r) - {"error"} for r in reports} == {frozenset(reports[0])}  # the reports' own keys too


def test_a_pass_that_did_not_run_says_what_stopped_it_and_nothing_else(
        nb_server: OvsdbServer, tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [oops\n")
    args = ["--kubeconfig", str(broken), "--ovn-nb", nb_server.unix_remote]
    for command in ("check", "run"):
        text = CliRunner().invoke(main, [command, *args])
        assert text.exit_code == 2
        [line] = text.stdout.splitlines()
        assert line.startswith(f"did not run: configuration: cannot load kubeconfig {broken}")
        assert line.endswith("nothing was changed → exit 2")
        assert "nothing to do" not in text.stdout and "would remove" not in text.stdout
        assert "DRY RUN" not in text.stdout
        result = CliRunner().invoke(main, [command, *args, "--output", "json"])
        report = json.loads(result.stdout)
        assert result.exit_code == 2 and report["exit_code"] == 2
        assert set(report) == {"dry_run", "exit_code", "started_at", "duration_seconds", "error"}
        assert report["error"].startswith("configuration: cannot load kubeconfig")


def test_the_report_says_what_reading_cost_per_source(demo: Cluster, kube_api: FakeApiServer,
                                                       nb_server: OvsdbServer, kubeconfig: Path) -> None:
    kube_api.reset_log()
    result, report = gc(kubeconfig, nb_server, "check")
    assert result.exit_code == 1, report
    reads = report["reads"]
    assert {"nb", "pods", "ips", "subnets", "nodes", "statefulsets"} <= set(reads)
    lists = [r for r in kube_api.requests if r.verb == "list"]
    for kind in ("pods", "ips", "subnets"):
        sent = [r for r in lists if r.resource == kind]
        assert reads[kind]["requests"] == len(sent)
        assert reads[kind]["bytes"] == sum(r.size for r in sent) > 0
    # the port list, then the addresses of the one port planned (the list is read without them)
    assert reads["nb"]["requests"] == 2 and reads["nb"]["bytes"] > 1000 and reads["nb"]["seconds"] >= 0
    text = CliRunner().invoke(main, ["check", "--kubeconfig", str(kubeconfig), "--ovn-nb", nb_server.unix_remote])
    assert text.stdout.strip().splitlines()[-1].split("(scanned ")[1].split(")")[0].endswith(" MiB read")


# --- an owner that appears between the second look and the NB delete --------------------------------


def _pod_comes_back(api: FakeApiServer) -> None:
    """``old-pod`` created again (a StatefulSet scaled up again): Kube-OVN adopts its leaked port as it is,
    no NB write (v1.12 ``CreateLogicalSwitchPort``: ``if exist { return nil }``), or rewrites it with the same
    external ids (v1.13-v1.16): nothing the delete's ``wait`` can see."""
    api.create("pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "old-pod", "namespace": "default", "creationTimestamp": OLD,
                     "annotations": {"ovn.kubernetes.io/allocated": "true",
                                     "ovn.kubernetes.io/ip_address": "10.16.0.8",
                                     "ovn.kubernetes.io/mac_address": mac_for("10.16.0.8"),
                                     "ovn.kubernetes.io/logical_switch": "ovn-default"}},
        "spec": {"nodeName": "node1", "restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running"},
    }, namespace="default")


@pytest.mark.parametrize("meanwhile", ["nothing", "kube-ovn re-creates it", "its switch is deleted"])
def test_a_port_whose_owner_appears_while_it_is_deleted_is_put_back(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path,
        monkeypatch: pytest.MonkeyPatch, meanwhile: str) -> None:
    [before] = [p for p in nb_server.ports() if p["name"] == "old-pod.default"]
    real_lsp_del = OvsdbNorthbound.lsp_del

    def owner_in_the_gap(self: OvsdbNorthbound, ports: Any) -> Any:
        _pod_comes_back(kube_api)  # after the second look, before the delete
        results = real_lsp_del(self, ports)
        if meanwhile == "kube-ovn re-creates it":  # it served the new pod after the delete: a port of its own
            demo.port("old-pod.default", "ovn-default", "10.16.0.8", pod_key="default/old-pod")
        elif meanwhile == "its switch is deleted":
            nb_server.transact([{"op": "delete", "table": "Logical_Switch", "where": [["name", "==", "ovn-default"]]}])
        return results

    monkeypatch.setattr(OvsdbNorthbound, "lsp_del", owner_in_the_gap)
    result, report = gc(kubeconfig, nb_server, "run")
    [action] = [a for a in report["actions"] if a["kind"] == "port" and a["name"] == "old-pod.default"]
    assert action["reason"].startswith(
        "deleted, then put back: an owner appeared meanwhile (owner Pod default/old-pod is alive)"), action
    undone = {u["name"]: u for u in report["undo"] if u["kind"] == "port"}
    if meanwhile == "its switch is deleted":
        assert result.exit_code == 5 and action["outcome"] == "failed", report
        assert "putting it back failed" in action["reason"] and "kube-ovn-gc restore" in action["reason"]
        assert dict(undone["old-pod.default"]["row"]["external_ids"][1]) == before["external_ids"]  # restore can
        return
    assert result.exit_code == 0, report
    assert action["outcome"] == "skipped", action
    assert action["reason"].endswith("; Kube-OVN had re-created it") is (meanwhile == "kube-ovn re-creates it")
    [after] = [p for p in nb_server.ports() if p["name"] == "old-pod.default"]
    assert (after["switch"], after["addresses"], after["external_ids"]) == \
        (before["switch"], before["addresses"], before["external_ids"])
    assert "old-pod.default" not in undone
