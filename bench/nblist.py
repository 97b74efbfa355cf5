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
from ovsdb import OvsdbServer


def seed(nb: OvsdbServer, switches: dict[str, list[dict[str, Any]]]) -> int:
    for name, rows in switches.items():
        nb.add_switch(name, {"vendor": "kube-ovn"})
        nb.add_ports(name, rows, batch=5000)
    return sum(map(len, switches.values()))


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
