"""A generated cluster served until interrupted: for profiling the job by hand.

    python -m bench.serve --size 100000
    # then, in another shell, the two lines it prints (KUBECONFIG=..., OVN_NB_DB=...) and e.g.
    python -m cProfile -o job.prof -m kube_ovn_gc run --max-deletions 100000

``kill -HUP <pid>`` puts the seeded state back (both servers) after a pass changed it;
Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from bench.cluster import Shape, generate, seed
from bench.run import Servers, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--leak", type=float, default=0.01)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix=f"kogc-serve-{args.size}-", dir="/tmp"))
    servers = Servers(workdir)
    rollback = threading.Event()
    stop = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: rollback.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        servers.start()
        cluster = generate(Shape(args.size, leak_ratio=args.leak))
        seed(cluster, servers.api, servers.nb)
        del cluster
        servers.checkpoint()
        gc.collect()
        gc.freeze()
        log(f"serving {args.size}: kill -HUP {os.getpid()} rolls back, Ctrl-C stops")
        print(f"export KUBECONFIG={servers.kubeconfig} OVN_NB_DB={servers.nb.unix_remote}", flush=True)
        while not stop.is_set():
            if rollback.wait(0.2):
                rollback.clear()
                servers.rollback()
                log("rolled back")
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
