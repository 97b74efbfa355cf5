"""What one second-look round trip costs, on each side: the job's GETs, timed from 1, 2 and 4 threads.

    python -m bench.serve --size 100000           # prints KUBECONFIG=... and its pid
    KUBECONFIG=... python -m bench.requests --server-pid <pid>

Each "candidate" is what the second look of a leaked pod IP CR asks for: GET Pod, VirtualMachine,
VirtualMachineInstance and IP CR (all 404 here), through the job's own adapter. Per request it prints
the wall time, the CPU time of this process (the client) and, with ``--server-pid``, of the server's
process (read from ``/proc``), so one sees which side bounds the acting phase.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kube_ovn_gc import kube
from kube_ovn_gc.retry import RetryPolicy
from kube_ovn_gc.settings import KubeSettings

PER_CANDIDATE = 4


def process_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--server-pid", type=int, help="the API server's process, for its CPU time")
    args = parser.parse_args(argv)
    settings = KubeSettings(kubeconfig=os.environ.get("KUBECONFIG"))
    writer = kube.KubeWriter(kube.api_client(settings), settings, RetryPolicy(attempts=1))

    def second_look(i: int) -> None:
        name = f"bench-absent-{i}"
        writer.get_pod("default", name)
        writer.get_vm("default", name)
        writer.get_vmi("default", name)
        writer.get_ip(f"{name}.default")

    second_look(-1)  # connect
    print("threads | ms per request: wall | client CPU | server CPU")
    for threads in (1, 2, 4):
        server = process_cpu(args.server_pid) if args.server_pid else 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(second_look, range(args.candidates)))
        n = args.candidates * PER_CANDIDATE / 1000  # per request, in ms
        wall, cpu = (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n
        served = f"{(process_cpu(args.server_pid) - server) / n:.2f}" if args.server_pid else "-"
        print(f"{threads} | {wall:.2f} | {cpu:.2f} | {served}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
