"""The simulated cluster: its users and workload controllers (the *world*) and kube-ovn-controller (the
*controller*), driven by one scheduler thread at a set rate of changes.

A *change* is one thing a user or a workload controller does: a Pod created or deleted, a VM created,
stopped, started, restarted, given an attachment or deleted, a StatefulSet scaled or re-created. Each
change then unfolds the way Kube-OVN handles it, step by step with delays between the steps (Kube-OVN
sources at v1.13.0 unless said otherwise):

- a Pod is created without addresses; the controller allocates them and writes the Pod's annotations,
  then the LSPs, then the IP CRs with their finalizer (``pkg/controller/pod.go``: ``reconcileAllocateSubnets``
  then ``reconcileRouteSubnets``, ``createOrUpdateIPCR``); VM launcher pods' addresses are named after the
  VM (``getNameByPod``) and an existing LSP / IP CR is updated, not re-created (a restarted VM);
- a deleted Pod's LSPs, then its IP CRs are deleted unless a VM or a StatefulSet slot still wants them
  (``handleDeletePod``: ``isVMToDel``, ``isStatefulSetPodToDel``, and the same-name-new-UID check); the
  finalizer of a deleted IP CR is then dropped after its LSP is removed and its IPAM released
  (``pkg/controller/ip.go``: ``handleDelIPFinalizer``, ``handleDelIP``); this is also what happens to an IP
  CR the job deletes;
- a stopped VM keeps its addresses; deleting a stopped VM fires no pod event: before v1.16 nothing cleans
  up (kube-ovn#5367, the seed case), from v1.16 ``pkg/controller/kubevirt.go`` ``handleDeleteVM`` deletes
  the IP CRs, then the LSPs — ``vm_leak_share`` picks between the two;
- Subnet statuses are recomputed after every IP CR change, coalesced per Subnet as the controller's work
  queue does (``pkg/controller/subnet.go`` ``calcSubnetStatusIP``: using = the IP CRs labelled with the
  subnet, terminating ones included; ranges from the IPAM), and written as a plain merge patch.

Faults: the controller *pauses* now and then (``pause_every``): while paused, Pod/VM delete events are
lost (leaks), add events wait, and queued steps wait; on resume it finishes the IP CRs left terminating
(as it does when it starts). A share of its status writes is lost (``status_loss``). A share of clean Pod
deletions is botched on purpose (``leak_share``): the LSP left behind (kube-ovn#5688), the IP CR left
behind, or the IPAM-only attachment's IP CR left behind.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.soak import ledger as lg
from bench.soak.audit import AuditedApi
from bench.soak.nb import NbClient, NbError

log = logging.getLogger(__name__)

FINALIZER = "kubeovn.io/kube-ovn-controller"
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NODES = ("node1", "node2")
POD_NAMESPACES = ("default", "team-a", "team-b")
VM_NAMESPACE = "vms"
STS_NAMESPACE = "db"
WORLD, CONTROLLER, TIMER = "world", "controller", "timer"
STATUS_EVERY = 0.2  # seconds between the controller's status queue runs


@dataclass(frozen=True)
class Net:
    provider: str
    subnet: str
    lsp: bool  # an IPAM-only attachment has an IP CR and no LSP

    def annotation(self, key: str) -> str:
        return f"{'ovn' if self.provider == 'ovn' else self.provider}.kubernetes.io/{key}"


NET_OVN = Net("ovn", "ovn-default", True)
NET_ATTACH = Net("attach1.default.ovn", "attach", True)  # a Kube-OVN NAD attachment: LSP + IP CR
NET_IPAM = Net("mac1.default", "mac1", False)  # macvlan with Kube-OVN IPAM: an IP CR only
SUBNETS = (
    lg.SubnetSpec("join", "100.64.0.0/16", "100.64.0.1"),
    lg.SubnetSpec("ovn-default", "10.16.0.0/16", "10.16.0.1"),
    lg.SubnetSpec("attach", "172.17.0.0/16", "172.17.0.1", provider=NET_ATTACH.provider),
    lg.SubnetSpec("mac1", "10.99.0.0/16", "10.99.0.1", provider=NET_IPAM.provider),
)
SWITCHES = ("join", "ovn-default", "attach")


def port_name(owner: str, namespace: str, provider: str) -> str:
    """Kube-OVN's ``PodNameToPortName`` (``pkg/ovs/util.go``)."""
    return f"{owner}.{namespace}" if provider == "ovn" else f"{owner}.{namespace}.{provider}"


def mac_for(address: str) -> str:
    a, b, c, d = (int(x) for x in address.split("."))
    return f"00:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass
class Config:
    rate: float = 50.0  # changes per second
    pods: int = 500  # plain pods the churn keeps around
    vms: int = 30
    statefulsets: int = 4
    max_replicas: int = 4
    pause_every: float = 30.0  # mean seconds between controller pauses; 0: never
    pause_seconds: tuple[float, float] = (1.0, 2.0)
    status_loss: float = 0.1  # share of the controller's status writes that are lost
    leak_share: float = 0.03  # share of clean pod deletions botched on purpose
    vm_leak_share: float = 0.5  # share of stopped-VM deletions nobody cleans up (Kube-OVN < 1.16)
    attach_share: float = 0.3  # pods with a NAD attachment
    ipam_share: float = 0.2  # pods with an IPAM-only attachment


@dataclass(eq=False)
class PodState:
    ns: str
    name: str
    owner: str  # the name in its addresses: itself, or the VM of a launcher pod
    nets: tuple[Net, ...]
    pod_type: str = ""
    owner_ref: dict[str, Any] | None = None
    deleted: bool = False

    @property
    def holder(self) -> str:
        return f"pod:{self.ns}/{self.name}"

    def names(self) -> list[tuple[Net, str]]:
        return [(net, port_name(self.owner, self.ns, net.provider)) for net in self.nets]


@dataclass(eq=False)
class VmState:
    ns: str
    name: str
    attach: bool = False
    running: bool = False
    deleted: bool = False
    launcher: PodState | None = None

    @property
    def holder(self) -> str:
        return f"vm:{self.ns}/{self.name}"

    @property
    def nets(self) -> tuple[Net, ...]:
        return (NET_OVN, NET_ATTACH) if self.attach else (NET_OVN,)

    def names(self) -> list[str]:
        return [port_name(self.name, self.ns, net.provider) for net in self.nets]


@dataclass(eq=False)
class StsState:
    ns: str
    name: str
    uid: str
    replicas: int
    deleted: bool = False

    def slot_name(self, ordinal: int) -> str:
        return f"{self.name}-{ordinal}.{self.ns}"

    def slot_holder(self, ordinal: int) -> str:
        return f"slot:{self.ns}/{self.name}/{ordinal}"


@dataclass
class Stats:
    changes: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    lost_events: int = 0
    lost_status_writes: int = 0
    status_writes: int = 0
    pauses: int = 0
    pause_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    max_lag: float = 0.0


class World:
    """The cluster and its kube-ovn-controller. All state is touched by the scheduler thread only; other
    threads talk to it through :meth:`ip_deleted` (a queue)."""

    def __init__(self, api: AuditedApi, nb: NbClient, ledger: lg.Ledger, config: Config, rng: random.Random) -> None:
        self.api, self.nb, self.ledger, self.cfg, self.rng = api, nb, ledger, config, rng
        self.stats = Stats()
        self._heap: list[tuple[float, int, str, Callable[[], None]]] = []  # (due, seq, kind, step)
        self._seq = itertools.count()
        self._inbox: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._churning = False
        self._next_tick = 0.0
        self._paused_until = 0.0
        self._deferred: list[Callable[[], None]] = []
        self.status_writes_off = False
        self.pause_windows: list[tuple[float, float]] = []
        # the world
        self.pods: dict[tuple[str, str], PodState] = {}
        self.plain: list[PodState] = []
        self.vms: dict[tuple[str, str], VmState] = {}
        self.stss: dict[str, StsState] = {}
        # the controller's memory: IPAM, its LSPs, the IP CRs per subnet (its lister), dirty subnets
        self.addr_of: dict[str, tuple[str, str]] = {}
        self.used: dict[str, set[str]] = {s.name: set() for s in SUBNETS}
        self.port_uuid: dict[str, str] = {}
        self.controller_deleted: set[str] = set()  # LSP UUIDs the controller deleted (for the port watch)
        self.ipcrs: dict[str, dict[str, str]] = {s.name: {} for s in SUBNETS}
        self.dirty: set[str] = set()

    # --- the scheduler -------------------------------------------------------------------------------

    def at(self, delay: float, fn: Callable[[], None], *, kind: str = WORLD) -> None:
        """Run ``fn`` in ``delay`` seconds: a world step, a controller step (held while paused) or a timer."""
        heapq.heappush(self._heap, (time.time() + delay, next(self._seq), kind, fn))

    def soon(self, low: float, high: float, fn: Callable[[], None]) -> None:
        """A controller step, ``low`` to ``high`` seconds from now."""
        self.at(self.rng.uniform(low, high), fn, kind=CONTROLLER)

    @property
    def paused(self) -> bool:
        return time.time() < self._paused_until

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="soak-world", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def start_churn(self) -> None:
        self._inbox.put(("churn", "on"))

    def stop_churn(self) -> None:
        """No more changes and no more pauses; a paused controller resumes now."""
        self._inbox.put(("churn", "off"))

    def ip_deleted(self, name: str) -> None:
        """Another client (the job) deleted IP CR ``name``: the controller's informer event."""
        self._inbox.put(("ip-deleted", name))

    def drained(self) -> bool:
        """No controller work left (queued, deferred or in the inbox), churn off."""
        return (not self._churning and self._inbox.empty() and not self._deferred and not self.paused
                and not any(item[2] != TIMER for item in self._heap) and not self.dirty)

    def _loop(self) -> None:
        next_flush = time.time() + STATUS_EVERY
        while not self._stop.is_set():
            if time.time() >= next_flush and not self.paused:
                next_flush = time.time() + STATUS_EVERY
                self._step(self._flush_status)
            while True:
                try:
                    kind, arg = self._inbox.get_nowait()
                except queue.Empty:
                    break
                self._message(kind, arg)
            now = time.time()
            if not self._heap or self._heap[0][0] > now:
                wait = min(0.01, self._heap[0][0] - now) if self._heap else 0.01
                time.sleep(max(wait, 0.0005))
                continue
            due, _, kind, fn = heapq.heappop(self._heap)
            self.stats.max_lag = max(self.stats.max_lag, now - due)
            if kind == CONTROLLER and self.paused:
                self._deferred.append(fn)
                continue
            self._step(fn)

    def _step(self, fn: Callable[[], None]) -> None:
        try:
            fn()
            self.stats.steps += 1
        except Exception as exc:  # a soak bug, not a job bug: recorded, reported, fails the soak
            log.exception("world step failed")
            self.stats.errors.append(f"{getattr(fn, '__qualname__', fn)}: {exc!r}")

    def _message(self, kind: str, arg: str) -> None:
        if kind == "churn":
            on = arg == "on"
            if on and not self._churning:
                self._churning = True
                self._next_tick = time.time()
                self.at(0.0, self._tick, kind=TIMER)
                if self.cfg.pause_every:
                    self.at(self.rng.expovariate(1 / self.cfg.pause_every), self._pause, kind=TIMER)
            elif not on:
                self._churning = False
                if self.paused:
                    self._paused_until = time.time()
                    self._resume()
        elif kind == "ip-deleted":
            if self.paused:
                return  # picked up by the resync when the controller resumes
            self.soon(0.05, 0.3, lambda: self._finalize(arg))

    # --- churn ----------------------------------------------------------------------------------------

    def _tick(self) -> None:
        if not self._churning:
            return
        # Poisson arrivals on the schedule's own clock, not from whenever this tick ran: a loop that
        # fell behind catches up, so the rate over the soak is the rate asked for.
        self._next_tick += self.rng.expovariate(self.cfg.rate)
        self.at(self._next_tick - time.time(), self._tick, kind=TIMER)
        kinds, weights = self._weights()
        kind = self.rng.choices(kinds, weights)[0]
        getattr(self, f"change_{kind}")()
        self.stats.changes[kind] += 1

    def _weights(self) -> tuple[list[str], list[float]]:
        cfg = self.cfg
        pods = len(self.plain)
        vms = [v for v in self.vms.values() if not v.deleted]
        running = sum(v.running for v in vms)
        w = {
            "pod_create": 30 * max(0.1, 2 - pods / cfg.pods),
            "pod_delete": 30 * pods / cfg.pods,
            "vm_create": 2 * max(0.1, 2 - len(vms) / cfg.vms),
            "vm_delete": 2 * len(vms) / cfg.vms,
            "vm_stop": 2.5 if running else 0,
            "vm_start": 2.5 if len(vms) > running else 0,
            "vm_restart": 1.5 if running else 0,
            "vm_attach": 0.5 if any(not v.attach for v in vms) else 0,
            "sts_scale": 5,
            "sts_recreate": 0.5,
        }
        return list(w), list(w.values())

    def _suffix(self, n: int = 5) -> str:
        while True:
            s = "".join(self.rng.choices(ALPHABET, k=n))
            if not s.isdigit():
                return s

    # --- set-up -----------------------------------------------------------------------------------------

    def setup(self) -> None:
        for spec in SUBNETS:
            self.api.create("subnets", {
                "apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                "metadata": {"name": spec.name, "finalizers": [FINALIZER]},
                "spec": {"cidrBlock": spec.cidr, "gateway": spec.gateway, "excludeIps": [spec.gateway],
                         "protocol": "IPv4", "provider": spec.provider, "vpc": "ovn-cluster"},
                "status": {},
            })
            self.used[spec.name].add(spec.gateway)
        for switch in SWITCHES:
            self.nb.transact([{"op": "insert", "table": "Logical_Switch",
                               "row": {"name": switch, "external_ids": ["map", [["vendor", "kube-ovn"]]]}}])
        for node in NODES:
            self.api.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": node, "annotations": {"ovn.kubernetes.io/allocated": "true"}}})
            name = f"node-{node}"
            self.ledger.live.hold(name, f"node:{node}")
            address = self._allocate(name, "join")
            self._lsp_upsert(name, "join", None, address)
            self._ip_upsert(name, "join", address, pod_name=node, namespace="", pod_type="", node=node)
        for i in range(self.cfg.statefulsets):
            self._sts_create(f"db{i}", self.rng.randint(1, self.cfg.max_replicas))

    def populate(self) -> None:
        """Create the steady population (run before the scheduler starts)."""
        for _ in range(self.cfg.pods):
            self.change_pod_create()
        for _ in range(self.cfg.vms):
            self.change_vm_create()

    # --- the world's changes -------------------------------------------------------------------------

    def change_pod_create(self) -> None:
        nets = [NET_OVN]
        if self.rng.random() < self.cfg.attach_share:
            nets.append(NET_ATTACH)
        if self.rng.random() < self.cfg.ipam_share:
            nets.append(NET_IPAM)
        ns = self.rng.choice(POD_NAMESPACES)
        name = f"web{self.rng.randint(1, 9)}-{self._suffix(5)}-{self._suffix(5)}"
        pod = PodState(ns, name, name, tuple(nets))
        self._create_pod(pod)
        self.plain.append(pod)

    def change_pod_delete(self) -> None:
        if self.plain:
            pod = self.plain.pop(self.rng.randrange(len(self.plain)))
            self._delete_pod(pod)

    def _create_pod(self, pod: PodState) -> None:
        annotations: dict[str, str] = {}
        networks = [f"default/{n.provider.split('.')[0]}" for n in pod.nets if n is not NET_OVN]
        if networks:
            annotations["k8s.v1.cni.cncf.io/networks"] = ",".join(networks)
        self.api.create("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.ns, "annotations": annotations,
                         "ownerReferences": [pod.owner_ref] if pod.owner_ref else []},
            "spec": {"nodeName": self.rng.choice(NODES), "restartPolicy": "Always",
                     "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        }, namespace=pod.ns)
        for _, name in pod.names():
            self.ledger.live.hold(name, pod.holder)
        self.pods[(pod.ns, pod.name)] = pod
        self.pod_added(pod)

    def _delete_pod(self, pod: PodState) -> None:
        for _, name in pod.names():
            self.ledger.live.release(name, pod.holder)
        self.api.delete("pods", pod.name, pod.ns)
        pod.deleted = True
        if self.pods.get((pod.ns, pod.name)) is pod:
            del self.pods[(pod.ns, pod.name)]
        self.pod_deleted(pod, time.time())

    # VMs

    def _vm_manifest_networks(self, vm: VmState) -> list[dict[str, Any]]:
        nets: list[dict[str, Any]] = [{"name": "default", "pod": {}}]
        if vm.attach:
            nets.append({"name": "att", "multus": {"networkName": "default/attach1"}})
        return nets

    def change_vm_create(self) -> None:
        vm = VmState(VM_NAMESPACE, f"vm-{self._suffix(6)}", attach=self.rng.random() < 0.25)
        self.api.create("virtualmachines", {
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": vm.name, "namespace": vm.ns},
            "spec": {"runStrategy": "Halted", "template": {"metadata": {}, "spec": {
                "networks": self._vm_manifest_networks(vm)}}},
            "status": {"printableStatus": "Stopped"},
        }, namespace=vm.ns)
        for name in vm.names():
            self.ledger.live.hold(name, vm.holder)
        self.vms[(vm.ns, vm.name)] = vm
        self._vm_start(vm)

    def _pick_vm(self, running: bool | None) -> VmState | None:
        vms = [v for v in self.vms.values() if not v.deleted and (running is None or v.running == running)]
        return self.rng.choice(vms) if vms else None

    def _vm_update(self, vm: VmState) -> None:
        obj = self.api.get("virtualmachines", vm.name, vm.ns)
        assert obj is not None
        obj["spec"]["runStrategy"] = "Always" if vm.running else "Halted"
        obj["spec"]["template"]["spec"]["networks"] = self._vm_manifest_networks(vm)
        obj["status"] = {"printableStatus": "Running" if vm.running else "Stopped"}
        self.api.put("virtualmachines", obj)

    def _vm_start(self, vm: VmState) -> None:
        vm.running = True
        self._vm_update(vm)
        self.at(self.rng.uniform(0.05, 0.2), lambda: self._launch(vm))

    def _launch(self, vm: VmState) -> None:
        """KubeVirt: the VMI, then its launcher pod (addresses named after the VM)."""
        if vm.deleted or not vm.running or vm.launcher is not None:
            return
        vmi = self.api.create("virtualmachineinstances", {
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": vm.name, "namespace": vm.ns, "ownerReferences": [
                {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": vm.name, "uid": "vm",
                 "controller": True}]},
            "spec": {"networks": self._vm_manifest_networks(vm)},
        }, namespace=vm.ns)
        ref = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": vm.name,
               "uid": vmi["metadata"]["uid"], "controller": True}
        pod = PodState(vm.ns, f"virt-launcher-{vm.name}-{self._suffix(5)}", vm.name, vm.nets,
                       pod_type="VirtualMachine", owner_ref=ref)
        vm.launcher = pod
        self._create_pod(pod)

    def _vm_halt(self, vm: VmState) -> None:
        vm.running = False
        self._vm_update(vm)
        self._vm_unlaunch(vm)

    def _vm_unlaunch(self, vm: VmState) -> None:
        if vm.launcher is not None:
            self.api.delete("virtualmachineinstances", vm.name, vm.ns)
            pod, vm.launcher = vm.launcher, None
            self._delete_pod(pod)

    def change_vm_stop(self) -> None:
        vm = self._pick_vm(True)
        if vm is not None:
            self._vm_halt(vm)

    def change_vm_start(self) -> None:
        vm = self._pick_vm(False)
        if vm is not None:
            self._vm_start(vm)

    def change_vm_restart(self) -> None:
        vm = self._pick_vm(True)
        if vm is not None:
            self._vm_unlaunch(vm)
            self.at(self.rng.uniform(0.1, 0.5), lambda: self._launch(vm))

    def change_vm_attach(self) -> None:
        """An attachment added to a VM's template; a running VM is restarted to get it."""
        vms = [v for v in self.vms.values() if not v.deleted and not v.attach]
        if not vms:
            return
        vm = self.rng.choice(vms)
        vm.attach = True
        self._vm_update(vm)
        for name in vm.names():
            self.ledger.live.hold(name, vm.holder)
        if vm.running:
            self._vm_unlaunch(vm)
            self.at(self.rng.uniform(0.1, 0.5), lambda: self._launch(vm))

    def change_vm_delete(self) -> None:
        vm = self._pick_vm(None)
        if vm is None:
            return
        for name in vm.names():
            self.ledger.live.release(name, vm.holder)
        self.api.delete("virtualmachines", vm.name, vm.ns)
        vm.deleted = True
        del self.vms[(vm.ns, vm.name)]
        if vm.launcher is not None:
            self._vm_unlaunch(vm)  # the launcher pod's delete event cleans up (or is lost)
        else:
            self.vm_deleted(vm, time.time())

    # StatefulSets

    def _sts_create(self, name: str, replicas: int) -> None:
        obj = self.api.create("statefulsets", {
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": STS_NAMESPACE},
            "spec": {"replicas": replicas, "serviceName": name},
        }, namespace=STS_NAMESPACE)
        sts = StsState(STS_NAMESPACE, name, obj["metadata"]["uid"], replicas)
        self.stss[name] = sts
        for ordinal in range(replicas):
            self._slot_up(sts, ordinal)

    def _slot_up(self, sts: StsState, ordinal: int) -> None:
        name = sts.slot_name(ordinal)
        self.ledger.live.hold(name, sts.slot_holder(ordinal))
        self.ledger.reclaimed(name, time.time())
        self.at(self.rng.uniform(0.3, 0.6), lambda: self._sts_pod(sts, ordinal))

    def _sts_pod(self, sts: StsState, ordinal: int) -> None:
        """The StatefulSet controller creates the slot's pod."""
        pod_name = f"{sts.name}-{ordinal}"
        if sts.deleted or ordinal >= sts.replicas or (sts.ns, pod_name) in self.pods:
            return
        ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts.name, "uid": sts.uid, "controller": True}
        self._create_pod(PodState(sts.ns, pod_name, pod_name, (NET_OVN,), pod_type="StatefulSet", owner_ref=ref))

    def _sts_write(self, sts: StsState) -> None:
        obj = self.api.get("statefulsets", sts.name, sts.ns)
        assert obj is not None
        obj["spec"]["replicas"] = sts.replicas
        self.api.put("statefulsets", obj)

    def change_sts_scale(self) -> None:
        live = [s for s in self.stss.values() if not s.deleted]
        if not live:
            return
        sts = self.rng.choice(live)
        up = sts.replicas == 0 or (sts.replicas < self.cfg.max_replicas and self.rng.random() < 0.5)
        if up:
            sts.replicas += 1
            self._sts_write(sts)
            self._slot_up(sts, sts.replicas - 1)
            return
        ordinal = sts.replicas - 1
        self.ledger.live.release(sts.slot_name(ordinal), sts.slot_holder(ordinal))
        sts.replicas -= 1
        self._sts_write(sts)

        def remove_pod() -> None:
            pod = self.pods.get((sts.ns, f"{sts.name}-{ordinal}"))
            if pod is not None and not sts.deleted and ordinal >= sts.replicas:
                self._delete_pod(pod)

        self.at(self.rng.uniform(0.02, 0.1), remove_pod)

    def change_sts_recreate(self) -> None:
        live = [s for s in self.stss.values() if not s.deleted]
        if not live:
            return
        sts = self.rng.choice(live)
        for ordinal in range(sts.replicas):
            self.ledger.live.release(sts.slot_name(ordinal), sts.slot_holder(ordinal))
        self.api.delete("statefulsets", sts.name, sts.ns)
        sts.deleted = True
        for ordinal in range(sts.replicas):
            pod = self.pods.get((sts.ns, f"{sts.name}-{ordinal}"))
            if pod is not None:
                self._delete_pod(pod)
        replicas = sts.replicas
        self.at(self.rng.uniform(0.5, 2.0), lambda: self._sts_create(sts.name, replicas))

    # --- controller faults -----------------------------------------------------------------------------

    def _pause(self) -> None:
        if not self._churning:
            return
        seconds = self.rng.uniform(*self.cfg.pause_seconds)
        self._paused_until = time.time() + seconds
        self.stats.pauses += 1
        self.stats.pause_seconds += seconds
        self.pause_windows.append((time.time(), self._paused_until))
        self.at(seconds, self._resume)
        self.at(seconds + self.rng.expovariate(1 / self.cfg.pause_every), self._pause, kind=TIMER)

    def _resume(self) -> None:
        if self.paused:
            return
        deferred, self._deferred = self._deferred, []
        for fn in deferred:
            self.soon(0.0, 0.1, fn)
        # as at start-up: IP CRs left terminating are finished
        for ip in self.api.list("ips"):
            if ip["metadata"].get("deletionTimestamp"):
                name = ip["metadata"]["name"]
                self.soon(0.0, 0.2, lambda name=name: self._finalize(name))

    # --- kube-ovn-controller: events -------------------------------------------------------------------

    def pod_added(self, pod: PodState) -> None:
        self.soon(0.02, 0.08, lambda: self._annotate(pod))  # waits in the queue while paused

    def pod_deleted(self, pod: PodState, gone: float) -> None:
        if self.paused:
            self.stats.lost_events += 1
            self._plant_dead(pod.names(), lg.CONTROLLER_DOWN, gone)
            return
        self.soon(0.02, 0.2, lambda: self._cleanup_pod(pod, gone))

    def vm_deleted(self, vm: VmState, gone: float) -> None:
        """A stopped VM deleted: no pod event."""
        names = [(net, port_name(vm.name, vm.ns, net.provider)) for net in vm.nets]
        if self.paused:
            self.stats.lost_events += 1
            self._plant_dead(names, lg.CONTROLLER_DOWN, gone)
        elif self.rng.random() < self.cfg.vm_leak_share:
            self._plant_dead(names, lg.VM_STOPPED_DELETED, gone)
        else:
            self.soon(0.02, 0.2, lambda: self._cleanup_vm(names))

    # --- kube-ovn-controller: steps ---------------------------------------------------------------------

    def _allocate(self, name: str, subnet: str) -> str:
        if name in self.addr_of and self.addr_of[name][0] == subnet:
            return self.addr_of[name][1]
        spec = next(s for s in SUBNETS if s.name == subnet)
        base = spec.cidr.split("/")[0].rsplit(".", 2)[0]
        while True:
            address = f"{base}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
            if address not in self.used[subnet]:
                break
        self.used[subnet].add(address)
        self.addr_of[name] = (subnet, address)
        self.ledger.assign(name, subnet, address)
        return address

    def _release(self, name: str) -> None:
        got = self.addr_of.pop(name, None)
        if got is not None:
            self.used[got[0]].discard(got[1])
            self.ledger.unassign(name)

    def _annotate(self, pod: PodState) -> None:
        if pod.deleted:
            return
        addresses = {net: self._allocate(name, net.subnet) for net, name in pod.names()}
        obj = self.api.get("pods", pod.name, pod.ns)
        if obj is None:
            return
        annotations = obj["metadata"].setdefault("annotations", {})
        for net, address in addresses.items():
            annotations.update({net.annotation("allocated"): "true", net.annotation("ip_address"): address,
                                net.annotation("mac_address"): mac_for(address),
                                net.annotation("logical_switch"): net.subnet})
        self.api.put("pods", obj)
        self.soon(0.01, 0.04, lambda: self._ports(pod, addresses))

    def _ports(self, pod: PodState, addresses: dict[Net, str]) -> None:
        if pod.deleted:
            return
        for net, name in pod.names():
            if net.lsp:
                self._lsp_upsert(name, net.subnet, f"{pod.ns}/{pod.owner}", addresses[net])
        self.soon(0.01, 0.04, lambda: self._ip_crs(pod, addresses, pod.names()))

    def _ip_crs(self, pod: PodState, addresses: dict[Net, str], todo: list[tuple[Net, str]]) -> None:
        if pod.deleted:
            return
        later: list[tuple[Net, str]] = []
        node = self.rng.choice(NODES)
        for net, name in todo:
            if not self._ip_upsert(name, net.subnet, addresses[net], pod_name=pod.owner, namespace=pod.ns,
                                   pod_type=pod.pod_type, node=node):
                later.append((net, name))
        if later:  # terminating (the job deleted it): written again once it is gone
            self.soon(0.1, 0.2, lambda: self._ip_crs(pod, addresses, later))

    def _cleanup_pod(self, pod: PodState, gone: float) -> None:
        """``handleDeletePod``: the LSPs, then the IP CRs, of every address no live owner still wants."""
        dead = [(net, name) for net, name in pod.names() if not self.ledger.live.alive(name)]
        if not dead:
            return  # a VM that still exists, a StatefulSet slot still wanted, a new pod of the same name
        botch = None
        if self.rng.random() < self.cfg.leak_share:
            kinds = [lg.LSP_ONLY, lg.IP_CR_ONLY] + ([lg.IPAM_ONLY] if any(not n.lsp for n, _ in dead) else [])
            botch = self.rng.choice(kinds)
        for net, name in dead:
            if botch == lg.IPAM_ONLY and not net.lsp:
                self._plant(lg.IPAM_ONLY, name, gone)
                continue
            if net.lsp and botch != lg.LSP_ONLY:
                self._lsp_delete(name)
            if botch == lg.IP_CR_ONLY and net.lsp:
                self._plant(lg.IP_CR_ONLY, name, gone)
                continue
            self._ip_delete(name, leave_port=botch == lg.LSP_ONLY and net.lsp)

    def _cleanup_vm(self, names: list[tuple[Net, str]]) -> None:
        """v1.16 ``handleDeleteVM``: the IP CRs, then the LSPs."""
        for net, name in names:
            if self.ledger.live.alive(name):
                continue
            self._ip_delete(name, leave_port=False)
            if net.lsp:
                self._lsp_delete(name)

    def _ip_delete(self, name: str, *, leave_port: bool) -> None:
        self.ledger.cleaned("ip", name, time.time())
        if self.api.delete("ips", name) is not None:
            self.soon(0.01, 0.05, lambda: self._finalize(name, leave_port=leave_port))

    def _finalize(self, name: str, *, leave_port: bool = False) -> None:
        """A terminating IP CR: its LSP removed, IPAM released, finalizer dropped, status recomputed."""
        obj = self.api.get("ips", name)
        if obj is None or not obj["metadata"].get("deletionTimestamp"):
            return
        if not leave_port:
            self._lsp_delete(name)
        self.api.remove_finalizers("ips", name)
        subnet = obj["spec"]["subnet"]
        self.ipcrs.get(subnet, {}).pop(name, None)
        self.dirty.add(subnet)
        if not self.ledger.live.alive(name):
            self._release(name)
        if leave_port:
            self._plant(lg.LSP_ONLY, name, time.time())

    def _flush_status(self) -> None:
        """The controller's status queue: each dirty Subnet recomputed and written (or the write lost)."""
        dirty, self.dirty = self.dirty, set()
        for subnet in sorted(dirty):
            if self.status_writes_off or self.rng.random() < self.cfg.status_loss:
                self.stats.lost_status_writes += 1
                continue
            spec = next(s for s in SUBNETS if s.name == subnet)
            held = sorted(self.used[subnet] - {spec.gateway})  # the IPAM: its ranges
            status = lg.expected_status(spec, held)
            using = len(self.ipcrs[subnet])  # the IP CRs labelled with the subnet: its counts
            status["v4availableIPs"] = max(0, status["v4availableIPs"] + len(held) - using)
            status["v4usingIPs"] = using
            self.api.merge_status("subnets", subnet, status)
            self.stats.status_writes += 1

    # --- leaks -----------------------------------------------------------------------------------------

    def _plant_dead(self, names: list[tuple[Net, str]], kind: str, gone: float) -> None:
        for _, name in names:
            if not self.ledger.live.alive(name):
                self._plant(kind, name, gone)

    def _plant(self, kind: str, name: str, gone: float) -> None:
        """What is left of ``name`` is a leak: its IP CR (the LSP goes with it), else its LSP."""
        obj = self.api.get("ips", name)
        if obj is not None:
            if not obj["metadata"].get("deletionTimestamp"):
                self.ledger.plant(kind, "ip", name, gone, parse_time(obj["metadata"]["creationTimestamp"]))
            return
        if self._lsp_lookup(name) is not None:
            self.ledger.plant(kind, "port", name, gone)

    # --- NB and IP CR writes -----------------------------------------------------------------------------

    def _lsp_lookup(self, name: str) -> str | None:
        rows = self.nb.transact([{"op": "select", "table": "Logical_Switch_Port", "where": [["name", "==", name]],
                                  "columns": ["_uuid"]}])[0]["rows"]
        return str(rows[0]["_uuid"][1]) if rows else None

    def _lsp_upsert(self, name: str, switch: str, pod_key: str | None, address: str) -> None:
        ext = [["ls", switch], ["vendor", "kube-ovn"]] + ([["pod", pod_key]] if pod_key else [])
        row = {"type": "", "external_ids": ["map", sorted(ext)], "addresses": f"{mac_for(address)} {address}"}
        try:
            res = self.nb.transact([
                {"op": "wait", "timeout": 0, "table": "Logical_Switch_Port", "where": [["name", "==", name]],
                 "columns": ["name"], "until": "==", "rows": []},
                {"op": "insert", "table": "Logical_Switch_Port", "row": {"name": name, **row}, "uuid-name": "p"},
                {"op": "mutate", "table": "Logical_Switch", "where": [["name", "==", switch]],
                 "mutations": [["ports", "insert", ["set", [["named-uuid", "p"]]]]]},
            ])
            self.port_uuid[name] = str(res[1]["uuid"][1])
        except NbError:  # it exists (a VM's port, a slot's port, a retried insert that was committed)
            self.nb.transact([{"op": "update", "table": "Logical_Switch_Port", "where": [["name", "==", name]],
                               "row": row}])
            uuid = self._lsp_lookup(name)
            if uuid is not None:
                self.port_uuid[name] = uuid

    def _lsp_delete(self, name: str) -> None:
        uuid = self.port_uuid.pop(name, None) or self._lsp_lookup(name)
        if uuid is None:
            return
        self.ledger.cleaned("port", name, time.time())
        self.controller_deleted.add(uuid)
        self.nb.transact([{"op": "mutate", "table": "Logical_Switch", "where": [],
                           "mutations": [["ports", "delete", ["set", [["uuid", uuid]]]]]}])

    def _ip_upsert(self, name: str, subnet: str, address: str, *, pod_name: str, namespace: str, pod_type: str,
                   node: str) -> bool:
        """``createOrUpdateIPCR``; False while an IP CR of that name is terminating."""
        spec = {"podName": pod_name, "namespace": namespace, "subnet": subnet, "attachSubnets": [],
                "nodeName": node, "ipAddress": address, "v4IpAddress": address, "v6IpAddress": "",
                "macAddress": mac_for(address), "containerID": "", "podType": pod_type}
        labels = {"ovn.kubernetes.io/subnet": subnet, "ovn.kubernetes.io/node-name": node, subnet: ""}
        old = self.api.get("ips", name)
        if old is not None:
            if old["metadata"].get("deletionTimestamp"):
                return False
            old["spec"] = spec
            old["metadata"]["labels"] = labels
            self.api.put("ips", old)
        else:
            self.api.create("ips", {"apiVersion": "kubeovn.io/v1", "kind": "IP",
                                    "metadata": {"name": name, "labels": labels, "finalizers": [FINALIZER]},
                                    "spec": spec})
        self.ipcrs[subnet][name] = address
        self.dirty.add(subnet)
        return True
