"""Frozen snapshots of what one pass reads, and the names that must not be mixed.

Everything here is plain data: adapters build it, ``plan`` reads it. Only the
fields the decisions need are kept, so a 100k-object cluster stays small; what
many objects have alike (an owner reference, a timestamp, a pod's attachments,
a finalizer list) is one shared object (see :mod:`kube_ovn_gc.kube.parse`).

Measured at 150k addresses (bench cluster, ``sys.getsizeof`` over the object
graph, shared objects counted once): a Pod ~360 B (was ~790 B with its
resourceVersion, nodeName and each attachment's address and MAC, none of which
any rule reads), an IP CR ~640 B, a Port ~590 B.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum
from typing import NewType

PortName = NewType("PortName", str)
"""An LSP name, which is also the IP CR name: ``<owner>.<ns>[.<provider>]``."""

OwnerKey = NewType("OwnerKey", str)
"""``<namespace>/<name>`` of a Kubernetes object that may own addresses."""

PortUUID = NewType("PortUUID", str)

STATUS_FIELDS: tuple[str, ...] = (
    "v4availableIPs",
    "v4usingIPs",
    "v4availableIPrange",
    "v4usingIPrange",
    "v6availableIPs",
    "v6usingIPs",
    "v6availableIPrange",
    "v6usingIPrange",
)


def owner_key(namespace: str, name: str) -> OwnerKey:
    return OwnerKey(f"{namespace}/{name}")


@dataclass(frozen=True, slots=True)
class OwnerRef:
    kind: str
    name: str
    uid: str = ""
    api_version: str = ""
    controller: bool = False


# --- OVN Northbound -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Port:
    """One ``Logical_Switch_Port`` row with the switch that holds it."""

    uuid: PortUUID
    name: PortName
    type: str
    external_ids: tuple[tuple[str, str], ...]
    addresses: tuple[str, ...]
    switch: str  # name of the Logical_Switch whose ``ports`` holds it ("" if none)
    switch_uuid: str = ""

    def external_id(self, key: str) -> str:
        for k, v in self.external_ids:
            if k == key:
                return v
        return ""


@dataclass(frozen=True, slots=True)
class NbSnapshot:
    ports: tuple[Port, ...]
    switch_count: int = 0


# --- Kubernetes -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    """Which cluster a pass talked to: the uid of namespace ``kube-system`` (created once with the cluster
    and never re-created: the de facto cluster id; OpenTelemetry's semantic conventions define
    ``k8s.cluster.uid`` as exactly this, since Kubernetes has no cluster id of its own), and the API
    server's URL, for people (one cluster has several URLs; the uid decides)."""

    uid: str | None  # None: could not be read (no RBAC for it, an older report)
    server: str

    def as_json(self) -> dict[str, object]:
        return {"uid": self.uid, "server": self.server}


@dataclass(frozen=True, slots=True)
class Meta:
    name: str
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    creation: dt.datetime | None = None
    deletion: dt.datetime | None = None
    finalizers: tuple[str, ...] = ()
    owners: tuple[OwnerRef, ...] = ()

    @property
    def key(self) -> OwnerKey:
        return owner_key(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class IpCR:
    meta: Meta
    pod_name: str
    namespace: str
    subnet: str
    attach_subnets: tuple[str, ...]
    node_name: str
    v4: str
    v6: str
    mac: str
    pod_type: str  # "", "StatefulSet", "VirtualMachine"
    reserved: bool  # label ovn.kubernetes.io/ip_reserved == "true"

    @property
    def name(self) -> PortName:
        return PortName(self.meta.name)


@dataclass(frozen=True, slots=True)
class Subnet:
    meta: Meta
    cidr: str  # "10.16.0.0/16" or "10.16.0.0/16,fd00::/64"
    protocol: str
    gateway: str
    exclude_ips: tuple[str, ...]
    provider: str
    status: tuple[tuple[str, str], ...]  # the eight STATUS_FIELDS as strings, as stored
    # spec.enableMulticastSnoop and spec.u2oInterconnection (v1.12.0-v1.16.0 pkg/apis/kubeovn/v1 SubnetSpec):
    # whether the Subnet wants its mcast-querier / u2o-interconnection address (the doctor's remedies)
    multicast_snoop: bool = False
    u2o_interconnection: bool = False

    def status_value(self, key: str) -> str:
        for k, v in self.status:
            if k == key:
                return v
        return ""


@dataclass(frozen=True, slots=True)
class PodNetwork:
    """One ``<provider>.kubernetes.io/allocated: "true"`` attachment of a pod: its provider and logical switch
    (the address and MAC annotations decide nothing: the IP CR and the port say them)."""

    provider: str
    logical_switch: str = ""


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod as the decisions see it. ``meta.resource_version`` is not kept (no rule reads a pod's), nor is
    ``spec.nodeName``."""

    meta: Meta
    phase: str
    reason: str
    restart_policy: str
    host_network: bool
    grace_period: int | None  # metadata.deletionGracePeriodSeconds
    networks: tuple[PodNetwork, ...]


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    uid: str = ""
    allocated: bool = False  # annotation ovn.kubernetes.io/allocated == "true": node-<name> port and IP exist


@dataclass(frozen=True, slots=True)
class StatefulSet:
    meta: Meta
    replicas: int
    ordinals_start: int


@dataclass(frozen=True, slots=True)
class VirtualMachine:
    """A KubeVirt VM or VMI: the networks it asks for, whatever its run state."""

    meta: Meta
    kind: str  # "VirtualMachine" or "VirtualMachineInstance"
    multus_networks: tuple[str, ...]  # template annotation k8s.v1.cni.cncf.io/networks, raw
    spec_networks: tuple[tuple[str, bool], ...]  # (multus networkName, default)


@dataclass(frozen=True, slots=True)
class Vip:
    meta: Meta
    subnet: str
    namespace: str  # spec.namespace
    type: str
    v4: str
    v6: str
    subnet_label: str
    reserved_label: str | None  # value of ovn.kubernetes.io/ip_reserved, None if absent


@dataclass(frozen=True, slots=True)
class Eip:
    """An IptablesEIP or OvnEip: counted as used in the subnet it is labelled with."""

    meta: Meta
    kind: str  # "IptablesEIP" or "OvnEip"
    type: str
    v4: str
    v6: str
    subnet_label: str


class KubevirtState(Enum):
    ABSENT = "absent"  # the API is not served: there are no VMs
    READ = "read"  # listed completely
    UNREADABLE = "unreadable"  # served but could not be listed: protect anything VM-like


@dataclass(frozen=True, slots=True)
class KubeSnapshot:
    ips: tuple[IpCR, ...] = ()
    subnets: tuple[Subnet, ...] = ()
    pods: tuple[Pod, ...] = ()
    nodes: tuple[Node, ...] = ()
    statefulsets: tuple[StatefulSet, ...] = ()
    vms: tuple[VirtualMachine, ...] = ()
    vips: tuple[Vip, ...] = ()
    eips: tuple[Eip, ...] = ()
    kubevirt: KubevirtState = KubevirtState.ABSENT
    kubevirt_error: str = ""  # why the KubeVirt API is UNREADABLE
    unparsed: tuple[tuple[str, str, str], ...] = field(default=())  # (kind, name, why)
    # IP CRs whose address does not parse (also in ``unparsed``: never judged, never collected), with
    # the addresses that do: Kube-OVN counts them in their Subnet all the same (see status.py).
    odd_ips: tuple[IpCR, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    nb: NbSnapshot
    kube: KubeSnapshot

    def inventory(self) -> dict[str, int]:
        k = self.kube
        return {
            "logical_switches": self.nb.switch_count,
            "logical_switch_ports": len(self.nb.ports),
            "ips": len(k.ips),
            "subnets": len(k.subnets),
            "pods": len(k.pods),
            "nodes": len(k.nodes),
            "statefulsets": len(k.statefulsets),
            "virtual_machines": sum(1 for v in k.vms if v.kind == "VirtualMachine"),
            "virtual_machine_instances": sum(1 for v in k.vms if v.kind != "VirtualMachine"),
            "vips": len(k.vips),
            "eips": len(k.eips),
        }
