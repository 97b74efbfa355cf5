"""The plugin's HTTP adapter: a handful of requests on the kubeconfig's ApiClient (its pool, host,
credentials and TLS), answers as plain dicts, failures as :class:`ApiError` carrying kube-apiserver's
Status. A followed log is read by a thread into a queue, so that the caller can keep its own deadline
while the pass is quiet (an idle log stream is normal: a pass logs a few lines a second at most)."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import urllib3

from ..errors import ConfigError
from ..settings import KubeSettings
from .errors import ClusterError

log = logging.getLogger(__name__)

JSON = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer: HTTP status, the Status ``reason`` and ``message``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class LogEnd:
    """The end of a followed log: ``error`` is None when the server closed it (the container ended)."""

    error: Exception | None = None


class ClusterApi:
    def __init__(self, client: Any, *, timeout: float = 30.0) -> None:
        self._client = client
        self._pool = client.rest_client.pool_manager
        self._host = client.configuration.host
        self._timeout = urllib3.Timeout(total=timeout)
        self._headers = {**client.default_headers, "Accept": "application/json"}

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None) -> ClusterApi:
        from ..kube import api_client

        try:
            return cls(api_client(KubeSettings(kubeconfig=kubeconfig, context=context)))
        except ConfigError as exc:
            raise ClusterError(f"{exc} (kubectl ovn-gc reads the kubeconfig as kubectl does: --kubeconfig, "
                               f"KUBECONFIG, ~/.kube/config; --context)") from exc

    @property
    def server(self) -> str:
        host: str = self._host
        return host

    def _auth(self) -> dict[str, str]:
        setting = self._client.configuration.auth_settings().get("BearerToken")
        return {"authorization": setting["value"]} if setting and setting.get("value") else {}

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        url: str = self._host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                body: JSON | None = None) -> JSON:
        headers = {**self._headers, **self._auth()}
        payload = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body).encode()
        try:
            resp = self._pool.request(method, self._url(path, query), body=payload, headers=headers,
                                      timeout=self._timeout, retries=False, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(f"cannot reach the API server {self._host}: {exc}") from exc
        data = resp.data
        if not 200 <= resp.status <= 299:
            raise _api_error(resp.status, data)
        try:
            out = json.loads(data) if data else {}
        except ValueError as exc:
            raise ClusterError(f"{method} {path}: undecodable answer: {exc}") from exc
        return out if isinstance(out, dict) else {}

    def text(self, path: str, query: dict[str, Any]) -> str:
        """A GET whose answer is text (a whole log)."""
        headers = {**self._headers, **self._auth(), "Accept": "*/*"}
        try:
            resp = self._pool.request("GET", self._url(path, query), headers=headers, timeout=self._timeout,
                                      retries=False, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(f"cannot reach the API server {self._host}: {exc}") from exc
        if not 200 <= resp.status <= 299:
            raise _api_error(resp.status, resp.data)
        return str(resp.data.decode("utf-8", "replace"))

    def follow(self, path: str, query: dict[str, Any]) -> queue.Queue[str | LogEnd]:
        """Open a followed GET (``follow=true``): its lines come into the queue as they come, then a
        :class:`LogEnd`. Opening failures raise here; later ones end the queue with the error."""
        headers = {**self._headers, **self._auth(), "Accept": "*/*"}
        try:
            resp = self._pool.request("GET", self._url(path, query), headers=headers, preload_content=False,
                                      timeout=urllib3.Timeout(connect=self._timeout.connect_timeout, read=None),
                                      retries=False, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(f"cannot reach the API server {self._host}: {exc}") from exc
        if not 200 <= resp.status <= 299:
            data = resp.read()
            resp.release_conn()
            raise _api_error(resp.status, data)
        lines: queue.Queue[str | LogEnd] = queue.Queue()
        threading.Thread(target=_pump, args=(resp, lines), name="log-follow", daemon=True).start()
        return lines


def _pump(resp: Any, lines: queue.Queue[str | LogEnd]) -> None:
    pending = b""
    error: Exception | None = None
    try:
        for chunk in _chunks(resp):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                lines.put(line.decode("utf-8", "replace") + "\n")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        error = exc
    finally:
        with contextlib.suppress(Exception):
            resp.release_conn()
    if pending:
        lines.put(pending.decode("utf-8", "replace"))
    lines.put(LogEnd(error))


def _chunks(resp: Any) -> Iterator[bytes]:
    if resp.chunked and resp.supports_chunked_reads():
        yield from resp.read_chunked(decode_content=True)
    else:
        yield from resp.stream(4096)


def _api_error(status: int, data: bytes) -> ApiError:
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return ApiError(status, str(body.get("reason") or ""), str(body.get("message") or ""))
    return ApiError(status, "", data.decode("utf-8", "replace")[:300])
