"""The command line: click only. Builds Settings, calls run, maps the outcome to an exit code."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .errors import ConfigError
from .report import Report
from .retry import RetryPolicy
from .safety import Limits
from .settings import KubeSettings, NbSettings, Settings, parse_duration

log = logging.getLogger(__name__)


class Duration(click.ParamType):  # type: ignore[type-arg]
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that talks to the cluster."""
    options = [
        click.option("--kubeconfig", envvar="KUBECONFIG", type=click.Path(dir_okay=False),
                     show_envvar=True, help="kubeconfig file; in a pod the in-cluster config is used."),
        click.option("--context", "kube_context", help="kubeconfig context to use."),
        click.option("--ovn-nb", "ovn_nb", envvar="OVN_NB_DB", show_envvar=True, required=True,
                     help="NB remotes, comma-separated: tcp:HOST:PORT, ssl:HOST:PORT, unix:PATH."),
        click.option("--ovn-nb-private-key", envvar="OVN_NB_PRIVATE_KEY", show_envvar=True,
                     type=click.Path(dir_okay=False), help="private key for ssl: remotes."),
        click.option("--ovn-nb-certificate", envvar="OVN_NB_CERTIFICATE", show_envvar=True,
                     type=click.Path(dir_okay=False), help="certificate for ssl: remotes."),
        click.option("--ovn-nb-ca-cert", envvar="OVN_NB_CA_CERT", show_envvar=True,
                     type=click.Path(dir_okay=False), help="CA certificate for ssl: remotes."),
        click.option("--ovn-nb-timeout", type=Duration(), default="10s", show_default=True,
                     envvar="OVN_NB_TIMEOUT", show_envvar=True,
                     help="how long an NB member may stay silent (connecting, answering, or within a reply) "
                          "before it is given up for the next remote; one given up is tried last for the rest "
                          "of the pass. Raise it beyond ~300k ports: ovsdb-server is silent ~2 s per 100k "
                          "ports while it builds the port list."),
        click.option("--min-age", type=Duration(), default="5m", show_default=True,
                     envvar="KUBE_OVN_GC_MIN_AGE", show_envvar=True,
                     help="IP CRs younger than this are never collected (0s disables)."),
        click.option("--keep-vm-ip/--no-keep-vm-ip", default=True, show_default=True,
                     envvar="KUBE_OVN_GC_KEEP_VM_IP", show_envvar=True,
                     help="mirror kube-ovn-controller's --keep-vm-ip: a stopped VM keeps its addresses."),
        click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
                     envvar="KUBE_OVN_GC_OUTPUT", show_envvar=True, help="report format on stdout."),
        click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
                                                      case_sensitive=False),
                     default="INFO", show_default=True, envvar="KUBE_OVN_GC_LOG_LEVEL", show_envvar=True),
        click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                     envvar="KUBE_OVN_GC_LOG_FORMAT", show_envvar=True, help="log format on stderr."),
        click.option("--retry-attempts", type=click.IntRange(min=1), default=5, show_default=True,
                     envvar="KUBE_OVN_GC_RETRY_ATTEMPTS", show_envvar=True,
                     help="attempts per read or write on transient errors (connection, 429, 5xx)."),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), fn)


def pass_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The safety rails of a pass (run and check)."""
    options = [
        click.option("--max-deletions", type=click.IntRange(min=0), default=500, show_default=True,
                     envvar="KUBE_OVN_GC_MAX_DELETIONS", show_envvar=True,
                     help="refuse (exit 4, nothing changed) a plan deleting more IP CRs + ports than this."),
        click.option("--max-deletion-ratio", type=click.FloatRange(min=0.0, max=1.0), default=0.5,
                     show_default=True, envvar="KUBE_OVN_GC_MAX_DELETION_RATIO", show_envvar=True,
                     help="refuse a plan deleting more than this share of the IP CRs or of the kube-ovn ports "
                          "(applied when more than 20 of a kind would go)."),
        click.option("--force", is_flag=True, envvar="KUBE_OVN_GC_FORCE", show_envvar=True,
                     help="override the mass-deletion brake and the inventory plausibility check."),
        click.option("--lease-namespace", default="kube-system", show_default=True,
                     envvar="KUBE_OVN_GC_LEASE_NAMESPACE", show_envvar=True,
                     help="namespace of the Lease 'kube-ovn-gc' that keeps two passes from overlapping."),
        click.option("--lease-duration", type=Duration(), default="120s", show_default=True,
                     envvar="KUBE_OVN_GC_LEASE_DURATION", show_envvar=True,
                     help="how long the Lease holds without renewal (renewed every third of it)."),
        click.option("--lease/--no-lease", "use_lease", default=True, show_default=True,
                     envvar="KUBE_OVN_GC_LEASE", show_envvar=True,
                     help="take the Lease before acting (dry runs never take it)."),
        click.option("--stuck-after", type=Duration(), default="1h", show_default=True,
                     envvar="KUBE_OVN_GC_STUCK_AFTER", show_envvar=True,
                     help="report IP CRs terminating for longer than this (kube-ovn-controller down?)."),
        click.option("--release-stuck-after", type=Duration(), default=None,
                     envvar="KUBE_OVN_GC_RELEASE_STUCK_AFTER", show_envvar=True,
                     help="remove Kube-OVN's finalizers from leaked IP CRs terminating for longer than this "
                          "(off by default), so their Subnet can be deleted."),
        click.option("--workers", type=click.IntRange(min=1, max=32), default=4, show_default=True,
                     envvar="KUBE_OVN_GC_WORKERS", show_envvar=True,
                     help="second looks and deletes in flight at once (1 = one after another)."),
        click.option("--events/--no-events", default=True, show_default=True, envvar="KUBE_OVN_GC_EVENTS",
                     show_envvar=True, help="emit Kubernetes Events on the Subnets for what was removed or fixed."),
        click.option("--pushgateway", envvar="KUBE_OVN_GC_PUSHGATEWAY", show_envvar=True, default=None,
                     help="Prometheus Pushgateway URL: push the pass's metrics at its end (also failed passes)."),
        click.option("--cluster-name", envvar="KUBE_OVN_GC_CLUSTER_NAME", show_envvar=True, default="",
                     help="the 'cluster' grouping label of the pushed metrics."),
        click.option("--record", "record_dir", type=click.Path(file_okay=False), default=None,
                     envvar="KUBE_OVN_GC_RECORD", show_envvar=True,
                     help="write the JSON report with every deleted object (IP CR manifests, NB rows) into this "
                          "directory, for `kube-ovn-gc restore`."),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), fn)


def build_settings(dry_run: bool, **opts: Any) -> Settings:
    from .logs import configure_logging

    configure_logging(opts["log_level"], opts["log_format"])
    try:
        from .ovn import parse_remotes

        remotes = parse_remotes(opts["ovn_nb"])
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--ovn-nb") from exc
    nb_timeout = opts["ovn_nb_timeout"].total_seconds()
    if nb_timeout <= 0:
        raise click.BadParameter("must be more than 0s", param_hint="--ovn-nb-timeout")
    if any(r.startswith("ssl:") for r in remotes):
        missing = [flag for flag, key in (("--ovn-nb-private-key", "ovn_nb_private_key"),
                                          ("--ovn-nb-certificate", "ovn_nb_certificate"),
                                          ("--ovn-nb-ca-cert", "ovn_nb_ca_cert")) if not opts[key]]
        if missing:
            raise click.UsageError(f"ssl: remotes need {', '.join(missing)}")
    settings = Settings(
        nb=NbSettings(remotes=remotes, private_key=opts["ovn_nb_private_key"],
                      certificate=opts["ovn_nb_certificate"], ca_cert=opts["ovn_nb_ca_cert"], timeout=nb_timeout),
        kube=KubeSettings(kubeconfig=opts["kubeconfig"], context=opts["kube_context"]),
        dry_run=dry_run,
        min_age=opts["min_age"],
        keep_vm_ip=opts["keep_vm_ip"],
        output=opts["output"],
        retry=RetryPolicy(attempts=opts["retry_attempts"]),
        limits=Limits(max_deletions=opts.get("max_deletions", 500), max_ratio=opts.get("max_deletion_ratio", 0.5),
                      force=opts.get("force", False)),
        lease_namespace=opts.get("lease_namespace", "kube-system"),
        lease_duration=opts.get("lease_duration", dt.timedelta(seconds=120)),
        use_lease=opts.get("use_lease", True),
        stuck_after=opts.get("stuck_after", dt.timedelta(hours=1)),
        release_stuck_after=opts.get("release_stuck_after"),
        record_dir=opts.get("record_dir"),
        events=opts.get("events", True),
        pushgateway=opts.get("pushgateway"),
        cluster_name=opts.get("cluster_name", ""),
        workers=opts.get("workers", 4),
        from_report=opts.get("from_report"),
        max_report_age=opts.get("max_report_age", dt.timedelta(hours=1)),
    )
    log.info("kube-ovn-gc %s starting with settings %s", __version__, settings.describe())
    return settings


def emit(report: Report, output: str) -> None:
    click.echo(report.to_json() if output == "json" else report.to_text(), nl=output == "json")


def _pass(dry_run: bool, opts: dict[str, Any]) -> None:
    from .run import run_pass

    settings = build_settings(dry_run, **opts)
    report = run_pass(settings)
    emit(report, settings.output)
    if settings.pushgateway:
        from .errors import GCError
        from .metrics import push_metrics

        try:
            push_metrics(report, settings.pushgateway, cluster=settings.cluster_name)
        except GCError as exc:  # metrics never change the outcome of the pass
            log.warning("could not push metrics to %s: %s", settings.pushgateway, exc)
    sys.exit(report.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kube-ovn-gc")
def main() -> None:
    """Find and remove leaked Kube-OVN logical switch ports and IP CRs, then fix Subnet statuses.

    \b
    Exit codes:
      0  pass completed: nothing leaked, or everything leaked was removed
         (--from-report: every reviewed entry removed, or skipped with its reason)
      1  leaks or status drift found and left in place (check, --dry-run; a real run
         would be refused by a rail: the report names it)
      2  usage or configuration error; --from-report refused (stale, another
         cluster, not a check report); nothing changed
      3  could not complete: NB or API unreachable, a read failed; nothing changed
      4  refused by a safety rail; nothing changed
      5  partial: some actions failed, the others were done
    """


@main.command()
@click.option("--dry-run", is_flag=True, envvar="KUBE_OVN_GC_DRY_RUN", show_envvar=True,
              help="plan and report only; change nothing (exit 1 if anything was found).")
@click.option("--from-report", "from_report", metavar="CHECK.json", type=click.Path(dir_okay=False), default=None,
              help="review, then apply exactly that: delete only what this JSON check report planned (each IP CR "
                   "by uid, each port by NB uuid), still re-checked live; leaks not in it are left alone, entries "
                   "no longer leaked are skipped. Refused (exit 2) when stale, from another cluster, or not a "
                   "check report.")
@click.option("--max-report-age", type=Duration(), default="1h", show_default=True,
              envvar="KUBE_OVN_GC_MAX_REPORT_AGE", show_envvar=True,
              help="--from-report refuses a report whose check started longer ago than this.")
@connection_options
@pass_options
def run(dry_run: bool, **opts: Any) -> None:
    """One garbage-collection pass (with --from-report: only what a reviewed check planned)."""
    _pass(dry_run, opts)


@main.command()
@connection_options
@pass_options
def check(**opts: Any) -> None:
    """Same as `run --dry-run`, for CI: exit 0 when clean, 1 when anything was found.

    A dry run is never refused by a safety rail: it reports the whole plan, and the rail a real run
    would trip (exit 1)."""
    _pass(True, opts)


@main.command()
@click.argument("report_file", metavar="REPORT.json", type=click.Path(exists=True, dir_okay=False))
@connection_options
def restore(report_file: str, **opts: Any) -> None:
    """Put back the IP CRs and ports a pass deleted, from its JSON report (--output json or --record).

    Names that exist again are refused and left alone. Exit 0 when everything was restored,
    5 when something was refused or failed, 2 on a bad report or one made on another cluster.
    """
    import datetime as dt
    import time
    from contextlib import contextmanager

    from . import kube, ovn
    from . import restore as undo
    from .report import DONE, ExitCode

    settings = build_settings(False, **opts)
    started, clock = dt.datetime.now(dt.UTC), time.monotonic()
    try:
        loaded = undo.load(report_file)
        api = kube.api_client(settings.kube)
        live = _restore_target(api, settings)
        warning = undo.check_cluster(report_file, loaded.cluster, live)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    entries = loaded.entries
    if warning:
        log.warning("%s", warning)

    @contextmanager
    def nb() -> Any:
        with ovn.OvsdbNorthbound(settings.nb, settings.retry) as client:
            yield client

    records = undo.restore(entries, kube.KubeWriter(api, settings.kube, settings.retry), nb)
    code = ExitCode.OK if all(r.outcome == DONE for r in records) else ExitCode.PARTIAL
    extra: dict[str, Any] = {"command": "restore", "cluster": live.as_json()}
    if warning:
        extra["warning"] = warning
    emit(Report(False, int(code), started, time.monotonic() - clock, {"undo_entries": len(entries)},
                tuple(records), extra=extra), settings.output)
    sys.exit(code)


@main.command()
@click.option("--stuck-after", type=Duration(), default="1h", show_default=True,
              envvar="KUBE_OVN_GC_STUCK_AFTER", show_envvar=True,
              help="report IP CRs and Subnets terminating for longer than this.")
@connection_options
def doctor(**opts: Any) -> None:
    """Read-only: every finding of `check`, plus missing, mismatched, duplicate and stuck addresses.

    \b
    Exit codes:
      0  consistent: nothing found
      1  something found (each finding comes with a suggested remedy)
      2  usage or configuration error
      3  could not read everything (NB or API unreachable, KubeVirt unreadable)
    """
    from .diagnose import diagnose

    settings = build_settings(True, **opts)
    report = diagnose(settings)
    click.echo(report.to_json() if settings.output == "json" else report.to_text(), nl=settings.output == "json")
    sys.exit(report.exit_code)


def console() -> None:
    """The process entry (``kube-ovn-gc``, ``python -m kube_ovn_gc``): run the command, then leave at once.

    A pass over a large cluster holds millions of small objects until its end;
    a normal interpreter exit frees them one by one (~0.5 s at 100k pods) for a
    process that is about to vanish. Once the command has returned, the output
    and the logs are flushed and the process exits with the command's code,
    skipping that teardown. Nothing runs after the command that needs it: the
    Lease was released, the metrics pushed, and the report written, inside it.
    """
    try:
        main(prog_name="kube-ovn-gc")
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the reader left; the exit code still tells
            code = code or 1
    os._exit(code)


def _restore_target(api: Any, settings: Settings) -> Any:
    """The cluster a restore writes to; its uid None when namespace kube-system cannot be read (said in the log)."""
    from . import kube
    from .errors import GCError
    from .model import ClusterIdentity

    try:
        return kube.cluster_identity(api, settings.kube, settings.retry)
    except GCError as exc:
        log.warning("could not read the cluster's identity (namespace kube-system): %s", exc)
        return ClusterIdentity(None, str(api.configuration.host))


def _exit_status(code: object) -> int:
    """What ``sys.exit(code)`` would make of ``code``: None is 0, an int is itself, a message is printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
