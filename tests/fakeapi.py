"""A stateful, wire-faithful fake kube-apiserver for integration tests.

No kube-apiserver can run here, so this serves the few resources kube-ovn-gc
touches over real HTTP (stdlib ``ThreadingHTTPServer``), with the conventions
the real server keeps: resourceVersion preconditions, Status bodies with the
real messages, paged lists served from a snapshot, status subresources,
finalizers and deletionTimestamp, merge / JSON / strategic-merge patches, and
numbers kept as it keeps them (an integer beyond int64 in a body becomes the
nearest float64; ``requests`` records the body exactly as sent).

Tests seed and inspect state in-process (``create``, ``get``, ``list``,
``put``, ``delete``, ``remove_finalizers``), steer the wire with ``inject``
(fail the next matching requests) and ``before`` (run a callback just before a
matching request), and read ``requests`` to see what the client sent.

Deliberate simplifications (the real server differs here):

- watch (``?watch=true``, what kubectl's ``delete --wait`` and ``rollout`` use) is served by polling the
  store every 20 ms: an object's intermediate states between two looks are not all sent, and deletions
  are remembered (for watches that start from an older resourceVersion) only for the last 1,000; no
  server-side apply (415);
- ``pods/log`` serves what the test wrote with :meth:`FakeApiServer.write_log` (as text/plain,
  streamed with chunked encoding under ``follow=true`` until :meth:`FakeApiServer.close_log`); no
  controller runs a Job or a Deployment (``tests/jobcontroller.py`` runs Jobs in the tests that need it);
- no authorization unless a bearer token is :meth:`FakeApiServer.restrict`-ed: its requests then pass
  an RBAC-like check and are refused with kube-apiserver's 403 message;
- strategic merge patch on built-in types is a plain merge patch (lists are
  replaced, not merged by key); on custom resources it is 415, as for real;
- only finalizers delay a delete: no pod graceful termination, no
  ``propagationPolicy`` handling, no garbage collector, no namespace lifecycle
  (objects may live in namespaces that do not exist);
- core and ``events.k8s.io`` Events are stored apart;
- no schema validation, defaulting or ``managedFields``.

Stored objects are never changed in place: every write stores a new dict. So
lists and GETs serve the stored objects without copying them, and answers are
encoded with orjson: the server keeps up with a client paging through 100k
objects (see ``bench/``). :meth:`FakeApiServer.seed` bulk-loads objects, and
:meth:`FakeApiServer.checkpoint` / :meth:`FakeApiServer.rollback` put a
seeded state back after a pass changed it.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import copy
import dataclasses
import json
import random
import re
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import yaml

JSON = dict[str, Any]

_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update")
_SUB_VERBS = ("get", "patch", "update")
_SHORT_NAMES = {"virtualmachines": ("vm", "vms"), "virtualmachineinstances": ("vmi", "vmis")}
_CUSTOM_GROUPS = frozenset({"kubeovn.io", "kubevirt.io"})
_MAX_SNAPSHOTS = 64
_SERVER_OWNED = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
_REASONS = {  # HTTP code -> the Status reason kube-apiserver pairs with it
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    status: bool
    generation: bool = False
    returns_deleted: bool = False
    fields: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``pods`` / ``ips.kubeovn.io``, as the apiserver names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def custom(self) -> bool:
        return self.group in _CUSTOM_GROUPS

    def details(self, name: str, kind: str | None = None) -> JSON:
        out: JSON = {"name": name}
        if self.group:
            out["group"] = self.group
        out["kind"] = kind or self.plural
        return out


def _cr(plural: str, singular: str, kind: str, group: str, namespaced: bool, status: bool) -> ResourceType:
    return ResourceType(group, "v1", plural, singular, kind, namespaced, status, True, True)


POD_FIELDS: tuple[str, ...] = (
    # kube-apiserver's pod field selectors (pkg/registry/core/pod/strategy.go ToSelectableFields, and the
    # field label conversion in pkg/apis/core/v1/conversion.go); spec.hostNetwork since Kubernetes 1.28
    # (kubernetes/kubernetes#110477): FakeApiServer(pod_fields=...) serves an older set.
    "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
    "status.phase", "status.podIP", "status.nominatedNodeName",
)
_FIELD_DEFAULTS = {"spec.hostNetwork": "false"}  # a field the selector reads as FormatBool(false) when absent

METADATA_LIST = "as=PartialObjectMetadataList"  # in Accept: a metadata-only list (meta.k8s.io/v1)

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "pods", "pod", "Pod", True, True, True, True, POD_FIELDS),
    ResourceType("", "v1", "nodes", "node", "Node", False, True),
    ResourceType("", "v1", "namespaces", "namespace", "Namespace", False, True, returns_deleted=True),
    ResourceType("", "v1", "events", "event", "Event", True, False),
    ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, False),
    ResourceType("apps", "v1", "statefulsets", "statefulset", "StatefulSet", True, True, True),
    ResourceType("apps", "v1", "deployments", "deployment", "Deployment", True, True, True),
    ResourceType("batch", "v1", "cronjobs", "cronjob", "CronJob", True, True, True),
    ResourceType("batch", "v1", "jobs", "job", "Job", True, True, True),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, False),
    ResourceType("events.k8s.io", "v1", "events", "event", "Event", True, False),
    _cr("ips", "ip", "IP", "kubeovn.io", False, False),
    _cr("subnets", "subnet", "Subnet", "kubeovn.io", False, True),
    _cr("vips", "vip", "Vip", "kubeovn.io", False, True),
    _cr("iptables-eips", "iptables-eip", "IptablesEIP", "kubeovn.io", False, True),
    _cr("ovn-eips", "ovn-eip", "OvnEip", "kubeovn.io", False, True),
    _cr("virtualmachines", "virtualmachine", "VirtualMachine", "kubevirt.io", True, True),
    _cr("virtualmachineinstances", "virtualmachineinstance", "VirtualMachineInstance", "kubevirt.io",
        True, True),
)


class StatusError(Exception):
    """A failure the server answers with a ``Status`` body (like Go's ``apierrors.StatusError``)."""

    def __init__(self, code: int, message: str, details: JSON | None = None, reason: str | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.message = message
        self.details = details

    def body(self) -> JSON:
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    body: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    body.update(message=message, reason=reason)
    if details:
        body["details"] = details
    body["code"] = code
    return body


def _not_found(rt: ResourceType, name: str) -> StatusError:
    return StatusError(404, f'{rt.qualified} "{name}" not found', rt.details(name))


def _no_route() -> StatusError:
    return StatusError(404, "the server could not find the requested resource", {})


def _not_allowed() -> StatusError:
    return StatusError(405, "the server does not allow this method on the requested resource")


def _conflict(rt: ResourceType, name: str, why: str) -> StatusError:
    message = f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}'
    return StatusError(409, message, rt.details(name))


_MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def _invalid(rt: ResourceType, name: str, field_path: str, detail: str,
             cause: str = "FieldValueInvalid") -> StatusError:
    details = rt.details(name, rt.kind)
    details["causes"] = [{"reason": cause, "message": detail, "field": field_path}]
    return StatusError(422, f'{rt.qualified_kind} "{name}" is invalid: {field_path}: {detail}', details)


def _unsupported_media() -> StatusError:
    accepted = "application/json-patch+json, application/merge-patch+json"
    return StatusError(
        415, f"the body of the request was in an unknown format - accepted media types include: {accepted}"
    )


# --------------------------------------------------------------------------- selectors

_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_REQ_NOT = re.compile(rf"\s*!\s*({_KEY})\s*")
_REQ_SET = re.compile(rf"\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*")
_REQ_CMP = re.compile(rf"\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*")
_REQ_HAS = re.compile(rf"\s*({_KEY})\s*")
_SET_VALUE = re.compile(rf"\s*({_VALUE})\s*")

Requirement = tuple[str, str, frozenset[str]]


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``; comma = AND."""
    if not text.strip():
        return []
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        if m := _REQ_NOT.fullmatch(part):
            reqs.append((m[1], "!", frozenset()))
        elif m := _REQ_SET.fullmatch(part):
            values = [_SET_VALUE.fullmatch(v) for v in m[3].split(",")]
            if not all(values) or not m[3].strip():
                raise StatusError(400, f"unable to parse requirement: invalid set values: {part.strip()!r}")
            reqs.append((m[1], m[2], frozenset(v[1] for v in values if v)))
        elif m := _REQ_CMP.fullmatch(part):
            reqs.append((m[1], "=" if m[2] == "==" else m[2], frozenset({m[3]})))
        elif m := _REQ_HAS.fullmatch(part):
            reqs.append((m[1], "exists", frozenset()))
        else:
            raise StatusError(400, f"unable to parse requirement: {part.strip()!r} in selector {text!r}")
    return reqs


def _labels_match(reqs: list[Requirement], labels: dict[str, str]) -> bool:
    for key, op, values in reqs:
        has, value = key in labels, labels.get(key)
        ok = {
            "exists": has,
            "!": not has,
            "=": has and value in values,
            "!=": not has or value not in values,
            "in": has and value in values,
            "notin": not has or value not in values,
        }[op]
        if not ok:
            return False
    return True


def _parse_field_selector(rt: ResourceType, text: str, supported: tuple[str, ...] | None = None
                          ) -> list[Requirement]:
    reqs: list[Requirement] = []
    for part in (p for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if not m:
            raise StatusError(400, f"invalid selector: {text!r}; can't understand {part!r}")
        if m[1] not in ("metadata.name", "metadata.namespace", *(rt.fields if supported is None else supported)):
            if rt.custom:
                msg = f'"{m[1]}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            else:
                msg = f"field label not supported: {m[1]}"
            raise StatusError(400, msg)
        reqs.append((m[1], "!=" if m[2] == "!=" else "=", frozenset({m[3]})))
    return reqs


def _fields_match(reqs: list[Requirement], obj: JSON) -> bool:
    for path, op, values in reqs:
        cur: Any = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, bool):
            value = "true" if cur else "false"  # strconv.FormatBool, as the selectable fields are rendered
        else:
            value = _FIELD_DEFAULTS.get(path, "") if cur is None else str(cur)
        if (value in values) != (op == "="):
            return False
    return True


# --------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class _PatchFailed(Exception):
    pass


def _tokens(pointer: Any) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise _PatchFailed(f"invalid JSON pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def _index(token: str, size: int) -> int:
    if not token.isdigit() or (token != "0" and token.startswith("0")) or int(token) >= size:
        raise _PatchFailed(f"invalid array index {token!r}")
    return int(token)


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(token, len(doc))]
        else:
            raise _PatchFailed(f"doc is missing path: /{'/'.join(tokens)}")
    return doc


def _jp_add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _resolve(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else _index(last, len(parent) + 1), value)
    else:
        raise _PatchFailed(f"add operation does not apply: doc is missing path: /{'/'.join(tokens)}")
    return doc


def _jp_remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _PatchFailed("cannot remove the whole document")
    parent, last = _resolve(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(last, len(parent)))
    raise _PatchFailed(f"remove operation does not apply: doc is missing path: /{'/'.join(tokens)}")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test, move, copy) on a copy of ``doc``."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise StatusError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    try:
        for op in ops:
            kind, path = op.get("op"), _tokens(op.get("path"))
            if kind == "add":
                doc = _jp_add(doc, path, copy.deepcopy(op.get("value")))
            elif kind == "remove":
                _jp_remove(doc, path)
            elif kind == "replace":
                if path:
                    _jp_remove(doc, path)
                doc = _jp_add(doc, path, copy.deepcopy(op.get("value")))
            elif kind == "test":
                if _canonical(_resolve(doc, path)) != _canonical(op.get("value")):
                    raise _PatchFailed(f"testing value {op.get('path')} failed: test failed")
            elif kind in ("move", "copy"):
                source = _tokens(op.get("from"))
                value = _jp_remove(doc, source) if kind == "move" else copy.deepcopy(_resolve(doc, source))
                doc = _jp_add(doc, path, value)
            else:
                raise _PatchFailed(f"Unexpected kind: {kind}")
    except _PatchFailed as exc:
        raise StatusError(422, str(exc)) from None
    return doc


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; ``status`` is the code it answered."""

    method: str
    path: str
    query: dict[str, str]
    verb: str
    group: str
    version: str
    resource: str
    subresource: str
    namespace: str
    name: str
    status: int
    content_type: str
    body: Any = None
    user: str = ""  # the user of a restrict()-ed token, else ""
    accept: str = ""  # the Accept header
    size: int = -1  # bytes of the answer's body as sent over HTTP (-1: streamed, or not sent yet)


@dataclass
class _Target:
    root: str = ""  # "api", "apis", "version" or "" (not served)
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    verb: str = ""
    namespaced_path: bool = False


def _parse_target(method: str, path: str, query: dict[str, str]) -> _Target:
    """Split a URL path into group/version/resource/...; purely syntactic, never raises."""
    segs = [unquote(s) for s in path.split("/") if s]
    t = _Target()
    if segs[:1] == ["api"]:
        t.root, t.version, rest = "api", (segs[1] if len(segs) > 1 else ""), segs[2:]
    elif segs[:1] == ["apis"]:
        t.root = "apis"
        t.group = segs[1] if len(segs) > 1 else ""
        t.version = segs[2] if len(segs) > 2 else ""
        rest = segs[3:]
    else:
        t.root, rest = ("version" if segs == ["version"] else ""), []
    namespace_subresource = len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[:1] == ["namespaces"] and len(rest) >= 3 and not namespace_subresource:
        t.namespaced_path, t.namespace, rest = True, rest[1], rest[2:]
    if rest:
        t.resource = rest[0]
        t.name = rest[1] if len(rest) > 1 else ""
        t.subresource = "/".join(rest[2:])
    has_name = bool(t.name)
    if not rest:
        t.verb = "get"
    elif method == "GET":
        t.verb = "get" if has_name else ("watch" if query.get("watch") in ("1", "true") else "list")
    else:
        t.verb = {
            ("POST", False): "create",
            ("PUT", True): "update",
            ("PATCH", True): "patch",
            ("DELETE", True): "delete",
            ("DELETE", False): "deletecollection",
        }.get((method, has_name), "")
    return t


@dataclass
class _Rule:
    method: str
    pattern: re.Pattern[str]
    remaining: int | None
    status: int = 0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    fn: Callable[[FakeApiServer], object] | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.pattern.search(path) is not None


class Stream:
    """A streamed answer (``follow=true`` logs): chunks of bytes, sent with chunked transfer encoding."""

    def __init__(self, chunks: Iterator[bytes], content_type: str = "text/plain") -> None:
        self.chunks = chunks
        self.content_type = content_type


@dataclass
class _Log:
    """One container's log: what was written so far, and whether the container has ended."""

    data: bytearray = field(default_factory=bytearray)
    closed: bool = False


Authorizer = Callable[[str, str, str, str, str, str], bool]
"""(verb, API group, resource, subresource, namespace, name) -> allowed."""


@dataclass(frozen=True)
class _Subject:
    user: str
    allow: Authorizer


@dataclass(frozen=True)
class _Snapshot:
    resource: ResourceType
    rv: int
    items: list[JSON]
    filtered: bool
    selectors: tuple[str, str] = ("", "")  # (labelSelector, fieldSelector) of the first page


INT64_MAX = (1 << 63) - 1


def _int64_or_float(text: str) -> int | float:
    """A JSON integer as kube-apiserver decodes it into an object it stores (k8s.io/apimachinery
    pkg/util/json.Unmarshal -> sigs.k8s.io/json UnmarshalCaseSensitivePreserveInts): an ``int64``
    when it fits, else a ``float64`` ("falling back to float64 on any parse or overflow error")."""
    value = int(text)
    return value if -INT64_MAX - 1 <= value <= INT64_MAX else float(value)


def make_tls_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, made with the openssl CLI."""
    cert, key = directory / "apiserver.crt", directory / "apiserver.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=fake-apiserver", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,digitalSignature,keyCertSign"],
                   check=True, capture_output=True)
    return cert, key


def _encode(payload: Any) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:  # what orjson refuses (int keys, ints over 64 bits), json takes
        return json.dumps(payload).encode()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise StatusError(400, "metadata must be an object")
    return meta


# --------------------------------------------------------------------------- the server


class FakeApiServer:
    """An in-memory kube-apiserver on ``http://127.0.0.1:<port>``; see the module docstring."""

    def __init__(self, *, kubevirt: bool = True, clock: Callable[[], datetime] | None = None,
                 tls: tuple[Path, Path] | None = None, metadata_lists: bool = True,
                 pod_fields: tuple[str, ...] = POD_FIELDS) -> None:
        """``tls``: (certificate, private key) to serve HTTPS, as kubectl needs: it sends no credentials
        over plain HTTP (kubernetes/kubectl#744). :func:`make_tls_files` makes a pair.

        ``metadata_lists``: lists asked for with ``Accept: application/json;as=PartialObjectMetadataList;
        g=meta.k8s.io;v=v1`` are served metadata-only, as kube-apiserver does since 1.15; False serves a
        server (or an aggregated API) that does not: the full list when the Accept header also takes
        ``application/json``, else 406. ``pod_fields``: the pod field selectors served (others are 400
        ``field label not supported``), e.g. without ``spec.hostNetwork`` for a server before 1.28."""
        self.kubevirt = kubevirt
        self.metadata_lists = metadata_lists
        self.pod_fields = pod_fields
        self.tls = tls
        self._clock = clock or (lambda: datetime.now(UTC))
        self._types = tuple(rt for rt in RESOURCES if kubevirt or rt.group != "kubevirt.io")
        self._lock = threading.RLock()
        self._rv = 1
        self._store: dict[ResourceType, dict[tuple[str, str], JSON]] = {rt: {} for rt in self._types}
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._faults: list[_Rule] = []
        self._hooks: list[_Rule] = []
        self._log: list[RequestRecord] = []
        self._logs: dict[tuple[str, str, str], _Log] = {}
        self._logs_changed = threading.Condition(self._lock)
        self._subjects: dict[str, _Subject] = {}
        self._tombstones: deque[tuple[ResourceType, tuple[str, str], int, JSON]] = deque(maxlen=1000)
        self._stopping = False
        self._last = threading.local()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeApiServer:
        if self._httpd is None:
            self._httpd = _HTTPServer(self, self.tls)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        with self._lock:  # end every log stream that is still following
            self._stopping = True
            self._logs_changed.notify_all()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeApiServer is not started")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def write_kubeconfig(self, path: str | Path, context: str = "fake", token: str = "fake-token") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": self._cluster_entry()}],
            "users": [{"name": context, "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        out = Path(path)
        out.write_text(yaml.safe_dump(config, sort_keys=False))
        return out

    def _cluster_entry(self) -> JSON:
        entry: JSON = {"server": self.url}
        if self.tls:
            entry["certificate-authority-data"] = base64.b64encode(Path(self.tls[0]).read_bytes()).decode()
        return entry

    # ------------------------------------------------------------------ test-side API

    def resource_type(self, resource: str) -> ResourceType:
        """Look a served type up by plural (``"ips"``) or ``plural.group`` (``"events.events.k8s.io"``)."""
        for rt in self._types:
            if resource in (rt.plural, rt.qualified):
                return rt
        raise KeyError(f"resource {resource!r} is not served")

    def _key(self, rt: ResourceType, name: str, namespace: str | None,
             obj: JSON | None = None) -> tuple[str, str]:
        if not rt.namespaced:
            return "", name
        meta = (obj or {}).get("metadata") or {}
        return namespace or meta.get("namespace") or "default", name

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def create(self, resource: str, obj: JSON, namespace: str | None = None) -> JSON:
        """Seed an object; set ``uid``/``creationTimestamp``/``deletionTimestamp``/``generation`` are kept."""
        rt = self.resource_type(resource)
        ns, _ = self._key(rt, "", namespace, obj)
        with self._lock:
            return copy.deepcopy(self._create(rt, ns, copy.deepcopy(obj), seed=True))

    def seed(self, resource: str, objs: builtins.list[JSON]) -> int:
        """Bulk :meth:`create` for large clusters: one lock, no copies, nothing returned.

        The objects are taken over: the caller must not change them afterwards (they may
        share sub-objects with each other, since the server never changes a stored object).
        """
        rt = self.resource_type(resource)
        with self._lock:
            for obj in objs:
                ns, _ = self._key(rt, "", None, obj)
                self._create(rt, ns, obj, seed=True)
        return len(objs)

    def checkpoint(self) -> object:
        """The stored state, cheaply (objects are shared, never changed in place), for :meth:`rollback`."""
        with self._lock:
            return self._rv, {rt: dict(objs) for rt, objs in self._store.items()}

    def rollback(self, state: object) -> None:
        """Put back a :meth:`checkpoint`; list snapshots, faults, hooks and the request log are cleared."""
        rv, store = state  # type: ignore[misc]
        with self._lock:
            self._store = {rt: dict(objs) for rt, objs in store.items()}
            self._rv = max(self._rv, rv)  # resourceVersions never go back
            self._snapshots.clear()
            self._faults.clear()
            self._hooks.clear()
            self._log.clear()

    def get(self, resource: str, name: str, namespace: str | None = None) -> JSON | None:
        rt = self.resource_type(resource)
        with self._lock:
            return copy.deepcopy(self._store[rt].get(self._key(rt, name, namespace)))

    def list(self, resource: str, namespace: str | None = None) -> list[JSON]:
        rt = self.resource_type(resource)
        with self._lock:
            items = sorted(self._store[rt].items())
            return [copy.deepcopy(o) for (ns, _), o in items if namespace is None or ns == namespace]

    def delete(self, resource: str, name: str, namespace: str | None = None) -> JSON | None:
        """Delete as the apiserver would (finalizers → terminating); ``None`` when absent."""
        rt = self.resource_type(resource)
        key = self._key(rt, name, namespace)
        with self._lock:
            if key not in self._store[rt]:
                return None
            return copy.deepcopy(self._delete(rt, key, {}, dry_run=False)[0])

    def remove_finalizers(self, resource: str, name: str, namespace: str | None = None) -> JSON | None:
        """Drop every finalizer, as the owning controller would; a terminating object goes away."""
        rt = self.resource_type(resource)
        key = self._key(rt, name, namespace)
        with self._lock:
            old = self._store[rt].get(key)
            if old is None or not old["metadata"].get("finalizers"):
                return copy.deepcopy(old)
            new = copy.deepcopy(old)
            _meta(new).pop("finalizers", None)
            return copy.deepcopy(self._commit(rt, key, new))

    def put(self, resource: str, obj: JSON) -> JSON:
        """Overwrite (or create) an object as given, bypassing every check; bumps resourceVersion."""
        rt = self.resource_type(resource)
        new = copy.deepcopy(obj)
        meta = _meta(new)
        key = self._key(rt, meta.get("name", ""), None, new)
        with self._lock:
            old_meta = (self._store[rt].get(key) or {}).get("metadata", {})
            meta.setdefault("uid", old_meta.get("uid") or str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", old_meta.get("creationTimestamp") or _rfc3339(self._clock()))
            if rt.namespaced:
                meta["namespace"] = key[0]
            new.update(kind=rt.kind, apiVersion=rt.api_version)
            meta["resourceVersion"] = self._bump()
            self._store[rt][key] = new
            return copy.deepcopy(new)

    def modify(self, resource: str, name: str, change: Callable[[JSON], None],
               namespace: str | None = None) -> JSON | None:
        """Read, change and write back one object at once, as a controller's update guarded by its
        resourceVersion: a write that came in between is never lost (a spec patch while a simulated
        controller writes the status). ``None`` when absent."""
        with self._lock:
            obj = self.get(resource, name, namespace)
            if obj is None:
                return None
            change(obj)
            return self.put(resource, obj)

    def restrict(self, token: str, user: str, allow: Authorizer) -> None:
        """Requests with bearer ``token`` act as ``user`` and are refused (403, kube-apiserver's RBAC
        message) unless ``allow(verb, group, resource, subresource, namespace, name)``; other tokens
        stay unrestricted."""
        with self._lock:
            self._subjects[token] = _Subject(user, allow)

    def write_log(self, namespace: str, pod: str, container: str, text: str | bytes) -> None:
        """Append to a container's log (what its stdout and stderr wrote); followers get it at once."""
        with self._lock:
            entry = self._logs.setdefault((namespace, pod, container), _Log())
            entry.data += text.encode() if isinstance(text, str) else text
            self._logs_changed.notify_all()

    def close_log(self, namespace: str, pod: str, container: str) -> None:
        """The container has ended: follow streams of its log end once they have sent everything."""
        with self._lock:
            self._logs.setdefault((namespace, pod, container), _Log()).closed = True
            self._logs_changed.notify_all()

    def read_log(self, namespace: str, pod: str, container: str) -> str:
        with self._lock:
            entry = self._logs.get((namespace, pod, container))
            return bytes(entry.data).decode() if entry else ""

    def expire_continue_tokens(self) -> None:
        """Forget every list snapshot, as etcd compaction would: later pages get 410 Expired."""
        with self._lock:
            self._snapshots.clear()

    # ------------------------------------------------------------------ faults and log

    def inject(self, method: str, path_regex: str, status: int, body: Any = None,
               headers: dict[str, str] | None = None, times: int | None = 1) -> None:
        """Answer the next ``times`` requests matching (``None`` = all) with ``status``.

        ``method`` is an HTTP method or ``"*"``; ``path_regex`` is searched in the URL path (no query).
        The body defaults to a Status (with ``details.retryAfterSeconds`` when a Retry-After is given).
        """
        with self._lock:
            self._faults.append(_Rule(method.upper(), re.compile(path_regex), times, status, body,
                                      dict(headers or {})))

    def before(self, method: str, path_regex: str, fn: Callable[[FakeApiServer], object],
               times: int | None = 1) -> None:
        """Run ``fn(server)`` just before handling the next ``times`` matching requests."""
        with self._lock:
            self._hooks.append(_Rule(method.upper(), re.compile(path_regex), times, fn=fn))

    @property
    def requests(self) -> builtins.list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def clear_faults(self) -> None:
        """Forget every injected fault and hook: the cluster recovers."""
        with self._lock:
            self._faults.clear()
            self._hooks.clear()

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _take(self, rules: builtins.list[_Rule], method: str, path: str, *,
              every: bool) -> builtins.list[_Rule]:
        """The first (or every) matching rule, each used up once."""
        taken: builtins.list[_Rule] = []
        with self._lock:
            for rule in list(rules):
                if rule.matches(method, path) and (every or not taken):
                    taken.append(rule)
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            rules.remove(rule)
        return taken

    # ------------------------------------------------------------------ HTTP entry point

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes
               ) -> tuple[int, Any, dict[str, str]]:
        """Serve one request; returns (status, JSON body, extra headers). Used by the HTTP handler."""
        split = urlsplit(target)
        path = split.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        ctype = headers.get("content-type", "")
        t = _parse_target(method, path, query)
        body: Any = None
        sent: Any = None
        if raw:
            try:
                sent = json.loads(raw)  # exactly what the client sent
                body = json.loads(raw, parse_int=_int64_or_float)  # what kube-apiserver keeps of it
            except ValueError:
                body = sent = raw.decode("utf-8", "replace")
        extra: dict[str, str] = {}
        try:
            for hook in self._take(self._hooks, method, path, every=True):
                assert hook.fn is not None
                hook.fn(self)  # may raise StatusError to answer with it
            if faults := self._take(self._faults, method, path, every=False):
                status, payload, extra = faults[0].status, faults[0].body, faults[0].headers
                if payload is None:
                    retry_after = {k.lower(): v for k, v in extra.items()}.get("retry-after", "")
                    details = {"retryAfterSeconds": int(retry_after)} if retry_after.isdigit() else None
                    payload = status_body(status, _REASONS.get(status, "Unknown"),
                                          f"injected fault: HTTP {status}", details)
            else:
                auth = headers.get("authorization", "")
                if not auth.startswith("Bearer "):
                    raise StatusError(401, "Unauthorized")
                token = auth.removeprefix("Bearer ").strip()
                if (t.group, t.resource, method) == ("authorization.k8s.io", "selfsubjectaccessreviews", "POST"):
                    status, payload = 201, self._access_review(token, body)
                else:
                    self._authorize(token, t)
                    status, payload = self._dispatch(method, t, query, ctype, raw, body,
                                                     headers.get("accept", ""))
                if isinstance(payload, Stream):
                    extra = {"Content-Type": payload.content_type}
                elif t.subresource == "log":
                    extra = {"Content-Type": "text/plain"}
        except StatusError as exc:
            status, payload = exc.code, exc.body()
        except Exception as exc:  # a bug in the fake or a hook: answer like an apiserver panic would
            status, payload = 500, status_body(500, "InternalError", f"fake apiserver: {exc!r}")
        subject = self._subjects.get(headers.get("authorization", "").removeprefix("Bearer ").strip())
        record = RequestRecord(method, path, query, t.verb, t.group, t.version, t.resource, t.subresource,
                               t.namespace, t.name, status, ctype, sent, subject.user if subject else "",
                               headers.get("accept", ""))
        with self._lock:
            self._log.append(record)
            self._last.at = (len(self._log) - 1, record)  # the handler thread adds its size once it is sent
        return status, payload, extra

    def sent(self, size: int) -> None:
        """The body of this thread's last answer was ``size`` bytes: its record says so."""
        at = getattr(self._last, "at", None)
        if at is None:
            return
        index, record = at
        with self._lock:
            if index < len(self._log) and self._log[index] is record:
                self._log[index] = dataclasses.replace(record, size=size)
        self._last.at = None

    def _access_review(self, token: str, body: Any) -> JSON:
        """``SelfSubjectAccessReview`` (every authenticated user may create one: ``system:basic-user``),
        answered by the same check as the token's requests."""
        attrs = ((body or {}).get("spec") or {}).get("resourceAttributes") if isinstance(body, dict) else None
        if not isinstance(attrs, dict):
            raise StatusError(422, "spec.resourceAttributes: Required value")
        with self._lock:
            subject = self._subjects.get(token)
        allowed = subject is None or subject.allow(
            attrs.get("verb", ""), attrs.get("group", ""), attrs.get("resource", ""), attrs.get("subresource", ""),
            attrs.get("namespace", ""), attrs.get("name", ""))
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
                "spec": body["spec"], "status": {"allowed": allowed}}

    def _authorize(self, token: str, t: _Target) -> None:
        """RBAC for a :meth:`restrict`-ed token, with the message of kube-apiserver's ``forbiddenMessage``
        (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go) wrapped by
        ``apierrors.NewForbidden``."""
        with self._lock:
            subject = self._subjects.get(token)
        if subject is None or not t.resource:  # discovery is open to every authenticated user
            return
        if subject.allow(t.verb, t.group, t.resource, t.subresource, t.namespace, t.name):
            return
        full = f"{t.resource}/{t.subresource}" if t.subresource else t.resource
        where = f"in the namespace {t.namespace!r}" if t.namespace else "at the cluster scope"
        why = (f'User "{subject.user}" cannot {t.verb} resource "{full}" in API group "{t.group}" '
               f'{where}').replace("'", '"')
        qualified = f"{t.resource}.{t.group}" if t.group else t.resource
        subject_text = f'{qualified} "{t.name}"' if t.name else qualified
        details: JSON = {"name": t.name} if t.name else {}
        if t.group:
            details["group"] = t.group
        details["kind"] = t.resource
        raise StatusError(403, f"{subject_text} is forbidden: {why}", details)

    def _dispatch(self, method: str, t: _Target, query: dict[str, str], ctype: str, raw: bytes,
                  body: Any, accept: str = "") -> tuple[int, Any]:
        if not t.resource:
            if method != "GET":
                raise _not_allowed()
            return 200, self._discovery(t)
        rt = next((r for r in self._types
                   if (r.group, r.version, r.plural) == (t.group, t.version, t.resource)), None)
        if rt is None or (t.namespaced_path and not rt.namespaced) or (
                not t.namespaced_path and t.name and rt.namespaced):
            raise _no_route()
        if rt.plural == "pods" and not rt.group and t.subresource == "log" and t.namespaced_path:
            if method != "GET":
                raise _not_allowed()
            return 200, self._pod_log(t.namespace, t.name, query)
        if t.subresource and (t.subresource != "status" or not rt.status):
            raise _no_route()
        if rt.namespaced and not t.namespaced_path and t.verb != "list":
            raise _not_allowed()
        if t.verb not in (_SUB_VERBS if t.subresource else (*_VERBS, "watch")):
            raise _not_allowed()
        if raw and isinstance(body, str) and "yaml" not in ctype:
            raise StatusError(400, f"couldn't decode the request body as JSON: {body[:80]!r}")
        dry_run = query.get("dryRun") == "All"
        ns = t.namespace if rt.namespaced else ""
        scope = ns if t.namespaced_path else None
        if t.verb == "watch":
            return 200, Stream(self._watch(rt, scope, query), "application/json")
        with self._lock:
            if t.verb == "list":
                return 200, self._metadata_only(self._list(rt, scope, query), accept)
            if t.verb == "get":
                return 200, self._existing(rt, (ns, t.name))  # never changed in place: no copy
            if t.verb == "create":
                self._require_json(ctype)
                return 201, self._create(rt, ns, self._object_body(body), seed=False, dry_run=dry_run)
            if t.verb == "update":
                self._require_json(ctype)
                return 200, self._update(rt, (ns, t.name), self._object_body(body), t.subresource,
                                         require_rv=True, dry_run=dry_run)
            if t.verb == "patch":
                return 200, self._patch(rt, (ns, t.name), ctype, body, t.subresource, dry_run)
            options = body if isinstance(body, dict) else {}
            dry_run = dry_run or options.get("dryRun") == ["All"]
            if t.verb == "delete":
                obj, removed = self._delete(rt, (ns, t.name), options, dry_run)
                if removed and not rt.returns_deleted:
                    details = {**rt.details(t.name), "uid": obj["metadata"].get("uid")}
                    return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                 "details": details}
                return 200, obj
            listed = self._list(rt, scope, {**query, "limit": "", "continue": ""})  # deletecollection
            keys = [self._key(rt, o["metadata"]["name"], None, o) for o in listed["items"]]
            return 200, {**listed, "items": [self._delete(rt, k, options, dry_run)[0] for k in keys]}

    def _pod_log(self, namespace: str, name: str, query: dict[str, str]) -> bytes | Stream:
        """``GET pods/NAME/log``: the checks and messages of kube-apiserver's pod log REST
        (pkg/registry/core/pod/strategy.go ``LogLocation``), then the log, whole or followed."""
        rt = self.resource_type("pods")
        with self._lock:
            pod = self._existing(rt, (namespace, name))
            names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or ()]
            container = query.get("container") or ""
            if not container:
                if len(names) != 1:
                    raise StatusError(400, f"a container name must be specified for pod {name}, choose one of: "
                                      f"[{' '.join(names)}]")
                container = names[0]
            if container not in names:
                raise StatusError(400, f"container {container} is not valid for pod {name}")
            statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or ()}
            state = (statuses.get(container) or {}).get("state") or {"waiting": {"reason": "ContainerCreating"}}
            if "waiting" in state:
                reason = (state["waiting"] or {}).get("reason") or "ContainerCreating"
                raise StatusError(400, f'container "{container}" in pod "{name}" is waiting to start: {reason}')
            key = (namespace, name, container)
            if query.get("follow") not in ("1", "true"):
                entry = self._logs.get(key)
                return bytes(entry.data) if entry else b""
        return Stream(self._follow(key))

    def _follow(self, key: tuple[str, str, str]) -> Iterator[bytes]:
        """What was written, then what is written, until the container ends (or the server stops)."""
        sent = 0
        while True:
            with self._lock:
                entry = self._logs.setdefault(key, _Log())
                while len(entry.data) == sent and not entry.closed and not self._stopping:
                    self._logs_changed.wait(timeout=1.0)
                chunk, done = bytes(entry.data[sent:]), entry.closed or self._stopping
            if chunk:
                sent += len(chunk)
                yield chunk
            elif done:
                return

    def _watch(self, rt: ResourceType, namespace: str | None, query: dict[str, str]) -> Iterator[bytes]:
        """Watch events, one JSON object a line, found by looking at the store every 20 ms: ADDED,
        MODIFIED, DELETED since ``resourceVersion`` (deletions from the remembered tombstones), the initial
        ADDED events and the initial-events-end BOOKMARK under ``sendInitialEvents=true``, until
        ``timeoutSeconds`` (at most 10 minutes) or the server stops."""
        labels = parse_label_selector(query.get("labelSelector", ""))
        fields = _parse_field_selector(rt, query.get("fieldSelector", ""))
        end = time.monotonic() + min(float(query.get("timeoutSeconds") or 600), 600)

        def matching() -> dict[tuple[str, str], JSON]:
            return {k: o for k, o in self._store[rt].items()
                    if (namespace is None or k[0] == namespace) and _fields_match(fields, o)
                    and _labels_match(labels, o["metadata"].get("labels") or {})}

        def event(kind: str, obj: JSON) -> bytes:
            return _encode({"type": kind, "object": obj}) + b"\n"

        initial = query.get("sendInitialEvents") == "true"
        try:
            since = int(query.get("resourceVersion") or 0)
        except ValueError:
            raise StatusError(400, f"invalid resourceVersion {query.get('resourceVersion')!r}") from None
        out: list[bytes] = []
        with self._lock:
            known = matching()
            for _, o in sorted(known.items()):
                rv = int(o["metadata"]["resourceVersion"])
                if initial or since == 0 or rv > since:
                    out.append(event("ADDED" if initial or since == 0 else "MODIFIED", o))
            for trt, k, rv, o in self._tombstones:
                if trt == rt and k not in known and since and rv >= since and not initial and (
                        namespace is None or k[0] == namespace) and _fields_match(fields, o):
                    out.append(event("DELETED", o))
            if initial:
                out.append(event("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": {
                    "resourceVersion": str(self._rv), "annotations": {"k8s.io/initial-events-end": "true"}}}))
        return self._watch_on(rt, matching, known, b"".join(out), end)

    def _watch_on(self, rt: ResourceType, matching: Callable[[], dict[tuple[str, str], JSON]],
                  known: dict[tuple[str, str], JSON], first: bytes, end: float) -> Iterator[bytes]:
        """The rest of a watch: what :meth:`_watch` found at once (before the answer's headers went out,
        so that nothing written after them is taken for the past), then every change it sees."""

        def event(kind: str, obj: JSON) -> bytes:
            return _encode({"type": kind, "object": obj}) + b"\n"

        if first:
            yield first
        while time.monotonic() < end and not self._stopping:
            time.sleep(0.02)
            out = []
            with self._lock:
                now = matching()
                for k, o in sorted(now.items()):
                    old = known.get(k)
                    if old is None:
                        out.append(event("ADDED", o))
                    elif old["metadata"]["resourceVersion"] != o["metadata"]["resourceVersion"]:
                        out.append(event("MODIFIED", o))
                for k, o in sorted(known.items()):
                    if k not in now:
                        out.append(event("DELETED", o))
                known = now
            if out:
                yield b"".join(out)

    @staticmethod
    def _require_json(ctype: str) -> None:
        if ctype and ctype.split(";")[0].strip().lower() not in ("application/json", "*/*"):
            raise _unsupported_media()

    @staticmethod
    def _object_body(body: Any) -> JSON:
        if not isinstance(body, dict):
            raise StatusError(400, "the request body must be a JSON object")
        return body

    # ------------------------------------------------------------------ discovery

    def _discovery(self, t: _Target) -> JSON:
        groups: dict[str, list[ResourceType]] = {}
        for rt in self._types:
            groups.setdefault(rt.group, []).append(rt)

        def group_version(group: str) -> JSON:
            return {"groupVersion": f"{group}/v1", "version": "v1"}

        if t.root == "api" and not t.version:
            addr = f"127.0.0.1:{self._httpd.server_address[1]}" if self._httpd else "127.0.0.1"
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]}
        if t.root == "apis" and not t.group:
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [group_version(g)], "preferredVersion": group_version(g)}
                for g in groups if g]}
        if t.root == "apis" and not t.version and t.group in groups:
            gv = group_version(t.group)
            return {"kind": "APIGroup", "apiVersion": "v1", "name": t.group, "versions": [gv],
                    "preferredVersion": gv}
        if t.root == "version":
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}
        rts = groups.get(t.group, []) if t.root else []
        if not rts or t.version != "v1":
            raise _no_route()
        resources: list[JSON] = []
        for rt in rts:
            resources.append({"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                              "kind": rt.kind, "verbs": [*_VERBS, "watch"]})
            if rt.plural in _SHORT_NAMES:  # the CRDs' (KubeVirt's vm/vms, vmi/vmis): kubectl resolves `get vm`
                resources[-1]["shortNames"] = list(_SHORT_NAMES[rt.plural])
            if rt.status:
                resources.append({"name": f"{rt.plural}/status", "singularName": "",
                                  "namespaced": rt.namespaced, "kind": rt.kind, "verbs": list(_SUB_VERBS)})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": rts[0].api_version,
                "resources": resources}

    # ------------------------------------------------------------------ storage (lock held)

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _existing(self, rt: ResourceType, key: tuple[str, str]) -> JSON:
        obj = self._store[rt].get(key)
        if obj is None:
            raise _not_found(rt, key[1])
        return obj

    def _metadata_only(self, listed: JSON, accept: str) -> JSON:
        """A list as the Accept header asks: metadata-only (``PartialObjectMetadataList``, each item a
        ``PartialObjectMetadata`` with the object's whole ``metadata``) when asked first and served, the full
        list when ``application/json`` is also acceptable, else 406 (kube-apiserver's negotiation)."""
        wanted = [part.strip() for part in accept.split(",") if part.strip()]
        if not wanted or METADATA_LIST not in wanted[0].replace(" ", ""):
            return listed
        if self.metadata_lists:
            return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": listed["metadata"],
                    "items": [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": item["metadata"]} for item in listed["items"]]}
        if any(part.split(";")[0].strip() in ("application/json", "*/*") and METADATA_LIST not in part
               for part in wanted[1:]):
            return listed
        raise StatusError(406, "only the following media types are accepted: application/json, "
                          "application/yaml, application/vnd.kubernetes.protobuf")

    def _list(self, rt: ResourceType, namespace: str | None, query: dict[str, str]) -> JSON:
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise StatusError(400, f"invalid limit: {query.get('limit')!r}") from None
        token = query.get("continue") or ""
        if token:
            snap_id, start = self._decode_continue(token)
            snap = self._snapshots.get(snap_id)
            if snap is not None and snap.resource != rt:
                raise StatusError(400, f"continue key is not valid: issued for {snap.resource.qualified}")
            if snap is not None and snap.selectors != (query.get("labelSelector", ""),
                                                       query.get("fieldSelector", "")):
                # kube-apiserver filters every page with its own request's selectors (the token holds only
                # where the list stopped): a client that drops them gets unfiltered pages. Loud here.
                raise StatusError(400, "fake apiserver: a continued list must repeat its first page's selectors")
            if snap is None:
                raise StatusError(410, "The provided continue parameter is too old to display a consistent "
                                  "list result. You can start a new list without the continue parameter.",
                                  reason="Expired")
        else:
            labels = parse_label_selector(query.get("labelSelector", ""))
            fields = _parse_field_selector(rt, query.get("fieldSelector", ""),
                                           self.pod_fields if rt.plural == "pods" and not rt.group else None)
            items = [o for (ns, _), o in sorted(self._store[rt].items())
                     if (namespace is None or ns == namespace) and _fields_match(fields, o)
                     and _labels_match(labels, o["metadata"].get("labels") or {})]
            snap, snap_id, start = _Snapshot(rt, self._rv, items, bool(labels or fields),
                                             (query.get("labelSelector", ""), query.get("fieldSelector", ""))), "", 0
        end = start + limit if limit > 0 else len(snap.items)
        meta: JSON = {"resourceVersion": str(snap.rv)}
        if end < len(snap.items):
            if not snap_id:
                snap_id = uuid.uuid4().hex[:12]
                self._snapshots[snap_id] = snap
                while len(self._snapshots) > _MAX_SNAPSHOTS:
                    self._snapshots.popitem(last=False)
            meta["continue"] = self._encode_continue(snap_id, snap.rv, end)
            if not snap.filtered:
                meta["remainingItemCount"] = len(snap.items) - end
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta,
                "items": snap.items[start:end]}  # never changed in place: no copies

    @staticmethod
    def _encode_continue(snap_id: str, rv: int, start: int) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start, "snapshot": snap_id})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def _decode_continue(token: str) -> tuple[str, int]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            return str(data["snapshot"]), int(data["start"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise StatusError(400, f"continue key is not valid: {token!r}") from None

    def _check_kind(self, rt: ResourceType, obj: JSON) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if api_version and api_version != rt.api_version:
            raise StatusError(400, f"the API version in the data ({api_version}) does not match the expected "
                              f"API version ({rt.api_version})")
        if kind and kind != rt.kind:
            raise StatusError(400, f"the object provided is unrecognized (must be of type {rt.kind}): "
                              f"kind {kind!r}")

    def _create(self, rt: ResourceType, namespace: str, obj: JSON, *, seed: bool,
                dry_run: bool = False) -> JSON:
        self._check_kind(rt, obj)
        meta = _meta(obj)
        if not seed:
            if meta.get("resourceVersion"):
                raise StatusError(500, "resourceVersion should not be set on objects to be created")
            for server_owned in (*_SERVER_OWNED, "selfLink", "managedFields"):
                meta.pop(server_owned, None)
        if not meta.get("name") and meta.get("generateName"):
            alphabet = "bcdfghjklmnpqrstvwxz2456789"
            meta["name"] = meta["generateName"] + "".join(random.choices(alphabet, k=5))
        name = meta.get("name") or ""
        if not name:
            raise _invalid(rt, "", "metadata.name", "Required value: name or generateName is required",
                           "FieldValueRequired")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise StatusError(400, "the namespace of the provided object does not match the namespace "
                                  "sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        key = (namespace if rt.namespaced else "", name)
        if key in self._store[rt]:
            raise StatusError(409, f'{rt.qualified} "{name}" already exists', rt.details(name),
                              reason="AlreadyExists")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _rfc3339(self._clock()))
        if rt.generation:
            meta.setdefault("generation", 1)
        obj.update(kind=rt.kind, apiVersion=rt.api_version)
        if dry_run:
            meta["resourceVersion"] = str(self._rv)
            return obj
        meta["resourceVersion"] = self._bump()
        self._store[rt][key] = obj
        return obj  # stored objects are never changed in place: callers that hand it out copy it

    def _update(self, rt: ResourceType, key: tuple[str, str], body: JSON, subresource: str, *,
                require_rv: bool, dry_run: bool) -> JSON:
        """PUT semantics shared with PATCH (which passes the patched object and ``require_rv=False``)."""
        self._check_kind(rt, body)
        meta = _meta(body)
        name = key[1]
        if meta.get("name") != name:
            raise StatusError(400, f"the name of the object ({meta.get('name', '')}) does not match the name "
                              f"on the URL ({name})")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != key[0]:
            raise StatusError(400, "the namespace of the provided object does not match the namespace sent "
                              "on the request")
        old = self._existing(rt, key)
        old_meta = old["metadata"]
        rv = meta.get("resourceVersion") or ""
        if not rv and require_rv:
            raise _invalid(rt, name, "metadata.resourceVersion",
                           "Invalid value: 0x0: must be specified for an update")
        if rv and rv != old_meta["resourceVersion"]:
            raise _conflict(rt, name, _MODIFIED)
        if meta.get("uid") and meta["uid"] != old_meta.get("uid"):
            raise _conflict(rt, name, f"Precondition failed: UID in precondition: {meta['uid']}, "
                            f"UID in object meta: {old_meta.get('uid')}")
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(body)
            new_meta = new["metadata"]
            for server_owned in (*_SERVER_OWNED, "namespace"):
                new_meta.pop(server_owned, None)
                if server_owned in old_meta:
                    new_meta[server_owned] = old_meta[server_owned]
            if rt.status:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            if old_meta.get("deletionTimestamp"):
                added = sorted(set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or []))
                if added:
                    raise _invalid(rt, name, "metadata.finalizers", "Forbidden: no new finalizers can be "
                                   f"added if the object is being deleted, found new finalizers {added}",
                                   "FieldValueForbidden")
            if rt.generation and self._spec(rt, new) != self._spec(rt, old):
                new_meta["generation"] = int(old_meta.get("generation") or 0) + 1
        new.update(kind=rt.kind, apiVersion=rt.api_version)
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if _canonical(new) == _canonical(old):
            return copy.deepcopy(old)  # a no-op write: etcd is not touched, resourceVersion unchanged
        if dry_run:
            return new
        return copy.deepcopy(self._commit(rt, key, new))

    @staticmethod
    def _spec(rt: ResourceType, obj: JSON) -> str:
        skip = {"metadata", "kind", "apiVersion"} | ({"status"} if rt.status else set())
        return _canonical({k: v for k, v in obj.items() if k not in skip})

    def _commit(self, rt: ResourceType, key: tuple[str, str], new: JSON) -> JSON:
        """Store ``new`` with a fresh resourceVersion; a terminating object without finalizers goes away."""
        meta = new["metadata"]
        meta["resourceVersion"] = self._bump()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._store[rt].pop(key, None)
            self._tombstones.append((rt, key, int(meta["resourceVersion"]), new))
        else:
            self._store[rt][key] = new
        return new

    def _patch(self, rt: ResourceType, key: tuple[str, str], ctype: str, body: Any, subresource: str,
               dry_run: bool) -> JSON:
        media = ctype.split(";")[0].strip().lower()
        if media == "application/strategic-merge-patch+json" and not rt.custom:
            media = "application/merge-patch+json"  # built-in types: good enough for maps and scalars
        if media not in ("application/merge-patch+json", "application/json-patch+json"):
            raise _unsupported_media()
        old = self._existing(rt, key)
        if media == "application/json-patch+json":
            new = json_patch(old, body)
        elif isinstance(body, dict):
            new = merge_patch(copy.deepcopy(old), body)
        else:
            raise StatusError(400, "a merge patch must be a JSON object")
        if not isinstance(new, dict):
            raise StatusError(422, "the patched object is not a JSON object")
        return self._update(rt, key, new, subresource, require_rv=False, dry_run=dry_run)

    def _delete(self, rt: ResourceType, key: tuple[str, str], options: JSON,
                dry_run: bool) -> tuple[JSON, bool]:
        """Returns (object, removed); with finalizers the object is only marked for deletion."""
        old = self._existing(rt, key)
        meta, name = old["metadata"], key[1]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise _conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                            f"UID in object meta: {meta.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise _conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: "
                            f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                            f"{meta['resourceVersion']}")
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return copy.deepcopy(old), False
            new = copy.deepcopy(old)
            new["metadata"].update(deletionTimestamp=_rfc3339(self._clock()), deletionGracePeriodSeconds=0)
            if dry_run:
                return new, False
            return copy.deepcopy(self._commit(rt, key, new)), False
        if not dry_run:
            del self._store[rt][key]
            self._tombstones.append((rt, key, self._rv, old))
        return copy.deepcopy(old), True


# --------------------------------------------------------------------------- HTTP plumbing


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Handler(BaseHTTPRequestHandler):
    """One keep-alive connection. The request cycle is lean: the stdlib's parses headers with the email
    package and writes status, headers and body apart (~0.3 ms a request, which thousands of second-look
    GETs would feel); this reads the request line, the headers and a Content-Length body, and answers
    in one write."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.broken = False
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(10)
                self.request.do_handshake()
                self.request.settimeout(None)
            except OSError:  # ssl.SSLError too: a client that gave up or did not trust us
                self.broken = True
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def handle_one_request(self) -> None:
        if self.broken:
            self.close_connection = True
            return
        try:
            line = self.rfile.readline(65537)
            if not line:
                self.close_connection = True
                return
            parts = line.decode("latin-1").rstrip("\r\n").split(" ")
            if len(line) > 65536 or len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self._answer(400, status_body(400, "BadRequest", "malformed request line"), {}, close=True)
                return
            method, target, version = parts
            headers: dict[str, str] = {}
            while True:
                raw_header = self.rfile.readline(65537)
                if raw_header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = raw_header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            connection = headers.get("connection", "").lower()
            close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
            length = int(headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            if method not in _METHODS:
                self._answer(501, status_body(501, "NotImplemented", f"unsupported method {method!r}"), {},
                             close=close)
                return
            status, payload, extra = self.server.fake.handle(method, target, headers, body)
            self._answer(status, payload, extra, close=close)
        except (TimeoutError, ConnectionError, ValueError):
            self.close_connection = True

    def _answer(self, status: int, payload: Any, extra: dict[str, str], *, close: bool) -> None:
        if isinstance(payload, Stream):
            self._stream(status, payload, extra)
            return
        data = payload if isinstance(payload, bytes) else (
            payload.encode() if isinstance(payload, str) else _encode(payload))
        self.server.fake.sent(len(data))  # before the client can see the answer
        reason = self.responses.get(status, ("",))[0]
        ctype = extra.get("Content-Type", "application/json")
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", f"Content-Length: {len(data)}",
                *(f"{name}: {value}" for name, value in extra.items() if name != "Content-Type")]
        if close:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        self.wfile.flush()
        self.close_connection = close

    def _stream(self, status: int, payload: Stream, extra: dict[str, str]) -> None:
        """Chunked transfer encoding, one chunk per piece as it comes (as kube-apiserver proxies a followed
        log from the kubelet); the connection closes at the end."""
        reason = self.responses.get(status, ("",))[0]
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {payload.content_type}",
                "Transfer-Encoding: chunked", "Connection: close",
                *(f"{name}: {value}" for name, value in extra.items() if name != "Content-Type")]
        self.close_connection = True
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            self.wfile.flush()
            for chunk in payload.chunks:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:  # the client went away mid-stream
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is ``FakeApiServer.requests``."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeApiServer, tls: tuple[Path, Path] | None = None) -> None:
        self.fake = fake
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        if tls:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(str(tls[0]), str(tls[1]))
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = self.socket.accept()
        if self._tls is None:
            return conn, addr
        # the handshake happens in the handler's thread (see _Handler.setup), not in the accept loop
        return self._tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), addr

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        """Drop keep-alive connections so no handler thread serves after ``stop()``."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
