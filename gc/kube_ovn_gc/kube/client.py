"""The HTTP edge: the one ApiClient of a pass, raw requests on its pool, and the translation of every
library failure into the job's own errors (:func:`translate_error`).

Also the resources the job reads and writes (:data:`PODS`, :data:`IPS`, ...) and the JSON codec
(:func:`loads`, :func:`dumps`) every request and page goes through.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from ..errors import (
    ConfigError,
    ConflictError,
    FatalError,
    GCError,
    NotFoundError,
    TransientError,
)
from ..settings import KubeSettings
from .parse import Raw

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


class RejectedError(FatalError):
    """400 Bad Request: the server does not take what was asked (e.g. a field selector it does not serve)."""


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
        if status == 400:
            return RejectedError(text)
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


METADATA_ONLY: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json"
"""Accept for a metadata-only list, as Kubernetes' own metadata informers ask (client-go ``metadata``
client), with the full list as the fallback a server that does not serve it answers with."""


class Costs:
    """What reading cost, per source (``pods``, ``ips``, ...): requests, bytes received, seconds spent
    in them (summed over requests, which may overlap). Thread-safe: lists run concurrently."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by: dict[str, list[float]] = {}

    def add(self, source: str, size: int, seconds: float) -> None:
        with self._lock:
            cost = self._by.setdefault(source, [0, 0, 0.0])
            cost[0] += 1
            cost[1] += size
            cost[2] += seconds

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{source: {"requests": n, "bytes": n, "seconds": x}}``, sources sorted."""
        with self._lock:
            return {source: {"requests": int(c[0]), "bytes": int(c[1]), "seconds": round(c[2], 3)}
                    for source, c in sorted(self._by.items())}


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
        self.costs = Costs()

    def request(self, method: str, path: str, *, query: list[tuple[str, Any]] | None = None,
                body: Any = None, content_type: str = "application/json", decode: bool = True,
                raw: bool = False, accept: str = "", source: str = "") -> Any:
        """One request; non-2xx answers raise (translated); a 2xx body is returned as bytes (``raw``),
        decoded with :func:`loads` (``decode``) or dropped. With ``source``, its cost goes to :attr:`costs`."""
        url = self._host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {**self._headers, **self._auth()}
        if accept:
            headers["Accept"] = accept
        started = time.monotonic() if source else 0.0
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = dumps(body)
        try:
            resp = self._pool.request(method, url, body=payload, headers=headers, timeout=self._timeout,
                                      retries=False, redirect=False)
            data = resp.data
            if source:
                self.costs.add(source, len(data), time.monotonic() - started)
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

    def list_body(self, k: _Kind, cont: str | None, *, selector: str = "", metadata_only: bool = False) -> bytes:
        """One page of a list, undecoded: only the objects ``selector`` (a field selector) takes, metadata-only
        if asked and served. Every page carries the selector: a continue token holds only where the list
        stopped, and kube-apiserver filters each page with the selector of its own request."""
        query: list[tuple[str, Any]] = [("limit", self._page_size)]
        if selector:
            query.append(("fieldSelector", selector))
        if cont:
            query.append(("continue", cont))
        body: bytes = self.request("GET", k.list_path(), query=query, raw=True,
                                   accept=METADATA_ONLY if metadata_only else "", source=k.plural)
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

