"""The command line: click only. Builds Settings, calls run, maps the outcome to an exit code."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .errors import ConfigError
from .report import Report
from .retry import RetryPolicy
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


def build_settings(dry_run: bool, **opts: Any) -> Settings:
    from .logs import configure_logging

    configure_logging(opts["log_level"], opts["log_format"])
    try:
        from .ovn import parse_remotes

        remotes = parse_remotes(opts["ovn_nb"])
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--ovn-nb") from exc
    if any(r.startswith("ssl:") for r in remotes):
        missing = [flag for flag, key in (("--ovn-nb-private-key", "ovn_nb_private_key"),
                                          ("--ovn-nb-certificate", "ovn_nb_certificate"),
                                          ("--ovn-nb-ca-cert", "ovn_nb_ca_cert")) if not opts[key]]
        if missing:
            raise click.UsageError(f"ssl: remotes need {', '.join(missing)}")
    settings = Settings(
        nb=NbSettings(remotes=remotes, private_key=opts["ovn_nb_private_key"],
                      certificate=opts["ovn_nb_certificate"], ca_cert=opts["ovn_nb_ca_cert"]),
        kube=KubeSettings(kubeconfig=opts["kubeconfig"], context=opts["kube_context"]),
        dry_run=dry_run,
        min_age=opts["min_age"],
        keep_vm_ip=opts["keep_vm_ip"],
        output=opts["output"],
        retry=RetryPolicy(attempts=opts["retry_attempts"]),
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
    sys.exit(report.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kube-ovn-gc")
def main() -> None:
    """Find and remove leaked Kube-OVN logical switch ports and IP CRs, then fix Subnet statuses.

    \b
    Exit codes:
      0  pass completed: nothing leaked, or everything leaked was removed
      1  leaks or status drift found and left in place (check, --dry-run)
      2  usage or configuration error
      3  could not complete: NB or API unreachable, a read failed; nothing changed
      4  refused by a safety rail; nothing changed
      5  partial: some actions failed, the others were done
    """


@main.command()
@click.option("--dry-run", is_flag=True, envvar="KUBE_OVN_GC_DRY_RUN", show_envvar=True,
              help="plan and report only; change nothing (exit 1 if anything was found).")
@connection_options
def run(dry_run: bool, **opts: Any) -> None:
    """One garbage-collection pass."""
    _pass(dry_run, opts)


@main.command()
@connection_options
def check(**opts: Any) -> None:
    """Same as `run --dry-run`, for CI: exit 0 when clean, 1 when anything was found."""
    _pass(True, opts)
