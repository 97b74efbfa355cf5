"""OVN Northbound adapter: list, read, delete and re-add logical switch ports.

Only two tables are ever read and only ``Logical_Switch.ports`` is ever
written (plus one ``Logical_Switch_Port`` insert in :meth:`OvsdbNorthbound.lsp_add`):
deleting a port means removing its UUID from the switch that holds it, and
ovsdb-server garbage-collects the row (``Logical_Switch_Port`` is not a root
table). Every delete is guarded by a ``wait`` on the port's ``name`` and
``external_ids`` as they were in the snapshot, so a port rewritten since the
listing is left alone.

Wire protocol
-------------
python-ovs provides the byte stream only (``ovs.stream`` for unix/tcp/ssl,
``ovs.poller`` for blocking waits with a deadline). Its JSON parser (``ovs.json``)
is pure Python and needs about 12 s for 100k ports, so framing and parsing are
done here.

A reply is matched to its request by id (RFC 7047 §4.1), whatever the order in
which replies come: a Raft member (Kube-OVN's ovn-central runs one whenever
``NODE_IPS`` is set, even with one replica) answers ``echo`` at once but a write
only once it is committed, and holds even a read while its log has entries it has
not applied (``ovsdb_trigger_try`` → ``ovsdb_txn_precheck_prereq``, ovsdb/trigger.c).
One request of ours is in flight at a time; server requests (``echo`` probes) are
answered whenever they show up, before, between or after replies; anything else is
logged and dropped. JSON-RPC has no length prefix, so messages are framed thus:

* a boundary between two messages is a ``}``, then ``{``, then the name of a
  JSON-RPC member (``"id"``, ``"method"``, ``"params"``, ``"result"``,
  ``"error"``) and ``:``, blanks allowed between: one compiled regex over the
  newly received bytes only (``_BOUNDARY``). Nothing inside a message matches:
  outside a string a ``}`` is followed by ``{`` only where a top-level value
  ends, and inside a string the ``"`` after the ``{`` would close the string,
  which a letter cannot follow;
* the bytes after the last boundary (normally: the whole reply) are parsed once
  they end with ``}``, as a message must: one ``orjson.loads``, which reads the
  ``bytearray`` as it is. Should that fail, msgspec's validating scan (it builds
  no objects) tells a message cut short (wait for the rest) from several
  messages with more than 64 blanks between them (split by the stdlib
  ``raw_decode``) or from garbage (:class:`FatalError`).

Measured on the shared 2-core dev VM (expect +-30%) against a local
ovsdb-server 3.1. Framing a 38 MB reply (100k ports of the bench cluster) fed
in 208 KB chunks costs what ``orjson.loads`` of it costs alone, ~0.27 s: the
boundary regex takes ~16 ms over the 38 MB, a failed parse of a message cut
short ~0.1 s plus ~15 ms for the msgspec check. ``lsp_list`` of 98.5k ports
(``python -m bench.nblist --ports 100000``, median of 5) over unix / tcp:
standalone 2.17 / 2.21 s with the former echo-marker framing, 2.14 / 2.21 s
now; one-member Raft cluster 2.32 / 2.43 s before, 2.39 / 2.35 s now. Of that ~2 s is
ovsdb-server producing the reply (silent meanwhile), ~0.3 s orjson and ~0.6 s
building ``Port`` objects, both with the cyclic GC paused (with it running they
cost ~1.3 s more, see :func:`kube_ovn_gc.memory.gc_paused`). On the same reply
``ovs.json`` needs ~18 s and the stdlib ``raw_decode`` ~0.4 s. ``lsp_del`` of
1000 of those ports: ~0.3-0.45 s, of which the per-uuid pre-check selects take
~0.1-0.17 s (one full-table select of ``name``/``external_ids`` instead: ~3 s);
one ``mutate`` per port rather than one per switch costs ~0.06 s more per 1000
and lets a port that moved to another switch be told apart.

What would break the framing's speed, not its correctness: a peer that sends a
large reply in pieces that each end with ``}`` and pauses after each; every pause
costs a failed parse of what came so far. ovsdb-server writes a reply in one go
and the kernel cuts it anywhere: a chunk ends with ``}`` about once in 400.
What would break it: a peer that puts anything but blanks between messages, or
opens one with another member (JSON-RPC 1.0 has these five).

Timeout
-------
``NbSettings.timeout`` (``--ovn-nb-timeout``, 10 s) bounds each silence of a
member: connecting (TCP, TLS), the first byte of a reply, every pause within
one; not a whole reply, which streams for seconds. A member silent that long
(SIGSTOPped, hung, its host cut off: the kernel still accepts TCP) is given up
for the next remote and tried after the others on every later connect of the
same adapter, so it costs one timeout per pass, not one per attempt.

Errors
------
Socket and stream failures, timeouts, closed connections and "cluster error"
answers are :class:`TransientError` (the connection is dropped and the next
attempt reconnects, trying the remotes again). A failed ``wait`` is a
:class:`ConflictError`; any other operation error (constraint violation,
syntax, referential integrity) is a :class:`FatalError`. Every public method
applies the one :class:`RetryPolicy` itself; callers should not wrap them again.
:meth:`OvsdbNorthbound.lsp_del` that fails after some batches went through
raises :class:`IncompleteError` with what it knows: the caller reports exactly
those ports deleted, and a batch whose reply was lost as possibly applied.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Literal, NoReturn, TypedDict, TypeVar

import msgspec
import orjson
import ovs.poller
import ovs.stream

from .errors import (
    ConfigError,
    ConflictError,
    FatalError,
    GCError,
    IncompleteError,
    NotFoundError,
    TransientError,
)
from .memory import gc_paused
from .model import NbSnapshot, Port, PortUUID
from .retry import RetryPolicy, retrying
from .settings import NbSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

NB_DB = "OVN_Northbound"
LS = "Logical_Switch"
LSP = "Logical_Switch_Port"

DelOutcome = Literal["done", "gone", "changed"]

BATCH_SIZE = 1000
"""Ports per delete transaction (each costs two operations plus a pre-check select)."""

WAIT_RETRIES = 3
"""How often a delete batch is re-checked and re-sent after a port changed under it."""

_RECV_CHUNK = 1 << 20
_LSP_LIST_COLUMNS = ["_uuid", "name", "type", "external_ids", "addresses"]
_READ_ONLY_COLUMNS = ("_uuid", "_version")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_NO_DB = f"serves no {NB_DB} database"
_REMOTE_HELP = "use tcp:HOST:PORT, ssl:HOST:PORT or unix:PATH (IPv6 as tcp:[::1]:6641), comma-separated"


class PortRecord(TypedDict):
    """A port as :meth:`OvsdbNorthbound.lsp_get` read it: enough to put it back."""

    switch: str  # name of the holding Logical_Switch ("" if none)
    switch_uuid: str
    row: dict[str, Any]  # every column, OVSDB JSON encoding, including _uuid and _version


# --- remotes and TLS ---------------------------------------------------------


def parse_remotes(text: str) -> tuple[str, ...]:
    """Split an ``OVN_NB_DB``-style list into validated remotes, in order."""
    items = [item.strip() for item in text.split(",")]
    remotes = tuple(_check_remote(item) for item in items if item)
    if not remotes:
        raise ConfigError(f"no NB remote given in {text!r}: {_REMOTE_HELP}")
    return remotes


def _check_remote(remote: str) -> str:
    kind, sep, rest = remote.partition(":")
    if sep and kind == "unix":
        if not rest:
            raise ConfigError(f"bad NB remote {remote!r}: unix: needs a socket path")
        return remote
    if sep and kind in ("tcp", "ssl"):
        _split_host_port(remote, rest)
        return remote
    raise ConfigError(f"bad NB remote {remote!r}: {_REMOTE_HELP}")


def _split_host_port(remote: str, rest: str) -> tuple[str, int]:
    if rest.startswith("["):
        host, close, port_text = rest[1:].partition("]")
        if not close or not port_text.startswith(":"):
            raise ConfigError(f"bad NB remote {remote!r}: expected [IPv6]:PORT")
        port_text = port_text[1:]
        try:
            ipaddress.ip_address(host)  # Kube-OVN writes tcp:[$(OVN_NB_SERVICE_HOST)]:6641, an IPv4 too
        except ValueError:
            raise ConfigError(f"bad NB remote {remote!r}: {host!r} is not an IP address") from None
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon or not host:
            raise ConfigError(f"bad NB remote {remote!r}: expected HOST:PORT")
        if ":" in host:
            raise ConfigError(f"bad NB remote {remote!r}: write IPv6 addresses in brackets, e.g. tcp:[::1]:6641")
        if host.replace(".", "").isdigit():
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ConfigError(f"bad NB remote {remote!r}: {host!r} is not an IPv4 address") from None
        elif not _HOSTNAME.match(host):
            raise ConfigError(f"bad NB remote {remote!r}: {host!r} is not a host name")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"bad NB remote {remote!r}: port must be 1-65535")
    return host, int(port_text)


def check_settings(settings: NbSettings) -> None:
    """Validate remotes and, when any remote is ``ssl:``, load the three TLS files."""
    if not settings.remotes:
        raise ConfigError(f"no NB remote given: {_REMOTE_HELP}")
    for remote in settings.remotes:
        _check_remote(remote)
    if settings.timeout <= 0:
        raise ConfigError(f"NB timeout must be positive, not {settings.timeout}")
    if not any(r.startswith("ssl:") for r in settings.remotes):
        return
    for what, path in (
        ("private key", settings.private_key),
        ("certificate", settings.certificate),
        ("CA certificate", settings.ca_cert),
    ):
        if not path:
            raise ConfigError(f"ssl: NB remotes need a {what} file")
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise ConfigError(f"NB TLS {what} {path!r} is missing or unreadable")
    # Load them once now, as python-ovs will: a bad file is a ConfigError at start-up
    # (python-ovs would also leak a socket on this path).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(settings.ca_cert)
        ctx.load_cert_chain(str(settings.certificate), str(settings.private_key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load the NB TLS files: {exc}") from exc


def _stream_names(remote: str) -> list[str]:
    """The names python-ovs gets: host names resolved here, each address in turn
    (python-ovs resolves names only with the unbound module)."""
    kind, _, rest = remote.partition(":")
    if kind == "unix":
        return [remote]
    host, port = _split_host_port(remote, rest)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TransientError(f"{remote}: cannot resolve {host!r}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return [f"{kind}:[{a}]:{port}" if ":" in a else f"{kind}:{a}:{port}" for a in addresses]


# --- one JSON-RPC connection -------------------------------------------------


class _Connection:
    """A python-ovs stream with this module's framing (see the module docstring)."""

    def __init__(self, stream: Any, remote: str, timeout: float) -> None:
        self._stream = stream
        self.remote = remote
        self._timeout = timeout
        self._buf = bytearray()
        self._start = 0  # where the first message not yet taken begins
        self._scan = 0  # where the next search for a boundary begins
        self._next_id = 0
        self.role = ""  # "leader" or "follower" once connected

    @classmethod
    def open(cls, remote: str, settings: NbSettings) -> _Connection:
        failure, error = "", 0
        for name in _stream_names(remote):
            if name.startswith("ssl:"):
                ovs.stream.Stream.ssl_set_private_key_file(settings.private_key)
                ovs.stream.Stream.ssl_set_certificate_file(settings.certificate)
                ovs.stream.Stream.ssl_set_ca_cert_file(settings.ca_cert)
            try:
                error, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(name), int(settings.timeout * 1000))
            except ssl.SSLError as exc:
                raise ConfigError(f"{remote}: cannot load the TLS files: {exc}") from exc
            except OSError as exc:
                raise TransientError(f"{remote}: {exc}") from exc
            if not error:
                return cls(stream, remote, settings.timeout)
            if name.startswith("ssl:") and error == errno.EPERM:
                # python-ovs turns a failed handshake into the OpenSSL error code, usually 1
                failure = "TLS handshake failed (certificate not accepted by either side?)"
            else:
                failure = _strerror(error)
            if name != remote:
                failure = f"{failure} (as {name})"
        if error == errno.ETIMEDOUT:
            raise _SilentError(f"{remote}: {failure}")
        raise TransientError(f"{remote}: {failure}")

    def close(self) -> None:
        self._stream.close()

    def call(self, method: str, params: list[Any]) -> dict[str, Any]:
        """Send one request and return its reply (the message with its id: ``result`` or ``error``).

        Whatever comes before the reply is handled on the way: the server's ``echo``
        probes are answered, anything else is logged and dropped.
        """
        self._drain()
        rid = self._next_id
        self._next_id += 1
        self._send(orjson.dumps({"id": rid, "method": method, "params": params}))
        reply: dict[str, Any] | None = None
        while reply is None:
            self._recv(block=True)
            for msg in self._messages():
                if msg.get("id") == rid and "method" not in msg:
                    reply = msg
                else:
                    self._handle(msg)  # a probe right behind the reply is answered too
        return reply

    # --- bytes ---

    def _send(self, data: bytes) -> None:
        deadline = time.monotonic() + self._timeout
        view = memoryview(data)
        while view:
            sent = self._stream.send(view)
            if sent > 0:
                view = view[sent:]
                deadline = time.monotonic() + self._timeout
            elif sent == -errno.EAGAIN or sent == 0:
                self._block(self._stream.send_wait, deadline)
            else:
                raise TransientError(f"{self.remote}: send failed: {_strerror(-sent)}")

    def _recv(self, block: bool) -> bool:
        """Append what is available to the buffer; ``False`` if nothing (only when not blocking).

        Blocking waits at most the timeout for the first byte: the timeout bounds each
        silence, not a whole reply (a large one streams for seconds).
        """
        deadline = time.monotonic() + self._timeout
        while True:
            error, data = self._stream.recv(_RECV_CHUNK)
            if error == errno.EAGAIN:
                if not block:
                    return False
                self._block(self._stream.recv_wait, deadline)
                continue
            if error:
                raise TransientError(f"{self.remote}: receive failed: {_strerror(error)}")
            if not data:
                raise TransientError(f"{self.remote}: connection closed by the server")
            self._buf += data
            return True

    def _block(self, register: Callable[[Any], None], deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _SilentError(f"{self.remote}: no answer within {self._timeout:g}s")
        poller = ovs.poller.Poller()
        register(poller)
        poller.timer_wait(int(remaining * 1000) + 1)
        poller.block()

    # --- messages ---

    def _messages(self) -> list[dict[str, Any]]:
        """The complete messages at the head of the buffer, removed from it (see "Wire protocol").

        New bytes are searched for boundaries between messages once; the bytes after the
        last boundary are parsed only when they end with ``}``, as a message must.
        """
        buf = self._buf
        msgs: list[dict[str, Any]] = []
        start = self._start
        for m in _BOUNDARY.finditer(buf, self._scan):
            end = m.start() + 1
            msgs.extend(_parse(buf, start, end, self.remote, whole=True))
            start = buf.index(b"{", end)
        last = len(buf) - 1
        while last >= start and buf[last] in _WHITESPACE:
            last -= 1
        if last < start:
            self._buf, self._start, self._scan = bytearray(), 0, 0
            return msgs
        self._start, self._scan = start, max(start, len(buf) - _BOUNDARY_MAX)
        if buf[last] == _CLOSE:
            try:
                tail = _parse(buf, start, len(buf), self.remote, whole=False)
            except _IncompleteError:
                pass  # finished by the bytes still to come
            else:
                msgs.extend(tail)
                self._buf, self._start, self._scan = bytearray(), 0, 0
                return msgs
        if start > _COMPACT_AT:
            del buf[:start]
            self._scan -= start
            self._start = 0
        return msgs

    def _drain(self) -> None:
        """Answer whatever the server sent while we were not asking (inactivity probes)."""
        while self._recv(block=False):
            pass
        for msg in self._messages():
            self._handle(msg)

    def _handle(self, msg: dict[str, Any]) -> None:
        """A message that is not the reply being waited for: a server request, or a stray reply."""
        method = msg.get("method")
        if method == "echo" and msg.get("id") is not None:
            log.debug("answering echo from %s", self.remote)
            self._send(orjson.dumps({"id": msg["id"], "result": msg.get("params", []), "error": None}))
        elif method is not None:
            log.debug("ignoring %s from %s", method, self.remote)
        else:
            log.debug("ignoring a stray reply (id %r) from %s", msg.get("id"), self.remote)


_BOUNDARY_WS = rb"[ \t\r\n]{0,64}"
_BOUNDARY = re.compile(
    rb"\}" + _BOUNDARY_WS + rb"\{" + _BOUNDARY_WS + rb'"(?:id|method|params|result|error)"' + _BOUNDARY_WS + rb":"
)
"""Where one JSON-RPC message ends and the next begins (see "Wire protocol" for why nothing else matches)."""
_BOUNDARY_MAX = 3 * 64 + 12  # the longest match: a new search starts this far back
_WHITESPACE = frozenset(b" \t\r\n")
_CLOSE = ord("}")
_COMPACT_AT = 1 << 16  # consumed bytes kept at the head of the buffer before it is compacted


class _IncompleteError(Exception):
    """The bytes end before the message does."""


class _SilentError(TransientError):
    """The member did not answer (or accept) within the timeout: tried last from then on."""


def _parse(buf: bytearray, start: int, end: int, remote: str, *, whole: bool) -> list[dict[str, Any]]:
    """``buf[start:end]`` as JSON-RPC messages: one ``orjson.loads`` when it is one message (the
    normal case, however large). Otherwise: :class:`_IncompleteError` when it is the start of
    one (``whole=False`` only; told cheaply by msgspec's validating scan), else split by the
    stdlib ``raw_decode`` (a peer that writes more than 64 blank characters between messages)."""
    with memoryview(buf) as view, view[start:end] as part:
        try:
            msgs = [orjson.loads(part)]
        except orjson.JSONDecodeError:
            if not whole:
                try:
                    msgspec.json.decode(part, type=msgspec.Raw)
                except msgspec.DecodeError as exc:
                    if "truncated" in str(exc):
                        raise _IncompleteError from None
            msgs = _split_messages(bytes(part), remote, whole=whole)
    for msg in msgs:
        if not isinstance(msg, dict):
            raise FatalError(f"{remote}: not a JSON-RPC message: {str(msg)[:200]}")
    return msgs


def _split_messages(data: bytes, remote: str, *, whole: bool) -> list[Any]:
    text = data.decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    msgs: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos == len(text):
            return msgs
        try:
            msg, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if not whole and (exc.pos >= len(text) or exc.msg.startswith("Unterminated string")):
                raise _IncompleteError from None
            raise FatalError(f"{remote}: malformed JSON from the server: {exc}") from exc
        msgs.append(msg)


def _strerror(code: int) -> str:
    try:
        return f"{os.strerror(code)} (errno {code})"
    except ValueError:
        return f"error {code}"


# --- OVSDB results -------------------------------------------------------------


class _WaitFailedError(ConflictError):
    def __init__(self, message: str, op_index: int) -> None:
        super().__init__(message)
        self.op_index = op_index


def _rpc_error(remote: str, error: Any) -> Exception:
    kind = error.get("error") if isinstance(error, dict) else error
    if kind == "canceled":
        return TransientError(f"{remote}: transaction canceled by the server")
    return FatalError(f"{remote}: request refused: {error}")


def _check_results(remote: str, ops: Sequence[Mapping[str, Any]], results: Any) -> list[Any]:
    if not isinstance(results, list):
        raise FatalError(f"{remote}: transact result is not a list: {str(results)[:200]}")
    for i, res in enumerate(results):
        if isinstance(res, dict) and "error" in res:
            kind, details = res.get("error"), res.get("details", "")
            op = str(ops[i].get("op")) if i < len(ops) else "commit"
            message = f"{remote}: {op} (operation {i}) failed: {kind}: {details}"
            if op == "wait" and kind == "timed out":
                raise _WaitFailedError(message, i)
            if kind == "cluster error":
                raise TransientError(message)
            raise FatalError(message)
    if len(results) < len(ops):
        raise FatalError(f"{remote}: {len(results)} results for {len(ops)} operations")
    return results


# --- OVSDB value encoding --------------------------------------------------------


def _uuid_where(uuid: str) -> list[Any]:
    return [["_uuid", "==", ["uuid", uuid]]]


def _encode_map(pairs: Iterable[tuple[str, str]]) -> list[Any]:
    return ["map", [[k, v] for k, v in pairs]]


def _uuids(value: Any) -> list[str]:
    """A uuid set column: ``["uuid", u]`` when it has one element, else ``["set", [...]]``."""
    if value[0] == "uuid":
        return [value[1]]
    return [u for _, u in value[1]]


def _map_dict(value: Any) -> dict[str, str]:
    return {k: v for k, v in value[1]}


def _build_ports(switches: list[Any], rows: list[Any]) -> list[Port]:
    """``Port`` objects from the two ``select`` results; the hot loop of :meth:`lsp_list`."""
    holder: dict[str, tuple[str, str]] = {}
    for sw in switches:
        held = (sw["name"], sw["_uuid"][1])
        for u in _uuids(sw["ports"]):
            holder.setdefault(u, held)
    orphan = ("", "")
    ports: list[Port] = []
    append = ports.append
    for r in rows:
        u = r["_uuid"][1]
        switch, switch_uuid = holder.get(u, orphan)
        addresses = r["addresses"]
        append(
            Port(
                u,
                r["name"],
                r["type"],
                tuple(map(tuple, r["external_ids"][1])),
                (addresses,) if isinstance(addresses, str) else tuple(addresses[1]),
                switch,
                switch_uuid,
            )
        )
    return ports


# --- the adapter ------------------------------------------------------------------


class OvsdbNorthbound:
    """The job's view of OVN Northbound. Use as a context manager::

        with OvsdbNorthbound(settings.nb, settings.retry) as nb:
            snapshot = nb.lsp_list()

    Connecting tries the remotes in order and prefers a Raft leader (or a
    standalone server), as ``ovn-nbctl --leader-only`` does; a connected
    follower is used when no leader answers. A dropped connection is
    re-established by the next attempt of whatever call needed it.
    """

    def __init__(self, settings: NbSettings, retry: RetryPolicy) -> None:
        check_settings(settings)
        self._settings = settings
        self._retry = retry
        self._conn: _Connection | None = None
        self._silent: set[str] = set()  # remotes that once did not answer in time: tried last

    def __enter__(self) -> OvsdbNorthbound:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def remote(self) -> str | None:
        """The remote currently connected to, if any."""
        return self._conn.remote if self._conn else None

    def connect(self) -> None:
        self._retrying("NB connect", self._connection)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # --- ovn-nbctl-style operations ---

    def lsp_list(self) -> NbSnapshot:
        """Every port with the switch that holds it, in one read transaction."""
        ops: list[dict[str, Any]] = [
            {"op": "select", "table": LS, "where": [], "columns": ["_uuid", "name", "ports"]},
            {"op": "select", "table": LSP, "where": [], "columns": _LSP_LIST_COLUMNS},
        ]
        started = time.monotonic()
        with gc_paused():
            results = self._retrying("NB lsp-list", partial(self._transact, ops))
            switches, rows = results[0]["rows"], results[1]["rows"]
            switch_count = len(switches)
            ports = _build_ports(switches, rows)
            del results, switches, rows  # freed before the collector resumes: less for it to scan
        log.info(
            "listed %d logical switch ports in %d switches from %s in %.2fs",
            len(ports),
            switch_count,
            self.remote,
            time.monotonic() - started,
        )
        return NbSnapshot(ports=tuple(ports), switch_count=switch_count)

    def lsp_get(self, uuids: Iterable[PortUUID]) -> dict[PortUUID, PortRecord]:
        """Full rows of the given ports and their switch; absent ports are left out."""
        wanted = list(dict.fromkeys(uuids))
        out: dict[PortUUID, PortRecord] = {}
        for start in range(0, len(wanted), BATCH_SIZE):
            batch = wanted[start : start + BATCH_SIZE]
            ops: list[dict[str, Any]] = []
            for u in batch:
                ops.append({"op": "select", "table": LSP, "where": _uuid_where(u)})
                ops.append(
                    {
                        "op": "select",
                        "table": LS,
                        "where": [["ports", "includes", ["uuid", u]]],
                        "columns": ["_uuid", "name"],
                    }
                )
            results = self._retrying(f"NB lsp-get of {len(batch)} ports", partial(self._transact, ops))
            for i, u in enumerate(batch):
                rows, holders = results[2 * i]["rows"], results[2 * i + 1]["rows"]
                if not rows:
                    continue
                held: dict[str, Any] = holders[0] if holders else {"name": "", "_uuid": ["uuid", ""]}
                out[u] = PortRecord(switch=held["name"], switch_uuid=held["_uuid"][1], row=rows[0])
        return out

    def lsp_del(self, ports: Sequence[Port]) -> dict[PortUUID, DelOutcome]:
        """Delete ports that are unchanged since the snapshot.

        Per port: ``done`` (deleted now), ``gone`` (already absent: success) or
        ``changed`` (its name or external_ids differ from the snapshot, or it
        moved to another switch: left alone). Batches of :data:`BATCH_SIZE`.

        A batch that fails for good ends the call: :class:`IncompleteError` carries the
        outcomes of the batches before it (and of its own ports found gone when looked up
        again); the ports of later batches were not touched. A failure of the first batch
        that the server answered (nothing was written) is raised as it is.
        """
        unique = list({p.uuid: p for p in ports}.values())
        for p in unique:
            if not p.switch_uuid and not p.switch:
                raise FatalError(f"port {p.name} ({p.uuid}) has no switch in the snapshot; cannot delete it")
        out: dict[PortUUID, DelOutcome] = {}
        for start in range(0, len(unique), BATCH_SIZE):
            batch = unique[start : start + BATCH_SIZE]
            started = time.monotonic()
            try:
                done = self._retrying(f"NB lsp-del of {len(batch)} ports", partial(self._del_batch, batch))
            except TransientError as exc:
                self._settle(batch, exc, out)
            except GCError as exc:  # answered: that batch was not applied
                if not out:
                    raise
                raise IncompleteError(str(exc), {u: outcome for u, outcome in out.items()}) from exc
            out.update(done)
            counts = {k: sum(1 for v in done.values() if v == k) for k in ("done", "gone", "changed")}
            log.info(
                "lsp-del batch of %d: %d deleted, %d already gone, %d changed (left alone) in %.2fs",
                len(batch),
                counts["done"],
                counts["gone"],
                counts["changed"],
                time.monotonic() - started,
            )
        return out

    def _settle(self, batch: Sequence[Port], exc: TransientError, out: dict[PortUUID, DelOutcome]) -> NoReturn:
        """After a batch failed for good on a transient error: look its ports up once more (a
        member may answer again, and the lost reply may have been to a delete that was committed:
        those are ``gone``), then raise :class:`IncompleteError` with every outcome known."""
        settled: dict[str, str] = {u: outcome for u, outcome in out.items()}
        try:
            if self._connection().role != "leader":
                # A follower may not have heard of a delete the old leader replicated before it
                # died; the next leader commits it. A Raft member holds even a read until it has
                # applied every entry in its log, so a leader's answer includes that delete.
                raise TransientError("no Raft leader to ask")
            current = self._current(batch)
        except GCError as again:
            self.close()
            log.warning("cannot tell which of %d ports the failed delete removed: %s", len(batch), again)
            raise IncompleteError(f"{exc} (and the ports could not be looked up again: {again})", settled,
                                  [p.uuid for p in batch]) from exc
        settled.update((p.uuid, "gone") for p in batch if p.uuid not in current)
        raise IncompleteError(str(exc), settled) from exc

    def lsp_add(self, switch_name: str, row: Mapping[str, Any]) -> PortUUID:
        """Insert a port row (as :meth:`lsp_get` returned it) into a switch; used by restore.

        :class:`ConflictError` if a port of that name exists (or several switches
        have that name), :class:`NotFoundError` if the switch does not exist. When
        a retry follows a lost reply, a port with this name and these external_ids
        in that switch is taken to be our own insert and its uuid is returned.
        """
        name = row.get("name")
        if not isinstance(name, str) or not name:
            raise FatalError(f"cannot add a port without a name: {dict(row)}")
        insert = {k: v for k, v in row.items() if k not in _READ_ONLY_COLUMNS}
        tried = False

        def attempt() -> PortUUID:
            nonlocal tried
            retried, tried = tried, True
            # Switch names are not an index in the schema: resolve to one row first.
            found = self._transact(
                [{"op": "select", "table": LS, "where": [["name", "==", switch_name]], "columns": ["_uuid"]}]
            )[0]["rows"]
            if not found:
                raise NotFoundError(f"switch {switch_name!r} not found")
            if len(found) > 1:
                raise ConflictError(f"{len(found)} switches are named {switch_name!r}; not adding {name!r}")
            switch_uuid = found[0]["_uuid"][1]
            ops: list[dict[str, Any]] = [
                {
                    "op": "wait",
                    "table": LSP,
                    "where": [["name", "==", name]],
                    "columns": ["name"],
                    "until": "==",
                    "rows": [],
                    "timeout": 0,
                },
                {
                    "op": "wait",
                    "table": LS,
                    "where": _uuid_where(switch_uuid),
                    "columns": ["name"],
                    "until": "==",
                    "rows": [{"name": switch_name}],
                    "timeout": 0,
                },
                {"op": "insert", "table": LSP, "row": insert, "uuid-name": "restored_port"},
                {
                    "op": "mutate",
                    "table": LS,
                    "where": _uuid_where(switch_uuid),
                    "mutations": [["ports", "insert", ["set", [["named-uuid", "restored_port"]]]]],
                },
                {"op": "comment", "comment": f"kube-ovn-gc: restore port {name} into {switch_name}"},
            ]
            try:
                results = self._transact(ops)
            except _WaitFailedError as exc:
                if exc.op_index == 1:
                    raise NotFoundError(f"switch {switch_name!r} was deleted or renamed meanwhile") from exc
                # After a lost reply our own insert may be what is in the way now.
                mine = self._find_port(switch_uuid, name, insert.get("external_ids")) if retried else None
                if mine is None:
                    raise ConflictError(f"a port named {name!r} already exists") from exc
                return mine
            return PortUUID(results[2]["uuid"][1])

        uuid = self._retrying(f"NB lsp-add {name}", attempt)
        log.info("added port %s (%s) to switch %s", name, uuid, switch_name)
        return uuid

    # --- internals ---

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        def attempt() -> T:
            try:
                return fn()
            except TransientError as exc:
                if isinstance(exc, _SilentError) and self._conn is not None:
                    self._silent.add(self._conn.remote)  # frozen mid-pass: the others first next time
                self.close()
                raise

        return retrying(self._retry, what, attempt)

    def _connection(self) -> _Connection:
        if self._conn is not None:
            return self._conn
        failures: list[str] = []
        no_db = 0
        follower: _Connection | None = None
        # A member that once let its timeout pass (frozen, overloaded, cut off) is tried after
        # the others, so it costs one timeout per pass, not one per attempt.
        for remote in sorted(self._settings.remotes, key=lambda r: r in self._silent):
            try:
                conn = _Connection.open(remote, self._settings)
                try:
                    role = self._role(conn)
                except BaseException:
                    conn.close()
                    raise
            except TransientError as exc:
                failures.append(str(exc))
                if isinstance(exc, _SilentError):
                    self._silent.add(remote)
                    log.warning("NB member %s did not answer within %gs; trying the next", remote,
                                self._settings.timeout)
                continue
            except BaseException:
                if follower is not None:
                    follower.close()
                raise
            self._silent.discard(remote)
            if role == "leader":
                conn.role = role
                self._use(conn, follower)
                return conn
            if role == "follower" and follower is None:
                conn.role = role
                follower = conn
                continue
            conn.close()
            failures.append(f"{remote}: {role}")
            no_db += role == _NO_DB
        if follower is not None:
            log.warning("no Raft leader among the NB remotes; using follower %s", follower.remote)
            self._use(follower, None)
            return follower
        if failures and no_db == len(failures):
            raise ConfigError("; ".join(failures))
        raise TransientError("no NB remote usable: " + "; ".join(failures))

    def _use(self, conn: _Connection, spare: _Connection | None) -> None:
        if spare is not None:
            spare.close()
        self._conn = conn
        log.info("connected to OVN Northbound at %s", conn.remote)

    def _role(self, conn: _Connection) -> str:
        """``leader`` (or standalone, or no ``_Server`` to ask), ``follower``, or why it is unusable."""
        reply = conn.call(
            "transact",
            [
                "_Server",
                {
                    "op": "select",
                    "table": "Database",
                    "where": [["name", "==", NB_DB]],
                    "columns": ["name", "model", "connected", "leader"],
                },
            ],
        )
        result = reply.get("result")
        if reply.get("error") is not None or not isinstance(result, list) or "rows" not in result[0]:
            return "leader"  # an ovsdb-server without _Server: take it as it is
        rows = result[0]["rows"]
        if not rows:
            return _NO_DB
        db = rows[0]
        if db.get("model") == "standalone" or (db.get("leader") is True and db.get("connected") is True):
            return "leader"
        if db.get("connected") is not True:
            return "cluster member not connected to its cluster"
        return "follower"

    def _transact(self, ops: Sequence[Mapping[str, Any]]) -> list[Any]:
        conn = self._connection()
        reply = conn.call("transact", [NB_DB, *ops])
        if reply.get("error") is not None:
            raise _rpc_error(conn.remote, reply["error"])
        return _check_results(conn.remote, ops, reply.get("result"))

    def _current(self, ports: Sequence[Port]) -> dict[str, tuple[str, dict[str, str]]]:
        """The name and external_ids each port has now (absent ports are left out)."""
        ops = [
            {"op": "select", "table": LSP, "where": _uuid_where(p.uuid), "columns": ["name", "external_ids"]}
            for p in ports
        ]
        results = self._transact(ops)
        out: dict[str, tuple[str, dict[str, str]]] = {}
        for p, res in zip(ports, results, strict=False):
            rows = res["rows"]
            if rows:
                out[p.uuid] = (rows[0]["name"], _map_dict(rows[0]["external_ids"]))
        return out

    def _del_batch(self, batch: Sequence[Port]) -> dict[PortUUID, DelOutcome]:
        out: dict[PortUUID, DelOutcome] = {}
        pending = list(batch)
        for _ in range(1 + WAIT_RETRIES):
            current = self._current(pending)
            todo: list[Port] = []
            for p in pending:
                now = current.get(p.uuid)
                if now is None:
                    out[p.uuid] = "gone"
                elif now != (p.name, dict(p.external_ids)):
                    out[p.uuid] = "changed"
                else:
                    todo.append(p)
            if not todo:
                return out
            ops: list[dict[str, Any]] = []
            for p in todo:
                ops.append(
                    {
                        "op": "wait",
                        "table": LSP,
                        "where": _uuid_where(p.uuid),
                        "columns": ["name", "external_ids"],
                        "until": "==",
                        "rows": [{"name": p.name, "external_ids": _encode_map(p.external_ids)}],
                        "timeout": 0,
                    }
                )
                switch_where = _uuid_where(p.switch_uuid) if p.switch_uuid else [["name", "==", p.switch]]
                ops.append(
                    {
                        "op": "mutate",
                        "table": LS,
                        "where": [*switch_where, ["ports", "includes", ["uuid", p.uuid]]],
                        "mutations": [["ports", "delete", ["uuid", p.uuid]]],
                    }
                )
            ops.append({"op": "comment", "comment": f"kube-ovn-gc: delete {len(todo)} leaked ports"})
            try:
                results = self._transact(ops)
            except _WaitFailedError as exc:
                changed = todo[exc.op_index // 2]
                log.info("port %s (%s) changed while being deleted; re-checking its batch", changed.name, changed.uuid)
                pending = todo
                continue
            for i, p in enumerate(todo):
                out[p.uuid] = "done" if results[2 * i + 1].get("count", 0) >= 1 else "changed"
            return out
        raise ConflictError(
            f"ports kept changing while being deleted ({len(pending)} left after {1 + WAIT_RETRIES} tries)"
        )

    def _find_port(self, switch_uuid: str, name: str, external_ids: Any) -> PortUUID | None:
        """The uuid of port ``name`` if switch ``switch_uuid`` holds it with these external_ids."""
        results = self._transact(
            [{"op": "select", "table": LSP, "where": [["name", "==", name]], "columns": ["_uuid", "external_ids"]}]
        )
        rows = results[0]["rows"]
        if not rows:
            return None
        u = rows[0]["_uuid"][1]
        if external_ids is not None and _map_dict(rows[0]["external_ids"]) != _map_dict(external_ids):
            return None
        held = self._transact(
            [
                {
                    "op": "select",
                    "table": LS,
                    "where": [*_uuid_where(switch_uuid), ["ports", "includes", ["uuid", u]]],
                    "columns": ["name"],
                }
            ]
        )
        return PortUUID(u) if held[0]["rows"] else None
