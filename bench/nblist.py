"""``lsp_list`` through the job's own NB adapter, on a standalone server and on a one-member Raft cluster.

    python -m bench.nblist --ports 100000 [--repeat 5] [--kinds standalone,raft]

Each kind gets a fresh ovsdb-server seeded with the ports of a generated cluster
(:func:`bench.cluster.generate`, the same rows as ``python -m bench``). One warm-up
read, then ``--repeat`` calls of :meth:`OvsdbNorthbound.lsp_list` on one connection over
the unix socket and over TCP; the median and the best are printed, with the size of
the reply. The reply framing of :mod:`kube_ovn_gc.ovn` is on this path, so this is the
number its module docstring quotes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cluster import Shape, generate
from kube_ovn_gc.ovn import OvsdbNorthbound
from kube_ovn_gc.retry import RetryPolicy
from kube_ovn_gc.settings import NbSettings
from ovsdb import OvsdbServer, encode_value

_BATCH = 5000


def seed(nb: OvsdbServer, switches: dict[str, list[dict[str, Any]]]) -> int:
    count = 0
    for name, rows in switches.items():
        nb.add_switch(name, {"vendor": "kube-ovn"})
        for start in range(0, len(rows), _BATCH):
            chunk = rows[start : start + _BATCH]
            ops: list[dict[str, Any]] = [
                {"op": "insert", "table": "Logical_Switch_Port", "uuid-name": f"p{i}",
                 "row": {k: encode_value(v) for k, v in row.items()}} for i, row in enumerate(chunk)]
            refs = ["set", [["named-uuid", f"p{i}"] for i in range(len(chunk))]]
            ops.append({"op": "mutate", "table": "Logical_Switch", "where": [["name", "==", name]],
                        "mutations": [["ports", "insert", refs]]})
            nb.transact(ops)
            count += len(chunk)
    return count


def measure(remote: str, repeat: int) -> list[float]:
    times: list[float] = []
    with OvsdbNorthbound(NbSettings(remotes=(remote,), timeout=120.0), RetryPolicy(attempts=1)) as nb:
        nb.lsp_list()  # warm-up: ovsdb-server's first big select after a start is slower
        for _ in range(repeat):
            t0 = time.perf_counter()
            nb.lsp_list()
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nblist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ports", type=int, default=100000, help="cluster size (about as many ports)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kinds", default="standalone,raft", help="standalone, raft (a one-member cluster)")
    args = parser.parse_args(argv)
    switches = generate(Shape(args.ports)).switches
    for kind in args.kinds.split(","):
        with tempfile.TemporaryDirectory(prefix="kogc-nblist-", dir="/tmp") as tmp:
            nb = OvsdbServer(Path(tmp), clustered=kind == "raft")
            nb.start()
            try:
                ports = seed(nb, switches)
                for remote in (nb.unix_remote, nb.tcp_remote):
                    times = measure(remote, args.repeat)
                    print(f"{kind:10} {remote.split(':')[0]:4} {ports:,} ports: lsp_list median "
                          f"{statistics.median(times):.2f} s, best {min(times):.2f} s "
                          f"({', '.join(f'{t:.2f}' for t in times)})", flush=True)
            finally:
                nb.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
