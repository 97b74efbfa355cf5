"""Decide, without I/O: which IP CRs and ports have no live owner (DESIGN.md §4).

GC is a set difference over snapshots: build the owner index once, then judge
every candidate against it and attach a reason to each verdict. The clock is
passed in. Nothing here imports a client library (an import-linter contract
keeps it so).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import names, status
from .model import (
    IpCR,
    KubeSnapshot,
    KubevirtState,
    Node,
    OwnerKey,
    Pod,
    Port,
    PortName,
    Snapshot,
    StatefulSet,
    Subnet,
    VirtualMachine,
    owner_key,
)

KUBE_OVN_VENDOR = "kube-ovn"
VM_POD_TYPE = "VirtualMachine"
STS_POD_TYPE = "StatefulSet"


@dataclass(frozen=True)
class Policy:
    now: dt.datetime
    min_age: dt.timedelta = dt.timedelta(minutes=5)
    keep_vm_ip: bool = True


@dataclass(frozen=True, slots=True)
class IpAction:
    ip: IpCR
    reason: str


@dataclass(frozen=True, slots=True)
class PortAction:
    port: Port
    reason: str


@dataclass(frozen=True, slots=True)
class StatusAction:
    subnet: Subnet
    before: dict[str, object]
    after: dict[str, int | str]
    changed: tuple[str, ...]
    reason: str


SKIP_IP, SKIP_PORT, SKIP_SUBNET_STATUS = "ip", "port", "subnet-status"


def skip_kind(kind: str) -> str:
    """The one spelling of a skipped object's kind, as the report's ``actions[].kind`` carries it (README:
    ``ip``/``port``/``subnet-status``): a Kubernetes Kind in lower case (``IP`` → ``ip``, ``VirtualMachine`` →
    ``virtualmachine``, the name ``kubectl get`` takes). Reasons keep the Kind spelling (``owner
    VirtualMachine default/vm1 exists``): they are prose, not keys."""
    return kind.lower()


@dataclass(frozen=True, slots=True)
class Skip:
    """An object the job will not judge (unparsable, ambiguous): kept and reported.

    ``kind`` is :func:`skip_kind`'s spelling: ``ip``, ``port``, ``subnet-status``, ``virtualmachine``,
    ``virtualmachineinstance``.
    """

    kind: str
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    ips: tuple[IpAction, ...] = ()
    ports: tuple[PortAction, ...] = ()
    skipped: tuple[Skip, ...] = ()
    kept: dict[str, int] = field(default_factory=dict)  # verdict counts by kind, for the report

    @property
    def empty(self) -> bool:
        return not self.ips and not self.ports


@dataclass(frozen=True, slots=True)
class Verdict:
    alive: bool
    reason: str  # why kept, or why leaked


KEEP = Verdict(True, "owned")


# --- liveness ---------------------------------------------------------------


def pod_liveness(pod: Pod, now: dt.datetime) -> Verdict:
    """Kube-OVN's ``isPodAlive``; host-network pods own no addresses."""
    what = f"Pod {pod.meta.key}"
    if pod.host_network:
        return Verdict(False, f"owner {what} uses the host network and owns no address")
    deletion, grace = pod.meta.deletion, pod.grace_period
    if deletion is not None and grace is not None and now > deletion + dt.timedelta(seconds=grace):
        return Verdict(False, f"owner {what} is past its deletion grace period")
    if pod.phase == "Succeeded" and pod.restart_policy != "Always":
        return Verdict(False, f"owner {what} has Succeeded (restartPolicy {pod.restart_policy or 'unset'})")
    if pod.phase == "Failed" and pod.restart_policy == "Never":
        return Verdict(False, f"owner {what} has Failed (restartPolicy Never)")
    if pod.phase == "Failed" and pod.reason == "Evicted":
        return Verdict(False, f"owner {what} was Evicted")
    return Verdict(True, alive_reason(pod))


def _sts_owner_uid(pod: Pod | None) -> tuple[str, str] | None:
    if pod is None:
        return None
    for ref in pod.meta.owners:
        if ref.kind == "StatefulSet":
            return ref.name, ref.uid
    return None


class Owners:
    """Everything that can own an address, indexed once per pass."""

    def __init__(self, kube: KubeSnapshot, policy: Policy, ips: Mapping[str, IpCR] | None = None) -> None:
        """``ips``: the IP CRs by name, when the caller has them: a name kept for an owner is then held as its IP
        CR holds it (one string less a kept address, ~80 bytes: 12 MB at 150k)."""
        self.policy = policy
        self._ips: Mapping[str, IpCR] = ips if ips is not None else _NO_IPS
        self.kubevirt = kube.kubevirt
        # by namespace, then name: no key string of its own a pod (~75 bytes each, 11 MB at 150k pods)
        self.pods: dict[str, dict[str, Pod]] = {}
        for p in kube.pods:
            self.pods.setdefault(p.meta.namespace, {})[p.meta.name] = p
        self.statefulsets: dict[OwnerKey, StatefulSet] = {s.meta.key: s for s in kube.statefulsets}
        self.nodes: frozenset[str] = frozenset(n.name for n in kube.nodes)
        self.subnets: dict[str, Subnet] = {s.meta.name: s for s in kube.subnets}
        self.ovn_eips: frozenset[str] = frozenset(e.meta.name for e in kube.eips if e.kind == "OvnEip")
        self.vms: dict[OwnerKey, VirtualMachine] = {}
        if policy.keep_vm_ip:
            for vm in kube.vms:
                self.vms.setdefault(vm.meta.key, vm)
        # name -> why it is kept: a reason, or the Pod it is kept for while alive (its reason is written only when
        # asked for: one string less a pod, ~90 bytes, 13 MB at 150k pods)
        self.names: dict[PortName, str | Pod] = {}
        self.prefixes: dict[str, str] = {}
        self.bad_annotations: list[tuple[str, str, str]] = []
        for n in kube.nodes:  # by exact name: node names may be FQDNs with dots
            self._keep(names.node_port_name(n.name), f"owner Node {n.name} exists")
        self._index_pods(kube.pods)
        self._index_vms(kube.vms)
        self._index_vips(kube)
        self._prefix_index = _PrefixIndex(self.prefixes)

    def by_prefix(self, name: str) -> str | None:
        """The reason of the first kept prefix (in the order they were kept) that ``name`` starts with."""
        return self._prefix_index.first(name)

    # -- building ------------------------------------------------------------

    def _keep(self, name: PortName, why: str | Pod) -> None:
        ip = self._ips.get(name)
        self.names.setdefault(ip.name if ip is not None else name, why)

    def kept_for(self, name: str) -> str | None:
        """Why ``name`` is kept by its exact name, or None."""
        why = self.names.get(name)  # type: ignore[call-overload]
        if why is None or isinstance(why, str):
            return why
        return alive_reason(why)

    def _index_pods(self, pods: Iterable[Pod]) -> None:
        for pod in pods:
            meta = pod.meta
            why: str | Pod
            if meta.deletion is None and not pod.host_network and pod.phase not in ("Succeeded", "Failed"):
                # the usual case, decided without building verdicts: what pod_liveness says of it
                why = pod
            else:
                verdict = self.pod_verdict(pod)
                if not verdict.alive:
                    continue
                why = verdict.reason
            owner = pod.meta.name
            if self.policy.keep_vm_ip:
                for ref in pod.meta.owners:
                    if ref.kind == "VirtualMachineInstance":
                        owner = ref.name
                        break
            for net in pod.networks:
                self._keep(names.port_name(owner, pod.meta.namespace, net.provider), why)

    def _index_vms(self, vms: Iterable[VirtualMachine]) -> None:
        if not self.policy.keep_vm_ip:
            return
        for vm in vms:
            ns, name = vm.meta.namespace, vm.meta.name
            why = f"owner {vm.kind} {vm.meta.key} exists"
            if not any(default for _, default in vm.spec_networks):
                self._keep(names.port_name(name, ns), why)
            providers: list[str] = []
            for raw in vm.multus_networks:
                try:
                    selections = names.parse_network_selection(raw, ns)
                except ValueError as exc:
                    self.bad_annotations.append((vm.kind, str(vm.meta.key), str(exc)))
                    # Unreadable networks: protect every address of this VM.
                    self.prefixes[f"{name}.{ns}."] = why
                    continue
                providers.extend(names.nad_provider(n, nns) for nns, n, _ in selections)
            for network_name, _ in vm.spec_networks:
                nns, n = names.split_network_name(network_name, ns)
                providers.append(names.nad_provider(n, nns))
            for provider in providers:
                base = names.port_name(name, ns, provider)
                self._keep(base, why)
                self.prefixes[f"{base}."] = why  # the ``.<ifname>`` variants

    def _index_vips(self, kube: KubeSnapshot) -> None:
        for vip in kube.vips:
            if not vip.type:
                continue
            why = f"owner Vip {vip.meta.name} ({vip.type}) exists"
            subnet = self.subnets.get(vip.subnet)
            if subnet is None:
                self.prefixes[f"{vip.meta.name}.{vip.namespace}"] = why
                continue
            self._keep(names.port_name(vip.meta.name, vip.namespace, subnet.provider), why)
        for eip in self.ovn_eips:
            self._keep(PortName(eip), f"owner OvnEip {eip} exists")

    # -- questions -------------------------------------------------------------

    def pod_verdict(self, pod: Pod, *, by_name: bool = False) -> Verdict:
        """Alive for addressing: alive, or a StatefulSet pod whose slot is alive.

        A pod is a StatefulSet's when its ownerReference says so (``isStatefulSetPod``, pkg/controller/pod.go,
        v1.12.0-v1.16.0); without one, only when ``by_name`` (see :meth:`workload`).
        """
        verdict = pod_liveness(pod, self.policy.now)
        if verdict.alive or pod.host_network:
            return verdict
        sts = self.sts_slot(pod.meta.namespace, pod.meta.name, pod, by_name=by_name)
        if sts is None:
            return verdict
        if sts.alive:
            return sts
        return Verdict(False, f"{verdict.reason}; {sts.reason}")

    def sts_slot(self, namespace: str, pod_name: str, pod: Pod | None = None, *, by_name: bool = True,
                 ) -> Verdict | None:
        """Kube-OVN's StatefulSet slot rule; None when no StatefulSet owns this pod.

        The owner is the pod's StatefulSet ownerReference; without one, and only when ``by_name``, the
        StatefulSet named by the pod name less its ``-N`` ordinal (``checkIPOwnerExists``: ``stsName``
        from ``spec.podName`` up to its last ``-``, v1.15.0-v1.16.0 pkg/controller/gc.go).
        """
        ref = _sts_owner_uid(pod)
        if ref is not None:
            sts_name, owner_uid = ref
            split = names.split_ordinal(pod_name)
            ordinal = split[1] if split and split[0] == sts_name else None
        else:
            split = names.split_ordinal(pod_name)
            if split is None or not by_name:
                return None
            sts_name, ordinal = split
            owner_uid = ""
        key = owner_key(namespace, sts_name)
        sts = self.statefulsets.get(key)
        if sts is None:
            return Verdict(False, f"owner StatefulSet {key} not found") if ref or pod is None else None
        if sts.meta.deletion is not None:
            return Verdict(False, f"owner StatefulSet {key} is being deleted")
        if owner_uid and sts.meta.uid and owner_uid != sts.meta.uid:
            return Verdict(False, f"StatefulSet {key} was re-created (uid differs from the pod's owner)")
        if ordinal is None:
            return Verdict(True, f"owner StatefulSet {key} exists (ordinal unreadable)")
        end = sts.ordinals_start + sts.replicas
        if ordinal >= end:
            return Verdict(False, f"StatefulSet {key} scaled down: ordinal {ordinal} >= {end}")
        if ordinal < sts.ordinals_start:
            return Verdict(False, f"StatefulSet {key} ordinals start at {sts.ordinals_start}, not {ordinal}")
        return Verdict(True, f"StatefulSet {key} slot {ordinal} is alive")

    def workload(self, namespace: str, name: str, pod_type: str | None) -> Verdict:
        """Is there a live Pod, VM/VMI or StatefulSet slot behind ``namespace/name``?

        ``pod_type`` is the IP CR's ``spec.podType``; None for a port without an IP CR, where nothing says
        what the owner was. Only ``podType: StatefulSet`` makes an IP CR a slot (v1.15.0-v1.16.0
        pkg/controller/gc.go ``checkIPOwnerExists``; Kube-OVN writes it for pods with a StatefulSet owner,
        pkg/controller/pod.go ``getPodType``): a bare pod ``cache-1`` (``podType: ""``) is gone when its Pod
        is, whatever StatefulSet ``cache`` does. A port without an IP CR whose pod is gone, or dead without
        an owner reference, may still be a slot's: it is kept while a StatefulSet of that name holds that
        slot (when in doubt, keep).
        """
        by_name = pod_type in (STS_POD_TYPE, None)
        key = owner_key(namespace, name)
        pod = self.pods.get(namespace, _NO_PODS).get(name)
        pod_verdict = self.pod_verdict(pod, by_name=by_name) if pod is not None else None
        if pod_verdict is not None and pod_verdict.alive:
            return pod_verdict
        vm = self.vms.get(key)
        if vm is not None:
            return Verdict(True, f"owner {vm.kind} {key} exists")
        if pod is None and (pod_type == STS_POD_TYPE or (pod_type is None and key_has_sts(self, namespace, name))):
            slot = self.sts_slot(namespace, name)
            if slot is not None:
                return slot
        if self.kubevirt is KubevirtState.UNREADABLE and pod is None and pod_type != STS_POD_TYPE:
            return Verdict(True, f"KubeVirt API unreadable: {key} may belong to a VM")
        if pod_verdict is not None:
            return pod_verdict
        if pod_type == VM_POD_TYPE:
            if self.policy.keep_vm_ip:
                return Verdict(False, f"owner VirtualMachine {key} not found")
            return Verdict(False, f"owner launcher Pod {key} not found (keep-vm-ip off)")
        return Verdict(False, f"owner Pod {key} not found")


_NO_PODS: Mapping[str, Pod] = MappingProxyType({})
_NO_IPS: Mapping[str, IpCR] = MappingProxyType({})


def alive_reason(pod: Pod) -> str:
    """:func:`pod_liveness`'s reason for a pod it finds alive."""
    return f"owner Pod {pod.meta.namespace}/{pod.meta.name} is alive"


def key_has_sts(owners: Owners, namespace: str, pod_name: str) -> bool:
    split = names.split_ordinal(pod_name)
    return split is not None and owner_key(namespace, split[0]) in owners.statefulsets


# --- verdicts -----------------------------------------------------------------


def _by_name(owners: Owners, name: str) -> Verdict | None:
    why = owners.kept_for(name)
    if why is None:
        why = owners.by_prefix(name)
    return None if why is None else Verdict(True, why)


class _PrefixIndex:
    """First-match lookup over prefixes (VM ``.<ifname>`` variants, Vips without a Subnet).

    The same answer as trying every prefix in order with ``startswith``, but by
    length: one slice and one dict lookup per distinct prefix length, not one
    ``startswith`` per prefix (hundreds of VMs with attachments, for every
    name not kept by its exact name).
    """

    def __init__(self, prefixes: dict[str, str]) -> None:
        by_length: dict[int, dict[str, int]] = {}
        for order, prefix in enumerate(prefixes):
            by_length.setdefault(len(prefix), {})[prefix] = order
        self._lengths = sorted(by_length)
        self._by_length = by_length
        self._reasons = list(prefixes.values())

    def first(self, name: str) -> str | None:
        best: int | None = None
        size = len(name)
        for length in self._lengths:
            if length > size:
                break
            order = self._by_length[length].get(name[:length])
            if order is not None and (best is None or order < best):
                best = order
        return None if best is None else self._reasons[best]


def _pod_owner(port: Port) -> tuple[str, str]:
    """``(namespace, name)`` from the port's ``pod`` external id (``("", "")`` when absent or odd)."""
    ns, slash, name = port.external_id("pod").partition("/")
    return (ns, name) if slash else ("", "")


def infrastructure_owner(name: str, namespace: str, owner: str, node_name: str = "",
                         refs: Iterable[tuple[str, str]] = ()) -> tuple[str, str] | None:
    """``("Node", n)`` or ``("Subnet", s)`` when ``name`` is a Node's or a Subnet's address, else None.

    ``namespace``/``owner`` are the IP CR's ``spec.namespace``/``spec.podName`` (for a port: its ``pod``
    external id), ``refs`` its ownerReferences as (kind, name). What Kube-OVN writes, v1.12.0-v1.16.0:
    - Node: ``node-<n>`` with an empty namespace and ``spec.podName == spec.nodeName == <n>``
      (pkg/controller/node.go ``createOrUpdateIPCR("", "", ip, mac, NodeSwitch, "", node.Name, "")``;
      v1.12.0 ``createOrUpdateCrdIPs``), the rule of v1.15.0-v1.16.0 pkg/controller/gc.go
      ``checkIPOwnerExists``; its LSP carries no ``pod`` external id. v1.16.0 adds an ownerReference (Node).
    - Subnet: ``mcast-querier.<s>`` and ``u2o-interconnection.<vpc>.<s>`` with ``spec.namespace: default``
      and ``spec.podName`` = the name (see :func:`names.subnet_owned`); an ownerReference (Subnet) only
      from v1.16.0 on (kube-ovn#6132), never added to older CRs.
    A workload's address always has a namespace and names its Pod/VM, never itself, so neither rule can
    take a Pod called ``mcast-querier`` or ``node-x`` for infrastructure.
    """
    for kind, ref_name in refs:
        if kind in ("Node", "Subnet"):
            return kind, ref_name
    if not namespace:
        if node_name and node_name == owner:
            return "Node", node_name
        node = names.node_of_port(name)
        if node is not None:
            return "Node", node
    subnet = names.subnet_owned(name, namespace, owner)
    return ("Subnet", subnet) if subnet is not None else None


def _special(owners: Owners, name: str, namespace: str, owner: str, node_name: str = "",
             refs: Iterable[tuple[str, str]] = ()) -> Verdict | None:
    """Node, mcast-querier and U2O addresses: owned by a Node or a Subnet (:func:`infrastructure_owner`).

    Several ownerReferences: alive while any of them exists (v1.16.0 ``checkIPOwnerExists``).
    """
    found = [(kind, n) for kind, n in refs if kind in ("Node", "Subnet")]
    if not found:
        inferred = infrastructure_owner(name, namespace, owner, node_name)
        if inferred is None:
            return None
        found = [inferred]
    for kind, n in found:
        if n in (owners.nodes if kind == "Node" else owners.subnets):
            return Verdict(True, f"owner {kind} {n} exists")
    kind, n = found[0]
    return Verdict(False, f"owner {kind} {n} not found")


def judge_ip(ip: IpCR, owners: Owners) -> Verdict:
    policy = owners.policy
    if ip.reserved:
        return Verdict(True, "reserved (ovn.kubernetes.io/ip_reserved=true)")
    if ip.meta.deletion is not None:
        return Verdict(True, "already terminating")
    if ip.meta.creation is not None and policy.now - ip.meta.creation < policy.min_age:
        return Verdict(True, f"younger than --min-age {policy.min_age}")
    by_name = _by_name(owners, ip.meta.name)
    if by_name is not None:
        return by_name
    refs = [(r.kind, r.name) for r in ip.meta.owners]
    special = _special(owners, ip.meta.name, ip.namespace, ip.pod_name, ip.node_name, refs)
    if special is not None:
        return special
    return owners.workload(ip.namespace, ip.pod_name, ip.pod_type)


def judge_port(port: Port, owners: Owners) -> Verdict | Skip:
    by_name = _by_name(owners, port.name)
    if by_name is not None:
        return by_name
    special = _special(owners, port.name, *_pod_owner(port))
    if special is not None:
        return special
    pod_ref = port.external_id("pod")
    if pod_ref:
        ns, slash, name = pod_ref.partition("/")
        if not slash or not ns or not name or "/" in name:
            return Skip(SKIP_PORT, port.name, f"odd external id pod={pod_ref!r}: cannot tell its owner")
        return owners.workload(ns, name, None)
    if owners.kubevirt is KubevirtState.UNREADABLE:
        return Verdict(True, "KubeVirt API unreadable: may belong to a VM")
    return Verdict(False, "no owner: no pod external id and the name matches no Pod, VM, Node, Vip or OvnEip")


_KUBE_OVN_VENDOR_ID = ("vendor", KUBE_OVN_VENDOR)


def is_candidate_port(port: Port) -> bool:
    """Only plain kube-ovn ports are ever considered; NB may be shared."""
    # external_ids come from an OVSDB map: each key once, so this is external_id("vendor") == "kube-ovn"
    return port.type == "" and _KUBE_OVN_VENDOR_ID in port.external_ids


@dataclass(frozen=True, slots=True)
class _Names:
    """The names of the IP CRs: those that parse (by name), and those that do not."""

    ips: Mapping[str, IpCR]
    unparsed: frozenset[str]

    def __contains__(self, name: object) -> bool:
        return name in self.ips or name in self.unparsed


def plan(snapshot: Snapshot, policy: Policy) -> Plan:
    kube = snapshot.kube
    ips = {ip.meta.name: ip for ip in kube.ips}
    owners = Owners(kube, policy, ips)
    kept = {"ip": 0, "port": 0}
    skipped: list[Skip] = [Skip(skip_kind(kind), name, why) for kind, name, why in kube.unparsed]
    skipped.extend(Skip(skip_kind(kind), name, f"unreadable networks annotation: {why}")
                   for kind, name, why in owners.bad_annotations)
    ip_actions: list[IpAction] = []
    for ip in kube.ips:
        verdict = judge_ip(ip, owners)
        if verdict.alive:
            kept["ip"] += 1
        else:
            ip_actions.append(IpAction(ip, verdict.reason))
    ip_names = _Names(ips, frozenset(name for kind, name, _ in kube.unparsed if skip_kind(kind) == SKIP_IP))
    port_actions: list[PortAction] = []
    for port in snapshot.nb.ports:
        if not is_candidate_port(port):
            continue
        if port.name in ip_names:
            kept["port"] += 1  # its IP CR decides; deleting the CR frees the port
            continue
        if not port.switch_uuid:
            skipped.append(Skip(SKIP_PORT, port.name, "not held by any logical switch"))
            continue
        judged = judge_port(port, owners)
        if isinstance(judged, Skip):
            skipped.append(judged)
        elif judged.alive:
            kept["port"] += 1
        else:
            port_actions.append(PortAction(port, judged.reason))
    return Plan(tuple(ip_actions), tuple(port_actions), tuple(skipped), kept)


@dataclass(frozen=True, slots=True)
class SubnetSummary:
    """Per-subnet numbers for the report and metrics: recomputed counts and how many fields drifted."""

    name: str
    v4_using: int
    v4_available: int
    v6_using: int
    v6_available: int
    drifted_fields: int


@dataclass(frozen=True)
class StatusPlan:
    actions: tuple[StatusAction, ...]
    skipped: tuple[Skip, ...]
    summaries: tuple[SubnetSummary, ...]


def plan_statuses(kube: KubeSnapshot, released: Collection[str]) -> StatusPlan:
    """Subnet statuses recomputed from the snapshot minus what this pass released."""
    actions: list[StatusAction] = []
    skipped: list[Skip] = []
    summaries: list[SubnetSummary] = []
    computed = status.compute_statuses(kube, released)
    for subnet in kube.subnets:
        if not subnet.cidr.strip():
            # A Subnet without cidrBlock (an underlay Subnet on a vlan may have none) has no status in Kube-OVN:
            # calcSubnetStatusIP returns at net.ParseCIDR(spec.cidrBlock) (v1.12.0-v1.14.0 pkg/controller/
            # subnet.go; util.CheckCidrs in v1.15.0-v1.16.0 subnet_status.go). Nothing to judge, nothing to write.
            continue
        result = computed.get(subnet.meta.name)
        if result is None:
            continue
        if isinstance(result, str):
            skipped.append(Skip(SKIP_SUBNET_STATUS, subnet.meta.name, result))
            continue
        diff = status.drift(subnet, result)
        summaries.append(SubnetSummary(subnet.meta.name, result.v4_using, result.v4_available,
                                       result.v6_using, result.v6_available, len(diff)))
        if not diff:
            continue
        after = result.as_fields()
        before: dict[str, object] = {k: subnet.status_value(k) for k in after}
        changed = tuple(k for k in after if k in diff)
        summary = ", ".join(f"{k} {diff[k][0]!r}→{diff[k][1]!r}" for k in changed if k.endswith("IPs"))
        actions.append(StatusAction(subnet, before, after, changed, f"status drift: {summary or 'ranges'}"))
    return StatusPlan(tuple(actions), tuple(skipped), tuple(summaries))


# --- the second look: what to re-read, and the verdict on fresh reads ------------------------


@dataclass(frozen=True, slots=True)
class Lookup:
    """One object to GET again just before acting: kind in Pod, VirtualMachine,
    VirtualMachineInstance, StatefulSet, Node, Subnet."""

    kind: str
    namespace: str
    name: str


def _workload_lookups(namespace: str, name: str, kubevirt: KubevirtState, policy: Policy) -> list[Lookup]:
    out = [Lookup("Pod", namespace, name)]
    if policy.keep_vm_ip and kubevirt is not KubevirtState.ABSENT:
        out += [Lookup("VirtualMachine", namespace, name), Lookup("VirtualMachineInstance", namespace, name)]
    split = names.split_ordinal(name)
    if split is not None:
        out.append(Lookup("StatefulSet", namespace, split[0]))
    return out


def _special_lookups(name: str, namespace: str, owner: str, node_name: str = "",
                     refs: Iterable[tuple[str, str]] = ()) -> list[Lookup]:
    out = [Lookup(kind, "", ref) for kind, ref in refs if kind in ("Node", "Subnet")]
    if not namespace:
        if node_name:
            out.append(Lookup("Node", "", node_name))
        if name.startswith(names.NODE_PREFIX) and len(name) > len(names.NODE_PREFIX):
            out.append(Lookup("Node", "", name[len(names.NODE_PREFIX) :]))  # FQDN node names too
    subnet = names.subnet_owned(name, namespace, owner)
    if subnet is not None:
        out.append(Lookup("Subnet", "", subnet))
    return out


def lookups_for_ip(ip: IpCR, kubevirt: KubevirtState, policy: Policy) -> tuple[Lookup, ...]:
    refs = [(r.kind, r.name) for r in ip.meta.owners]
    out = _special_lookups(ip.meta.name, ip.namespace, ip.pod_name, ip.node_name, refs)
    if ip.namespace and ip.pod_name:
        out += _workload_lookups(ip.namespace, ip.pod_name, kubevirt, policy)
    return tuple(dict.fromkeys(out))


def lookups_for_port(port: Port, kubevirt: KubevirtState, policy: Policy) -> tuple[Lookup, ...]:
    ns, name = _pod_owner(port)
    out = _special_lookups(port.name, ns, name)
    if ns and name:
        out += _workload_lookups(ns, name, kubevirt, policy)
    return tuple(dict.fromkeys(out))


def fresh_snapshot(found: Iterable[object], kube: KubeSnapshot) -> KubeSnapshot:
    """A small snapshot of re-read owners, plus the first read's Vips, EIPs and Subnets for name rules."""
    pods, vms, stss, nodes, subnets = [], [], [], [], {s.meta.name: s for s in kube.subnets}
    for obj in found:
        if isinstance(obj, Pod):
            pods.append(obj)
        elif isinstance(obj, VirtualMachine):
            vms.append(obj)
        elif isinstance(obj, StatefulSet):
            stss.append(obj)
        elif isinstance(obj, Node):
            nodes.append(obj)
        elif isinstance(obj, Subnet):
            subnets[obj.meta.name] = obj
    return KubeSnapshot(subnets=tuple(subnets.values()), pods=tuple(pods), nodes=tuple(nodes),
                        statefulsets=tuple(stss), vms=tuple(vms), vips=kube.vips, eips=kube.eips,
                        kubevirt=kube.kubevirt)


def rejudge_ip(ip: IpCR, fresh: KubeSnapshot, policy: Policy, *, terminating_ok: bool = False) -> Verdict:
    """The second look at an IP CR: the same rules on re-read objects.

    ``terminating_ok`` judges a terminating CR as if it were not (for releasing stuck finalizers).
    """
    if terminating_ok and ip.meta.deletion is not None:
        ip = dataclasses.replace(ip, meta=dataclasses.replace(ip.meta, deletion=None))
    return judge_ip(ip, Owners(fresh, policy))


def rejudge_port(port: Port, fresh: KubeSnapshot, policy: Policy) -> Verdict | Skip:
    return judge_port(port, Owners(fresh, policy))


# --- stuck terminating IP CRs ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StuckIp:
    ip: IpCR
    terminating_for: dt.timedelta
    leaked: bool  # no live owner: a candidate for --release-stuck-after
    reason: str


def stuck_ips(kube: KubeSnapshot, policy: Policy, threshold: dt.timedelta) -> tuple[StuckIp, ...]:
    """IP CRs terminating for longer than ``threshold``: the controller that owns the finalizer is not acting."""
    owners: Owners | None = None
    out: list[StuckIp] = []
    for ip in kube.ips:
        deletion = ip.meta.deletion
        if deletion is None or policy.now - deletion < threshold:
            continue
        owners = owners or Owners(kube, policy)
        verdict = judge_ip(dataclasses.replace(ip, meta=dataclasses.replace(ip.meta, deletion=None)), owners)
        age = policy.now - deletion
        out.append(StuckIp(ip, age, not verdict.alive,
                           f"terminating for {_human(age)}: is kube-ovn-controller running? ({verdict.reason})"))
    return tuple(out)


def _human(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else (f"{hours}h{minutes:02d}m" if hours else f"{minutes}m")
