"""The doctor's findings on hand-built snapshots (no I/O): one block per finding kind, and no false positives."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import NOW, OLD, ip, launcher, pod, port, snapshot, sts, sts_ref, subnet, vm
from kube_ovn_gc import doctor, status
from kube_ovn_gc.doctor import (
    DUPLICATE,
    LEAKED_IP,
    LEAKED_PORT,
    MISMATCH,
    MISSING,
    STATUS_DRIFT,
    STUCK,
    UNJUDGED,
    DoctorReport,
    Finding,
    Ref,
)
from kube_ovn_gc.model import IpCR, KubevirtState, Node, Pod, Port, Snapshot, Subnet
from kube_ovn_gc.plan import Policy, plan, plan_statuses
from kube_ovn_gc.report import ExitCode

T = TypeVar("T", Pod, IpCR, Subnet)
POLICY = Policy(now=NOW, min_age=dt.timedelta(minutes=5), keep_vm_ip=True)
HOUR = dt.timedelta(hours=1)


def mac_of(address: str) -> str:
    last = address.rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    return f"00:00:00:00:01:{int(last, 16 if ':' in address else 10) % 256:02x}"


def owned(name: str, owner: str, address: str, *, namespace: str = "default", subnet_name: str = "ovn-default",
          pod_type: str = "", v6: str = "") -> tuple[IpCR, Port]:
    """An IP CR and its port, consistent with each other."""
    mac = mac_of(address)
    the_ip = dataclasses.replace(ip(name, namespace=namespace, pod_name=owner, subnet=subnet_name, v4=address, v6=v6,
                                    pod_type=pod_type), mac=mac)
    addresses = " ".join(a for a in (address, v6) if a)
    pod_key = f"{namespace}/{owner}" if namespace else None
    return the_ip, port(name, pod_key=pod_key, switch=subnet_name, addresses=(f"{mac} {addresses}",))


def node_pair(name: str, address: str) -> tuple[IpCR, Port]:
    the_ip, the_port = owned(f"node-{name}", name, address, namespace="", subnet_name="join")
    return dataclasses.replace(the_ip, node_name=name), the_port


def with_meta(obj: T, **changes: Any) -> T:
    return dataclasses.replace(obj, meta=dataclasses.replace(obj.meta, **changes))


def settled(snap: Snapshot) -> Snapshot:
    """The same snapshot with every Subnet's status as kube-ovn would have written it."""
    computed = status.compute_statuses(snap.kube, ())
    subnets = []
    for s in snap.kube.subnets:
        result = computed[s.meta.name]
        assert not isinstance(result, str)
        subnets.append(dataclasses.replace(s, status=tuple((k, str(v)) for k, v in result.as_fields().items())))
    return dataclasses.replace(snap, kube=dataclasses.replace(snap.kube, subnets=tuple(subnets)))


def examine(snap: Snapshot, policy: Policy = POLICY, stuck_after: dt.timedelta = HOUR) -> tuple[Finding, ...]:
    return doctor.examine(snap, policy, stuck_after)


def kinds(findings: tuple[Finding, ...]) -> Counter[str]:
    return Counter(f.kind for f in findings)


def only(findings: tuple[Finding, ...], kind: str) -> Finding:
    matching = [f for f in findings if f.kind == kind]
    assert len(matching) == 1, findings
    return matching[0]


def world(*pairs: tuple[IpCR, Port], **kube: Any) -> Snapshot:
    return snapshot(ips=tuple(i for i, _ in pairs), ports=tuple(p for _, p in pairs), **kube)


# --- a consistent cluster yields nothing ------------------------------------------------------


def consistent() -> Snapshot:
    web = owned("web.default", "web", "10.16.0.2")
    multi = [owned("multi.default", "multi", "10.16.0.3"),
             owned("multi.default.net1.default.ovn", "multi", "10.17.0.3", subnet_name="net1")]
    ipam_only = ip("multi.default.mac1.default", pod_name="multi", subnet="mac1", v4="192.168.9.3")  # no LSP
    running = owned("vm-running.default", "vm-running", "10.16.0.4", pod_type="VirtualMachine")
    stopped = owned("vm-stopped.default", "vm-stopped", "10.16.0.5", pod_type="VirtualMachine")
    node1 = node_pair("node1", "100.64.0.2")
    young = with_meta(pod("default", "starting"), creation=NOW - dt.timedelta(seconds=30))
    dying = with_meta(pod("default", "dying"), deletion=NOW - dt.timedelta(seconds=5))
    pairs = (web, *multi, running, stopped, node1)
    return settled(snapshot(
        ips=(*(i for i, _ in pairs), ipam_only),
        ports=tuple(p for _, p in pairs),
        pods=(pod("default", "web"),
              pod("default", "multi", providers=("ovn", "net1.default.ovn", "mac1.default")),
              launcher("default", "vm-running"),
              pod("default", "pending", phase="Pending", providers=()),  # not allocated yet: expects nothing
              pod("kube-system", "agent", host_network=True),
              pod("default", "job", phase="Succeeded", restart="Never"),
              young, dying),
        vms=(vm("default", "vm-running"), vm("default", "vm-running", kind="VirtualMachineInstance"),
             vm("default", "vm-stopped"),
             vm("default", "vm-new"),  # never started: neither IP CR nor port
             vm("default", "vm-multus", spec_networks=(("default/net2", True),))),
        nodes=(Node("node1", allocated=True), Node("node2")),  # node2 not allocated yet
        subnets=(subnet(), subnet("join", "100.64.0.0/16", gateway="100.64.0.1", exclude=("100.64.0.1",)),
                 subnet("net1", "10.17.0.0/16", gateway="10.17.0.1", exclude=("10.17.0.1",),
                        provider="net1.default.ovn"),
                 subnet("mac1", "192.168.9.0/24", gateway="192.168.9.1", exclude=("192.168.9.1",),
                        provider="mac1.default")),
    ))


def test_a_consistent_cluster_yields_nothing() -> None:
    snap = consistent()
    assert plan(snap, POLICY).empty
    assert examine(snap) == ()
    assert doctor.cross_check(snap, POLICY) == ()


# --- from the planner: leaks, drift, unjudged --------------------------------------------------


def test_leaks_drift_and_unjudged_are_the_planners_verdicts() -> None:
    gone_ip, gone_port = owned("gone.default", "gone", "10.16.0.7")
    _, old_port = owned("old.default", "old", "10.16.0.8")
    snap = snapshot(ips=(gone_ip,), ports=(gone_port, old_port),
                    subnets=(subnet(status={"v4usingIPs": "9", "v4availableIPs": "65524"}),),
                    unparsed=(("IP", "bad.default", "spec.subnet is missing"),))
    findings = examine(snap)
    the_plan = plan(snap, POLICY)
    assert kinds(findings) == {LEAKED_IP: 1, LEAKED_PORT: 1, STATUS_DRIFT: 1, UNJUDGED: 1}

    leaked_ip = only(findings, LEAKED_IP)
    assert leaked_ip.objects == (Ref("IP", "gone.default"), Ref("LSP", "gone.default"))
    assert the_plan.ips[0].reason in leaked_ip.message
    assert leaked_ip.remedy == "kube-ovn-gc run, or: kubectl delete ip gone.default"
    leaked_port = only(findings, LEAKED_PORT)
    assert the_plan.ports[0].reason in leaked_port.message
    assert leaked_port.remedy == "kube-ovn-gc run, or: kubectl ko nbctl lsp-del old.default"
    drift = only(findings, STATUS_DRIFT)
    assert drift.objects == (Ref("Subnet", "ovn-default"),)
    assert "v4usingIPs '9'→0" in drift.message and drift.remedy == "kube-ovn-gc run"  # leaks first
    unjudged = only(findings, UNJUDGED)
    assert unjudged.objects == (Ref("IP", "bad.default"),) and "spec.subnet is missing" in unjudged.message


def test_an_unjudged_vm_is_a_virtualmachine_however_it_was_found() -> None:
    """Unparsable (kube.unparsed) or with an unreadable networks annotation: one Ref kind, one remedy shape."""
    snap = snapshot(vms=(vm("prod", "db", multus="[not json"),),
                    unparsed=(("VirtualMachine", "prod/web", "spec is a list"),))
    unjudged = [f for f in examine(snap) if f.kind == UNJUDGED]
    assert sorted(f.objects for f in unjudged) == [(Ref("VirtualMachine", "db", "prod"),),
                                                   (Ref("VirtualMachine", "web", "prod"),)]
    assert sorted(f.remedy.split("  #")[0] for f in unjudged) == [
        "kubectl get virtualmachine db -n prod -o yaml", "kubectl get virtualmachine web -n prod -o yaml"]


def test_pure_drift_comes_with_the_exact_status_patch() -> None:
    the_ip, the_port = owned("web.default", "web", "10.16.0.2")
    snap = settled(world((the_ip, the_port), pods=(pod("default", "web"),), subnets=(subnet(),)))
    stale = dataclasses.replace(snap.kube.subnets[0], status=tuple(
        (k, "3" if k == "v4usingIPs" else v) for k, v in snap.kube.subnets[0].status))
    drift = only(examine(dataclasses.replace(snap, kube=dataclasses.replace(snap.kube, subnets=(stale,)))),
                 STATUS_DRIFT)
    assert drift.remedy == ("kube-ovn-gc run, or: kubectl patch subnet ovn-default --subresource=status "
                            "--type=merge -p '{\"status\":{\"v4usingIPs\":1}}'")


# --- missing ----------------------------------------------------------------------------------


def test_allocated_pod_without_port_or_ip_cr_is_missing_them() -> None:
    the_ip, _ = owned("lost.default", "lost", "10.16.0.2")
    snap = snapshot(ips=(the_ip,), pods=(pod("default", "lost", owners=()), pod("default", "bare")))
    findings = examine(snap)
    assert kinds(findings) == {MISSING: 2}
    lost, bare = sorted((f for f in findings), key=lambda f: f.objects[0].name, reverse=True)
    assert lost.objects == (Ref("Pod", "lost", "default"), Ref("LSP", "lost.default", missing=True))
    assert lost.message == ("Pod default/lost is allocated on the default network but its port lost.default "
                            "does not exist")
    assert lost.remedy.startswith("kubectl delete pod -n default lost  #")
    assert bare.objects == (Ref("Pod", "bare", "default"), Ref("IP", "bare.default", missing=True),
                            Ref("LSP", "bare.default", missing=True))
    assert "IP CR and port bare.default" in bare.message


def test_attachments_ipam_only_providers_have_no_port() -> None:
    snap = snapshot(ips=(ip("p.default.net1.default.ovn", pod_name="p", v4="10.17.0.2"),
                         ip("p.default.mac1.default", pod_name="p", v4="192.168.0.2")),
                    pods=(pod("default", "p", providers=("net1.default.ovn", "mac1.default")),))
    finding = only(examine(snap), MISSING)
    assert finding.objects[1:] == (Ref("LSP", "p.default.net1.default.ovn", missing=True),)
    assert "allocated on net1.default.ovn" in finding.message


@pytest.mark.parametrize("keep_vm_ip", [True, False])
def test_a_launcher_pods_addresses_are_named_after_the_vm_with_keep_vm_ip(keep_vm_ip: bool) -> None:
    pod_name = "virt-launcher-vm1-abcde"
    name = "vm1.default" if keep_vm_ip else f"{pod_name}.default"
    the_ip, _ = owned(name, "vm1" if keep_vm_ip else pod_name, "10.16.0.4", pod_type="VirtualMachine")
    snap = snapshot(ips=(the_ip,), pods=(launcher("default", "vm1", pod_name),),
                    vms=(vm("default", "vm1"), vm("default", "vm1", kind="VirtualMachineInstance")))
    finding = only(examine(snap, dataclasses.replace(POLICY, keep_vm_ip=keep_vm_ip)), MISSING)
    assert finding.objects == (Ref("Pod", pod_name, "default"), Ref("LSP", name, missing=True))
    assert finding.remedy.startswith("virtctl restart vm1 -n default")


def test_vm_with_only_half_of_its_addresses_is_missing_the_other_half() -> None:
    ip_only, _ = owned("stopped.default", "stopped", "10.16.0.5", pod_type="VirtualMachine")
    _, port_only = owned("running.default", "running", "10.16.0.6", pod_type="VirtualMachine")
    snap = snapshot(ips=(ip_only,), ports=(port_only,),
                    vms=(vm("default", "stopped"), vm("default", "running"),
                         vm("default", "running", kind="VirtualMachineInstance"),
                         vm("default", "never-started")))
    findings = examine(snap)
    assert kinds(findings) == {MISSING: 2}
    by_vm = {f.objects[0].name: f for f in findings}
    assert by_vm["stopped"].objects[1:] == (Ref("LSP", "stopped.default", missing=True),)
    assert by_vm["stopped"].remedy.startswith("virtctl start stopped -n default")
    assert "(stopped)" in by_vm["stopped"].message
    assert by_vm["running"].objects[1:] == (Ref("IP", "running.default", missing=True),)
    assert by_vm["running"].remedy.startswith("virtctl restart running -n default")


def test_vm_checks_need_keep_vm_ip_and_a_readable_kubevirt() -> None:
    ip_only, _ = owned("stopped.default", "stopped", "10.16.0.5", pod_type="VirtualMachine")
    snap = snapshot(ips=(ip_only,), vms=(vm("default", "stopped"),))
    assert kinds(examine(snap)) == {MISSING: 1}
    assert kinds(examine(snap, dataclasses.replace(POLICY, keep_vm_ip=False))) == {LEAKED_IP: 1}
    unreadable = dataclasses.replace(snap, kube=dataclasses.replace(snap.kube, kubevirt=KubevirtState.UNREADABLE))
    assert examine(unreadable) == ()


def test_allocated_node_without_port_is_missing_it() -> None:
    the_ip, _ = node_pair("node1", "100.64.0.2")
    snap = snapshot(ips=(the_ip,), nodes=(Node("node1", allocated=True), Node("node2")))
    finding = only(examine(snap), MISSING)
    assert finding.objects == (Ref("Node", "node1"), Ref("LSP", "node-node1", missing=True))
    assert finding.remedy.startswith("kubectl -n kube-system rollout restart deployment/kube-ovn-controller")


def test_an_unparsable_ip_cr_still_exists() -> None:
    _, the_port = owned("web.default", "web", "10.16.0.2")
    snap = snapshot(ports=(the_port,), pods=(pod("default", "web"),),
                    unparsed=(("IP", "web.default", "bad address"),))
    assert kinds(examine(snap)) == {UNJUDGED: 1}


# --- mismatch ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "pod_key", "switch", "expected"),
    [
        (("{mac} 10.16.0.20",), "default/web", "ovn-default", "address 10.16.0.2 (IP CR) vs 10.16.0.20 (port)"),
        (("00:00:00:00:ff:ff 10.16.0.2",), "default/web", "ovn-default",
         "MAC {mac} (IP CR) vs 00:00:00:00:ff:ff (port)"),
        (("{mac} 10.16.0.2",), "default/web", "other", "switch other (port) vs spec.subnet ovn-default (IP CR)"),
        (("{mac} 10.16.0.2",), "default/api", "ovn-default", "pod default/api (port external id) vs default/web"),
    ],
    ids=["address", "mac", "switch", "pod"],
)
def test_ip_cr_and_port_disagree(addresses: tuple[str, ...], pod_key: str, switch: str, expected: str) -> None:
    the_ip, _ = owned("web.default", "web", "10.16.0.2")
    mac = the_ip.mac
    the_port = port("web.default", pod_key=pod_key, switch=switch,
                    addresses=tuple(a.format(mac=mac) for a in addresses))
    finding = only(examine(world((the_ip, the_port), pods=(pod("default", "web"),))), MISMATCH)
    assert finding.objects == (Ref("IP", "web.default"), Ref("LSP", "web.default"))
    assert expected.format(mac=mac) in finding.message
    assert finding.remedy.startswith("kubectl delete pod -n default web  #")


@pytest.mark.parametrize("addresses", [("dynamic",), ("unknown",), ("{mac} dynamic",), ("router",), ()])
def test_dynamic_or_unknown_addresses_are_not_compared(addresses: tuple[str, ...]) -> None:
    the_ip, _ = owned("web.default", "web", "10.16.0.2")
    the_port = port("web.default", pod_key="default/web", addresses=tuple(a.format(mac=the_ip.mac) for a in addresses))
    assert examine(world((the_ip, the_port), pods=(pod("default", "web"),))) == ()


def test_dual_stack_and_ipv6_spellings_compare_as_addresses() -> None:
    the_ip, _ = owned("web.default", "web", "10.16.0.2", v6="fd00:10:16::0a")
    the_port = port("web.default", pod_key="default/web", addresses=(f"{the_ip.mac.upper()} fd00:10:16::a 10.16.0.2",))
    assert examine(world((the_ip, the_port), pods=(pod("default", "web"),))) == ()


def test_mismatch_of_a_leaked_pair_is_fixed_by_the_gc() -> None:
    the_ip, _ = owned("gone.default", "gone", "10.16.0.2")
    the_port = port("gone.default", pod_key="default/gone", addresses=(f"{the_ip.mac} 10.16.0.9",))
    findings = examine(world((the_ip, the_port)))
    assert kinds(findings) == {LEAKED_IP: 1, MISMATCH: 1}
    assert only(findings, MISMATCH).remedy == "kube-ovn-gc run"


# --- duplicate addresses ------------------------------------------------------------------------


def test_two_ip_crs_and_their_ports_holding_one_address_are_one_finding() -> None:
    first = owned("web.default", "web", "10.16.0.2")
    second_ip, second_port = owned("api.default", "api", "10.16.0.2")
    second = (with_meta(second_ip, creation=OLD + dt.timedelta(minutes=10)), second_port)
    snap = world(first, second, pods=(pod("default", "web"), pod("default", "api")))
    finding = only(examine(snap), DUPLICATE)
    assert finding.objects == (Ref("IP", "api.default"), Ref("IP", "web.default"),
                               Ref("LSP", "api.default"), Ref("LSP", "web.default"))
    assert finding.message == ("address 10.16.0.2 in subnet ovn-default is held by 2 IP CRs (and their ports): "
                               "api.default, web.default")
    assert finding.remedy.startswith("kubectl delete pod -n default api  # the newest holder, api.default")


def test_the_same_address_in_two_subnets_or_while_terminating_is_no_duplicate() -> None:
    a = owned("a.default", "a", "10.16.0.2")
    b = owned("b.default", "b", "10.16.0.2", subnet_name="vpc2-subnet")
    c_ip, c_port = owned("c.default", "c", "10.16.0.2")
    c = (with_meta(c_ip, deletion=NOW - dt.timedelta(minutes=1)), c_port)
    pods = tuple(pod("default", n) for n in "abc")
    findings = examine(world(a, b, c, pods=pods))
    # a and c's port still share the address on ovn-default: that is a port duplicate, not an IP CR one
    assert kinds(findings) == {DUPLICATE: 1}
    assert only(findings, DUPLICATE).objects == (Ref("LSP", "a.default"), Ref("LSP", "c.default"))


def test_a_dual_stack_pair_is_one_finding_and_a_leaked_holder_goes_with_the_gc() -> None:
    live = owned("web.default", "web", "10.16.0.2", v6="fd00::2")
    leaked = owned("gone.default", "gone", "10.16.0.2", v6="fd00::2")
    findings = examine(world(live, leaked, pods=(pod("default", "web"),)))
    finding = only(findings, DUPLICATE)
    assert "address 10.16.0.2,fd00::2 in subnet ovn-default" in finding.message
    assert finding.remedy == "kube-ovn-gc run  # removes the leaked gone.default"


def test_two_ports_without_ip_crs_holding_one_address() -> None:
    _, a = owned("a.default", "a", "10.16.0.2")
    _, b = owned("b.default", "b", "10.16.0.2")
    finding = only(examine(snapshot(ports=(a, b), pods=(pod("default", "a"), pod("default", "b")))), DUPLICATE)
    assert finding.message == "address 10.16.0.2 on switch ovn-default is held by 2 ports: a.default, b.default"
    assert finding.remedy.startswith("kubectl delete pod -n default a  #")


# --- stuck ------------------------------------------------------------------------------------


def test_ip_crs_terminating_longer_than_the_threshold_are_stuck() -> None:
    live_ip, live_port = owned("web.default", "web", "10.16.0.2")
    gone_ip = ip("gone.default", pod_name="gone", v4="10.16.0.3", deleted=NOW - 2 * HOUR)
    recent = ip("recent.default", pod_name="recent", v4="10.16.0.4", deleted=NOW - dt.timedelta(minutes=10))
    snap = snapshot(ips=(with_meta(live_ip, deletion=NOW - 3 * HOUR), gone_ip, recent),
                    ports=(live_port,), pods=(pod("default", "web"),))
    findings = examine(snap)
    assert kinds(findings) == {STUCK: 2}
    by_name = {f.objects[0].name: f for f in findings}
    assert by_name["gone.default"].message.startswith("IP CR gone.default has been terminating for 2h00m")
    assert by_name["gone.default"].remedy.startswith("kube-ovn-gc run --release-stuck-after 1h")
    assert by_name["web.default"].objects == (Ref("IP", "web.default"), Ref("LSP", "web.default"))
    assert by_name["web.default"].remedy.startswith("kubectl -n kube-system rollout restart")
    assert kinds(examine(snap, stuck_after=4 * HOUR)) == {}


def test_a_terminating_subnet_held_up_by_addresses_is_stuck() -> None:
    live = owned("web.legacy", "web", "10.20.0.2", namespace="legacy", subnet_name="legacy")
    leaked = owned("gone.legacy", "gone", "10.20.0.3", namespace="legacy", subnet_name="legacy")
    legacy = subnet("legacy", "10.20.0.0/24", gateway="10.20.0.1", exclude=("10.20.0.1",))
    snap = settled(world(live, leaked, pods=(pod("legacy", "web"),), subnets=(legacy,)))
    snap = dataclasses.replace(snap, kube=dataclasses.replace(snap.kube, subnets=(
        with_meta(snap.kube.subnets[0], deletion=NOW - 2 * HOUR),)))
    finding = only(examine(snap), STUCK)
    assert finding.objects == (Ref("Subnet", "legacy"), Ref("IP", "gone.legacy"), Ref("IP", "web.legacy"))
    assert finding.message == ("Subnet legacy has been terminating for 2h00m; its deletion waits for usingIPs 2 "
                               "to reach 0: still used by IP gone.legacy, IP web.legacy")
    assert finding.remedy == ("kube-ovn-gc run; then move or delete what still uses it: "
                              "kubectl delete pod -n legacy web")
    assert STUCK not in kinds(examine(snap, stuck_after=3 * HOUR))


def test_a_terminating_subnet_held_up_by_a_stale_count_only() -> None:
    legacy = with_meta(subnet("legacy", "10.20.0.0/24", gateway="10.20.0.1", exclude=("10.20.0.1",),
                              status={"v4usingIPs": "2.0"}), deletion=NOW - 2 * HOUR)
    findings = examine(snapshot(subnets=(legacy,)))
    finding = only(findings, STUCK)
    assert finding.message.endswith("waits for usingIPs 2 to reach 0, but nothing uses it any more")
    assert "\"v4usingIPs\":0" in finding.remedy
    assert STATUS_DRIFT in kinds(findings)
    idle = with_meta(subnet("idle", "10.21.0.0/24", gateway="10.21.0.1", exclude=("10.21.0.1",),
                            status={"v4usingIPs": "0"}), deletion=NOW - 2 * HOUR)
    assert STUCK not in kinds(examine(snapshot(subnets=(idle,))))


# --- the second read, the report ------------------------------------------------------------------


def test_confirm_keeps_only_cross_findings_a_second_read_shows() -> None:
    missing = Finding(MISSING, (Ref("Pod", "web", "default"), Ref("LSP", "web.default", missing=True)), "m", "r")
    mismatch = Finding(MISMATCH, (Ref("IP", "a"), Ref("LSP", "a")), "m", "r")
    leaked = Finding(LEAKED_IP, (Ref("IP", "gone"),), "m", "r")
    again = Finding(MISMATCH, (Ref("IP", "a"), Ref("LSP", "a")), "other words", "other remedy")
    assert doctor.confirm((missing, mismatch, leaked), (again,)) == (mismatch, leaked)
    assert doctor.needs_second_read((leaked,)) is False
    assert doctor.needs_second_read((leaked, missing)) is True


def test_cross_check_sees_the_port_written_after_the_first_nb_read() -> None:
    the_ip, the_port = owned("web.default", "web", "10.16.0.2")
    first = snapshot(ips=(the_ip,), pods=(pod("default", "web"),))
    second = snapshot(ips=(the_ip,), ports=(the_port,), pods=(pod("default", "web"),))
    findings = examine(first)
    assert kinds(findings) == {MISSING: 1}
    assert doctor.confirm(findings, doctor.cross_check(second, POLICY)) == ()


def report(findings: tuple[Finding, ...], code: ExitCode = ExitCode.FOUND) -> DoctorReport:
    return DoctorReport(int(code), NOW, 0.25, {"logical_switch_ports": 3, "ips": 2, "pods": 1}, findings)


def test_text_report_groups_by_kind_with_counts() -> None:
    snap = snapshot(ips=(ip("gone.default", pod_name="gone", v4="10.16.0.3"),),
                    pods=(pod("default", "web"), pod("default", "api")))
    text = report(examine(snap)).to_text()
    lines = text.splitlines()
    assert lines[0] == "leaked-ip (1)"
    assert lines[1].startswith("  IP CR gone.default (ovn-default 10.16.0.3): owner Pod default/gone not found")
    assert lines[2] == "    fix: kube-ovn-gc run, or: kubectl delete ip gone.default"
    assert lines[3] == "missing (2)"
    assert lines[-1].startswith("3 findings: 1 leaked-ip, 2 missing (read 3 ports, 2 IPs, 1 pods")
    assert lines[-1].endswith("in 0.2s → exit 1")
    assert report((), ExitCode.OK).to_text().startswith("consistent: nothing found (read 3 ports")


def test_json_report_lists_findings_with_kind_objects_message_remedy() -> None:
    snap = snapshot(ips=(ip("gone.default", pod_name="gone", v4="10.16.0.3"),), pods=(pod("default", "web"),))
    doc = json.loads(report(examine(snap)).to_json())
    assert doc["exit_code"] == 1 and doc["inventory"]["ips"] == 2
    assert doc["counts"] == {"leaked-ip": 1, "missing": 1}
    assert doc["findings"][1] == {
        "kind": "missing",
        "objects": [{"kind": "Pod", "name": "web", "namespace": "default"},
                    {"kind": "IP", "name": "web.default", "missing": True},
                    {"kind": "LSP", "name": "web.default", "missing": True}],
        "message": "Pod default/web is allocated on the default network but its IP CR and port web.default "
                   "do not exist",
        "remedy": "kubectl delete pod -n default web  # then re-create it (no controller owns it)",
    }


@pytest.mark.parametrize(("findings", "complete", "code"), [
    ((), True, ExitCode.OK),
    ((Finding(STUCK, (), "m", "r"),), True, ExitCode.FOUND),
    ((), False, ExitCode.INCOMPLETE),
])
def test_exit_codes(findings: tuple[Finding, ...], complete: bool, code: ExitCode) -> None:
    assert doctor.outcome(findings, complete) is code


def test_port_entries_parse_what_ovn_accepts() -> None:
    p = port("x", addresses=("0A:00:00:00:00:01 10.0.0.1 fd00::1", "unknown", "router", "0a:00:00:00:00:02 dynamic",
                             "0a:00:00:00:00:03 not-an-ip", "0a:00:00:00:00:04"))
    entries = doctor.port_entries(p)
    assert entries == [("0a:00:00:00:00:01", frozenset({status.parse_address("10.0.0.1"),
                                                        status.parse_address("fd00::1")})),
                       ("0a:00:00:00:00:04", frozenset())]


def test_refs_read_well() -> None:
    assert str(Ref("Pod", "web", "default")) == "Pod default/web"
    assert str(Ref("LSP", "web.default", missing=True)) == "LSP web.default (missing)"
    assert Ref("IP", "x").as_json() == {"kind": "IP", "name": "x"}


def test_owners_that_keep_their_address_release_their_ip_cr_first() -> None:
    db = sts("default", "db", 2, uid="sts-uid")
    web = owned("web.default", "web", "10.16.0.2")
    db_ip, db_port = owned("db-1.default", "db-1", "10.16.0.2", pod_type="StatefulSet")
    snap = world(web, (with_meta(db_ip, creation=OLD + HOUR), db_port),
                 pods=(pod("default", "web"), pod("default", "db-1", owners=(sts_ref("db", "sts-uid"),))),
                 statefulsets=(db,))
    assert only(examine(snap), DUPLICATE).remedy.startswith(
        "kubectl delete ip db-1.default && kubectl delete pod -n default db-1  #")

    vm_ip, _ = owned("vm1.default", "vm1", "10.16.0.4", pod_type="VirtualMachine")
    vm_port = port("vm1.default", pod_key="default/vm1", addresses=(f"{vm_ip.mac} 10.16.0.40",))
    snap = world((vm_ip, vm_port), pods=(launcher("default", "vm1"),),
                 vms=(vm("default", "vm1"), vm("default", "vm1", kind="VirtualMachineInstance")))
    assert only(examine(snap), MISMATCH).remedy.startswith(
        "kubectl delete ip vm1.default && virtctl restart vm1 -n default  #")


# --- what Kube-OVN writes, shape by shape (issue 10) ----------------------------------------------


def subnet_owned(name: str, sub: str, address: str) -> tuple[IpCR, Port]:
    """A querier or U2O address as v1.13.0-v1.15.0 write it: namespace default, podName = its own name."""
    the_ip, the_port = owned(name, name, address, subnet_name=sub)
    return dataclasses.replace(the_ip, node_name=""), the_port


def test_subnet_owned_addresses_in_namespace_default_are_neither_leaked_nor_missing() -> None:
    querier = subnet_owned("mcast-querier.s1", "s1", "10.18.0.2")
    u2o_ip, _ = subnet_owned("u2o-interconnection.ovn-cluster.s1", "s1", "10.18.0.3")  # no LSP
    snap = settled(snapshot(ips=(querier[0], u2o_ip), ports=(querier[1],),
                            subnets=(subnet("s1", "10.18.0.0/24", gateway="10.18.0.1", exclude=("10.18.0.1",)),)))
    assert examine(snap) == ()


@pytest.mark.parametrize("node_name", ["w1", "w1.example.com"])
def test_a_node_address_mismatch_restarts_the_controller_whatever_the_node_name(node_name: str) -> None:
    the_ip, _ = node_pair(node_name, "100.64.0.2")
    the_port = port(f"node-{node_name}", switch="join", addresses=(f"{the_ip.mac} 100.64.0.9",))
    finding = only(examine(world((the_ip, the_port), nodes=(Node(node_name, allocated=True),))), MISMATCH)
    assert finding.remedy.startswith(doctor.RESTART_CONTROLLER), finding.remedy
    assert "kubectl delete ip" not in finding.remedy


def test_a_querier_address_mismatch_is_fixed_through_its_subnet_not_by_deleting_its_ip_cr() -> None:
    the_ip, _ = subnet_owned("mcast-querier.s1", "s1", "10.18.0.2")
    the_port = port("mcast-querier.s1", pod_key="default/mcast-querier.s1", switch="s1",
                    addresses=(f"{the_ip.mac} 10.18.0.9",))
    s1 = dataclasses.replace(subnet("s1", "10.18.0.0/24"), multicast_snoop=True)
    finding = only(examine(world((the_ip, the_port), subnets=(s1,))), MISMATCH)
    off, wait, on = finding.remedy.split("  # ")[0].split(" && ")
    assert off == "kubectl patch subnet s1 --type=merge -p '{\"spec\":{\"enableMulticastSnoop\":false}}'"
    assert wait == "kubectl wait --for=delete ip/mcast-querier.s1 --timeout=2m"  # released: then switch it on
    assert on == "kubectl patch subnet s1 --type=merge -p '{\"spec\":{\"enableMulticastSnoop\":true}}'"
    assert "kubectl delete ip" not in finding.remedy


def test_a_u2o_address_the_subnet_wants_is_renewed_by_switching_u2o_off_and_on() -> None:
    name = "u2o-interconnection.ovn-cluster.s1"
    u2o, _ = subnet_owned(name, "s1", "10.18.0.3")  # the newest holder of 10.18.0.3: it gets a fresh one
    older = ip("web.default", pod_name="web", subnet="s1", v4="10.18.0.3", created=OLD - HOUR)
    s1 = dataclasses.replace(subnet("s1", "10.18.0.0/24"), u2o_interconnection=True)
    snap = settled(snapshot(ips=(u2o, older), pods=(pod("default", "web"),), subnets=(s1,)))
    dup = only(examine(snap), DUPLICATE)
    assert dup.remedy.startswith("kubectl patch subnet s1 --type=merge -p '{\"spec\":{\"u2oInterconnection\":"
                                 f"false}}}}' && kubectl wait --for=delete ip/{name} --timeout=2m && "), dup.remedy


@pytest.mark.parametrize("name", ["mcast-querier.s1", "u2o-interconnection.ovn-cluster.s1"])
def test_an_address_its_subnet_no_longer_enables_is_deleted_not_toggled(name: str) -> None:
    """Switched off, kube-ovn releases only while the status names the address: a leftover stays for good, and
    switching the feature on and off again would change the user's Subnet."""
    the_ip, _ = subnet_owned(name, "s1", "10.18.0.2")
    the_port = port(name, pod_key=f"default/{name}", switch="s1", addresses=(f"{the_ip.mac} 10.18.0.9",))
    finding = only(examine(world((the_ip, the_port), subnets=(subnet("s1", "10.18.0.0/24"),))), MISMATCH)
    assert finding.remedy.split("  # ")[0] == f"kubectl delete ip {name} && kubectl ko nbctl --if-exists lsp-del {name}"
    assert "kubectl patch" not in finding.remedy


def test_a_cidr_less_underlay_subnet_is_not_judged() -> None:
    # Kube-OVN computes no status for it (calcSubnetStatusIP stops at ParseCIDR / CheckCidrs of "").
    vlan_subnet = subnet("underlay", cidr="", gateway="", exclude=(), status={})
    snap = snapshot(subnets=(vlan_subnet,))
    assert examine(snap) == ()
    assert plan_statuses(snap.kube, ()).skipped == ()


def attached(p: Pod, *switches: str) -> Pod:
    """``p`` with each network's ``logical_switch`` annotation set, in order."""
    return dataclasses.replace(p, networks=tuple(dataclasses.replace(n, logical_switch=s)
                                                 for n, s in zip(p.networks, switches, strict=True)))


@pytest.mark.parametrize("annotated", [False, True], ids=["provider", "logical_switch"])
def test_an_ipam_only_nad_in_a_namespace_called_ovn_has_no_port(annotated: bool) -> None:
    the_pod = pod("ovn", "p", providers=("mv1.ovn",))
    snap = snapshot(ips=(ip("p.ovn.mv1.ovn", namespace="ovn", pod_name="p", subnet="mv", v4="192.168.9.2"),),
                    pods=(attached(the_pod, "mv") if annotated else the_pod,),
                    subnets=(subnet("mv", "192.168.9.0/24", gateway="192.168.9.1", exclude=("192.168.9.1",),
                                    provider="mv1.ovn"),))
    assert [f for f in examine(snap) if f.kind == MISSING] == []


@pytest.mark.parametrize("annotated", [False, True], ids=["provider", "logical_switch"])
def test_a_nad_attached_twice_has_a_port_per_interface(annotated: bool) -> None:
    # v1.16.0 getPodKubeovnNets: provider <nad>.<ns>.ovn.<ifname> when one NAD is attached twice.
    providers = ("n1.default.ovn.net1", "n1.default.ovn.net2")
    first, _ = owned("p.default.n1.default.ovn.net1", "p", "10.17.0.2", subnet_name="n1")
    second, _ = owned("p.default.n1.default.ovn.net2", "p", "10.17.0.3", subnet_name="n1")
    the_pod = pod("default", "p", providers=providers)
    snap = snapshot(ips=(first, second), ports=(owned("p.default.n1.default.ovn.net1", "p", "10.17.0.2",
                                                      subnet_name="n1")[1],),
                    pods=(attached(the_pod, "n1", "n1") if annotated else the_pod,),
                    subnets=(subnet("n1", "10.17.0.0/16", gateway="10.17.0.1", exclude=("10.17.0.1",),
                                    provider="n1.default.ovn"),))
    finding = only(examine(snap), MISSING)
    assert finding.objects == (Ref("Pod", "p", "default"), Ref("LSP", "p.default.n1.default.ovn.net2", missing=True))


# --- the duplicate index holds each address once ------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3"]),
                          st.frozensets(st.tuples(st.sampled_from([4, 6]), st.integers(0, 6)), max_size=3)),
                max_size=25))
def test_held_twice_is_the_full_index_of_holders_less_the_addresses_held_once(
        held: list[tuple[str, frozenset[tuple[int, int]]]]) -> None:
    holders = [(where, addresses, object()) for where, addresses in held]  # the same address may recur anywhere
    every: dict[tuple[str, tuple[int, int]], list[object]] = {}
    for where, addresses, holder in holders:
        for addr in addresses:
            every.setdefault((where, addr), []).append(holder)
    expected = [(key, list(hs)) for key, hs in every.items() if len(hs) > 1]
    assert list(doctor._held_twice(lambda: iter(holders)).items()) == expected  # same holders, same order
