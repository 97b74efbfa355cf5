"""Parsing: raw decoded JSON objects to the frozen objects of :mod:`kube_ovn_gc.model`.

The plain, checking way (every field's JSON type checked, the culprit named in the error); the
fast way for the big lists is in :mod:`.decode` and falls back to this one.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import socket
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from ..model import (
    STATUS_FIELDS,
    Eip,
    IpCR,
    Meta,
    Node,
    OwnerRef,
    Pod,
    PodNetwork,
    StatefulSet,
    Subnet,
    Vip,
    VirtualMachine,
)

Raw = Mapping[str, Any]
"""One decoded JSON object as the API server sent it."""
Unparsed = tuple[tuple[str, str, str], ...]
"""Objects skipped because they do not parse: ``(kind, name, why)``."""

RESERVED_LABEL: Final = "ovn.kubernetes.io/ip_reserved"
SUBNET_LABEL: Final = "ovn.kubernetes.io/subnet"
MULTUS_ANNOTATION: Final = "k8s.v1.cni.cncf.io/networks"
_ALLOCATED_SUFFIX: Final = ".kubernetes.io/allocated"
NODE_ALLOCATED: Final = "ovn.kubernetes.io/allocated"

# --- parsing: raw dicts to frozen model objects -----------------------------


class ParseError(ValueError):
    """An object does not have the shape the job needs; the text says where."""


class Salvageable(ParseError):
    """An object the job cannot use whole, of which ``salvaged`` is the part it must still take into account."""

    def __init__(self, why: str, salvaged: Any) -> None:
        super().__init__(why)
        self.salvaged = salvaged


class OddAddressError(Salvageable):
    """An IP CR that parses but for an address: never judged, yet counted in its Subnet.

    Kube-OVN counts the IP CRs of a Subnet whatever their address: ``calcSubnetStatusIP`` /
    ``calcDualSubnetStatusIP`` in pkg/controller/subnet.go (v1.12.0-v1.14.0: ``len(podUsedIPs)``),
    ``calculateUsingIPs`` in pkg/controller/subnet_status.go (v1.15.0, v1.16.0: ``usingIPNums :=
    len(podUsedIPs)``); an unparsable address is in no ``excludeIps`` entry (pkg/util/net.go
    ``ContainsIPs`` compares strings, or ``IP2BigInt`` of a nil IP, 0). ``salvaged`` is the IP CR
    with only the addresses that parse.
    """


def _obj(d: Raw, key: str, where: str) -> Raw:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ParseError(f"{where}{key} is not an object")
    return v


def _str(d: Raw, key: str, where: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise ParseError(f"{where}{key} is not a string")
    return v


def _istr(d: Raw, key: str, where: str) -> str:
    """A string that repeats across objects (namespace, node, subnet, phase): interned."""
    return sys.intern(_str(d, key, where))


def _int(d: Raw, key: str, where: str, default: int) -> int:
    v = _opt_int(d, key, where)
    return default if v is None else v


def _opt_int(d: Raw, key: str, where: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ParseError(f"{where}{key} is not an integer")
    return v


def _bool(d: Raw, key: str, where: str) -> bool:
    v = d.get(key)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise ParseError(f"{where}{key} is not a boolean")
    return v


def _list(d: Raw, key: str, where: str) -> list[Any]:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ParseError(f"{where}{key} is not a list")
    return v


_JUST_STR: Final = frozenset({str})


def _only_str(values: Collection[Any]) -> bool:
    """All strings? (The common case is checked in C: every value is exactly a ``str``.)"""
    return set(map(type, values)) <= _JUST_STR or all(isinstance(v, str) for v in values)


def _strings(d: Raw, key: str, where: str) -> tuple[str, ...]:
    items = _list(d, key, where)
    if items and not _only_str(items):
        raise ParseError(f"{where}{key} holds a non-string")
    return tuple(items)


def _str_map(d: Raw, key: str, where: str) -> Raw:
    m = _obj(d, key, where)
    if m and not _only_str(m.values()):
        raise ParseError(f"{where}{key} holds a non-string value")
    return m


def _time(d: Raw, key: str, where: str) -> dt.datetime | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ParseError(f"{where}{key} is not a timestamp string")
    t = parse_timestamp(v)
    if t is None:
        raise ParseError(f"{where}{key}: bad timestamp {v!r}")
    return t


def _root(obj: Any) -> Raw:
    if not isinstance(obj, dict):
        raise ParseError("the object is not a JSON object")
    return obj


def object_name(obj: Any) -> str:
    """``namespace/name`` (a namespaced object) or ``name`` if there is one: for objects that failed to parse.

    The same spelling as a parsed object's key (``meta.key``), so a skipped VM is ``ns/vm`` whichever way it
    was found, and the doctor's ``kubectl get … -n ns`` finds it.
    """
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            namespace = meta.get("namespace")
            return f"{namespace}/{meta['name']}" if isinstance(namespace, str) and namespace else str(meta["name"])
    return ""


def parse_meta(obj: Raw, *, version: bool = True) -> Meta:
    """``metadata``; without its resourceVersion unless ``version`` (only Subnets and IP CRs need theirs)."""
    m = _obj(obj, "metadata", "")
    name = _str(m, "name", "metadata.")
    if not name:
        raise ParseError("metadata.name is missing")
    refs = _list(m, "ownerReferences", "metadata.")
    owners = shared_tuple(tuple([_owner_ref(i, ref) for i, ref in enumerate(refs)])) if refs else ()
    resource_version = _str(m, "resourceVersion", "metadata.")
    return Meta(  # positional: a third faster than keywords for a frozen dataclass
        name,
        _istr(m, "namespace", "metadata."),
        _str(m, "uid", "metadata."),
        resource_version if version else "",
        _time(m, "creationTimestamp", "metadata."),
        _time(m, "deletionTimestamp", "metadata."),
        shared_tuple(tuple(map(sys.intern, _strings(m, "finalizers", "metadata.")))),
        owners,
    )


@functools.lru_cache(maxsize=8192)
def shared_tuple(items: tuple[Any, ...]) -> tuple[Any, ...]:
    """One tuple for all the objects that hold an equal one (the owner references of a ReplicaSet's pods, the
    finalizers of the IP CRs, a pod's attachments): 56 bytes and more an object."""
    return items


def _owner_ref(i: int, ref: Any) -> OwnerRef:
    where = f"metadata.ownerReferences[{i}]."
    if not isinstance(ref, dict):
        raise ParseError(f"{where[:-1]} is not an object")
    return _shared_owner_ref(
        _str(ref, "kind", where),
        _str(ref, "name", where),
        _str(ref, "uid", where),
        _str(ref, "apiVersion", where),
        _bool(ref, "controller", where),
    )


@functools.lru_cache(maxsize=8192)
def _shared_owner_ref(kind: str, name: str, uid: str, api_version: str, controller: bool) -> OwnerRef:
    """One frozen OwnerRef for all the objects that have it (the pods of a ReplicaSet, StatefulSet, ...)."""
    return OwnerRef(sys.intern(kind), name, uid, sys.intern(api_version), controller)


def _labels(obj: Raw) -> Raw:
    return _str_map(_obj(obj, "metadata", ""), "labels", "metadata.")


def _annotations(obj: Raw) -> Raw:
    return _str_map(_obj(obj, "metadata", ""), "annotations", "metadata.")


def _address(text: str, family: int, where: str) -> str:
    if not text:
        return ""
    stripped = text.strip()
    try:  # the usual case, ~10x faster than ipaddress: inet_pton accepts a subset of what it accepts
        socket.inet_pton(socket.AF_INET if family == 4 else socket.AF_INET6, stripped)
        return stripped
    except (OSError, ValueError):
        pass  # not plainly an address of this family: ipaddress decides, and says why
    try:
        addr = ipaddress.ip_address(stripped)
    except ValueError as exc:
        raise ParseError(f"{where}: bad address {text!r}") from exc
    if addr.version != family:
        raise ParseError(f"{where}: {text!r} is not an IPv{family} address")
    return text.strip()


def _split_addresses(joined: str, where: str) -> tuple[str, str]:
    """``ipAddress`` ("v4", "v6" or "v4,v6") split by family."""
    v4 = v6 = ""
    for part in (p.strip() for p in joined.split(",")):
        if not part:
            continue
        if ":" in part:
            if v6:
                raise ParseError(f"{where}: two IPv6 addresses in {joined!r}")
            v6 = _address(part, 6, where)
        else:
            if v4:
                raise ParseError(f"{where}: two IPv4 addresses in {joined!r}")
            v4 = _address(part, 4, where)
    return v4, v6


def parse_ip(obj: Any) -> IpCR:
    """A ``kubeovn.io/v1`` IP. Raises :class:`ParseError` when the job cannot use it."""
    root = _root(obj)
    meta = parse_meta(root)
    spec_any = root.get("spec")
    if not isinstance(spec_any, dict):
        raise ParseError("spec is missing or not an object")
    spec: Raw = spec_any
    subnet = _istr(spec, "subnet", "spec.")
    if not subnet:
        raise ParseError("spec.subnet is missing")
    odd: list[str] = []

    def address(text: str, family: int, where: str) -> str:
        try:
            return _address(text, family, where)
        except ParseError as exc:
            odd.append(str(exc))
            return ""

    v4 = address(_str(spec, "v4IpAddress", "spec."), 4, "spec.v4IpAddress")
    v6 = address(_str(spec, "v6IpAddress", "spec."), 6, "spec.v6IpAddress")
    if not v4 or not v6:  # older CRs, or a family missing: fall back to the joined ipAddress
        joined = _str(spec, "ipAddress", "spec.")
        try:
            joined_v4, joined_v6 = _split_addresses(joined, "spec.ipAddress")
        except ParseError as exc:
            if not odd:  # the family fields said it already
                odd.append(str(exc))
            joined_v4 = joined_v6 = ""
        v4, v6 = v4 or joined_v4, v6 or joined_v6
    ip = IpCR(
        meta=meta,
        pod_name=_str(spec, "podName", "spec."),
        namespace=_istr(spec, "namespace", "spec."),
        subnet=subnet,
        attach_subnets=tuple(sys.intern(s) for s in _strings(spec, "attachSubnets", "spec.")),
        node_name=_istr(spec, "nodeName", "spec."),
        v4=v4,
        v6=v6,
        mac=_str(spec, "macAddress", "spec."),
        pod_type=_istr(spec, "podType", "spec."),
        reserved=_labels(root).get(RESERVED_LABEL) == "true",
    )
    if odd:
        raise OddAddressError("; ".join(odd), ip)
    return ip


def _status_value(status: Raw, key: str) -> str:
    v = status.get(key)
    if v is None:
        return ""
    if isinstance(v, bool):
        raise ParseError(f"status.{key} is a boolean")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return v
    raise ParseError(f"status.{key} is neither a number nor a string")


def parse_subnet(obj: Any) -> Subnet:
    root = _root(obj)
    spec = _obj(root, "spec", "")
    status = _obj(root, "status", "")
    return Subnet(
        meta=parse_meta(root),
        cidr=_str(spec, "cidrBlock", "spec."),
        protocol=_istr(spec, "protocol", "spec."),
        gateway=_str(spec, "gateway", "spec."),
        exclude_ips=_strings(spec, "excludeIps", "spec."),
        provider=_istr(spec, "provider", "spec."),
        status=tuple((key, _status_value(status, key)) for key in STATUS_FIELDS),
        # booleans in Kube-OVN's CRD schema; anything else reads as off (only the doctor's remedies use them)
        multicast_snoop=spec.get("enableMulticastSnoop") is True,
        u2o_interconnection=spec.get("u2oInterconnection") is True,
    )


def _pod_networks(annotations: Raw) -> tuple[PodNetwork, ...]:
    nets = []
    for key in [k for k in annotations if k.endswith(_ALLOCATED_SUFFIX)]:
        if annotations[key] != "true":
            continue
        provider = key[: -len(_ALLOCATED_SUFFIX)]
        if not provider:
            continue
        nets.append(_pod_network(provider, str(annotations.get(f"{provider}.kubernetes.io/logical_switch", ""))))
    return shared_tuple(tuple(sorted(nets, key=lambda n: n.provider)) if len(nets) > 1 else tuple(nets))


@functools.lru_cache(maxsize=8192)
def _pod_network(provider: str, logical_switch: str) -> PodNetwork:
    """One PodNetwork for all the pods attached alike."""
    return PodNetwork(sys.intern(provider), sys.intern(logical_switch))


def parse_pod(obj: Any) -> Pod:
    root = _root(obj)
    meta = _obj(root, "metadata", "")
    spec = _obj(root, "spec", "")
    status = _obj(root, "status", "")
    return Pod(
        meta=parse_meta(root, version=False),
        phase=_istr(status, "phase", "status."),
        reason=_istr(status, "reason", "status."),
        restart_policy=_istr(spec, "restartPolicy", "spec."),
        host_network=_bool(spec, "hostNetwork", "spec."),
        grace_period=_opt_int(meta, "deletionGracePeriodSeconds", "metadata."),
        networks=_pod_networks(_annotations(root)),
    )


def parse_node(obj: Any) -> Node:
    root = _root(obj)
    meta = parse_meta(root)
    return Node(name=meta.name, uid=meta.uid, allocated=_annotations(root).get(NODE_ALLOCATED) == "true")


def parse_statefulset(obj: Any) -> StatefulSet:
    root = _root(obj)
    spec = _obj(root, "spec", "")
    replicas = _int(spec, "replicas", "spec.", 1)
    start = _int(_obj(spec, "ordinals", "spec."), "start", "spec.ordinals.", 0)
    return StatefulSet(meta=parse_meta(root), replicas=replicas, ordinals_start=start)


def _spec_networks(spec: Raw, where: str) -> tuple[tuple[str, bool], ...]:
    out = []
    for i, net in enumerate(_list(spec, "networks", where)):
        here = f"{where}networks[{i}]."
        if not isinstance(net, dict):
            raise ParseError(f"{here[:-1]} is not an object")
        multus = _obj(net, "multus", here)
        name = _str(multus, "networkName", f"{here}multus.")
        if name:
            out.append((name, _bool(multus, "default", f"{here}multus.")))
    return tuple(out)


def _multus(annotations: Raw) -> tuple[str, ...]:
    value = annotations.get(MULTUS_ANNOTATION, "")
    return (str(value),) if value else ()


def parse_vm(obj: Any) -> VirtualMachine:
    """A ``kubevirt.io/v1`` VirtualMachine: the networks its template asks for."""
    root = _root(obj)
    template = _obj(_obj(root, "spec", ""), "template", "spec.")
    annotations = _str_map(_obj(template, "metadata", "spec.template."), "annotations", "spec.template.metadata.")
    return VirtualMachine(
        meta=parse_meta(root),
        kind="VirtualMachine",
        multus_networks=_multus(annotations),
        spec_networks=_spec_networks(_obj(template, "spec", "spec.template."), "spec.template.spec."),
    )


def parse_vmi(obj: Any) -> VirtualMachine:
    """A ``kubevirt.io/v1`` VirtualMachineInstance."""
    root = _root(obj)
    return VirtualMachine(
        meta=parse_meta(root),
        kind="VirtualMachineInstance",
        multus_networks=_multus(_annotations(root)),
        spec_networks=_spec_networks(_obj(root, "spec", ""), "spec."),
    )


def _vm_or_placeholder(parse: Callable[[Any], VirtualMachine], kind: str) -> Callable[[Any], VirtualMachine]:
    """``parse``, but a VM (or VMI) that does not parse and still has a name and namespace is not a reason to
    lose the whole list: it raises :class:`Salvageable` with a placeholder that owns what a VM of that name
    owns (``<vm>.<ns>`` and every address whose IP CR or port names it as its pod), and is reported skipped."""

    def parse_or_placeholder(obj: Any) -> VirtualMachine:
        try:
            return parse(obj)
        except ParseError as exc:
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            name = meta.get("name") if isinstance(meta, dict) else None
            namespace = meta.get("namespace") if isinstance(meta, dict) else None
            if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
                raise  # not even a name: nothing could be protected by it
            where = f"{namespace}/{name}"
            placeholder = VirtualMachine(meta=Meta(name, sys.intern(namespace)), kind=kind, multus_networks=(),
                                         spec_networks=())
            raise Salvageable(f"{where}: {exc}; every address named after it is kept", placeholder) from exc

    return parse_or_placeholder


def parse_vip(obj: Any) -> Vip:
    root = _root(obj)
    spec = _obj(root, "spec", "")
    status = _obj(root, "status", "")
    labels = _labels(root)
    reserved = labels.get(RESERVED_LABEL)
    return Vip(
        meta=parse_meta(root),
        subnet=_istr(spec, "subnet", "spec."),
        namespace=_istr(spec, "namespace", "spec."),
        type=_istr(spec, "type", "spec."),
        v4=_str(status, "v4ip", "status.") or _str(spec, "v4ip", "spec."),
        v6=_str(status, "v6ip", "status.") or _str(spec, "v6ip", "spec."),
        subnet_label=sys.intern(str(labels.get(SUBNET_LABEL, ""))),
        reserved_label=None if reserved is None else str(reserved),
    )


def parse_iptables_eip(obj: Any) -> Eip:
    root = _root(obj)
    spec = _obj(root, "spec", "")
    status = _obj(root, "status", "")
    return Eip(
        meta=parse_meta(root),
        kind="IptablesEIP",
        type="",
        v4=_str(status, "ip", "status.") or _str(spec, "v4ip", "spec."),
        v6=_str(spec, "v6ip", "spec."),
        subnet_label=sys.intern(str(_labels(root).get(SUBNET_LABEL, ""))),
    )


def parse_ovn_eip(obj: Any) -> Eip:
    root = _root(obj)
    spec = _obj(root, "spec", "")
    status = _obj(root, "status", "")
    return Eip(
        meta=parse_meta(root),
        kind="OvnEip",
        type=_istr(spec, "type", "spec."),
        v4=_str(status, "v4Ip", "status.") or _str(spec, "v4Ip", "spec."),
        v6=_str(status, "v6Ip", "status.") or _str(spec, "v6Ip", "spec."),
        subnet_label=sys.intern(str(_labels(root).get(SUBNET_LABEL, ""))),
    )

@functools.lru_cache(maxsize=4096)
def parse_timestamp(text: str) -> dt.datetime | None:
    """RFC 3339 ``Time``/``MicroTime`` as any client writes it, as aware UTC; None when unreadable. One object
    for equal texts (objects created in the same second share their creationTimestamp)."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC)

