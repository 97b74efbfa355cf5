"""A small Job controller and kubelet for the fake API server: what kube-controller-manager and a node do
with a Job, enough for ``kubectl ovn-gc`` to be tested end to end.

For each new Job it creates the pod as the Job controller does (name ``<job>-<5 chars>``, the labels
``controller-uid``/``job-name`` and their ``batch.kubernetes.io/`` twins, a controller owner reference to
the Job), reports it ``ContainerCreating``, then runs the real ``kube-ovn-gc`` with the container's
arguments and environment (the downward API's ``metadata.name``/``metadata.namespace`` resolved; ``env``
overrides what only works inside a cluster: the kubeconfig of the fake API server and the NB remote of
the real ovsdb-server). Its stdout and stderr go, line by line as they come, into the pod's log
(``pods/log``, followed or not); when it exits the container's terminated state records the exit code,
the pod's phase and the Job's ``Complete``/``Failed`` condition follow. A deleted Job's pods and ConfigMaps are deleted
(background propagation, as the garbage collector does with what a Job owns), killing a running pass.

ConfigMap volumes, as the kubelet mounts them: the pod stays ``ContainerCreating`` until every ConfigMap its
container mounts exists (the kubelet retries a missing one's mount), then each is materialised into a temp
dir of its own (one file per key of ``data`` and ``binaryData``, or per ``items`` path), read-only. The pass
runs on this machine, not in a container, so the mount path cannot be the real one: every argument that
starts with a ``mountPath`` is rewritten to the temp dir (``--from-report /var/run/x/report.json`` →
``--from-report /tmp/…/report.json``), which is the one liberty taken; ``started`` records the args as the
pod spec gives them.

Steering for the failure tests: ``hold`` keeps new pods in ``ContainerCreating``; an image whose name
contains ``does-not-exist`` fails to pull (``ErrImagePull``, then ``ImagePullBackOff``, as the kubelet
reports it); ``evict_after`` evicts the pod that many seconds into its pass (phase ``Failed``, reason
``Evicted``, the container killed: exit 137).
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
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
        self._mounts: list[str] = []  # temp dirs of materialised ConfigMap volumes

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
        for mount in self._mounts:
            shutil.rmtree(mount, ignore_errors=True)

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
            for cm in self.api.list("configmaps"):
                owners = [r for r in cm["metadata"].get("ownerReferences") or () if r.get("kind") == "Job"]
                if owners and all(r.get("uid") not in uids for r in owners):
                    self.api.delete("configmaps", cm["metadata"]["name"], cm["metadata"]["namespace"])
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
        mounts = self._mount(ns, pod_name, pod_spec, container)
        if mounts is None:
            return  # the pod or the controller went while it waited for its volumes
        self._start(ns, pod_name, name, container, mounts)

    def _mount(self, ns: str, pod: str, pod_spec: JSON, container: JSON) -> dict[str, str] | None:
        """The container's ConfigMap volumes, materialised: {mountPath: temp dir}. Waits (ContainerCreating) until
        each ConfigMap exists; None when the pod is deleted or the controller stops meanwhile."""
        volumes = {v.get("name"): v for v in pod_spec.get("volumes") or ()}
        mounts: dict[str, str] = {}
        for mount in container.get("volumeMounts") or ():
            source = (volumes.get(mount.get("name")) or {}).get("configMap")
            if source is None:
                continue
            while (cm := self.api.get("configmaps", source["name"], ns)) is None:
                if self._stop.is_set() or self.api.get("pods", pod, ns) is None:
                    return None
                self._stop.wait(self.poll)
            directory = tempfile.mkdtemp(prefix=f"{pod}-{mount['name']}-")
            self._mounts.append(directory)
            files = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
            files.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
            items = source.get("items")
            for key, path in ((i["key"], i["path"]) for i in items) if items else ((k, k) for k in files):
                with open(os.path.join(directory, path), "wb") as f:
                    f.write(files[key])
                os.chmod(os.path.join(directory, path), 0o444)
            mounts[str(mount["mountPath"]).rstrip("/")] = directory
        return mounts

    def _start(self, ns: str, pod: str, job: str, container: JSON, mounts: dict[str, str]) -> None:
        started = _now()
        spec_args = [str(a) for a in container.get("args") or ()]
        args = list(spec_args)
        for path, directory in mounts.items():  # the one liberty: the mount is a temp dir on this machine
            args = [directory + a[len(path):] if a == path or a.startswith(path + "/") else a for a in args]
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
            self.started.append((ns, pod, spec_args))
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
