"""What the job did, seen from outside it: every request it sent to the API server, with times, and the
faults the API server answered instead.

:class:`AuditedApi` is the tests' fake API server (``tests/fakeapi.py``) with three additions, all in
``handle`` (the entry every HTTP request goes through; the simulated controller works in-process and
is neither audited nor faulted):

- each request is timed (``time.time()`` before and after it was served) and its verb, resource,
  namespace, name and answer are kept in :attr:`AuditedApi.audit` counters; a successful ``DELETE`` of
  an IP CR is handed to ``on_ip_delete(name, t0, t1)`` and the last ``GET`` of each possible owner is
  remembered (:meth:`AuditedApi.last_get`), so a delete can be judged against when the job last looked;
- now and then a request is answered ``429`` (with ``Retry-After: 1``) or ``500`` instead (``fault_rate``),
  and during a *burst* (:meth:`AuditedApi.burst`) every request is, except the Lease's: a Lease left
  held by a pass that could not release it refuses the next passes for its whole duration (exit 4), a
  story of its own (``tests/test_lease.py``), not this one;
- :meth:`AuditedApi.merge_status` lets the simulated controller write a Subnet status the way
  kube-ovn-controller does (a merge patch on ``status``, no resourceVersion: last writer wins).
"""

from __future__ import annotations

import copy
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from fakeapi import FakeApiServer, status_body

_PATH = re.compile(
    r"^/(?:api|apis/(?P<group>[^/]+))/v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?"
    r"(?:/(?P<sub>[^/]+))?$")
OWNER_RESOURCES = frozenset({"pods", "statefulsets", "virtualmachines", "virtualmachineinstances"})


class AuditedApi(FakeApiServer):
    def __init__(self, *, fault_rate: float = 0.0, rng: random.Random | None = None) -> None:
        super().__init__(kubevirt=True)
        self.fault_rate = fault_rate
        self.faults_on = True
        self.rng = rng or random.Random()
        self.on_ip_delete: Callable[[str, float, float], None] | None = None
        self.audit: Counter[str] = Counter()
        self.fault_times: list[tuple[float, int]] = []  # (when, status) of each injected answer
        self.bursts: list[tuple[float, float]] = []
        self._burst_until = 0.0
        self._gets: dict[tuple[str, str, str], float] = {}
        self._audit_lock = threading.Lock()

    # --- faults ----------------------------------------------------------------------------------

    def burst(self, seconds: float) -> None:
        """Answer every request but the Lease's with 500 for ``seconds`` from now."""
        now = time.time()
        with self._audit_lock:
            self._burst_until = now + seconds
            self.bursts.append((now, now + seconds))

    def _fault(self, method: str, path: str, now: float) -> tuple[int, Any, dict[str, str]] | None:
        if not self.faults_on or ("/coordination.k8s.io/" in path and now < self._burst_until):
            return None
        if now < self._burst_until:
            status = 500
        elif self.fault_rate and self.rng.random() < self.fault_rate:
            status = self.rng.choice((429, 500))
        else:
            return None
        with self._audit_lock:
            self.fault_times.append((now, status))
            self.audit[f"injected {status}"] += 1
        headers = {"Retry-After": "1"} if status == 429 else {}
        details = {"retryAfterSeconds": 1} if status == 429 else None
        reason = "TooManyRequests" if status == 429 else "InternalError"
        return status, status_body(status, reason, f"injected fault: HTTP {status}", details), headers

    # --- the audited entry -----------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes
               ) -> tuple[int, Any, dict[str, str]]:
        t0 = time.time()
        path = target.split("?", 1)[0].rstrip("/")
        faulted = self._fault(method, path, t0)
        if faulted is not None:
            return faulted
        status, payload, extra = super().handle(method, target, headers, raw)
        t1 = time.time()
        m = _PATH.match(path)
        if m is None:
            return status, payload, extra
        resource, ns, name, sub = m["resource"], m["ns"] or "", m["name"] or "", m["sub"] or ""
        verb = {"GET": "get" if name else "list", "DELETE": "delete", "PATCH": "patch", "PUT": "update",
                "POST": "create"}.get(method, method.lower())
        with self._audit_lock:
            self.audit[f"{verb} {resource}{'/' + sub if sub else ''} {status}"] += 1
            if verb == "get" and resource in OWNER_RESOURCES:
                self._gets[(resource, ns, name)] = t1
        if verb == "delete" and resource == "ips" and status == 200 and self.on_ip_delete is not None:
            self.on_ip_delete(name, t0, t1)
        return status, payload, extra

    def last_get(self, resource: str, namespace: str, name: str) -> float | None:
        """When the job's last GET of that object was answered (its second look), if ever."""
        with self._audit_lock:
            return self._gets.get((resource, namespace, name))

    # --- in-process writes for the simulated controller --------------------------------------------

    def merge_status(self, resource: str, name: str, fields: dict[str, Any]) -> bool:
        """Merge ``fields`` into the object's status, unconditionally; False when it does not exist."""
        rt = self.resource_type(resource)
        with self._lock:
            old = self._store[rt].get(("", name))
            if old is None:
                return False
            new = copy.deepcopy(old)
            new["status"] = {**(old.get("status") or {}), **fields}
            if new["status"] != old.get("status"):
                self._commit(rt, ("", name), new)
            return True
