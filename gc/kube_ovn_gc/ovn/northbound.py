"""The Northbound operations (``lsp_list``, ``lsp_get``, ``lsp_del``, ``lsp_add``) on a connection of
:mod:`.wire`, with the one retry policy, and the OVSDB value encoding they need."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Literal, NoReturn, TypedDict, TypeVar

import msgspec
import orjson

from ..errors import (
    ConfigError,
    ConflictError,
    FatalError,
    GCError,
    IncompleteError,
    NotFoundError,
    TransientError,
)
from ..memory import gc_paused
from ..model import NbSnapshot, Port, PortUUID
from ..retry import RetryPolicy, retrying
from ..settings import NbSettings
from .wire import (
    _NO_DB,
    NB_DB,
    _check_results,
    _Connection,
    _rpc_error,
    _SilentError,
    _WaitFailedError,
    check_settings,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

LS = "Logical_Switch"
LSP = "Logical_Switch_Port"

DelOutcome = Literal["done", "gone", "changed"]

BATCH_SIZE = 1000
"""Ports per delete transaction (each costs two operations plus a pre-check select)."""

WAIT_RETRIES = 3
"""How often a delete batch is re-checked and re-sent after a port changed under it."""

_LSP_LIST_COLUMNS = ["_uuid", "name", "type", "external_ids", "addresses"]
_READ_ONLY_COLUMNS = ("_uuid", "_version")


class PortRecord(TypedDict):
    """A port as :meth:`OvsdbNorthbound.lsp_get` read it: enough to put it back."""

    switch: str  # name of the holding Logical_Switch ("" if none)
    switch_uuid: str
    row: dict[str, Any]  # every column, OVSDB JSON encoding, including _uuid and _version



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


def _addresses(value: Any) -> tuple[str, ...]:
    """The ``addresses`` column (a set of strings: one string when it has one element)."""
    return (value,) if isinstance(value, str) else tuple(value[1])


def _holders(switches: Iterable[Any]) -> dict[str, tuple[str, str]]:
    """Port uuid -> (name, uuid) of the first switch whose ``ports`` holds it, from the undecoded switch rows."""
    holder: dict[str, tuple[str, str]] = {}
    for row in switches:
        sw = msgspec.json.decode(row)
        held = (sw["name"], sw["_uuid"][1])
        for u in _uuids(sw["ports"]):
            holder.setdefault(u, held)
    return holder


def _build_ports(holder: dict[str, tuple[str, str]], rows: Iterable[Any]) -> list[Port]:
    """``Port`` objects from the port rows, undecoded (each is decoded here, then dropped; see
    :func:`.wire._parse_raw`), and :func:`_holders`, which this empties as it goes (each uuid string it held is
    freed when its port is built: ~85 bytes a port less at the peak); the hot loop of :meth:`lsp_list`."""
    orphan = ("", "")
    ports: list[Port] = []
    append = ports.append
    # One tuple for each (key, value) pair that many ports have ("vendor"/"kube-ovn", "ls"/<switch>, the
    # security-group keys): ~600 bytes less a port, ~90 MB at 150k ports. "pod" pairs are each a port's own:
    # not looked up, their key shared.
    pairs: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    shared = pairs.get
    keep = pairs.setdefault
    intern = sys.intern
    decode = msgspec.json.decode
    pod = intern("pod")

    def pair_of(kv: list[str]) -> tuple[str, str]:
        k, v = kv
        if k == pod:
            return pod, v
        key = (k, v)
        return shared(key) or keep(key, (intern(k), v))

    for row in rows:
        r = decode(row)
        u = r["_uuid"][1]
        switch, switch_uuid = holder.pop(u, orphan)
        append(
            Port(
                u,
                r["name"],
                r["type"],
                tuple(map(pair_of, r["external_ids"][1])),
                _addresses(r["addresses"]) if "addresses" in r else (),
                switch,
                switch_uuid,
            )
        )
    return ports


class _SelectResult(msgspec.Struct):
    """One operation's result, its rows undecoded."""

    rows: list[msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET
    error: Any = msgspec.UNSET
    details: Any = msgspec.UNSET

    def as_checked(self) -> dict[str, Any]:
        """As :func:`.wire._check_results` reads a result."""
        if self.error is not msgspec.UNSET:
            return {"error": self.error} | ({"details": self.details} if self.details is not msgspec.UNSET else {})
        return {} if self.rows is msgspec.UNSET else {"rows": self.rows}


_SELECT_RESULTS = msgspec.json.Decoder(list[_SelectResult])


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
        self.last_received = 0  # bytes of the last transaction's answer (and what came with it)
        self.list_bytes = 0  # bytes of the last lsp_list's answer, and lsp_addresses' since (read cost, reported)
        self.list_requests = 0  # the transactions they took

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

    def lsp_list(self, *, addresses: bool = True) -> NbSnapshot:
        """Every port with the switch that holds it, in one read transaction. Without ``addresses`` (no rule of
        the planner reads them: 13% of the reply's bytes), each port's are left empty; see :meth:`lsp_addresses`."""
        columns = _LSP_LIST_COLUMNS if addresses else [c for c in _LSP_LIST_COLUMNS if c != "addresses"]
        ops: list[dict[str, Any]] = [
            {"op": "select", "table": LS, "where": [], "columns": ["_uuid", "name", "ports"]},
            {"op": "select", "table": LSP, "where": [], "columns": columns},
        ]
        started = time.monotonic()
        with gc_paused():
            switches, rows = self._retrying("NB lsp-list", partial(self._transact_rows, ops))
            switch_count = len(switches)
            holder = _holders(switches)
            del switches
            ports = _build_ports(holder, rows)
            self.list_bytes, self.list_requests = self.last_received, 1
            del rows, holder  # freed before the collector resumes: less for it to scan
        log.info(
            "listed %d logical switch ports in %d switches from %s in %.2fs",
            len(ports),
            switch_count,
            self.remote,
            time.monotonic() - started,
        )
        return NbSnapshot(ports=tuple(ports), switch_count=switch_count)

    def lsp_addresses(self, uuids: Iterable[PortUUID]) -> dict[PortUUID, tuple[str, ...]]:
        """The ``addresses`` of the given ports, as :meth:`lsp_list` gives them; absent ports are left out. One
        select of that column a port, in batches of :data:`BATCH_SIZE`; the bytes add to :attr:`list_bytes`."""
        wanted = list(dict.fromkeys(uuids))
        out: dict[PortUUID, tuple[str, ...]] = {}
        for start in range(0, len(wanted), BATCH_SIZE):
            batch = wanted[start : start + BATCH_SIZE]
            ops = [{"op": "select", "table": LSP, "where": _uuid_where(u), "columns": ["addresses"]} for u in batch]
            results = self._retrying(f"NB addresses of {len(batch)} ports", partial(self._transact, ops))
            self.list_bytes += self.last_received
            self.list_requests += 1
            for u, res in zip(batch, results, strict=False):
                if res["rows"]:
                    out[u] = _addresses(res["rows"][0]["addresses"])
        return out

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
        before = conn.received
        reply = conn.call("transact", [NB_DB, *ops])
        self.last_received = conn.received - before
        if reply.get("error") is not None:
            raise _rpc_error(conn.remote, reply["error"])
        return _check_results(conn.remote, ops, reply.get("result"))

    def _transact_rows(self, ops: Sequence[Mapping[str, Any]]) -> list[list[msgspec.Raw]]:
        """:meth:`_transact` of ``select`` operations only, each result's rows left undecoded (one
        :class:`msgspec.Raw` a row; see :func:`.wire._parse_raw`)."""
        conn = self._connection()
        before = conn.received
        reply = conn.call("transact", [NB_DB, *ops], raw=True)
        self.last_received = conn.received - before
        if reply.get("error") is not None:
            raise _rpc_error(conn.remote, reply["error"])
        result = reply.get("result")
        if not isinstance(result, msgspec.Raw):  # a reply read the plain way (see .wire._parse)
            result = msgspec.Raw(orjson.dumps(result))
        try:
            decoded = _SELECT_RESULTS.decode(result)
        except msgspec.DecodeError:  # not a list of objects: said as the plain way says it
            _check_results(conn.remote, ops, msgspec.json.decode(result))
            raise FatalError(f"{conn.remote}: transact result is not a list of objects") from None
        checked = _check_results(conn.remote, ops, [r.as_checked() for r in decoded])
        for i, res in enumerate(checked):
            if not isinstance(res.get("rows"), list):
                raise FatalError(f"{conn.remote}: select (operation {i}) answered no rows")
        return [res["rows"] for res in checked]

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
