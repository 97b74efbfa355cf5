"""Random Kube-OVN clusters, built from the owners outward, with their own ground truth.

The generator draws owners (pods, KubeVirt VMs/VMIs and their launcher pods,
StatefulSets, nodes, subnets, Vips, OvnEips), decides each one's fate (alive,
dead, deleted, scaled away), emits the IP CRs and ports Kube-OVN would have
created for it, then adds the noise (reserved, young and terminating IP CRs,
orphans, rows of other NB users). The truth — which names a live owner holds,
and which leaks are unambiguous — is computed here from DESIGN.md §4, written
from the spec and the generator's own knowledge of every owner, not from
``plan.py``: nothing here imports ``kube_ovn_gc.plan``'s helpers or ``names``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from hypothesis import strategies as st

from builders import NOW, OLD, eip, ip, node, pod, port, snapshot, sts, sts_ref, subnet, vip, vm
from kube_ovn_gc.model import IpCR, KubevirtState, OwnerRef, Pod, Port, Snapshot

T = TypeVar("T")

# --- the small worlds names are drawn from --------------------------------------------------

NAMESPACES = ("default", "ns1")
# Kube-OVN NAD attachments: IP CR and LSP; one NAD attached twice gets ``.<ifname>`` on each (v1.16).
NAD_PROVIDERS = ("n1.default.ovn", "n2.ns1.ovn", "n3.ns1.ovn.net1", "n3.ns1.ovn.net2")
# IPAM-only attachments (e.g. macvlan): IP CR, no LSP; ``mv3.ovn`` is a NAD in a namespace called ``ovn``.
IPAM_PROVIDERS = ("mv1.default", "mv2.ns1", "mv3.ovn")
SUBNETS = {"ovn-default": "ovn", "join": "ovn", "sub-a": "n1.default.ovn", "sub-b": "n2.ns1.ovn",
           "sub.c": "mv1.default", "sub-d": "mv3.ovn", "sub-e": "n3.ns1.ovn"}
ALWAYS_THERE = ("ovn-default", "join")
NODES = ("n-a", "n-b", "w1.example.com")  # FQDN node names are common (cloud providers)
# "db-1" is a bare pod named like slot 1 of StatefulSet "db" (IP CR podType ""); no StatefulSet is called "job".
POD_NAMES = ("web", "job-2", "api-7d9f-x2k4q", "p.dot", "mcast-querier", "db-1")
STS_NAMES = ("db", "s-1")
VM_NAMES = ("vm0", "vm1", "fedora", "u2o-interconnection")
VIP_NAMES = ("vip0", "vip1")
EIP_NAMES = ("eip0", "eip1")
ORPHANS = ("gone0", "gone1")
VPCS = ("ovn-cluster", "vpc1")
VM_NADS = ("n1", "n2")
VMI_KIND = "VirtualMachineInstance"
VM_POD_TYPE = "VirtualMachine"
STS_POD_TYPE = "StatefulSet"
VIP_TYPES = ("", "switch_lb_vip", "kube_host_vm_vip")

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
RESTARTS = ("Always", "OnFailure", "Never", "")
REASONS = ("", "Evicted", "OOMKilled")
# (seconds since deletionTimestamp, deletionGracePeriodSeconds); negative = in the future
DELETIONS = ((10, 30), (30, 30), (31, 30), (60, 0), (0, 0), (-30, 30), (3600, None), (60, 30))
DECORATIONS = ("", "", "", "", "", "", "reserved", "young", "nearly-old", "future", "terminating", "edge")


def lsp(owner: str, namespace: str, provider: str) -> str:
    """DESIGN.md §1, written out again on purpose: ``<owner>.<ns>[.<provider>]``."""
    return f"{owner}.{namespace}" if provider == "ovn" else f"{owner}.{namespace}.{provider}"


def has_lsp(provider: str) -> bool:
    return provider not in IPAM_PROVIDERS


# --- owners -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodFate:
    phase: str = "Running"
    restart: str = "Always"
    reason: str = ""
    host: bool = False
    deletion: tuple[int, int | None] | None = None

    def alive(self) -> bool:
        """DESIGN.md §4 "Pod that is alive", rule by rule."""
        if self.host:
            return False
        if self.deletion is not None:
            since, grace = self.deletion
            if grace is not None and since > grace:  # now > deletionTimestamp + grace
                return False
        if self.phase == "Succeeded" and self.restart != "Always":
            return False
        if self.phase == "Failed" and self.restart == "Never":
            return False
        return not (self.phase == "Failed" and self.reason == "Evicted")


ALIVE = PodFate()


@dataclass(frozen=True)
class PodSpec:
    namespace: str
    name: str
    fate: PodFate | None  # None: the pod is not in the cluster
    providers: tuple[str, ...]  # what Kube-OVN allocated (or will allocate) for it
    annotated: bool = True  # False: the LSP exists, the allocated annotations are not written yet
    owners: tuple[OwnerRef, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def alive(self) -> bool:
        return self.fate is not None and self.fate.alive()

    def build(self) -> Pod:
        f = self.fate
        assert f is not None
        deleted, grace = None, None
        if f.deletion is not None:
            deleted, grace = NOW - dt.timedelta(seconds=f.deletion[0]), f.deletion[1]
        return pod(self.namespace, self.name, phase=f.phase, restart=f.restart, reason=f.reason, host_network=f.host,
                   providers=self.providers if self.annotated else (), owners=self.owners, deleted=deleted,
                   grace=grace)


@dataclass(frozen=True)
class VmNets:
    """What a VM template (or a VMI) asks for."""

    multus: tuple[tuple[str, str, str], ...]  # (nad, nad namespace or "", interface or "")
    form: str  # "json", "text" or "garbage" (unreadable annotation)
    spec: tuple[tuple[str, bool], ...]  # (multus networkName as written, default)

    def annotation(self) -> str:
        if self.form == "garbage":
            return '[{"name": "n1", "namespace": "default"'
        if not self.multus:
            return ""
        if self.form == "json":
            items = [{"name": n, **({"namespace": ns} if ns else {}), **({"interface": i} if i else {})}
                     for n, ns, i in self.multus]
            return json.dumps(items)
        return " , ".join(f"{ns + '/' if ns else ''}{n}{'@' + i if i else ''}" for n, ns, i in self.multus)

    def default(self) -> bool:
        return any(d for _, d in self.spec)

    def nad_providers(self, vm_ns: str) -> list[str]:
        """One provider per attachment; a NAD attached again gets ``.<ifname>``."""
        out: list[str] = []
        seen: set[str] = set()
        for nad, ns, iface in self.multus:
            base = f"{nad}.{ns or vm_ns}.ovn"
            if base not in seen:
                out.append(base)
            elif iface:
                out.append(f"{base}.{iface}")
            seen.add(base)
        for ref, _ in self.spec:
            ns, _, nad = ref.rpartition("/")
            base = f"{nad}.{ns or vm_ns}.ovn"
            if base not in seen:
                out.append(base)
            seen.add(base)
        return out

    def pod_providers(self, vm_ns: str) -> tuple[str, ...]:
        return tuple(([] if self.default() else ["ovn"]) + self.nad_providers(vm_ns))

    def bases(self, vm_ns: str) -> set[str]:
        return {f"{nad}.{ns or vm_ns}.ovn" for nad, ns, _ in self.multus} | {
            f"{ref.rpartition('/')[2]}.{ref.rpartition('/')[0] or vm_ns}.ovn" for ref, _ in self.spec}


@dataclass(frozen=True)
class VmSpec:
    namespace: str
    name: str
    kind: str  # "VirtualMachine", or a standalone "VirtualMachineInstance"
    vm_nets: VmNets  # the VM's template (for a standalone VMI: the VMI's own)
    vmi_nets: VmNets  # what the running instance was started with
    vm_exists: bool
    vmi_exists: bool
    launchers: tuple[PodSpec, ...]  # current and former launcher pods (fate None = gone)

    def names(self) -> list[str]:
        """Every address Kube-OVN created for this VM when named after the VM (keep-vm-ip on)."""
        out: list[str] = []
        for nets in (self.vm_nets, self.vmi_nets):
            for p in nets.pod_providers(self.namespace):
                n = lsp(self.name, self.namespace, p)
                if n not in out:
                    out.append(n)
        return out


@dataclass(frozen=True)
class StsSpec:
    namespace: str
    name: str
    uid: str
    replicas: int
    start: int
    exists: bool
    terminating: bool
    providers: tuple[str, ...]
    slots: tuple[tuple[int, PodSpec], ...]  # ordinal -> its pod (fate None = no pod now)

    def slot_alive(self, ordinal: int, slot_pod: PodSpec) -> bool:
        """DESIGN.md §4 "StatefulSet slot"."""
        if not self.exists or self.terminating:
            return False
        if slot_pod.fate is not None and any(r.kind == STS_POD_TYPE and r.uid != self.uid for r in slot_pod.owners):
            return False  # the StatefulSet was re-created: the pod belongs to the old one
        return self.start <= ordinal < self.start + self.replicas


# --- the ground truth -----------------------------------------------------------------------


@dataclass
class Origin:
    """Why an address exists, and whether its owner is unambiguously gone."""

    what: str
    leaked: bool  # every owner of it is gone or dead, by an unambiguous rule
    vm_like: bool = False  # might be a VM's: protected when KubeVirt is unreadable
    unreadable_ok: bool = False  # a leak even when KubeVirt is unreadable (Node, Subnet addresses)


@dataclass
class Truth:
    claimed: dict[str, str] = field(default_factory=dict)  # name -> the live owner holding it
    prefixes: dict[str, str] = field(default_factory=dict)  # ".<ifname>" variants, unreadable networks
    alive_pods: set[str] = field(default_factory=set)  # "ns/name" of live pods (ext id and spec.podName)

    def claim(self, name: str, why: str) -> None:
        self.claimed.setdefault(name, why)

    def holder(self, name: str) -> str | None:
        if name in self.claimed:
            return self.claimed[name]
        for prefix, why in self.prefixes.items():
            if name.startswith(prefix):
                return why
        return None


@dataclass
class Case:
    snapshot: Snapshot
    keep_vm_ip: bool
    min_age: dt.timedelta
    protected_ips: dict[str, str]  # name -> why it must never be selected
    protected_ports: dict[str, str]  # port uuid -> why
    must_ips: dict[str, str]  # name -> the unambiguous leak it is
    must_ports: dict[str, str]  # port name -> the unambiguous leak it is


# --- drawing owners -------------------------------------------------------------------------

sometimes = st.sampled_from((False, False, False, True))
often = st.sampled_from((True, True, True, False))


@st.composite
def pod_fates(draw: st.DrawFn, *, host: bool = True) -> PodFate:
    return PodFate(phase=draw(st.sampled_from(PHASES)), restart=draw(st.sampled_from(RESTARTS)),
                   reason=draw(st.sampled_from(REASONS)), host=host and draw(sometimes),
                   deletion=draw(st.sampled_from((None, None, *DELETIONS))))


@st.composite
def vm_nets(draw: st.DrawFn) -> VmNets:
    entries = draw(st.lists(st.tuples(st.sampled_from(VM_NADS), st.sampled_from(("", *NAMESPACES)),
                                      st.sampled_from(("", "eth1", "eth2"))), max_size=3))
    form = draw(st.sampled_from(("json", "text", "text", "json", "garbage"))) if entries else "json"
    refs = draw(st.lists(st.sampled_from(("n3", "ns1/n3", "default/n1")), max_size=2, unique=True))
    spec = [(ref, False) for ref in refs]
    if len(spec) > 0 and draw(sometimes):
        i = draw(st.integers(0, len(spec) - 1))
        spec[i] = (spec[i][0], True)
    return VmNets(tuple(entries), form, tuple(spec))


def launcher_owner(vm_name: str) -> OwnerRef:
    return OwnerRef(kind=VMI_KIND, name=vm_name, api_version="kubevirt.io/v1", controller=True)


@st.composite
def vms(draw: st.DrawFn, kubevirt: KubevirtState) -> VmSpec:
    ns, name = draw(st.sampled_from(NAMESPACES)), draw(st.sampled_from(VM_NAMES))
    kind = draw(st.sampled_from(("VirtualMachine", "VirtualMachine", VMI_KIND)))
    nets = draw(vm_nets())
    variant = draw(st.sampled_from(("same", "same", "vm-edited", "vmi-older")))
    vm_n, vmi_n = nets, nets
    if variant != "same" and nets.multus:
        fewer = dataclasses.replace(nets, multus=nets.multus[:-1])
        vm_n, vmi_n = (nets, fewer) if variant == "vm-edited" else (fewer, nets)
    if kind == VMI_KIND:
        vm_n = vmi_n
    # Run state: stopped (no VMI, no launcher) or one of the states with a VMI and launcher pods.
    state = draw(st.sampled_from(("stopped", "running", "starting", "stopping", "migrating")))
    deleted = kubevirt is KubevirtState.ABSENT or draw(sometimes)
    providers = vmi_n.pod_providers(ns)
    launchers: list[PodSpec] = []
    suffixes = iter(("abcde", "x9z8q"))

    def launcher(fate: PodFate | None, annotated: bool = True) -> PodSpec:
        if fate is not None and deleted:
            # The VM is gone: its launchers are gone too, or still terminating (within grace or not).
            fate = (None if draw(st.booleans()) else
                    dataclasses.replace(fate, deletion=draw(st.sampled_from(DELETIONS))))
        return PodSpec(ns, f"virt-launcher-{name}-{next(suffixes)}", fate, providers, annotated,
                       (launcher_owner(name),))

    if kubevirt is not KubevirtState.ABSENT:
        if state == "running":
            launchers.append(launcher(PodFate("Running", "Never")))
        elif state == "starting":
            launchers.append(launcher(PodFate("Pending", "Never"), annotated=draw(st.booleans())))
        elif state == "stopping":
            launchers.append(launcher(draw(st.sampled_from((
                PodFate("Succeeded", "Never"), PodFate("Failed", "Never"),
                PodFate("Running", "Never", deletion=draw(st.sampled_from(DELETIONS))))))))
        elif state == "migrating":
            launchers.append(launcher(PodFate("Running", "Never")))
            launchers.append(launcher(draw(st.sampled_from((PodFate("Pending", "Never"),
                                                            PodFate("Succeeded", "Never"))))))
    # A launcher pod of an earlier run, long gone (its addresses are named after it with keep-vm-ip off).
    if draw(sometimes) or not launchers:
        launchers.append(PodSpec(ns, f"virt-launcher-{name}-old00", None, vm_n.pod_providers(ns), True,
                                 (launcher_owner(name),)))
    vm_exists = kind != VMI_KIND and not deleted
    vmi_exists = state != "stopped" and ((kind == VMI_KIND and not deleted) or vm_exists)
    if deleted and kubevirt is not KubevirtState.ABSENT and state != "stopped":
        vmi_exists = draw(sometimes)  # the VMI may linger while the VM's deletion finishes
    return VmSpec(ns, name, kind, vm_n, vmi_n, vm_exists, vmi_exists, tuple(launchers))


@st.composite
def statefulsets(draw: st.DrawFn) -> StsSpec:
    ns, name = draw(st.sampled_from(NAMESPACES)), draw(st.sampled_from(STS_NAMES))
    uid = f"uid-sts-{ns}-{name}"
    fate = draw(st.sampled_from(("exists", "exists", "exists", "deleted", "terminating", "recreated")))
    replicas, start = draw(st.integers(0, 3)), draw(st.sampled_from((0, 0, 1, 2)))
    providers = ("ovn", *draw(st.lists(st.sampled_from(NAD_PROVIDERS + IPAM_PROVIDERS), max_size=2, unique=True)))
    # Ordinals Kube-OVN ever allocated for: some inside the current range, some scaled away, some below start.
    ordinals = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4, unique=True))
    slots = []
    for o in sorted(ordinals):
        owner_uid = "uid-sts-old" if fate == "recreated" and draw(often) else uid
        slot_fate = draw(st.one_of(st.none(), st.just(ALIVE), pod_fates(host=False)))
        # ``kubectl delete sts --cascade=orphan`` leaves the pods without an owner reference.
        refs = () if fate in ("deleted", "recreated") and draw(sometimes) else (sts_ref(name, owner_uid),)
        slots.append((o, PodSpec(ns, f"{name}-{o}", slot_fate, providers, draw(often), refs)))
    return StsSpec(ns, name, uid, replicas, start, exists=fate != "deleted", terminating=fate == "terminating",
                   providers=providers, slots=tuple(slots))


@st.composite
def plain_pods(draw: st.DrawFn) -> PodSpec:
    ns, name = draw(st.sampled_from(NAMESPACES)), draw(st.sampled_from(POD_NAMES))
    fate = draw(st.one_of(st.none(), st.just(ALIVE), pod_fates()))
    providers = ("ovn", *draw(st.lists(st.sampled_from(NAD_PROVIDERS + IPAM_PROVIDERS), max_size=2, unique=True)))
    if draw(sometimes):
        providers = providers[1:]  # attached only through NADs
    return PodSpec(ns, name, fate, providers, annotated=draw(often))


def unique(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    seen: set[Hashable] = set()
    out = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


# --- emitting what Kube-OVN created, and the truth --------------------------------------------


class Emitter:
    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.ips: dict[str, IpCR] = {}
        self.ports: dict[str, Port] = {}
        self.origins: dict[str, list[Origin]] = {}

    def add(self, name: str, origin: Origin, *, ip_kw: dict[str, object] | None,
            port_kw: dict[str, object] | None) -> None:
        """Create the IP CR and/or the LSP; ``shape`` draws which survive (both, only the CR, only the port)."""
        self.origins.setdefault(name, []).append(origin)
        if ip_kw is not None and port_kw is not None:
            shape = self.draw(st.sampled_from(("both", "both", "ip", "port")))
        elif ip_kw is not None:
            shape = "ip"
        else:
            shape = "port"
        if ip_kw is not None and shape in ("both", "ip") and name not in self.ips:
            self.ips[name] = ip(name, **ip_kw)  # type: ignore[arg-type]
        if port_kw is not None and shape in ("both", "port") and name not in self.ports:
            self.ports[name] = port(name, **port_kw)  # type: ignore[arg-type]

    def pod_addresses(self, spec: PodSpec, owner: str, pod_type: str, origin: Origin) -> None:
        for provider in spec.providers:
            name = lsp(owner, spec.namespace, provider)
            sub = next((s for s, p in SUBNETS.items() if p == provider), "ovn-default")
            self.add(name, origin,
                     ip_kw={"namespace": spec.namespace, "pod_name": owner, "pod_type": pod_type, "subnet": sub},
                     port_kw={"pod_key": f"{spec.namespace}/{owner}", "switch": sub} if has_lsp(provider) else None)


def claim_pod(truth: Truth, spec: PodSpec, keep_vm_ip: bool) -> None:
    if not spec.alive:
        return
    truth.alive_pods.add(spec.key)
    if not spec.annotated:
        return  # the ext id rule covers its ports until the annotation is written
    owner = spec.name
    if keep_vm_ip:
        owner = next((r.name for r in spec.owners if r.kind == VMI_KIND), owner)
    for provider in spec.providers:
        truth.claim(lsp(owner, spec.namespace, provider), f"live Pod {spec.key}")


def claim_vm_object(truth: Truth, spec: VmSpec, nets: VmNets, kind: str) -> None:
    why = f"{kind} {spec.namespace}/{spec.name} exists"
    if not nets.default():
        truth.claim(lsp(spec.name, spec.namespace, "ovn"), why)
    for provider in nets.nad_providers(spec.namespace):
        truth.claim(lsp(spec.name, spec.namespace, provider), why)
    for base in nets.bases(spec.namespace):
        truth.prefixes.setdefault(lsp(spec.name, spec.namespace, base) + ".", why)  # the .<ifname> variants
    if nets.form == "garbage":  # which attachments it has is unknown: every one of its names is held
        truth.prefixes.setdefault(f"{spec.name}.{spec.namespace}.", f"{why} (networks unreadable)")


def slot_doubt(stss: Iterable[StsSpec], pod_key: str) -> bool:
    """``ns/<sts>-<N>`` names a slot a live StatefulSet holds (DESIGN.md §4, by the name alone)."""
    ns, _, pod_name = pod_key.partition("/")
    base, dash, num = pod_name.rpartition("-")
    if not dash or not num.isdigit():
        return False
    return any(s.namespace == ns and s.name == base and s.exists and not s.terminating
               and s.start <= int(num) < s.start + s.replicas for s in stss)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    kubevirt = draw(st.sampled_from((KubevirtState.READ, KubevirtState.READ, KubevirtState.ABSENT,
                                     KubevirtState.UNREADABLE)))
    keep_vm_ip = draw(often)
    min_age = draw(st.sampled_from((dt.timedelta(minutes=5), dt.timedelta(0))))
    unreadable = kubevirt is KubevirtState.UNREADABLE

    # Owners, each with its fate.
    subnets_alive = {s: s in ALWAYS_THERE or draw(often) for s in SUBNETS}
    nodes_alive = {n: draw(often) for n in draw(st.lists(st.sampled_from(NODES), max_size=3, unique=True))}
    pods_ = unique(draw(st.lists(plain_pods(), max_size=4)), lambda p: p.key)
    vms_ = unique(draw(st.lists(vms(kubevirt), max_size=3)), lambda v: (v.namespace, v.name))
    sts_ = unique(draw(st.lists(statefulsets(), max_size=2)), lambda s: (s.namespace, s.name))
    slot_pods = {sp.key for s in sts_ for _, sp in s.slots}
    pods_ = [p for p in pods_ if p.key not in slot_pods]  # one Pod per name: a bare db-1 only where no slot is
    vips_ = [(n, draw(st.sampled_from(NAMESPACES)), draw(st.sampled_from(tuple(SUBNETS))),
              draw(st.sampled_from(VIP_TYPES)), draw(often)) for n in draw(st.lists(st.sampled_from(VIP_NAMES),
                                                                                    max_size=2, unique=True))]
    eips_ = [(n, draw(st.sampled_from(("OvnEip", "OvnEip", "IptablesEIP"))), draw(often))
             for n in draw(st.lists(st.sampled_from(EIP_NAMES), max_size=2, unique=True))]

    # The truth: who holds which name (DESIGN.md §4).
    truth = Truth()
    for p in pods_:
        claim_pod(truth, p, keep_vm_ip)
    for v in vms_:
        for lp in v.launchers:
            claim_pod(truth, lp, keep_vm_ip)
        if keep_vm_ip:  # KubeVirt unreadable: the VMs are still there, the job just cannot see them
            if v.vm_exists:
                claim_vm_object(truth, v, v.vm_nets, v.kind)
            if v.vmi_exists:
                claim_vm_object(truth, v, v.vmi_nets, VMI_KIND)
    for s in sts_:
        for o, sp in s.slots:
            claim_pod(truth, sp, keep_vm_ip)
            if s.slot_alive(o, sp):
                for provider in s.providers:
                    truth.claim(lsp(sp.name, s.namespace, provider), f"StatefulSet {s.namespace}/{s.name} slot {o}")
    for n, alive in nodes_alive.items():
        if alive:
            truth.claim(f"node-{n}", f"Node {n} exists")
    for sub, alive in subnets_alive.items():
        if alive:
            truth.claim(f"mcast-querier.{sub}", f"Subnet {sub} exists")
            for vpc in VPCS:
                truth.claim(f"u2o-interconnection.{vpc}.{sub}", f"Subnet {sub} exists")
    for name, ns, sub, typ, alive in vips_:
        if alive and typ:
            truth.claim(lsp(name, ns, SUBNETS[sub]), f"Vip {name} ({typ}) exists")
    for name, kind, alive in eips_:
        if alive and kind == "OvnEip":
            truth.claim(name, f"OvnEip {name} exists")

    # What Kube-OVN created for every owner, dead or alive.
    em = Emitter(draw)
    gone_by_kubevirt = not unreadable
    for p in pods_:
        em.pod_addresses(p, p.name, "", Origin(f"Pod {p.key}", leaked=not p.alive and gone_by_kubevirt))
    for s in sts_:
        for o, sp in s.slots:
            leaked = not sp.alive and not s.slot_alive(o, sp) and gone_by_kubevirt
            em.pod_addresses(sp, sp.name, STS_POD_TYPE, Origin(f"StatefulSet {s.namespace}/{s.name} slot {o}", leaked))
    for v in vms_:
        if keep_vm_ip:
            leaked = (not v.vm_exists and not v.vmi_exists and not any(lp.alive for lp in v.launchers)
                      and gone_by_kubevirt)
            origin = Origin(f"VM {v.namespace}/{v.name}", leaked, vm_like=True)
            for name in v.names():
                em.add(name, origin, ip_kw={"namespace": v.namespace, "pod_name": v.name, "pod_type": VM_POD_TYPE},
                       port_kw={"pod_key": f"{v.namespace}/{v.name}"})
        else:
            for lp in v.launchers:
                em.pod_addresses(lp, lp.name, VM_POD_TYPE,
                                 Origin(f"launcher Pod {lp.key}", not lp.alive and gone_by_kubevirt,
                                        vm_like=lp.fate is None))
    for n, alive in nodes_alive.items():
        refs = (OwnerRef(kind="Node", name=n, api_version="v1"),) if draw(st.booleans()) else ()
        em.add(f"node-{n}", Origin(f"Node {n}", not alive, unreadable_ok="." not in n),
               ip_kw={"namespace": "", "pod_name": n, "node_name": n, "subnet": "join", "owners": refs},
               port_kw={"switch": "join"})
    for sub, alive in subnets_alive.items():
        origin = Origin(f"Subnet {sub}", not alive, unreadable_ok=True)
        for name in (f"mcast-querier.{sub}", f"u2o-interconnection.{draw(st.sampled_from(VPCS))}.{sub}"):
            if not draw(sometimes):
                continue
            # How Kube-OVN writes them (DESIGN.md §4): v1.13-v1.15 namespace "default", podName = the name, no
            # ownerReference; v1.16 the same plus an ownerReference; "bare": no namespace, no podName at all.
            shape = draw(st.sampled_from(("v1.13", "v1.13", "v1.16", "bare")))
            refs = (OwnerRef(kind="Subnet", name=sub, api_version="kubeovn.io/v1"),) if shape == "v1.16" else ()
            ns, owner = ("", "") if shape == "bare" else ("default", name)
            querier = name.startswith("mcast-querier.")
            em.add(name, origin, ip_kw={"namespace": ns, "pod_name": owner, "node_name": "", "subnet": sub,
                                        "owners": refs},
                   port_kw={"switch": sub, "pod_key": f"{ns}/{owner}" if ns else None} if querier else None)
    for name, ns, sub, typ, alive in vips_:
        if typ or draw(sometimes):  # an untyped Vip has no LSP; a stale one may be left over
            em.add(lsp(name, ns, SUBNETS[sub]), Origin(f"Vip {name}", not (alive and typ) and gone_by_kubevirt),
                   ip_kw=None, port_kw={"pod_key": f"{ns}/{name}" if draw(st.booleans()) else None, "switch": sub})
    for name, kind, alive in eips_:
        if kind == "OvnEip":
            em.add(name, Origin(f"OvnEip {name}", not alive and gone_by_kubevirt), ip_kw=None,
                   port_kw={"switch": "ovn-default"})
    for name in draw(st.lists(st.sampled_from(ORPHANS), max_size=2, unique=True)):
        ns = draw(st.sampled_from(NAMESPACES))
        em.add(lsp(name, ns, "ovn"), Origin("nothing", gone_by_kubevirt),
               ip_kw={"namespace": ns, "pod_name": name},
               port_kw={"pod_key": f"{ns}/{name}" if draw(st.booleans()) else None})

    # Noise on the IP CRs: reserved, young, clock-skewed, terminating, exactly min-age old.
    protected_ips: dict[str, str] = {}
    edge: set[str] = set()
    for name, cr in list(em.ips.items()):
        deco = draw(st.sampled_from(DECORATIONS))
        if deco == "reserved":
            cr = dataclasses.replace(cr, reserved=True)
            protected_ips[name] = "reserved"
        elif deco == "young" and min_age:
            cr = dataclasses.replace(cr, meta=dataclasses.replace(cr.meta, creation=NOW - min_age / 2))
            protected_ips[name] = "younger than min-age"
        elif deco == "nearly-old" and min_age:
            cr = dataclasses.replace(cr, meta=dataclasses.replace(
                cr.meta, creation=NOW - min_age + dt.timedelta(seconds=1)))
            protected_ips[name] = "one second short of min-age"
        elif deco == "future":
            cr = dataclasses.replace(cr, meta=dataclasses.replace(cr.meta, creation=NOW + dt.timedelta(minutes=1)))
            protected_ips[name] = "created in the future (clock skew)"
        elif deco == "terminating":
            cr = dataclasses.replace(cr, meta=dataclasses.replace(cr.meta, deletion=OLD))
            protected_ips[name] = "already terminating"
        elif deco == "edge":
            cr = dataclasses.replace(cr, meta=dataclasses.replace(cr.meta, creation=NOW - min_age))
            edge.add(name)  # exactly min-age old: the spec does not say, assert nothing
        em.ips[name] = cr

    # NB rows of other systems, some named like a leak; unparsable IP CRs; ports off any switch.
    foreign: list[Port] = []
    free_names = [n for n in em.origins if n not in em.ports]
    for i in range(draw(st.integers(0, 3))):
        name = free_names.pop(0) if len(free_names) > 0 and draw(st.booleans()) else f"foreign-{i}"
        typ, vendor = draw(st.sampled_from((("router", "kube-ovn"), ("localnet", "kube-ovn"), ("virtual", "kube-ovn"),
                                            ("router", None), ("", "neutron"), ("", None), ("localnet", "neutron"))))
        foreign.append(port(name, type=typ, vendor=vendor, pod_key=draw(st.sampled_from((None, "default/gone0")))))
    unparsed: list[tuple[str, str, str]] = []
    for name in draw(st.lists(st.sampled_from(sorted(em.ports)), max_size=1)) if em.ports else []:
        if name not in em.ips:
            unparsed.append(("ip", name, "spec.subnet is not a string"))
    off_switch: set[str] = set()
    for name in draw(st.lists(st.sampled_from(sorted(em.ports)), max_size=1)) if em.ports else []:
        em.ports[name] = dataclasses.replace(em.ports[name], switch_uuid="")
        off_switch.add(name)

    # The snapshot the job would read.
    seen_vms = []
    if kubevirt is KubevirtState.READ:
        for v in vms_:
            if v.vm_exists:
                seen_vms.append(vm(v.namespace, v.name, kind=v.kind, multus=v.vm_nets.annotation(),
                                   spec_networks=v.vm_nets.spec))
            if v.vmi_exists:
                seen_vms.append(vm(v.namespace, v.name, kind=VMI_KIND, multus=v.vmi_nets.annotation(),
                                   spec_networks=v.vmi_nets.spec))
    all_pods = [*pods_, *(lp for v in vms_ for lp in v.launchers), *(sp for s in sts_ for _, sp in s.slots)]
    pod_objs = tuple(p.build() for p in all_pods if p.fate is not None)
    sts_objs = tuple(sts(s.namespace, s.name, s.replicas, start=s.start, uid=s.uid,
                         deleted=OLD if s.terminating else None) for s in sts_ if s.exists)
    ports = list(em.ports.values()) + foreign
    order = draw(st.permutations(range(len(ports)))) if draw(sometimes) else range(len(ports))
    snap = snapshot(
        kubevirt=kubevirt,
        ips=tuple(em.ips.values()),
        ports=tuple(ports[i] for i in order),
        pods=pod_objs,
        vms=tuple(seen_vms),
        statefulsets=sts_objs,
        nodes=tuple(node(n) for n, alive in nodes_alive.items() if alive),
        subnets=tuple(subnet(s, provider=SUBNETS[s]) for s, alive in subnets_alive.items() if alive),
        vips=tuple(vip(n, namespace=ns, subnet_name=sub, type=typ) for n, ns, sub, typ, alive in vips_ if alive),
        eips=tuple(eip(n, kind=kind) for n, kind, alive in eips_ if alive),
        unparsed=tuple(unparsed),
    )

    # Safety: what must never be selected. Completeness: the leaks the spec is unambiguous about.
    def vm_guard(name: str) -> str | None:
        if unreadable and any(o.vm_like for o in em.origins.get(name, ())):
            return "KubeVirt unreadable and this might be a VM's"
        return None

    must_ips: dict[str, str] = {}
    for name, cr in em.ips.items():
        why = (protected_ips.get(name) or truth.holder(name) or vm_guard(name)
               or (f"spec.podName names live Pod {cr.namespace}/{cr.pod_name}"
                   if f"{cr.namespace}/{cr.pod_name}" in truth.alive_pods else None))
        if why:
            protected_ips[name] = why
            continue
        origins = em.origins[name]
        if name not in edge and all(o.leaked and (not unreadable or o.unreadable_ok) for o in origins):
            must_ips[name] = "; ".join(o.what for o in origins)

    ip_names = set(em.ips) | {n for _, n, _ in unparsed}
    protected_ports: dict[str, str] = {}
    must_ports: dict[str, str] = {}
    for row in foreign:
        protected_ports[row.uuid] = f"foreign row (type {row.type!r}, vendor {row.external_id('vendor')!r})"
    for name, row in em.ports.items():
        pod_key = row.external_id("pod")
        why = ("its IP CR decides" if name in ip_names else None) or truth.holder(name) or vm_guard(name) or (
            f"pod external id names live Pod {pod_key}" if pod_key in truth.alive_pods else None)
        if why:
            protected_ports[row.uuid] = why
            continue
        origins = em.origins[name]
        if slot_doubt(sts_, pod_key):
            continue  # no IP CR to say podType: it may be a StatefulSet slot's, kept or not, the spec does not say
        if name not in off_switch and all(o.leaked and (not unreadable or o.unreadable_ok) for o in origins):
            must_ports[name] = "; ".join(o.what for o in origins)

    return Case(snap, keep_vm_ip, min_age, protected_ips, protected_ports, must_ips, must_ports)
