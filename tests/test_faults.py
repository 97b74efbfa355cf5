"""Fault injection against the real ovsdb-server and the fake API: every fault ends with a truthful exit
code, nothing alive is lost, and a re-run after the fault converges."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import builders
from fakeapi import FakeApiServer
from kube_ovn_gc.cli import main
from kube_ovn_gc.kube import KubeWriter
from kube_ovn_gc.model import IpCR, KubeSnapshot, Subnet
from kube_ovn_gc.run import refresher
from ovsdb import OvsdbServer
from scenario import OLD, Cluster, kube_ovn_controller, seed_demo

LEAKED_IPS = {"vm-deleted.default", "job-7f9c.default", "db-1.default"}
LIVING_IPS = {"web-1.default", "web-2.default", "vm-running.default", "vm-stopped.default", "db-0.default",
              "node-node1"}
LIVING_PORTS = {"web-1.default", "web-2.default", "vm-running.default", "vm-stopped.default", "node-node1",
                "neutron-port-1"}


def gc(kubeconfig: Path, nb: OvsdbServer | str, *args: str, attempts: int = 1) -> tuple[Result, dict[str, Any]]:
    remote = nb if isinstance(nb, str) else nb.unix_remote
    result = CliRunner().invoke(main, [*args, "--kubeconfig", str(kubeconfig), "--ovn-nb", remote,
                                       "--output", "json", "--retry-attempts", str(attempts)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, json.loads(result.stdout)


def alive_intact(api: FakeApiServer, nb: OvsdbServer) -> None:
    """The first law: every living IP CR is there and not terminating, every living port is in NB."""
    ips = {i["metadata"]["name"]: i for i in api.list("ips")}
    for name in LIVING_IPS:
        assert name in ips and "deletionTimestamp" not in ips[name]["metadata"], name
    assert {p["name"] for p in nb.ports()} >= LIVING_PORTS


def world(api: FakeApiServer, nb: OvsdbServer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Everything the pass could change (its own Lease aside)."""
    return {r: api.list(r) for r in ("ips", "subnets", "pods", "nodes", "statefulsets", "virtualmachines")}, nb.ports()


def outcomes(report: dict[str, Any], kind: str) -> dict[str, str]:
    return {a["name"]: a["outcome"] for a in report["actions"] if a["kind"] == kind}


def converges(api: FakeApiServer, nb: OvsdbServer, kubeconfig: Path) -> None:
    api.clear_faults()
    result, _ = gc(kubeconfig, nb, "run")
    assert result.exit_code == 0
    kube_ovn_controller(api, nb)
    result, report = gc(kubeconfig, nb, "run")
    assert result.exit_code == 0 and report["actions"] == []
    assert not LEAKED_IPS & {i["metadata"]["name"] for i in api.list("ips")}
    alive_intact(api, nb)


@pytest.fixture
def demo(kube_api: FakeApiServer, nb_server: OvsdbServer) -> Cluster:
    return seed_demo(kube_api, nb_server)


def test_owner_appearing_between_plan_and_act_is_kept(demo: Cluster, kube_api: FakeApiServer,
                                                      nb_server: OvsdbServer, kubeconfig: Path) -> None:
    def pod_comes_back(server: FakeApiServer) -> None:
        server.create("pods", {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": "job-7f9c", "namespace": "default"},
                               "spec": {"restartPolicy": "Always"}, "status": {"phase": "Running"}})

    # The pod appears just as the second look GETs it again.
    kube_api.before("GET", r"^/api/v1/namespaces/default/pods/job-7f9c$", pod_comes_back)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0
    ips = {a["name"]: a for a in report["actions"] if a["kind"] == "ip"}
    assert ips["job-7f9c.default"]["outcome"] == "skipped"
    assert ips["job-7f9c.default"]["reason"] == "second look: owner Pod default/job-7f9c is alive"
    assert ips["vm-deleted.default"]["outcome"] == "done"
    assert "deletionTimestamp" not in kube_api.get("ips", "job-7f9c.default")["metadata"]  # type: ignore[index]
    alive_intact(kube_api, nb_server)


def test_port_rewritten_by_the_controller_between_read_and_delete_is_left_alone(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    uuid = next(p["uuid"] for p in nb_server.ports() if p["name"] == "old-pod.default")

    def controller_reuses_the_port(_: FakeApiServer) -> None:
        nb_server.set_port(uuid, external_ids={"vendor": "kube-ovn", "ls": "ovn-default", "pod": "default/new-pod"})

    # Just before the port's second look (a GET of an IP CR of the same name) the port is rewritten.
    kube_api.before("GET", r"^/apis/kubeovn\.io/v1/ips/old-pod\.default$", controller_reuses_the_port)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0
    assert outcomes(report, "port")["old-pod.default"] == "skipped"
    port = next(p for p in nb_server.ports() if p["name"] == "old-pod.default")
    assert port["external_ids"]["pod"] == "default/new-pod"
    alive_intact(kube_api, nb_server)


def test_ovsdb_server_killed_mid_pass_is_partial_and_a_rerun_converges(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    kube_api.before("DELETE", r"^/apis/kubeovn\.io/v1/ips/", lambda _: nb_server.kill())
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 5
    assert set(outcomes(report, "ip").values()) == {"done"}
    assert outcomes(report, "port") == {"old-pod.default": "failed"}
    nb_server.start()
    alive_intact(kube_api, nb_server)
    converges(kube_api, nb_server, kubeconfig)


def test_api_500_on_a_list_is_retried(demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer,
                                      kubeconfig: Path) -> None:
    kube_api.inject("GET", r"^/api/v1/pods$", 500, times=2)
    result, report = gc(kubeconfig, nb_server, "run", attempts=3)
    assert result.exit_code == 0, report
    assert set(outcomes(report, "ip")) == LEAKED_IPS
    pod_lists = [r for r in kube_api.requests if r.verb == "list" and r.resource == "pods"]
    # seven pod lists (active, host-network, five of ended pods): two 500s among them, retried
    assert sorted(r.status for r in pod_lists) == [200] * 7 + [500, 500]


def test_api_500_for_good_exits_3_and_changes_nothing(demo: Cluster, kube_api: FakeApiServer,
                                                      nb_server: OvsdbServer, kubeconfig: Path) -> None:
    kube_api.inject("GET", r"^/apis/apps/v1/statefulsets$", 500, times=None)
    before = world(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "run", attempts=2)
    assert result.exit_code == 3 and "statefulsets" in report["error"]
    assert world(kube_api, nb_server) == before
    converges(kube_api, nb_server, kubeconfig)


def test_429_with_retry_after_is_honoured(demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer,
                                          kubeconfig: Path) -> None:
    kube_api.inject("GET", r"^/apis/kubeovn\.io/v1/ips$", 429, headers={"Retry-After": "1"}, times=1)
    started = dt.datetime.now()
    result, _ = gc(kubeconfig, nb_server, "check", attempts=2)
    assert result.exit_code == 1
    assert (dt.datetime.now() - started) >= dt.timedelta(seconds=1)
    ip_lists = [r.status for r in kube_api.requests if r.verb == "list" and r.resource == "ips"]
    assert ip_lists[:2] == [429, 200]


def test_409_on_the_status_patch_rereads_and_recomputes(demo: Cluster, kube_api: FakeApiServer,
                                                        nb_server: OvsdbServer, kubeconfig: Path) -> None:
    def controller_writes_status(server: FakeApiServer) -> None:
        subnet = server.get("subnets", "ovn-default")
        assert subnet is not None
        subnet["status"]["v4usingIPs"] = 7  # the controller's own (stale) view, written meanwhile
        server.put("subnets", subnet)

    kube_api.before("PATCH", r"^/apis/kubeovn\.io/v1/subnets/ovn-default/status$", controller_writes_status)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0
    patches = [r.status for r in kube_api.requests if r.verb == "patch" and r.name == "ovn-default"]
    assert patches == [409, 200]
    assert kube_api.get("subnets", "ovn-default")["status"]["v4usingIPs"] == 5  # type: ignore[index]
    assert outcomes(report, "subnet-status")["ovn-default"] == "done"


def test_conflicts_on_several_subnets_written_at_once_each_reread_and_recomputed(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    def controller_bumps(name: str) -> Callable[[FakeApiServer], None]:
        def bump(server: FakeApiServer) -> None:
            subnet = server.get("subnets", name)
            assert subnet is not None
            subnet["status"]["v4availableIPs"] = 1  # the controller's own (stale) view, written meanwhile
            server.put("subnets", subnet)
        return bump

    for name in ("ovn-default", "join"):
        kube_api.before("PATCH", rf"^/apis/kubeovn\.io/v1/subnets/{name}/status$", controller_bumps(name))
    result, report = gc(kubeconfig, nb_server, "run", "--workers", "4")
    assert result.exit_code == 0
    for name in ("ovn-default", "join"):
        assert [r.status for r in kube_api.requests if r.verb == "patch" and r.name == name] == [409, 200]
        assert kube_api.get("subnets", name)["status"]["v4availableIPs"] != 1  # type: ignore[index]
    assert outcomes(report, "subnet-status") == {"ovn-default": "done", "join": "done"}
    assert kube_api.get("subnets", "ovn-default")["status"]["v4usingIPs"] == 5  # type: ignore[index]


def test_lease_held_by_another_runner_exits_4_and_changes_nothing(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kube_api.create("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                               "metadata": {"name": "kube-ovn-gc", "namespace": "kube-system"},
                               "spec": {"holderIdentity": "kube-ovn-gc-28391-abcde", "leaseDurationSeconds": 600,
                                        "acquireTime": now, "renewTime": now}}, namespace="kube-system")
    before = world(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 4
    assert "kube-ovn-gc-28391-abcde" in report["error"]
    assert world(kube_api, nb_server) == before
    # check never takes the lease: it still reports.
    assert gc(kubeconfig, nb_server, "check")[0].exit_code == 1
    kube_api.delete("leases", "kube-ovn-gc", "kube-system")
    converges(kube_api, nb_server, kubeconfig)


def test_lease_is_released_after_a_pass(demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer,
                                        kubeconfig: Path) -> None:
    assert gc(kubeconfig, nb_server, "run")[0].exit_code == 0
    lease = kube_api.get("leases", "kube-ovn-gc", "kube-system")
    assert lease is not None and not lease["spec"].get("holderIdentity")


def test_mass_deletion_brake_refuses_with_exit_4_and_force_overrides(
        kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    c = Cluster(kube_api, nb_server)
    c.subnet("ovn-default", "10.16.0.0/16", "10.16.0.1")
    c.node("node1", "10.16.0.250", subnet="ovn-default")
    for i in range(10):
        c.pod("default", f"live-{i}", f"10.16.1.{i + 1}")
    for i in range(25):
        c.address("default", f"gone-{i}", f"10.16.2.{i + 1}")
    before = world(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 4
    assert "25 of 36 IP CRs" in report["error"]
    assert len(outcomes(report, "ip")) == 25 and set(outcomes(report, "ip").values()) == {"planned"}
    assert world(kube_api, nb_server) == before
    result, _ = gc(kubeconfig, nb_server, "run", "--max-deletions", "10", "--max-deletion-ratio", "1")
    assert result.exit_code == 4
    result, report = gc(kubeconfig, nb_server, "run", "--force")
    assert result.exit_code == 0 and set(outcomes(report, "ip").values()) == {"done"}
    assert all("deletionTimestamp" not in kube_api.get("ips", f"live-{i}.default")["metadata"]  # type: ignore[index]
               for i in range(10))


def test_check_over_the_brake_reports_the_whole_plan_exits_1_and_names_the_rail(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    before = world(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "check", "--max-deletions", "1")
    assert result.exit_code == 1, report  # a dry run refuses nothing
    assert report["refusal"]["rail"] == "max-deletions"
    assert "more than --max-deletions 1" in report["refusal"]["reason"]
    assert "error" not in report
    assert set(outcomes(report, "ip")) == LEAKED_IPS and set(outcomes(report, "ip").values()) == {"planned"}
    assert outcomes(report, "subnet-status") == {"ovn-default": "planned", "join": "planned"}  # the whole plan
    text = CliRunner().invoke(main, ["check", "--max-deletions", "1", "--kubeconfig", str(kubeconfig),
                                     "--ovn-nb", nb_server.unix_remote])
    assert text.exit_code == 1
    assert "a real run would be refused by the max-deletions rail: the plan deletes 4 objects" in text.stdout
    assert world(kube_api, nb_server) == before
    # the real run is refused by that rail, and says so the same way
    result, report = gc(kubeconfig, nb_server, "run", "--max-deletions", "1")
    assert result.exit_code == 4 and report["refusal"]["rail"] == "max-deletions"
    assert world(kube_api, nb_server) == before
    # a pass no rail stops carries the key too, as null
    assert gc(kubeconfig, nb_server, "check")[1]["refusal"] is None


def test_a_failure_after_the_deletes_still_reports_them_with_exit_5(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(*_args: object, **_kw: object) -> None:
        raise OverflowError("a defect in the status patch")

    monkeypatch.setattr(KubeWriter, "patch_subnet_status", broken)
    result, report = gc(kubeconfig, nb_server, "run", "--record", str(tmp_path / "rec"))
    assert result.exit_code == 5, result.stderr
    assert "internal error: OverflowError: a defect in the status patch" in report["error"]
    assert set(outcomes(report, "ip").values()) == {"done"} and outcomes(report, "port") == {"old-pod.default": "done"}
    assert {u["name"] for u in report["undo"]} == LEAKED_IPS | {"old-pod.default"}
    [recorded] = (tmp_path / "rec").iterdir()
    assert json.loads(recorded.read_text())["undo"] == report["undo"]


@pytest.mark.parametrize("command", ["run", "check"])
def test_kubevirt_served_but_unlistable_exits_3_and_changes_nothing(
        command: str, demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    before = world(kube_api, nb_server)
    kube_api.inject("GET", r"^/apis/kubevirt\.io/v1/virtualmachines$", 500, times=None)  # every retry fails
    result, report = gc(kubeconfig, nb_server, command, attempts=2)
    assert result.exit_code == 3, report
    assert "KubeVirt API is served but its objects could not be read" in report["error"]
    assert "500" in report["error"]
    assert "actions" not in report  # it did not run: what stopped it, and nothing else
    kube_api.clear_faults()
    assert world(kube_api, nb_server) == before


def test_one_unparsable_vm_is_skipped_by_name_and_keeps_its_addresses(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    vm = kube_api.get("virtualmachines", "vm-stopped", "default")
    assert vm is not None
    vm["spec"]["template"]["spec"]["networks"] = "not a list"  # poisons a VM, not the list
    kube_api.put("virtualmachines", vm)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0, report
    skipped = [a for a in report["actions"] if a["outcome"] == "skipped"]
    assert [(a["kind"], a["name"]) for a in skipped] == [("virtualmachine", "default/vm-stopped")]
    assert "default/vm-stopped" in skipped[0]["reason"]
    assert set(outcomes(report, "ip")) == LEAKED_IPS  # the rest of the pass went on
    alive_intact(kube_api, nb_server)  # vm-stopped.default: IP CR and port kept


def test_stuck_terminating_ips_are_reported_and_released_only_when_asked(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    three_hours_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ("vm-deleted.default", "web-1.default"):  # a leak, and a live pod's IP someone deleted
        ip = kube_api.get("ips", name)
        assert ip is not None
        ip["metadata"]["deletionTimestamp"] = three_hours_ago
        kube_api.put("ips", ip)
    _, report = gc(kubeconfig, nb_server, "check")
    stuck = {a["name"]: a for a in report["actions"] if a.get("stuck")}
    assert set(stuck) == {"vm-deleted.default", "web-1.default"}
    assert all(a["outcome"] == "skipped" and "terminating for 3h" in a["reason"] for a in stuck.values())
    result, report = gc(kubeconfig, nb_server, "run", "--release-stuck-after", "2h")
    assert result.exit_code == 0
    stuck = {a["name"]: a for a in report["actions"] if a.get("stuck")}
    assert stuck["vm-deleted.default"]["outcome"] == "done"
    assert stuck["web-1.default"]["outcome"] == "skipped"  # its pod is alive: never released
    assert kube_api.get("ips", "vm-deleted.default") is None
    assert kube_api.get("ips", "web-1.default") is not None


def test_record_and_restore_put_back_what_a_pass_deleted(demo: Cluster, kube_api: FakeApiServer,
                                                         nb_server: OvsdbServer, kubeconfig: Path,
                                                         tmp_path: Path) -> None:
    record = tmp_path / "records"
    result, report = gc(kubeconfig, nb_server, "run", "--record", str(record))
    assert result.exit_code == 0
    undo = {(u["kind"], u["name"]) for u in report["undo"]}
    assert undo == {("ip", n) for n in LEAKED_IPS} | {("port", "old-pod.default")}
    port_entry = next(u for u in report["undo"] if u["kind"] == "port")
    assert port_entry["switch"] == "ovn-default" and port_entry["row"]["name"] == "old-pod.default"
    [path] = list(record.glob("kube-ovn-gc-*.json"))
    assert json.loads(path.read_text())["undo"] == report["undo"]
    kube_ovn_controller(kube_api, nb_server)  # the IP CRs and their ports are really gone now
    assert kube_api.get("ips", "vm-deleted.default") is None

    result = CliRunner().invoke(main, ["restore", str(path), "--kubeconfig", str(kubeconfig),
                                       "--ovn-nb", nb_server.unix_remote, "--output", "json"])
    assert result.exit_code == 0, result.stdout
    assert "does not record which cluster" in json.loads(result.stdout)["warning"]  # no kube-system here
    restored = kube_api.get("ips", "vm-deleted.default")
    assert restored is not None and restored["spec"]["v4IpAddress"] == "10.16.0.6"
    ports = {p["name"]: p for p in nb_server.ports()}
    assert ports["old-pod.default"]["switch"] == "ovn-default"
    assert ports["old-pod.default"]["external_ids"]["pod"] == "default/old-pod"
    # A second restore refuses every name: they exist again.
    again = CliRunner().invoke(main, ["restore", str(path), "--kubeconfig", str(kubeconfig),
                                      "--ovn-nb", nb_server.unix_remote, "--output", "json"])
    assert again.exit_code == 5
    assert {a["outcome"] for a in json.loads(again.stdout)["actions"]} == {"skipped"}


def test_restore_puts_back_only_into_the_cluster_the_report_was_made_on(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path, tmp_path: Path) -> None:
    kube_api.create("namespaces", {"metadata": {"name": "kube-system", "creationTimestamp": OLD}})
    uid = kube_api.get("namespaces", "kube-system")["metadata"]["uid"]  # type: ignore[index]
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0 and report["cluster"]["uid"] == uid
    kube_ovn_controller(kube_api, nb_server)

    def restore(data: dict[str, Any]) -> Result:
        path = tmp_path / "run.json"
        path.write_text(json.dumps(data))
        return CliRunner().invoke(main, ["restore", str(path), "--kubeconfig", str(kubeconfig),
                                         "--ovn-nb", nb_server.unix_remote, "--output", "json"])

    before = (kube_api.list("ips"), sorted(p["uuid"] for p in nb_server.ports()))
    foreign = restore({**report, "cluster": {"uid": "0000-other", "server": "https://10.9.0.1:6443"}})
    assert foreign.exit_code == 2
    assert "was made on another cluster: namespace kube-system uid 0000-other" in foreign.stderr
    assert (kube_api.list("ips"), sorted(p["uuid"] for p in nb_server.ports())) == before  # nothing put back
    kube_api.inject("GET", r"^/api/v1/namespaces/kube-system$", 403, times=None)  # an older RBAC, say
    unchecked = restore(report)
    assert unchecked.exit_code == 2 and "cannot tell whether" in unchecked.stderr
    assert (kube_api.list("ips"), sorted(p["uuid"] for p in nb_server.ports())) == before
    kube_api.clear_faults()
    home = restore(report)
    assert home.exit_code == 0, home.stdout
    restored = json.loads(home.stdout)
    assert restored["cluster"]["uid"] == uid and "warning" not in restored
    assert {a["name"] for a in restored["actions"] if a["outcome"] == "done"} == LEAKED_IPS | {"old-pod.default"}


def test_restore_rejects_a_file_that_is_not_a_report(kubeconfig: Path, nb_server: OvsdbServer,
                                                     tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"actions": []}')
    result = CliRunner().invoke(main, ["restore", str(bad), "--kubeconfig", str(kubeconfig),
                                       "--ovn-nb", nb_server.unix_remote])
    assert result.exit_code == 2 and "undo" in result.stderr


def test_ip_cr_changed_between_read_and_delete_is_left_alone(demo: Cluster, kube_api: FakeApiServer,
                                                             nb_server: OvsdbServer, kubeconfig: Path) -> None:
    def user_reserves_it(server: FakeApiServer) -> None:
        ip = server.get("ips", "job-7f9c.default")
        assert ip is not None
        ip["metadata"]["labels"]["ovn.kubernetes.io/ip_reserved"] = "true"
        server.put("ips", ip)

    # Someone reserves the address while the pass is taking its second look at the owner.
    kube_api.before("GET", r"^/api/v1/namespaces/default/pods/job-7f9c$", user_reserves_it)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0
    ips = {a["name"]: a for a in report["actions"] if a["kind"] == "ip"}
    assert ips["job-7f9c.default"]["outcome"] == "skipped"
    assert ips["job-7f9c.default"]["reason"].startswith("changed since read")
    deletes = [r.status for r in kube_api.requests if r.verb == "delete" and r.name == "job-7f9c.default"]
    assert deletes == [409]
    assert "deletionTimestamp" not in kube_api.get("ips", "job-7f9c.default")["metadata"]  # type: ignore[index]
    # The next pass sees a reserved IP CR: never a candidate.
    _, report = gc(kubeconfig, nb_server, "check")
    assert "job-7f9c.default" not in outcomes(report, "ip")


# --- re-reads after status conflicts, when several subnets are written at once -----------------------


class ListingReader:
    """A KubeReads whose IP lists take a while and note how many run at once."""

    def __init__(self) -> None:
        self.lists = 0
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def get_subnet(self, name: str) -> Subnet | None:
        return None if name == "gone" else builders.subnet(name)

    def read_ips(self) -> tuple[IpCR, ...]:
        return self.read_counted_ips()[0]

    def read_counted_ips(self) -> tuple[tuple[IpCR, ...], tuple[IpCR, ...]]:
        with self.lock:
            self.lists += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            n = self.lists
        time.sleep(0.05)  # a list of 100k IP CRs takes seconds
        with self.lock:
            self.running -= 1
        return (builders.ip(f"p{n}.default"),), ()

    def read(self) -> KubeSnapshot:
        raise AssertionError("not used")


def test_conflicts_on_many_subnets_at_once_list_the_ips_one_at_a_time() -> None:
    reader = ListingReader()
    refresh = refresher(reader, KubeSnapshot())
    with ThreadPoolExecutor(max_workers=4) as pool:
        fresh = list(pool.map(refresh, ["a", "b", "c", "d", "gone"]))
    assert fresh[-1] is None  # deleted meanwhile: no list for it
    assert reader.lists == 4 and reader.most_at_once == 1
    assert [s.subnets[0].meta.name for s in fresh if s is not None] == ["a", "b", "c", "d"]
    assert all(s is not None and len(s.ips) == 1 for s in fresh[:4])
