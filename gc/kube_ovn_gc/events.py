"""Kubernetes Events on the Subnets a pass touched, so ``kubectl describe subnet`` shows what happened.

One core/v1 Event per Subnet and reason a pass gave cause for: ``LeakedIPReleased``
(the IP CRs removed), ``LeakedPortDeleted`` (the ports deleted) and
``SubnetStatusCorrected``; only for actions that were done, so a dry run emits
none. The message names each object and why it went, as many as fit in an
Event's message; the job's report lists every one. One Event per object would
be a thousand POSTs after a large cleanup, and a wall of near-identical lines
in ``kubectl describe`` (client-go's own recorder folds similar Events
together for the same reason). Subnets are cluster-scoped, so their Events
live in the ``default`` namespace, as kube-apiserver and client-go's recorder
do it; ``kubectl describe subnet`` finds them by the Subnet's name, kind and
uid, so the uid is filled in whenever it can be had.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from .errors import GCError
from .kube import RawApi
from .report import DONE, ActionRecord, Report

log = logging.getLogger(__name__)

REASONS = {"ip": "LeakedIPReleased", "port": "LeakedPortDeleted", "subnet-status": "SubnetStatusCorrected"}
SUBNET_API_VERSION = "kubeovn.io/v1"
SUBNETS_PATH = "/apis/kubeovn.io/v1/subnets"
MAX_CONSECUTIVE_FAILURES = 3
MESSAGE_LIMIT = 1024  # client-go's recorder truncates notes to this length too
_NAME_LIMIT = 253
_WHAT = {"ip": "IP CR", "port": "logical switch port", "subnet-status": "subnet status"}
_VERB = {"ip": "released leaked", "port": "deleted leaked", "subnet-status": "corrected"}
_MANY = {"ip": "released {n} leaked IP CRs", "port": "deleted {n} leaked logical switch ports",
         "subnet-status": "corrected the subnet status {n} times"}
_MORE = "; ... and {n} more (the job's report lists every one)"


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


def _item(action: ActionRecord) -> str:
    """One object and why: ``web-1.shop (10.16.0.9): owner Pod shop/web-1 not found``."""
    if action.kind == "subnet-status":
        return action.reason
    text = action.name
    addresses = action.detail.get("addresses")
    if action.kind == "ip" and isinstance(addresses, str) and addresses:
        text += f" ({addresses})"
    return f"{text}: {action.reason}"


def _message(actions: Sequence[ActionRecord]) -> str:
    """``released leaked IP CR a (…): why`` for one; ``released 8 leaked IP CRs: a (…): why; b …`` for more,
    as many as fit in ``MESSAGE_LIMIT`` with room kept for ``... and N more``."""
    kind = actions[0].kind
    if len(actions) == 1:
        sep = ": " if kind == "subnet-status" else " "
        return f"{_VERB[kind]} {_WHAT[kind]}{sep}{_item(actions[0])}"
    room = MESSAGE_LIMIT - len(_MORE.format(n=len(actions)))
    text = _MANY[kind].format(n=len(actions)) + ": "
    listed = 0
    for action in actions:
        piece = ("; " if listed else "") + _item(action)
        if listed and len(text) + len(piece) > room:
            break
        text += piece
        listed += 1
    return text + (_MORE.format(n=len(actions) - listed) if listed < len(actions) else "")


def plan_events(report: Report) -> list[PendingEvent]:
    """The Events a report calls for: one per (subnet, reason) of its done actions, in the order first met."""
    groups: dict[tuple[str, str], list[ActionRecord]] = {}
    for action in report.actions:
        if action.outcome != DONE or action.kind not in REASONS:
            continue
        subnet = subnet_of(action)
        if not subnet:
            log.debug("no subnet known for %s %s: no event", action.kind, action.name)
            continue
        groups.setdefault((subnet, REASONS[action.kind]), []).append(action)
    return [PendingEvent(subnet, reason, _message(actions)) for (subnet, reason), actions in groups.items()]


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

    def __init__(self, api: RawApi, known: Mapping[str, str]) -> None:
        self._api = api
        self._cache = dict(known)

    def __call__(self, subnet: str) -> str:
        if subnet not in self._cache:
            self._cache[subnet] = self._get(subnet)
        return self._cache[subnet]

    def _get(self, subnet: str) -> str:
        try:
            obj = self._api.request("GET", f"{SUBNETS_PATH}/{subnet}")
        except GCError as exc:
            log.debug("cannot read subnet %s for its uid: %s", subnet, exc)
            return ""
        uid = obj.get("metadata", {}).get("uid") if isinstance(obj, dict) else None
        return uid if isinstance(uid, str) else ""


def emit_events(api_client: k8s.ApiClient, report: Report, namespace: str = "default",
                component: str = "kube-ovn-gc", *, subnet_uids: Mapping[str, str] | None = None,
                timeout: float = 10.0, now: dt.datetime | None = None) -> int:
    """Create the Events for the done actions of ``report``; returns how many were created. Never raises.

    ``subnet_uids`` (name → uid, e.g. from the pass's snapshot) saves a GET per
    Subnet; a Subnet missing from it is read once for its uid. ``now`` stamps
    the Events (default: the current time).
    """
    pending = plan_events(report)
    if not pending:
        return 0
    api = RawApi(api_client, timeout=timeout)
    uid_of = _UidLookup(api, subnet_uids or {})
    instance = os.environ.get("HOSTNAME") or socket.gethostname()
    now = now or dt.datetime.now(dt.UTC)
    base = time.time_ns()  # names stay unique across passes whatever ``now`` is
    emitted = failures_in_a_row = 0
    for index, event in enumerate(pending):
        name = _event_name(event.subnet, base + index)
        body = event_body(event, name, namespace, uid_of(event.subnet), component, instance, now)
        try:
            api.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body, decode=False)
        except GCError as exc:
            failures_in_a_row += 1
            log.warning("could not record event %s %s on subnet %s: %s", event.reason, name, event.subnet, exc)
            if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                log.warning("giving up on events after %d failures in a row; %d of %d not recorded",
                            failures_in_a_row, len(pending) - emitted, len(pending))
                break
            continue
        failures_in_a_row = 0
        emitted += 1
    log.info("recorded %d of %d events in namespace %s", emitted, len(pending), namespace)
    return emitted
