"""Decoding list pages: the fast way (msgspec into only the fields the job needs) for pods and IP CRs,
else generically (:func:`.client.loads`) for the plain parsers of :mod:`.parse`."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ..errors import (
    FatalError,
)
from ..model import (
    IpCR,
    Meta,
    Pod,
)
from .client import _Kind, loads, translate_error
from .parse import (
    RESERVED_LABEL,
    _pod_networks,
    _shared_owner_ref,
    parse_ip,
    parse_pod,
    parse_timestamp,
    shared_tuple,
)

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
    kind: str | None = None  # PodList, or PartialObjectMetadataList when served metadata-only
    metadata: _ListMetaS | None = None
    items: list[_PodS] | None = None


class _IpListS(msgspec.Struct):
    metadata: _ListMetaS | None = None
    items: list[_IpS] | None = None



def _meta_from(m: _MetaS | None, *, version: bool = True) -> Meta | None:
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
    owners = shared_tuple(tuple([_shared_owner_ref(r.kind or "", r.name or "", r.uid or "", r.apiVersion or "",
                                                   bool(r.controller)) for r in refs])) if refs else ()
    finalizers = shared_tuple(tuple(map(sys.intern, m.finalizers))) if m.finalizers else ()
    return Meta(m.name, sys.intern(m.namespace or ""), m.uid or "", (m.resourceVersion or "") if version else "",
                creation, deletion, finalizers, owners)


def _pod_from(p: _PodS) -> Pod | None:
    """parse_pod's result, or None to leave the object to it."""
    meta = _meta_from(p.metadata, version=False)
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
    kind: str = ""  # the list's kind as sent (when known)


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
                return _Page(items, page.metadata.continue_ if page.metadata else None, True,
                             getattr(page, "kind", None) or "")
    try:
        whole = loads(body)
    except msgspec.DecodeError as exc:
        raise translate_error(exc, "GET", path) from exc
    if not isinstance(whole, dict) or not isinstance(whole.get("items") or [], list):
        raise FatalError(f"GET {path}: the answer is not a list")
    meta = whole.get("metadata")
    kind = whole.get("kind")
    return _Page(whole.get("items") or [], meta.get("continue") if isinstance(meta, dict) else None, False,
                 kind if isinstance(kind, str) else "")

