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

The package, by concern: :mod:`.wire` (remotes, TLS, one JSON-RPC connection and its framing, OVSDB
results as the job's errors) and :mod:`.northbound` (the operations, with the one retry policy). Every
public name is importable from here.
"""

from __future__ import annotations

from .northbound import (
    BATCH_SIZE,
    LS,
    LSP,
    WAIT_RETRIES,
    DelOutcome,
    OvsdbNorthbound,
    PortRecord,
)
from .wire import (
    NB_DB,
    check_settings,
    parse_remotes,
)

__all__ = [
    "BATCH_SIZE",
    "LS",
    "LSP",
    "NB_DB",
    "WAIT_RETRIES",
    "DelOutcome",
    "OvsdbNorthbound",
    "PortRecord",
    "check_settings",
    "parse_remotes",
]
