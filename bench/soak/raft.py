"""``--raft``: OVN NB as a 3-member Raft cluster on loopback, as Kube-OVN's ovn-central runs it, whose
leader the soak kills (SIGKILL) and restarts now and then.

Member 0 creates the cluster (``ovsdb-tool create-cluster``), the others join it (``join-cluster``);
each member serves clients on its own fixed ``tcp:127.0.0.1:PORT`` (and a unix socket), so a restarted
member is found where it was. The leader is found with ``ovs-appctl cluster/status``. The job is given
all three members (``--ovn-nb tcp:…,tcp:…,tcp:…``); so are the simulated controller and the port watch.
Election timer: ovsdb-server's default (1 s), so a killed leader is replaced within a few seconds.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path

SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
DB = "OVN_Northbound"


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Member:
    def __init__(self, workdir: Path, index: int) -> None:
        self.index = index
        self.dir = workdir / f"m{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "nb.db"
        self.sock = self.dir / "nb.sock"
        self.ctl = self.dir / "ctl"
        self.port = _free_port()
        self.raft_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def remote(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    @property
    def raft_remote(self) -> str:
        return f"tcp:127.0.0.1:{self.raft_port}"

    def start(self) -> None:
        with open(self.dir / "stderr", "ab") as err:
            self.proc = subprocess.Popen(
                ["ovsdb-server", str(self.db), f"--remote=punix:{self.sock}", f"--remote=ptcp:{self.port}:127.0.0.1",
                 f"--unixctl={self.ctl}", f"--log-file={self.dir / 'ovsdb-server.log'}", "--no-chdir"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        weakref.finalize(self, _reap, self.proc)  # reaped even when the soak dies

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> str:
        if not self.running:
            return ""
        out = subprocess.run(["ovs-appctl", "-t", str(self.ctl), "cluster/status", DB], capture_output=True,
                             text=True, timeout=5)
        return out.stdout

    def role(self) -> str:
        for line in self.status().splitlines():
            if line.startswith("Role:"):
                return line.split(":", 1)[1].strip()
        return ""

    def connected(self) -> bool:
        return "Status: cluster member" in self.status() and self.role() in ("leader", "follower")


class RaftCluster:
    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.workdir = workdir
        self.members = [Member(workdir, i) for i in range(size)]

    @property
    def remotes(self) -> list[str]:
        return [m.remote for m in self.members]

    def start(self) -> None:
        first = self.members[0]
        subprocess.run(["ovsdb-tool", "create-cluster", str(first.db), str(SCHEMA), first.raft_remote], check=True,
                       capture_output=True)
        for m in self.members[1:]:
            subprocess.run(["ovsdb-tool", "join-cluster", str(m.db), DB, m.raft_remote, first.raft_remote],
                           check=True, capture_output=True)
        for m in self.members:
            m.start()
        self.wait_healthy(60)

    def wait_healthy(self, timeout: float) -> None:
        """Every member running and connected, and one leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(m.running and m.connected() for m in self.members) and self.leader() is not None:
                return
            time.sleep(0.1)
        raise RuntimeError("the NB Raft cluster did not come together: "
                           + "; ".join(f"m{m.index}: {m.status()!r}" for m in self.members))

    def leader(self) -> Member | None:
        leaders = [m for m in self.members if m.role() == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def kill_leader(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while (leader := self.leader()) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("no Raft leader to kill")
            time.sleep(0.1)
        leader.kill()
        return leader.index

    def restart(self, index: int) -> None:
        member = self.members[index]
        if not member.running:
            member.start()

    def cleanup(self) -> None:
        for m in self.members:
            m.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
