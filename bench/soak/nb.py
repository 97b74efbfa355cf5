"""NB for the simulated world: a persistent JSON-RPC client for the controller, and an OVSDB monitor
that sees every port deletion as it happens.

Both take a list of remotes (``unix:PATH``, ``tcp:HOST:PORT``): with a Raft cluster a member may be
killed at any time, so a broken connection moves on to the next member and the call is retried. The
controller's writes are idempotent for that reason (a port is inserted under an OVSDB ``wait`` for its
name to be absent; a delete removes a UUID from every switch), since a transaction cut off with its
member may or may not have been committed.

The stdlib ``json`` and plain sockets only: the job under test uses python-ovs and orjson, and the soak
must not check the job with the job's own code.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

DB = "OVN_Northbound"
log = logging.getLogger(__name__)


class NbError(Exception):
    """NB refused a transaction (an operation failed, not a connection)."""

    def __init__(self, message: str, results: list[Any] | None = None) -> None:
        super().__init__(message)
        self.results = results or []


def _open(remote: str, timeout: float) -> socket.socket:
    kind, _, where = remote.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        sock.connect(where)
        return sock
    if kind == "tcp":
        host, _, port = where.rpartition(":")
        return socket.create_connection((host, int(port)), timeout=timeout)
    raise ValueError(f"unsupported remote {remote!r}")


class _Stream:
    """JSON-RPC messages over one socket: objects back to back, no framing."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = ""
        self.decoder = json.JSONDecoder()

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(msg).encode())

    def recv(self) -> dict[str, Any]:
        while True:
            text = self.buf.lstrip()
            if text:
                try:
                    msg, end = self.decoder.raw_decode(text)
                except ValueError:
                    pass
                else:
                    self.buf = text[end:]
                    return dict(msg)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("NB closed the connection")
            self.buf += chunk.decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


_RETRIABLE_WORDS = ("leader", "cluster", "not connected", "canceled", "cancelled", "ovsdb-server is shutting")


class NbClient:
    """One connection for the controller's transactions; member failures are retried on the next member."""

    def __init__(self, remotes: list[str], *, timeout: float = 5.0, give_up: float = 120.0) -> None:
        self.remotes = list(remotes)
        self.timeout = timeout
        self.give_up = give_up
        self._next = itertools.cycle(range(len(self.remotes)))
        self._stream: _Stream | None = None
        self._ids = itertools.count(1)
        self.reconnects = 0

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _connected(self) -> _Stream:
        if self._stream is None:
            self._stream = _Stream(_open(self.remotes[next(self._next)], self.timeout))
        return self._stream

    def _call(self, ops: list[dict[str, Any]]) -> Any:
        stream = self._connected()
        rid = next(self._ids)
        stream.send({"id": rid, "method": "transact", "params": [DB, *ops]})
        while True:
            msg = stream.recv()
            if msg.get("method") == "echo":
                stream.send({"id": msg.get("id"), "result": msg.get("params", []), "error": None})
            elif msg.get("id") == rid:
                return msg

    def transact(self, ops: list[dict[str, Any]]) -> list[Any]:
        """Run one transaction; connection trouble and Raft hiccups are retried, operation errors raise."""
        deadline = time.monotonic() + self.give_up
        delay = 0.05
        while True:
            try:
                reply = self._call(ops)
                error = reply.get("error")
                results: list[Any] = reply.get("result") or []
                problems = [r for r in results if isinstance(r, dict) and r.get("error")]
                text = json.dumps(error) if error else json.dumps(problems)
                if error or (problems and any(w in text for w in _RETRIABLE_WORDS)):
                    raise ConnectionError(f"NB transaction not committed: {text}")
                if problems:
                    raise NbError(f"NB transaction failed: {text}", results)
                return results
            except (OSError, ConnectionError, ValueError) as exc:
                self.close()
                self.reconnects += 1
                if time.monotonic() > deadline:
                    raise ConnectionError(f"NB unreachable for {self.give_up:.0f}s: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)


class PortWatch(threading.Thread):
    """An OVSDB ``monitor`` of ``Logical_Switch_Port``: calls ``on_delete(uuid, name, t0, t1)`` for every
    port that disappears, the deletion having happened within ``[t0, t1]`` (``time.time()``).

    Live updates give ``t0 == t1 ==`` the moment the update arrived. After a lost connection (a killed
    Raft member) the next member's initial rows are compared with the rows known before: whatever is
    missing was deleted while the monitor was blind, between the last update and the new connection.
    """

    def __init__(self, remotes: list[str], on_delete: Callable[[str, str, float, float], None]) -> None:
        super().__init__(name="soak-port-watch", daemon=True)
        self.remotes = list(remotes)
        self.on_delete = on_delete
        self.known: dict[str, str] = {}
        self.ready = threading.Event()
        self._halt = threading.Event()
        self._stream: _Stream | None = None
        self.reconnects = 0
        self.blind_seconds = 0.0
        self._lost_at: float | None = None

    def stop(self) -> None:
        self._halt.set()
        if self._stream is not None:
            self._stream.close()
        self.join(timeout=5)

    def run(self) -> None:
        for index in itertools.cycle(range(len(self.remotes))):
            if self._halt.is_set():
                return
            try:
                self._stream = _Stream(_open(self.remotes[index], 5.0))
                self._stream.sock.settimeout(None)
                self._watch()
            except (OSError, ConnectionError, ValueError) as exc:
                if self._halt.is_set():
                    return
                log.info("port watch: %s lost (%s); next member", self.remotes[index], exc)
            if self._stream is not None:
                self._stream.close()
            if self._lost_at is None:
                self._lost_at = time.time()
            self.reconnects += 1
            time.sleep(0.1)

    def _watch(self) -> None:
        stream = self._stream
        assert stream is not None
        stream.send({"id": "watch", "method": "monitor",
                     "params": [DB, None, {"Logical_Switch_Port": {"columns": ["name"]}}]})
        while True:
            msg = stream.recv()
            now = time.time()
            if msg.get("method") == "echo":
                stream.send({"id": msg.get("id"), "result": msg.get("params", []), "error": None})
            elif msg.get("id") == "watch":
                if msg.get("error"):
                    raise ConnectionError(f"monitor refused: {msg['error']}")
                rows = (msg.get("result") or {}).get("Logical_Switch_Port", {})
                current = {uuid: row["new"]["name"] for uuid, row in rows.items() if "new" in row}
                if self._lost_at is not None:
                    for uuid in set(self.known) - set(current):
                        self.on_delete(uuid, self.known[uuid], self._lost_at, now)
                    self.blind_seconds += now - self._lost_at
                    self._lost_at = None
                self.known = current
                self.ready.set()
            elif msg.get("method") == "update":
                table = msg["params"][1].get("Logical_Switch_Port", {})
                for uuid, row in table.items():
                    if "new" in row:
                        self.known[uuid] = row["new"].get("name", self.known.get(uuid, ""))
                    else:
                        name = self.known.pop(uuid, (row.get("old") or {}).get("name", ""))
                        self.on_delete(uuid, name, now, now)
