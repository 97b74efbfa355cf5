"""Pure: the Job made from the CronJob, the pass's arguments, what a pod's state means, which log line
is a log record and which is the report. Plain dicts in, plain values out; no client library."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import NoContainer, UsageError

JSON = dict[str, Any]

SUBCOMMANDS = ("check", "run", "doctor")
CONTAINER = "kube-ovn-gc"
INSTANTIATE = "cronjob.kubernetes.io/instantiate"
PASS_CODES = range(0, 6)  # the pass's own exit codes (README, Exit codes)

# The options the plugin sets on the pass itself: the report format it asked for, and JSON log records,
# so that the report (stdout) can be told apart from the logs (stderr) in the one log stream a pod has.
OWN_OPTIONS = ("--output", "-o", "--log-format")

# Container waiting reasons after which the pod will not start by itself (kubelet's
# pkg/kubelet/images/types.go and pkg/kubelet/container/sync_result.go). ErrImagePull alone is
# not one: the kubelet tries again, and the next failure shows as ImagePullBackOff.
START_FAILURES = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                            "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


def pass_args(subcommand: str, args: Sequence[str], output: str) -> list[str]:
    """The container's arguments: the subcommand, the user's arguments, then the report format and
    JSON logs (last, so they win over the CronJob's environment)."""
    if subcommand not in SUBCOMMANDS:
        raise UsageError(f"unknown subcommand {subcommand!r}: use one of {', '.join(SUBCOMMANDS)} "
                         f"(e.g. kubectl ovn-gc check)")
    for arg in args:
        if arg in OWN_OPTIONS or any(arg.startswith(f"{opt}=") for opt in ("--output", "--log-format")):
            raise UsageError(f"{arg.split('=')[0]} is the plugin's: use kubectl ovn-gc -o text|json "
                             f"(logs always come back on stderr)")
    return [subcommand, *args, f"--output={output}", "--log-format=json"]


def job_from_cronjob(cronjob: JSON, *, name: str | None, generate_name: str, container: str,
                     args: list[str]) -> JSON:
    """The Job ``kubectl create job NAME --from=cronjob/CJ`` makes (kubectl's
    ``CreateJobOptions.createJobFromCronJob``, staging/src/k8s.io/kubectl/pkg/cmd/create/create_job.go,
    checked against kubectl v1.33's ``--dry-run=client -o json`` in tests/test_plugin.py): the job
    template's labels and spec, its annotations plus ``cronjob.kubernetes.io/instantiate: manual``, and
    a controller owner reference to the CronJob (without blockOwnerDeletion). Then the container's
    ``args`` are replaced. Without ``name`` the server picks one from ``generate_name``."""
    meta = cronjob.get("metadata") or {}
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    template_meta = template.get("metadata") or {}
    annotations = {INSTANTIATE: "manual", **(template_meta.get("annotations") or {})}
    job_meta: JSON = {"namespace": meta.get("namespace", "")}
    if name:
        job_meta["name"] = name
    else:
        job_meta["generateName"] = generate_name
    if template_meta.get("labels"):
        job_meta["labels"] = dict(template_meta["labels"])
    job_meta["annotations"] = annotations
    job_meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "CronJob", "name": meta.get("name", ""),
                                    "uid": meta.get("uid", ""), "controller": True}]
    spec = copy.deepcopy(template.get("spec") or {})
    pod_spec = ((spec.get("template") or {}).get("spec") or {})
    containers = pod_spec.get("containers") or []
    found = [c for c in containers if c.get("name") == container]
    if not found:
        names = ", ".join(str(c.get("name")) for c in containers) or "none"
        raise NoContainer(f"CronJob {meta.get('namespace')}/{meta.get('name')} has no container {container!r} "
                          f"(its containers: {names}): is it kube-ovn-gc's CronJob? Pick the container with "
                          f"--container NAME")
    found[0]["args"] = list(args)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": spec}


@dataclass(frozen=True)
class PodState:
    """What a pod's status says for the pass: ``pending`` (wait), ``started`` (logs can be read),
    ``ended`` (``exit_code`` is the pass's), ``not-started`` (it will not start by itself) or ``lost``
    (evicted, killed, or ended with a code no pass has)."""

    kind: str
    reason: str = ""
    message: str = ""
    exit_code: int | None = None

    def describe(self) -> str:
        text = self.reason or self.kind
        return f"{text}: {self.message}" if self.message else text


def pod_state(pod: JSON, container: str) -> PodState:
    status = pod.get("status") or {}
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or ()}
    state = (statuses.get(container) or {}).get("state") or {}
    if status.get("reason") == "Evicted":
        return PodState("lost", "Evicted", status.get("message", ""))
    if "terminated" in state:
        term = state["terminated"] or {}
        code = term.get("exitCode")
        if isinstance(code, int) and code in PASS_CODES and status.get("reason") != "DeadlineExceeded":
            return PodState("ended", term.get("reason", ""), term.get("message", ""), code)
        reason = status.get("reason") or term.get("reason") or "Error"
        message = status.get("message") or term.get("message") or ""
        return PodState("lost", reason, f"{message} (exit code {code})".strip(), code)
    if status.get("phase") in ("Failed", "Succeeded"):  # ended without a container state: killed
        return PodState("lost", status.get("reason", "") or status.get("phase", ""), status.get("message", ""))
    if "waiting" in state:
        waiting = state["waiting"] or {}
        reason = waiting.get("reason", "")
        if reason in START_FAILURES:
            return PodState("not-started", reason, waiting.get("message", ""))
        return PodState("pending", reason, waiting.get("message", ""))
    if "running" in state:
        return PodState("started")
    for cond in status.get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return PodState("pending", cond.get("reason", ""), cond.get("message", ""))
    return PodState("pending", status.get("phase", "Pending"))


def job_failure(job: JSON) -> str | None:
    """The Job's ``Failed`` condition (e.g. DeadlineExceeded before its pod ran), as text."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".rstrip(": ")
    return None


_LOG_KEYS = ("time", "level", "logger", "message")


def log_record(line: str) -> str | None:
    """A JSON log record of the pass (kube_ovn_gc.logs.JsonFormatter) rendered as a text log line, or None
    when the line is not one (then it is part of the report)."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or not all(k in record for k in _LOG_KEYS):
        return None
    extra = " ".join(f"{k}={v}" for k, v in record.items() if k not in _LOG_KEYS and k != "exc_info")
    out = f"{record['time']} {record['level']:<7} {record['logger']}: {record['message']}"
    if extra:
        out += f" [{extra}]"
    if record.get("exc_info"):
        out += f"\n{record['exc_info']}"
    return out


def report_text(lines: Iterable[str], output: str) -> str | None:
    """The report from the lines that were not log records: the text as printed, or the JSON object
    re-encoded on one indented document; None when there is no report (e.g. the pass's usage error)."""
    text = "".join(lines)
    if output != "json":
        return text if text.strip() else None
    try:
        report = json.loads(text)
    except ValueError:
        return None
    if not isinstance(report, dict):
        return None
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


# --- run --from-report FILE: the reviewed report handed to the Job through a ConfigMap -------------------

REPORT_OPTION = "--from-report"
REPORT_VOLUME = "reviewed-report"
REPORT_DIR = "/var/run/kube-ovn-gc/reviewed"  # read-only mount; the container's root filesystem is read-only too
REPORT_KEY = "report.json"
CONFIGMAP_LIMIT = 1024 * 1024
"""kube-apiserver refuses a ConfigMap whose data exceed 1 MiB (``validation.MaxConfigMapSize``). A compact check
report takes ~300 bytes an action: some 3,000 planned deletions, six times the default --max-deletions."""


def report_argument(args: Sequence[str]) -> tuple[list[str], str | None]:
    """The pass's arguments with ``--from-report FILE`` (or ``--from-report=FILE``) pointing at the mounted
    copy, and the local FILE; ``(args, None)`` when there is none. Given twice is a usage error."""
    out: list[str] = []
    local: str | None = None
    mounted = f"{REPORT_DIR}/{REPORT_KEY}"
    i = 0
    while i < len(args):
        arg = args[i]
        value: str | None = None
        if arg == REPORT_OPTION:
            if i + 1 >= len(args):
                raise UsageError(f"{REPORT_OPTION} needs a file: kubectl ovn-gc run {REPORT_OPTION} report.json")
            value, i = args[i + 1], i + 2
        elif arg.startswith(f"{REPORT_OPTION}="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        if local is not None:
            raise UsageError(f"{REPORT_OPTION} given twice")
        local = value
        out += [REPORT_OPTION, mounted]
    return out, local


def report_payload(content: bytes) -> JSON:
    """The ConfigMap's data for the report file: a JSON report re-encoded compactly (the same object, without
    its indentation: a third of the size), anything else as it is (the pass refuses it with its reason)."""
    try:
        decoded = json.loads(content)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        text = json.dumps(decoded, separators=(",", ":"), ensure_ascii=False)
        return {"data": {REPORT_KEY: text}}
    try:
        return {"data": {REPORT_KEY: content.decode("utf-8")}}
    except UnicodeDecodeError:
        return {"binaryData": {REPORT_KEY: base64.b64encode(content).decode()}}


def payload_size(payload: JSON) -> int:
    return sum(len(v.encode()) for part in payload.values() for v in part.values())


def report_configmap(name: str, namespace: str, payload: JSON, job: JSON) -> JSON:
    """The ConfigMap holding the reviewed report, owned by the Job it is mounted in: it goes with the Job (the
    garbage collector deletes it when the Job is deleted, whoever deletes the Job)."""
    meta = job.get("metadata") or {}
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta.get("name", ""), "uid": meta.get("uid", "")}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner],
                         "labels": {"app.kubernetes.io/name": "kube-ovn-gc",
                                    "app.kubernetes.io/component": "reviewed-report"}},
            **payload}


def mount_report(job: JSON, container: str, configmap: str) -> JSON:
    """The Job with the ConfigMap as a read-only volume of its pod, mounted in ``container`` at REPORT_DIR."""
    out = copy.deepcopy(job)
    pod_spec = out["spec"]["template"]["spec"]
    pod_spec["volumes"] = [*(pod_spec.get("volumes") or []),
                           {"name": REPORT_VOLUME, "configMap": {"name": configmap}}]
    for c in pod_spec.get("containers") or []:
        if c.get("name") == container:
            c["volumeMounts"] = [*(c.get("volumeMounts") or []),
                                 {"name": REPORT_VOLUME, "mountPath": REPORT_DIR, "readOnly": True}]
    return out
