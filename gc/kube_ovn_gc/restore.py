"""Put back what a pass deleted, from the ``undo`` list of its JSON report.

IP CRs are recreated from their manifests (server-set fields stripped); ports
are re-inserted into their switches with every column they had. A name that
exists again is refused and left alone: the world moved on.

A report that records its cluster (the uid of namespace ``kube-system``, as every
pass since ``--from-report`` writes it) is restored only into that cluster: put
into another one, its IP CRs and ports would hold addresses that cluster's IPAM
hands out (:func:`check_cluster`, exit 2, nothing changed). A report of an older
kube-ovn-gc records none; it is restored, with a warning in the report.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError, ConflictError, GCError, NotFoundError
from .model import ClusterIdentity
from .report import DONE, FAILED, SKIPPED, ActionRecord
from .review import same_cluster

log = logging.getLogger(__name__)

_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "generation", "managedFields", "selfLink")


class IpCreator(Protocol):
    def create_ip(self, manifest: dict[str, Any]) -> None: ...


class PortAdder(Protocol):
    def lsp_add(self, switch_name: str, row: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class UndoEntry:
    kind: str  # "ip" | "port"
    name: str
    body: dict[str, Any]  # the IP CR manifest, or {switch, row}


@dataclass(frozen=True)
class Undo:
    entries: list[UndoEntry]
    cluster: ClusterIdentity | None  # None: the report does not record it (an older kube-ovn-gc)


def load(path: str | Path) -> Undo:
    """The deleted objects of a report and its cluster; bad input is a ConfigError (exit 2) and changes nothing."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read report {path}: {exc}") from exc
    undo = report.get("undo") if isinstance(report, dict) else None
    if not isinstance(undo, list):
        raise ConfigError(f"{path} is not a kube-ovn-gc JSON report with an 'undo' list")
    entries: list[UndoEntry] = []
    for i, item in enumerate(undo):
        if not isinstance(item, dict) or item.get("kind") not in ("ip", "port") or not item.get("name"):
            raise ConfigError(f"{path}: undo[{i}] is not an ip or port entry")
        if item["kind"] == "ip" and not isinstance(item.get("manifest"), dict):
            raise ConfigError(f"{path}: undo[{i}] (ip {item['name']}) has no manifest")
        if item["kind"] == "port" and (not isinstance(item.get("row"), dict) or not item.get("switch")):
            raise ConfigError(f"{path}: undo[{i}] (port {item['name']}) has no row or switch")
        entries.append(UndoEntry(item["kind"], str(item["name"]), item))
    cluster = report.get("cluster")
    uid = cluster.get("uid") if isinstance(cluster, dict) else None
    if uid is not None and (not isinstance(uid, str) or not uid):
        raise ConfigError(f"{path}: cluster.uid {uid!r} is not a uid")
    recorded = ClusterIdentity(uid, str(cluster.get("server") or "")) if uid and isinstance(cluster, dict) else None
    return Undo(entries, recorded)


def check_cluster(source: str, recorded: ClusterIdentity | None, live: ClusterIdentity) -> str | None:
    """A warning when the report does not say which cluster it is from; :class:`ReportRefused` (exit 2)
    when it is from another one, or when this cluster's uid cannot be read to tell."""
    if recorded is None:
        return (f"{source} does not record which cluster it was made on (an older kube-ovn-gc, or the pass "
                f"could not read namespace kube-system): restored into {live.server or 'this cluster'} unchecked")
    same_cluster(source, recorded, live)
    return None


def clean_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest fit for a create: no server-set metadata, no status."""
    body = copy.deepcopy(manifest)
    meta = body.get("metadata") or {}
    for key in _SERVER_FIELDS:
        meta.pop(key, None)
    body.pop("status", None)
    return body


def restore(entries: list[UndoEntry], kube: IpCreator, nb: Callable[[], AbstractContextManager[PortAdder]],
            ) -> list[ActionRecord]:
    records: list[ActionRecord] = []
    for e in (e for e in entries if e.kind == "ip"):
        try:
            kube.create_ip(clean_manifest(e.body["manifest"]))
        except ConflictError:
            records.append(ActionRecord("ip", e.name, "refused: an IP CR of this name exists", SKIPPED))
            continue
        except GCError as exc:
            records.append(ActionRecord("ip", e.name, f"create failed: {exc}", FAILED))
            continue
        log.info("ip %s recreated", e.name)
        records.append(ActionRecord("ip", e.name, "recreated", DONE))
    ports = [e for e in entries if e.kind == "port"]
    if not ports:
        return records
    try:
        with nb() as client:
            for e in ports:
                switch = str(e.body["switch"])
                try:
                    client.lsp_add(switch, e.body["row"])
                except ConflictError:
                    records.append(ActionRecord("port", e.name, "refused: a port of this name exists", SKIPPED,
                                                {"switch": switch}))
                    continue
                except NotFoundError:
                    records.append(ActionRecord("port", e.name, f"refused: switch {switch} does not exist",
                                                SKIPPED, {"switch": switch}))
                    continue
                log.info("port %s re-inserted into switch %s", e.name, switch)
                records.append(ActionRecord("port", e.name, "re-inserted", DONE, {"switch": switch}))
    except GCError as exc:
        done = {r.name for r in records if r.kind == "port"}
        records += [ActionRecord("port", e.name, f"NB failed: {exc}", FAILED) for e in ports if e.name not in done]
    return records
