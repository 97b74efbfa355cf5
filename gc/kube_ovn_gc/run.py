"""One pass: read NB, read Kubernetes, plan, act, report. Returns an outcome; never exits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from . import apply
from . import plan as planner
from .errors import ConfigError, GCError
from .interfaces import KubeReads, KubeWrites, Northbound
from .model import KubeSnapshot, Snapshot
from .report import FAILED, PLANNED, SKIPPED, ActionRecord, ExitCode, Report
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backends:
    """Where the pass reads and writes. Built in one place; tests may build their own."""

    nb: Callable[[], AbstractContextManager[Northbound]]
    reader: KubeReads
    writer: KubeWrites


def build_backends(settings: Settings) -> Backends:
    from . import kube, ovn

    api = kube.api_client(settings.kube)
    reader = kube.KubeReader(api, settings.kube, settings.retry)
    writer = kube.KubeWriter(api, settings.kube, settings.retry)

    @contextmanager
    def nb() -> Iterator[Northbound]:
        with ovn.OvsdbNorthbound(settings.nb, settings.retry) as client:
            yield client

    return Backends(nb=nb, reader=reader, writer=writer)


def _refresher(reader: KubeReads, kube: KubeSnapshot) -> apply.Refresh:
    def refresh(subnet_name: str) -> KubeSnapshot | None:
        subnet = reader.get_subnet(subnet_name)
        if subnet is None:
            return None
        return dataclasses.replace(kube, subnets=(subnet,), ips=reader.read_ips())

    return refresh


def run_pass(settings: Settings, backends: Backends | None = None) -> Report:
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    inventory: dict[str, int] = {}
    subnets: tuple[planner.SubnetSummary, ...] = ()

    def finish(code: ExitCode, actions: list[ActionRecord], error: str | None = None) -> Report:
        return Report(settings.dry_run, int(code), started, time.monotonic() - clock, inventory,
                      tuple(actions), error, subnets=subnets)

    if settings.dry_run:
        log.warning("DRY RUN: planning and reporting only; nothing will be deleted or patched")
    try:
        backends = backends or build_backends(settings)
        with backends.nb() as nb:
            nb_snapshot = nb.lsp_list()
            log.info("read %d logical switch ports from NB", len(nb_snapshot.ports))
            kube_snapshot = backends.reader.read()
            snapshot = Snapshot(nb_snapshot, kube_snapshot)
            inventory.update(snapshot.inventory())
            log.info("read Kubernetes: %s", inventory)
            the_plan = planner.plan(snapshot, planner.Policy(now=started, min_age=settings.min_age,
                                                             keep_vm_ip=settings.keep_vm_ip))
            actions: list[ActionRecord] = [
                ActionRecord(s.kind, s.name, s.reason, SKIPPED) for s in the_plan.skipped
            ]
            ip_records, released = apply.apply_ips(the_plan.ips, backends.writer, settings.dry_run)
            actions += ip_records
            actions += apply.apply_ports(the_plan.ports, nb, settings.dry_run)
        status_plan = planner.plan_statuses(kube_snapshot, released)
        subnets = status_plan.summaries
        actions += apply.apply_statuses(status_plan, released, backends.writer,
                                        _refresher(backends.reader, kube_snapshot), settings.dry_run)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return finish(ExitCode.USAGE, [], f"configuration: {exc}")
    except GCError as exc:
        log.error("could not read everything; nothing was changed: %s", exc)
        return finish(ExitCode.INCOMPLETE, [], str(exc))
    if any(a.outcome == FAILED for a in actions):
        code = ExitCode.PARTIAL
    elif any(a.outcome == PLANNED for a in actions):
        code = ExitCode.FOUND
    else:
        code = ExitCode.OK
    report = finish(code, actions)
    log.info("%s", report.summary())
    return report
