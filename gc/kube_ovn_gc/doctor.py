"""Doctor: what disagrees between NB, the IP CRs, the Subnets and their owners. Pure, read-only.

One snapshot in, findings out. Each finding has a kind, the objects involved, a
one-line message and a one-line remedy (the exact command where one exists).
Leaks and status drift come from the planner ``check`` uses
(:func:`plan.plan`, :func:`plan.plan_statuses`), never re-derived here; the
rest is the reverse check (DESIGN.md §1, §4, §5):

- ``missing``: a live owner whose port or IP CR is absent — an allocated pod
  (one name per provider; IPAM-only providers have no port), a VM with only
  one of the two (a stopped VM keeps both; a VM that never ran has neither),
  an allocated Node;
- ``mismatch``: an IP CR and the port of the same name disagree (MAC,
  addresses, switch vs ``spec.subnet``, the ``pod`` external id vs the owner);
- ``duplicate-address``: two IP CRs, or two ports, hold one address in one subnet;
- ``stuck``: IP CRs and Subnets terminating for longer than a threshold (a
  Subnet only while its using count or something in it holds it up);
- ``unjudged``: what the planner cannot judge (unparsable objects).

The NB read comes before the Kubernetes read, so a port or IP CR written in
between can look missing or mismatched: :func:`cross_check` on a second read
and :func:`confirm` keep only what both reads show.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeVar

from . import names, status
from . import plan as planner
from .model import (
    IpCR,
    KubevirtState,
    OwnerKey,
    Pod,
    PodNetwork,
    Port,
    PortName,
    Snapshot,
    Subnet,
    VirtualMachine,
    owner_key,
)
from .report import ExitCode
from .status import Addr

LEAKED_IP = "leaked-ip"
LEAKED_PORT = "leaked-port"
STATUS_DRIFT = "status-drift"
MISSING = "missing"
MISMATCH = "mismatch"
DUPLICATE = "duplicate-address"
STUCK = "stuck"
UNJUDGED = "unjudged"
KINDS: tuple[str, ...] = (LEAKED_IP, LEAKED_PORT, STATUS_DRIFT, MISSING, MISMATCH, DUPLICATE, STUCK, UNJUDGED)
RECHECKED: frozenset[str] = frozenset({MISSING, MISMATCH, DUPLICATE})
"""Kinds that compare the NB read with the later Kubernetes read: confirmed on a second read."""

RESTART_CONTROLLER = "kubectl -n kube-system rollout restart deployment/kube-ovn-controller"
GC_RUN = "kube-ovn-gc run"
_NO_ADDRESS = frozenset({"unknown", "dynamic", "router"})
_MAX_LISTED = 5  # objects named in one message; JSON ``objects`` lists them all
_MAX_PATCH = 240  # longer status patches are left to ``kube-ovn-gc run``
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    """One object a finding involves; ``missing`` marks one that should exist and does not."""

    kind: str  # IP, LSP, Pod, VirtualMachine, Node, Subnet, Vip, IptablesEIP, OvnEip
    name: str
    namespace: str = ""
    missing: bool = False

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}" + (" (missing)" if self.missing else "")

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.missing:
            out["missing"] = True
        return out


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    objects: tuple[Ref, ...]
    message: str
    remedy: str

    @property
    def key(self) -> tuple[str, tuple[Ref, ...]]:
        return self.kind, self.objects

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "objects": [o.as_json() for o in self.objects], "message": self.message,
                "remedy": self.remedy}


# --- addresses ----------------------------------------------------------------


def port_entries(port: Port) -> list[tuple[str, frozenset[Addr]]]:
    """The concrete ``"MAC IP [IP...]"`` entries of a port's ``addresses`` as (mac, addresses).

    ``unknown``, ``router``, ``dynamic`` and ``MAC dynamic`` entries say nothing to compare with,
    nor does an entry with a token that is not an address: they are left out.
    """
    out: list[tuple[str, frozenset[Addr]]] = []
    for entry in port.addresses:
        tokens = entry.split()
        if not tokens or tokens[0] in _NO_ADDRESS or any(t in _NO_ADDRESS for t in tokens[1:]):
            continue
        parsed = [status.parse_address(t) for t in tokens[1:]]
        addrs = frozenset(a for a in parsed if a is not None)
        if len(addrs) == len(parsed):
            out.append((tokens[0].lower(), addrs))
    return out


def ip_addresses(ip: IpCR) -> frozenset[Addr]:
    return frozenset(a for a in (status.parse_address(ip.v4), status.parse_address(ip.v6)) if a is not None)


def _fmt(addrs: Iterable[Addr]) -> str:
    return ",".join(status.format_address(family, value) for family, value in sorted(addrs)) or "none"


def _human(delta: dt.timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else (f"{hours}h{minutes:02d}m" if hours else f"{minutes}m")


def _flag(delta: dt.timedelta) -> str:
    """A duration as a command-line value: ``1h``, ``90m``, ``2d``, ``45s``."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


_NO_PODS: Mapping[str, Pod] = MappingProxyType({})
T = TypeVar("T")


def _vm_owner(pod: Pod) -> str | None:
    for ref in pod.meta.owners:
        if ref.kind == "VirtualMachineInstance":
            return ref.name
    return None


# --- the index ------------------------------------------------------------------


class _World:
    """One snapshot indexed for the reverse checks, and the owner-specific remedies."""

    def __init__(self, snapshot: Snapshot, policy: planner.Policy, leaked: frozenset[str]) -> None:
        kube = snapshot.kube
        self.kube = kube
        self.policy = policy
        self.leaked = leaked  # names of the IP CRs and ports the planner would remove
        # Indexes by the names the objects already hold (no key strings of their own, no list a port): at 150k
        # addresses these are ~25 MB, not ~60.
        self.ips: dict[str, IpCR] = {ip.meta.name: ip for ip in kube.ips}
        self.unparsed_ips = frozenset(n for kind, n, _ in kube.unparsed if planner.skip_kind(kind) == planner.SKIP_IP)
        self.ports: dict[str, Port] = {}  # the first port of each name
        self.more_ports: dict[str, list[Port]] = {}  # the others, rare
        for port in snapshot.nb.ports:
            first = self.ports.setdefault(port.name, port)
            if first is not port:
                self.more_ports.setdefault(port.name, []).append(port)
        self.candidates = [p for p in snapshot.nb.ports if planner.is_candidate_port(p)]
        self.pods: dict[str, dict[str, Pod]] = {}  # by namespace, then name
        for p in kube.pods:
            self.pods.setdefault(p.meta.namespace, {})[p.meta.name] = p
        self.subnets: dict[str, Subnet] = {s.meta.name: s for s in kube.subnets}
        self.vms: dict[OwnerKey, VirtualMachine] = {v.meta.key: v for v in kube.vms if v.kind == "VirtualMachine"}
        self.vmis: frozenset[OwnerKey] = frozenset(v.meta.key for v in kube.vms if v.kind != "VirtualMachine")
        self.launchers: dict[OwnerKey, Pod] = {}
        for pod in kube.pods:
            vm = _vm_owner(pod)
            if vm is not None:
                self.launchers.setdefault(owner_key(pod.meta.namespace, vm), pod)

    def has_ip(self, name: str) -> bool:
        return name in self.ips or name in self.unparsed_ips

    def ports_named(self, name: str) -> list[Port]:
        first = self.ports.get(name)
        return [] if first is None else [first, *self.more_ports.get(name, ())]

    def pod(self, namespace: str, name: str) -> Pod | None:
        return self.pods.get(namespace, _NO_PODS).get(name)

    def same_name(self, name: str) -> str:
        """``name``, as the IP CR or port of that name holds it when there is one: a set of names taken so
        holds no string of its own for them."""
        ip = self.ips.get(name)
        if ip is not None:
            return ip.meta.name
        port = self.ports.get(name)
        return name if port is None else port.name

    def has_port(self, name: str) -> bool:
        return name in self.ports

    def attachment_has_port(self, net: PodNetwork) -> bool:
        """Kube-OVN attachments have a port; IPAM-only ones only an IP CR (:func:`names.attachment_has_port`)."""
        subnet = self.subnets.get(net.logical_switch) if net.logical_switch else None
        return names.attachment_has_port(net.provider, subnet.provider if subnet is not None else None)

    def renew_ip(self, ip: IpCR) -> str:
        """The command that makes Kube-OVN hand this IP CR's owner a fresh address (and port)."""
        name = ip.meta.name
        if name in self.leaked:
            return GC_RUN
        infra = planner.infrastructure_owner(name, ip.namespace, ip.pod_name, ip.node_name,
                                             [(r.kind, r.name) for r in ip.meta.owners])
        if infra is not None:
            return self.renew_infrastructure(name, *infra)
        return self.renew_owner(ip.namespace, ip.pod_name, fallback=f"kubectl delete ip {name}", ip_name=name)

    def renew_port(self, port: Port) -> str:
        ip = self.ips.get(port.name)
        if ip is not None:
            return self.renew_ip(ip)
        if port.name in self.leaked:
            return GC_RUN
        ns, slash, owner = port.external_id("pod").partition("/")
        infra = planner.infrastructure_owner(port.name, ns if slash else "", owner if slash else "")
        if infra is not None:
            return self.renew_infrastructure(port.name, *infra)
        fallback = f"kubectl ko nbctl lsp-del {port.name}"
        return self.renew_owner(ns, owner, fallback=fallback) if slash and ns and owner else fallback

    def renew_infrastructure(self, name: str, kind: str, owner: str) -> str:
        """Fresh addresses for a Node's or a Subnet's own address; deleting its IP CR would cut the owner off.

        A Node's ``node-<n>`` (FQDN names too) is written again by the controller at start (``handleAddNode``
        for every Node, pkg/controller/node.go). A Subnet's querier and U2O addresses follow its spec
        (``enableMulticastSnoop``, ``u2oInterconnection``: pkg/apis/kubeovn/v1 ``SubnetSpec``, types.go in
        v1.12.0-v1.13.0, subnet.go in v1.14.0-v1.16.0; the querier from v1.13.0 on). Switched off, the
        controller releases the address: IPAM, ``status.mcastQuerierIP``/``status.u2oInterconnectionIP``, the
        IP CR, then the querier's port (``releaseMcastQuerierIP`` + ``handleMcastQuerierChange``,
        ``releaseU2OIP``, pkg/controller/subnet.go v1.13.0-v1.16.0; v1.12.0 ``reconcileU2OInterconnectionIP``);
        switched on with an empty status it allocates both again from one allocation (``acquireMcastQuerierIP``,
        ``acquireU2OIP``). Each switch is one event: the second patch waits for the first to be acted on, or
        the controller may only see "on" with the old status and allocate nothing. kubectl cannot wait for a
        field to become empty (1.32: "jsonpath wait has to have a value after equal sign"), so it waits for
        the IP CR, which the release deletes just before it empties the status (a status-only change is no
        event: ``enqueueUpdateSubnet`` compares spec fields, v1.14.0). A querier port whose IP CR is already
        gone gives the wait nothing to wait for: run the doctor again after it. Switched off already, Kube-OVN
        releases nothing more (only while the status still names the address) and never wants it again: both
        are deleted outright.
        """
        if kind == "Node":
            return f"{RESTART_CONTROLLER}  # it re-creates node-{owner} when it starts"
        spec_field, status_field = next(v for prefix, v in _FEATURES.items() if name.startswith(prefix))
        subnet = self.subnets.get(owner)
        wanted = subnet is not None and (subnet.multicast_snoop if spec_field == "enableMulticastSnoop"
                                         else subnet.u2o_interconnection)
        if wanted:
            return (f"{_subnet_patch(owner, spec_field, False)} && kubectl wait --for=delete ip/{name} --timeout=2m"
                    f" && {_subnet_patch(owner, spec_field, True)}  # kube-ovn releases {name} (IP CR, "
                    f"status.{status_field}, port) and allocates both again")
        parts = [*((f"kubectl delete ip {name}",) if self.has_ip(name) else ()),
                 *((f"kubectl ko nbctl --if-exists lsp-del {name}",) if self.has_port(name) else ())]
        return " && ".join(parts) + f"  # spec.{spec_field} is off on Subnet {owner}: nothing uses {name} any more"

    def renew_owner(self, namespace: str, name: str, *, fallback: str, ip_name: str = "") -> str:
        """Re-create the owner ``namespace/name``; owners that keep their address across a restart (a VM with
        keep-vm-ip, a StatefulSet pod) release their IP CR ``ip_name`` first, or they get the same one back."""
        release = f"kubectl delete ip {ip_name} && " if ip_name else ""
        key = owner_key(namespace, name)
        if self.policy.keep_vm_ip and key in self.vms:
            if key in self.vmis or key in self.launchers:
                return f"{release}virtctl restart {name} -n {namespace}"
            return fallback  # a stopped VM: it gets a fresh address and port at its next start
        pod = self.pod(namespace, name)
        if pod is not None:
            vm = _vm_owner(pod)
            if vm is not None:
                return f"virtctl restart {vm} -n {namespace}"  # keep-vm-ip off: named after this pod
            sticky = any(ref.kind == "StatefulSet" for ref in pod.meta.owners)
            return f"{release if sticky else ''}kubectl delete pod -n {namespace} {name}"
        return fallback


_FEATURES = {  # prefix -> (spec field, status field) of the Subnet feature that owns such an address
    names.MCAST_PREFIX: ("enableMulticastSnoop", "mcastQuerierIP"),
    names.U2O_PREFIX: ("u2oInterconnection", "u2oInterconnectionIP"),
}


def _subnet_patch(subnet: str, spec_field: str, on: bool) -> str:
    """A merge patch: kube-apiserver answers 415 to kubectl's default strategic merge patch on a custom resource."""
    return f"kubectl patch subnet {subnet} --type=merge -p '{{\"spec\":{{\"{spec_field}\":{str(on).lower()}}}}}'"


# --- from the planner: leaks, drift, what it cannot judge ------------------------------------


_SKIP_KINDS = {planner.SKIP_IP: "IP", planner.SKIP_PORT: "LSP", planner.SKIP_SUBNET_STATUS: "Subnet",
               "virtualmachine": "VirtualMachine", "virtualmachineinstance": "VirtualMachineInstance"}
"""A skip's kind (:func:`plan.skip_kind`, lower case) as a :class:`Ref` spells it (the Kind)."""


def _ref_of_skip(skip: planner.Skip) -> Ref:
    kind = _SKIP_KINDS.get(skip.kind, skip.kind)
    ns, slash, name = skip.name.partition("/")
    return Ref(kind, name, ns) if slash else Ref(kind, skip.name)


def _unjudged_remedy(ref: Ref) -> str:
    if ref.kind == "IP":
        return f"kubectl get ip {ref.name} -o yaml  # fix or delete it by hand; the GC leaves it alone"
    if ref.kind == "LSP":
        return f"kubectl ko nbctl list logical_switch_port {ref.name}  # fix or delete it by hand"
    if ref.kind == "Subnet":
        return f"kubectl get subnet {ref.name} -o yaml  # check cidrBlock, gateway and excludeIps"
    ns = f" -n {ref.namespace}" if ref.namespace else ""
    return f"kubectl get {ref.kind.lower()} {ref.name}{ns} -o yaml  # fix the unreadable field"


def _status_patch(action: planner.StatusAction) -> str:
    body = json.dumps({"status": {k: action.after[k] for k in action.changed}}, separators=(",", ":"))
    return f"kubectl patch subnet {action.subnet.meta.name} --subresource=status --type=merge -p '{body}'"


def _from_plan(snapshot: Snapshot, policy: planner.Policy) -> tuple[list[Finding], frozenset[str]]:
    the_plan = planner.plan(snapshot, policy)
    port_names = {p.name for p in snapshot.nb.ports}
    out: list[Finding] = []
    for a in the_plan.ips:
        ip = a.ip
        refs = (Ref("IP", ip.meta.name), *((Ref("LSP", ip.meta.name),) if ip.meta.name in port_names else ()))
        where = f"{ip.subnet} {_fmt(ip_addresses(ip))}"
        out.append(Finding(LEAKED_IP, refs, f"IP CR {ip.meta.name} ({where}): {a.reason}",
                           f"{GC_RUN}, or: kubectl delete ip {ip.meta.name}"))
    for p in the_plan.ports:
        port = p.port
        out.append(Finding(LEAKED_PORT, (Ref("LSP", port.name),),
                           f"port {port.name} on switch {port.switch} (no IP CR): {p.reason}",
                           f"{GC_RUN}, or: kubectl ko nbctl lsp-del {port.name}"))
    released = [a.ip.meta.name for a in the_plan.ips]
    leaked_subnets = {a.ip.subnet for a in the_plan.ips} | {s for a in the_plan.ips for s in a.ip.attach_subnets}
    statuses = planner.plan_statuses(snapshot.kube, released)
    for s in statuses.actions:
        name = s.subnet.meta.name
        detail = s.reason.removeprefix("status drift: ")
        if name in leaked_subnets:
            message = f"Subnet {name} status disagrees with its addresses once the leaks are gone: {detail}"
            remedy = GC_RUN
        else:
            message = f"Subnet {name} status disagrees with its addresses: {detail}"
            patch = _status_patch(s)
            remedy = f"{GC_RUN}, or: {patch}" if len(patch) <= _MAX_PATCH else GC_RUN
        out.append(Finding(STATUS_DRIFT, (Ref("Subnet", name),), message, remedy))
    for skip in (*the_plan.skipped, *statuses.skipped):
        ref = _ref_of_skip(skip)
        out.append(Finding(UNJUDGED, (ref,), f"{ref} cannot be judged: {skip.reason}", _unjudged_remedy(ref)))
    leaked = frozenset(a.ip.meta.name for a in the_plan.ips) | frozenset(p.port.name for p in the_plan.ports)
    return out, leaked


# --- missing ----------------------------------------------------------------------


def _expects_addresses(pod: Pod, policy: planner.Policy) -> bool:
    """A live, settled pod with at least one ``allocated`` network (a Pending one without it expects nothing)."""
    if pod.host_network or pod.meta.deletion is not None or not pod.networks:
        return False
    if pod.meta.creation is not None and policy.now - pod.meta.creation < policy.min_age:
        return False  # may be mid-allocation; and the NB read came before it
    return planner.pod_liveness(pod, policy.now).alive


def _lacks(w: _World, name: str, want_port: bool) -> tuple[Ref, ...]:
    lacks: list[Ref] = []
    if not w.has_ip(name):
        lacks.append(Ref("IP", name, missing=True))
    if want_port and not w.has_port(name):
        lacks.append(Ref("LSP", name, missing=True))
    return tuple(lacks)


def _what(lacks: Sequence[Ref], name: str) -> str:
    """``IP CR x does not exist``, ``IP CR and port x do not exist``."""
    verb = "do not exist" if len(lacks) > 1 else "does not exist"
    return f"{' and '.join('IP CR' if r.kind == 'IP' else 'port' for r in lacks)} {name} {verb}"


def _vm_names(vm: VirtualMachine) -> list[PortName]:
    """The base names a VM's addresses carry (keep-vm-ip on); unreadable networks give none."""
    ns, name = vm.meta.namespace, vm.meta.name
    out: list[PortName] = []
    if not any(default for _, default in vm.spec_networks):
        out.append(names.port_name(name, ns))
    for raw in vm.multus_networks:
        try:
            selections = names.parse_network_selection(raw, ns)
        except ValueError:
            continue  # reported as unjudged by the planner
        out.extend(names.port_name(name, ns, names.nad_provider(n, nns)) for nns, n, _ in selections)
    for network_name, _ in vm.spec_networks:
        nns, n = names.split_network_name(network_name, ns)
        out.append(names.port_name(name, ns, names.nad_provider(n, nns)))
    return list(dict.fromkeys(out))


def _missing(w: _World) -> list[Finding]:
    out: list[Finding] = []
    seen: set[str] = set()
    for pod in w.kube.pods:
        if not _expects_addresses(pod, w.policy):
            continue
        ns, vm = pod.meta.namespace, _vm_owner(pod)
        owner = vm if vm is not None and w.policy.keep_vm_ip else pod.meta.name
        for net in pod.networks:
            name = names.port_name(owner, ns, net.provider)
            if name in seen:  # two launcher pods of one VM (migration) share a name
                continue
            seen.add(w.same_name(name))
            lacks = _lacks(w, name, w.attachment_has_port(net))
            if not lacks:
                continue
            where = net.logical_switch or ("the default network" if net.provider == "ovn" else net.provider)
            message = f"Pod {pod.meta.key} is allocated on {where} but its {_what(lacks, name)}"
            if vm is not None:
                remedy = f"virtctl restart {vm} -n {ns}  # kube-ovn allocates again for the new launcher pod"
            elif any(r.controller for r in pod.meta.owners):
                remedy = f"kubectl delete pod -n {ns} {pod.meta.name}  # its controller re-creates it"
            else:
                remedy = f"kubectl delete pod -n {ns} {pod.meta.name}  # then re-create it (no controller owns it)"
            out.append(Finding(MISSING, (Ref("Pod", pod.meta.name, ns), *lacks), message, remedy))

    if w.policy.keep_vm_ip and w.kube.kubevirt is KubevirtState.READ:
        for key, machine in w.vms.items():
            if machine.meta.deletion is not None:
                continue
            running = key in w.vmis
            for name in _vm_names(machine):
                if name in seen or w.has_ip(name) == w.has_port(name):
                    continue  # both: fine; neither: never started, or the launcher pod is not allocated yet
                seen.add(name)
                lacks = _lacks(w, name, True)
                state = "running" if running else "stopped"
                message = f"VirtualMachine {key} ({state}) has only half of its addresses: {_what(lacks, name)}"
                ns, vm_name = machine.meta.namespace, machine.meta.name
                if running:
                    remedy = f"virtctl restart {vm_name} -n {ns}  # kube-ovn allocates again for the new launcher pod"
                else:
                    remedy = f"virtctl start {vm_name} -n {ns}  # kube-ovn re-creates it when the launcher pod starts"
                out.append(Finding(MISSING, (Ref("VirtualMachine", vm_name, ns), *lacks), message, remedy))

    for node in w.kube.nodes:
        if not node.allocated:
            continue
        name = names.node_port_name(node.name)
        lacks = _lacks(w, name, True)
        if lacks:
            out.append(Finding(
                MISSING, (Ref("Node", node.name), *lacks),
                f"Node {node.name} is allocated (ovn.kubernetes.io/allocated) but its {_what(lacks, name)}",
                f"{RESTART_CONTROLLER}  # it re-creates node ports and IP CRs when it starts"))
    return out


# --- mismatch ---------------------------------------------------------------------


def _differences(ip: IpCR, port: Port) -> list[str]:
    diffs: list[str] = []
    entries = port_entries(port)
    if entries and ip.mac and all(mac != ip.mac.lower() for mac, _ in entries):
        diffs.append(f"MAC {ip.mac} (IP CR) vs {', '.join(mac for mac, _ in entries)} (port)")
    mine = ip_addresses(ip)
    theirs = [addrs for _, addrs in entries if addrs]
    if mine and theirs and all(addrs != mine for addrs in theirs):
        diffs.append(f"address {_fmt(mine)} (IP CR) vs {' | '.join(_fmt(a) for a in theirs)} (port)")
    if port.switch and port.switch != ip.subnet:
        diffs.append(f"switch {port.switch} (port) vs spec.subnet {ip.subnet} (IP CR)")
    pod_ref = port.external_id("pod")
    workload = ip.pod_type in ("", planner.STS_POD_TYPE, planner.VM_POD_TYPE)
    special = planner.infrastructure_owner(ip.meta.name, ip.namespace, ip.pod_name, ip.node_name) is not None
    if pod_ref and ip.namespace and ip.pod_name and workload and not special:
        expected = f"{ip.namespace}/{ip.pod_name}"
        if pod_ref != expected:
            diffs.append(f"pod {pod_ref} (port external id) vs {expected} (IP CR)")
    return diffs


def _mismatch(w: _World) -> list[Finding]:
    out: list[Finding] = []
    done: set[str] = set()
    for port in w.candidates:
        ip = w.ips.get(port.name)
        if ip is None or ip.meta.deletion is not None or port.name in done:
            continue
        done.add(port.name)
        diffs: list[str] = []
        for same in w.ports_named(port.name):
            if planner.is_candidate_port(same):
                diffs.extend(d for d in _differences(ip, same) if d not in diffs)
        if diffs:
            remedy = w.renew_ip(ip)
            if remedy != GC_RUN and "  # " not in remedy:
                remedy += "  # kube-ovn writes both again from one allocation"
            out.append(Finding(MISMATCH, (Ref("IP", ip.meta.name), Ref("LSP", port.name)),
                               f"IP CR and port {port.name} disagree: {'; '.join(diffs)}", remedy))
    return out


# --- duplicate addresses ----------------------------------------------------------


def _dup_remedy(w: _World, ips: Sequence[IpCR], ports: Sequence[Port]) -> str:
    leaked = sorted({n for n in (*(i.meta.name for i in ips), *(p.name for p in ports)) if n in w.leaked})
    if leaked:
        return f"{GC_RUN}  # removes the leaked {', '.join(leaked)}"
    if ips:
        newest = max(ips, key=lambda i: (i.meta.creation or _EPOCH, i.meta.name))
        return _note(w.renew_ip(newest), f"the newest holder, {newest.meta.name}, gives the address up")
    ordered = sorted(ports, key=lambda p: (w.has_ip(p.name), p.name))
    return _note(w.renew_port(ordered[0]), f"{ordered[0].name} gives the address up")


def _note(remedy: str, note: str) -> str:
    """``remedy  # note``; a remedy with a comment of its own keeps it, the note follows after ``; ``."""
    return f"{remedy}; {note}" if "  # " in remedy else f"{remedy}  # {note}"


_V6: Final = 1 << 128  # above every IPv4 and IPv6 address: (family, value) as one int


def _held_twice(holders: Callable[[], Iterable[tuple[str, frozenset[Addr], T]]]) -> dict[tuple[str, Addr], list[T]]:
    """``(where, address)`` -> its holders, for the addresses held more than once: what a dict of every address's
    holders (each appended in turn) would hold for them, in the same order.

    Every address is indexed once, by an int in a dict per subnet or switch, with its first holder: ~80 bytes
    an address where a tuple key and a list each took ~250 (~70 MB more at 150k IP CRs and ports)."""
    first: dict[str, dict[int, T]] = {}
    twice: dict[tuple[str, Addr], list[T]] = {}
    for where, addresses, holder in holders():
        known = first.setdefault(where, {})
        for family, value in addresses:
            key = value if family == 4 else value | _V6
            if key in known:
                twice.setdefault((where, (family, value)), [known[key]]).append(holder)
            else:
                known[key] = holder
    if len(twice) < 2:
        return twice
    # in the order each address was first held (a second, rare, pass)
    order: dict[tuple[str, Addr], list[T]] = {}
    for where, addresses, _ in holders():
        for addr in addresses:
            held = twice.get((where, addr))
            if held is not None:
                order.setdefault((where, addr), held)
    return order


def _duplicates(w: _World) -> list[Finding]:
    def held_by_ips() -> Iterator[tuple[str, frozenset[Addr], IpCR]]:
        return ((ip.subnet, ip_addresses(ip), ip) for ip in w.kube.ips if ip.meta.deletion is None)

    def held_by_ports() -> Iterator[tuple[str, frozenset[Addr], Port]]:
        return ((port.switch, frozenset[Addr]().union(*(addrs for _, addrs in port_entries(port))), port)
                for port in w.candidates if port.switch)

    by_ip, by_port = _held_twice(held_by_ips), _held_twice(held_by_ports)

    # One finding per set of holders: a dual-stack pair shares both addresses.
    ip_sets: dict[tuple[str, tuple[str, ...]], tuple[list[IpCR], list[Addr]]] = {}
    for (subnet, addr), holders in by_ip.items():
        if len(holders) > 1:
            key = (subnet, tuple(sorted(i.meta.name for i in holders)))
            ip_sets.setdefault(key, (holders, []))[1].append(addr)
    port_sets: dict[tuple[str, tuple[str, ...]], tuple[list[Port], list[Addr]]] = {}
    for (switch, addr), held in by_port.items():
        if len(held) > 1:
            key = (switch, tuple(sorted(p.name for p in held)))
            port_sets.setdefault(key, (held, []))[1].append(addr)

    out: list[Finding] = []
    for (subnet, ip_names), (ips, addrs) in ip_sets.items():
        same_ports = port_sets.pop((subnet, ip_names), None)
        ports = same_ports[0] if same_ports else []
        refs = (*(Ref("IP", n) for n in ip_names), *(Ref("LSP", n) for n in sorted(p.name for p in ports)))
        also = " (and their ports)" if ports else ""
        message = f"address {_fmt(addrs)} in subnet {subnet} is held by {len(ip_names)} IP CRs{also}: " + \
            _listed(ip_names)
        out.append(Finding(DUPLICATE, refs, message, _dup_remedy(w, ips, ports)))
    for (switch, port_names), (ports, addrs) in port_sets.items():
        message = f"address {_fmt(addrs)} on switch {switch} is held by {len(port_names)} ports: " + \
            _listed(port_names)
        out.append(Finding(DUPLICATE, tuple(Ref("LSP", n) for n in port_names), message,
                           _dup_remedy(w, [], ports)))
    return out


# --- stuck ------------------------------------------------------------------------


def _stuck_ips(w: _World, stuck_after: dt.timedelta) -> list[Finding]:
    out: list[Finding] = []
    for s in planner.stuck_ips(w.kube, w.policy, stuck_after):
        name = s.ip.meta.name
        finalizers = ", ".join(s.ip.meta.finalizers) or "none"
        message = (f"IP CR {name} has been terminating for {_human(s.terminating_for)} "
                   f"(finalizers: {finalizers}): kube-ovn-controller is not finishing it")
        if s.leaked:
            remedy = (f"{GC_RUN} --release-stuck-after {_flag(stuck_after)}  # drops Kube-OVN's finalizer of "
                      "a leaked IP CR (or restart kube-ovn-controller)")
        else:
            remedy = f"{RESTART_CONTROLLER}  # it finishes terminating IP CRs when it starts"
        refs = (Ref("IP", name), *((Ref("LSP", name),) if w.has_port(name) else ()))
        out.append(Finding(STUCK, refs, message, remedy))
    return out


def _count(text: str) -> int:
    try:
        return int(float(text)) if text.strip() else 0
    except ValueError:
        return 0


def _holders(w: _World, subnet: str) -> list[tuple[Ref, str | None]]:
    """What keeps a Subnet's using count up, with the command that frees each (None: a leak)."""
    out: list[tuple[Ref, str | None]] = []
    for ip in w.kube.ips:
        if ip.meta.deletion is None and (ip.subnet == subnet or subnet in ip.attach_subnets):
            name = ip.meta.name
            key = owner_key(ip.namespace, ip.pod_name)
            if name in w.leaked:
                cmd = None
            elif w.policy.keep_vm_ip and key in w.vms:
                cmd = f"kubectl delete vm -n {ip.namespace} {ip.pod_name}"
            elif w.pod(ip.namespace, ip.pod_name) is not None:
                cmd = f"kubectl delete pod -n {ip.namespace} {ip.pod_name}"
            else:
                cmd = f"kubectl delete ip {name}"
            out.append((Ref("IP", name), cmd))
    for vip in w.kube.vips:
        if vip.reserved_label == "" and vip.subnet_label == subnet:
            out.append((Ref("Vip", vip.meta.name), f"kubectl delete vips {vip.meta.name}"))
    for eip in w.kube.eips:
        if eip.subnet_label == subnet:
            plural = "ovn-eips" if eip.kind == "OvnEip" else "iptables-eips"
            out.append((Ref(eip.kind, eip.meta.name), f"kubectl delete {plural} {eip.meta.name}"))
    return sorted(out, key=lambda holder: holder[0])


def _stuck_subnet(w: _World, subnet: Subnet, age: dt.timedelta) -> Finding | None:
    name = subnet.meta.name
    stored = max(_count(subnet.status_value("v4usingIPs")), _count(subnet.status_value("v6usingIPs")))
    holders = _holders(w, name)
    if not stored and not holders:
        return None  # another finalizer holds it: not an address problem
    head = f"Subnet {name} has been terminating for {_human(age)}; its deletion waits for usingIPs {stored} to reach 0"
    if not holders:
        patch = ("kubectl patch subnet " + name + " --subresource=status --type=merge "
                 "-p '{\"status\":{\"v4usingIPs\":0,\"v6usingIPs\":0}}'")
        return Finding(STUCK, (Ref("Subnet", name),), f"{head}, but nothing uses it any more",
                       f"{GC_RUN}, or: {patch}")
    refs = tuple(ref for ref, _ in holders)
    message = f"{head}: still used by {_listed([str(r) for r in refs])}"
    live = list(dict.fromkeys(cmd for _, cmd in holders if cmd is not None))
    if not live:
        return Finding(STUCK, (Ref("Subnet", name), *refs), message,
                       f"{GC_RUN}  # removes the leaked addresses that hold it")
    leaks = f"{GC_RUN}; then " if any(cmd is None for _, cmd in holders) else ""
    more = f"; … {len(live) - 3} more (see objects)" if len(live) > 3 else ""
    return Finding(STUCK, (Ref("Subnet", name), *refs), message,
                   f"{leaks}move or delete what still uses it: {'; '.join(live[:3])}{more}")


def _stuck(w: _World, stuck_after: dt.timedelta) -> list[Finding]:
    out = _stuck_ips(w, stuck_after)
    for subnet in w.kube.subnets:
        deletion = subnet.meta.deletion
        if deletion is not None and w.policy.now - deletion >= stuck_after:
            finding = _stuck_subnet(w, subnet, w.policy.now - deletion)
            if finding is not None:
                out.append(finding)
    return out


# --- the whole examination ---------------------------------------------------------


def _ordered(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (KINDS.index(f.kind), f.objects)))


def examine(snapshot: Snapshot, policy: planner.Policy, stuck_after: dt.timedelta) -> tuple[Finding, ...]:
    """Every finding of the snapshot, ordered by kind, then by the objects involved."""
    findings, leaked = _from_plan(snapshot, policy)
    w = _World(snapshot, policy, leaked)
    findings += _missing(w) + _mismatch(w) + _duplicates(w) + _stuck(w, stuck_after)
    return _ordered(findings)


def cross_check(snapshot: Snapshot, policy: planner.Policy) -> tuple[Finding, ...]:
    """Only the :data:`RECHECKED` kinds (their remedies are not computed with leaks in mind)."""
    w = _World(snapshot, policy, frozenset())
    return _ordered(_missing(w) + _mismatch(w) + _duplicates(w))


def confirm(first: Iterable[Finding], second: Iterable[Finding]) -> tuple[Finding, ...]:
    """``first`` without the :data:`RECHECKED` findings a second read no longer shows."""
    again = {f.key for f in second}
    return tuple(f for f in first if f.kind not in RECHECKED or f.key in again)


def needs_second_read(findings: Iterable[Finding]) -> bool:
    return any(f.kind in RECHECKED for f in findings)


# --- the report ----------------------------------------------------------------------


def outcome(findings: Sequence[Finding], complete: bool) -> ExitCode:
    if not complete:
        return ExitCode.INCOMPLETE
    return ExitCode.FOUND if findings else ExitCode.OK


@dataclass(frozen=True)
class DoctorReport:
    exit_code: int
    started_at: dt.datetime
    duration_seconds: float
    inventory: dict[str, int]
    findings: tuple[Finding, ...] = ()
    error: str | None = None  # what stopped the examination: it did not run, nothing else is reported
    warnings: tuple[str, ...] = ()
    settings: dict[str, object] = field(default_factory=dict)
    cluster: dict[str, object] | None = None  # ClusterIdentity.as_json(): which cluster was examined

    def counts(self) -> dict[str, int]:
        c = Counter(f.kind for f in self.findings)
        return {k: c[k] for k in KINDS if c[k]}

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "exit_code": self.exit_code,
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
        }
        if self.error:  # did not run: what stopped it, and nothing else (as a pass's report, report.Report)
            out["error"] = self.error
            return out
        out |= {
            "inventory": self.inventory,
            "counts": self.counts(),
            "findings": [f.as_json() for f in self.findings],
        }
        if self.settings:
            out["settings"] = self.settings
        out["cluster"] = self.cluster or {"uid": None, "server": None}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def to_json(self) -> str:
        return json.dumps(self.as_json(), indent=2, default=str, ensure_ascii=False)

    def summary(self) -> str:
        if self.error:  # one line, whatever the error's own text (a YAML parser's runs over several)
            return f"did not run: {' '.join(self.error.split())} → exit {self.exit_code}"
        inv = self.inventory
        read = (f"read {inv.get('logical_switch_ports', 0)} ports, {inv.get('ips', 0)} IPs, "
                f"{inv.get('pods', 0)} pods, {inv.get('nodes', 0)} nodes, {inv.get('virtual_machines', 0)} VMs, "
                f"{inv.get('subnets', 0)} subnets")
        if self.findings:
            head = f"{len(self.findings)} findings: " + ", ".join(f"{n} {k}" for k, n in self.counts().items())
        else:
            head = "consistent: nothing found"
        return f"{head} ({read}) in {self.duration_seconds:.1f}s → exit {self.exit_code}"

    def to_text(self) -> str:
        if self.error:  # what stopped it, and nothing else: no zero counts of reads that did not happen
            return self.summary() + "\n"
        lines: list[str] = []
        lines.extend(f"WARNING: {w}" for w in self.warnings)
        by_kind: defaultdict[str, list[Finding]] = defaultdict(list)
        for f in self.findings:
            by_kind[f.kind].append(f)
        for kind in KINDS:
            group = by_kind.get(kind)
            if not group:
                continue
            lines.append(f"{kind} ({len(group)})")
            for f in group:
                lines.append(f"  {f.message}")
                lines.append(f"    fix: {f.remedy}")
        lines.append(self.summary())
        return "\n".join(lines) + "\n"
