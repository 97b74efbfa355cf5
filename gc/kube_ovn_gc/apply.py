"""Execute a plan. The only module that looks at the dry-run mode.

Every delete gets a second look first: the candidate and its possible owners
are read again, judged again by the same pure rules, and only a candidate that
is still dead is deleted — with preconditions (IP CRs: uid + resourceVersion
of the re-read; NB ports: an OVSDB ``wait`` on name and external_ids). Ports
get a third look after their transaction, and go back if an owner appeared
meanwhile (:func:`_look_after_port_deletes`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from . import plan as planner
from .errors import ConflictError, GCError, IncompleteError
from .interfaces import KubeWrites, Northbound
from .model import IpCR, KubeSnapshot, PortUUID
from .report import DONE, FAILED, PLANNED, SKIPPED, ActionRecord

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

STATUS_CONFLICT_ATTEMPTS = 3
KUBE_OVN_FINALIZERS = ("kubeovn.io/kube-ovn-controller", "kube-ovn-controller")


def _no_guard() -> None:
    return None


@dataclass
class Context:
    """What acting needs: the back ends, the first read, the rules, and the mode."""

    writer: KubeWrites
    nb: Northbound
    kube: KubeSnapshot
    policy: planner.Policy
    dry_run: bool
    guard: Callable[[], None] = _no_guard  # raises SafetyError when we must stop acting (lease lost)
    undo: list[dict[str, Any]] = field(default_factory=list)  # full deleted objects, for restore
    workers: int = 4  # second looks and deletes in flight at once


def ip_detail(ip: IpCR) -> dict[str, object]:
    return {"subnet": ip.subnet, "addresses": ",".join(a for a in (ip.v4, ip.v6) if a),
            "namespace": ip.namespace, "pod": ip.pod_name, "pod_type": ip.pod_type, "stuck": False,
            "uid": ip.meta.uid}


def port_detail(action: planner.PortAction) -> dict[str, object]:
    port = action.port
    return {"switch": port.switch, "uuid": port.uuid, "addresses": list(port.addresses)}


def _fetch(writer: KubeWrites, lookups: Iterable[planner.Lookup]) -> list[object]:
    """GET each possible owner again; absent ones are simply not in the result."""
    getters: dict[str, Callable[[str, str], object | None]] = {
        "Pod": writer.get_pod,
        "VirtualMachine": writer.get_vm,
        "VirtualMachineInstance": writer.get_vmi,
        "StatefulSet": writer.get_statefulset,
        "Node": lambda _ns, name: writer.get_node(name),
        "Subnet": lambda _ns, name: writer.get_subnet(name),
    }
    found = (getters[lookup.kind](lookup.namespace, lookup.name) for lookup in lookups)
    return [obj for obj in found if obj is not None]


def _second_look_ip(ip: IpCR, ctx: Context, *, terminating_ok: bool = False,
                    ) -> tuple[IpCR, dict[str, Any]] | str:
    """Re-read the IP CR and its possible owners; the fresh CR and manifest, or why to leave it."""
    got = ctx.writer.get_ip_manifest(ip.meta.name)
    if got is None:
        return "gone"
    fresh, manifest = got
    if ip.meta.uid and fresh.meta.uid != ip.meta.uid:
        return "re-created since it was read (uid differs)"
    verdict = _owners_again(fresh, ctx, terminating_ok=terminating_ok)
    if verdict.alive:
        return f"second look: {verdict.reason}"
    return fresh, manifest


def _owners_again(ip: IpCR, ctx: Context, *, terminating_ok: bool = False) -> planner.Verdict:
    """The second look at an IP CR's possible owners: GET each again, judge again."""
    owners = _fetch(ctx.writer, planner.lookups_for_ip(ip, ctx.kube.kubevirt, ctx.policy))
    return planner.rejudge_ip(ip, planner.fresh_snapshot(owners, ctx.kube), ctx.policy,
                              terminating_ok=terminating_ok)


class StopActing(GCError):
    """Raised when the guard says stop (lease lost); carries what was done so far."""

    def __init__(self, records: list[ActionRecord], released: set[str]) -> None:
        super().__init__("stopped acting")
        self.records = records
        self.released = released


def _in_parallel(items: Sequence[T], work: Callable[[T], R], ctx: Context,
                 not_acted: Callable[[T, str], R]) -> tuple[list[R], BaseException | None]:
    """Run ``work`` over ``items`` on ``ctx.workers`` threads, in order; the guard is asked before each.

    Once the guard refuses, the items not yet started get ``not_acted`` and the refusal is returned.
    """
    stop = threading.Event()
    refusal: list[BaseException] = []

    def one(item: T) -> R:
        if not stop.is_set():
            try:
                ctx.guard()
            except GCError as exc:
                refusal.append(exc)
                stop.set()
        if stop.is_set():
            return not_acted(item, f"not acted on: {refusal[0]}")
        return work(item)

    if ctx.workers <= 1 or len(items) <= 1:
        results = [one(item) for item in items]
    else:
        with ThreadPoolExecutor(max_workers=ctx.workers, thread_name_prefix="gc-act") as pool:
            results = list(pool.map(one, items))
    return results, (refusal[0] if refusal else None)


def _delete_ip(action: planner.IpAction, ctx: Context) -> tuple[ActionRecord, dict[str, Any] | None]:
    """Second look at the owners, then DELETE with the snapshot's uid + resourceVersion as preconditions:
    an IP CR changed since it was read (relabelled reserved, re-created, …) answers 409 and is left alone."""
    ip = action.ip
    name, detail = ip.meta.name, ip_detail(ip)
    try:
        verdict = _owners_again(ip, ctx)
        if verdict.alive:
            log.warning("ip %s kept: second look: %s", name, verdict.reason)
            return ActionRecord("ip", name, f"second look: {verdict.reason}", SKIPPED, detail), None
        result, manifest = ctx.writer.delete_ip(ip)
    except ConflictError as exc:
        log.warning("ip %s skipped: changed since it was read (%s)", name, exc)
        return ActionRecord("ip", name, f"changed since read: {exc}", SKIPPED, detail), None
    except GCError as exc:
        log.error("ip %s: not deleted: %s", name, exc)
        return ActionRecord("ip", name, f"{action.reason}; not deleted: {exc}", FAILED, detail), None
    gone = " (already gone)" if result == "gone" else ""
    log.info("ip %s deleted (%s)%s", name, action.reason, gone,
             extra={"action": "delete-ip", "object": name, "reason": action.reason})
    return ActionRecord("ip", name, f"{action.reason}{gone}", DONE, detail), manifest


def apply_ips(actions: Sequence[planner.IpAction], ctx: Context) -> tuple[list[ActionRecord], set[str]]:
    """Delete leaked IP CRs; the controller's finalizer then frees the port and IPAM.

    Returns the records and the names released (deleted, or already gone).
    """
    if ctx.dry_run:
        records = [ActionRecord("ip", a.ip.meta.name, a.reason, PLANNED, ip_detail(a.ip)) for a in actions]
        return records, {a.ip.meta.name for a in actions}

    def not_acted(a: planner.IpAction, why: str) -> tuple[ActionRecord, dict[str, Any] | None]:
        return ActionRecord("ip", a.ip.meta.name, why, SKIPPED, ip_detail(a.ip)), None

    results, refusal = _in_parallel(actions, lambda a: _delete_ip(a, ctx), ctx, not_acted)
    records = [record for record, _ in results]
    released = {r.name for r in records if r.outcome == DONE}
    ctx.undo.extend({"kind": "ip", "name": r.name, "manifest": manifest}
                    for r, manifest in results if manifest is not None)
    if refusal is not None:
        raise StopActing(records, released) from refusal
    return records, released


def _look_at_port(a: planner.PortAction, ctx: Context) -> ActionRecord | None:
    """The second look at a port: None when it is still to go, else the record of why not."""
    try:
        if ctx.writer.get_ip_manifest(a.port.name) is not None:
            return ActionRecord("port", a.port.name, "second look: an IP CR of this name exists now", SKIPPED,
                                port_detail(a))
        owners = _fetch(ctx.writer, planner.lookups_for_port(a.port, ctx.kube.kubevirt, ctx.policy))
        verdict = planner.rejudge_port(a.port, planner.fresh_snapshot(owners, ctx.kube), ctx.policy)
    except GCError as exc:
        return ActionRecord("port", a.port.name, f"{a.reason}; second look failed: {exc}", FAILED, port_detail(a))
    if isinstance(verdict, planner.Skip) or verdict.alive:
        return ActionRecord("port", a.port.name, f"second look: {verdict.reason}", SKIPPED, port_detail(a))
    return None


def apply_ports(actions: Sequence[planner.PortAction], ctx: Context) -> list[ActionRecord]:
    """Delete leaked ports that have no IP CR, after a second look, in a few guarded NB transactions."""
    if ctx.dry_run:
        return [ActionRecord("port", a.port.name, a.reason, PLANNED, port_detail(a)) for a in actions]
    if not actions:
        return []

    def not_acted(a: planner.PortAction, why: str) -> ActionRecord | None:
        return ActionRecord("port", a.port.name, why, SKIPPED, port_detail(a))

    looked, refusal = _in_parallel(actions, lambda a: _look_at_port(a, ctx), ctx, not_acted)
    records = [r for r in looked if r is not None]
    if refusal is not None:
        raise StopActing(records, set()) from refusal
    survivors = [a for a, r in zip(actions, looked, strict=True) if r is None]
    if not survivors:
        return records
    try:
        rows = ctx.nb.lsp_get([a.port.uuid for a in survivors])
    except GCError as exc:
        log.error("port deletion failed: %s", exc)
        return records + [ActionRecord("port", a.port.name, f"{a.reason}; delete failed: {exc}", FAILED,
                                       port_detail(a)) for a in survivors]
    uncertain: Collection[str] = ()
    failure = "no outcome reported"
    try:
        results: Mapping[PortUUID, str] = ctx.nb.lsp_del([a.port for a in survivors])
    except IncompleteError as exc:  # some batches went through: those ports are really gone
        log.error("port deletion stopped part-way: %s", exc)
        results, uncertain = {PortUUID(k): v for k, v in exc.settled.items()}, exc.uncertain
        failure = str(exc)
    except GCError as exc:
        log.error("port deletion failed: %s", exc)
        results, failure = {}, str(exc)
    put_back = _look_after_port_deletes([a for a in survivors if results.get(a.port.uuid) == "done"], rows, ctx)
    for a in survivors:
        result = results.get(a.port.uuid, "failed")
        if a.port.uuid in put_back:
            records.append(put_back[a.port.uuid])
            continue
        if a.port.uuid in uncertain:
            # Its delete was sent and never answered: it may be gone. Keep its row for restore
            # (which refuses a name that still exists), and report it failed: the next pass tells.
            if a.port.uuid in rows:
                ctx.undo.append({"kind": "port", "name": a.port.name, **rows[a.port.uuid], "uncertain": True})
            records.append(ActionRecord("port", a.port.name, f"{a.reason}; delete not confirmed (it may have "
                                        f"been applied): {failure}", FAILED, port_detail(a)))
        elif result in ("done", "gone"):
            log.info("port %s deleted from switch %s (%s)", a.port.name, a.port.switch, a.reason,
                     extra={"action": "delete-port", "object": a.port.name, "reason": a.reason})
            if a.port.uuid in rows:
                ctx.undo.append({"kind": "port", "name": a.port.name, **rows[a.port.uuid]})
            records.append(ActionRecord("port", a.port.name, a.reason, DONE, port_detail(a)))
        elif result == "changed":
            log.warning("port %s skipped: changed since it was read", a.port.name)
            records.append(ActionRecord("port", a.port.name, "changed since read: left alone", SKIPPED,
                                        port_detail(a)))
        else:
            why = failure if result == "failed" else result
            records.append(ActionRecord("port", a.port.name, f"{a.reason}; delete failed: {why}", FAILED,
                                        port_detail(a)))
    return records


def _look_after_port_deletes(deleted: Sequence[planner.PortAction], rows: Mapping[PortUUID, Any],
                             ctx: Context) -> dict[PortUUID, ActionRecord]:
    """A third look at each deleted port's owners; a port whose owner appeared meanwhile is put back.

    The second looks and the one NB transaction that deletes every survivor are up to ~0.5 s apart
    (the soak, 1,000 ports). An owner created in that gap (a StatefulSet scaled up again) makes
    Kube-OVN adopt the leaked port as it is, a change no ``wait`` can see: v1.12's
    ``CreateLogicalSwitchPort`` returns at once when a port of that name exists
    (pkg/ovs/ovn-nb-logical_switch_port.go, v1.12.0), and v1.13-v1.16's rewrite it in place with the
    same external ids (``UpdateLogicalSwitchPort``, same file). The owner exists before the delete in
    that case, so a look after the delete sees it; the row read just before the delete goes back.
    An owner created after the delete is Kube-OVN's to serve: it creates the port anew.
    Not guarded by the Lease: putting a live port back is never the acting a lost Lease forbids.
    """
    if not deleted:
        return {}
    looked, _ = _in_parallel(deleted, lambda a: _look_at_port(a, ctx), replace(ctx, guard=_no_guard),
                             lambda a, why: None)
    out: dict[PortUUID, ActionRecord] = {}
    for a, record in zip(deleted, looked, strict=True):
        if record is None:
            continue
        if record.outcome != SKIPPED:  # the look failed: the delete stands on its second look
            log.warning("port %s deleted; the look after the delete failed: %s", a.port.name, record.reason)
            continue
        alive = record.reason.removeprefix("second look: ")
        log.warning("port %s: an owner appeared while it was deleted (%s): putting it back", a.port.name, alive)
        where = rows.get(a.port.uuid)
        why = f"deleted, then put back: an owner appeared meanwhile ({alive})"
        if where is None:
            out[a.port.uuid] = ActionRecord("port", a.port.name, f"{why}; its row was not read: not put back",
                                            FAILED, port_detail(a))
            continue
        try:
            ctx.nb.lsp_add(str(where["switch"]), where["row"])
        except ConflictError:  # Kube-OVN created it anew already
            out[a.port.uuid] = ActionRecord("port", a.port.name, f"{why}; Kube-OVN had re-created it", SKIPPED,
                                            port_detail(a))
            continue
        except GCError as exc:
            log.error("port %s could not be put back: %s", a.port.name, exc)
            ctx.undo.append({"kind": "port", "name": a.port.name, **where})
            out[a.port.uuid] = ActionRecord("port", a.port.name, f"{why}; putting it back failed: {exc} "
                                            f"(`kube-ovn-gc restore` this report)", FAILED, port_detail(a))
            continue
        out[a.port.uuid] = ActionRecord("port", a.port.name, why, SKIPPED, port_detail(a))
    return out


def apply_stuck(stuck: Sequence[planner.StuckIp], release_after: Any, ctx: Context) -> list[ActionRecord]:
    """Report IP CRs stuck terminating; with ``release_after`` set, drop Kube-OVN's finalizers from the
    leaked ones stuck longer than that, so their Subnet can be deleted (the seed's "force delete")."""
    records: list[ActionRecord] = []
    for s in stuck:
        name, detail = s.ip.meta.name, {**ip_detail(s.ip), "stuck": True}
        eligible = release_after is not None and s.leaked and s.terminating_for >= release_after
        if not eligible:
            records.append(ActionRecord("ip", name, s.reason, SKIPPED, detail))
            continue
        reason = f"{s.reason}; releasing its Kube-OVN finalizers (--release-stuck-after)"
        if ctx.dry_run:
            records.append(ActionRecord("ip", name, reason, PLANNED, detail))
            continue
        try:
            ctx.guard()
            looked = _second_look_ip(s.ip, ctx, terminating_ok=True)
            if isinstance(looked, str):
                outcome = DONE if looked == "gone" else SKIPPED
                records.append(ActionRecord("ip", name, f"{s.reason}; {looked}", outcome, detail))
                continue
            _, manifest = looked
            ctx.writer.release_finalizers(manifest, KUBE_OVN_FINALIZERS)
        except ConflictError as exc:
            records.append(ActionRecord("ip", name, f"changed since read: {exc}", SKIPPED, detail))
            continue
        except GCError as exc:
            records.append(ActionRecord("ip", name, f"{reason}; failed: {exc}", FAILED, detail))
            continue
        log.warning("ip %s: released the finalizers of a leaked IP CR stuck terminating for %s",
                    name, s.terminating_for, extra={"action": "release-finalizers", "object": name})
        ctx.undo.append({"kind": "ip", "name": name, "manifest": manifest})
        records.append(ActionRecord("ip", name, reason, DONE, detail))
    return records


Refresh = Callable[[str], KubeSnapshot | None]
"""Re-read one subnet (and the IPs) after a conflict; None when the subnet is gone."""


def _status_record(action: planner.StatusAction, outcome: str, reason: str | None = None) -> ActionRecord:
    return ActionRecord("subnet-status", action.subnet.meta.name, reason or action.reason, outcome,
                        {"before": action.before, "after": action.after, "changed": list(action.changed)})


def apply_statuses(status_plan: planner.StatusPlan, released: Collection[str], writer: KubeWrites,
                   refresh: Refresh, dry_run: bool, workers: int = 1) -> list[ActionRecord]:
    """Write recomputed Subnet statuses, guarded by resourceVersion; on 409 re-read and recompute.

    Subnets are independent: up to ``workers`` are written at once; the records keep the plan's order.
    """
    records = [ActionRecord(s.kind, s.name, s.reason, SKIPPED) for s in status_plan.skipped]
    if dry_run:
        return records + [_status_record(action, PLANNED) for action in status_plan.actions]

    def write(action: planner.StatusAction) -> ActionRecord:
        return _write_status(action, released, writer, refresh)

    if workers <= 1 or len(status_plan.actions) <= 1:
        return records + [write(action) for action in status_plan.actions]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gc-status") as pool:
        return records + list(pool.map(write, status_plan.actions))


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
        log.info("subnet %s status corrected: %s", name, current.reason,
                 extra={"action": "patch-subnet-status", "object": name, "reason": current.reason})
        return _status_record(current, DONE)
    return _status_record(action, SKIPPED, f"subnet kept changing: gave up after {STATUS_CONFLICT_ATTEMPTS} tries")
