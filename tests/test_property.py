"""Property tests of the planner on random clusters (the "safety rails" issue).

``strategies.cases`` builds a cluster from its owners outward and says, from
DESIGN.md §4 and its own knowledge of every owner, which names a live owner
holds and which leaks are unambiguous. Against that truth, for any cluster:

1. safety: no action targets a name a live owner holds, a reserved, young or
   terminating IP CR, a port whose IP CR decides, or another system's NB row;
2. idempotence: remove what the plan selected (and, for each IP CR, its port,
   as the controller's finalizer does), plan again: nothing is left to do;
3. completeness: every unambiguous leak is selected.

A few hundred examples run by default; ``-m long`` runs ten thousand.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from builders import NOW
from kube_ovn_gc.model import NbSnapshot, Snapshot
from kube_ovn_gc.plan import Plan, Policy, plan
from strategies import Case, cases

# Hypothesis imports libcst to write its failure patch, which trips a DeprecationWarning that
# ``filterwarnings = error`` would turn into an INTERNALERROR hiding the falsifying example.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

LONG_SELECTED = "'long' in config.getoption('markexpr') and 'not long' not in config.getoption('markexpr')"


def policy_of(case: Case) -> Policy:
    return Policy(now=NOW, min_age=case.min_age, keep_vm_ip=case.keep_vm_ip)


def without(snap: Snapshot, p: Plan) -> Snapshot:
    """The cluster after ``p`` is applied: IP CRs gone with their same-name ports, planned ports gone."""
    ip_names = {a.ip.meta.name for a in p.ips}
    port_uuids = {a.port.uuid for a in p.ports}
    ports = tuple(x for x in snap.nb.ports if x.name not in ip_names and x.uuid not in port_uuids)
    ips = tuple(x for x in snap.kube.ips if x.meta.name not in ip_names)
    return Snapshot(nb=NbSnapshot(ports=ports, switch_count=snap.nb.switch_count),
                    kube=dataclasses.replace(snap.kube, ips=ips))


def check(case: Case) -> None:
    policy = policy_of(case)
    p = plan(case.snapshot, policy)
    ip_actions = {a.ip.meta.name: a.reason for a in p.ips}
    port_actions = {a.port.name: a.reason for a in p.ports}
    assert len(ip_actions) == len(p.ips) and len({a.port.uuid for a in p.ports}) == len(p.ports), "duplicate actions"
    assert all(any(a.ip is x for x in case.snapshot.kube.ips) for a in p.ips)
    assert all(any(a.port is x for x in case.snapshot.nb.ports) for a in p.ports)

    # 1. safety
    unsafe_ips = {n: (case.protected_ips[n], why) for n, why in ip_actions.items() if n in case.protected_ips}
    assert not unsafe_ips, f"IP CRs selected although kept (truth, plan's reason): {unsafe_ips}"
    unsafe_ports = {a.port.name: (case.protected_ports[a.port.uuid], a.reason)
                    for a in p.ports if a.port.uuid in case.protected_ports}
    assert not unsafe_ports, f"ports selected although kept (truth, plan's reason): {unsafe_ports}"

    # 2. idempotence
    again = plan(without(case.snapshot, p), policy)
    assert again.empty, f"second pass not empty: {[a.ip.meta.name for a in again.ips]}, " \
                        f"{[a.port.name for a in again.ports]}"

    # 3. completeness, for the leaks the spec is unambiguous about
    missed_ips = {n: why for n, why in case.must_ips.items() if n not in ip_actions}
    assert not missed_ips, f"leaked IP CRs not selected (owner gone): {missed_ips}"
    missed_ports = {n: why for n, why in case.must_ports.items() if n not in port_actions}
    assert not missed_ports, f"leaked ports not selected (owner gone): {missed_ports}"


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_plan_is_safe_idempotent_and_complete(case: Case) -> None:
    check(case)


@pytest.mark.long
@pytest.mark.skipif(f"not ({LONG_SELECTED})", reason="10,000 examples: run with -m long")
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_plan_is_safe_idempotent_and_complete_long(case: Case) -> None:
    check(case)
