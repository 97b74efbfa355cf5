"""The soak's record of the truth, kept by the simulated world as it acts — never read back from the job.

- **liveness**: for every address name (the IP CR / LSP name, ``<owner>.<ns>[.<provider>]``), the
  owners holding it right now (a Pod, a VM, a StatefulSet slot, a Node) and the time spans during
  which at least one did. An owner is marked alive *after* the API server has it and dead *before*
  the API server loses it, so "alive" here always means "the API server had it": a delete the job
  makes while the ledger says alive is a delete of an address whose owner the API served.
- **leaks**: every address the world deliberately left behind, when it became eligible (its owner
  gone, and for an IP CR also older than ``--min-age``), and when the job collected it.
- **addresses**: the address allocated for each name, so the Subnet statuses of a leak-free cluster
  can be computed here, independently of the job's ``status.py`` (DESIGN.md §5, and Kube-OVN
  v1.13.0 ``pkg/controller/subnet.go`` ``calcSubnetStatusIP``: using = the IP CRs of the subnet,
  available = usable addresses - excludes - using, ranges from the IPAM).
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

INF = float("inf")

# kinds of planted leak
VM_STOPPED_DELETED = "vm-stopped-deleted"
CONTROLLER_DOWN = "deleted-while-controller-down"
LSP_ONLY = "lsp-only"
IP_CR_ONLY = "ip-cr-only"
IPAM_ONLY = "ipam-only-attachment"
LEAK_KINDS = (VM_STOPPED_DELETED, CONTROLLER_DOWN, LSP_ONLY, IP_CR_ONLY, IPAM_ONLY)


class Liveness:
    """Who holds each address name, and since when. Thread-safe; times are ``time.time()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[str, set[str]] = {}
        self._spans: dict[str, list[list[float]]] = {}

    def hold(self, name: str, holder: str, at: float | None = None) -> bool:
        """``holder`` owns ``name`` from now on; True when the name was dead until now."""
        now = time.time() if at is None else at
        with self._lock:
            holders = self._holders.setdefault(name, set())
            born = not holders
            holders.add(holder)
            if born:
                self._spans.setdefault(name, []).append([now, INF])
            return born

    def release(self, name: str, holder: str, at: float | None = None) -> bool:
        """``holder`` no longer owns ``name``; True when nobody does any more."""
        now = time.time() if at is None else at
        with self._lock:
            holders = self._holders.get(name)
            if not holders or holder not in holders:
                return False
            holders.discard(holder)
            if holders:
                return False
            del self._holders[name]
            self._spans[name][-1][1] = now
            return True

    def holders(self, name: str) -> set[str]:
        with self._lock:
            return set(self._holders.get(name, ()))

    def alive(self, name: str) -> bool:
        with self._lock:
            return bool(self._holders.get(name))

    def span_at(self, name: str, moment: float) -> tuple[float, float] | None:
        """The alive span that contains ``moment`` (end ``INF`` while still alive), or None."""
        with self._lock:
            for start, end in reversed(self._spans.get(name, ())):
                if start <= moment < end:
                    return start, end
                if end <= moment:
                    return None
        return None

    def alive_throughout(self, name: str, t0: float, t1: float) -> bool:
        span = self.span_at(name, t0)
        return span is not None and span[1] > t1

    def alive_during(self, name: str, t0: float, t1: float) -> bool:
        """Alive at any moment of ``[t0, t1]``."""
        with self._lock:
            return any(start <= t1 and end > t0 for start, end in self._spans.get(name, ()))

    def ended_during(self, name: str, t0: float, t1: float) -> float | None:
        """When the last span that ended within ``[t0, t1]`` ended (its owners went), or None."""
        with self._lock:
            ends = [end for _, end in self._spans.get(name, ()) if t0 <= end <= t1]
        return max(ends) if ends else None

    def live_names(self) -> set[str]:
        with self._lock:
            return {name for name, holders in self._holders.items() if holders}


@dataclass
class Leak:
    id: int
    kind: str
    obj: str  # "ip" (an IP CR; its LSP goes with it) or "port" (an LSP without an IP CR)
    name: str
    planted: float  # the owner went (or the controller gave up)
    eligible: float  # planted, and for an IP CR also creationTimestamp + --min-age
    collected: float | None = None
    reclaimed: float | None = None  # its owner came back (a StatefulSet slot scaled up again)
    cleaned: float | None = None  # kube-ovn-controller removed it after all (an event still queued when it went)
    passes: int | None = None  # completed passes started since it was eligible, up to the collecting one

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ledger:
    min_age: float
    live: Liveness = field(default_factory=Liveness)
    leaks: list[Leak] = field(default_factory=list)
    addresses: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (subnet, address)
    _open: dict[tuple[str, str], Leak] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- addresses ---------------------------------------------------------------------------

    def assign(self, name: str, subnet: str, address: str) -> None:
        with self._lock:
            self.addresses[name] = (subnet, address)

    def unassign(self, name: str) -> None:
        with self._lock:
            self.addresses.pop(name, None)

    # --- leaks -------------------------------------------------------------------------------

    def plant(self, kind: str, obj: str, name: str, gone: float, created: float | None = None) -> Leak | None:
        """Record a leak of ``name`` (its owner gone at ``gone``; ``created``: the IP CR's creationTimestamp)."""
        eligible = gone if created is None else max(gone, created + self.min_age)
        with self._lock:
            if (obj, name) in self._open:
                return None  # already planted (an owner with two ways to leak the same address)
            leak = Leak(next(self._ids), kind, obj, name, gone, eligible)
            self.leaks.append(leak)
            self._open[(obj, name)] = leak
            return leak

    def collected(self, obj: str, name: str, at: float) -> Leak | None:
        with self._lock:
            leak = self._open.pop((obj, name), None)
            if leak is not None:
                leak.collected = at
            return leak

    def reclaimed(self, name: str, at: float) -> None:
        """The owner of ``name`` is back: its leaks are no longer leaks."""
        with self._lock:
            for obj in ("ip", "port"):
                leak = self._open.pop((obj, name), None)
                if leak is not None:
                    leak.reclaimed = at

    def cleaned(self, obj: str, name: str, at: float) -> None:
        """The controller deleted ``name`` itself: it was not left behind after all."""
        with self._lock:
            leak = self._open.pop((obj, name), None)
            if leak is not None:
                leak.cleaned = at

    def outstanding(self) -> list[Leak]:
        with self._lock:
            return list(self._open.values())

    # --- Subnet statuses ---------------------------------------------------------------------

    def expected_statuses(self, subnets: Iterable[SubnetSpec]) -> dict[str, dict[str, Any]]:
        """What every Subnet status says once only live owners hold addresses (IPv4 subnets)."""
        live = self.live.live_names()
        with self._lock:
            by_subnet: dict[str, list[str]] = {}
            for name, (subnet, address) in self.addresses.items():
                if name in live:
                    by_subnet.setdefault(subnet, []).append(address)
        return {s.name: expected_status(s, by_subnet.get(s.name, [])) for s in subnets}


@dataclass(frozen=True)
class SubnetSpec:
    name: str
    cidr: str
    gateway: str
    provider: str = "ovn"

    @property
    def excludes(self) -> tuple[str, ...]:
        return (self.gateway,)


def _ranges(values: list[int]) -> str:
    """``a``/``a-b`` items, ascending, comma-joined, adjacent values merged (Kube-OVN's IPAM strings)."""
    out: list[str] = []
    run_start: int | None = None
    prev = 0
    for v in sorted(set(values)):
        if run_start is None:
            run_start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append(_item(run_start, prev))
            run_start = prev = v
    if run_start is not None:
        out.append(_item(run_start, prev))
    return ",".join(out)


def _item(first: int, last: int) -> str:
    a, b = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
    return str(a) if first == last else f"{a}-{b}"


def _complement(first: int, last: int, taken: set[int]) -> str:
    """The ranges of ``[first, last]`` without ``taken``, without enumerating the whole range."""
    out: list[str] = []
    cursor = first
    for v in sorted(t for t in taken if first <= t <= last):
        if v > cursor:
            out.append(_item(cursor, v - 1))
        cursor = v + 1
    if cursor <= last:
        out.append(_item(cursor, last))
    return ",".join(out)


def expected_status(spec: SubnetSpec, addresses: list[str]) -> dict[str, Any]:
    """The eight status fields of an IPv4 Subnet whose IP CRs hold exactly ``addresses``."""
    net = ipaddress.IPv4Network(spec.cidr)
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1  # /16: no network, no broadcast
    excluded = {v for v in (int(ipaddress.IPv4Address(e)) for e in spec.excludes) if first <= v <= last}
    using = {int(ipaddress.IPv4Address(a)) for a in addresses} - excluded
    usable = last - first + 1
    return {
        "v4availableIPs": max(0, usable - len(excluded) - len(addresses)),
        "v4usingIPs": len(addresses),
        "v4availableIPrange": _complement(first, last, excluded | using),
        "v4usingIPrange": _ranges(sorted(using)),
        "v6availableIPs": 0,
        "v6usingIPs": 0,
        "v6availableIPrange": "",
        "v6usingIPrange": "",
    }


def status_differences(expected: dict[str, Any], actual: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields that differ; counts compare as numbers (Kube-OVN ≤ 1.15 wrote floats)."""
    out: dict[str, tuple[Any, Any]] = {}
    for key, want in expected.items():
        got = actual.get(key)
        if isinstance(want, int):
            try:
                same = got is not None and int(float(got)) == want
            except (TypeError, ValueError):
                same = False
        else:
            same = (got or "") == want
        if not same:
            out[key] = (want, got)
    return out
