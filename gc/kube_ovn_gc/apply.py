"""Execute a plan. The only module that looks at the dry-run mode."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence

from . import plan as planner
from .errors import ConflictError, GCError
from .interfaces import KubeWrites, Northbound
from .model import KubeSnapshot, PortUUID
from .report import DONE, FAILED, PLANNED, SKIPPED, ActionRecord

log = logging.getLogger(__name__)

STATUS_CONFLICT_ATTEMPTS = 3


def _ip_detail(action: planner.IpAction) -> dict[str, object]:
    ip = action.ip
    return {"subnet": ip.subnet, "addresses": ",".join(a for a in (ip.v4, ip.v6) if a),
            "namespace": ip.namespace, "pod": ip.pod_name, "pod_type": ip.pod_type}


def _port_detail(action: planner.PortAction) -> dict[str, object]:
    port = action.port
    return {"switch": port.switch, "uuid": port.uuid, "addresses": list(port.addresses)}


def apply_ips(actions: Sequence[planner.IpAction], writer: KubeWrites, dry_run: bool,
              ) -> tuple[list[ActionRecord], set[str]]:
    """Delete leaked IP CRs; the controller's finalizer then frees the port and IPAM.

    Returns the records and the names released (done or already gone).
    """
    records: list[ActionRecord] = []
    released: set[str] = set()
    for action in actions:
        name, detail = action.ip.meta.name, _ip_detail(action)
        if dry_run:
            records.append(ActionRecord("ip", name, action.reason, PLANNED, detail))
            released.add(name)
            continue
        try:
            result = writer.delete_ip(action.ip)
        except ConflictError as exc:
            log.warning("ip %s skipped: changed since it was read (%s)", name, exc)
            records.append(ActionRecord("ip", name, f"changed since read: {exc}", SKIPPED, detail))
            continue
        except GCError as exc:
            log.error("ip %s: delete failed: %s", name, exc)
            records.append(ActionRecord("ip", name, f"{action.reason}; delete failed: {exc}", FAILED, detail))
            continue
        log.info("ip %s deleted (%s)%s", name, action.reason, " (already gone)" if result == "gone" else "")
        released.add(name)
        records.append(ActionRecord("ip", name, action.reason, DONE, detail))
    return records, released


def apply_ports(actions: Sequence[planner.PortAction], nb: Northbound, dry_run: bool) -> list[ActionRecord]:
    """Delete leaked ports that have no IP CR, in a few guarded NB transactions."""
    if dry_run:
        return [ActionRecord("port", a.port.name, a.reason, PLANNED, _port_detail(a)) for a in actions]
    if not actions:
        return []
    try:
        results: Mapping[PortUUID, str] = nb.lsp_del([a.port for a in actions])
    except GCError as exc:
        log.error("port deletion failed: %s", exc)
        return [ActionRecord("port", a.port.name, f"{a.reason}; delete failed: {exc}", FAILED, _port_detail(a))
                for a in actions]
    records = []
    for a in actions:
        result = results.get(a.port.uuid, "failed")
        if result in ("done", "gone"):
            log.info("port %s deleted from switch %s (%s)", a.port.name, a.port.switch, a.reason)
            records.append(ActionRecord("port", a.port.name, a.reason, DONE, _port_detail(a)))
        elif result == "changed":
            log.warning("port %s skipped: changed since it was read", a.port.name)
            records.append(ActionRecord("port", a.port.name, "changed since read: left alone", SKIPPED,
                                        _port_detail(a)))
        else:
            records.append(ActionRecord("port", a.port.name, f"{a.reason}; delete failed: {result}", FAILED,
                                        _port_detail(a)))
    return records


Refresh = Callable[[str], KubeSnapshot | None]
"""Re-read one subnet (and the IPs) after a conflict; None when the subnet is gone."""


def _status_record(action: planner.StatusAction, outcome: str, reason: str | None = None) -> ActionRecord:
    return ActionRecord("subnet-status", action.subnet.meta.name, reason or action.reason, outcome,
                        {"before": action.before, "after": action.after, "changed": list(action.changed)})


def apply_statuses(status_plan: planner.StatusPlan, released: Collection[str], writer: KubeWrites,
                   refresh: Refresh, dry_run: bool) -> list[ActionRecord]:
    """Write recomputed Subnet statuses, guarded by resourceVersion; on 409 re-read and recompute."""
    records = [ActionRecord(s.kind, s.name, s.reason, SKIPPED) for s in status_plan.skipped]
    for action in status_plan.actions:
        if dry_run:
            records.append(_status_record(action, PLANNED))
            continue
        records.append(_write_status(action, released, writer, refresh))
    return records


def _write_status(action: planner.StatusAction, released: Collection[str], writer: KubeWrites,
                  refresh: Refresh) -> ActionRecord:
    current: planner.StatusAction | None = action
    name = action.subnet.meta.name
    for attempt in range(1, STATUS_CONFLICT_ATTEMPTS + 1):
        assert current is not None
        changed = {k: current.after[k] for k in current.changed}
        try:
            writer.patch_subnet_status(current.subnet, changed)
        except ConflictError:
            log.info("subnet %s changed while we computed its status (attempt %d); re-reading", name, attempt)
            try:
                fresh = refresh(name)
            except GCError as exc:
                return _status_record(action, FAILED, f"{action.reason}; re-read after conflict failed: {exc}")
            if fresh is None:
                return _status_record(action, SKIPPED, "subnet deleted meanwhile")
            again = planner.plan_statuses(fresh, released).actions
            current = next((a for a in again if a.subnet.meta.name == name), None)
            if current is None:
                return _status_record(action, DONE, "status already right after re-read")
            continue
        except GCError as exc:
            log.error("subnet %s: status patch failed: %s", name, exc)
            return _status_record(action, FAILED, f"{action.reason}; patch failed: {exc}")
        log.info("subnet %s status corrected: %s", name, current.reason)
        return _status_record(current, DONE)
    return _status_record(action, SKIPPED, f"subnet kept changing: gave up after {STATUS_CONFLICT_ATTEMPTS} tries")
