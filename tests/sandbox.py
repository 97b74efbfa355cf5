"""The local sandbox: a real ovsdb-server and the fake API server seeded with a small cluster
holding the VM stop-then-delete leak and live pods/VMs; then `check`, `run`, and `run` again.

Run it with ``scripts/sandbox`` (which sets everything up first).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fakeapi import FakeApiServer
from ovsdb import OvsdbServer
from scenario import kube_ovn_controller, seed_demo


def gc(args: list[str], env: dict[str, str]) -> int:
    cmd = [sys.executable, "-m", "kube_ovn_gc", *args]
    print(f"\n$ kube-ovn-gc {' '.join(args)}", flush=True)
    code = subprocess.call(cmd, env=env)
    print(f"(exit code {code})", flush=True)
    return code


@contextmanager
def servers(seed: Callable[[FakeApiServer, OvsdbServer], object]) -> Iterator[tuple[FakeApiServer, OvsdbServer,
                                                                                     dict[str, str]]]:
    """A real ovsdb-server and the fake API server, seeded; and the environment that points the job at them."""
    with tempfile.TemporaryDirectory(prefix="kogc-") as tmp, FakeApiServer() as api:
        nb = OvsdbServer(Path(tmp))
        nb.start()
        try:
            seed(api, nb)
            env = dict(os.environ, KUBECONFIG=str(api.write_kubeconfig(Path(tmp) / "kubeconfig")),
                       OVN_NB_DB=nb.unix_remote, KUBE_OVN_GC_LOG_LEVEL="WARNING")
            yield api, nb, env
        finally:
            nb.cleanup()


def main() -> int:
    with servers(seed_demo) as (api, nb, env):
        print("Sandbox: ovsdb-server at", nb.unix_remote, "and a fake Kubernetes API at", api.url)
        print("Seeded: live pods web-1/web-2, a running and a stopped VM, StatefulSet db (1 replica),")
        print("and leaks: VM vm-deleted (stopped, then deleted), pod job-7f9c, db-1 (scaled down),")
        print("an LSP old-pod.default without IP CR, and a stale ovn-default status (v4usingIPs 9).")
        codes = [gc(["check"], env), gc(["run"], env)]
        print("\n(kube-ovn-controller now handles the terminating IP CRs: drops their LSPs and finalizers)")
        kube_ovn_controller(api, nb)
        codes.append(gc(["run"], env))
        print("\nSubnet ovn-default status now:", api.get("subnets", "ovn-default")["status"])  # type: ignore[index]
    # check finds leaks (1), run removes them (0), the second run has nothing to do (0).
    return 0 if codes == [1, 0, 0] else 1


def doctor_demo() -> int:
    """The sandbox cluster plus one of each inconsistency, then `kube-ovn-gc doctor` (the README's example).

    Run it with ``scripts/sandbox --doctor``.
    """
    from scenario import seed_doctor

    with servers(seed_doctor) as (_api, _nb, env):
        print("Seeded: the sandbox cluster (leaks, a stale status), plus pod web-3 and node node2 without their")
        print("port, a port of web-4 with an older address than its IP CR, api-1 handed web-1's address, an IP CR")
        print("terminating for 3h, and Subnet legacy deleted 2h ago but still used by pod legacy-app.")
        code = gc(["doctor"], env)
    return 0 if code == 1 else 1


if __name__ == "__main__":
    sys.exit(doctor_demo() if "--doctor" in sys.argv[1:] else main())
