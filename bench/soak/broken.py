"""A deliberately broken ``kube-ovn-gc``, to prove the soak can fail: the planner is patched in this
process only, then the real CLI runs. Never a switch in the product.

    python -m bench.soak.broken vm-keep run [kube-ovn-gc options]       # stopped VMs keep nothing
    python -m bench.soak.broken second-look run [kube-ovn-gc options]   # act on the first read alone

- ``vm-keep``: the KubeVirt VM keep rule is gone (what kube-ovn#5556 and #6824 did in effect): the
  addresses of VMs are kept only while a launcher pod runs, so a stopped VM's IP CR and LSP look leaked;
- ``second-look``: the re-read before each delete always agrees with the first read.

The soak takes it as ``--job-cmd "python -m bench.soak.broken vm-keep run"``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import bench  # noqa: F401  (gc/ on the path when run from a checkout)
from kube_ovn_gc import apply, cli
from kube_ovn_gc import plan as planner
from kube_ovn_gc.model import VirtualMachine

BREAKS = ("vm-keep", "second-look")


def break_vm_keep() -> None:
    original = planner.Owners.__init__

    def no_vm_keep(self: planner.Owners, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self.vms = {}

    def index_no_vms(self: planner.Owners, vms: Iterable[VirtualMachine]) -> None:
        return None

    planner.Owners.__init__ = no_vm_keep  # type: ignore[method-assign]
    planner.Owners._index_vms = index_no_vms  # type: ignore[method-assign]


def break_second_look() -> None:
    def agree(ip: object, ctx: object, *, terminating_ok: bool = False) -> planner.Verdict:
        return planner.Verdict(False, "second look skipped (broken on purpose)")

    def no_look(action: object, ctx: object) -> None:
        return None

    apply._owners_again = agree  # type: ignore[assignment]
    apply._look_at_port = no_look  # type: ignore[assignment]


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in BREAKS:
        sys.exit(f"usage: python -m bench.soak.broken {{{'|'.join(BREAKS)}}} COMMAND [OPTIONS]")
    {"vm-keep": break_vm_keep, "second-look": break_second_look}[argv[0]]()
    sys.argv = ["kube-ovn-gc", *argv[1:]]
    cli.console()


if __name__ == "__main__":
    main(sys.argv[1:])
