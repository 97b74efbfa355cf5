"""Kustomize: deploy/base is cronjob.yaml, and every overlay and component renders with the real
``kubectl kustomize`` into objects the Kubernetes schema accepts, doing what it says."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import rbac
from kube_ovn_gc.cli import main as gc_cli

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBECTL = shutil.which("kubectl")
OVERLAYS = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
COMPONENTS = sorted(p.parent.name for p in (DEPLOY / "components").glob("*/kustomization.yaml"))
LATEST = kubernetes_validate.latest_version()
SCHEMA_VERSIONS = ("1.25", LATEST)



def _kustomize_version() -> tuple[int, ...]:
    """The kustomize kubectl embeds (v5.5.0 in kubectl 1.32); components need v3.7 or later."""
    if KUBECTL is None:
        return ()
    out = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30)
    found = yaml.safe_load(out.stdout or "{}").get("kustomizeVersion", "v0") if out.returncode == 0 else "v0"
    return tuple(int(n) for n in str(found).lstrip("v").split(".")[:2] if n.isdigit())


pytestmark = [
    pytest.mark.skipif(KUBECTL is None, reason="kubectl missing: scripts/setup installs kubernetes-client"),
    pytest.mark.skipif(bool(KUBECTL) and _kustomize_version() < (3, 7),
                       reason="this kubectl's kustomize has no components (kubectl 1.21 or later has)"),
]

Doc = dict[str, Any]


def render(directory: Path) -> list[Doc]:
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def key(d: Doc) -> tuple[str, str, str]:
    return d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]


def one(docs: list[Doc], kind: str) -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def container(docs: list[Doc]) -> Doc:
    (c,) = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return dict(c)


def env(docs: list[Doc]) -> dict[str, Doc]:
    return {e["name"]: e for e in container(docs)["env"]}


def volumes(docs: list[Doc]) -> dict[str, Doc]:
    spec = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return {v["name"]: v for v in spec["volumes"]}


def component_alone(name: str, tmp_path: Path) -> Path:
    """An overlay of the base with just this component."""
    overlay = tmp_path / f"with-{name}"
    overlay.mkdir()
    base = os.path.relpath(DEPLOY / "base", overlay)
    comp = os.path.relpath(DEPLOY / "components" / name, overlay)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [base], "components": [comp]}))
    return overlay


# --- the base -------------------------------------------------------------------------------------------


def test_the_base_holds_cronjob_yaml_itself() -> None:
    assert (DEPLOY / "base" / "cronjob.yaml").read_bytes() == (ROOT / "cronjob.yaml").read_bytes(), (
        "deploy/base/cronjob.yaml must be a copy of cronjob.yaml: cp cronjob.yaml deploy/base/cronjob.yaml")


def test_kustomize_renders_the_base_into_the_objects_of_cronjob_yaml() -> None:
    rendered = {key(d): d for d in render(DEPLOY / "base")}
    one_file = {key(d): d for d in rbac.load_manifests(ROOT / "cronjob.yaml")}
    assert rendered == one_file


# --- every overlay and component ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_validates(overlay: str) -> None:
    docs = render(DEPLOY / "overlays" / overlay)
    for d in docs:
        kubernetes_validate.validate(d, LATEST, strict=True)  # strict: unknown fields are errors
    assert one(docs, "CronJob")["metadata"]["name"] == "kube-ovn-gc"


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_component_renders_on_the_base_and_validates(component: str, tmp_path: Path) -> None:
    docs = render(component_alone(component, tmp_path))
    for d in docs:
        versions = SCHEMA_VERSIONS if d["apiVersion"] != "flowcontrol.apiserver.k8s.io/v1" else (LATEST,)
        for version in versions:
            kubernetes_validate.validate(d, version, strict=True)
    base = {key(d) for d in render(DEPLOY / "base")}
    assert base <= {key(d) for d in docs}, "a component adds and patches, it never drops an object"


def test_the_overlays_set_only_options_the_job_has(tmp_path: Path) -> None:
    known = {p.envvar for c in gc_cli.commands.values() for p in c.params if isinstance(p.envvar, str)}
    known |= {"POD_NAME"}
    rendered = [render(DEPLOY / "overlays" / o) for o in OVERLAYS]
    rendered += [render(component_alone(c, tmp_path)) for c in COMPONENTS]
    for docs in rendered:
        assert set(env(docs)) <= known


def test_component_list_is_complete() -> None:
    assert COMPONENTS == ["apf", "nb-tls", "pushgateway", "record-pvc", "report-only", "schedule-hourly"]
    assert OVERLAYS == ["dry-run-first", "production"]


# --- what each does -------------------------------------------------------------------------------------------


def test_nb_over_tls(tmp_path: Path) -> None:
    docs = render(component_alone("nb-tls", tmp_path))
    values = {k: v.get("value") for k, v in env(docs).items()}
    assert values["OVN_NB_DB"] == "ssl:ovn-nb.kube-system.svc:6641"
    tls = volumes(docs)["kube-ovn-tls"]["secret"]
    assert tls["secretName"] == "kube-ovn-tls" and tls["optional"] is False
    [mount] = [m for m in container(docs)["volumeMounts"] if m["name"] == "kube-ovn-tls"]
    for var, file in (("OVN_NB_PRIVATE_KEY", "key"), ("OVN_NB_CERTIFICATE", "cert"), ("OVN_NB_CA_CERT", "cacert")):
        assert values[var] == f"{mount['mountPath']}/{file}"  # the Secret's keys, as Kube-OVN writes them


def test_report_only_and_the_first_rollout(tmp_path: Path) -> None:
    for docs in (render(component_alone("report-only", tmp_path)), render(DEPLOY / "overlays" / "dry-run-first")):
        assert env(docs)["KUBE_OVN_GC_DRY_RUN"]["value"] == "true"
    assert env(render(DEPLOY / "base"))["KUBE_OVN_GC_DRY_RUN"]["value"] == "false"


def test_metrics_to_a_pushgateway_with_the_cluster_name() -> None:
    docs = render(DEPLOY / "overlays" / "production")
    config = one(docs, "ConfigMap")
    assert config["metadata"]["name"].startswith("kube-ovn-gc-metrics-")  # hashed: a change rolls the pass
    assert config["data"] == {"pushgateway": "http://prometheus-pushgateway.monitoring.svc:9091",
                               "cluster-name": "prod-east-1"}
    for var, data_key in (("KUBE_OVN_GC_PUSHGATEWAY", "pushgateway"), ("KUBE_OVN_GC_CLUSTER_NAME", "cluster-name")):
        ref = env(docs)[var]["valueFrom"]["configMapKeyRef"]
        assert ref == {"name": config["metadata"]["name"], "key": data_key}
    assert config["metadata"]["namespace"] == one(docs, "CronJob")["metadata"]["namespace"]


def test_record_to_a_persistent_volume_claim(tmp_path: Path) -> None:
    docs = render(component_alone("record-pvc", tmp_path))
    claim = one(docs, "PersistentVolumeClaim")
    assert volumes(docs)["records"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    [mount] = [m for m in container(docs)["volumeMounts"] if m["name"] == "records"]
    assert env(docs)["KUBE_OVN_GC_RECORD"]["value"] == mount["mountPath"]
    assert not mount.get("readOnly") and container(docs)["securityContext"]["readOnlyRootFilesystem"] is True
    assert claim["metadata"]["namespace"] == one(docs, "CronJob")["metadata"]["namespace"]


def test_schedule_change_keeps_the_deadline_below_the_interval(tmp_path: Path) -> None:
    spec = one(render(component_alone("schedule-hourly", tmp_path)), "CronJob")["spec"]
    assert spec["schedule"] == "7 * * * *"
    assert 0 < spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 3600


def test_priority_and_fairness_puts_the_job_in_a_low_level_of_its_own(tmp_path: Path) -> None:
    docs = render(component_alone("apf", tmp_path))
    level, schema = one(docs, "PriorityLevelConfiguration"), one(docs, "FlowSchema")
    account = one(docs, "ServiceAccount")["metadata"]
    assert schema["spec"]["priorityLevelConfiguration"]["name"] == level["metadata"]["name"]
    [rule] = schema["spec"]["rules"]
    assert rule["subjects"] == [{"kind": "ServiceAccount", "serviceAccount": {
        "name": account["name"], "namespace": account["namespace"]}}]
    assert rule["resourceRules"][0]["clusterScope"] is True and rule["resourceRules"][0]["namespaces"] == ["*"]
    # kube-system-service-accounts (precedence 900, workload-high) would match the job first otherwise
    assert schema["spec"]["matchingPrecedence"] < 900
    limited = level["spec"]["limited"]
    assert level["spec"]["type"] == "Limited"
    assert limited["nominalConcurrencyShares"] < 20  # below global-default's share (workload-low has 100)
    assert limited["borrowingLimitPercent"] == 0


def test_the_ci_role_validates() -> None:
    docs = rbac.load_manifests(DEPLOY / "ci-rbac.yaml")
    assert sorted(d["kind"] for d in docs) == ["Role", "RoleBinding"]
    for d in docs:
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(d, version, strict=True)
