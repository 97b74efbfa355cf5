"""One frozen settings object, built by the CLI and passed down."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field

from .errors import ConfigError
from .retry import RetryPolicy
from .safety import Limits

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``5m``, ``1h``, ``2d`` or plain seconds; ``0``/``0s`` is zero."""
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(f"bad duration {text!r}: use e.g. 90s, 5m, 1h or plain seconds")
    return dt.timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])


@dataclass(frozen=True)
class NbSettings:
    remotes: tuple[str, ...]
    private_key: str | None = None
    certificate: str | None = None
    ca_cert: str | None = None
    timeout: float = 10.0  # seconds an NB member may stay silent (--ovn-nb-timeout)


@dataclass(frozen=True)
class KubeSettings:
    kubeconfig: str | None = None
    context: str | None = None
    page_size: int = 500
    timeout: float = 60.0


@dataclass(frozen=True)
class Settings:
    nb: NbSettings
    kube: KubeSettings = field(default_factory=KubeSettings)
    dry_run: bool = False
    min_age: dt.timedelta = dt.timedelta(minutes=5)
    keep_vm_ip: bool = True
    output: str = "text"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Limits = field(default_factory=Limits)
    lease_namespace: str = "kube-system"
    lease_duration: dt.timedelta = dt.timedelta(seconds=120)
    use_lease: bool = True
    stuck_after: dt.timedelta = dt.timedelta(hours=1)
    release_stuck_after: dt.timedelta | None = None
    record_dir: str | None = None
    events: bool = True
    pushgateway: str | None = None
    cluster_name: str = ""
    workers: int = 4
    from_report: str | None = None  # run --from-report: apply only what this check report planned
    max_report_age: dt.timedelta = dt.timedelta(hours=1)

    def describe(self) -> dict[str, object]:
        """The effective settings, safe to log (paths, never secrets)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, dt.timedelta):
                out[key] = str(value)
        return out
