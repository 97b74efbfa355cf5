"""Remedies that run: every ``kubectl …`` remedy the doctor prints on its sandbox cluster
(``scripts/sandbox --doctor``) is run with the real kubectl against the fake API server; then Kube-OVN
reacts as it would (simulated below, each step citing the Kube-OVN function it stands for), and the
doctor no longer reports what those remedies were for.

``kubectl ko`` is Kube-OVN's own kubectl plugin, which runs ``ovn-nbctl`` in the ovn-central pod; here a
stand-in on PATH runs the real ``ovn-nbctl`` with the same arguments against the test's ovsdb-server, so
the arguments are checked by the real ovn-nbctl.

Every kubectl command template in doctor.py (read from its source, :func:`remedy_templates`) must be printed
by a scenario here and run under kubectl (``test_every_remedy_template_of_the_doctor_runs_under_kubectl``): a
remedy added without a scenario fails it.
"""

from __future__ import annotations

import ast
import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fakeapi import FakeApiServer, make_tls_files
from kube_ovn_gc import doctor as doctor_module
from ovsdb import OvsdbServer
from scenario import OLD, Cluster, ago, kube_ovn_controller, mac_for, pod_only, seed_doctor, terminating

KUBECTL = shutil.which("kubectl")
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl missing: scripts/setup installs kubernetes-client")

KO_STANDIN = """#!/bin/sh
# Stand-in for Kube-OVN's kubectl-ko (which runs ovn-nbctl in the ovn-central pod): `kubectl ko nbctl ARGS`.
[ "$1" = nbctl ] || { echo "kubectl-ko stand-in: only nbctl is supported, not $1" >&2; exit 2; }
shift
exec ovn-nbctl --db="$KO_NB_DB" "$@"
"""


def kubectl_segments(remedy: str) -> list[str]:
    """The kubectl commands of a remedy as printed: after an optional ``…, or:`` / ``…: `` lead-in, before a
    ``  #`` comment, joined by ``&&`` or ``;`` (a list cut short ends in ``… N more``). Remedies that are not
    kubectl commands (``kube-ovn-gc run``, ``virtctl …``) give none."""
    command = remedy.split("  #", 1)[0]
    start = command.find("kubectl ")
    if start < 0:
        return []
    # "… 2 more (see objects)": the rest of a long list, not a command
    return [part for part in command[start:].replace("; ", " && ").split(" && ") if not part.startswith("…")]


def kubectl_commands(remedy: str) -> list[list[str]]:
    """:func:`kubectl_segments` as argv lists."""
    out = []
    for part in kubectl_segments(remedy):
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


FEATURES = (  # spec switch, the address's name, its status fields (pkg/apis/kubeovn/v1 SubnetSpec/SubnetStatus)
    ("enableMulticastSnoop", "mcast-querier.{subnet}", "mcastQuerierIP", "mcastQuerierMAC"),
    ("u2oInterconnection", "u2o-interconnection.{vpc}.{subnet}", "u2oInterconnectionIP", "u2oInterconnectionMAC"),
)


class SubnetFeatures:
    """What kube-ovn-controller (v1.14.0, pkg/controller/subnet.go) does when a Subnet's ``enableMulticastSnoop``
    or ``u2oInterconnection`` changes: ``enqueueUpdateSubnet`` compares both, one event per change, and
    ``handleAddOrUpdateSubnet`` → ``reconcileSubnetSpecialIPs`` reconciles from the Subnet as it then is.

    - Off, while the status names an address: ``releaseMcastQuerierIP`` / ``releaseU2OIP`` release it, delete
      the IP CR and empty ``status.mcastQuerierIP``/``…MAC`` (``status.u2oInterconnectionIP``/``…MAC``); then
      ``handleMcastQuerierChange`` deletes the querier's port. Off with an empty status: nothing at all.
    - On, with an empty status: ``acquireMcastQuerierIP`` / ``acquireU2OIP`` take a free address and write the
      IP CR (``createOrUpdateIPCR("", name, ip, mac, subnet, "default", "", "")``) and the status; then
      ``handleMcastQuerierChange`` creates the querier's port (``pod=default/<name>``).
    - U2O only on an underlay Subnet: ``spec.vlan`` set and ``spec.logicalGateway`` off.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.seen = self._switches()

    def _switches(self) -> dict[tuple[str, str], bool]:
        return {(s["metadata"]["name"], flag): (s.get("spec") or {}).get(flag) is True
                for s in self.c.api.list("subnets") for flag, *_ in FEATURES}

    def react(self) -> None:
        for (subnet, flag), on in self._switches().items():
            if self.seen.get((subnet, flag), False) == on:
                continue
            self.seen[subnet, flag] = on
            obj = self.c.api.get("subnets", subnet)
            assert obj is not None
            spec, status = obj["spec"], obj.get("status") or {}
            if flag == "u2oInterconnection" and (not spec.get("vlan") or spec.get("logicalGateway")):
                continue
            _, template, ip_field, mac_field = next(f for f in FEATURES if f[0] == flag)
            name = template.format(subnet=subnet, vpc=spec.get("vpc", "ovn-cluster"))
            querier = flag == "enableMulticastSnoop"
            if not on and status.get(ip_field):
                self.c.api.delete("ips", name)
                self.c.api.remove_finalizers("ips", name)
                self._status(subnet, {ip_field: "", mac_field: ""})
                if querier:
                    self.c.nb.delete_ports([p["uuid"] for p in self.c.nb.ports() if p["name"] == name])
            elif on and not status.get(ip_field):
                address = self._free(spec)
                self.c.ip_cr(name, subnet, address, pod_name=name, namespace="default", node="")
                self._status(subnet, {ip_field: address, mac_field: mac_for(address)})
                if querier:
                    self.c.port(name, subnet, address, pod_key=f"default/{name}")

    def _status(self, subnet: str, fields: dict[str, str]) -> None:
        self.c.api.modify("subnets", subnet, lambda obj: obj.setdefault("status", {}).update(fields))

    def _free(self, spec: dict[str, Any]) -> str:
        used = {a for ip in self.c.api.list("ips") for a in ip["spec"]["ipAddress"].split(",")}
        used |= {a.split()[-1] for p in self.c.nb.ports() for a in p["addresses"] if " " in a}
        used |= {spec.get("gateway", ""), *spec.get("excludeIps", [])}
        return next(str(h) for h in ipaddress.ip_network(spec["cidrBlock"]).hosts() if str(h) not in used)


@contextlib.contextmanager
def kube_ovn_running(world: World) -> Iterator[None]:
    """kube-ovn-controller's side while kubectl runs, which `kubectl delete` and `kubectl wait` block on: the
    finalizers of terminating IP CRs (handleDelIP) and the Subnet feature switches (:class:`SubnetFeatures`)."""
    features = SubnetFeatures(world.cluster)
    stop = threading.Event()
    failed: list[BaseException] = []

    def loop() -> None:
        while not stop.wait(0.05):
            try:
                kube_ovn_controller(world.api, world.nb)
                features.react()
            except BaseException as exc:  # surfaced below: a dead simulation must fail the test
                failed.append(exc)
                return

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(timeout=10)
    assert not failed, failed


def _finding_key(finding: dict[str, Any]) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    return finding["kind"], tuple((o["kind"], o.get("namespace", ""), o["name"]) for o in finding["objects"])


def test_every_kubectl_remedy_runs_and_its_finding_goes(world: World) -> None:
    before = world.doctor()
    with_kubectl = [f for f in before["findings"] if kubectl_commands(f["remedy"])]
    assert len(with_kubectl) >= 8, "the sandbox shows leaks, drift, missing, mismatch, duplicate and stuck"
    kube_ovn = KubeOvn(world)
    ran: list[str] = []
    with kube_ovn_running(world):  # kubectl delete waits for the object to go; Kube-OVN drops its finalizer
        for finding in with_kubectl:
            for argv in kubectl_commands(finding["remedy"]):
                out = world.kubectl(argv)
                assert out.returncode == 0, f"{shlex.join(argv)} (for {finding['message']}): {out.stderr}"
                assert "Error" not in out.stderr, out.stderr
                ran.append(shlex.join(argv))
            kube_ovn.react(recreate_pods="re-create it" in finding["remedy"])
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


# --- every remedy template of the doctor runs -------------------------------------------------------------------

HOLE = "\x00"  # where a template takes a value


def _template(node: ast.AST) -> str | None:
    """The text of a string literal, f-string or ``+`` chain holding one, each value as :data:`HOLE`."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        if left is None and right is None:
            return None
        return (HOLE if left is None else left) + (HOLE if right is None else right)
    return None


def remedy_templates(source: str) -> frozenset[str]:
    """Every kubectl command the module ``source`` can print, as a template: the string literals, f-strings
    and ``+`` chains that hold ``kubectl ``, cut into commands as :func:`kubectl_segments` cuts a remedy.
    Docstrings are prose, not remedies; values inside an f-string are searched too."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        text = _template(node) if isinstance(node, (ast.Constant, ast.JoinedStr, ast.BinOp)) else None
        if text is not None and "kubectl " in text:
            found.update(seg for seg in kubectl_segments(text) if seg.startswith("kubectl "))
            for inner in ast.walk(node):
                if isinstance(inner, ast.FormattedValue):
                    visit(inner.value)
            return
        for name, value in ast.iter_fields(node):
            children = value if isinstance(value, list) else [value]
            if name == "body" and isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and children \
                    and isinstance(children[0], ast.Expr) and isinstance(children[0].value, ast.Constant):
                children = children[1:]  # the docstring
            for child in children:
                if isinstance(child, ast.AST):
                    visit(child)

    visit(ast.parse(source))
    return frozenset(found)


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("(.*?)".join(re.escape(part) for part in template.split(HOLE)))


def best_template(command: str, templates: Iterable[str]) -> str | None:
    """The most specific template (most literal text) that prints ``command``; None when none does."""
    matching = [t for t in templates if _pattern(t).fullmatch(command)]
    return max(matching, key=lambda t: (len(t.replace(HOLE, "")), t), default=None)


def uncovered(templates: Collection[str], commands: Iterable[str]) -> set[str]:
    """The templates none of ``commands`` was printed from."""
    return set(templates) - {best_template(c, templates) for c in commands}


def doctor_templates() -> frozenset[str]:
    return remedy_templates(Path(doctor_module.__file__).read_text())


def test_remedy_templates_are_read_from_the_source_and_an_unrun_one_is_found() -> None:
    source = '''
RESTART = "kubectl -n kube-system rollout restart deployment/x"
def f(n, ns):
    """kubectl in a docstring is prose: kubectl get all"""
    release = "kubectl delete ip " + n + " && "
    return f"{release}kubectl delete pod -n {ns} {n}", f"kube-ovn-gc run, or: kubectl annotate subnet {n} a=b  # new"
'''
    templates = remedy_templates(source)
    assert templates == {"kubectl -n kube-system rollout restart deployment/x", f"kubectl delete ip {HOLE}",
                         f"kubectl delete pod -n {HOLE} {HOLE}", f"kubectl annotate subnet {HOLE} a=b"}
    ran = ["kubectl delete ip a.b", "kubectl delete pod -n default a", "kubectl -n kube-system rollout restart "
           "deployment/x"]
    assert uncovered(templates, ran) == {f"kubectl annotate subnet {HOLE} a=b"}
    assert best_template("kubectl delete pod -n default a", {f"kubectl delete {HOLE} {HOLE}",
                                                             f"kubectl delete pod -n {HOLE} {HOLE}"}) == \
        f"kubectl delete pod -n {HOLE} {HOLE}"
    real = doctor_templates()  # the doctor's own, read the same way
    for known in (doctor_module.RESTART_CONTROLLER, f"kubectl ko nbctl list logical_switch_port {HOLE}",
                  f"kubectl wait --for=delete ip/{HOLE} --timeout=2m", f"kubectl ko nbctl --if-exists lsp-del {HOLE}",
                  f"kubectl patch subnet {HOLE} --type=merge -p '{{\"spec\":{{\"{HOLE}\":{HOLE}}}}}'"):
        assert known in real, sorted(real)


def feature_subnet(c: Cluster, name: str, cidr: str, *, status: dict[str, Any] | None = None,
                   **spec: Any) -> None:
    gateway = str(next(ipaddress.ip_network(cidr).hosts()))
    c.subnet(name, cidr, gateway)
    c.api.modify("subnets", name, lambda obj: (obj["spec"].update(spec), obj["status"].update(status or {})))


def subnet_address(c: Cluster, name: str, subnet: str, address: str, *, port_address: str | None = None,
                   created: str = OLD) -> None:
    """A querier's or U2O's IP CR as v1.13.0-v1.15.0 write it (namespace default, podName its own name, no node),
    and for a querier its port (``pod=default/<name>``), at ``port_address`` when that differs."""
    c.ip_cr(name, subnet, address, pod_name=name, namespace="default", node="", created=created)
    if port_address is not None:
        c.port(name, subnet, port_address, pod_key=f"default/{name}")
        if port_address != address:  # the port kept an older address, with the IP CR's MAC
            [port] = [p for p in c.nb.ports() if p["name"] == name]
            c.nb.set_port(port["uuid"], addresses=[f"{mac_for(address)} {port_address}"])


def seed_subnet_features(c: Cluster) -> None:
    """Querier and U2O addresses whose IP CR and port disagree, or that another IP CR holds too, on Subnets that
    still enable the feature (mc1, u2o1: switch it off, wait, on) and on Subnets that no longer do (mc2, u2o2:
    Kube-OVN will never release them; delete them)."""
    feature_subnet(c, "mc1", "10.40.0.0/24", enableMulticastSnoop=True,
                   status={"mcastQuerierIP": "10.40.0.2", "mcastQuerierMAC": mac_for("10.40.0.2")})
    subnet_address(c, "mcast-querier.mc1", "mc1", "10.40.0.2", port_address="10.40.0.9")
    feature_subnet(c, "mc2", "10.42.0.0/24")
    subnet_address(c, "mcast-querier.mc2", "mc2", "10.42.0.2", port_address="10.42.0.9")
    u2o_status = {"u2oInterconnectionIP": "10.41.0.2", "u2oInterconnectionMAC": mac_for("10.41.0.2")}
    feature_subnet(c, "u2o1", "10.41.0.0/24", vlan="vlan1", u2oInterconnection=True, status=u2o_status)
    feature_subnet(c, "u2o2", "10.43.0.0/24", vlan="vlan1")
    for subnet, address in (("u2o1", "10.41.0.2"), ("u2o2", "10.43.0.2")):
        app = f"app-{subnet}"
        pod_only(c, "default", app, address, subnet=subnet)
        c.address("default", app, address, subnet=subnet)
        # handed out again later, to the U2O address: the newest holder gives it up
        subnet_address(c, f"u2o-interconnection.ovn-cluster.{subnet}", subnet, address, created="2026-06-01T00:00:00Z")


def _about_subnet_addresses(finding: dict[str, Any]) -> bool:
    return finding["kind"] in ("mismatch", "duplicate-address") and any(
        o["name"].startswith(("mcast-querier.", "u2o-interconnection.")) for o in finding["objects"])


def test_subnet_feature_remedies_run_and_their_findings_go(world: World) -> None:
    seed_subnet_features(world.cluster)
    found = [f for f in world.doctor()["findings"] if _about_subnet_addresses(f)]
    by_subnet = {re.sub(r"^.*\.", "", next(o["name"] for o in f["objects"] if "." in o["name"]
                                           and o["name"].startswith(("mcast", "u2o")))): f["remedy"] for f in found}
    assert sorted(by_subnet) == ["mc1", "mc2", "u2o1", "u2o2"], found
    for subnet in ("mc1", "u2o1"):  # still enabled: off, wait for the release, on
        assert f"kubectl patch subnet {subnet} --type=merge" in by_subnet[subnet], by_subnet[subnet]
        assert "kubectl wait --for=delete ip/" in by_subnet[subnet]
    for subnet in ("mc2", "u2o2"):  # no longer enabled: deleted, the Subnet left as it is
        assert by_subnet[subnet].startswith("kubectl delete ip ") and "patch" not in by_subnet[subnet]

    with kube_ovn_running(world):
        for finding in found:
            for argv in kubectl_commands(finding["remedy"]):
                out = world.kubectl(argv)
                assert out.returncode == 0, f"{shlex.join(argv)} (for {finding['message']}): {out.stderr}"

    after = {_finding_key(f) for f in world.doctor()["findings"]}
    assert [f["message"] for f in found if _finding_key(f) in after] == []
    api, ports = world.api, {p["name"]: p for p in world.nb.ports()}
    spec = {s["metadata"]["name"]: s["spec"] for s in api.list("subnets")}
    assert spec["mc1"]["enableMulticastSnoop"] is True and spec["u2o1"]["u2oInterconnection"] is True
    assert "enableMulticastSnoop" not in spec["mc2"] and "u2oInterconnection" not in spec["u2o2"]
    querier = api.get("ips", "mcast-querier.mc1")  # allocated again: IP CR and port from one allocation
    assert querier is not None
    assert ports["mcast-querier.mc1"]["addresses"] == [f"{querier['spec']['macAddress']} "
                                                       f"{querier['spec']['ipAddress']}"]
    u2o = api.get("ips", "u2o-interconnection.ovn-cluster.u2o1")
    assert u2o is not None and u2o["spec"]["ipAddress"] != "10.41.0.2"
    assert api.get("ips", "mcast-querier.mc2") is None and "mcast-querier.mc2" not in ports
    assert api.get("ips", "u2o-interconnection.ovn-cluster.u2o2") is None


def test_a_subnet_spec_patch_needs_a_type_kubectl_default_is_refused(world: World) -> None:
    """kubectl patches with a strategic merge patch unless told otherwise; kube-apiserver answers 415 to that on
    a custom resource (the fake API server as well): the doctor's spec patches carry --type=merge."""
    body = '{"spec":{"enableMulticastSnoop":true}}'
    refused = world.kubectl(["kubectl", "patch", "subnet", "ovn-default", "-p", body])
    assert refused.returncode != 0 and "application/strategic-merge-patch+json is not supported" in refused.stderr
    assert world.kubectl(["kubectl", "patch", "subnet", "ovn-default", "--type=merge", "-p", body]).returncode == 0
    subnet = world.api.get("subnets", "ovn-default")
    assert subnet is not None and subnet["spec"]["enableMulticastSnoop"] is True


def seed_odd_port(c: Cluster) -> None:
    """A port the planner cannot judge (its ``pod`` external id has no namespace): `kubectl ko nbctl list …`."""
    c.port("odd.default", "ovn-default", "10.16.0.88", pod_key="no-slash")


def test_kubectl_ko_nbctl_list_runs_through_kubectl_and_the_real_ovn_nbctl(world: World) -> None:
    seed_odd_port(world.cluster)
    [finding] = [f for f in world.doctor()["findings"] if f["kind"] == "unjudged"
                 and f["objects"] == [{"kind": "LSP", "name": "odd.default"}]]
    [argv] = kubectl_commands(finding["remedy"])
    assert argv == ["kubectl", "ko", "nbctl", "list", "logical_switch_port", "odd.default"]
    out = world.kubectl(argv)  # kubectl finds kubectl-ko on PATH; the stand-in execs ovn-nbctl --db=<the test's NB>
    assert out.returncode == 0, out.stderr
    fields = dict(re.split(r"\s*: ", line, maxsplit=1) for line in out.stdout.splitlines() if " : " in line)
    [uuid] = [p["uuid"] for p in world.nb.ports() if p["name"] == "odd.default"]
    assert fields["_uuid"] == uuid and fields["name"].strip('"') == "odd.default"
    assert "pod=no-slash" in fields["external_ids"] and "10.16.0.88" in fields["addresses"]


def seed_the_rest(c: Cluster) -> None:
    """What else only the doctor's rarer remedies are for: a Subnet whose status cannot be computed (`kubectl get
    subnet … -o yaml`), a VM whose networks annotation cannot be read and one that cannot be parsed at all, in a
    namespace of their own (`kubectl get virtualmachine … -n prod -o yaml`), a Subnet terminating with a using
    count and nothing using it (the status patch to 0)."""
    c.subnet("bad-cidr", "10.50.0.0/33", "10.50.0.1")
    vm = c.vm("prod", "vm-odd", running=False)
    vm["spec"]["template"]["metadata"] = {"annotations": {"k8s.v1.cni.cncf.io/networks": "[not json"}}
    c.api.put("virtualmachines", vm)
    vm = c.vm("prod", "vm-bad", running=False)
    vm["spec"]["template"]["spec"]["networks"] = "not a list"
    c.api.put("virtualmachines", vm)
    c.subnet("legacy4", "10.51.0.0/24", "10.51.0.1", status={"v4usingIPs": 2, "v4availableIPs": 251,
                                                           "v6usingIPs": 0, "v6availableIPs": 0})
    terminating(c, "subnets", "legacy4", ago(hours=2))


def test_every_remedy_template_of_the_doctor_runs_under_kubectl(world: World) -> None:
    """Fails when doctor.py gains a kubectl remedy that no scenario here prints, or one that kubectl refuses:
    every template of the doctor's source (:func:`remedy_templates`) must be printed on the sandbox plus the
    shapes above, and run with the real kubectl."""
    seed_more_shapes(world.cluster)
    seed_subnet_features(world.cluster)
    seed_odd_port(world.cluster)
    seed_the_rest(world.cluster)
    templates = doctor_templates()
    findings = world.doctor()["findings"]
    printed = [seg for f in findings for seg in kubectl_segments(f["remedy"])]
    assert [seg for seg in printed if best_template(seg, templates) is None] == []
    for vm in ("vm-odd", "vm-bad"):  # however the planner could not judge it, it is found in its namespace
        assert f"kubectl get virtualmachine {vm} -n prod -o yaml" in printed, printed
    missing = uncovered(templates, printed)
    assert missing == set(), ("doctor.py has remedies no scenario prints: add one to tests/test_remedies.py: "
                              f"{sorted(t.replace(HOLE, '…') for t in missing)}")
    ran: list[str] = []
    # Only what the remedies wait for reacts (finalizers, Subnet switches): whether each finding then goes is
    # what the tests above check, shape by shape; here every command must find its objects as printed.
    with kube_ovn_running(world):
        for finding in findings:
            for seg, argv in zip(kubectl_segments(finding["remedy"]), kubectl_commands(finding["remedy"]),
                                 strict=True):
                if seg in ran:
                    continue
                out = world.kubectl(argv)
                assert out.returncode == 0, f"{seg} (for {finding['message']}): {out.stderr}"
                ran.append(seg)
    assert uncovered(templates, ran) == set()
