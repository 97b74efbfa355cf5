"""A small Job controller and kubelet for the fake API server: what kube-controller-manager and a node do
with a Job, enough for ``kubectl ovn-gc`` to be tested end to end.

For each new Job it creates the pod as the Job controller does (name ``<job>-<5 chars>``, the labels
``controller-uid``/``job-name`` and their ``batch.kubernetes.io/`` twins, a controller owner reference to
the Job), reports it ``ContainerCreating``, then runs the real ``kube-ovn-gc`` with the container's
arguments and environment (the downward API's ``metadata.name``/``metadata.namespace`` resolved; ``env``
overrides what only works inside a cluster: the kubeconfig of the fake API server and the NB remote of
the real ovsdb-server). Its stdout and stderr go, line by line as they come, into the pod's log
(``pods/log``, followed or not); when it exits the container's terminated state records the exit code,
the pod's phase and the Job's ``Complete``/``Failed`` condition follow. A deleted Job's pods are deleted
(background propagation, as the garbage collector does), killing a running pass.

Steering for the failure tests: ``hold`` keeps new pods in ``ContainerCreating``; an image whose name
contains ``does-not-exist`` fails to pull (``ErrImagePull``, then ``ImagePullBackOff``, as the kubelet
reports it); ``evict_after`` evicts the pod that many seconds into its pass (phase ``Failed``, reason
``Evicted``, the container killed: exit 137).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from fakeapi import FakeApiServer

JSON = dict[str, Any]
EVICTED = ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 61Mi. Container "
           "kube-ovn-gc was using 912Mi, request is 256Mi, has larger consumption of memory.")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class JobController:
    def __init__(self, api: FakeApiServer, env: dict[str, str], *, poll: float = 0.05) -> None:
        self.api = api
        self.env = env
        self.poll = poll
        self.hold = False
        self.evict_after: float | None = None
        self.started: list[tuple[str, str, list[str]]] = []  # (namespace, pod, args) of each pass run
        self._seen: set[str] = set()
        self._procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> JobController:
        loop = threading.Thread(target=self._loop, name="job-controller", daemon=True)
        loop.start()
        self._threads.append(loop)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.kill()
        for thread in self._threads:
            thread.join(timeout=30)

    # ------------------------------------------------------------------ the controller

    def _loop(self) -> None:
        while not self._stop.is_set():
            jobs = self.api.list("jobs")
            uids = {j["metadata"]["uid"] for j in jobs}
            for job in jobs:
                uid = job["metadata"]["uid"]
                if uid not in self._seen:
                    self._seen.add(uid)
                    worker = threading.Thread(target=self._run, args=(job,), name=f"job-{uid[:8]}", daemon=True)
                    worker.start()
                    self._threads.append(worker)
            for pod in self.api.list("pods"):
                owners = [r for r in pod["metadata"].get("ownerReferences") or () if r.get("kind") == "Job"]
                if owners and owners[0].get("uid") not in uids:  # the garbage collector, background
                    self._kill(pod["metadata"]["namespace"], pod["metadata"]["name"])
                    self.api.delete("pods", pod["metadata"]["name"], pod["metadata"]["namespace"])
            self._stop.wait(self.poll)

    def _run(self, job: JSON) -> None:
        meta, spec = job["metadata"], job["spec"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        template = spec.get("template") or {}
        pod_spec = dict(template.get("spec") or {})
        container = (pod_spec.get("containers") or [{}])[0]
        suffix = "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
        pod_name = f"{name}-{suffix}"
        labels = {**((template.get("metadata") or {}).get("labels") or {}),
                  "controller-uid": uid, "batch.kubernetes.io/controller-uid": uid,
                  "job-name": name, "batch.kubernetes.io/job-name": name}
        self.api.create("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": {**pod_spec, "nodeName": "node1"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [self._status(container, {"waiting": {"reason": "ContainerCreating"}})]},
        }, namespace=ns)
        self._job_status(ns, name, {"startTime": _now(), "active": 1})
        if self.hold:
            return
        time.sleep(0.1)
        image = str(container.get("image", ""))
        if "does-not-exist" in image:
            self._pod_status(ns, pod_name, container, {"waiting": {
                "reason": "ErrImagePull", "message": f'failed to pull and unpack image "{image}": not found'}})
            time.sleep(0.2)
            self._pod_status(ns, pod_name, container, {"waiting": {
                "reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}})
            return
        self._start(ns, pod_name, name, container)

    def _start(self, ns: str, pod: str, job: str, container: JSON) -> None:
        started = _now()
        args = [str(a) for a in container.get("args") or ()]
        env = dict(os.environ)
        for var in container.get("env") or ():
            if "value" in var:
                env[var["name"]] = str(var["value"])
            else:
                path = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
                if path in ("metadata.name", "metadata.namespace"):
                    env[var["name"]] = pod if path == "metadata.name" else ns
        env.update(self.env)
        proc = subprocess.Popen([sys.executable, "-m", "kube_ovn_gc", *args], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with self._lock:
            self._procs[ns, pod] = proc
            self.started.append((ns, pod, args))
        self._pod_status(ns, pod, container, {"running": {"startedAt": started}}, phase="Running")
        name = str(container.get("name"))
        readers = [threading.Thread(target=self._copy, args=(stream, ns, pod, name), daemon=True)
                   for stream in (proc.stdout, proc.stderr)]
        for reader in readers:
            reader.start()
        evicted = False
        if self.evict_after is not None:
            try:
                proc.wait(timeout=self.evict_after)
            except subprocess.TimeoutExpired:
                proc.kill()
                evicted = True
        code = proc.wait()
        for reader in readers:
            reader.join(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        with self._lock:
            self._procs.pop((ns, pod), None)
        self.api.close_log(ns, pod, name)
        if self.api.get("pods", pod, ns) is None:
            return  # deleted meanwhile
        terminated = {"exitCode": 137 if evicted else code, "startedAt": started, "finishedAt": _now(),
                      "reason": "ContainerStatusUnknown" if evicted else ("Completed" if code == 0 else "Error")}
        if evicted:
            self._pod_status(ns, pod, container, {"terminated": terminated}, phase="Failed", reason="Evicted",
                             message=EVICTED)
        else:
            self._pod_status(ns, pod, container, {"terminated": terminated},
                             phase="Succeeded" if code == 0 else "Failed")
        if code == 0 and not evicted:
            self._job_status(ns, job, {"succeeded": 1, "active": 0, "completionTime": _now(),
                                       "conditions": [{"type": "Complete", "status": "True"}]})
        else:
            self._job_status(ns, job, {"failed": 1, "active": 0, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]})

    def _copy(self, stream: Any, ns: str, pod: str, container: str) -> None:
        for line in iter(stream.readline, b""):  # line by line, as the container runtime writes the log
            self.api.write_log(ns, pod, container, line)

    def _kill(self, ns: str, pod: str) -> None:
        with self._lock:
            proc = self._procs.get((ns, pod))
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()

    # ------------------------------------------------------------------ status writes

    @staticmethod
    def _status(container: JSON, state: JSON) -> JSON:
        return {"name": container.get("name"), "image": container.get("image"), "state": state,
                "ready": "running" in state, "restartCount": 0}

    def _pod_status(self, ns: str, name: str, container: JSON, state: JSON, *, phase: str | None = None,
                    reason: str | None = None, message: str | None = None) -> None:
        pod = self.api.get("pods", name, ns)
        if pod is None:
            return
        status = dict(pod.get("status") or {})
        status["containerStatuses"] = [self._status(container, state)]
        if phase:
            status["phase"] = phase
        if reason:
            status.update(reason=reason, message=message or "")
        pod["status"] = status
        self.api.put("pods", pod)

    def _job_status(self, ns: str, name: str, fields: JSON) -> None:
        job = self.api.get("jobs", name, ns)
        if job is not None:
            job["status"] = {**(job.get("status") or {}), **fields}
            self.api.put("jobs", job)
