"""One pass: read NB, read Kubernetes, plan, check the rails, act, report. Returns a report; never exits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from . import apply, review, safety
from . import plan as planner
from .errors import ConfigError, GCError, ReportRefused, SafetyError
from .interfaces import KubeReads, KubeWrites, Northbound
from .memory import give_back
from .model import ClusterIdentity, KubeSnapshot, KubevirtState, NbSnapshot, Snapshot
from .report import DONE, FAILED, NOT_REVIEWED, PLANNED, SKIPPED, ActionRecord, ExitCode, Report
from .settings import Settings

log = logging.getLogger(__name__)

Guard = Callable[[], None]
"""Raises SafetyError when the pass must stop acting (its lease was lost)."""


@runtime_checkable
class StagedReads(Protocol):
    """A :class:`KubeReads` that reads in two stages, so that the NB select can overlap the first (the owned:
    Subnets, then IP CRs; then the owners), and counts what its reads cost. Any KubeReads works; this is
    faster, and its costs are reported."""

    def read_owned(self) -> KubeSnapshot: ...

    def read_owners(self, owned: KubeSnapshot) -> KubeSnapshot: ...

    def costs(self) -> dict[str, dict[str, float]]:
        """Per Kubernetes kind: ``{"requests": n, "bytes": n, "seconds": x}``."""
        ...


def read_costs(staged: StagedReads | None, nb_seconds: float, nb_bytes: int) -> dict[str, dict[str, float]]:
    """Per source, what reading cost (requests, bytes received, seconds): NB's select, and the reader's lists."""
    out = dict(staged.costs()) if staged is not None else {}
    out["nb"] = {"requests": 1, "bytes": nb_bytes, "seconds": round(nb_seconds, 3)}
    return out


@dataclass(frozen=True)
class Backends:
    """Where the pass reads and writes. Built in one place; tests may build their own."""

    nb: Callable[[], AbstractContextManager[Northbound]]
    reader: KubeReads
    writer: KubeWrites
    lease: Callable[[], AbstractContextManager[Guard]] | None = None
    events: Callable[[Report, Mapping[str, str]], int] | None = None  # Kubernetes Events on the Subnets
    identity: Callable[[], ClusterIdentity] | None = None  # which cluster this is (recorded in the report)


def nb_backend(settings: Settings) -> Callable[[], AbstractContextManager[Northbound]]:
    """The NB half of the back ends: light to import, so the NB read can start before the rest is built."""
    from . import ovn

    @contextmanager
    def nb() -> Iterator[Northbound]:
        with ovn.OvsdbNorthbound(settings.nb, settings.retry) as client:
            yield client

    return nb


def build_backends(settings: Settings,
                   nb: Callable[[], AbstractContextManager[Northbound]] | None = None) -> Backends:
    from . import events, kube, lease

    api = kube.api_client(settings.kube)
    reader = kube.KubeReader(api, settings.kube, settings.retry)
    writer = kube.KubeWriter(api, settings.kube, settings.retry)

    @contextmanager
    def one_runner() -> Iterator[Guard]:
        with lease.Lease(api, settings.lease_namespace, identity=lease.default_identity(),
                         duration=settings.lease_duration, retry=settings.retry) as held:
            yield held.check

    def announce(report: Report, subnet_uids: Mapping[str, str]) -> int:
        return events.emit_events(api, report, subnet_uids=subnet_uids)

    def identity() -> ClusterIdentity:
        return kube.cluster_identity(api, settings.kube, settings.retry)

    return Backends(nb=nb or nb_backend(settings), reader=reader, writer=writer,
                    lease=one_runner if settings.use_lease else None, events=announce if settings.events else None,
                    identity=identity)


def refresher(reader: KubeReads, kube: KubeSnapshot) -> apply.Refresh:
    """Re-read one Subnet, then the IP CRs, after its status patch met a conflict.

    The IPs are listed after the Subnet is read, so any later IP change bumps the Subnet's
    resourceVersion and the next patch conflicts again. Statuses are written by several workers;
    their IP lists take turns, so conflicts on many subnets at once never hold many lists at once.
    """
    one_list_at_a_time = threading.Lock()

    def refresh(subnet_name: str) -> KubeSnapshot | None:
        subnet = reader.get_subnet(subnet_name)
        if subnet is None:
            return None
        with one_list_at_a_time:
            ips, odd_ips = reader.read_counted_ips()
        return dataclasses.replace(kube, subnets=(subnet,), ips=ips, odd_ips=odd_ips)

    return refresh


def _no_guard() -> None:
    return None


def _with_addresses(the_plan: planner.Plan, nb: Northbound, cost: dict[str, float]) -> planner.Plan:
    """The plan with the addresses of its ports, for the report: the port list is read without them (no rule
    reads them; 13% of the NB bytes: 7 MB at 150k ports), so they are read now for these ports only. What it
    costs is added to ``cost`` (the NB read's)."""
    if not the_plan.ports:
        return the_plan
    before, started = int(getattr(nb, "list_bytes", 0)), time.monotonic()
    requests = int(getattr(nb, "list_requests", 0))
    found = nb.lsp_addresses([a.port.uuid for a in the_plan.ports])
    cost["requests"] += int(getattr(nb, "list_requests", 0)) - requests  # counted by the OVSDB adapter
    cost["bytes"] += int(getattr(nb, "list_bytes", 0)) - before
    cost["seconds"] = round(cost["seconds"] + time.monotonic() - started, 3)
    ports = tuple(dataclasses.replace(a, port=dataclasses.replace(a.port, addresses=found.get(a.port.uuid, ())))
                  for a in the_plan.ports)
    return dataclasses.replace(the_plan, ports=ports)


def _refused(the_plan: planner.Plan) -> list[ActionRecord]:
    """What would have gone, when a rail refuses the whole plan."""
    return ([ActionRecord("ip", a.ip.meta.name, a.reason, PLANNED, apply.ip_detail(a.ip)) for a in the_plan.ips]
            + [ActionRecord("port", a.port.name, a.reason, PLANNED, apply.port_detail(a)) for a in the_plan.ports])


def _skipped(skips: tuple[planner.Skip, ...], kube: KubeSnapshot) -> list[ActionRecord]:
    """What the planner could not judge. An IP CR whose address alone does not parse is still counted in its
    Subnet (as Kube-OVN counts it): the record says so, with what is known of it."""
    odd = {ip.meta.name: ip for ip in kube.odd_ips}
    records = []
    for s in skips:
        ip = odd.get(s.name) if s.kind == "ip" else None
        if ip is None:
            records.append(ActionRecord(s.kind, s.name, s.reason, SKIPPED))
            continue
        reason = f"{s.reason}; counted in Subnet {ip.subnet} all the same, as Kube-OVN counts it; never collected"
        records.append(ActionRecord("ip", s.name, reason, SKIPPED, apply.ip_detail(ip)))
    return records


def _exit_code(actions: list[ActionRecord], stopped: bool) -> ExitCode:
    if stopped:
        return ExitCode.PARTIAL if any(a.outcome == DONE for a in actions) else ExitCode.REFUSED
    if any(a.outcome == FAILED for a in actions):
        return ExitCode.PARTIAL
    if any(a.outcome == PLANNED for a in actions):
        return ExitCode.FOUND
    return ExitCode.OK


def run_pass(settings: Settings, backends: Backends | None = None) -> Report:
    try:
        return _run_pass(settings, backends)
    finally:
        gc.unfreeze()


def _run_pass(settings: Settings, backends: Backends | None) -> Report:
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    inventory: dict[str, int] = {}
    reads: dict[str, dict[str, float]] = {}
    subnets: tuple[planner.SubnetSummary, ...] = ()
    undo: list[dict[str, object]] = []
    extra: dict[str, object] = {"undo": undo, "cluster": {"uid": None, "server": None}}

    def finish(code: ExitCode, actions: list[ActionRecord], error: str | None = None, *,
               refusal: safety.Refusal | None = None, ran: bool = True) -> Report:
        report = Report(settings.dry_run, int(code), started, time.monotonic() - clock, inventory,
                        tuple(actions), error, extra=extra, subnets=subnets, refusal=refusal, ran=ran,
                        reads=reads)
        _record(settings, report)
        log.info("%s", report.summary())
        return report

    if settings.dry_run:
        log.warning("DRY RUN: planning and reporting only; nothing will be deleted or patched")
    actions: list[ActionRecord] = []
    stopped = False
    try:
        check_record_dir(settings)
        reviewed = load_reviewed(settings, started)  # --from-report: refused here, before anything is read
        nb_open = backends.nb if backends is not None else nb_backend(settings)
        with ExitStack() as nb_held, ExitStack() as lease_held:
            # The read plan. NB ports and IP CRs are read completely before any owner list starts: every
            # port and IP CR in the snapshot existed before its owner was looked for (which is why ports
            # need no --min-age), so an owner missing from the lists was gone while its address existed.
            # Subnets are read before the IP CRs (see KubeReader.read_owned). Within that order: the NB
            # select runs in a thread alongside the Lease, the back ends and Subnets -> IP CRs (reading
            # before holding the Lease is harmless: nothing changes without it, every change is guarded);
            # then the owner kinds are read all at once (KubeReader.read_owners).
            def read_nb() -> tuple[Northbound, NbSnapshot]:
                client = nb_held.enter_context(nb_open())
                read_started = time.monotonic()
                nb_snapshot = client.lsp_list(addresses=False)  # no rule reads them; see _with_addresses
                nb_seconds[0] = time.monotonic() - read_started
                nb_bytes[0] = int(getattr(client, "list_bytes", 0))  # counted by the OVSDB adapter
                return client, nb_snapshot

            nb_seconds, nb_bytes = [0.0], [0]
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gc-nb-read") as early:
                nb_read = early.submit(read_nb)
                backends = backends or build_backends(settings, nb_open)
                cluster = _identity(backends, reviewed)
                if cluster is not None:
                    extra["cluster"] = cluster.as_json()
                if reviewed is not None:  # another cluster's report is refused before the Lease is taken
                    review.check_cluster(reviewed, cluster or ClusterIdentity(None, ""))
                    extra["from_report"] = reviewed.summary()
                one_runner = backends.lease if backends.lease is not None and not settings.dry_run else None
                guard = lease_held.enter_context(one_runner() if one_runner else nullcontext(_no_guard))
                staged = backends.reader if isinstance(backends.reader, StagedReads) else None
                owned = staged.read_owned() if staged is not None else None
                nb, nb_snapshot = nb_read.result()  # NB ports: complete
            # only now may an owner list start
            kube_snapshot = staged.read_owners(owned) if staged is not None and owned is not None \
                else backends.reader.read()
            reads.update(read_costs(staged, nb_seconds[0], nb_bytes[0]))
            if kube_snapshot.kubevirt is KubevirtState.UNREADABLE:
                # Served but not listed: the owner inventory is incomplete, as after any failed list. Nothing
                # is judged, nothing changes (upstream reached the same rule: kube-ovn#6824).
                why = f"the KubeVirt API is served but its objects could not be read: {kube_snapshot.kubevirt_error}"
                log.error("could not read everything; nothing was changed: %s", why)
                return finish(ExitCode.INCOMPLETE, [], why, ran=False)
            # The snapshot lives for the whole pass: out of the cyclic collector's sight, its
            # millions of objects cost no more scans while we plan and act.
            gc.freeze()
            give_back()
            snapshot = Snapshot(nb_snapshot, kube_snapshot)
            inventory.update(snapshot.inventory())
            log.info("read %s", inventory)
            policy = planner.Policy(now=started, min_age=settings.min_age, keep_vm_ip=settings.keep_vm_ip)
            the_plan = _with_addresses(planner.plan(snapshot, policy), nb, reads["nb"])
            actions += _skipped(the_plan.skipped, kube_snapshot)
            if reviewed is not None:  # only what was reviewed, and is still that leak (review.py)
                restricted = review.restrict(the_plan, reviewed, kube_snapshot, nb_snapshot, policy)
                the_plan = restricted.plan
                actions += _review_records(restricted)
            refusal = safety.brake(the_plan, snapshot, settings.limits)
            if refusal is not None and not settings.dry_run:
                log.error("refused by the %s rail, nothing changed: %s (--force overrides)", refusal.rail, refusal)
                return finish(ExitCode.REFUSED, actions + _refused(the_plan), f"refused: {refusal}", refusal=refusal)
            if refusal is not None:  # a dry run refuses nothing: the whole plan, and what a real run would do
                log.warning("a real run would be refused by the %s rail: %s (--force overrides)", refusal.rail, refusal)
            ctx = apply.Context(backends.writer, nb, kube_snapshot, policy, settings.dry_run, guard, undo,
                                workers=settings.workers)
            released: set[str] = set()
            try:
                try:
                    ip_records, released = apply.apply_ips(the_plan.ips, ctx)
                    actions += ip_records
                    actions += apply.apply_ports(the_plan.ports, ctx)
                    stuck = planner.stuck_ips(kube_snapshot, policy, settings.stuck_after)
                    if reviewed is not None:  # finalizers released only of the reviewed (the rest reported)
                        stuck, unreviewed = review.reviewed_stuck(stuck, reviewed)
                        actions += apply.apply_stuck(unreviewed, None, ctx)
                    actions += apply.apply_stuck(stuck, settings.release_stuck_after, ctx)
                except apply.StopActing as stop:
                    log.error("stopped acting: %s", stop.__cause__)
                    actions += stop.records
                    report = finish(_exit_code(actions, stopped=True), actions, f"stopped: {stop.__cause__}",
                                refusal=refusal)
                    return _announce(backends, report, kube_snapshot)
                status_plan = planner.plan_statuses(kube_snapshot, released)
                subnets = status_plan.summaries
                actions += apply.apply_statuses(status_plan, released, backends.writer,
                                                refresher(backends.reader, kube_snapshot), settings.dry_run,
                                                workers=settings.workers)
            except Exception as exc:
                # Not a way to carry on: a defect once something may have changed. The report of what was
                # done (and its undo record) must still come out, with a code that says "partial".
                if not undo and not any(a.outcome == DONE for a in actions):
                    raise
                log.exception("stopped after changes were made; reporting what was done")
                what = str(exc) if isinstance(exc, GCError) else f"internal error: {type(exc).__name__}: {exc}"
                return finish(ExitCode.PARTIAL, actions, f"stopped after changes were made: {what}", refusal=refusal)
    except ReportRefused as exc:
        log.error("--from-report refused, nothing changed: %s", exc)
        return finish(ExitCode.USAGE, [], f"report refused: {exc}", ran=False)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return finish(ExitCode.USAGE, [], f"configuration: {exc}", ran=False)
    except SafetyError as exc:
        log.error("refused by a safety rail, nothing changed: %s", exc)
        return finish(ExitCode.REFUSED, [], f"refused: {exc}", ran=False)
    except GCError as exc:
        log.error("could not read everything; nothing was changed: %s", exc)
        return finish(ExitCode.INCOMPLETE, [], str(exc), ran=False)
    return _announce(backends, finish(_exit_code(actions, stopped), actions, refusal=refusal), kube_snapshot)


def load_reviewed(settings: Settings, now: dt.datetime) -> review.Reviewed | None:
    """--from-report: the reviewed check report, read and judged (:func:`review.parse_report`)."""
    if settings.from_report is None:
        return None
    path = settings.from_report
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ReportRefused(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise ReportRefused(f"{path} is not JSON ({exc}): not a check report; review the report of "
                            f"`kube-ovn-gc check -o json`") from exc
    reviewed = review.parse_report(data, source=path, now=now, max_age=settings.max_report_age)
    log.info("applying only what %s planned (its check started %s): %d IP CRs, %d ports, %d finalizer releases",
             path, reviewed.started_at.isoformat(), len(reviewed.ips), len(reviewed.ports), len(reviewed.releases))
    return reviewed


def _identity(backends: Backends, reviewed: review.Reviewed | None) -> ClusterIdentity | None:
    """The cluster's identity for the report. Best effort, but a --from-report run cannot go without it."""
    if backends.identity is None:
        return None
    try:
        return backends.identity()
    except GCError as exc:
        if reviewed is not None:
            raise GCError(f"could not read the cluster's identity to check {reviewed.source} against: {exc}") from exc
        log.warning("could not read the cluster's identity (namespace kube-system): %s; this report cannot be "
                    "applied with run --from-report", exc)
        return None


def identity(backends: Backends) -> dict[str, object] | None:
    """The cluster's identity as a report records it, best effort (the doctor's: it applies nothing)."""
    found = _identity(backends, None)
    return None if found is None else found.as_json()


def _review_records(restricted: review.Restricted) -> list[ActionRecord]:
    """Reviewed entries no longer the leak the check saw (skipped), and live leaks not reviewed (left alone)."""
    records = [ActionRecord(s.entry.kind, s.entry.name, f"in the report, but {s.reason}", SKIPPED,
                            dict(s.entry.detail)) for s in restricted.stale]
    for action in restricted.not_reviewed:
        if isinstance(action, planner.IpAction):
            records.append(ActionRecord("ip", action.ip.meta.name, f"{action.reason}; not in the reviewed report: "
                                        "left alone", NOT_REVIEWED, apply.ip_detail(action.ip)))
        else:
            records.append(ActionRecord("port", action.port.name, f"{action.reason}; not in the reviewed report: "
                                        "left alone", NOT_REVIEWED, apply.port_detail(action)))
    return records


def _announce(backends: Backends, report: Report, kube: KubeSnapshot) -> Report:
    """Best-effort Kubernetes Events for what was done; never changes the outcome."""
    if backends.events is not None and not report.dry_run:
        emitted = backends.events(report, {s.meta.name: s.meta.uid for s in kube.subnets})
        if emitted:
            log.info("emitted %d events on the Subnets", emitted)
    return report


def _record(settings: Settings, report: Report) -> None:
    """--record DIR: keep the full report (with the deleted objects) as a file ``restore`` can read."""
    if not settings.record_dir:
        return
    directory = Path(settings.record_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"kube-ovn-gc-{report.started_at:%Y%m%dT%H%M%S}Z.json"
        path.write_text(report.to_json(), encoding="utf-8")
    except OSError as exc:
        log.error("could not write the record to %s: %s", directory, exc)
        return
    log.info("recorded the report and its deleted objects in %s", path)


def check_record_dir(settings: Settings) -> None:
    """Fail before acting, not after, when --record cannot be written."""
    if not settings.record_dir:
        return
    directory = Path(settings.record_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".kube-ovn-gc-write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--record {directory} is not writable: {exc}") from exc
