"""The wire: remotes and TLS settings, one JSON-RPC connection to ovsdb-server (framing, replies matched by
id), and OVSDB results turned into the job's errors. See the package docstring for the framing."""

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import orjson
import ovs.poller
import ovs.stream

from ..errors import (
    ConfigError,
    ConflictError,
    FatalError,
    TransientError,
)
from ..settings import NbSettings

log = logging.getLogger(__name__)

NB_DB = "OVN_Northbound"

_RECV_CHUNK = 1 << 20
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_NO_DB = f"serves no {NB_DB} database"
_REMOTE_HELP = "use tcp:HOST:PORT, ssl:HOST:PORT or unix:PATH (IPv6 as tcp:[::1]:6641), comma-separated"


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
        self.received = 0  # bytes received on this connection

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

    def call(self, method: str, params: list[Any], *, raw: bool = False) -> dict[str, Any]:
        """Send one request and return its reply (the message with its id: ``result`` or ``error``).

        Whatever comes before the reply is handled on the way: the server's ``echo``
        probes are answered, anything else is logged and dropped. With ``raw``, a reply's
        ``result`` is left undecoded, as a :class:`msgspec.Raw` over the received bytes (see
        :func:`_parse_raw`), for a caller that decodes it piece by piece.
        """
        self._drain()
        rid = self._next_id
        self._next_id += 1
        self._send(orjson.dumps({"id": rid, "method": method, "params": params}))
        reply: dict[str, Any] | None = None
        while reply is None:
            self._recv(block=True)
            for msg in self._messages(raw=raw):
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
            self.received += len(data)
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

    def _messages(self, *, raw: bool = False) -> list[dict[str, Any]]:
        """The complete messages at the head of the buffer, removed from it (see "Wire protocol").

        New bytes are searched for boundaries between messages once; the bytes after the
        last boundary are parsed only when they end with ``}``, as a message must.
        """
        buf = self._buf
        msgs: list[dict[str, Any]] = []
        start = self._start
        for m in _BOUNDARY.finditer(buf, self._scan):
            end = m.start() + 1
            msgs.extend(_parse(buf, start, end, self.remote, whole=True, raw=raw))
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
                tail = _parse(buf, start, len(buf), self.remote, whole=False, raw=raw)
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


def _parse(buf: bytearray, start: int, end: int, remote: str, *, whole: bool, raw: bool = False,
           ) -> list[dict[str, Any]]:
    """``buf[start:end]`` as JSON-RPC messages: one ``orjson.loads`` when it is one message (the
    normal case, however large). Otherwise: :class:`_IncompleteError` when it is the start of
    one (``whole=False`` only; told cheaply by msgspec's validating scan), else split by the
    stdlib ``raw_decode`` (a peer that writes more than 64 blank characters between messages).
    With ``raw``, see :func:`_parse_raw` first."""
    if raw:
        got = _parse_raw(buf, start, end, whole=whole)
        if got is not None:
            return got
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


class _Envelope(msgspec.Struct):
    """A JSON-RPC message with its ``result`` left undecoded."""

    id: Any = msgspec.UNSET
    method: Any = msgspec.UNSET
    params: Any = msgspec.UNSET
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: Any = msgspec.UNSET


_ENVELOPE = msgspec.json.Decoder(_Envelope)


def _parse_raw(buf: bytearray, start: int, end: int, *, whole: bool) -> list[dict[str, Any]] | None:
    """``buf[start:end]`` as one message whose ``result`` stays a :class:`msgspec.Raw`, or None to leave it to
    the plain way (which also tells several messages and garbage apart).

    Holding a whole reply decoded costs ~1.6 KB a port row (dicts, lists, one string per map key and
    value: ~240 MB for 150k ports, on top of its 55 MB of bytes); a ``Raw`` per row costs 48 bytes, and
    each row is decoded when its ``Port`` is built, then dropped. A ``Raw`` points into the bytes it was
    decoded from and keeps them alive, so they must never change: when the message is the whole buffer
    (a reply, normally) it is decoded from the ``bytearray`` itself, which the connection then gives up
    (:meth:`_Connection._messages` starts a new one whenever the buffer is used up); otherwise from a copy.
    """
    source: bytes | bytearray = buf if start == 0 and end == len(buf) else bytes(buf[start:end])
    try:
        env = _ENVELOPE.decode(source)
    except msgspec.DecodeError as exc:
        if not whole and "truncated" in str(exc):
            raise _IncompleteError from None
        return None
    return [{k: v for k, v in msgspec.structs.asdict(env).items() if v is not msgspec.UNSET}]


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


