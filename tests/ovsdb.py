"""Real ``ovsdb-server`` processes serving OVN Northbound, for integration tests.

Two kinds, with the same seeding and assertion API (:class:`NbClient`):

* :class:`OvsdbServer`: one server on one database file, either standalone
  (``ovsdb-tool create``) or a one-member Raft cluster (``clustered=True``,
  ``ovsdb-tool create-cluster``), the way Kube-OVN's ovn-central runs it whenever
  ``NODE_IPS`` is set, even with one replica;
* :class:`RaftCluster`: several clustered servers (``create-cluster`` for the
  first, ``join-cluster`` for the others) on loopback TCP; seeding and assertions
  go to whichever member is the leader now (found through each member's
  ``_Server`` database), so they survive a killed or frozen leader.

Each server runs in the foreground under :class:`subprocess.Popen` (no ``--detach``),
so it is always reaped: ``stop`` sends SIGTERM and falls back to SIGKILL, ``kill``
sends SIGKILL at once (fault tests), ``pause``/``resume`` send SIGSTOP/SIGCONT.
It listens on a unix socket and on a TCP port of 127.0.0.1; the TCP port is
picked by the kernel on the first start and reused by :meth:`OvsdbServer.restart`,
so both remotes survive a restart. A clustered server counts as started once its
``_Server`` row says it is connected to its cluster (for one member: it is the
leader), so seeding never races the election. Start-up: ~30 ms standalone,
~40 ms for a one-member cluster, ~0.1 s for three members (2-core VM).

Seeding and assertions use a deliberately separate, tiny JSON-RPC client (a
blocking unix socket and the stdlib ``json``), so the adapter under test never
checks its own work. It matches the reply by id whatever the order: a Raft
member answers a write only once it is committed, after later requests.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NB_SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
NB_DB = "OVN_Northbound"
_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes; keep a margin
_LISTENING = re.compile(r"listening on port (\d+)")
_WAIT_SECONDS = 10.0  # how long a start, a leader or a reply is waited for before the test fails


class OvsdbError(AssertionError):
    """The test server refused a seeding transaction (a bug in the test, not the code)."""


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _decode_value(value: Any) -> Any:
    """OVSDB JSON → Python: ``["set", [...]]`` → list, ``["map", ...]`` → dict, uuid → str."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        tag, body = value
        if tag == "uuid" or tag == "named-uuid":
            return body
        if tag == "set":
            return [_decode_value(v) for v in body]
        if tag == "map":
            return {_decode_value(k): _decode_value(v) for k, v in body}
    return value


def _set_of(value: Any) -> list[Any]:
    decoded = _decode_value(value)
    return decoded if isinstance(decoded, list) else [decoded]


def encode_map(mapping: dict[str, str] | None) -> list[Any]:
    return ["map", [[k, v] for k, v in sorted((mapping or {}).items())]]


def encode_value(value: Any) -> Any:
    """Python → OVSDB JSON: dict → map, list → set; tagged values and atoms pass through."""
    if isinstance(value, dict):
        return encode_map(value)
    if isinstance(value, list | tuple):
        if len(value) == 2 and value[0] in ("set", "map", "uuid", "named-uuid"):
            return list(value)
        return ["set", list(value)]
    return value


def rpc(sock_path: Path | str, method: str, params: list[Any], timeout: float = 60.0) -> dict[str, Any]:
    """One request on a fresh unix connection; the reply is the message with its id, whatever the order.

    Messages are split with the stdlib ``raw_decode``, tried only when the bytes end with a
    ``}`` (a message can only end there), so a large reply is not re-parsed chunk by chunk.
    Server requests (``echo`` probes) are answered.
    """
    decoder = json.JSONDecoder()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(json.dumps({"id": 0, "method": method, "params": params}).encode())
        buf = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"ovsdb-server closed the connection before its reply to {method}")
            buf += chunk
            if not buf.rstrip().endswith(b"}"):
                continue
            text, pos = buf.decode("utf-8", "surrogateescape"), 0
            while True:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
                if pos == len(text):
                    buf = b""
                    break
                try:
                    msg, pos = decoder.raw_decode(text, pos)
                except json.JSONDecodeError:  # an incomplete message: more bytes to come
                    buf = text[pos:].encode("utf-8", "surrogateescape")
                    break
                if msg.get("method") == "echo":
                    s.sendall(json.dumps({"id": msg["id"], "result": msg["params"], "error": None}).encode())
                elif msg.get("id") == 0 and "method" not in msg:
                    return dict(msg)


class NbClient:
    """Seeding and assertions over JSON-RPC; subclasses say where a request goes (:meth:`call`)."""

    def call(self, method: str, params: list[Any], timeout: float = 60.0) -> dict[str, Any]:
        raise NotImplementedError

    def transact(self, ops: list[dict[str, Any]], db: str = NB_DB) -> list[Any]:
        """Run one transaction; any failed operation raises :class:`OvsdbError`."""
        reply = self.call("transact", [db, *ops])
        if reply.get("error"):
            raise OvsdbError(f"transact failed: {reply['error']}")
        results: list[Any] = reply["result"]
        for i, res in enumerate(results):
            if isinstance(res, dict) and res.get("error"):
                raise OvsdbError(f"operation {i} failed: {res}")
        return results

    # --- seeding ---------------------------------------------------------------

    def add_switch(self, name: str, external_ids: dict[str, str] | None = None) -> str:
        res = self.transact(
            [
                {
                    "op": "insert",
                    "table": "Logical_Switch",
                    "row": {"name": name, "external_ids": encode_map(external_ids)},
                }
            ]
        )
        return str(res[0]["uuid"][1])

    def add_ports(self, switch_name: str, rows: list[dict[str, Any]], batch: int = 20000) -> list[str]:
        """Insert ports into a switch, ``batch`` per transaction. Rows map column names
        to values: dicts for maps, lists for sets, OVSDB-tagged values as they are."""
        uuids: list[str] = []
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            ops: list[dict[str, Any]] = []
            for i, row in enumerate(chunk):
                encoded = {key: encode_value(value) for key, value in row.items()}
                ops.append({"op": "insert", "table": "Logical_Switch_Port", "row": encoded, "uuid-name": f"p{i}"})
            ops.append(
                {
                    "op": "mutate",
                    "table": "Logical_Switch",
                    "where": [["name", "==", switch_name]],
                    "mutations": [["ports", "insert", ["set", [["named-uuid", f"p{i}"] for i in range(len(chunk))]]]],
                }
            )
            res = self.transact(ops)
            if res[len(chunk)]["count"] != 1:
                raise OvsdbError(f"switch {switch_name!r} not found (or not unique)")
            uuids.extend(str(r["uuid"][1]) for r in res[: len(chunk)])
        return uuids

    def set_port(self, uuid: str, **columns: Any) -> None:
        """Rewrite columns of one port (values as for :meth:`add_ports`)."""
        row = {k: encode_value(v) for k, v in columns.items()}
        res = self.transact(
            [{"op": "update", "table": "Logical_Switch_Port", "where": [["_uuid", "==", ["uuid", uuid]]], "row": row}]
        )
        if res[0]["count"] != 1:
            raise OvsdbError(f"port {uuid} not found")

    def delete_ports(self, uuids: list[str]) -> None:
        """Delete ports the way ovn-nbctl lsp-del does: drop them from every switch."""
        refs = ["set", [["uuid", u] for u in uuids]]
        self.transact(
            [{"op": "mutate", "table": "Logical_Switch", "where": [], "mutations": [["ports", "delete", refs]]}]
        )

    # --- assertions --------------------------------------------------------------

    def switches(self) -> list[dict[str, Any]]:
        res = self.transact(
            [
                {
                    "op": "select",
                    "table": "Logical_Switch",
                    "where": [],
                    "columns": ["_uuid", "name", "ports", "external_ids"],
                }
            ]
        )
        return [
            {
                "uuid": row["_uuid"][1],
                "name": row["name"],
                "ports": sorted(_set_of(row["ports"])),
                "external_ids": _decode_value(row["external_ids"]),
            }
            for row in res[0]["rows"]
        ]

    def ports(self) -> list[dict[str, Any]]:
        """Every port: name, uuid, type, external_ids (dict), addresses (list), switch name."""
        res = self.transact(
            [
                {"op": "select", "table": "Logical_Switch", "where": [], "columns": ["name", "ports"]},
                {
                    "op": "select",
                    "table": "Logical_Switch_Port",
                    "where": [],
                    "columns": ["_uuid", "name", "type", "external_ids", "addresses"],
                },
            ]
        )
        holder = {u: sw["name"] for sw in res[0]["rows"] for u in _set_of(sw["ports"])}
        return [
            {
                "uuid": row["_uuid"][1],
                "name": row["name"],
                "type": row["type"],
                "external_ids": _decode_value(row["external_ids"]),
                "addresses": _set_of(row["addresses"]),
                "switch": holder.get(row["_uuid"][1], ""),
            }
            for row in res[1]["rows"]
        ]

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Raw rows of any table, for "untouched" assertions."""
        res = self.transact([{"op": "select", "table": table, "where": []}])
        return list(res[0]["rows"])


class OvsdbServer(NbClient):
    """One ``ovsdb-server`` process on one database file in ``workdir``: standalone, or a Raft member."""

    def __init__(
        self,
        workdir: Path,
        schema: Path = NB_SCHEMA,
        ssl_files: tuple[Path, Path, Path] | None = None,
        *,
        clustered: bool = False,
        join: Sequence[str] = (),
    ) -> None:
        """``ssl_files``: (private key, certificate, CA certificate) to also listen on ``pssl:``.

        ``clustered``: a Raft member on its own loopback port (:attr:`raft_remote`); it
        creates a new cluster, or joins the one at the ``join`` Raft remotes.
        """
        self._own_dir: str | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        if len(str(workdir / "nb.sock")) > _SUN_PATH_MAX:
            self._own_dir = tempfile.mkdtemp(prefix="ovsdb-", dir="/tmp")
            workdir = Path(self._own_dir)
        self.workdir = workdir
        self.schema = schema
        self.db_path = workdir / "nb.db"
        self.sock_path = workdir / "nb.sock"
        self.ctl_path = workdir / "ctl"
        self.log_path = workdir / "ovsdb-server.log"
        self.port: int | None = None
        self.ssl_files = ssl_files
        self.ssl_port: int | None = _free_port() if ssl_files else None
        self.clustered = clustered or bool(join)
        self.raft_port: int | None = _free_port() if self.clustered else None
        self._join = tuple(join)
        self.paused = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "down"
        return f"<OvsdbServer {self.tcp_remote if self.port else self.workdir} {state}>"

    # --- lifecycle ---------------------------------------------------------

    @property
    def unix_remote(self) -> str:
        return f"unix:{self.sock_path}"

    @property
    def tcp_remote(self) -> str:
        if self.port is None:
            raise RuntimeError("server was never started")
        return f"tcp:127.0.0.1:{self.port}"

    @property
    def ssl_remote(self) -> str:
        if self.ssl_port is None:
            raise RuntimeError("server was not given ssl_files")
        return f"ssl:127.0.0.1:{self.ssl_port}"

    @property
    def raft_remote(self) -> str:
        """The address Raft members talk to each other on."""
        if self.raft_port is None:
            raise RuntimeError("server is not clustered")
        return f"tcp:127.0.0.1:{self.raft_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, wait_connected: bool = True) -> None:
        """Start (or start again) on the same files; a clustered member is waited for until it is
        connected to its cluster (``wait_connected=False``: only until it listens)."""
        if self.running:
            return
        if not self.db_path.exists():
            if not self.clustered:
                create = ["ovsdb-tool", "create", str(self.db_path), str(self.schema)]
            elif not self._join:
                create = ["ovsdb-tool", "create-cluster", str(self.db_path), str(self.schema), self.raft_remote]
            else:
                create = ["ovsdb-tool", "join-cluster", str(self.db_path), NB_DB, self.raft_remote, *self._join]
            subprocess.run(create, check=True, capture_output=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        tcp = f"ptcp:{self.port or 0}:127.0.0.1"
        extra: list[str] = []
        if self.ssl_files:
            key, cert, ca = self.ssl_files
            extra = [
                f"--remote=pssl:{self.ssl_port}:127.0.0.1",
                f"--private-key={key}",
                f"--certificate={cert}",
                f"--ca-cert={ca}",
            ]
        with open(self.workdir / "stderr", "ab") as err:
            self._proc = subprocess.Popen(
                [
                    "ovsdb-server",
                    str(self.db_path),
                    f"--remote=punix:{self.sock_path}",
                    f"--remote={tcp}",
                    f"--unixctl={self.ctl_path}",
                    f"--log-file={self.log_path}",
                    "--no-chdir",
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.paused = False
        # a safety net for scripts that forget stop(): reaped at exit or when collected
        weakref.finalize(self, _reap, self._proc)
        try:
            self._wait_ready()
            if self.clustered and wait_connected:
                self.wait_connected()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float = _WAIT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"ovsdb-server exited: {self._tail()}")
            if self.port is None:
                m = _LISTENING.search(self._new_log())
                if m:
                    self.port = int(m.group(1))
            if self.port is not None and self._can_connect():
                return
            time.sleep(0.02)
        raise RuntimeError(f"ovsdb-server did not come up: {self._tail()}")

    def _new_log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _tail(self) -> str:
        return (self._new_log() + (self.workdir / "stderr").read_text(errors="replace"))[-2000:]

    def _can_connect(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.sock_path))
            for port in (self.port, self.ssl_port):
                if port is not None:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        pass
        except OSError:
            return False
        return True

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self.paused = False
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # in case a test paused it
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL, as a crashed or partitioned member looks to a client."""
        proc, self._proc = self._proc, None
        self.paused = False
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, the server answers nothing, as a hung member."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)
        self.paused = False

    def restart(self) -> None:
        """Same database file, same unix path, same TCP port."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def appctl(self, *args: str) -> str:
        out = subprocess.run(
            ["ovs-appctl", "-t", str(self.ctl_path), *args], check=True, capture_output=True, text=True
        )
        return out.stdout

    # --- Raft --------------------------------------------------------------------

    def database_status(self, timeout: float = 1.0) -> dict[str, Any]:
        """This server's ``_Server`` row for the NB database: ``model``, ``connected``, ``leader``, ``index``."""
        reply = rpc(
            self.sock_path,
            "transact",
            [
                "_Server",
                {
                    "op": "select",
                    "table": "Database",
                    "where": [["name", "==", NB_DB]],
                    "columns": ["model", "connected", "leader", "index"],
                },
            ],
            timeout=timeout,
        )
        (row,) = reply["result"][0]["rows"]
        return dict(row)

    def is_leader(self) -> bool:
        """Leader of its cluster (or standalone), as far as this server knows; False if it cannot say."""
        if not self.running or self.paused:
            return False
        try:
            row = self.database_status()
        except (OSError, KeyError, ValueError):
            return False
        return row["model"] == "standalone" or (row["leader"] is True and row["connected"] is True)

    def wait_connected(self, timeout: float = _WAIT_SECONDS) -> None:
        """Until this member is connected to its cluster (a leader is known to it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                row = self.database_status()
                if row["connected"] is True:  # it has heard from a leader (for one member: it is the leader)
                    return
            except (OSError, KeyError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self!r} not connected to its cluster in {timeout:g}s: {self._tail()}")
            time.sleep(0.01)

    # --- raw JSON-RPC --------------------------------------------------------

    def call(self, method: str, params: list[Any], timeout: float = 60.0) -> dict[str, Any]:
        """One request on a fresh unix connection; returns the whole reply message."""
        return rpc(self.sock_path, method, params, timeout)


class RaftCluster(NbClient):
    """``size`` clustered ``ovsdb-server`` members on loopback; requests go to the current leader.

    Member 0 creates the cluster, the others join it. :meth:`start` returns once every
    member is connected. Members are :class:`OvsdbServer` objects: kill, pause, resume and
    start them one by one; :meth:`leader` finds the one that leads now.
    """

    def __init__(self, workdir: Path, size: int = 3) -> None:
        first = OvsdbServer(workdir / "m0", clustered=True)
        self.members = [first] + [
            OvsdbServer(workdir / f"m{i}", join=(first.raft_remote,)) for i in range(1, size)
        ]

    def start(self) -> None:
        for m in self.members:
            m.start(wait_connected=False)
        for m in self.members:
            m.wait_connected()
        self.leader()

    def cleanup(self) -> None:
        for m in self.members:
            m.cleanup()

    def leader(self, timeout: float = _WAIT_SECONDS) -> OvsdbServer:
        """The member that leads now, waiting for an election if there is none (or two think so)."""
        deadline = time.monotonic() + timeout
        while True:
            leaders = [m for m in self.members if m.is_leader()]
            if len(leaders) == 1:
                return leaders[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"no single Raft leader in {timeout:g}s among {self.members}")
            time.sleep(0.02)

    def followers(self) -> list[OvsdbServer]:
        leader = self.leader()
        return [m for m in self.members if m is not leader]

    def remotes(self, *members: OvsdbServer) -> str:
        """An ``--ovn-nb`` value: the TCP remotes of ``members`` (default: followers first, leader last)."""
        order = members or (*self.followers(), self.leader())
        return ",".join(m.tcp_remote for m in order)

    def call(self, method: str, params: list[Any], timeout: float = 60.0) -> dict[str, Any]:
        """On the current leader. A leader that cannot be reached (killed since it was found) is
        looked for again; nothing was sent to it then, so nothing is repeated."""
        deadline = time.monotonic() + _WAIT_SECONDS
        while True:
            leader = self.leader()
            try:
                return rpc(leader.sock_path, method, params, timeout)
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
