"""The doctor's reads: NB, then Kubernetes (as a pass reads them), then the pure findings. Never writes.

Returns a :class:`~kube_ovn_gc.doctor.DoctorReport`; the CLI maps it to an exit code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time

from . import doctor
from . import plan as planner
from .errors import ConfigError, GCError
from .memory import give_back
from .model import KubevirtState, Snapshot
from .report import ExitCode
from .run import Backends, build_backends, identity
from .settings import Settings

log = logging.getLogger(__name__)


def diagnose(settings: Settings, backends: Backends | None = None) -> doctor.DoctorReport:
    """Read everything once, examine it, and confirm the NB-vs-Kubernetes findings on a second read.

    Only ``lsp_list``, ``read`` and ``read_ips`` are called: nothing is written.
    """
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    policy = planner.Policy(now=started, min_age=settings.min_age, keep_vm_ip=settings.keep_vm_ip)
    stuck_after = settings.stuck_after
    shown = {"min_age": str(settings.min_age), "keep_vm_ip": settings.keep_vm_ip, "stuck_after": str(stuck_after)}
    inventory: dict[str, int] = {}
    cluster: dict[str, object] | None = None

    def finish(code: ExitCode, findings: tuple[doctor.Finding, ...] = (), error: str | None = None,
               warnings: tuple[str, ...] = ()) -> doctor.DoctorReport:
        return doctor.DoctorReport(int(code), started, time.monotonic() - clock, inventory, findings, error,
                                   warnings, shown, cluster)

    try:
        backends = backends or build_backends(settings)
        cluster = identity(backends)
        with backends.nb() as nb:
            nb_snapshot = nb.lsp_list()
            log.info("read %d logical switch ports from NB", len(nb_snapshot.ports))
            kube_snapshot = backends.reader.read()
            snapshot = Snapshot(nb_snapshot, kube_snapshot)
            give_back()
            inventory.update(snapshot.inventory())
            log.info("read Kubernetes: %s", inventory)
            findings = doctor.examine(snapshot, policy, stuck_after)
            if doctor.needs_second_read(findings):
                # NB was read before Kubernetes: what was written in between looks missing or mismatched.
                # Read NB and the IP CRs again, in the same order, and keep what both reads show. The first read's
                # ports and IP CRs go first: both reads held at once were ~175 MiB more at 150k addresses.
                kube_snapshot = dataclasses.replace(kube_snapshot, ips=())
                del snapshot, nb_snapshot
                fresh_nb = nb.lsp_list()
                fresh = Snapshot(fresh_nb, dataclasses.replace(kube_snapshot, ips=backends.reader.read_ips()))
                confirmed = doctor.confirm(findings, doctor.cross_check(fresh, policy))
                if len(confirmed) != len(findings):
                    log.info("%d findings did not hold on a second read (changed meanwhile)",
                             len(findings) - len(confirmed))
                findings = confirmed
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return finish(ExitCode.USAGE, error=f"configuration: {exc}")
    except GCError as exc:
        log.error("could not read everything: %s", exc)
        return finish(ExitCode.INCOMPLETE, error=str(exc))
    warnings: tuple[str, ...] = ()
    if kube_snapshot.kubevirt is KubevirtState.UNREADABLE:
        warnings = ("KubeVirt API is served but could not be listed: VM checks were skipped and nothing "
                    "VM-like was reported as leaked",)
    report = finish(doctor.outcome(findings, complete=not warnings), findings, warnings=warnings)
    log.info("%s", report.summary())
    return report
