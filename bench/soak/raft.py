"""``--raft``: OVN NB as a 3-member Raft cluster on loopback, as Kube-OVN's ovn-central runs it, whose
leader the soak kills (SIGKILL) and restarts now and then.

The cluster is the tests' fixture (``tests/ovsdb.py`` :class:`RaftCluster`: member 0 creates the cluster,
the others join it; each member keeps its client TCP port across restarts, and a restarted member counts
as started once it is connected to the cluster again). The job is given all three members
(``--ovn-nb tcp:…,tcp:…,tcp:…``, always in the same order, so now and then the first one it tries is the
one just killed); so are the simulated controller and the port watch. Election timer: ovsdb-server's
default (1 s), so a killed leader is replaced within a few seconds.
"""

from __future__ import annotations

from pathlib import Path

from ovsdb import RaftCluster as Fixture


class RaftCluster:
    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.cluster = Fixture(workdir, size)

    @property
    def remotes(self) -> list[str]:
        return [m.tcp_remote for m in self.cluster.members]

    def start(self) -> None:
        self.cluster.start()

    def kill_leader(self) -> int:
        leader = self.cluster.leader()
        leader.kill()
        return self.cluster.members.index(leader)

    def restart(self, index: int) -> None:
        member = self.cluster.members[index]
        if not member.running:
            member.start()  # waits until it is connected to the cluster again

    def cleanup(self) -> None:
        self.cluster.cleanup()
