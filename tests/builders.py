"""Hand-built frozen snapshots for the pure tests: short constructors with sane defaults."""

from __future__ import annotations

import datetime as dt
import itertools

from kube_ovn_gc.model import (
    Eip,
    IpCR,
    KubeSnapshot,
    KubevirtState,
    Meta,
    NbSnapshot,
    Node,
    OwnerRef,
    Pod,
    PodNetwork,
    Port,
    PortName,
    PortUUID,
    Snapshot,
    StatefulSet,
    Subnet,
    Vip,
    VirtualMachine,
)

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(hours=1)
_ids = itertools.count(1)


def meta(name: str, namespace: str = "", *, uid: str | None = None, created: dt.datetime | None = OLD,
         deleted: dt.datetime | None = None, owners: tuple[OwnerRef, ...] = ()) -> Meta:
    return Meta(name=name, namespace=namespace, uid=uid or f"uid-{next(_ids)}", resource_version=str(next(_ids)),
                creation=created, deletion=deleted, owners=owners)


def pod(namespace: str, name: str, *, phase: str = "Running", providers: tuple[str, ...] = ("ovn",),
        restart: str = "Always", reason: str = "", host_network: bool = False,
        owners: tuple[OwnerRef, ...] = (), deleted: dt.datetime | None = None, grace: int | None = None) -> Pod:
    return Pod(meta=meta(name, namespace, owners=owners, deleted=deleted), phase=phase, reason=reason,
               restart_policy=restart, host_network=host_network, grace_period=grace,
               networks=tuple(PodNetwork(p) for p in providers))


def launcher(namespace: str, vm: str, pod_name: str | None = None, **kw: object) -> Pod:
    ref = OwnerRef(kind="VirtualMachineInstance", name=vm, api_version="kubevirt.io/v1", controller=True)
    return pod(namespace, pod_name or f"virt-launcher-{vm}-abcde", owners=(ref,), **kw)  # type: ignore[arg-type]


def sts_ref(name: str, uid: str) -> OwnerRef:
    return OwnerRef(kind="StatefulSet", name=name, uid=uid, api_version="apps/v1", controller=True)


def ip(name: str, *, namespace: str = "default", pod_name: str = "", subnet: str = "ovn-default",
       v4: str = "10.16.0.10", v6: str = "", pod_type: str = "", reserved: bool = False,
       created: dt.datetime | None = OLD, deleted: dt.datetime | None = None, node_name: str = "node1",
       owners: tuple[OwnerRef, ...] = (), attach: tuple[str, ...] = ()) -> IpCR:
    return IpCR(meta=meta(name, created=created, deleted=deleted, owners=owners), pod_name=pod_name,
                namespace=namespace, subnet=subnet, attach_subnets=attach, node_name=node_name, v4=v4, v6=v6,
                mac="00:00:00:00:00:01", pod_type=pod_type, reserved=reserved)


def port(name: str, *, pod_key: str | None = None, switch: str = "ovn-default", type: str = "",
         vendor: str | None = "kube-ovn", addresses: tuple[str, ...] = ("00:00:00:00:00:01 10.16.0.10",)) -> Port:
    ext: list[tuple[str, str]] = []
    if vendor is not None:
        ext.append(("vendor", vendor))
    if pod_key is not None:
        ext.append(("pod", pod_key))
    ext.append(("ls", switch))
    n = next(_ids)
    return Port(uuid=PortUUID(f"00000000-0000-0000-0000-{n:012d}"), name=PortName(name), type=type,
                external_ids=tuple(ext), addresses=addresses, switch=switch, switch_uuid=f"ls-{switch}")


def vm(namespace: str, name: str, *, kind: str = "VirtualMachine", multus: str = "",
       spec_networks: tuple[tuple[str, bool], ...] = ()) -> VirtualMachine:
    return VirtualMachine(meta=meta(name, namespace), kind=kind, multus_networks=(multus,) if multus else (),
                          spec_networks=spec_networks)


def sts(namespace: str, name: str, replicas: int, *, start: int = 0, uid: str | None = None,
        deleted: dt.datetime | None = None) -> StatefulSet:
    return StatefulSet(meta=meta(name, namespace, uid=uid, deleted=deleted), replicas=replicas, ordinals_start=start)


def subnet(name: str = "ovn-default", cidr: str = "10.16.0.0/16", *, gateway: str = "10.16.0.1",
           exclude: tuple[str, ...] = ("10.16.0.1",), provider: str = "ovn", protocol: str = "IPv4",
           status: dict[str, str] | None = None) -> Subnet:
    return Subnet(meta=meta(name), cidr=cidr, protocol=protocol, gateway=gateway, exclude_ips=exclude,
                  provider=provider, status=tuple((status or {}).items()))


def vip(name: str, *, namespace: str = "default", subnet_name: str = "ovn-default", type: str = "",
        v4: str = "", labels_subnet: str = "", reserved_label: str | None = None) -> Vip:
    return Vip(meta=meta(name), subnet=subnet_name, namespace=namespace, type=type, v4=v4, v6="",
               subnet_label=labels_subnet, reserved_label=reserved_label)


def eip(name: str, *, kind: str = "OvnEip", v4: str = "", subnet_label: str = "", type: str = "") -> Eip:
    return Eip(meta=meta(name), kind=kind, type=type, v4=v4, v6="", subnet_label=subnet_label)


def node(name: str) -> Node:
    return Node(name=name, uid=f"uid-{name}")


def snapshot(*, ports: tuple[Port, ...] = (), kubevirt: KubevirtState = KubevirtState.READ,
             **kube: object) -> Snapshot:
    return Snapshot(nb=NbSnapshot(ports=ports, switch_count=1),
                    kube=KubeSnapshot(kubevirt=kubevirt, **kube))  # type: ignore[arg-type]
