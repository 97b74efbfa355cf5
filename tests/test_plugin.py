"""``kubectl ovn-gc``: through the real kubectl binary (the plugin found on PATH), against the fake API
server over HTTPS (kubectl sends no credentials over plain HTTP), with the Job controller of
``jobcontroller.py`` running the real ``kube-ovn-gc`` against a real ovsdb-server.

The CI identity of these tests holds exactly deploy/ci-rbac.yaml's Role (the fake API server refuses
anything else with kube-apiserver's 403); the pass itself runs with an unrestricted token, as the
CronJob's ServiceAccount would with cronjob.yaml's roles.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rbac
from fakeapi import FakeApiServer, make_tls_files
from jobcontroller import JobController
from kube_ovn_gc.plugin import job as jobs
from kube_ovn_gc.plugin.errors import NoContainer, UsageError
from ovsdb import OvsdbServer
from scenario import OLD, Cluster, kube_ovn_controller, seed_demo

ROOT = Path(__file__).resolve().parent.parent
CI_RBAC = ROOT / "deploy" / "ci-rbac.yaml"
CI_USER = "system:serviceaccount:ci:ci-runner"
CI_TOKEN = "ci-token"
NS = "kube-system"
KUBECTL = shutil.which("kubectl")
LEAKS = ("db-1.default", "job-7f9c.default", "vm-deleted.default", "old-pod.default")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl missing: scripts/setup installs kubernetes-client")


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [d for d in rbac.load_manifests(ROOT / "cronjob.yaml") if d["kind"] == kind]
    return found


def ci_rules() -> list[rbac.Rule]:
    return rbac.load_cluster_role(CI_RBAC, ("ci", "ci-runner"))


@dataclass
class Sandbox:
    api: FakeApiServer
    nb: OvsdbServer
    controller: JobController
    env: dict[str, str]  # kubectl's: the CI identity's kubeconfig, the plugin on PATH
    tmp: Path

    def kubectl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        return subprocess.run([KUBECTL, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def ovn_gc(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.kubectl("ovn-gc", "--poll-interval", "0.1", *args, timeout=timeout)

    def restrict(self, rules: list[rbac.Rule]) -> None:
        self.api.restrict(CI_TOKEN, CI_USER, lambda verb, group, resource, sub, ns, name: rbac.allowed(
            rules, verb, group, resource, sub, namespace=ns, name=name))

    def jobs(self) -> list[str]:
        return [j["metadata"]["name"] for j in self.api.list("jobs", NS)]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sandbox(tmp_path: Path, tls: tuple[Path, Path]) -> Iterator[Sandbox]:
    with FakeApiServer(tls=tls) as api:
        nb = OvsdbServer(tmp_path)
        nb.start()
        try:
            seed_demo(api, nb)
            api.create("cronjobs", manifest("CronJob"))
            pass_env = {"KUBECONFIG": str(api.write_kubeconfig(tmp_path / "in-cluster")), "OVN_NB_DB": nb.unix_remote}
            home = tmp_path / "home"
            home.mkdir()
            env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   "HOME": str(home), "KUBECONFIG": str(api.write_kubeconfig(tmp_path / "ci", token=CI_TOKEN))}
            with JobController(api, pass_env) as controller:
                box = Sandbox(api, nb, controller, env, tmp_path)
                box.restrict(ci_rules())
                yield box
        finally:
            nb.cleanup()


# --- end to end --------------------------------------------------------------------------------------


def test_kubectl_lists_the_plugin(sandbox: Sandbox) -> None:
    listed = sandbox.kubectl("plugin", "list")
    assert str(Path(sys.executable).parent / "kubectl-ovn_gc") in listed.stdout, listed.stdout + listed.stderr


def test_check_fails_on_leaks_run_removes_them_check_passes(sandbox: Sandbox) -> None:
    check = sandbox.ovn_gc("check")
    assert check.returncode == 1, check.stderr
    assert "*** DRY RUN: nothing was changed ***" in check.stdout
    for leak in LEAKS:
        assert leak in check.stdout
    assert "starting with settings" in check.stderr, "the pass's logs come back on stderr"
    assert "starting with settings" not in check.stdout and '"level"' not in check.stderr

    run = sandbox.ovn_gc("run")
    assert run.returncode == 0, run.stderr
    assert "removed 3 IP CRs; 1 ports" in run.stdout
    kube_ovn_controller(sandbox.api, sandbox.nb)  # the controller finishes the IP CRs' deletes

    again = sandbox.ovn_gc("check")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert sandbox.jobs() == [], "each Job is deleted once its report is read"
    args = [a for _, _, a in sandbox.controller.started]
    assert args == [["check", "--output=text", "--log-format=json"], ["run", "--output=text", "--log-format=json"],
                    ["check", "--output=text", "--log-format=json"]]
    made = [r for r in sandbox.api.requests if r.user == CI_USER and r.resource != "selfsubjectaccessreviews"]
    assert rbac.denied_requests(ci_rules(), made) == []


def test_json_report_and_arguments_for_the_pass(sandbox: Sandbox) -> None:
    out = sandbox.ovn_gc("check", "-o", "json", "--min-age", "0s", "-n", NS)
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["exit_code"] == 1 and report["dry_run"] is True
    assert {a["name"] for a in report["actions"] if a["kind"] in ("ip", "port")} == set(LEAKS)
    assert sandbox.controller.started[-1][2] == ["check", "--min-age", "0s", "--output=json", "--log-format=json"]


def test_doctor_through_the_plugin(sandbox: Sandbox) -> None:
    out = sandbox.ovn_gc("doctor")
    assert out.returncode == 1, out.stderr
    assert "leaked-ip (3)" in out.stdout and "kubectl delete ip job-7f9c.default" in out.stdout


def test_the_job_is_the_one_kubectl_create_job_from_makes(sandbox: Sandbox) -> None:
    made = sandbox.kubectl("-n", NS, "create", "job", "gc-now", "--from=cronjob/kube-ovn-gc", "--dry-run=client",
                           "-o", "json")
    assert made.returncode == 0, made.stderr
    expected = _without_nulls(json.loads(made.stdout))
    out = sandbox.ovn_gc("check", "--job-name", "gc-now", "--keep")
    assert out.returncode == 1, out.stderr
    [post] = [r for r in sandbox.api.requests if r.method == "POST" and r.resource == "jobs"]
    sent = copy.deepcopy(post.body)
    [container] = sent["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["check", "--output=text", "--log-format=json"]
    container["args"] = manifest("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
        "args"]
    assert sent == expected
    kept = sandbox.api.get("jobs", "gc-now", NS)
    assert kept is not None and kept["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    assert "job kube-system/gc-now kept (--keep)" in out.stderr


def _without_nulls(obj: Any) -> Any:
    """kubectl's printed object without what its Go types print empty (creationTimestamp: null, status: {})."""
    if isinstance(obj, dict):
        return {k: _without_nulls(v) for k, v in obj.items() if v is not None and not (k == "status" and v == {})}
    if isinstance(obj, list):
        return [_without_nulls(v) for v in obj]
    return obj


def test_the_ci_role_grants_exactly_what_the_plugin_uses(sandbox: Sandbox) -> None:
    sandbox.api.create("namespaces", {"metadata": {"name": "kube-system", "creationTimestamp": OLD}})
    sandbox.api.reset_log()
    check = sandbox.ovn_gc("check", "-o", "json")
    assert check.returncode == 1
    (sandbox.tmp / "report.json").write_text(check.stdout)
    assert sandbox.ovn_gc("run", "--from-report", str(sandbox.tmp / "report.json")).returncode == 0
    made = [r for r in sandbox.api.requests if r.user == CI_USER and r.resource != "selfsubjectaccessreviews"]
    assert rbac.denied_requests(ci_rules(), made) == []
    assert rbac.required_permissions(made) == rbac.granted_permissions(ci_rules())


# --- review, then apply: run --from-report FILE -----------------------------------------------------------


def _reviewed(sandbox: Sandbox) -> Path:
    """`kubectl ovn-gc check -o json > report.json`, on a cluster whose kube-system namespace gives its uid."""
    sandbox.api.create("namespaces", {"metadata": {"name": "kube-system", "creationTimestamp": OLD}})
    check = sandbox.ovn_gc("check", "-o", "json")
    assert check.returncode == 1, check.stderr
    path = sandbox.tmp / "report.json"
    path.write_text(check.stdout)
    return path


def test_run_from_report_through_the_plugin_applies_exactly_the_reviewed_report(sandbox: Sandbox) -> None:
    path = _reviewed(sandbox)
    Cluster(sandbox.api, sandbox.nb).address("default", "late", "10.16.0.20")  # a leak after the review
    sandbox.api.reset_log()
    run = sandbox.ovn_gc("run", "--from-report", str(path), "-o", "json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    outcomes = {(a["name"], a["outcome"]) for a in report["actions"] if a["kind"] in ("ip", "port")}
    assert outcomes == {*((leak, "done") for leak in LEAKS), ("late.default", "not-reviewed")}
    # the mounted copy (the Job controller's materialised ConfigMap volume) of exactly the reviewed plan
    mounted = Path(report["from_report"]["file"])
    assert mounted.name == "report.json" and "-reviewed-report-" in mounted.parent.name
    assert (report["from_report"]["ips"], report["from_report"]["ports"]) == (3, 1)
    late = sandbox.api.get("ips", "late.default")
    assert late is not None and "deletionTimestamp" not in late["metadata"]
    assert "old-pod.default" not in {p["name"] for p in sandbox.nb.ports()}
    assert sandbox.controller.started[-1][2] == ["run", "--from-report", "/var/run/kube-ovn-gc/reviewed/report.json",
                                                  "--output=json", "--log-format=json"]
    # the file went through a ConfigMap owned by the Job, mounted read-only; both are gone afterwards
    [post_job] = [r for r in sandbox.api.requests if r.method == "POST" and r.resource == "jobs"]
    [post_cm] = [r for r in sandbox.api.requests if r.method == "POST" and r.resource == "configmaps"]
    cm_name = post_cm.body["metadata"]["name"]
    pod_spec = post_job.body["spec"]["template"]["spec"]
    assert {"name": "reviewed-report", "configMap": {"name": cm_name}} in pod_spec["volumes"]
    assert {"name": "reviewed-report", "mountPath": "/var/run/kube-ovn-gc/reviewed", "readOnly": True} in \
        pod_spec["containers"][0]["volumeMounts"]
    [owner] = post_cm.body["metadata"]["ownerReferences"]
    assert owner["kind"] == "Job" and owner["uid"]
    assert json.loads(post_cm.body["data"]["report.json"]) == json.loads(path.read_text())
    assert sandbox.api.list("configmaps", NS) == [] and sandbox.jobs() == []
    assert f"configmap kube-system/{cm_name} holds the report" in run.stderr
    made = [r for r in sandbox.api.requests if r.user == CI_USER and r.resource != "selfsubjectaccessreviews"]
    assert rbac.denied_requests(ci_rules(), made) == []


def test_run_from_report_through_the_plugin_refuses_a_foreign_report_with_the_pass_code(sandbox: Sandbox) -> None:
    path = _reviewed(sandbox)
    data = json.loads(path.read_text())
    data["cluster"]["uid"] = "0000-other"
    path.write_text(json.dumps(data))
    before = (sandbox.api.list("ips"), sorted(p["uuid"] for p in sandbox.nb.ports()))
    out = sandbox.ovn_gc("run", "--from-report", str(path))
    assert out.returncode == 2, out.stderr
    assert "was made on another cluster: namespace kube-system uid 0000-other" in out.stderr
    assert "Traceback" not in out.stderr
    assert (sandbox.api.list("ips"), sorted(p["uuid"] for p in sandbox.nb.ports())) == before
    assert sandbox.api.list("configmaps", NS) == [] and sandbox.jobs() == []


def test_run_from_report_usage_errors_are_the_plugins(sandbox: Sandbox) -> None:
    missing = sandbox.ovn_gc("run", "--from-report", str(sandbox.tmp / "nope.json"))
    assert missing.returncode == 10 and "cannot read" in missing.stderr
    (sandbox.tmp / "r.json").write_text("{}")
    wrong = sandbox.ovn_gc("check", "--from-report", str(sandbox.tmp / "r.json"))
    assert wrong.returncode == 10 and "--from-report goes with run" in wrong.stderr
    assert sandbox.jobs() == []


def test_a_configmap_that_cannot_be_created_takes_its_job_with_it(sandbox: Sandbox) -> None:
    path = _reviewed(sandbox)
    sandbox.restrict([r for r in ci_rules() if "configmaps" not in r.resources])
    named = sandbox.ovn_gc("run", "--from-report", str(path))
    assert named.returncode == 14  # named up front: nothing created
    assert 'resources: ["configmaps"], verbs: ["create"]' in named.stderr and sandbox.jobs() == []
    sandbox.api.inject("POST", "selfsubjectaccessreviews", 404, times=None)  # no reviews: the 403 itself tells
    refused = sandbox.ovn_gc("run", "--from-report", str(path))
    assert refused.returncode == 14, refused.stderr
    assert 'the missing RBAC rule: {apiGroups: [""], resources: ["configmaps"], verbs: ["create"]}' in refused.stderr
    assert sandbox.jobs() == [], "the Job whose pod waited for the ConfigMap is deleted"
    assert len(sandbox.controller.started) == 1, "only the check ran"


def test_tidying_up_that_fails_warns_and_keeps_the_pass_code(sandbox: Sandbox) -> None:
    """The ConfigMap and the Job are tidied after the report is read; a refused delete is a warning that
    names the rule and what removes the object instead, never the pass's exit code."""
    path = _reviewed(sandbox)
    for resource in ("configmaps", "jobs"):
        sandbox.api.inject("DELETE", rf"/namespaces/kube-system/{resource}/[^/]+$", 403, times=None)
    out = sandbox.ovn_gc("run", "--from-report", str(path))
    assert out.returncode == 0, out.stderr
    [job] = sandbox.jobs()
    [cm] = [c["metadata"]["name"] for c in sandbox.api.list("configmaps", NS)]
    assert (f"warning: could not delete configmap kube-system/{cm}: " in out.stderr
            and '; it goes with its Job (grant {apiGroups: [""], resources: ["configmaps"], verbs: ["delete"]}'
            in out.stderr), out.stderr
    assert (f"warning: could not delete Job kube-system/{job}: " in out.stderr
            and '; it goes after its ttlSecondsAfterFinished (grant {apiGroups: ["batch"], resources: ["jobs"], '
                'verbs: ["delete"]}' in out.stderr), out.stderr
    assert "Traceback" not in out.stderr


def test_report_argument_and_the_mounted_report() -> None:
    assert jobs.report_argument(["--from-report", "r.json", "--min-age", "0s"]) == (
        ["--from-report", "/var/run/kube-ovn-gc/reviewed/report.json", "--min-age", "0s"], "r.json")
    assert jobs.report_argument(["--from-report=a/b.json"]) == (
        ["--from-report", "/var/run/kube-ovn-gc/reviewed/report.json"], "a/b.json")
    assert jobs.report_argument(["--dry-run"]) == (["--dry-run"], None)
    for bad in (["--from-report"], ["--from-report", "a", "--from-report=b"]):
        with pytest.raises(UsageError):
            jobs.report_argument(bad)
    assert jobs.report_payload(b'{\n  "a": [1, 2]\n}\n') == {"data": {"report.json": '{"a":[1,2]}'}}
    assert jobs.report_payload(b"not json") == {"data": {"report.json": "not json"}}
    assert jobs.report_payload(b"\xff\x00") == {"binaryData": {"report.json": "/wA="}}


# --- the plugin's own failures -------------------------------------------------------------------------


def test_unknown_subcommand(sandbox: Sandbox) -> None:
    out = sandbox.ovn_gc("frobnicate")
    assert out.returncode == 10
    assert "unknown subcommand 'frobnicate'" in out.stderr and "Traceback" not in out.stderr


def test_cluster_unreachable(sandbox: Sandbox) -> None:
    sandbox.api.stop()
    out = sandbox.ovn_gc("check")
    assert out.returncode == 11
    assert "cannot reach the API server" in out.stderr and "Traceback" not in out.stderr


def test_cronjob_not_found(sandbox: Sandbox) -> None:
    sandbox.api.delete("cronjobs", "kube-ovn-gc", NS)
    out = sandbox.ovn_gc("check")
    assert out.returncode == 12
    assert "CronJob kube-system/kube-ovn-gc not found" in out.stderr and "-n NAMESPACE" in out.stderr
    assert sandbox.jobs() == []


def test_another_cronjob_needs_its_own_rule(sandbox: Sandbox) -> None:
    out = sandbox.ovn_gc("check", "--cronjob", "gc")
    assert out.returncode == 14  # the Role names kube-ovn-gc only
    assert 'resources: ["cronjobs"], resourceNames: ["gc"], verbs: ["get"]' in out.stderr


def test_cronjob_without_the_container(sandbox: Sandbox) -> None:
    cronjob = sandbox.api.get("cronjobs", "kube-ovn-gc", NS)
    assert cronjob is not None
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"] = "gc"
    sandbox.api.put("cronjobs", cronjob)
    out = sandbox.ovn_gc("check")
    assert out.returncode == 13
    assert "has no container 'kube-ovn-gc' (its containers: gc)" in out.stderr
    assert sandbox.jobs() == []


@pytest.mark.parametrize(("resource", "verb"), [("pods/log", "get"), ("jobs", "create"), ("pods", "list")])
def test_a_missing_rule_is_named_before_anything_is_created(sandbox: Sandbox, resource: str, verb: str) -> None:
    sandbox.restrict([r for r in ci_rules() if not (resource in r.resources and verb in r.verbs)])
    out = sandbox.ovn_gc("check")
    assert out.returncode == 14
    assert f'resources: ["{resource}"], verbs: ["{verb}"]' in out.stderr and "deploy/ci-rbac.yaml" in out.stderr
    assert sandbox.jobs() == []


def test_a_refused_request_names_the_rule_without_access_reviews(sandbox: Sandbox) -> None:
    sandbox.restrict([r for r in ci_rules() if "pods/log" not in r.resources])
    sandbox.api.inject("POST", "selfsubjectaccessreviews", 404, times=None)  # no reviews: the 403 itself tells
    out = sandbox.ovn_gc("check")
    assert out.returncode == 14
    assert "cannot get resource \"pods/log\"" in out.stderr
    assert 'the missing RBAC rule: {apiGroups: [""], resources: ["pods/log"], verbs: ["get"]}' in out.stderr


def test_job_name_taken(sandbox: Sandbox) -> None:
    sandbox.controller.hold = True
    sandbox.api.create("jobs", {"metadata": {"name": "gc-now", "namespace": NS}, "spec": {}}, namespace=NS)
    out = sandbox.ovn_gc("check", "--job-name", "gc-now")
    assert out.returncode == 15
    assert "Job kube-system/gc-now already exists" in out.stderr


def test_image_pull_failure(sandbox: Sandbox) -> None:
    cronjob = sandbox.api.get("cronjobs", "kube-ovn-gc", NS)
    assert cronjob is not None
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = "registry/gc:does-not-exist"
    sandbox.api.put("cronjobs", cronjob)
    out = sandbox.ovn_gc("check")
    assert out.returncode == 16, out.stderr
    assert 'ImagePullBackOff: Back-off pulling image "registry/gc:does-not-exist"' in out.stderr
    [job] = sandbox.jobs()
    assert f"kubectl -n kube-system delete job {job}" in out.stderr, "left in place for kubectl describe"


def test_timeout_leaves_the_job_and_names_it(sandbox: Sandbox) -> None:
    sandbox.controller.hold = True
    out = sandbox.ovn_gc("check", "--timeout", "2s")
    assert out.returncode == 17
    [job] = sandbox.jobs()
    assert "timed out after 2s" in out.stderr and "ContainerCreating" in out.stderr
    assert f"Job kube-system/{job} is left in place" in out.stderr


def test_logs_unavailable(sandbox: Sandbox) -> None:
    sandbox.api.inject("GET", r"/pods/[^/]+/log$", 500, times=None, body={
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500,
        "message": 'Get "https://10.0.0.5:10250/containerLogs/kube-system/x/kube-ovn-gc?follow=true": dial tcp '
                   '10.0.0.5:10250: connect: connection refused'})
    out = sandbox.ovn_gc("check")
    assert out.returncode == 18, out.stderr
    assert "the pass ended with exit code 1, but its log (and so its report) cannot be read" in out.stderr
    assert "10250: connect: connection refused" in out.stderr
    assert len(sandbox.jobs()) == 1


def test_pod_evicted_mid_pass(sandbox: Sandbox) -> None:
    sandbox.controller.evict_after = 0.2
    out = sandbox.ovn_gc("run")
    assert out.returncode == 19, out.stderr
    assert "Evicted: The node was low on resource: memory" in out.stderr and "run it again" in out.stderr
    assert "Traceback" not in out.stderr


# --- the pure part ---------------------------------------------------------------------------------------


def test_pass_args_keep_the_report_format_and_logs_to_the_plugin() -> None:
    assert jobs.pass_args("doctor", ["--stuck-after", "30m"], "json") == [
        "doctor", "--stuck-after", "30m", "--output=json", "--log-format=json"]
    for bad in (["--output=json"], ["-o", "json"], ["--log-format", "text"]):
        with pytest.raises(UsageError, match="the plugin's"):
            jobs.pass_args("check", bad, "text")
    with pytest.raises(UsageError, match="unknown subcommand 'restore'"):
        jobs.pass_args("restore", [], "text")


def test_job_from_cronjob_keeps_the_template_and_replaces_only_the_args() -> None:
    cronjob = manifest("CronJob")
    cronjob["metadata"]["uid"] = "u-1"
    cronjob["spec"]["jobTemplate"]["metadata"]["annotations"] = {"team": "net"}
    job = jobs.job_from_cronjob(cronjob, name=None, generate_name="kube-ovn-gc-check-", container="kube-ovn-gc",
                                args=["check"])
    assert job["metadata"]["generateName"] == "kube-ovn-gc-check-" and "name" not in job["metadata"]
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual", "team": "net"}
    assert job["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "kube-ovn-gc",
                                                   "uid": "u-1", "controller": True}]
    template = cronjob["spec"]["jobTemplate"]["spec"]
    template["template"]["spec"]["containers"][0]["args"] = ["check"]
    assert job["spec"] == template
    with pytest.raises(NoContainer, match="has no container 'gc'"):
        jobs.job_from_cronjob(cronjob, name="x", generate_name="", container="gc", args=[])


def _pod(phase: str, state: dict[str, Any] | None, **status: Any) -> dict[str, Any]:
    statuses = [{"name": "kube-ovn-gc", "state": state}] if state is not None else []
    return {"status": {"phase": phase, "containerStatuses": statuses, **status}}


def test_pod_states() -> None:
    assert jobs.pod_state(_pod("Pending", None), "kube-ovn-gc").kind == "pending"
    assert jobs.pod_state(_pod("Pending", {"waiting": {"reason": "ContainerCreating"}}), "kube-ovn-gc") == \
        jobs.PodState("pending", "ContainerCreating")
    assert jobs.pod_state(_pod("Pending", {"waiting": {"reason": "ErrImagePull"}}), "kube-ovn-gc").kind == "pending"
    pull = jobs.pod_state(_pod("Pending", {"waiting": {"reason": "ImagePullBackOff", "message": "m"}}), "kube-ovn-gc")
    assert pull == jobs.PodState("not-started", "ImagePullBackOff", "m")
    config = _pod("Pending", {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "s" not found'}})
    assert jobs.pod_state(config, "kube-ovn-gc").kind == "not-started"
    assert jobs.pod_state(_pod("Running", {"running": {}}), "kube-ovn-gc").kind == "started"
    for code in range(6):
        ended = jobs.pod_state(_pod("Failed", {"terminated": {"exitCode": code, "reason": "Error"}}), "kube-ovn-gc")
        assert (ended.kind, ended.exit_code) == ("ended", code)
    oom = jobs.pod_state(_pod("Failed", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}), "kube-ovn-gc")
    assert (oom.kind, oom.reason) == ("lost", "OOMKilled")
    evicted = _pod("Failed", {"terminated": {"exitCode": 0}}, reason="Evicted", message="low on memory")
    assert jobs.pod_state(evicted, "kube-ovn-gc") == jobs.PodState("lost", "Evicted", "low on memory")
    deadline = _pod("Failed", {"terminated": {"exitCode": 0}}, reason="DeadlineExceeded", message="too long")
    assert jobs.pod_state(deadline, "kube-ovn-gc").kind == "lost"
    assert jobs.pod_state(_pod("Failed", None, reason="UnexpectedAdmissionError"), "kube-ovn-gc").kind == "lost"
    unschedulable = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]}}
    assert jobs.pod_state(unschedulable, "kube-ovn-gc") == jobs.PodState("pending", "Unschedulable", "0/3 nodes")


def test_log_records_and_report_lines() -> None:
    record = json.dumps({"time": "T", "level": "INFO", "logger": "kube_ovn_gc.run", "message": "m", "ip": "a"})
    assert jobs.log_record(record + "\n") == "T INFO    kube_ovn_gc.run: m [ip=a]"
    for line in ('{\n', '  "exit_code": 1,\n', "KIND  OUTCOME\n", '{"exit_code": 1}\n', "[1]\n"):
        assert jobs.log_record(line) is None
    assert jobs.report_text(['{\n', '  "exit_code": 1\n', '}\n'], "json") == '{\n  "exit_code": 1\n}\n'
    assert jobs.report_text(["Usage: kube-ovn-gc check\n"], "json") is None
    assert jobs.report_text(["nothing to do\n"], "text") == "nothing to do\n"
    assert jobs.report_text([], "text") is None
