"""``kubectl-ovn_gc``: click only. Options in, the report on stdout, the pass's exit code out; the
plugin's own failures mapped here, and only here, to their own codes (10-19, 130)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path

import click

from .. import __version__
from ..cli import Duration
from . import errors
from .runner import Options, Runner

log = logging.getLogger(__name__)

EXIT_CODES: dict[type[errors.PluginError], int] = {
    errors.UsageError: 10,
    errors.ClusterError: 11,
    errors.CronJobNotFound: 12,
    errors.NoContainer: 13,
    errors.Forbidden: 14,
    errors.JobExists: 15,
    errors.NotStarted: 16,
    errors.Timeout: 17,
    errors.LogsUnavailable: 18,
    errors.PodLost: 19,
    errors.Interrupted: 130,
}


def exit_code(exc: errors.PluginError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_CODES[errors.ClusterError]


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100,
                                 "ignore_unknown_options": True, "allow_interspersed_args": True})
@click.argument("subcommand", metavar="check|run|doctor", required=False)
@click.argument("args", metavar="[ARGS]...", nargs=-1, type=click.UNPROCESSED)
@click.option("-n", "--namespace", default="kube-system", show_default=True, help="namespace of the CronJob.")
@click.option("--cronjob", default="kube-ovn-gc", show_default=True, help="the installed CronJob to run.")
@click.option("--container", default="kube-ovn-gc", show_default=True, help="its container that runs the pass.")
@click.option("--timeout", type=Duration(), default="15m", show_default=True,
              help="give up waiting (exit 17); the Job is then left in place.")
@click.option("--keep", is_flag=True, help="keep the Job once its report is read (default: delete it).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="the pass's report on stdout: its text, or its JSON object.")
@click.option("--job-name", default=None, help="name the Job (default: CRONJOB-SUBCOMMAND-<random>).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
              help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config, as kubectl).")
@click.option("--context", "kube_context", default=None, help="kubeconfig context.")
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True, hidden=True)
@click.version_option(__version__, prog_name="kubectl-ovn_gc")
def main(subcommand: str | None, args: tuple[str, ...], namespace: str, cronjob: str, container: str,
         timeout: dt.timedelta, keep: bool, output: str, job_name: str | None, kubeconfig: str | None,
         kube_context: str | None, poll_interval: float) -> int:
    """Run one kube-ovn-gc pass now, in the cluster, from its installed CronJob; print its report and
    exit with its exit code. Arguments after the subcommand go to the pass (e.g. --min-age 0s).

    \b
      kubectl ovn-gc check              # CI: exit 1 when leaks exist
      kubectl ovn-gc run -o json        # one pass now, its JSON report
      kubectl ovn-gc check -o json > report.json   # review it, then apply exactly that:
      kubectl ovn-gc run --from-report report.json # (handed to the pod in a ConfigMap)
      kubectl ovn-gc doctor --stuck-after 30m

    \b
    Exit codes: the pass's own (0 clean or done, 1 found, 2 usage, 3 incomplete,
    4 refused, 5 partial), or the plugin's:
      10  usage: unknown subcommand, bad option
      11  kubeconfig unusable, API server unreachable or answering unexpectedly
      12  CronJob not found
      13  the CronJob has no such container
      14  not allowed (the missing RBAC rule is named; see deploy/ci-rbac.yaml)
      15  a Job of that name already exists
      16  the pod never started (image pull failure, bad config: the pod's reason)
      17  timed out (the Job is left in place, named)
      18  the pass ended but its log, and so its report, cannot be read
      19  the pod was evicted, deleted or killed before the pass ended
    """
    if not subcommand:
        raise errors.UsageError("missing subcommand: kubectl ovn-gc check|run|doctor [ARGS]...")
    from .job import REPORT_OPTION, pass_args, report_argument

    pass_args(subcommand, args, output)  # a usage error before anything is asked of the cluster
    _, report_file = report_argument(args)
    report = None
    if report_file is not None:
        if subcommand != "run":
            raise errors.UsageError(f"{REPORT_OPTION} goes with run: kubectl ovn-gc run {REPORT_OPTION} FILE")
        try:
            report = Path(report_file).read_bytes()
        except OSError as exc:
            raise errors.UsageError(f"cannot read {report_file}: {exc.strerror or exc}") from exc
    options = Options(subcommand=subcommand, args=args, namespace=namespace, cronjob=cronjob, container=container,
                      timeout=timeout.total_seconds(), keep=keep, output=output, job_name=job_name,
                      poll=poll_interval, report=report)
    from .api import ClusterApi

    api = ClusterApi.connect(kubeconfig, kube_context)
    outcome = Runner(api, options, lambda line: click.echo(line, err=True)).run()
    if outcome.report is not None:
        click.echo(outcome.report, nl=False)
    return outcome.exit_code


def console() -> None:
    """The process entry: the pass's code, or the plugin's own with a one-paragraph message."""
    logging.basicConfig(level=os.environ.get("KUBECTL_OVN_GC_LOG_LEVEL", "WARNING").upper(),
                        format="kubectl-ovn_gc: %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code = main.main(prog_name="kubectl ovn-gc", standalone_mode=False)
    except click.exceptions.Abort:
        code = 130
    except click.ClickException as exc:  # click's usage errors would be 2, which is the pass's
        exc.show()
        code = EXIT_CODES[errors.UsageError]
    except errors.PluginError as exc:
        click.echo(f"kubectl ovn-gc: error: {exc}", err=True)
        code = exit_code(exc)
    except KeyboardInterrupt:
        click.echo("kubectl ovn-gc: interrupted", err=True)
        code = 130
    sys.stdout.flush()
    sys.exit(code if isinstance(code, int) else 0)
