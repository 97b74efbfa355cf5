"""Pure safety rails on a plan: the mass-deletion brake and the inventory plausibility check.

A plan that trips a rail is not acted on at all (exit 4); ``--force`` overrides. A dry run is
never refused: it reports the whole plan and which rail a real run would trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Snapshot
from .plan import Plan, is_candidate_port

PLAUSIBILITY_MIN_OBJECTS = 100
"""Below this many kube-ovn ports + IP CRs the owner inventory is not judged for plausibility."""


@dataclass(frozen=True)
class Limits:
    max_deletions: int = 500
    max_ratio: float = 0.5
    ratio_applies_above: int = 20  # the ratio only counts when more than this many of a kind would go
    force: bool = False


MAX_DELETIONS, MAX_RATIO, PLAUSIBLE_INVENTORY = "max-deletions", "max-deletion-ratio", "plausible-inventory"
"""The rails a plan can trip, by the name the report gives them (``refusal.rail``)."""


@dataclass(frozen=True)
class Refusal:
    """Why a plan must not be applied: which rail, and the numbers."""

    rail: str  # MAX_DELETIONS | MAX_RATIO | PLAUSIBLE_INVENTORY
    reason: str

    def __str__(self) -> str:
        return self.reason


def brake(plan: Plan, snapshot: Snapshot, limits: Limits) -> Refusal | None:
    """Why this plan must not be applied, or None. Checked before the first delete.

    A plan that deletes nothing is never refused: there is nothing to brake (its status fixes still run).
    """
    if limits.force:
        return None
    ips, ports = len(plan.ips), len(plan.ports)
    if ips + ports == 0:
        return None
    if ips + ports > limits.max_deletions:
        return Refusal(MAX_DELETIONS, f"the plan deletes {ips + ports} objects ({ips} IP CRs, {ports} ports), "
                                      f"more than --max-deletions {limits.max_deletions}")
    kube = snapshot.kube
    candidate_ports = sum(1 for p in snapshot.nb.ports if is_candidate_port(p))
    for kind, n, of in (("IP CRs", ips, len(kube.ips)), ("kube-ovn ports", ports, candidate_ports)):
        if n > limits.ratio_applies_above and n > limits.max_ratio * of:
            return Refusal(MAX_RATIO, f"the plan deletes {n} of {of} {kind} ({n / of:.0%}), more than "
                                      f"--max-deletion-ratio {limits.max_ratio:g}")
    why = implausible_inventory(snapshot, candidate_ports)
    return None if why is None else Refusal(PLAUSIBLE_INVENTORY, why)


def implausible_inventory(snapshot: Snapshot, candidate_ports: int) -> str | None:
    """An owner inventory too small for the addresses it should own: a read that silently came back short.

    Reserved IP CRs (``ovn.kubernetes.io/ip_reserved: "true"``) need no owner: they are not addresses
    that owners must account for, so they do not count here.
    """
    kube = snapshot.kube
    owned_ips = sum(1 for ip in kube.ips if not ip.reserved)
    addresses = max(candidate_ports, owned_ips)
    if addresses < PLAUSIBILITY_MIN_OBJECTS:
        return None
    if not kube.nodes:
        return f"no Nodes at all while {addresses} kube-ovn addresses exist: the owner inventory looks incomplete"
    owners = sum(1 for p in kube.pods if not p.host_network) + len(kube.vms) + len(kube.nodes)
    if owners * 10 < addresses:
        return (f"only {owners} owners (pods, VMs, nodes) for {addresses} kube-ovn addresses: "
                "the owner inventory looks incomplete")
    return None
