"""Review, then apply exactly that, end to end: `check -o json` → the report → `run --from-report`, through the
CLI, against a real ovsdb-server and the fake API server (namespace kube-system gives the cluster its uid)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fakeapi import FakeApiServer
from kube_ovn_gc.cli import main
from ovsdb import OvsdbServer
from scenario import OLD, Cluster, seed_demo

RESOURCES = ("ips", "subnets", "pods", "nodes", "statefulsets", "virtualmachines", "virtualmachineinstances",
             "leases")
LEAKS = {("ip", "db-1.default"), ("ip", "job-7f9c.default"), ("ip", "vm-deleted.default"),
         ("port", "old-pod.default")}


def gc(kubeconfig: Path, nb: OvsdbServer, *args: str, env: dict[str, str] | None = None) -> tuple[Result, Any]:
    result = CliRunner().invoke(main, [*args, "--kubeconfig", str(kubeconfig), "--ovn-nb", nb.unix_remote,
                                       "--output", "json", "--retry-attempts", "1"], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, json.loads(result.stdout)


def world(api: FakeApiServer, nb: OvsdbServer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return {r: api.list(r) for r in RESOURCES}, sorted(nb.ports(), key=lambda p: p["uuid"])


def actions(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(a["kind"], a["name"], a["outcome"]): a for a in report["actions"] if a["kind"] != "subnet-status"}


def live_ip(api: FakeApiServer, name: str) -> bool:
    found = api.get("ips", name)
    return found is not None and not found["metadata"].get("deletionTimestamp")


@pytest.fixture
def demo(kube_api: FakeApiServer, nb_server: OvsdbServer) -> Cluster:
    kube_api.create("namespaces", {"metadata": {"name": "kube-system", "creationTimestamp": OLD}})
    return seed_demo(kube_api, nb_server)


@pytest.fixture
def checked(demo: Cluster, kubeconfig: Path, nb_server: OvsdbServer, tmp_path: Path) -> Path:
    """The reviewed report: `kube-ovn-gc check -o json > check.json`."""
    result, report = gc(kubeconfig, nb_server, "check")
    assert result.exit_code == 1, result.stderr
    assert report["cluster"] == {"uid": demo.api.get("namespaces", "kube-system")["metadata"]["uid"],  # type: ignore[index]
                                 "server": demo.api.url}
    assert {(kind, name) for kind, name, outcome in actions(report) if outcome == "planned"} == LEAKS
    path = tmp_path / "check.json"
    path.write_text(result.stdout)
    return path


def test_run_from_report_deletes_exactly_the_reviewed_leaks(
        checked: Path, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    result, report = gc(kubeconfig, nb_server, "run", "--from-report", str(checked))
    assert result.exit_code == 0, result.stderr
    assert {(kind, name) for kind, name, outcome in actions(report) if outcome == "done"} == LEAKS
    assert {outcome for _, _, outcome in actions(report)} == {"done"}
    for name in ("db-1.default", "job-7f9c.default", "vm-deleted.default"):
        assert not live_ip(kube_api, name)
    assert "old-pod.default" not in {p["name"] for p in nb_server.ports()}
    assert report["from_report"]["file"] == str(checked) and report["from_report"]["ips"] == 3
    # status is derived: recomputed live, and written, as by any pass
    assert kube_api.get("subnets", "ovn-default")["status"]["v4usingIPs"] == 5  # type: ignore[index]
    assert "0 leaks not in the reviewed report left alone" in result.stderr


def test_run_from_report_leaves_what_was_not_reviewed_and_skips_what_changed(
        checked: Path, demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    # After the check: a new leak; the owner of job-7f9c comes back; vm-deleted's IP CR is deleted and
    # re-created (a new uid, still leaked); old-pod's port is deleted and re-created (a new NB uuid).
    demo.address("default", "late", "10.16.0.20")
    kube_api.create("pods", {"metadata": {"name": "job-7f9c", "namespace": "default", "creationTimestamp": OLD,
                                          "annotations": {"ovn.kubernetes.io/allocated": "true"}},
                             "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "i"}]},
                             "status": {"phase": "Running"}}, namespace="default")
    old_uid = kube_api.get("ips", "vm-deleted.default")["metadata"]["uid"]  # type: ignore[index]
    kube_api.remove_finalizers("ips", "vm-deleted.default")
    kube_api.delete("ips", "vm-deleted.default")
    demo.ip_cr("vm-deleted.default", "ovn-default", "10.16.0.6", pod_name="vm-deleted", namespace="default",
               pod_type="VirtualMachine")
    new_uid = kube_api.get("ips", "vm-deleted.default")["metadata"]["uid"]  # type: ignore[index]
    assert new_uid != old_uid
    (old_port,) = [p["uuid"] for p in nb_server.ports() if p["name"] == "old-pod.default"]
    nb_server.delete_ports([old_port])
    new_port = demo.port("old-pod.default", "ovn-default", "10.16.0.8", pod_key="default/old-pod")

    result, report = gc(kubeconfig, nb_server, "run", "--from-report", str(checked))
    assert result.exit_code == 0, result.stderr
    got = actions(report)
    assert set(got) == {
        ("ip", "db-1.default", "done"),
        ("ip", "job-7f9c.default", "skipped"),
        ("ip", "vm-deleted.default", "skipped"), ("ip", "vm-deleted.default", "not-reviewed"),
        ("port", "old-pod.default", "skipped"), ("port", "old-pod.default", "not-reviewed"),
        ("ip", "late.default", "not-reviewed"),
    }
    assert got["ip", "job-7f9c.default", "skipped"]["reason"].startswith("in the report, but no longer a leak: ")
    assert "Pod default/job-7f9c" in got["ip", "job-7f9c.default", "skipped"]["reason"]
    assert got["ip", "vm-deleted.default", "skipped"]["reason"] == (
        f"in the report, but re-created since the check (uid {new_uid}, the check saw {old_uid}): a different IP "
        f"CR of the same name; left alone")
    assert got["ip", "vm-deleted.default", "skipped"]["uid"] == old_uid
    assert got["ip", "vm-deleted.default", "not-reviewed"]["uid"] == new_uid
    assert got["port", "old-pod.default", "skipped"]["reason"].startswith(
        f"in the report, but re-created since the check (NB uuid {new_port}, the check saw {old_port})")
    assert got["ip", "late.default", "not-reviewed"]["reason"] == (
        "owner Pod default/late not found; not in the reviewed report: left alone")
    # exactly the reviewed leak that is still the same is gone; everything else is where it was
    assert not live_ip(kube_api, "db-1.default")
    for name in ("job-7f9c.default", "vm-deleted.default", "late.default"):
        assert live_ip(kube_api, name), name
    ports = {p["name"]: p["uuid"] for p in nb_server.ports()}
    assert ports["old-pod.default"] == new_port and "late.default" in ports
    assert "3 leaks not in the reviewed report left alone" in result.stderr


def _aged(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "started_at": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=61)).isoformat()}


@pytest.mark.parametrize(("case", "message"), [
    ("stale", "is 1h01m old (its check started at "),
    ("stale-by-env", "older than --max-report-age 5m00s"),
    ("foreign", "was made on another cluster: namespace kube-system uid 0000-other"),
    ("run-report", "is the report of a run that acted (dry_run: false), not a check report"),
    ("doctor-report", "is a doctor report, not a check report"),
    ("not-json", "is not JSON"),
    ("missing", "cannot read"),
    ("no-uid", "records no uid"),
])
def test_refused_reports_exit_2_and_change_nothing(
        case: str, message: str, checked: Path, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path,
        tmp_path: Path) -> None:
    data = json.loads(checked.read_text())
    env = None
    path = tmp_path / f"{case}.json"
    if case == "stale":
        path.write_text(json.dumps(_aged(data)))
    elif case == "stale-by-env":
        data["started_at"] = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)).isoformat()
        path.write_text(json.dumps(data))
        env = {"KUBE_OVN_GC_MAX_REPORT_AGE": "5m"}
    elif case == "foreign":
        path.write_text(json.dumps({**data, "cluster": {"uid": "0000-other", "server": "https://elsewhere:6443"}}))
    elif case == "run-report":
        path.write_text(gc(kubeconfig, nb_server, "run", "--dry-run", "--max-deletions", "0")[0].stdout
                        .replace('"dry_run": true', '"dry_run": false', 1))
    elif case == "doctor-report":
        path.write_text(gc(kubeconfig, nb_server, "doctor")[0].stdout)
    elif case == "not-json":
        path.write_text("KIND  OUTCOME  NAME\nip    planned  db-1.default\n")
    elif case == "no-uid":
        for action in data["actions"]:
            action.pop("uid", None)
        path.write_text(json.dumps(data))
    before = world(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "run", "--from-report", str(path), env=env)
    assert result.exit_code == 2, result.stderr
    assert report["exit_code"] == 2 and message in report["error"], report["error"]
    assert report["error"].startswith("report refused: ")
    assert set(report) == {"dry_run", "exit_code", "started_at", "duration_seconds", "error"}
    assert "Traceback" not in result.stderr
    assert world(kube_api, nb_server) == before


def test_a_report_of_another_cluster_is_refused_before_the_lease_is_taken(
        checked: Path, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path, tmp_path: Path) -> None:
    data = json.loads(checked.read_text())
    data["cluster"]["uid"] = "0000-other"
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(data))
    kube_api.reset_log()
    result, _ = gc(kubeconfig, nb_server, "run", "--from-report", str(path))
    assert result.exit_code == 2
    assert [r.method for r in kube_api.requests if r.method != "GET"] == []
    assert not any("/leases" in r.path for r in kube_api.requests)


def test_dry_run_from_report_shows_what_the_run_would_do_and_changes_nothing(
        checked: Path, demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    demo.address("default", "late", "10.16.0.20")
    before = world(kube_api, nb_server)
    result, report = gc(kubeconfig, nb_server, "run", "--dry-run", "--from-report", str(checked))
    assert result.exit_code == 1, result.stderr
    assert {(kind, name) for kind, name, outcome in actions(report) if outcome == "planned"} == LEAKS
    assert ("ip", "late.default", "not-reviewed") in actions(report)
    assert world(kube_api, nb_server) == before


def test_every_report_records_the_cluster_and_a_pass_goes_on_without_it(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    uid = kube_api.get("namespaces", "kube-system")["metadata"]["uid"]  # type: ignore[index]
    for command in ("check", "doctor", "run"):
        _, report = gc(kubeconfig, nb_server, command)
        assert report["cluster"] == {"uid": uid, "server": kube_api.url}, command
    kube_api.inject("GET", r"^/api/v1/namespaces/kube-system$", 403, times=None)  # an older RBAC, say
    for command in ("check", "doctor"):
        result, report = gc(kubeconfig, nb_server, command)
        assert result.exit_code == 0 and report["cluster"] == {"uid": None, "server": None}, command
        assert "could not read the cluster's identity" in result.stderr
