"""Remedies that run: every ``kubectl …`` remedy the doctor prints on its sandbox cluster
(``scripts/sandbox --doctor``) is run with the real kubectl against the fake API server; then Kube-OVN
reacts as it would (simulated below, each step citing the Kube-OVN function it stands for), and the
doctor no longer reports what those remedies were for.

``kubectl ko`` is Kube-OVN's own kubectl plugin, which runs ``ovn-nbctl`` in the ovn-central pod; here a
stand-in on PATH runs the real ``ovn-nbctl`` with the same arguments against the test's ovsdb-server, so
the arguments are checked by the real ovn-nbctl.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fakeapi import FakeApiServer, make_tls_files
from ovsdb import OvsdbServer
from scenario import OLD, Cluster, ago, kube_ovn_controller, pod_only, seed_doctor, terminating

KUBECTL = shutil.which("kubectl")
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl missing: scripts/setup installs kubernetes-client")

KO_STANDIN = """#!/bin/sh
# Stand-in for Kube-OVN's kubectl-ko (which runs ovn-nbctl in the ovn-central pod): `kubectl ko nbctl ARGS`.
[ "$1" = nbctl ] || { echo "kubectl-ko stand-in: only nbctl is supported, not $1" >&2; exit 2; }
shift
exec ovn-nbctl --db="$KO_NB_DB" "$@"
"""


def kubectl_commands(remedy: str) -> list[list[str]]:
    """The kubectl commands of a remedy: after an optional ``…, or:`` / ``…: `` lead-in, before a ``  #``
    comment, joined by ``&&`` or ``;`` (a list cut short ends in ``… N more``). Remedies that are not
    kubectl commands (``kube-ovn-gc run``, ``virtctl …``) give none."""
    command = remedy.split("  #", 1)[0]
    start = command.find("kubectl ")
    if start < 0:
        return []
    out = []
    for part in command[start:].replace("; ", " && ").split(" && "):
        if part.startswith("…"):  # "… 2 more (see objects)": the rest of a long list, not a command
            continue
        argv = shlex.split(part)
        assert argv[0] == "kubectl", f"{part!r} in {remedy!r} is not a kubectl command"
        out.append(argv)
    return out


def test_kubectl_commands_are_read_from_remedies_as_printed() -> None:
    assert kubectl_commands("kube-ovn-gc run, or: kubectl delete ip a.b") == [["kubectl", "delete", "ip", "a.b"]]
    assert kubectl_commands("kubectl delete ip x && kubectl delete pod -n d x  # why") == [
        ["kubectl", "delete", "ip", "x"], ["kubectl", "delete", "pod", "-n", "d", "x"]]
    assert kubectl_commands("move or delete what still uses it: kubectl delete pod -n d a") == [
        ["kubectl", "delete", "pod", "-n", "d", "a"]]
    assert kubectl_commands("""kubectl patch subnet s --subresource=status --type=merge -p '{"status":{}}'""")[0][
        -1] == '{"status":{}}'
    assert kubectl_commands("kube-ovn-gc run --release-stuck-after 1h  # (or restart kube-ovn-controller)") == []
    assert kubectl_commands("virtctl restart vm -n d") == []
    assert kubectl_commands("move or delete what still uses it: kubectl delete vips a; kubectl delete ip b; … 1 more "
                            "(see objects)") == [["kubectl", "delete", "vips", "a"], ["kubectl", "delete", "ip", "b"]]


@dataclass
class World:
    cluster: Cluster
    env: dict[str, str]  # kubectl's and the job's

    @property
    def api(self) -> FakeApiServer:
        return self.cluster.api

    @property
    def nb(self) -> OvsdbServer:
        return self.cluster.nb

    def doctor(self) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "kube_ovn_gc", "doctor", "--output", "json"], env=self.env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode in (0, 1), out.stderr
        report: dict[str, Any] = json.loads(out.stdout)
        return report

    def kubectl(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        return subprocess.run([KUBECTL, *argv[1:]], env=self.env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with FakeApiServer(tls=make_tls_files(tmp_path)) as api:
        nb = OvsdbServer(tmp_path)
        nb.start()
        try:
            cluster = seed_doctor(api, nb)
            for ns in ("default", "kube-system"):
                api.create("namespaces", {"metadata": {"name": ns, "creationTimestamp": OLD}})
            api.create("deployments", {
                "metadata": {"name": "kube-ovn-controller", "namespace": "kube-system", "creationTimestamp": OLD},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "kube-ovn-controller"}},
                         "template": {"metadata": {"labels": {"app": "kube-ovn-controller"}},
                                      "spec": {"containers": [{"name": "kube-ovn-controller", "image": "kube-ovn"}]}}},
            }, namespace="kube-system")
            bin_dir = tmp_path / "bin"
            bin_dir.mkdir()
            ko = bin_dir / "kubectl-ko"
            ko.write_text(KO_STANDIN)
            ko.chmod(ko.stat().st_mode | stat.S_IXUSR)
            home = tmp_path / "home"
            home.mkdir()
            env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(home),
                   "KUBECONFIG": str(api.write_kubeconfig(tmp_path / "kubeconfig")), "OVN_NB_DB": nb.unix_remote,
                   "KO_NB_DB": nb.unix_remote, "KUBE_OVN_GC_LOG_LEVEL": "WARNING"}
            yield World(cluster, env)
        finally:
            nb.cleanup()


# --- Kube-OVN, reacting -----------------------------------------------------------------------------------------


class KubeOvn:
    """What kube-ovn-controller (v1.14.0) does after the remedies, run until nothing changes."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in world.api.list("pods")}
        self.restarted = self._restarted_at()
        self.recreated: list[tuple[str, str]] = []

    def _restarted_at(self) -> str:
        deploy = self.w.api.get("deployments", "kube-ovn-controller", "kube-system") or {}
        template = (deploy.get("spec") or {}).get("template") or {}
        return str(((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT, ""))

    def react(self, *, recreate_pods: bool) -> None:
        api, nb = self.w.api, self.w.nb
        ports = {p["name"]: p for p in nb.ports()}
        # pkg/controller/pod.go handleDeletePod: a deleted pod's ports are deleted from NB, then its
        # (not reserved) IP CRs; the IPAM releases the addresses.
        now = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in api.list("pods")}
        for ns, name in sorted(self.pods - now):
            port = f"{name}.{ns}"
            if port in ports:
                nb.delete_ports([ports[port]["uuid"]])
            ip = api.get("ips", port)
            if ip is not None and ip["metadata"].get("labels", {}).get("ovn.kubernetes.io/ip_reserved") != "true":
                api.delete("ips", port)
                api.remove_finalizers("ips", port)
            if recreate_pods:
                self.recreated.append((ns, name))
        # pkg/controller/ip.go handleDelIP (via its finalizer): a terminating IP CR's port goes, then the finalizer.
        kube_ovn_controller(api, nb)
        # A restart (rollout restart bumps the template's restartedAt): the controller lists every Node again
        # and pkg/controller/node.go handleAddNode re-creates a missing node-<node> port on the join switch at the
        # address of its IP CR (CreateBareLogicalSwitchPort); terminating IP CRs are finished (handleDelIP).
        if self._restarted_at() != self.restarted:
            self.restarted = self._restarted_at()
            ports = {p["name"] for p in nb.ports()}
            for node in api.list("nodes"):
                name = f"node-{node['metadata']['name']}"
                ip = api.get("ips", name)
                if ip is not None and name not in ports:
                    address = ip["spec"]["ipAddress"]
                    nb.add_ports(ip["spec"]["subnet"], [{"name": name, "type": "", "external_ids": {
                        "vendor": "kube-ovn", "ls": ip["spec"]["subnet"]},
                        "addresses": [f"{ip['spec']['macAddress']} {address}"]}])
        # The user re-creates what the remedy told them to (a pod no controller owns), and
        # pkg/controller/pod.go handleAddPod allocates it a fresh address: IP CR and port from one allocation.
        for ns, name in self.recreated:
            if api.get("pods", name, ns) is None:
                address = self._free_address("ovn-default")
                pod_only(self.w.cluster, ns, name, address)
                self.w.cluster.address(ns, name, address)
        self.recreated.clear()
        # pkg/controller/subnet.go handleSubnetFinalizer: a terminating Subnet goes once nothing uses it.
        for subnet in api.list("subnets"):
            name = subnet["metadata"]["name"]
            if subnet["metadata"].get("deletionTimestamp") and not any(
                    ip["spec"]["subnet"] == name for ip in api.list("ips")):
                api.remove_finalizers("subnets", name)
        self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in api.list("pods")}

    def _free_address(self, subnet: str) -> str:
        used = {ip["spec"]["ipAddress"] for ip in self.w.api.list("ips")}
        used |= {a.split()[-1] for p in self.w.nb.ports() for a in p["addresses"] if " " in a}
        for host in ipaddress.ip_network("10.16.0.0/16").hosts():
            if int(host) & 0xFF >= 100 and str(host) not in used:
                return str(host)
        raise AssertionError(f"{subnet} is full")


def _finding_key(finding: dict[str, Any]) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    return finding["kind"], tuple((o["kind"], o.get("namespace", ""), o["name"]) for o in finding["objects"])


def test_every_kubectl_remedy_runs_and_its_finding_goes(world: World) -> None:
    before = world.doctor()
    with_kubectl = [f for f in before["findings"] if kubectl_commands(f["remedy"])]
    assert len(with_kubectl) >= 8, "the sandbox shows leaks, drift, missing, mismatch, duplicate and stuck"
    kube_ovn = KubeOvn(world)
    ran: list[str] = []
    # kubectl delete waits for the object to go; Kube-OVN drops its finalizer meanwhile (handleDelIP)
    stop = threading.Event()

    def finalizers() -> None:
        while not stop.wait(0.05):
            kube_ovn_controller(world.api, world.nb)

    worker = threading.Thread(target=finalizers, daemon=True)
    worker.start()
    try:
        for finding in with_kubectl:
            for argv in kubectl_commands(finding["remedy"]):
                out = world.kubectl(argv)
                assert out.returncode == 0, f"{shlex.join(argv)} (for {finding['message']}): {out.stderr}"
                assert "Error" not in out.stderr, out.stderr
                ran.append(shlex.join(argv))
            kube_ovn.react(recreate_pods="re-create it" in finding["remedy"])
    finally:
        stop.set()
        worker.join(timeout=10)
    assert any(c.startswith("kubectl ko nbctl lsp-del") for c in ran)
    assert any(c.startswith("kubectl -n kube-system rollout restart deployment/kube-ovn-controller") for c in ran)
    assert any("--subresource=status" in c for c in ran)

    after = {_finding_key(f) for f in world.doctor()["findings"]}
    still = [f"{f['kind']}: {f['message']} (remedy: {f['remedy']})" for f in with_kubectl if _finding_key(f) in after]
    assert still == []


def test_the_kubectl_ko_standin_refuses_what_ovn_nbctl_refuses(world: World) -> None:
    refused = world.kubectl(["kubectl", "ko", "nbctl", "lsp-del", "no-such-port"])
    assert refused.returncode != 0 and "no-such-port" in refused.stderr
    assert world.kubectl(["kubectl", "ko", "nbctl", "--if-exists", "lsp-del", "no-such-port"]).returncode == 0



def seed_more_shapes(c: Cluster) -> None:
    """Holders of a terminating Subnet the sandbox lacks (a stopped VM, a Vip, both EIP kinds) and an IP CR
    the planner cannot judge: their remedies are `kubectl delete vm|vips|ovn-eips|iptables-eips`, `kubectl
    get ip … -o yaml`."""
    c.subnet("legacy2", "10.30.0.0/24", "10.30.0.1", status={"v4usingIPs": 4, "v4availableIPs": 249, "v6usingIPs": 0,
                                                           "v6availableIPs": 0})
    terminating(c, "subnets", "legacy2", ago(hours=2))
    c.vm("default", "vm-x", running=False)
    c.address("default", "vm-x", "10.30.0.2", subnet="legacy2", pod_type="VirtualMachine")
    held = {"ovn.kubernetes.io/subnet": "legacy2"}
    c.api.create("vips", {"metadata": {"name": "vip-1", "labels": {**held, "ovn.kubernetes.io/ip_reserved": ""}},
                          "spec": {"subnet": "legacy2", "v4ip": "10.30.0.3"}})
    c.api.create("ovn-eips", {"metadata": {"name": "eip-1", "labels": held},
                              "spec": {"externalSubnet": "legacy2", "v4Ip": "10.30.0.4", "type": "nat"}})
    c.subnet("legacy3", "10.31.0.0/24", "10.31.0.1", status={"v4usingIPs": 1, "v4availableIPs": 252, "v6usingIPs": 0,
                                                           "v6availableIPs": 0})
    terminating(c, "subnets", "legacy3", ago(hours=2))
    c.api.create("iptables-eips", {"metadata": {"name": "eip-2", "labels": {"ovn.kubernetes.io/subnet": "legacy3"}},
                                   "spec": {"externalSubnet": "legacy3", "v4ip": "10.31.0.5"}})
    c.ip_cr("bad.default", "ovn-default", "10.16.0.77", pod_name="bad", namespace="default")
    bad = c.api.get("ips", "bad.default")
    assert bad is not None
    bad["spec"]["ipAddress"] = bad["spec"]["v4IpAddress"] = "10.16.0.777"
    c.api.put("ips", bad)


def test_kubectl_accepts_the_remedies_of_more_shapes(world: World) -> None:
    seed_more_shapes(world.cluster)
    remedies = [f["remedy"] for f in world.doctor()["findings"]]
    commands = [argv for remedy in remedies for argv in kubectl_commands(remedy)]
    shown = {shlex.join(argv) for argv in commands}
    for expected in ("kubectl delete vm -n default vm-x", "kubectl delete vips vip-1", "kubectl delete ovn-eips eip-1",
                     "kubectl delete iptables-eips eip-2", "kubectl get ip bad.default -o yaml"):
        assert expected in shown, remedies
    for argv in commands:
        if argv[1] in ("get", "patch") or argv[-1] in ("vm-x", "vip-1", "eip-1", "eip-2"):
            out = world.kubectl(argv)
            assert out.returncode == 0, f"{shlex.join(argv)}: {out.stderr}"
    assert world.api.get("virtualmachines", "vm-x", "default") is None
    assert [world.api.get(kind, name) for kind, name in (("vips", "vip-1"), ("ovn-eips", "eip-1"),
                                                         ("iptables-eips", "eip-2"))] == [None, None, None]
