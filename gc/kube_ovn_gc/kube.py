"""The Kubernetes adapter: read one consistent snapshot, then write a few guarded changes.

Reading lists every kind in pages (``limit`` + ``continue``, never
``resourceVersion=0``), takes each page as raw bytes, decodes it (pods and IP
CRs with msgspec into only the fields the job needs, see "fast decoding"; the
rest generically with msgspec, see :func:`loads`) and turns each item into the slim frozen objects of
:mod:`kube_ovn_gc.model` right away, so a page is dropped before the next one is
fetched. No typed Kubernetes models are built, and the generated API classes
are not used (see :class:`RawApi`).

Every library failure goes through :func:`translate_error`; every request
goes through :func:`kube_ovn_gc.retry.retrying`.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import email.utils
import functools
import ipaddress
import logging
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar

import msgspec
import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from .errors import (
    ConfigError,
    ConflictError,
    FatalError,
    GCError,
    NotFoundError,
    TransientError,
)
from .memory import gc_paused
from .model import (
    STATUS_FIELDS,
    Eip,
    IpCR,
    KubeSnapshot,
    KubevirtState,
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
from .retry import RetryPolicy, retrying
from .settings import KubeSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
Raw = Mapping[str, Any]
"""One decoded JSON object as the API server sent it."""
Unparsed = tuple[tuple[str, str, str], ...]
"""Objects skipped because they do not parse: ``(kind, name, why)``."""

RESERVED_LABEL: Final = "ovn.kubernetes.io/ip_reserved"
SUBNET_LABEL: Final = "ovn.kubernetes.io/subnet"
MULTUS_ANNOTATION: Final = "k8s.v1.cni.cncf.io/networks"
_ALLOCATED_SUFFIX: Final = ".kubernetes.io/allocated"
NODE_ALLOCATED: Final = "ovn.kubernetes.io/allocated"
_DEFAULT_KUBECONFIG: Final = "~/.kube/config"


# --- the client -------------------------------------------------------------


def api_client(settings: KubeSettings) -> k8s.ApiClient:
    """Build the one ApiClient of the pass.

    A kubeconfig is used when ``settings.kubeconfig`` is given, ``KUBECONFIG`` is
    set or ``~/.kube/config`` exists (``settings.context`` picks the context);
    otherwise the in-cluster service account. Any failure is a :class:`ConfigError`.
    """
    path = settings.kubeconfig or os.environ.get("KUBECONFIG") or None
    if path is None and os.path.exists(os.path.expanduser(_DEFAULT_KUBECONFIG)):
        path = _DEFAULT_KUBECONFIG
    configuration = k8s.Configuration()
    try:
        if path is not None:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path,
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            if settings.context:
                raise ConfigError(f"--context {settings.context!r} needs a kubeconfig, and none was found")
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigError:
        raise
    except Exception as exc:  # a broken kubeconfig fails in many ways (yaml, KeyError, OSError, ...)
        where = f"kubeconfig {path}" if path is not None else "in-cluster config"
        raise ConfigError(f"cannot load {where}: {exc}") from exc
    configuration.retries = False  # retry in one place: kube_ovn_gc.retry, not also inside urllib3
    _throttle_refresh(configuration, TOKEN_REFRESH_INTERVAL)
    return k8s.ApiClient(configuration)


TOKEN_REFRESH_INTERVAL: Final = 10.0
"""Seconds between two runs of the kubeconfig's token-refresh hook."""


def _throttle_refresh(configuration: Any, interval: float) -> None:
    """Run the credential loader's ``refresh_api_key_hook`` at most every ``interval`` seconds.

    The client runs the hook before every request; the kubeconfig loader's hook
    re-reads the credentials and re-applies host, TLS and proxy settings (which
    scans the environment for proxies): ~0.5 ms a request, seconds over the
    thousands of requests of a large pass. The loaders renew a token minutes
    before it expires, so nothing expires in between. The loaders' hooks install
    a fresh hook of their own each time they run: they are run against a stand-in
    that passes every setting through but keeps that one, so the throttle stays
    in place. Runs are serialised (requests may come from several threads).
    """
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is None:
        return
    inner: list[Callable[[Any], None]] = [hook]
    last = [-interval]
    lock = threading.Lock()

    def refresh(conf: Any) -> None:
        with lock:
            now = time.monotonic()
            if now - last[0] < interval:
                return
            last[0] = now
            inner[0](_KeepHook(conf, inner))

    configuration.refresh_api_key_hook = refresh


class _KeepHook:
    """A configuration's stand-in for a credential loader: every attribute passes through, except that
    a new ``refresh_api_key_hook`` is kept aside (for the throttle's next run) instead of replacing it."""

    def __init__(self, conf: Any, keep: list[Callable[[Any], None]]) -> None:
        object.__setattr__(self, "_conf", conf)
        object.__setattr__(self, "_keep", keep)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conf, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "refresh_api_key_hook":
            if value is not None:
                self._keep[0] = value
            return
        setattr(self._conf, name, value)


# --- errors -----------------------------------------------------------------


class _ExpiredError(FatalError):
    """410 Gone: a ``continue`` token expired. The list restarts once, else it is fatal."""


_TRANSIENT_STATUS: Final = frozenset({500, 502, 503, 504})


def translate_error(exc: Exception, method: str, path: str) -> GCError:
    """Map a client-library failure to the job's own error types.

    The one place that knows about ``ApiException``, urllib3 and undecodable
    bodies. The caller raises the result ``from exc``.
    """
    where = f"{method} {path}"
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        text = f"{where}: {status} {_status_message(exc)}"
        if status == 404:
            return NotFoundError(text)
        if status == 409:
            return ConflictError(text)
        if status == 410:
            return _ExpiredError(text)
        if status == 429:
            return TransientError(text, retry_after=_retry_after(exc.headers))
        if status in _TRANSIENT_STATUS:
            return TransientError(text, retry_after=_retry_after(exc.headers))
        # 0 (TLS failure, request not built), 401, 403, 415, 422, other 4xx and 5xx
        return FatalError(text)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(exc.reason, Exception):
        return translate_error(exc.reason, method, path)  # urllib3 gave up on a connection error
    if isinstance(exc, urllib3.exceptions.SSLError):
        return FatalError(f"{where}: TLS failure: {exc}")
    if isinstance(exc, orjson.JSONDecodeError | msgspec.DecodeError):  # a ValueError, not an OSError
        return FatalError(f"{where}: undecodable response body: {exc}")
    if isinstance(exc, urllib3.exceptions.TimeoutError | urllib3.exceptions.ProtocolError | OSError):
        # connect/read timeouts, refused or reset connections, truncated bodies
        return TransientError(f"{where}: {exc}")
    return FatalError(f"{where}: {type(exc).__name__}: {exc}")


def _status_message(exc: ApiException) -> str:
    """The ``message`` of the ``Status`` body the API server sent, else the HTTP reason."""
    body = exc.body
    if body:
        try:
            status = orjson.loads(body)
        except orjson.JSONDecodeError:
            status = None
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            return str(status["message"])
        return str(body)[:200]
    return str(exc.reason or "")


def _retry_after(headers: Any) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), None if absent or bad."""
    if headers is None:
        return None
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


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
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError as exc:
        raise ParseError(f"{where}{key}: bad timestamp {v!r}") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC)


def _root(obj: Any) -> Raw:
    if not isinstance(obj, dict):
        raise ParseError("the object is not a JSON object")
    return obj


def object_name(obj: Any) -> str:
    """``metadata.name`` if there is one: for messages about objects that failed to parse."""
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            return str(meta["name"])
    return ""


def parse_meta(obj: Raw) -> Meta:
    m = _obj(obj, "metadata", "")
    name = _str(m, "name", "metadata.")
    if not name:
        raise ParseError("metadata.name is missing")
    refs = _list(m, "ownerReferences", "metadata.")
    owners = tuple([_owner_ref(i, ref) for i, ref in enumerate(refs)]) if refs else ()
    return Meta(  # positional: a third faster than keywords for a frozen dataclass
        name,
        _istr(m, "namespace", "metadata."),
        _str(m, "uid", "metadata."),
        _str(m, "resourceVersion", "metadata."),
        _time(m, "creationTimestamp", "metadata."),
        _time(m, "deletionTimestamp", "metadata."),
        tuple(map(sys.intern, _strings(m, "finalizers", "metadata."))),
        owners,
    )


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
    )


def _pod_networks(annotations: Raw) -> tuple[PodNetwork, ...]:
    nets = []
    for key in [k for k in annotations if k.endswith(_ALLOCATED_SUFFIX)]:
        if annotations[key] != "true":
            continue
        provider = key[: -len(_ALLOCATED_SUFFIX)]
        if not provider:
            continue
        nets.append(
            PodNetwork(
                provider=sys.intern(provider),
                ip_address=str(annotations.get(f"{provider}.kubernetes.io/ip_address", "")),
                mac_address=str(annotations.get(f"{provider}.kubernetes.io/mac_address", "")),
                logical_switch=sys.intern(str(annotations.get(f"{provider}.kubernetes.io/logical_switch", ""))),
            )
        )
    return tuple(sorted(nets, key=lambda n: n.provider)) if len(nets) > 1 else tuple(nets)


def parse_pod(obj: Any) -> Pod:
    root = _root(obj)
    meta = _obj(root, "metadata", "")
    spec = _obj(root, "spec", "")
    status = _obj(root, "status", "")
    return Pod(
        meta=parse_meta(root),
        phase=_istr(status, "phase", "status."),
        reason=_istr(status, "reason", "status."),
        restart_policy=_istr(spec, "restartPolicy", "spec."),
        host_network=_bool(spec, "hostNetwork", "spec."),
        node_name=_istr(spec, "nodeName", "spec."),
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


# --- resources and requests -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Kind:
    kind: str
    group: str  # "" = the core group
    version: str
    plural: str
    namespaced: bool

    @property
    def base(self) -> str:
        return f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"

    def list_path(self) -> str:
        return f"{self.base}/{self.plural}"

    def item_path(self, name: str, namespace: str = "") -> str:
        if self.namespaced:
            return f"{self.base}/namespaces/{namespace}/{self.plural}/{name}"
        return f"{self.base}/{self.plural}/{name}"


IPS: Final = _Kind("IP", "kubeovn.io", "v1", "ips", namespaced=False)
SUBNETS: Final = _Kind("Subnet", "kubeovn.io", "v1", "subnets", namespaced=False)
PODS: Final = _Kind("Pod", "", "v1", "pods", namespaced=True)
NODES: Final = _Kind("Node", "", "v1", "nodes", namespaced=False)
STATEFULSETS: Final = _Kind("StatefulSet", "apps", "v1", "statefulsets", namespaced=True)
VMS: Final = _Kind("VirtualMachine", "kubevirt.io", "v1", "virtualmachines", namespaced=True)
VMIS: Final = _Kind("VirtualMachineInstance", "kubevirt.io", "v1", "virtualmachineinstances", namespaced=True)
VIPS: Final = _Kind("Vip", "kubeovn.io", "v1", "vips", namespaced=False)
IPTABLES_EIPS: Final = _Kind("IptablesEIP", "kubeovn.io", "v1", "iptables-eips", namespaced=False)
OVN_EIPS: Final = _Kind("OvnEip", "kubeovn.io", "v1", "ovn-eips", namespaced=False)


# --- JSON numbers of any size --------------------------------------------------
#
# A Subnet's counts can exceed 64 bits: an IPv6 /56 has 2^72 addresses, and Kube-OVN
# v1.16 writes them as exact integers (``internal.BigInt``, pkg/internal/big_int.go,
# MarshalJSON writes the digits). orjson reads an integer beyond 64 bits as a float
# (2^72 - 2 comes back as 4.722366482869645e+21) and refuses to write one
# ("Integer exceeds 64-bit range"). msgspec reads and writes integers of any size
# exactly and is as fast on whole pages (bench.parsers: 3.52 s against orjson's
# 3.56 s for the 366 MB pod list), so every generic decode and every request body
# goes through it.

_ANY_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()


def loads(data: bytes | str) -> Any:
    """JSON as Python objects; integers of any size stay exact ints. Raises ``msgspec.DecodeError``."""
    return _ANY_DECODER.decode(data)


def dumps(obj: Any) -> bytes:
    """Compact JSON; integers of any size are written exactly (orjson refuses those beyond 64 bits)."""
    return _ENCODER.encode(obj)


# --- fast decoding of the big lists ------------------------------------------
#
# A pod as the API serves it is ~4 KB of JSON (containers, volumes, conditions,
# managedFields), of which the job reads a dozen fields. orjson builds all of it
# (~28 us a pod), then ``parse_pod`` checks and copies the dozen (~14 us).
# msgspec, given the shapes below, builds only these fields, checks their JSON
# types in C and skips the rest while validating it as JSON (~5 us); small
# ``_*_from`` functions then build the model (~5 us). They return None for
# anything the plain parsers would refuse or read differently (an empty name, an
# address inet_pton does not take, a bad timestamp); so does msgspec raise for
# any type the shapes do not allow. Either way the whole page goes the plain way
# (:func:`loads`, then ``parse_*``), which reads it exactly as before and names the
# culprit. tests/test_scale.py checks both ways agree on many shapes.


class _OwnerRefS(msgspec.Struct):
    kind: str | None = None
    name: str | None = None
    uid: str | None = None
    apiVersion: str | None = None
    controller: bool | None = None


class _MetaS(msgspec.Struct):  # what parse_meta reads
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    finalizers: list[str] | None = None
    ownerReferences: list[_OwnerRefS] | None = None


class _PodMetaS(_MetaS):
    deletionGracePeriodSeconds: int | None = None
    annotations: dict[str, str] | None = None


class _PodSpecS(msgspec.Struct):
    restartPolicy: str | None = None
    hostNetwork: bool | None = None
    nodeName: str | None = None


class _PodStatusS(msgspec.Struct):
    phase: str | None = None
    reason: str | None = None


class _PodS(msgspec.Struct):  # what parse_pod reads
    metadata: _PodMetaS | None = None
    spec: _PodSpecS | None = None
    status: _PodStatusS | None = None


class _IpMetaS(_MetaS):
    labels: dict[str, str] | None = None


class _IpSpecS(msgspec.Struct):
    podName: str | None = None
    namespace: str | None = None
    subnet: str | None = None
    attachSubnets: list[str] | None = None
    nodeName: str | None = None
    ipAddress: str | None = None
    v4IpAddress: str | None = None
    v6IpAddress: str | None = None
    macAddress: str | None = None
    podType: str | None = None


class _IpS(msgspec.Struct):  # what parse_ip reads
    metadata: _IpMetaS | None = None
    spec: _IpSpecS | None = None


class _ListMetaS(msgspec.Struct):
    continue_: str | None = msgspec.field(default=None, name="continue")


class _PodListS(msgspec.Struct):
    metadata: _ListMetaS | None = None
    items: list[_PodS] | None = None


class _IpListS(msgspec.Struct):
    metadata: _ListMetaS | None = None
    items: list[_IpS] | None = None


def parse_timestamp(text: str) -> dt.datetime | None:
    """RFC 3339 ``Time``/``MicroTime`` as any client writes it, as aware UTC; None when unreadable."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC)


def _meta_from(m: _MetaS | None) -> Meta | None:
    """parse_meta's result, or None to leave the object to it."""
    if m is None or not m.name:
        return None
    creation = deletion = None
    if m.creationTimestamp is not None:
        creation = parse_timestamp(m.creationTimestamp)
        if creation is None:
            return None
    if m.deletionTimestamp is not None:
        deletion = parse_timestamp(m.deletionTimestamp)
        if deletion is None:
            return None
    refs = m.ownerReferences
    owners = tuple([_shared_owner_ref(r.kind or "", r.name or "", r.uid or "", r.apiVersion or "", bool(r.controller))
                    for r in refs]) if refs else ()
    finalizers = tuple(map(sys.intern, m.finalizers)) if m.finalizers else ()
    return Meta(m.name, sys.intern(m.namespace or ""), m.uid or "", m.resourceVersion or "", creation, deletion,
                finalizers, owners)


def _pod_from(p: _PodS) -> Pod | None:
    """parse_pod's result, or None to leave the object to it."""
    meta = _meta_from(p.metadata)
    if meta is None:
        return None
    m, spec, status = p.metadata, p.spec, p.status
    assert m is not None
    return Pod(
        meta,
        sys.intern(status.phase or "") if status else "",
        sys.intern(status.reason or "") if status else "",
        sys.intern(spec.restartPolicy or "") if spec else "",
        bool(spec.hostNetwork) if spec else False,
        sys.intern(spec.nodeName or "") if spec else "",
        m.deletionGracePeriodSeconds,
        _pod_networks(m.annotations) if m.annotations else (),
    )


_FAMILY: Final = {4: socket.AF_INET, 6: socket.AF_INET6}


def _address_from(text: str, family: int) -> str | None:
    """_address's result when inet_pton takes it, else None."""
    if not text:
        return ""
    stripped = text.strip()
    try:
        socket.inet_pton(_FAMILY[family], stripped)
    except (OSError, ValueError):
        return None
    return stripped


def _split_from(joined: str) -> tuple[str, str] | None:
    """_split_addresses' result when inet_pton takes every part, else None."""
    v4 = v6 = ""
    for part in joined.split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            if v6:
                return None
            got = _address_from(part, 6)
            if not got:
                return None
            v6 = got
        else:
            if v4:
                return None
            got = _address_from(part, 4)
            if not got:
                return None
            v4 = got
    return v4, v6


def _ip_from(i: _IpS) -> IpCR | None:
    """parse_ip's result, or None to leave the object to it."""
    meta, spec = _meta_from(i.metadata), i.spec
    if meta is None or spec is None or not spec.subnet:
        return None
    v4 = _address_from(spec.v4IpAddress or "", 4)
    v6 = _address_from(spec.v6IpAddress or "", 6)
    if v4 is None or v6 is None:
        return None
    if not v4 or not v6:
        joined = _split_from(spec.ipAddress or "")
        if joined is None:
            return None
        v4, v6 = v4 or joined[0], v6 or joined[1]
    assert i.metadata is not None
    labels = i.metadata.labels
    return IpCR(
        meta,
        spec.podName or "",
        sys.intern(spec.namespace or ""),
        sys.intern(spec.subnet),
        tuple(map(sys.intern, spec.attachSubnets)) if spec.attachSubnets else (),
        sys.intern(spec.nodeName or ""),
        v4,
        v6,
        spec.macAddress or "",
        sys.intern(spec.podType or ""),
        labels is not None and labels.get(RESERVED_LABEL) == "true",
    )


@dataclass(frozen=True, slots=True)
class _Page:
    items: list[Any]  # model objects when ``parsed``, else the raw dicts for ``parse_*``
    token: Any  # metadata.continue as sent
    parsed: bool


def _fast_kinds() -> dict[str, tuple[msgspec.json.Decoder[Any], Callable[[Any], Any], Callable[[Any], Any]]]:
    return {
        "pods": (msgspec.json.Decoder(_PodListS), _pod_from, parse_pod),
        "ips": (msgspec.json.Decoder(_IpListS), _ip_from, parse_ip),
    }


_FAST: Final = _fast_kinds()


def _decode_page(k: _Kind, body: bytes, path: str, parse: Callable[[Any], Any] | None = None) -> _Page:
    """A list page, parsed with ``parse`` the fast way when it can be, else decoded whole (:func:`loads`)."""
    fast = _FAST.get(k.plural)
    if fast is not None and parse is fast[2]:
        decoder, convert, _ = fast
        try:
            page = decoder.decode(body)
        except msgspec.MsgspecError:
            page = None  # the plain way below, which reports whatever is wrong
        if page is not None:
            items = [convert(item) for item in page.items or ()]
            if not any(item is None for item in items):
                return _Page(items, page.metadata.continue_ if page.metadata else None, True)
    try:
        whole = loads(body)
    except msgspec.DecodeError as exc:
        raise translate_error(exc, "GET", path) from exc
    if not isinstance(whole, dict) or not isinstance(whole.get("items") or [], list):
        raise FatalError(f"GET {path}: the answer is not a list")
    meta = whole.get("metadata")
    return _Page(whole.get("items") or [], meta.get("continue") if isinstance(meta, dict) else None, False)


class RawApi:
    """Raw HTTP on the one ApiClient's connection pool, host and credentials (token refresh included),
    TLS and proxy; for this adapter, the Lease and the Events alike.

    The generated API classes are not used: in kubernetes 37 importing
    ``CoreV1Api`` alone takes ~1.7 s, and every generated call runs pydantic
    argument validation (~1 ms), which the ~5,000 requests of a 100k-pod pass
    (pages, second looks, deletes) would pay. Nor is ``ApiClient.call_api``: its
    request building and streaming response cost ~0.1-0.2 ms a request on top
    of urllib3's own, and the second looks and deletes of a large pass are
    thousands of round trips. Each call is one request (no retries here);
    failures come out translated.
    """

    def __init__(self, client: k8s.ApiClient, *, timeout: float | None, page_size: int = 500) -> None:
        self._client = client
        self._page_size = max(1, page_size)
        self._timeout = urllib3.Timeout(total=timeout) if timeout else None
        self._pool = client.rest_client.pool_manager
        self._host = client.configuration.host
        self._headers = {**client.default_headers, "Accept": "application/json"}

    def request(self, method: str, path: str, *, query: list[tuple[str, Any]] | None = None,
                body: Any = None, content_type: str = "application/json", decode: bool = True,
                raw: bool = False) -> Any:
        """One request; non-2xx answers raise (translated); a 2xx body is returned as bytes (``raw``),
        decoded with :func:`loads` (``decode``) or dropped."""
        url = self._host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {**self._headers, **self._auth()}
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = dumps(body)
        try:
            resp = self._pool.request(method, url, body=payload, headers=headers, timeout=self._timeout,
                                      retries=False, redirect=False)
            data = resp.data
            if not 200 <= resp.status <= 299:
                error = ApiException(status=resp.status, reason=resp.reason, body=data.decode("utf-8", "replace"))
                error.headers = resp.headers
                raise error
            if raw:
                return data
            return loads(data) if decode else None
        except (ApiException, urllib3.exceptions.HTTPError, OSError, msgspec.DecodeError) as exc:
            raise translate_error(exc, method, path) from exc

    def _auth(self) -> dict[str, str]:
        """The Authorization header as the client would set it (its token-refresh hook runs here)."""
        setting = self._client.configuration.auth_settings().get("BearerToken")
        return {"authorization": setting["value"]} if setting and setting.get("value") else {}

    def list_body(self, k: _Kind, cont: str | None) -> bytes:
        """One page of a list, undecoded."""
        query: list[tuple[str, Any]] = [("limit", self._page_size)]
        if cont:
            query.append(("continue", cont))
        body: bytes = self.request("GET", k.list_path(), query=query, raw=True)
        return body

    def get(self, k: _Kind, name: str, namespace: str = "") -> Raw:
        path = k.item_path(name, namespace)
        obj = self.request("GET", path)
        if not isinstance(obj, dict):
            raise FatalError(f"GET {path}: the answer is not an object")
        return obj

    def discover(self, group: str, version: str) -> None:
        self.request("GET", f"/apis/{group}/{version}", decode=False)

    def delete_cluster_object(self, k: _Kind, name: str, uid: str, resource_version: str) -> Any:
        """DELETE with preconditions; the answer is the object as deleted (or now terminating)."""
        preconditions = {key: value for key, value in (("uid", uid), ("resourceVersion", resource_version)) if value}
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}
        return self.request("DELETE", k.item_path(name), body=body)

    def replace_cluster_object(self, k: _Kind, name: str, body: dict[str, Any]) -> None:
        """PUT: the body's ``metadata.resourceVersion`` guards it (409 on a stale one)."""
        self.request("PUT", k.item_path(name), body=body, decode=False)

    def create_cluster_object(self, k: _Kind, body: dict[str, Any]) -> None:
        self.request("POST", k.list_path(), body=body, decode=False)

    def merge_patch_cluster_status(self, k: _Kind, name: str, body: dict[str, Any]) -> None:
        self.request("PATCH", k.item_path(name) + "/status", body=body, content_type="application/merge-patch+json",
                     decode=False)


class _KubeAccess:
    """What reader and writer share: the API, the retry policy, and single-object reads."""

    def __init__(self, client: k8s.ApiClient, settings: KubeSettings, retry: RetryPolicy) -> None:
        self._api = RawApi(client, timeout=settings.timeout if settings.timeout > 0 else None,
                           page_size=settings.page_size)
        self._retry = retry

    def _get(self, k: _Kind, parse: Callable[[Any], T], name: str, namespace: str = "") -> T | None:
        path = k.item_path(name, namespace)
        try:
            raw = retrying(self._retry, f"GET {path}", partial(self._api.get, k, name, namespace))
        except NotFoundError:
            return None
        try:
            return parse(raw)
        except ParseError as exc:
            # it parsed in the snapshot; someone changed it since: skip it, do not stop the pass
            raise ConflictError(f"{k.kind} {path} can no longer be parsed: {exc}") from exc

    def get_ip(self, name: str) -> IpCR | None:
        return self._get(IPS, parse_ip, name)

    def get_ip_manifest(self, name: str) -> tuple[IpCR, dict[str, Any]] | None:
        """The IP CR parsed, and its full manifest (for the undo record)."""
        path = IPS.item_path(name)
        try:
            raw = retrying(self._retry, f"GET {path}", partial(self._api.get, IPS, name))
        except NotFoundError:
            return None
        try:
            return parse_ip(raw), dict(raw)
        except ParseError as exc:
            raise ConflictError(f"IP {path} can no longer be parsed: {exc}") from exc

    def get_subnet(self, name: str) -> Subnet | None:
        return self._get(SUBNETS, parse_subnet, name)

    def get_pod(self, namespace: str, name: str) -> Pod | None:
        return self._get(PODS, parse_pod, name, namespace)

    def get_node(self, name: str) -> Node | None:
        return self._get(NODES, parse_node, name)

    def get_statefulset(self, namespace: str, name: str) -> StatefulSet | None:
        return self._get(STATEFULSETS, parse_statefulset, name, namespace)

    def get_vm(self, namespace: str, name: str) -> VirtualMachine | None:
        return self._get(VMS, parse_vm, name, namespace)

    def get_vmi(self, namespace: str, name: str) -> VirtualMachine | None:
        return self._get(VMIS, parse_vmi, name, namespace)


# --- reading ----------------------------------------------------------------


def _log_unparsed(unparsed: tuple[tuple[str, str, str], ...]) -> None:
    for kind, name, why in unparsed:
        log.warning("cannot parse %s %s: %s; leaving it alone", kind, name, why)


class KubeReader(_KubeAccess):
    """Reads the Kubernetes half of a snapshot: the owned IP CRs first, then their owners."""

    def read_ips(self) -> tuple[IpCR, ...]:
        """Only the IP CRs that parse; unparsable ones are logged."""
        return self.read_counted_ips()[0]

    def read_counted_ips(self) -> tuple[tuple[IpCR, ...], tuple[IpCR, ...]]:
        """The IP CRs that parse, and those whose address does not (with the addresses that do): both count
        in their Subnet (for recomputing a subnet status after a conflict). Other unparsable ones are logged."""
        odd: list[IpCR] = []
        ips, unparsed = self._list(IPS, parse_ip, tolerate=True, salvage=odd)
        _log_unparsed(unparsed)
        return ips, tuple(odd)

    def read(self) -> KubeSnapshot:
        with gc_paused():
            return self._read()

    def _read(self) -> KubeSnapshot:
        # Subnets first: any IP, Vip or EIP change after this read makes the controller rewrite the
        # Subnet's status, which bumps its resourceVersion, so our rv-guarded status patch gets a 409
        # instead of writing counts computed from a stale list. Then the owned (IPs), then the owners.
        subnets, _ = self._list(SUBNETS, parse_subnet)
        odd_ips: list[IpCR] = []
        ips, unparsed = self._list(IPS, parse_ip, tolerate=True, salvage=odd_ips)
        pods, _ = self._list(PODS, parse_pod)
        nodes, _ = self._list(NODES, parse_node)
        statefulsets, _ = self._list(STATEFULSETS, parse_statefulset)
        kubevirt, vms, kubevirt_error, bad_vms = self._read_kubevirt()
        vips = self._list_optional(VIPS, parse_vip)
        eips = self._list_optional(IPTABLES_EIPS, parse_iptables_eip) + self._list_optional(OVN_EIPS, parse_ovn_eip)
        unparsed += bad_vms
        _log_unparsed(unparsed)
        return KubeSnapshot(
            ips=ips,
            subnets=subnets,
            pods=pods,
            nodes=nodes,
            statefulsets=statefulsets,
            vms=vms,
            vips=vips,
            eips=eips,
            kubevirt=kubevirt,
            kubevirt_error=kubevirt_error,
            unparsed=unparsed,
            odd_ips=tuple(odd_ips),
        )

    def _read_kubevirt(self) -> tuple[KubevirtState, tuple[VirtualMachine, ...], str, Unparsed]:
        """The VMs and VMIs, the state of the KubeVirt API, why it is unreadable (or ""), and the objects
        skipped: one VM that does not parse is skipped by name, not a reason to lose the list."""
        try:
            retrying(self._retry, "GET /apis/kubevirt.io/v1", partial(self._api.discover, "kubevirt.io", "v1"))
        except NotFoundError:
            log.info("KubeVirt API kubevirt.io/v1 is not served: no virtual machines")
            return KubevirtState.ABSENT, (), "", ()
        except GCError as exc:
            log.warning("KubeVirt API cannot be discovered (%s): protecting anything VM-like", exc)
            return KubevirtState.UNREADABLE, (), str(exc), ()
        placeholders: list[VirtualMachine] = []
        try:
            vms, bad_vms = self._list(VMS, _vm_or_placeholder(parse_vm, VMS.kind), tolerate=True,
                                      salvage=placeholders)
            vmis, bad_vmis = self._list(VMIS, _vm_or_placeholder(parse_vmi, VMIS.kind), tolerate=True,
                                        salvage=placeholders)
        except GCError as exc:
            log.warning("KubeVirt objects cannot be listed (%s): protecting anything VM-like", exc)
            return KubevirtState.UNREADABLE, (), str(exc), ()
        bad = bad_vms + bad_vmis
        if len(bad) > len(placeholders):
            why = (f"{len(bad) - len(placeholders)} KubeVirt object(s) cannot be parsed and have no readable name "
                   "and namespace to protect: " + "; ".join(f"{kind} {name!r}: {why}" for kind, name, why in bad))
            log.warning("%s: protecting anything VM-like", why)
            return KubevirtState.UNREADABLE, (), why, ()
        return KubevirtState.READ, vms + vmis + tuple(placeholders), "", bad

    def _list_optional(self, k: _Kind, parse: Callable[[Any], T]) -> tuple[T, ...]:
        """A list of a CRD that may not be installed: 404 means there are none."""
        try:
            items, _ = self._list(k, parse)
        except NotFoundError:
            log.info("%s is not served (CRD not installed): none", k.list_path())
            return ()
        return items

    def _list(
        self, k: _Kind, parse: Callable[[Any], T], *, tolerate: bool = False, salvage: list[Any] | None = None
    ) -> tuple[tuple[T, ...], tuple[tuple[str, str, str], ...]]:
        """Every object of a kind, in pages; restarted once from the start if a continue token expires.

        With ``tolerate``, objects that do not parse are returned as ``(kind, name, why)``; the
        ``salvaged`` part of those that carry one (:class:`Salvageable`) is appended to ``salvage``.
        """
        with gc_paused():
            try:
                return self._list_once(k, parse, tolerate, salvage)
            except _ExpiredError as exc:
                log.warning("listing %s: %s; restarting the list from the beginning", k.list_path(), exc)
            if salvage is not None:
                salvage.clear()
            return self._list_once(k, parse, tolerate, salvage)

    def _list_once(
        self, k: _Kind, parse: Callable[[Any], T], tolerate: bool, salvage: list[Any] | None = None
    ) -> tuple[tuple[T, ...], tuple[tuple[str, str, str], ...]]:
        """Page by page, each page dropped before the next is decoded; the next page is asked for while
        this one is decoded (see :func:`peek_continue`)."""
        items: list[T] = []
        bad: list[tuple[str, str, str]] = []
        path = k.list_path()

        def fetch(cont: str | None) -> bytes:
            return retrying(self._retry, f"GET {path}", partial(self._api.list_body, k, cont))

        pages, started = 0, time.monotonic()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gc-next-page") as ahead:
            body = fetch(None)
            while True:
                pages += 1
                guess = peek_continue(body)
                upcoming = ahead.submit(fetch, guess) if guess else None
                page = _decode_page(k, body, path, parse)
                del body
                if page.parsed:
                    items.extend(page.items)
                else:
                    for raw in page.items:
                        try:
                            items.append(parse(raw))
                        except ParseError as exc:
                            if not tolerate:
                                raise FatalError(f"cannot parse {k.kind} {object_name(raw)!r}: {exc}") from exc
                            bad.append((k.kind, object_name(raw), str(exc)))
                            if salvage is not None and isinstance(exc, Salvageable):
                                salvage.append(exc.salvaged)
                token = page.token
                del page  # the raw dicts go before the next page is decoded
                if token is not None and not isinstance(token, str):
                    raise FatalError(f"GET {path}: metadata.continue is not a string")
                if upcoming is not None and token == guess:
                    body = upcoming.result()
                    continue
                if upcoming is not None:  # a wrong guess (never from kube-apiserver): wait it out, drop it
                    log.debug("GET %s: the peeked continue token was not the page's; fetching again", path)
                    with contextlib.suppress(GCError):
                        upcoming.result()
                if not token:
                    break
                body = fetch(token)
        log.info("listed %d %s in %d page(s) in %.2fs", len(items), k.plural, pages, time.monotonic() - started)
        return tuple(items), tuple(bad)


_CONTINUE_IN_HEAD: Final = re.compile(rb'"continue"\s*:\s*"([A-Za-z0-9+/=_.-]+)"')
_HEAD: Final = 4096


def peek_continue(body: bytes) -> str | None:
    """The continue token of a list answer, read from its head without decoding it; None if not there.

    kube-apiserver writes a list's ``metadata`` (with ``continue``) before its
    ``items``, so the token can be had at once and the next page asked for while
    this one is decoded: the server encodes page n+1 while we decode page n, on
    another core, and a large list costs about the larger of the two rather than
    their sum. Only the part before ``"items"`` is searched; a token that needs
    JSON unescaping is not guessed at. The decoded page's own token stays the
    authority: a guess that differs from it is dropped.
    """
    head = body[:_HEAD]
    items = head.find(b'"items"')
    if items < 0:
        return None
    found = _CONTINUE_IN_HEAD.search(head, 0, items)
    return found.group(1).decode("ascii") if found else None


# --- writing and second looks -----------------------------------------------


class KubeWriter(_KubeAccess):
    """Guarded writes; the inherited ``get_*`` give the second look before a write."""

    def delete_ip(self, ip: IpCR) -> tuple[str, dict[str, Any] | None]:
        """Delete an IP CR if it still has the uid and resourceVersion of the snapshot.

        Returns ``("done", manifest)`` (deleted, or now terminating behind its finalizer;
        the manifest as the API server answered, for the undo record) or ``("gone", None)``
        (404: already deleted — success). A precondition that does not hold raises
        :class:`ConflictError`.
        """
        what = f"DELETE {IPS.item_path(ip.meta.name)}"
        call = partial(self._api.delete_cluster_object, IPS, ip.meta.name, ip.meta.uid, ip.meta.resource_version)
        try:
            answer = retrying(self._retry, what, call)
        except NotFoundError:
            return "gone", None
        return "done", answer if isinstance(answer, dict) and answer.get("kind") == "IP" else None

    def release_finalizers(self, manifest: dict[str, Any], finalizers: Collection[str]) -> str:
        """Drop ``finalizers`` from a (terminating) IP CR with a PUT guarded by its resourceVersion.

        Returns "done" or "gone" (404); a stale resourceVersion raises :class:`ConflictError`.
        """
        meta = manifest.get("metadata") or {}
        name = str(meta.get("name", ""))
        body = copy.deepcopy(manifest)
        body["metadata"]["finalizers"] = [f for f in meta.get("finalizers") or [] if f not in finalizers]
        what = f"PUT {IPS.item_path(name)}"
        try:
            retrying(self._retry, what, partial(self._api.replace_cluster_object, IPS, name, body))
        except NotFoundError:
            return "gone"
        return "done"

    def create_ip(self, manifest: dict[str, Any]) -> None:
        """Create an IP CR (restore); an existing name raises :class:`ConflictError` (409 AlreadyExists)."""
        name = str((manifest.get("metadata") or {}).get("name", ""))
        retrying(self._retry, f"POST {IPS.list_path()} {name}", partial(self._api.create_cluster_object, IPS, manifest))

    def patch_subnet_status(self, subnet: Subnet, fields: dict[str, int | str]) -> None:
        """Merge-patch the status subresource, guarded by the snapshot's resourceVersion (409 → ConflictError)."""
        body: dict[str, Any] = {
            "metadata": {"resourceVersion": subnet.meta.resource_version},
            "status": dict(fields),
        }
        what = f"PATCH {SUBNETS.item_path(subnet.meta.name)}/status"
        retrying(self._retry, what, partial(self._api.merge_patch_cluster_status, SUBNETS, subnet.meta.name, body))
