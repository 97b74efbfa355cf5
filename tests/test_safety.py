"""The pure rails: mass-deletion brake, inventory plausibility, stuck IP CRs, second-look verdicts."""

from __future__ import annotations

import datetime as dt

from builders import NOW, ip, node, pod, port, snapshot, vm
from kube_ovn_gc.model import KubevirtState
from kube_ovn_gc.plan import (
    Lookup,
    Policy,
    fresh_snapshot,
    lookups_for_ip,
    lookups_for_port,
    plan,
    rejudge_ip,
    stuck_ips,
)
from kube_ovn_gc.safety import Limits, brake

POLICY = Policy(now=NOW)


def leaky(n_leaked: int, n_live: int, **kw: object):  # type: ignore[no-untyped-def]
    live = tuple(pod("ns", f"live-{i}") for i in range(n_live))
    ips = tuple(ip(f"live-{i}.ns", namespace="ns", pod_name=f"live-{i}") for i in range(n_live))
    ips += tuple(ip(f"gone-{i}.ns", namespace="ns", pod_name=f"gone-{i}") for i in range(n_leaked))
    return snapshot(pods=live, ips=ips, nodes=(node("n1"),), **kw)


def test_max_deletions_refuses_and_force_overrides() -> None:
    snap = leaky(30, 100)
    p = plan(snap, POLICY)
    assert len(p.ips) == 30
    assert brake(p, snap, Limits(max_deletions=30)) is None
    why = brake(p, snap, Limits(max_deletions=29))
    assert why is not None and "more than --max-deletions 29" in why.reason and why.rail == "max-deletions"
    assert brake(p, snap, Limits(max_deletions=29, force=True)) is None


def test_ratio_applies_only_above_twenty_objects_of_a_kind() -> None:
    small = leaky(20, 1)  # 20 of 21 IPs would go: under the floor, allowed
    assert brake(plan(small, POLICY), small, Limits()) is None
    big = leaky(21, 20)  # 21 of 41 (51%) would go: refused
    why = brake(plan(big, POLICY), big, Limits())
    assert why is not None and "21 of 41 IP CRs" in why.reason and why.rail == "max-deletion-ratio"
    assert brake(plan(big, POLICY), big, Limits(max_ratio=0.6)) is None


def test_port_ratio_counts_only_kube_ovn_ports() -> None:
    ports = tuple(port(f"dead-{i}.ns", pod_key=f"ns/dead-{i}") for i in range(25))
    foreign = tuple(port(f"neutron-{i}", vendor="neutron") for i in range(100))
    snap = snapshot(ports=ports + foreign, pods=(pod("ns", "a"),), nodes=(node("n1"),))
    why = brake(plan(snap, POLICY), snap, Limits())
    assert why is not None and "25 of 25 kube-ovn ports" in why.reason


def test_an_implausibly_small_owner_inventory_is_refused() -> None:
    # 150 kube-ovn ports, and the pod list came back empty: every port looks leaked.
    ports = tuple(port(f"p-{i}.ns", pod_key=f"ns/p-{i}") for i in range(150))
    empty = snapshot(ports=ports, nodes=(node("n1"),))
    why = brake(plan(empty, POLICY), empty, Limits(max_deletions=1000, max_ratio=1.0))
    assert why is not None and "owner inventory looks incomplete" in why.reason
    assert why.rail == "plausible-inventory"
    no_nodes = snapshot(ports=ports, pods=tuple(pod("ns", f"p-{i}") for i in range(100)))  # 50 would go
    why = brake(plan(no_nodes, POLICY), no_nodes, Limits())
    assert why is not None and "no Nodes" in why.reason
    # The same numbers with the owners present: nothing leaks, nothing refused.
    full = snapshot(ports=ports, nodes=(node("n1"),), pods=tuple(pod("ns", f"p-{i}") for i in range(150)))
    assert plan(full, POLICY).ports == () and brake(plan(full, POLICY), full, Limits()) is None


def test_stopped_vms_count_as_owners_for_plausibility() -> None:
    vms = tuple(vm("ns", f"vm-{i}") for i in range(120))
    ips = tuple(ip(f"vm-{i}.ns", namespace="ns", pod_name=f"vm-{i}", pod_type="VirtualMachine") for i in range(120))
    snap = snapshot(vms=vms, ips=ips, nodes=(node("n1"),))
    assert brake(plan(snap, POLICY), snap, Limits()) is None


def test_reserved_ip_crs_need_no_owner_and_a_plan_deleting_nothing_is_never_refused() -> None:
    # 150 reserved IP CRs (a user's pool) and 3 pods: nothing would be deleted, nothing must be refused.
    reserved = tuple(ip(f"pool-{i}", namespace="", pod_name="", reserved=True) for i in range(150))
    live = tuple(pod("ns", f"live-{i}") for i in range(3))
    ips = reserved + tuple(ip(f"live-{i}.ns", namespace="ns", pod_name=f"live-{i}") for i in range(3))
    snap = snapshot(ips=ips, pods=live, nodes=(node("n1"),))
    p = plan(snap, POLICY)
    assert p.ips == () and p.ports == ()
    assert brake(p, snap, Limits()) is None
    # one real leak among them: the reserved CRs still do not make the inventory look short
    leak = snapshot(ips=(*ips, ip("gone.ns", namespace="ns", pod_name="gone")), pods=live, nodes=(node("n1"),))
    assert [a.ip.name for a in plan(leak, POLICY).ips] == ["gone.ns"]
    assert brake(plan(leak, POLICY), leak, Limits()) is None


def test_an_empty_plan_is_never_refused_even_with_no_nodes() -> None:
    ports = tuple(port(f"p-{i}.ns", pod_key=f"ns/p-{i}") for i in range(150))
    snap = snapshot(ports=ports, pods=tuple(pod("ns", f"p-{i}") for i in range(150)))  # no Nodes listed
    p = plan(snap, POLICY)
    assert p.ips == () and p.ports == ()
    assert brake(p, snap, Limits()) is None


def test_stuck_ips_are_found_and_judged_as_if_not_terminating() -> None:
    two_hours_ago = NOW - dt.timedelta(hours=2)
    snap = snapshot(pods=(pod("ns", "alive"),),
                    ips=(ip("leak.ns", namespace="ns", pod_name="leak", deleted=two_hours_ago),
                         ip("alive.ns", namespace="ns", pod_name="alive", deleted=two_hours_ago),
                         ip("recent.ns", namespace="ns", pod_name="recent", deleted=NOW - dt.timedelta(minutes=5))))
    stuck = {s.ip.meta.name: s for s in stuck_ips(snap.kube, POLICY, dt.timedelta(hours=1))}
    assert set(stuck) == {"leak.ns", "alive.ns"}
    assert stuck["leak.ns"].leaked and not stuck["alive.ns"].leaked
    assert stuck["leak.ns"].terminating_for == dt.timedelta(hours=2)
    assert "terminating for 2h00m" in stuck["leak.ns"].reason


def test_second_look_lookups_name_every_possible_owner() -> None:
    vm_ip = ip("db-1.ns", namespace="ns", pod_name="db-1", pod_type="VirtualMachine")
    assert set(lookups_for_ip(vm_ip, KubevirtState.READ, POLICY)) == {
        Lookup("Pod", "ns", "db-1"), Lookup("VirtualMachine", "ns", "db-1"),
        Lookup("VirtualMachineInstance", "ns", "db-1"), Lookup("StatefulSet", "ns", "db")}
    assert Lookup("VirtualMachine", "ns", "db-1") not in lookups_for_ip(vm_ip, KubevirtState.ABSENT, POLICY)
    node_ip = ip("node-n2", namespace="", pod_name="n2", node_name="n2", subnet="join")
    assert lookups_for_ip(node_ip, KubevirtState.READ, POLICY) == (Lookup("Node", "", "n2"),)
    assert lookups_for_port(port("mcast-querier.s1"), KubevirtState.READ, POLICY) == (Lookup("Subnet", "", "s1"),)


def test_second_look_keeps_a_candidate_whose_owner_appeared() -> None:
    leaked = ip("web.ns", namespace="ns", pod_name="web")
    first = snapshot(ips=(leaked,))
    assert [a.ip.meta.name for a in plan(first, POLICY).ips] == ["web.ns"]
    assert not rejudge_ip(leaked, fresh_snapshot([], first.kube), POLICY).alive
    appeared = fresh_snapshot([pod("ns", "web")], first.kube)
    verdict = rejudge_ip(leaked, appeared, POLICY)
    assert verdict.alive and verdict.reason == "owner Pod ns/web is alive"
