"""Kubernetes Events on the Subnets a pass touched, so ``kubectl describe subnet`` shows what happened.

One core/v1 Event per removed IP CR (``LeakedIPReleased``), deleted port
(``LeakedPortDeleted``) and corrected status (``SubnetStatusCorrected``); only
for actions that were done, so a dry run emits none. Subnets are cluster-scoped,
so their Events live in the ``default`` namespace, as kube-apiserver and
client-go's recorder do it; ``kubectl describe subnet`` finds them by the
Subnet's name, kind and uid, so the uid is filled in whenever it can be had.

Best effort: an Event that cannot be written is logged and skipped, and after a
few failures in a row the rest are given up; nothing here raises, and Events
never change the outcome of the pass.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException, OpenApiException

from .report import DONE, ActionRecord, Report

log = logging.getLogger(__name__)

REASONS = {"ip": "LeakedIPReleased", "port": "LeakedPortDeleted", "subnet-status": "SubnetStatusCorrected"}
SUBNET_API_VERSION = "kubeovn.io/v1"
MAX_PER_SUBNET_AND_REASON = 25
"""Beyond this many Events of one reason on one Subnet in a pass, one summary Event says how many more."""
MAX_CONSECUTIVE_FAILURES = 3
MESSAGE_LIMIT = 1024  # client-go's recorder truncates notes to this length too
_NAME_LIMIT = 253
_WHAT = {"ip": "IP CR", "port": "logical switch port", "subnet-status": "subnet status"}
_VERB = {"ip": "released leaked", "port": "deleted leaked", "subnet-status": "corrected"}
_DONE = {"ip": "released", "port": "deleted", "subnet-status": "corrected"}

# What a failed request can raise: HTTP errors (ApiException), the client's own checks
# (other OpenApiExceptions; pydantic's ValidationError is a ValueError), connection and TLS errors.
_EVENT_ERRORS = (OpenApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


@dataclass(frozen=True)
class PendingEvent:
    subnet: str
    reason: str
    message: str


def subnet_of(action: ActionRecord) -> str:
    """The Subnet an action belongs to: ``subnet`` of an IP, ``switch`` of a port (same name), or its own name."""
    if action.kind == "subnet-status":
        return action.name
    key = "subnet" if action.kind == "ip" else "switch"
    value = action.detail.get(key)
    return value if isinstance(value, str) else ""


def _message(action: ActionRecord) -> str:
    text = f"{_VERB[action.kind]} {_WHAT[action.kind]}"
    if action.kind != "subnet-status":
        text += f" {action.name}"
    addresses = action.detail.get("addresses")
    if action.kind == "ip" and isinstance(addresses, str) and addresses:
        text += f" ({addresses})"
    return f"{text}: {action.reason}"


def plan_events(report: Report, max_per_subnet: int = MAX_PER_SUBNET_AND_REASON) -> list[PendingEvent]:
    """The Events a report calls for, in action order, capped per (subnet, reason) with one summary each."""
    out: list[PendingEvent] = []
    seen: Counter[tuple[str, str]] = Counter()
    for action in report.actions:
        if action.outcome != DONE or action.kind not in REASONS:
            continue
        subnet = subnet_of(action)
        if not subnet:
            log.debug("no subnet known for %s %s: no event", action.kind, action.name)
            continue
        key = (subnet, REASONS[action.kind])
        seen[key] += 1
        if seen[key] <= max_per_subnet:
            out.append(PendingEvent(subnet, key[1], _message(action)))
    for (subnet, reason), n in seen.items():
        if n > max_per_subnet:
            kind = next(k for k, r in REASONS.items() if r == reason)
            out.append(PendingEvent(subnet, reason, f"... and {n - max_per_subnet} more {_WHAT[kind]}s "
                                                    f"{_DONE[kind]} in this pass ({n} in all; the job's report "
                                                    f"lists every one)"))
    return out


def event_body(pending: PendingEvent, name: str, namespace: str, uid: str, component: str, instance: str,
               now: dt.datetime) -> dict[str, Any]:
    """A core/v1 Event in the style of client-go's recorder (no ``eventTime``: a "legacy" event)."""
    involved: dict[str, Any] = {"apiVersion": SUBNET_API_VERSION, "kind": "Subnet", "name": pending.subnet}
    if uid:
        involved["uid"] = uid
    stamp = now.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = pending.message if len(pending.message) <= MESSAGE_LIMIT else pending.message[: MESSAGE_LIMIT - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": involved,
        "reason": pending.reason,
        "message": message,
        "type": "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def _event_name(subnet: str, serial: int) -> str:
    """``<subnet>.<hex>`` like client-go (its hex is the time in ns; ours is too, plus the event's index)."""
    suffix = f".{serial:x}"
    return subnet[: _NAME_LIMIT - len(suffix)] + suffix


class _UidLookup:
    """Subnet name → uid, from the caller's map or one GET per subnet (best effort: "" when unknown)."""

    def __init__(self, api: k8s.CustomObjectsApi, known: Mapping[str, str], timeout: float) -> None:
        self._api = api
        self._cache = dict(known)
        self._timeout = timeout

    def __call__(self, subnet: str) -> str:
        if subnet not in self._cache:
            self._cache[subnet] = self._get(subnet)
        return self._cache[subnet]

    def _get(self, subnet: str) -> str:
        try:
            obj = self._api.get_cluster_custom_object("kubeovn.io", "v1", "subnets", subnet,
                                                      _request_timeout=self._timeout)
        except _EVENT_ERRORS as exc:
            log.debug("cannot read subnet %s for its uid: %s", subnet, exc)
            return ""
        uid = obj.get("metadata", {}).get("uid") if isinstance(obj, dict) else None
        return uid if isinstance(uid, str) else ""


def emit_events(api_client: k8s.ApiClient, report: Report, namespace: str = "default",
                component: str = "kube-ovn-gc", *, subnet_uids: Mapping[str, str] | None = None,
                timeout: float = 10.0, max_per_subnet: int = MAX_PER_SUBNET_AND_REASON,
                now: dt.datetime | None = None) -> int:
    """Create the Events for the done actions of ``report``; returns how many were created. Never raises.

    ``subnet_uids`` (name → uid, e.g. from the pass's snapshot) saves a GET per
    Subnet; a Subnet missing from it is read once for its uid. ``now`` stamps
    the Events (default: the current time).
    """
    pending = plan_events(report, max_per_subnet)
    if not pending:
        return 0
    uid_of = _UidLookup(k8s.CustomObjectsApi(api_client), subnet_uids or {}, timeout)
    instance = os.environ.get("HOSTNAME") or socket.gethostname()
    now = now or dt.datetime.now(dt.UTC)
    base = time.time_ns()  # names stay unique across passes whatever ``now`` is
    emitted = failures_in_a_row = 0
    for index, event in enumerate(pending):
        name = _event_name(event.subnet, base + index)
        body = event_body(event, name, namespace, uid_of(event.subnet), component, instance, now)
        try:
            _create(api_client, namespace, body, timeout)
        except _EVENT_ERRORS as exc:
            failures_in_a_row += 1
            log.warning("could not record event %s %s on subnet %s: %s", event.reason, name, event.subnet,
                        _short(exc))
            if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                log.warning("giving up on events after %d failures in a row; %d of %d not recorded",
                            failures_in_a_row, len(pending) - emitted, len(pending))
                break
            continue
        failures_in_a_row = 0
        emitted += 1
    log.info("recorded %d of %d events in namespace %s", emitted, len(pending), namespace)
    return emitted


def _create(client: k8s.ApiClient, namespace: str, body: dict[str, Any], timeout: float) -> None:
    """POST one Event through the ApiClient (auth, TLS, host), the body sent as given: the generated
    ``CoreV1Api`` costs a model validation per call, which adds up over a thousand Events."""
    params = client.param_serialize(
        method="POST", resource_path=f"/api/v1/namespaces/{namespace}/events",
        header_params={"Accept": "application/json", "Content-Type": "application/json"}, body=body,
        auth_settings=["BearerToken"],
    )
    resp = client.call_api(*params, _request_timeout=timeout)
    try:
        resp.read()  # type: ignore[no-untyped-call]
    finally:
        resp.response.release_conn()
    if not 200 <= resp.status <= 299:
        raise ApiException.from_response(http_resp=resp, body=None, data=None)


def _short(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
