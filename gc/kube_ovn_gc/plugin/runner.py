"""One ``kubectl ovn-gc`` call, top to bottom: check the RBAC it needs, read the CronJob, create the
Job, wait for its pod, follow its log (records to stderr, the report kept), read the pass's exit code
from the terminated container, delete the Job, hand back the report and the code.

``run --from-report FILE``: the local file goes into a ConfigMap the plugin creates, owned by the Job (so it
goes with the Job, whoever deletes it), mounted read-only in the pod, and the pass's argument points at the
mounted copy. The Job is created first (the ConfigMap's owner reference needs its uid), naming a ConfigMap
that does not exist yet: its pod waits in ContainerCreating until it does, as the kubelet waits for any
missing ConfigMap volume (it retries the mount). When the ConfigMap cannot be created the Job is deleted at
once (its pod never ran). Once the report is read both are deleted; when the Job is left in place (a failure,
--keep) the ConfigMap stays with it.

Polling, not watching: the plugin asks for the Job's pod and its state every ``poll`` seconds
(0.5 s by default: ~2 small GETs a second while a pass of a few seconds to minutes runs), which needs
only ``list pods`` and keeps the RBAC a CI identity needs small. Whenever something goes wrong after
the Job exists, the Job is left in place and named, so that ``kubectl describe`` can show why.
"""

from __future__ import annotations

import logging
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import job as jobs
from .api import ApiError, ClusterApi, LogEnd
from .errors import (
    ClusterError,
    CronJobNotFound,
    Forbidden,
    Interrupted,
    JobExists,
    LogsUnavailable,
    NotStarted,
    PluginError,
    PodLost,
    Timeout,
    UsageError,
)

log = logging.getLogger(__name__)

JSON = jobs.JSON

# What the plugin does, as RBAC spells it: (verb, API group, resource, subresource). deploy/ci-rbac.yaml
# grants exactly these, and tests/test_plugin.py checks it against the requests the plugin made.
GET_CRONJOB = ("get", "batch", "cronjobs", "")
CREATE_JOB = ("create", "batch", "jobs", "")
GET_JOB = ("get", "batch", "jobs", "")
DELETE_JOB = ("delete", "batch", "jobs", "")
LIST_PODS = ("list", "", "pods", "")
GET_LOG = ("get", "", "pods", "log")
CREATE_CONFIGMAP = ("create", "", "configmaps", "")
DELETE_CONFIGMAP = ("delete", "", "configmaps", "")
NEEDED = (GET_CRONJOB, CREATE_JOB, GET_JOB, LIST_PODS, GET_LOG)  # without them no report comes back
WANTED = (DELETE_JOB,)  # without it the Job stays until its ttlSecondsAfterFinished
NEEDED_FOR_REPORT = (CREATE_CONFIGMAP,)  # run --from-report: the file goes to the pod in a ConfigMap
WANTED_FOR_REPORT = (DELETE_CONFIGMAP,)  # without it the ConfigMap goes with its Job (owner reference)

_LOG_REOPENS = 3


def rule(perm: tuple[str, str, str, str], namespace: str, name: str = "") -> str:
    verb, group, resource, sub = perm
    full = f"{resource}/{sub}" if sub else resource
    names = f'resourceNames: ["{name}"], ' if name else ""
    return f'{{apiGroups: ["{group}"], resources: ["{full}"], {names}verbs: ["{verb}"]}} in namespace {namespace}'


@dataclass(frozen=True)
class Options:
    subcommand: str
    args: tuple[str, ...]
    namespace: str = "kube-system"
    cronjob: str = "kube-ovn-gc"
    container: str = jobs.CONTAINER
    timeout: float = 900.0
    keep: bool = False
    output: str = "text"
    job_name: str | None = None
    poll: float = 0.5
    report: bytes | None = None  # run --from-report FILE: the file's content, handed to the pod


@dataclass(frozen=True)
class Outcome:
    exit_code: int  # the pass's own
    report: str | None  # for stdout
    job: str


class Runner:
    def __init__(self, api: ClusterApi, options: Options, err: Callable[[str], None]) -> None:
        self.api = api
        self.o = options
        self.err = err
        self.deadline = time.monotonic() + options.timeout
        self.job = ""
        self.pod = ""
        self.configmap = ""
        self.last_state = jobs.PodState("pending", "no pod yet")

    # ------------------------------------------------------------------ the call, in order

    def run(self) -> Outcome:
        args = jobs.pass_args(self.o.subcommand, self.o.args, self.o.output)
        payload = None
        if self.o.report is not None:
            args, _ = jobs.report_argument(args)
            payload = jobs.report_payload(self.o.report)
            if jobs.payload_size(payload) > jobs.CONFIGMAP_LIMIT:
                raise UsageError(f"the report is too large for a ConfigMap ({jobs.payload_size(payload)} bytes "
                                 f"compacted, at most {jobs.CONFIGMAP_LIMIT}): run kube-ovn-gc run --from-report "
                                 f"where the file is, or review a check with a lower --max-deletions")
        self.preflight()
        cronjob = self.get_cronjob()
        job = jobs.job_from_cronjob(cronjob, name=self.o.job_name, generate_name=f"{self.o.cronjob}-"
                                    f"{self.o.subcommand}-", container=self.o.container, args=args)
        if payload is not None:
            suffix = "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=8))
            self.configmap = f"{self.o.cronjob}-report-{suffix}"[:63]
            job = jobs.mount_report(job, self.o.container, self.configmap)
        created = self.create_job(job)
        self.job = created["metadata"]["name"]
        self.err(f"job {self.o.namespace}/{self.job} created from cronjob/{self.o.cronjob}: "
                 f"kube-ovn-gc {' '.join(args)}")
        if payload is not None:
            self.create_configmap(jobs.report_configmap(self.configmap, self.o.namespace, payload, created))
        try:
            self.wait_for_pod(created["metadata"].get("uid", ""))
            report_lines, logs_error = self.follow_log()
            state = self.wait_for_end()
            if logs_error is not None:
                report_lines = self.read_whole_log(state, logs_error)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: {self.where()} is left in place; {self.cleanup_hint()}") from None
        code = state.exit_code if state.exit_code is not None else 0
        report = jobs.report_text(report_lines, self.o.output)
        if code == 2 or report is None:  # the pass's own usage error: click's message, not a report
            for line in report_lines:
                self.err(line.rstrip("\n"))
            report = None
        self.delete_job()
        self.delete_configmap()
        return Outcome(code, report, self.job)

    def preflight(self) -> None:
        """SelfSubjectAccessReviews (open to every authenticated user) for every request the plugin will
        make, so that a missing rule is named before anything is created. Skipped when the review
        itself cannot be made: the requests' own 403s are handled as well."""
        missing: list[tuple[str, str, str, str]] = []
        wanted: list[tuple[str, str, str, str]] = []
        needed = (*NEEDED, *NEEDED_FOR_REPORT) if self.o.report is not None else NEEDED
        for perm in (*needed, *WANTED, *(WANTED_FOR_REPORT if self.o.report is not None else ())):
            verb, group, resource, sub = perm
            attributes = {"namespace": self.o.namespace, "verb": verb, "group": group, "resource": resource}
            if sub:
                attributes["subresource"] = sub
            if perm == GET_CRONJOB:
                attributes["name"] = self.o.cronjob
            try:
                review = self.api.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body={
                    "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": attributes}})
            except ApiError as exc:
                log.debug("no access review (%s): the requests will tell", exc)
                return
            if not (review.get("status") or {}).get("allowed"):
                (missing if perm in needed else wanted).append(perm)
        for perm in wanted:
            what = "Jobs this plugin creates stay until their ttlSecondsAfterFinished" if perm == DELETE_JOB else \
                "the ConfigMap of the report stays until its Job goes"
            self.err(f"warning: not allowed to {perm[0]} {perm[2]}: {what}; grant {rule(perm, self.o.namespace)}")
        if missing:
            rules = "\n".join(f"  - {rule(p, self.o.namespace, self.o.cronjob if p == GET_CRONJOB else '')}"
                              for p in missing)
            raise Forbidden(f"your identity is missing RBAC rules kubectl ovn-gc needs:\n{rules}\n"
                            f"deploy/ci-rbac.yaml has the Role (and a RoleBinding to adapt) for a CI identity")

    def get_cronjob(self) -> JSON:
        path = f"/apis/batch/v1/namespaces/{self.o.namespace}/cronjobs/{self.o.cronjob}"
        try:
            return self.api.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                raise CronJobNotFound(
                    f"CronJob {self.o.namespace}/{self.o.cronjob} not found on {self.api.server}: is kube-ovn-gc "
                    f"installed (kubectl apply -f cronjob.yaml, or kubectl apply -k deploy/base)? Installed in "
                    f"another namespace: -n NAMESPACE; under another name: --cronjob NAME") from exc
            raise self.refused(exc, GET_CRONJOB, "read the CronJob", self.o.cronjob) from exc

    def create_job(self, job: JSON) -> JSON:
        path = f"/apis/batch/v1/namespaces/{self.o.namespace}/jobs"
        try:
            return self.api.request("POST", path, body=job)
        except ApiError as exc:
            if exc.status == 409:
                raise JobExists(f"Job {self.o.namespace}/{self.o.job_name} already exists: pick another "
                                f"--job-name, or remove it: kubectl -n {self.o.namespace} delete job "
                                f"{self.o.job_name}") from exc
            if exc.status == 422:
                raise UsageError(f"the Job was refused: {exc.message}") from exc
            raise self.refused(exc, CREATE_JOB, "create the Job") from exc

    def create_configmap(self, configmap: JSON) -> None:
        """The reviewed report for the pod. When it cannot be created, the Job (whose pod waits for it and has
        not run) is deleted, whatever --keep says: nothing ran, nothing is left behind."""
        path = f"/api/v1/namespaces/{self.o.namespace}/configmaps"
        try:
            self.api.request("POST", path, body=configmap)
        except (ApiError, ClusterError) as exc:
            self.delete_job(force=True)
            if isinstance(exc, ApiError) and exc.status == 422:
                raise UsageError(f"the ConfigMap of the report was refused: {exc.message}") from exc
            if isinstance(exc, ApiError):
                raise self.refused(exc, CREATE_CONFIGMAP, "create the ConfigMap of the report") from exc
            raise
        self.err(f"configmap {self.o.namespace}/{self.configmap} holds the report, mounted at {jobs.REPORT_DIR}")

    def delete_configmap(self) -> None:
        """After the report is read (without --keep). Were it left, it would go with its Job all the same."""
        if not self.configmap or self.o.keep:
            return
        self.delete_quietly(f"/api/v1/namespaces/{self.o.namespace}/configmaps/{self.configmap}",
                            f"configmap {self.o.namespace}/{self.configmap}", "it goes with its Job",
                            DELETE_CONFIGMAP)

    def wait_for_pod(self, uid: str) -> None:
        """Until the pod's container has started (or ended); fails fast when it cannot start."""
        while True:
            pod = self.find_pod(uid)
            if pod is None:
                failed = jobs.job_failure(self.get_job())
                if failed:
                    raise NotStarted(f"{self.where()} failed before its pod ran: {failed}; "
                                     f"{self.cleanup_hint()}")
                self.last_state = jobs.PodState("pending", "no pod yet", "the Job controller has not created it")
            else:
                self.pod = pod["metadata"]["name"]
                state = self.last_state = jobs.pod_state(pod, self.o.container)
                if state.kind == "not-started":
                    raise NotStarted(f"pod {self.o.namespace}/{self.pod} cannot start: {state.describe()}; "
                                     f"{self.where()} is left in place for kubectl describe; {self.cleanup_hint()}")
                if state.kind == "lost":
                    raise self.lost(state)
                if state.kind in ("started", "ended"):
                    return
            self.sleep()

    def follow_log(self) -> tuple[list[str], Exception | None]:
        """Follow the container's log to its end: records to stderr, the rest kept as the report. A broken
        stream is opened again and the lines already seen are skipped (a log only grows)."""
        report: list[str] = []
        seen, breaks = 0, 0
        error: Exception | None = None
        path = f"/api/v1/namespaces/{self.o.namespace}/pods/{self.pod}/log"
        query = {"container": self.o.container, "follow": "true"}
        while breaks <= _LOG_REOPENS:
            try:
                lines = self.api.follow(path, query)
            except ApiError as exc:
                if exc.status == 400 and "waiting to start" in exc.message:
                    self.sleep()  # started a moment ago by the state we saw; the kubelet has not caught up
                    continue
                if exc.status == 404:
                    raise self.lost(jobs.PodState("lost", "Deleted", "the pod was deleted")) from exc
                if exc.status == 403:
                    raise self.refused(exc, GET_LOG, "read the pod's log") from exc
                return report, exc
            except ClusterError as exc:
                return report, exc
            index = 0
            while True:
                item = self.next_line(lines)
                if isinstance(item, LogEnd):
                    break
                if index >= seen:
                    self.take(item, report)
                    seen += 1
                index += 1
            if item.error is None:
                return report, None
            error, breaks = item.error, breaks + 1
            log.debug("log stream broke after %d lines (%s); opening it again", seen, error)
        return report, error

    def wait_for_end(self) -> jobs.PodState:
        while True:
            pod = self.get_pod()
            state = self.last_state = jobs.pod_state(pod, self.o.container)
            if state.kind == "ended":
                return state
            if state.kind == "lost":
                raise self.lost(state)
            self.sleep()

    def read_whole_log(self, state: jobs.PodState, first: Exception) -> list[str]:
        """Following failed; now that the container has ended, the whole log is asked for once more and
        the report taken from it (the records seen so far were already shown)."""
        path = f"/api/v1/namespaces/{self.o.namespace}/pods/{self.pod}/log"
        try:
            text = self.api.text(path, {"container": self.o.container})
        except (ApiError, ClusterError) as exc:
            if isinstance(exc, ApiError) and exc.status == 403:
                raise self.refused(exc, GET_LOG, "read the pod's log") from exc
            raise LogsUnavailable(
                f"the pass ended with exit code {state.exit_code}, but its log (and so its report) cannot be "
                f"read: {first}; then: {exc}. {self.where()} is left in place: kubectl -n {self.o.namespace} "
                f"logs job/{self.job} (the node's kubelet may be unreachable, or the log rotated away); "
                f"{self.cleanup_hint()}") from exc
        return [line for line in text.splitlines(keepends=True) if jobs.log_record(line) is None]

    def delete_job(self, *, force: bool = False) -> None:
        if self.o.keep and not force:
            self.err(f"job {self.o.namespace}/{self.job} kept (--keep)")
            return
        self.delete_quietly(f"/apis/batch/v1/namespaces/{self.o.namespace}/jobs/{self.job}", self.where(),
                            "it goes after its ttlSecondsAfterFinished", DELETE_JOB,
                            body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"})

    def delete_quietly(self, path: str, what: str, otherwise: str, grant: tuple[str, str, str, str], *,
                       body: JSON | None = None) -> None:
        """Tidying up after the pass: a failure is a warning (saying what happens instead), never the exit code."""
        try:
            self.api.request("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status != 404:
                self.err(f"warning: could not delete {what}: {exc.message}; {otherwise} "
                         f"(grant {rule(grant, self.o.namespace)})")
        except ClusterError as exc:
            self.err(f"warning: could not delete {what}: {exc}")

    # ------------------------------------------------------------------ pieces

    def find_pod(self, uid: str) -> JSON | None:
        path = f"/api/v1/namespaces/{self.o.namespace}/pods"
        try:
            pods = self.api.request("GET", path, query={"labelSelector": f"controller-uid={uid}"})
        except ApiError as exc:
            raise self.refused(exc, LIST_PODS, "find the Job's pod") from exc
        items = sorted(pods.get("items") or [], key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return items[-1] if items else None

    def get_pod(self) -> JSON:
        path = f"/api/v1/namespaces/{self.o.namespace}/pods"
        try:
            pods = self.api.request("GET", path, query={"fieldSelector": f"metadata.name={self.pod}"})
        except ApiError as exc:
            raise self.refused(exc, LIST_PODS, "read the pod's state") from exc
        items = pods.get("items") or []
        if not items:
            raise self.lost(jobs.PodState("lost", "Deleted", "the pod was deleted before the pass ended"))
        pod: JSON = items[0]
        return pod

    def get_job(self) -> JSON:
        path = f"/apis/batch/v1/namespaces/{self.o.namespace}/jobs/{self.job}"
        try:
            return self.api.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                raise NotStarted(f"{self.where()} was deleted before its pod ran") from exc
            raise self.refused(exc, GET_JOB, "read the Job") from exc

    def next_line(self, lines: queue.Queue[str | LogEnd]) -> str | LogEnd:
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise self.timeout()
            try:
                return lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue

    def take(self, line: str, report: list[str]) -> None:
        record = jobs.log_record(line)
        if record is not None:
            self.err(record)
        else:
            report.append(line)

    def sleep(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.timeout()
        time.sleep(min(self.o.poll, remaining))

    def where(self) -> str:
        return f"Job {self.o.namespace}/{self.job}"

    def cleanup_hint(self) -> str:
        return f"remove it with: kubectl -n {self.o.namespace} delete job {self.job}"

    def timeout(self) -> Timeout:
        pod = f"pod {self.pod}: {self.last_state.describe()}" if self.pod else self.last_state.describe()
        return Timeout(f"timed out after {_seconds(self.o.timeout)} ({pod}). {self.where()} is left in place: "
                       f"follow it with kubectl -n {self.o.namespace} logs -f job/{self.job}; "
                       f"{self.cleanup_hint()}")

    def lost(self, state: jobs.PodState) -> PodLost:
        return PodLost(f"pod {self.o.namespace}/{self.pod} ended before the pass did: {state.describe()}. "
                       f"The pass may have done part of its work; run it again. {self.where()} is left in "
                       f"place; {self.cleanup_hint()}")

    def refused(self, exc: ApiError, perm: tuple[str, str, str, str], what: str, name: str = "") -> PluginError:
        if exc.status == 403:
            return Forbidden(f"not allowed to {what}: {exc.message}\nthe missing RBAC rule: "
                             f"{rule(perm, self.o.namespace, name)} (deploy/ci-rbac.yaml has the whole Role)")
        if exc.status == 401:
            return ClusterError(f"the API server {self.api.server} did not accept your credentials: {exc.message}")
        return ClusterError(f"could not {what}: {exc}")


def _seconds(value: float) -> str:
    if value >= 60 and value % 60 == 0:
        return f"{int(value // 60)}m"
    return f"{value:g}s"
