"""Runs the measured processes for the benchmark, so that their peak RSS is their own.

Linux carries a process's peak RSS across ``exec`` (``exec_mmap`` records the old
address space's high-water mark in ``signal->maxrss``). A child forked from the
benchmark process, which holds the whole fake cluster (1 GB and more), would
report that as its own peak. So the benchmark starts this small process first
and has it fork and time the job and the floor.

Protocol: one JSON request a line on stdin (``cmd``, ``env``, ``cwd``, ``stdout``,
``stderr``: paths), one JSON answer a line on stdout: ``wall`` (s), ``max_rss_kib``
(``os.wait4``), ``returncode``, ``started_at`` (``time.time()`` at the fork) and
``rss`` (``[[seconds since start, RSS MiB], ...]``, sampled every 20 ms).
Only the standard library is imported, to stay small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time


def _sample(pid: int, samples: list[tuple[float, float]], t0: float, done: threading.Event) -> None:
    page = os.sysconf("SC_PAGE_SIZE") / 2**20
    path = f"/proc/{pid}/statm"
    while not done.wait(0.02):
        try:
            with open(path) as f:
                resident = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            return
        samples.append((round(time.perf_counter() - t0, 3), round(resident * page, 1)))


def run(request: dict[str, object]) -> dict[str, object]:
    cmd = [str(a) for a in request["cmd"]]  # type: ignore[attr-defined]
    env = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
    with open(str(request["stdout"]), "wb") as out, open(str(request["stderr"]), "wb") as err:
        started_at = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=str(request["cwd"]), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err)
        samples: list[tuple[float, float]] = []
        done = threading.Event()
        sampler = threading.Thread(target=_sample, args=(proc.pid, samples, t0, done), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
    return {"wall": wall, "max_rss_kib": usage.ru_maxrss, "returncode": proc.returncode, "started_at": started_at,
            "rss": samples}


def main() -> int:
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(run(json.loads(line))) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
