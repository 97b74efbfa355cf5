"""A real ``ovsdb-server`` serving an empty OVN Northbound database, for integration tests.

The server runs in the foreground under :class:`subprocess.Popen` (no ``--detach``),
so it is always reaped: ``stop`` sends SIGTERM and falls back to SIGKILL, ``kill``
sends SIGKILL at once (fault tests). It listens on a unix socket and on a TCP
port of 127.0.0.1; the TCP port is picked by the kernel on the first start and
reused by :meth:`OvsdbServer.restart`, so both remotes survive a restart.

Seeding and assertions use a deliberately separate, tiny JSON-RPC client (a
blocking unix socket and the stdlib ``json``), so the adapter under test never
checks its own work.
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
import uuid as uuidlib
import weakref
from pathlib import Path
from typing import Any

NB_SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
NB_DB = "OVN_Northbound"
_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes; keep a margin
_LISTENING = re.compile(r"listening on port (\d+)")


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


class OvsdbServer:
    """One ``ovsdb-server`` process on one database file in ``workdir``."""

    def __init__(
        self, workdir: Path, schema: Path = NB_SCHEMA, ssl_files: tuple[Path, Path, Path] | None = None
    ) -> None:
        """``ssl_files``: (private key, certificate, CA certificate) to also listen on ``pssl:``."""
        self._own_dir: str | None = None
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
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

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
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        if not self.db_path.exists():
            subprocess.run(
                ["ovsdb-tool", "create", str(self.db_path), str(self.schema)],
                check=True,
                capture_output=True,
            )
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
        # a safety net for scripts that forget stop(): reaped at exit or when collected
        weakref.finalize(self, _reap, self._proc)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float = 10.0) -> None:
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
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP: the server accepts nothing and answers nothing, as a hung member does."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

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

    # --- raw JSON-RPC --------------------------------------------------------

    def call(self, method: str, params: list[Any], timeout: float = 60.0) -> dict[str, Any]:
        """One request on a fresh unix connection; returns the whole reply message."""
        marker = f"fixture-{uuidlib.uuid4().hex}"
        request = {"id": 0, "method": method, "params": params}
        echo = {"id": marker, "method": "echo", "params": []}
        needle = json.dumps(marker).encode()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(self.sock_path))
            s.sendall(json.dumps(request).encode() + json.dumps(echo).encode())
            buf = bytearray()
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("ovsdb-server closed the connection")
                searched = max(0, len(buf) - len(needle))
                buf += chunk
                at = buf.find(needle, searched)
                if at >= 0 and buf.find(b"}", at) >= 0:
                    break
        text = bytes(buf[: buf.rfind(b"{", 0, at)]).decode()
        decoder = json.JSONDecoder()
        pos = 0
        while pos < len(text):
            if text[pos].isspace():
                pos += 1
                continue
            msg, pos = decoder.raw_decode(text, pos)
            if msg.get("id") == 0:
                return dict(msg)
        raise ConnectionError("no reply to the request")

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
