"""The keep set, row by row of DESIGN.md §4, on hand-built snapshots (no I/O)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from builders import NOW, OLD, eip, ip, launcher, node, pod, port, snapshot, sts, sts_ref, subnet, vip, vm
from kube_ovn_gc.model import IpCR, KubevirtState, OwnerRef, Snapshot
from kube_ovn_gc.plan import Lookup, Plan, Policy, lookups_for_ip, lookups_for_port, plan, plan_statuses

POLICY = Policy(now=NOW, min_age=dt.timedelta(minutes=5), keep_vm_ip=True)


def run_plan(snap: Snapshot, policy: Policy = POLICY) -> Plan:
    return plan(snap, policy)


def leaked_ips(p: Plan) -> dict[str, str]:
    return {a.ip.meta.name: a.reason for a in p.ips}


def leaked_ports(p: Plan) -> dict[str, str]:
    return {a.port.name: a.reason for a in p.ports}


# --- pods -----------------------------------------------------------------------


def test_live_pod_keeps_every_allocated_provider_and_dead_pod_loses_them() -> None:
    live = pod("default", "web", providers=("ovn", "net1.default.ovn", "mac1.default"))
    snap = snapshot(
        pods=(live,),
        ips=(ip("web.default", pod_name="web"), ip("web.default.net1.default.ovn", pod_name="web"),
             ip("web.default.mac1.default", pod_name="web"), ip("gone.default", pod_name="gone")),
        ports=(port("web.default.net1.default.ovn"), port("other.default", pod_key="default/other")),
    )
    p = run_plan(snap)
    assert leaked_ips(p) == {"gone.default": "owner Pod default/gone not found"}
    assert leaked_ports(p) == {"other.default": "owner Pod default/other not found"}


@pytest.mark.parametrize(
    ("phase", "restart", "reason", "alive"),
    [
        ("Running", "Always", "", True),
        ("Pending", "Always", "", True),
        ("Succeeded", "Always", "", True),
        ("Succeeded", "OnFailure", "", False),
        ("Succeeded", "Never", "", False),
        ("Failed", "Never", "", False),
        ("Failed", "OnFailure", "", True),
        ("Failed", "Always", "Evicted", False),
    ],
)
def test_pod_phase_rules(phase: str, restart: str, reason: str, alive: bool) -> None:
    snap = snapshot(pods=(pod("ns", "job", phase=phase, restart=restart, reason=reason),),
                    ips=(ip("job.ns", namespace="ns", pod_name="job"),))
    p = run_plan(snap)
    assert ("job.ns" not in leaked_ips(p)) is alive


def test_pod_past_deletion_grace_is_dead_but_within_grace_is_alive() -> None:
    dying = pod("ns", "a", deleted=NOW - dt.timedelta(seconds=60), grace=30)
    stopping = pod("ns", "b", deleted=NOW - dt.timedelta(seconds=10), grace=30)
    snap = snapshot(pods=(dying, stopping), ips=(ip("a.ns", namespace="ns", pod_name="a"),
                                                 ip("b.ns", namespace="ns", pod_name="b")))
    assert set(leaked_ips(run_plan(snap))) == {"a.ns"}


def test_host_network_pod_owns_nothing() -> None:
    snap = snapshot(pods=(pod("ns", "h", host_network=True),),
                    ports=(port("h.ns", pod_key="ns/h"),))
    p = run_plan(snap)
    assert "host network" in leaked_ports(p)["h.ns"]


def test_port_named_by_pod_external_id_is_kept_before_allocated_annotation() -> None:
    new = pod("ns", "fresh", providers=())  # allocated annotation not written yet
    snap = snapshot(pods=(new,), ports=(port("fresh.ns", pod_key="ns/fresh"),))
    assert run_plan(snap).ports == ()


# --- KubeVirt ------------------------------------------------------------------------


def test_seed_case_stopped_then_deleted_vm_leaks_ip_and_stopped_vm_keeps_it() -> None:
    ips = (ip("vm1.default", pod_name="vm1", pod_type="VirtualMachine"),
           ip("vm2.default", pod_name="vm2", pod_type="VirtualMachine"))
    snap = snapshot(vms=(vm("default", "vm2"),), ips=ips,
                    ports=(port("vm1.default", pod_key="default/vm1"), port("vm2.default", pod_key="default/vm2")))
    p = run_plan(snap)
    assert leaked_ips(p) == {"vm1.default": "owner VirtualMachine default/vm1 not found"}
    assert p.ports == ()  # vm1's port goes with its IP CR (the controller's finalizer)


def test_running_vm_launcher_pod_owns_the_vm_named_port() -> None:
    snap = snapshot(pods=(launcher("default", "vm3"),), vms=(),
                    ports=(port("vm3.default", pod_key="default/vm3"),),
                    ips=(ip("vm3.default", pod_name="vm3", pod_type="VirtualMachine"),))
    p = run_plan(snap)
    assert p.ips == () and p.ports == ()


def test_vm_attachments_from_annotation_and_spec_networks_with_ifname_variants() -> None:
    machine = vm("prod", "db", multus='[{"name":"net-a","namespace":"infra","interface":"eth1"}]',
                 spec_networks=(("net-b", False), ("other/net-c", False)))
    machine2 = vm("prod", "db2", multus="infra/net-a@eth1,net-z")
    names = ["db.prod", "db.prod.net-a.infra.ovn", "db.prod.net-a.infra.ovn.eth1", "db.prod.net-b.prod.ovn",
             "db.prod.net-c.other.ovn", "db2.prod.net-a.infra.ovn", "db2.prod.net-z.prod.ovn",
             "db.prod.net-q.prod.ovn"]
    snap = snapshot(vms=(machine, machine2), ports=tuple(port(n) for n in names))
    p = run_plan(snap)
    assert set(leaked_ports(p)) == {"db.prod.net-q.prod.ovn"}


def test_vm_with_default_multus_network_does_not_keep_the_default_name() -> None:
    machine = vm("ns", "m", spec_networks=(("ns/primary", True),))
    snap = snapshot(vms=(machine,), ports=(port("m.ns"), port("m.ns.primary.ns.ovn")))
    assert set(leaked_ports(run_plan(snap))) == {"m.ns"}


def test_standalone_vmi_keeps_its_own_addresses() -> None:
    snap = snapshot(vms=(vm("ns", "solo", kind="VirtualMachineInstance"),),
                    ips=(ip("solo.ns", namespace="ns", pod_name="solo", pod_type="VirtualMachine"),))
    assert run_plan(snap).ips == ()


def test_keep_vm_ip_off_stopped_vm_keeps_nothing_and_launcher_pod_owns_its_own_name() -> None:
    policy = Policy(now=NOW, keep_vm_ip=False)
    lp = launcher("ns", "vm9", pod_name="virt-launcher-vm9-x1")
    snap = snapshot(vms=(vm("ns", "vm8"), vm("ns", "vm9")), pods=(lp,),
                    ips=(ip("virt-launcher-vm8-y2.ns", namespace="ns", pod_name="virt-launcher-vm8-y2",
                            pod_type="VirtualMachine"),
                         ip("virt-launcher-vm9-x1.ns", namespace="ns", pod_name="virt-launcher-vm9-x1",
                            pod_type="VirtualMachine")),
                    ports=(port("vm8.ns"),))
    p = run_plan(snap, policy)
    assert set(leaked_ips(p)) == {"virt-launcher-vm8-y2.ns"}
    assert "keep-vm-ip off" in leaked_ips(p)["virt-launcher-vm8-y2.ns"]
    assert set(leaked_ports(p)) == {"vm8.ns"}


def test_kubevirt_absent_means_no_vms() -> None:
    snap = snapshot(kubevirt=KubevirtState.ABSENT,
                    ips=(ip("vm1.default", pod_name="vm1", pod_type="VirtualMachine"),))
    assert set(leaked_ips(run_plan(snap))) == {"vm1.default"}


def test_kubevirt_unreadable_protects_anything_that_might_be_a_vm() -> None:
    dead = pod("ns", "done", phase="Succeeded", restart="Never")
    snap = snapshot(kubevirt=KubevirtState.UNREADABLE, pods=(dead,),
                    ips=(ip("vm1.default", pod_name="vm1", pod_type="VirtualMachine"),
                         ip("x.default", pod_name="x"), ip("done.ns", namespace="ns", pod_name="done"),
                         ip("node-gone", namespace="", pod_name="gone", node_name="gone")),
                    ports=(port("vm1.default", pod_key="default/vm1"), port("anon.default")))
    p = run_plan(snap)
    # A pod that exists and is no VM launcher, and a node address, are still collected.
    assert set(leaked_ips(p)) == {"done.ns", "node-gone"}
    assert p.ports == ()


def test_unreadable_vm_networks_protect_every_address_of_that_vm_and_are_reported() -> None:
    machine = vm("prod", "db", multus="[not json")
    snap = snapshot(vms=(machine,), ports=(port("db.prod.net-a.infra.ovn"), port("dbx.prod.net-a.infra.ovn")))
    p = run_plan(snap)
    assert set(leaked_ports(p)) == {"dbx.prod.net-a.infra.ovn"}
    assert [(s.kind, s.name) for s in p.skipped] == [("virtualmachine", "prod/db")]


# --- StatefulSets --------------------------------------------------------------------


def test_statefulset_slot_keeps_ip_while_pod_is_absent_and_releases_scaled_down_ordinals() -> None:
    s = sts("db", "pg", replicas=2)
    ips = tuple(ip(f"pg-{i}.db", namespace="db", pod_name=f"pg-{i}", pod_type="StatefulSet") for i in range(3))
    p = run_plan(snapshot(statefulsets=(s,), ips=ips))
    assert leaked_ips(p) == {"pg-2.db": "StatefulSet db/pg scaled down: ordinal 2 >= 2"}


def test_statefulset_ordinals_start_is_honoured() -> None:
    s = sts("db", "pg", replicas=2, start=5)
    ips = tuple(ip(f"pg-{i}.db", namespace="db", pod_name=f"pg-{i}", pod_type="StatefulSet") for i in (4, 5, 6, 7))
    assert set(leaked_ips(run_plan(snapshot(statefulsets=(s,), ips=ips)))) == {"pg-4.db", "pg-7.db"}


def test_statefulset_deleted_or_terminating_releases_slots() -> None:
    gone = ip("a-0.db", namespace="db", pod_name="a-0", pod_type="StatefulSet")
    dying = ip("b-0.db", namespace="db", pod_name="b-0", pod_type="StatefulSet")
    p = run_plan(snapshot(statefulsets=(sts("db", "b", 3, deleted=OLD),), ips=(gone, dying)))
    assert leaked_ips(p) == {"a-0.db": "owner StatefulSet db/a not found",
                             "b-0.db": "owner StatefulSet db/b is being deleted"}


def test_statefulset_pod_not_alive_is_kept_by_its_slot_unless_sts_was_recreated() -> None:
    s = sts("db", "pg", replicas=3, uid="new-uid")
    same = pod("db", "pg-0", phase="Failed", restart="Never", owners=(sts_ref("pg", "new-uid"),))
    stale = pod("db", "pg-1", phase="Failed", restart="Never", owners=(sts_ref("pg", "old-uid"),))
    snap = snapshot(statefulsets=(s,), pods=(same, stale),
                    ports=(port("pg-0.db", pod_key="db/pg-0"), port("pg-1.db", pod_key="db/pg-1")))
    p = run_plan(snap)
    assert set(leaked_ports(p)) == {"pg-1.db"}
    assert "re-created" in leaked_ports(p)["pg-1.db"]


def test_only_podtype_statefulset_ip_crs_are_slots() -> None:
    # Kube-OVN's checkIPOwnerExists (v1.15.0/v1.16.0 pkg/controller/gc.go) treats an IP CR as a slot only for
    # podType StatefulSet; getPodType (pkg/controller/pod.go) writes it only for pods a StatefulSet owns.
    cache = sts("default", "cache", replicas=3)
    snap = snapshot(
        statefulsets=(cache,),
        pods=(pod("default", "cache-2", phase="Failed", restart="Never"),),  # a dead bare pod, no owner
        ips=(ip("cache-0.default", pod_name="cache-0", pod_type="StatefulSet"),
             ip("cache-1.default", pod_name="cache-1"),  # a deleted bare pod named like slot 1
             ip("cache-2.default", pod_name="cache-2")),
        ports=(port("cache-1.default", pod_key="default/cache-1"),  # decided by its IP CR
               port("cache-5.default", pod_key="default/cache-5")),  # no IP CR: nothing says it was no slot
    )
    p = run_plan(snap)
    assert leaked_ips(p) == {"cache-1.default": "owner Pod default/cache-1 not found",
                             "cache-2.default": "owner Pod default/cache-2 has Failed (restartPolicy Never)"}
    assert leaked_ports(p) == {"cache-5.default": "StatefulSet default/cache scaled down: ordinal 5 >= 3"}


def test_a_slot_port_without_ip_cr_is_kept_while_its_slot_lives() -> None:
    # Without the IP CR nothing tells a bare pod from a momentarily absent (or orphaned) StatefulSet pod: keep it.
    snap = snapshot(statefulsets=(sts("default", "cache", replicas=3),),
                    pods=(pod("default", "cache-2", phase="Failed", restart="Never"),),
                    ports=(port("cache-1.default", pod_key="default/cache-1"),
                           port("cache-2.default", pod_key="default/cache-2")))
    assert run_plan(snap).ports == ()


def test_live_pod_of_a_deleted_statefulset_is_still_alive() -> None:
    orphan = pod("db", "pg-0", owners=(sts_ref("pg", "u1"),))
    p = run_plan(snapshot(pods=(orphan,), ports=(port("pg-0.db", pod_key="db/pg-0"),)))
    assert p.ports == ()


# --- nodes, vips, eips, subnets ----------------------------------------------------------


def test_node_ports_and_ips_live_with_their_node() -> None:
    snap = snapshot(nodes=(node("n1"),),
                    ips=(ip("node-n1", namespace="", pod_name="n1", node_name="n1", subnet="join"),
                         ip("node-n2", namespace="", pod_name="n2", node_name="n2", subnet="join")),
                    ports=(port("node-n1", switch="join"), port("node-n3", switch="join")))
    p = run_plan(snap)
    assert leaked_ips(p) == {"node-n2": "owner Node n2 not found"}
    assert leaked_ports(p) == {"node-n3": "owner Node n3 not found"}


def test_typed_vip_and_ovn_eip_keep_their_ports_untyped_vip_does_not() -> None:
    snap = snapshot(subnets=(subnet("s1", provider="net1.ns.ovn"),),
                    vips=(vip("v1", namespace="ns", subnet_name="s1", type="switch_lb_vip"),
                          vip("v2", namespace="ns", subnet_name="s1")),
                    eips=(eip("eip-a"),),
                    ports=(port("v1.ns.net1.ns.ovn", pod_key="ns/v1"), port("v2.ns.net1.ns.ovn"), port("eip-a")))
    assert set(leaked_ports(run_plan(snap))) == {"v2.ns.net1.ns.ovn"}


def test_mcast_querier_and_u2o_live_with_their_subnet() -> None:
    snap = snapshot(subnets=(subnet("s1"),),
                    ips=(ip("mcast-querier.s1", namespace="", subnet="s1"),
                         ip("mcast-querier.s2", namespace="", subnet="s2"),
                         ip("u2o-interconnection.vpc1.s1", namespace="", subnet="s1"),
                         ip("u2o-interconnection.vpc1.s2", namespace="", subnet="s2")),
                    ports=(port("mcast-querier.s2", pod_key="/s2"),))
    p = run_plan(snap)
    assert set(leaked_ips(p)) == {"mcast-querier.s2", "u2o-interconnection.vpc1.s2"}
    assert leaked_ips(p)["mcast-querier.s2"] == "owner Subnet s2 not found"


# --- what is never a candidate ---------------------------------------------------------------


def test_reserved_young_and_terminating_ips_are_never_candidates() -> None:
    snap = snapshot(ips=(ip("r.default", pod_name="r", reserved=True),
                         ip("y.default", pod_name="y", created=NOW - dt.timedelta(minutes=1)),
                         ip("t.default", pod_name="t", deleted=NOW),
                         ip("o.default", pod_name="o")))
    assert set(leaked_ips(run_plan(snap))) == {"o.default"}
    no_age = Policy(now=NOW, min_age=dt.timedelta(0))
    assert set(leaked_ips(run_plan(snap, no_age))) == {"o.default", "y.default"}


def test_foreign_ports_are_never_candidates() -> None:
    ports = (port("lrp-ish", type="router"), port("ln", type="localnet"), port("vip-port", type="virtual"),
             port("neutron-port", vendor="neutron"), port("no-vendor", vendor=None),
             port("dead.default", pod_key="default/dead"))
    assert set(leaked_ports(run_plan(snapshot(ports=ports)))) == {"dead.default"}


def test_port_with_an_ip_cr_is_left_to_the_ip_cr() -> None:
    snap = snapshot(ips=(ip("r.default", pod_name="r", reserved=True),),
                    ports=(port("r.default", pod_key="default/r"),))
    p = run_plan(snap)
    assert p.ips == () and p.ports == ()


def test_odd_external_ids_and_unparsed_objects_are_skipped_not_deleted() -> None:
    snap = snapshot(ports=(port("odd.default", pod_key="no-slash"),),
                    unparsed=(("ip", "bad-ip", "spec.subnet missing"),))
    p = run_plan(snap)
    assert p.ports == () and p.ips == ()
    assert {(s.kind, s.name) for s in p.skipped} == {("port", "odd.default"), ("ip", "bad-ip")}


def test_fqdn_node_port_lives_with_its_node_and_goes_with_it() -> None:
    # Found by the property test: node names are often FQDNs, and a dotted node-<name> is no pod's port.
    snap = snapshot(nodes=(node("w1.example.com"),),
                    ports=(port("node-w1.example.com", switch="join"), port("node-w2.example.com", switch="join")))
    assert set(leaked_ports(run_plan(snap))) == {"node-w2.example.com"}


def test_subnet_owned_addresses_as_kube_ovn_writes_them_live_with_their_subnet() -> None:
    # v1.13.0-v1.15.0 acquireMcastQuerierIP / acquireU2OIP: createOrUpdateIPCR("", name, ip, mac, subnet,
    # "default", "", "") -> spec.namespace default, spec.podName = the CR's own name, no ownerReference; the
    # querier's LSP carries pod=default/<name> (handleMcastQuerierChange -> CreateLogicalSwitchPort).
    def subnet_ip(name: str, sub: str, **kw: object) -> IpCR:
        return ip(name, namespace="default", pod_name=name, subnet=sub, node_name="", **kw)  # type: ignore[arg-type]

    snap = snapshot(
        subnets=(subnet("s1"), subnet("x")),
        ips=(subnet_ip("mcast-querier.s1", "s1"), subnet_ip("u2o-interconnection.ovn-cluster.s1", "s1"),
             subnet_ip("mcast-querier.s2", "s2"), subnet_ip("u2o-interconnection.ovn-cluster.s2", "s2"),
             # v1.16.0 adds the ownerReference; the rule is the same
             subnet_ip("mcast-querier.s3", "s3", owners=(OwnerRef("Subnet", "s3"),)),
             # a Pod called mcast-querier in namespace x: its IP CR names the pod, not itself
             ip("mcast-querier.x", namespace="x", pod_name="mcast-querier", subnet="s1")),
        ports=(port("mcast-querier.s1", pod_key="default/mcast-querier.s1", switch="s1"),
               port("mcast-querier.s4", pod_key="default/mcast-querier.s4", switch="s4"),
               port("mcast-querier.ns9", pod_key="ns9/mcast-querier")),
    )
    p = run_plan(snap)
    assert leaked_ips(p) == {"mcast-querier.s2": "owner Subnet s2 not found",
                             "u2o-interconnection.ovn-cluster.s2": "owner Subnet s2 not found",
                             "mcast-querier.s3": "owner Subnet s3 not found",
                             "mcast-querier.x": "owner Pod x/mcast-querier not found"}
    assert leaked_ports(p) == {"mcast-querier.s4": "owner Subnet s4 not found",
                               "mcast-querier.ns9": "owner Pod ns9/mcast-querier not found"}
    querier = next(i for i in snap.kube.ips if i.meta.name == "mcast-querier.s1")
    assert Lookup("Subnet", "", "s1") in lookups_for_ip(querier, KubevirtState.READ, POLICY)
    assert lookups_for_port(snap.nb.ports[0], KubevirtState.READ, POLICY)[0] == Lookup("Subnet", "", "s1")


def test_node_ip_crs_are_the_nodes_whatever_their_name() -> None:
    # createOrUpdateIPCR("", "", ip, mac, NodeSwitch, "", node.Name, ""): empty namespace, podName = nodeName
    # (checkIPOwnerExists, v1.15.0/v1.16.0); FQDN node names included.
    snap = snapshot(nodes=(node("w1.example.com"),),
                    ips=(ip("node-w1.example.com", namespace="", pod_name="w1.example.com",
                            node_name="w1.example.com", subnet="join"),
                         ip("node-w2.example.com", namespace="", pod_name="w2.example.com",
                            node_name="w2.example.com", subnet="join")))
    assert leaked_ips(run_plan(snap)) == {"node-w2.example.com": "owner Node w2.example.com not found"}


def test_workloads_named_like_special_addresses_are_judged_as_workloads() -> None:
    fresh = pod("default", "mcast-querier", providers=())  # allocated not written yet
    snap = snapshot(pods=(fresh,), vms=(vm("default", "u2o-interconnection", multus="n1/net"),),
                    ports=(port("mcast-querier.default", pod_key="default/mcast-querier"),
                           port("u2o-interconnection.default.net.n1.ovn", pod_key="default/u2o-interconnection")),
                    ips=(ip("mcast-querier.s9", namespace="", subnet="s9"),))
    p = run_plan(snap)
    assert p.ports == ()
    assert leaked_ips(p) == {"mcast-querier.s9": "owner Subnet s9 not found"}


def test_every_skip_kind_has_one_spelling_whichever_way_it_was_found() -> None:
    """The report keys on ``actions[].kind`` (README: ``ip``/``port``/``subnet-status``): a VM skipped because it
    did not parse and one skipped for its networks annotation must not come out as ``virtualmachine`` and
    ``VirtualMachine``. The reasons keep the Kind spelling."""
    snap = snapshot(
        subnets=(subnet("broken", cidr="10.99.0.0/33"),),
        vms=(vm("prod", "db", multus="[not json"), vm("prod", "db", kind="VirtualMachineInstance", multus="[oops")),
        unparsed=(("IP", "bad.default", "spec.subnet missing"), ("VirtualMachine", "prod/web", "spec is a list"),
                  ("VirtualMachineInstance", "prod/web", "status is a list")),
        ports=(port("odd.default", pod_key="no-slash"),
               dataclasses.replace(port("loose.default", pod_key="default/loose"), switch_uuid="")),
    )
    p = run_plan(snap)
    statuses = plan_statuses(snap.kube, ())
    found = {(s.kind, s.name) for s in (*p.skipped, *statuses.skipped)}
    assert found == {("ip", "bad.default"), ("port", "odd.default"), ("port", "loose.default"),
                     ("subnet-status", "broken"), ("virtualmachine", "prod/db"), ("virtualmachine", "prod/web"),
                     ("virtualmachineinstance", "prod/db"), ("virtualmachineinstance", "prod/web")}, found
    for s in (*p.skipped, *statuses.skipped):
        assert s.kind == s.kind.lower(), s
    # the planner's other outputs: verdict counts and action kinds of the report (README: ip/port/subnet-status)
    assert set(p.kept) <= {"ip", "port"}
