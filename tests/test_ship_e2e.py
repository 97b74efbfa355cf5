"""Shipping, end to end: the RBAC of cronjob.yaml against every request the job makes (both ways), metrics
in a real Pushgateway and Events in the fake API after real CLI passes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

import rbac
from fakeapi import FakeApiServer
from kube_ovn_gc.cli import main
from ovsdb import OvsdbServer
from scenario import Cluster, kube_ovn_controller, seed_demo

MANIFEST = Path(__file__).resolve().parent.parent / "cronjob.yaml"


def gc(kubeconfig: Path, nb: OvsdbServer, *args: str) -> tuple[Result, dict[str, Any]]:
    result = CliRunner().invoke(main, [*args, "--kubeconfig", str(kubeconfig), "--ovn-nb", nb.unix_remote,
                                       "--output", "json", "--retry-attempts", "1"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, json.loads(result.stdout)


@pytest.fixture
def demo(kube_api: FakeApiServer, nb_server: OvsdbServer) -> Cluster:
    c = seed_demo(kube_api, nb_server)
    # A node that left the cluster (its port is a leak: the second look GETs the Node) and an
    # mcast-querier port of a deleted subnet (the second look GETs the Subnet).
    c.port("node-gone", "join", "100.64.0.9", pod_key=None)
    c.port("mcast-querier.old-subnet", "ovn-default", "10.16.0.250", pod_key=None)
    return c


def test_rbac_allows_every_request_the_job_makes_and_grants_nothing_it_never_uses(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    def controller_writes_status(server: FakeApiServer) -> None:
        subnet = server.get("subnets", "ovn-default")
        assert subnet is not None
        subnet["status"]["v4usingIPs"] = 8
        server.put("subnets", subnet)

    # A status conflict makes the job re-read the subnet (get subnets) and the IPs.
    kube_api.before("PATCH", r"^/apis/kubeovn\.io/v1/subnets/ovn-default/status$", controller_writes_status)
    kube_api.reset_log()
    assert gc(kubeconfig, nb_server, "check")[0].exit_code == 1
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0, report
    kube_ovn_controller(kube_api, nb_server)
    assert gc(kubeconfig, nb_server, "run")[0].exit_code == 0

    rules = rbac.load_cluster_role(MANIFEST)
    requests = kube_api.requests
    assert rbac.denied_requests(rules, requests) == []
    assert rbac.required_permissions(requests) == rbac.granted_permissions(rules)


def test_events_on_the_subnets_after_a_run(demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer,
                                           kubeconfig: Path) -> None:
    result, _ = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0
    events = kube_api.list("events", "default")
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_reason.setdefault(e["reason"], []).append(e)
    assert {e["involvedObject"]["name"] for e in by_reason["LeakedIPReleased"]} == {"ovn-default"}
    (released,) = [e["message"] for e in by_reason["LeakedIPReleased"]]  # one Event for the three
    assert released.startswith("released 3 leaked IP CRs: ")
    assert "vm-deleted.default (10.16.0.6): owner VirtualMachine default/vm-deleted not found" in released
    assert "db-1.default (10.16.0.10): StatefulSet default/db scaled down" in released
    subnet_uid = kube_api.get("subnets", "ovn-default")["metadata"]["uid"]  # type: ignore[index]
    assert all(e["involvedObject"]["uid"] == subnet_uid and e["involvedObject"]["kind"] == "Subnet"
               for e in by_reason["LeakedIPReleased"])
    assert {e["involvedObject"]["name"] for e in by_reason["LeakedPortDeleted"]} == {"ovn-default", "join"}
    assert {e["involvedObject"]["name"] for e in by_reason["SubnetStatusCorrected"]} == {"ovn-default", "join"}
    # check (a dry run) emits nothing.
    before = len(kube_api.list("events", "default"))
    gc(kubeconfig, nb_server, "check")
    assert len(kube_api.list("events", "default")) == before


def test_a_failing_event_endpoint_does_not_change_the_outcome(demo: Cluster, kube_api: FakeApiServer,
                                                              nb_server: OvsdbServer, kubeconfig: Path) -> None:
    kube_api.inject("POST", r"/events$", 500, times=None)
    result, report = gc(kubeconfig, nb_server, "run")
    assert result.exit_code == 0 and report["exit_code"] == 0
    assert kube_api.list("events", "default") == []


def scrape(url: str, cluster: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k not in ("job", "instance")}
            if s.name.startswith("kube_ovn_gc_") and labels.pop("cluster", None) == cluster:
                out[s.name, frozenset(labels.items())] = s.value
    return out


def test_metrics_of_real_passes_land_in_the_pushgateway(demo: Cluster, kube_api: FakeApiServer,
                                                        nb_server: OvsdbServer, kubeconfig: Path,
                                                        pushgateway: str) -> None:
    before = dt.datetime.now(dt.UTC).timestamp()
    result, _ = gc(kubeconfig, nb_server, "run", "--pushgateway", pushgateway, "--cluster-name", "e2e")
    assert result.exit_code == 0
    samples = scrape(pushgateway, "e2e")
    names = {name for name, _ in samples}
    assert "kube_ovn_gc_exit_code" in names and "kube_ovn_gc_last_success_timestamp_seconds" in names
    assert samples["kube_ovn_gc_exit_code", frozenset()] == 0
    assert samples["kube_ovn_gc_last_success_timestamp_seconds", frozenset()] >= before - 1
    per_subnet = {dict(labels).get("subnet"): v for (name, labels), v in samples.items()
                  if name == "kube_ovn_gc_subnet_using_ips" and dict(labels).get("family") == "ipv4"}
    assert per_subnet["ovn-default"] == 5
    success = samples["kube_ovn_gc_last_success_timestamp_seconds", frozenset()]

    # An unreachable NB: exit 3 is pushed, the last success stays.
    nb_server.kill()
    result, _ = gc(kubeconfig, nb_server, "run", "--pushgateway", pushgateway, "--cluster-name", "e2e")
    assert result.exit_code == 3
    samples = scrape(pushgateway, "e2e")
    assert samples["kube_ovn_gc_exit_code", frozenset()] == 3
    assert samples["kube_ovn_gc_last_success_timestamp_seconds", frozenset()] == success


def test_json_logs_one_object_per_line_with_action_fields(demo: Cluster, kube_api: FakeApiServer,
                                                          nb_server: OvsdbServer, kubeconfig: Path) -> None:
    result, _ = gc(kubeconfig, nb_server, "run", "--log-format", "json")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    starts = [line for line in lines if line["message"].startswith("kube-ovn-gc ") and "settings" in line["message"]]
    assert len(starts) == 1
    deletes = [line for line in lines if line.get("action") == "delete-ip"]
    assert {d["object"] for d in deletes} == {"vm-deleted.default", "job-7f9c.default", "db-1.default"}
    assert all(d["reason"] and d["level"] == "INFO" for d in deletes)
    assert any(line.get("action") == "delete-port" and line["object"] == "old-pod.default" for line in lines)

    dry, _ = gc(kubeconfig, nb_server, "check", "--log-format", "json")
    banner = [json.loads(line) for line in dry.stderr.splitlines() if "DRY RUN" in line]
    assert banner and banner[0]["level"] == "WARNING"


# --- the process entry (console script and python -m): exit codes and output survive the fast exit -------


def entry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kube_ovn_gc", *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def test_the_entry_exits_with_the_pass_code_after_writing_all_of_its_output(
        demo: Cluster, kube_api: FakeApiServer, nb_server: OvsdbServer, kubeconfig: Path) -> None:
    done = entry("check", "--kubeconfig", str(kubeconfig), "--ovn-nb", nb_server.unix_remote, "--output", "json",
                 "--log-format", "json", "--retry-attempts", "1")
    assert done.returncode == 1, done.stderr  # check found leaks
    report = json.loads(done.stdout)  # the whole report, flushed before the exit
    assert report["exit_code"] == 1 and report["dry_run"] is True
    assert {a["name"] for a in report["actions"] if a["kind"] == "ip" and a["outcome"] == "planned"} >= {
        "vm-deleted.default"}
    last = json.loads(done.stderr.strip().splitlines()[-1])  # the logs too, to the summary line
    assert last["message"].startswith("DRY RUN: would remove 3 IP CRs") and last["message"].endswith("→ exit 1")

    done = entry("run", "--kubeconfig", str(kubeconfig), "--ovn-nb", nb_server.unix_remote, "--output", "json",
                 "--retry-attempts", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["exit_code"] == 0
    left = kube_api.get("ips", "vm-deleted.default")  # deleted: gone, or terminating behind its finalizer
    assert left is None or left["metadata"].get("deletionTimestamp")


def test_the_entry_keeps_click_exit_codes_for_usage_errors_help_and_version() -> None:
    usage = entry("run", "--no-such-option")
    assert usage.returncode == 2 and "No such option" in usage.stderr
    helped = entry("run", "--help")
    assert helped.returncode == 0 and "--dry-run" in helped.stdout
    version = subprocess.run([str(Path(sys.executable).with_name("kube-ovn-gc")), "--version"], capture_output=True,
                             text=True, timeout=60, check=False)
    assert version.returncode == 0 and version.stdout.startswith("kube-ovn-gc, version ")


def test_the_entry_reports_a_configuration_error_with_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("not: [a kubeconfig", encoding="utf-8")
    done = entry("check", "--kubeconfig", str(broken), "--ovn-nb", "unix:/nonexistent.sock", "--output", "json",
                 "--retry-attempts", "1")
    assert done.returncode == 2
    assert "configuration" in json.loads(done.stdout)["error"]
