"""Push the outcome of a pass to a Prometheus Pushgateway.

A CronJob lives too briefly to be scraped, so at the end of every pass (failed
ones too) the job pushes its gauges to a Pushgateway, in one group keyed by
``job`` and ``cluster``. Prometheus scrapes the Pushgateway with
``honor_labels: true`` so those two labels survive.

Every push is a POST (``pushadd``): the Pushgateway replaces, in that group,
only the metric families present in the push and keeps the others. That is what
keeps ``kube_ovn_gc_last_success_timestamp_seconds`` across failed passes: it
is pushed only by a pass that completed (exit 0 or 1), so a failed pass leaves
the last value in place and ``time() - kube_ovn_gc_last_success_timestamp_seconds``
grows until the next good pass. A PUT would have dropped it, and a second
group would have made the family appear twice under different labels.

Per family the rule is: what the pass *did* is always pushed (leaks found and
removed, failures, duration, exit code, last run); what it *read* (objects
scanned, the per-subnet figures) is pushed only when it could read it. A pass
that failed before reading sends no samples for those families, and the
Pushgateway keeps the last known values; a pass that did read replaces the
whole family, so the series of a deleted subnet go away with the next read.

Metrics never change the exit code: failures come out as :class:`TransientError`
(connection, timeout, 5xx) or :class:`FatalError` (4xx, bad URL) for the caller
to log.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
from collections.abc import Iterable, Mapping
from functools import partial

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from .errors import FatalError, TransientError
from .report import DONE, FAILED, NOT_REVIEWED, PLANNED, SKIPPED, ActionRecord, ExitCode, Report

log = logging.getLogger(__name__)

PREFIX = "kube_ovn_gc"
LEAK_KINDS = ("ip", "port")
ACTION_KINDS = ("ip", "port", "subnet-status")
SUCCESS_CODES = frozenset({int(ExitCode.OK), int(ExitCode.FOUND)})
"""Exit codes of a pass that completed: only these move the last-success timestamp."""

# a leak the pass acted on, would have, or left alone as not reviewed (--from-report); plan skips are not leaks
_FOUND = (PLANNED, DONE, FAILED, NOT_REVIEWED)
_FAMILIES = (("ipv4", "v4"), ("ipv6", "v6"))


def build_registry(report: Report) -> CollectorRegistry:
    """The gauges of one pass, in a registry of their own (nothing global)."""
    registry = CollectorRegistry(auto_describe=True)
    gauge = partial(_gauge, registry)
    counts = report.counts()

    def count(kind: str, outcomes: Iterable[str]) -> int:
        return sum(counts[kind, outcome] for outcome in outcomes)

    scanned = gauge("objects_scanned", "Objects read by the last pass that could read, by kind.", ["kind"])
    for kind, n in sorted(report.inventory.items()):
        scanned.labels(kind).set(n)

    found = gauge("leaks_found", "Leaked objects found by the last pass (removed, to remove in dry-run, or failed).",
                  ["kind"])
    removed = gauge("leaks_removed", "Leaked objects removed by the last pass.", ["kind"])
    for kind in LEAK_KINDS:
        found.labels(kind).set(count(kind, _FOUND))
        removed.labels(kind).set(count(kind, (DONE,)))
    gauge("subnets_drifted", "Subnets whose stored status differed from the recomputed one in the last pass."
          ).set(count("subnet-status", _FOUND))
    gauge("subnets_fixed", "Subnets whose status the last pass corrected.").set(count("subnet-status", (DONE,)))
    failed = gauge("actions_failed", "Actions that failed in the last pass.", ["kind"])
    skipped = gauge("actions_skipped", "Candidates the last pass left alone (changed meanwhile, not judgeable).",
                    ["kind"])
    for kind in ACTION_KINDS:
        failed.labels(kind).set(count(kind, (FAILED,)))
        skipped.labels(kind).set(count(kind, (SKIPPED,)))

    ended = report.started_at.timestamp() + report.duration_seconds
    gauge("dry_run", "1 when the last pass was a dry run (planned only).").set(int(report.dry_run))
    gauge("duration_seconds", "Wall time of the last pass.").set(report.duration_seconds)
    gauge("exit_code", "Exit code of the last pass (0 ok, 1 found, 2 usage, 3 incomplete, 4 refused, 5 partial)."
          ).set(report.exit_code)
    gauge("last_run_timestamp_seconds", "Unix time the last pass ended, whatever its outcome.").set(ended)
    if report.exit_code in SUCCESS_CODES:
        gauge("last_success_timestamp_seconds", "Unix time the last completed pass (exit 0 or 1) ended."
              ).set(ended)

    if report.reads:
        requests = gauge("read_requests", "Requests the last pass made to read, by source (nb, or a Kubernetes "
                         "kind).", ["source"])
        received = gauge("read_bytes", "Bytes the last pass received reading, by source.", ["source"])
        spent = gauge("read_seconds", "Seconds the last pass spent in read requests, by source (summed over "
                      "requests, which may overlap).", ["source"])
        for source, cost in sorted(report.reads.items()):
            requests.labels(source).set(cost.get("requests", 0))
            received.labels(source).set(cost.get("bytes", 0))
            spent.labels(source).set(cost.get("seconds", 0))

    if report.subnets:  # else nothing was read: the Pushgateway keeps the last known figures
        _subnet_gauges(report, registry)
    return registry


def _gauge(registry: CollectorRegistry, name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
    return Gauge(f"{PREFIX}_{name}", doc, tuple(labels), registry=registry)


def _subnet_gauges(report: Report, registry: CollectorRegistry) -> None:
    gauge = partial(_gauge, registry)
    using = gauge("subnet_using_ips", "Addresses in use in the subnet, recomputed by the last pass.",
                  ["subnet", "family"])
    available = gauge("subnet_available_ips", "Addresses still free in the subnet, recomputed by the last pass.",
                      ["subnet", "family"])
    drift_fields = gauge("subnet_status_drift_fields",
                         "Status fields whose stored value differed from the recomputed one (0 = in sync).",
                         ["subnet"])
    using_drift = gauge("subnet_using_ips_drift",
                        "Stored minus recomputed usingIPs count, as found by the last pass (0 = in sync).",
                        ["subnet", "family"])
    stored_drift = _using_drift(report.actions)
    for s in report.subnets:
        drift_fields.labels(s.name).set(s.drifted_fields)
        figures = {"v4": (s.v4_using, s.v4_available), "v6": (s.v6_using, s.v6_available)}
        for family, prefix in _FAMILIES:
            n_using, n_available = figures[prefix]
            if n_using == 0 and n_available == 0:
                continue  # the subnet has no such family (single stack)
            using.labels(s.name, family).set(n_using)
            available.labels(s.name, family).set(n_available)
            using_drift.labels(s.name, family).set(stored_drift.get((s.name, prefix), 0))


def _using_drift(actions: Iterable[ActionRecord]) -> dict[tuple[str, str], float]:
    """(subnet, "v4"/"v6") → stored minus recomputed usingIPs, from the subnet-status actions' before/after."""
    out: dict[tuple[str, str], float] = {}
    for a in actions:
        if a.kind != "subnet-status" or a.outcome not in _FOUND:
            continue
        before, after = a.detail.get("before"), a.detail.get("after")
        if not isinstance(before, Mapping) or not isinstance(after, Mapping):
            continue
        for prefix in ("v4", "v6"):
            stored, computed = _number(before.get(f"{prefix}usingIPs")), _number(after.get(f"{prefix}usingIPs"))
            if stored is not None and computed is not None:
                out[a.name, prefix] = stored - computed
    return out


def _number(value: object) -> float | None:
    """Counts are stored as JSON numbers, sometimes floats ("253.0"), or are missing ("")."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def push_metrics(report: Report, url: str, job: str = "kube-ovn-gc", cluster: str = "",
                 timeout: float = 10.0) -> None:
    """POST the pass's gauges to the Pushgateway at ``url`` under the group {job, cluster}.

    Raises :class:`TransientError` (unreachable, timeout, 429, 5xx) or
    :class:`FatalError` (other 4xx, e.g. inconsistent metrics; malformed URL).
    """
    registry = build_registry(report)
    try:
        pushadd_to_gateway(url, job=job, registry=registry, grouping_key={"cluster": cluster}, timeout=timeout)
    except urllib.error.HTTPError as exc:
        detail = _http_error_body(exc)
        message = f"Pushgateway {url}: HTTP {exc.code} {exc.reason}{': ' + detail if detail else ''}"
        if exc.code == 429 or exc.code >= 500:
            raise TransientError(message) from exc
        raise FatalError(message) from exc
    except (ValueError, http.client.InvalidURL) as exc:  # a URL urllib cannot use
        raise FatalError(f"Pushgateway {url}: bad URL: {exc}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # refused, timeout, reset
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise TransientError(f"Pushgateway {url}: {reason}") from exc
    log.info("pushed metrics to %s (job=%s cluster=%s)", url, job, cluster or '""')


def _http_error_body(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read(500).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    finally:
        exc.close()
