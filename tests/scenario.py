"""A small Kube-OVN cluster written into a real ovsdb-server and the fake API server.

Used by the end-to-end tests and by the sandbox (``scripts/sandbox``). Each helper
creates what Kube-OVN would have created: the IP CR, the LSP and the owner.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fakeapi import FakeApiServer
from ovsdb import OvsdbServer

OLD = "2026-01-01T00:00:00Z"
FINALIZER = "kubeovn.io/kube-ovn-controller"


def mac_for(address: str) -> str:
    n = int(ipaddress.ip_address(address)) & 0xFFFFFFFF
    return "00:00:" + ":".join(f"{(n >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


@dataclass
class Cluster:
    api: FakeApiServer
    nb: OvsdbServer
    switches: dict[str, str] = field(default_factory=dict)

    # --- infrastructure --------------------------------------------------------

    def subnet(self, name: str, cidr: str, gateway: str, *, provider: str = "ovn", protocol: str = "IPv4",
               exclude: list[str] | None = None, status: dict[str, Any] | None = None) -> None:
        self.api.create("subnets", {
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet",
            "metadata": {"name": name, "creationTimestamp": OLD, "finalizers": [FINALIZER]},
            "spec": {"cidrBlock": cidr, "gateway": gateway, "excludeIps": exclude or [gateway],
                     "protocol": protocol, "provider": provider, "vpc": "ovn-cluster"},
            "status": status or {},
        })
        self.switches[name] = self.nb.add_switch(name, {"vendor": "kube-ovn"})

    def node(self, name: str, address: str, subnet: str = "join") -> None:
        self.api.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                  "metadata": {"name": name, "creationTimestamp": OLD,
                                               "annotations": {"ovn.kubernetes.io/allocated": "true"}}})
        self.ip_cr(f"node-{name}", subnet, address, pod_name=name, namespace="", node=name)
        self.port(f"node-{name}", subnet, address, pod_key=None)

    # --- the pieces Kube-OVN writes ------------------------------------------------

    def ip_cr(self, name: str, subnet: str, address: str, *, pod_name: str, namespace: str,
              pod_type: str = "", node: str = "node1", reserved: bool = False,
              created: str = OLD) -> None:
        labels = {"ovn.kubernetes.io/subnet": subnet, "ovn.kubernetes.io/node-name": node, subnet: ""}
        if reserved:
            labels["ovn.kubernetes.io/ip_reserved"] = "true"
        v6 = ":" in address
        self.api.create("ips", {
            "apiVersion": "kubeovn.io/v1", "kind": "IP",
            "metadata": {"name": name, "labels": labels, "finalizers": [FINALIZER], "creationTimestamp": created},
            "spec": {"podName": pod_name, "namespace": namespace, "subnet": subnet, "attachSubnets": [],
                     "nodeName": node, "ipAddress": address, "v4IpAddress": "" if v6 else address,
                     "v6IpAddress": address if v6 else "", "macAddress": mac_for(address),
                     "containerID": "", "podType": pod_type},
        })

    def port(self, name: str, subnet: str, address: str, *, pod_key: str | None, vendor: str = "kube-ovn",
             type: str = "") -> str:
        ext = {"vendor": vendor, "ls": subnet}
        if pod_key is not None:
            ext["pod"] = pod_key
        return self.nb.add_ports(subnet, [{"name": name, "type": type, "external_ids": ext,
                                           "addresses": [f"{mac_for(address)} {address}"]}])[0]

    # --- owners ---------------------------------------------------------------------

    def pod(self, namespace: str, name: str, address: str, *, subnet: str = "ovn-default",
            phase: str = "Running", owner: dict[str, Any] | None = None, port_owner: str | None = None,
            pod_type: str = "", restart: str = "Always") -> None:
        """A pod with its IP CR and LSP (named after ``port_owner``: the VM for a launcher pod)."""
        owner_name = port_owner or name
        self.api.create("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": OLD,
                         "ownerReferences": [owner] if owner else [],
                         "annotations": {"ovn.kubernetes.io/allocated": "true",
                                         "ovn.kubernetes.io/ip_address": address,
                                         "ovn.kubernetes.io/mac_address": mac_for(address),
                                         "ovn.kubernetes.io/logical_switch": subnet}},
            "spec": {"nodeName": "node1", "restartPolicy": restart, "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": phase},
        }, namespace=namespace)
        self.address(namespace, owner_name, address, subnet=subnet, pod_type=pod_type)

    def address(self, namespace: str, owner: str, address: str, *, subnet: str = "ovn-default",
                pod_type: str = "") -> None:
        """The IP CR and LSP of ``owner`` (which may no longer exist: a leak)."""
        name = f"{owner}.{namespace}"
        self.ip_cr(name, subnet, address, pod_name=owner, namespace=namespace, pod_type=pod_type)
        self.port(name, subnet, address, pod_key=f"{namespace}/{owner}")

    def vm(self, namespace: str, name: str, *, running: bool) -> dict[str, Any]:
        return self.api.create("virtualmachines", {
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": OLD},
            "spec": {"runStrategy": "Always" if running else "Halted",
                     "template": {"metadata": {}, "spec": {"networks": [{"name": "default", "pod": {}}]}}},
            "status": {"printableStatus": "Running" if running else "Stopped"},
        }, namespace=namespace)

    def running_vm(self, namespace: str, name: str, address: str) -> None:
        self.vm(namespace, name, running=True)
        vmi = self.api.create("virtualmachineinstances", {
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": OLD},
            "spec": {"networks": [{"name": "default", "pod": {}}]},
        }, namespace=namespace)
        ref = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": name,
               "uid": vmi["metadata"]["uid"], "controller": True}
        self.pod(namespace, f"virt-launcher-{name}-x7k2p", address, owner=ref, port_owner=name,
                 pod_type="VirtualMachine")

    def stopped_vm(self, namespace: str, name: str, address: str) -> None:
        self.vm(namespace, name, running=False)
        self.address(namespace, name, address, pod_type="VirtualMachine")


def kube_ovn_controller(api: FakeApiServer, nb: OvsdbServer) -> None:
    """What kube-ovn-controller does for a terminating IP CR: drop its LSP, then its finalizer."""
    ports = {p["name"]: p["uuid"] for p in nb.ports()}
    for ip in api.list("ips"):
        if ip["metadata"].get("deletionTimestamp"):
            if ip["metadata"]["name"] in ports:
                nb.delete_ports([ports[ip["metadata"]["name"]]])
            api.remove_finalizers("ips", ip["metadata"]["name"])


def seed_demo(api: FakeApiServer, nb: OvsdbServer) -> Cluster:
    """The sandbox cluster: live pods and VMs, and the leaks the job exists for."""
    c = Cluster(api, nb)
    c.subnet("join", "100.64.0.0/16", "100.64.0.1")
    c.subnet("ovn-default", "10.16.0.0/16", "10.16.0.1",
             status={"v4usingIPs": 9, "v4availableIPs": 65524, "v4usingIPrange": "10.16.0.2-10.16.0.10",
                     "v4availableIPrange": "10.16.0.11-10.16.255.254", "v6usingIPs": 0, "v6availableIPs": 0,
                     "v6usingIPrange": "", "v6availableIPrange": ""})
    c.node("node1", "100.64.0.2")
    c.pod("default", "web-1", "10.16.0.2")
    c.pod("default", "web-2", "10.16.0.3")
    c.running_vm("default", "vm-running", "10.16.0.4")
    c.stopped_vm("default", "vm-stopped", "10.16.0.5")
    # The seed case: a VM created, stopped, then deleted — its IP CR and LSP stay behind.
    c.address("default", "vm-deleted", "10.16.0.6", pod_type="VirtualMachine")
    # A pod deleted while the controller was down.
    c.address("default", "job-7f9c", "10.16.0.7")
    # An LSP whose IP CR is already gone (kube-ovn#5688).
    c.port("old-pod.default", "ovn-default", "10.16.0.8", pod_key="default/old-pod")
    # A StatefulSet scaled from 2 to 1: slot 1 is free, slot 0 lives on.
    c.api.create("statefulsets", {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                  "metadata": {"name": "db", "namespace": "default", "creationTimestamp": OLD},
                                  "spec": {"replicas": 1}}, namespace="default")
    c.ip_cr("db-0.default", "ovn-default", "10.16.0.9", pod_name="db-0", namespace="default",
            pod_type="StatefulSet")
    c.ip_cr("db-1.default", "ovn-default", "10.16.0.10", pod_name="db-1", namespace="default",
            pod_type="StatefulSet")
    # A port owned by another system sharing NB: never touched.
    nb.add_switch("neutron-net-1", {"neutron:network_name": "tenant"})
    nb.add_ports("neutron-net-1", [{"name": "neutron-port-1", "external_ids": {"neutron:device_owner": "compute"},
                                    "addresses": ["fa:16:3e:00:00:01 192.168.0.5"]}])
    return c


# --- the doctor's reverse checks ------------------------------------------------------------


def ago(**delta: float) -> str:
    """An RFC 3339 timestamp that long before now (for deletionTimestamps)."""
    moment = datetime.now(UTC) - timedelta(**delta)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_only(c: Cluster, namespace: str, name: str, address: str, *, subnet: str = "ovn-default",
             owner: dict[str, Any] | None = None, created: str = OLD, allocated: bool = True,
             phase: str = "Running") -> None:
    """Just the Pod as kube-ovn annotated it: no IP CR, no LSP (add them with ``ip_cr`` / ``port``)."""
    annotations = {"ovn.kubernetes.io/allocated": "true", "ovn.kubernetes.io/ip_address": address,
                   "ovn.kubernetes.io/mac_address": mac_for(address),
                   "ovn.kubernetes.io/logical_switch": subnet} if allocated else {}
    c.api.create("pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created,
                     "ownerReferences": [owner] if owner else [], "annotations": annotations},
        "spec": {"nodeName": "node1", "restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": phase},
    }, namespace=namespace)


def terminating(c: Cluster, resource: str, name: str, since: str) -> None:
    """Mark a (finalized) object as being deleted since ``since``, as the apiserver would have."""
    obj = c.api.get(resource, name)
    assert obj is not None, name
    obj["metadata"]["deletionTimestamp"] = since
    obj["metadata"]["deletionGracePeriodSeconds"] = 0
    c.api.put(resource, obj)


def seed_doctor(api: FakeApiServer, nb: OvsdbServer) -> Cluster:
    """The sandbox cluster plus one of each inconsistency ``doctor`` finds beyond leaks and drift."""
    c = seed_demo(api, nb)
    # missing: kube-ovn logs "lsp lost for pod default/web-3" — its IP CR is there, its port is not.
    pod_only(c, "default", "web-3", "10.16.0.11")
    c.ip_cr("web-3.default", "ovn-default", "10.16.0.11", pod_name="web-3", namespace="default")
    # missing: Node node2 is allocated, its IP CR exists, its port on join does not.
    api.create("nodes", {"apiVersion": "v1", "kind": "Node",
                         "metadata": {"name": "node2", "creationTimestamp": OLD,
                                      "annotations": {"ovn.kubernetes.io/allocated": "true"}}})
    c.ip_cr("node-node2", "join", "100.64.0.3", pod_name="node2", namespace="", node="node2")
    # mismatch: the port of web-4 still carries an older address than its IP CR.
    pod_only(c, "default", "web-4", "10.16.0.12")
    c.ip_cr("web-4.default", "ovn-default", "10.16.0.12", pod_name="web-4", namespace="default")
    uuid = c.port("web-4.default", "ovn-default", "10.16.0.12", pod_key="default/web-4")
    nb.set_port(uuid, addresses=[f"{mac_for('10.16.0.12')} 10.16.0.42"])
    # duplicate address: api-1 was handed web-1's address (IP CR and port), months later.
    pod_only(c, "default", "api-1", "10.16.0.2")
    c.ip_cr("api-1.default", "ovn-default", "10.16.0.2", pod_name="api-1", namespace="default",
            created="2026-06-01T00:00:00Z")
    c.port("api-1.default", "ovn-default", "10.16.0.2", pod_key="default/api-1")
    # stuck: an IP CR terminating for three hours (kube-ovn-controller was down when its pod went).
    c.ip_cr("batch-9.default", "ovn-default", "10.16.0.13", pod_name="batch-9", namespace="default")
    terminating(c, "ips", "batch-9.default", ago(hours=3))
    # stuck: Subnet legacy deleted two hours ago, still used by a live pod.
    c.subnet("legacy", "10.20.0.0/24", "10.20.0.1",
             status={"v4usingIPs": 1, "v4availableIPs": 252, "v4usingIPrange": "10.20.0.2",
                     "v4availableIPrange": "10.20.0.3-10.20.0.254", "v6usingIPs": 0, "v6availableIPs": 0,
                     "v6usingIPrange": "", "v6availableIPrange": ""})
    terminating(c, "subnets", "legacy", ago(hours=2))
    c.pod("default", "legacy-app", "10.20.0.2", subnet="legacy")
    return c


def settled_status(using: int, available: int, using_range: str, available_range: str) -> dict[str, Any]:
    """A single-stack IPv4 Subnet status as kube-ovn-controller writes it."""
    return {"v4usingIPs": using, "v4availableIPs": available, "v4usingIPrange": using_range,
            "v4availableIPrange": available_range, "v6usingIPs": 0, "v6availableIPs": 0,
            "v6usingIPrange": "", "v6availableIPrange": ""}


def seed_clean(api: FakeApiServer, nb: OvsdbServer) -> Cluster:
    """A consistent cluster: every owner has its port and IP CR, every Subnet status is right."""
    c = Cluster(api, nb)
    c.subnet("join", "100.64.0.0/16", "100.64.0.1",
             status=settled_status(1, 65532, "100.64.0.2", "100.64.0.3-100.64.255.254"))
    c.subnet("ovn-default", "10.16.0.0/16", "10.16.0.1",
             status=settled_status(5, 65528, "10.16.0.2-10.16.0.5,10.16.0.9",
                                   "10.16.0.6-10.16.0.8,10.16.0.10-10.16.255.254"))
    c.subnet("mac1", "192.168.9.0/24", "192.168.9.1", provider="mac1.default",
             status=settled_status(1, 252, "192.168.9.2", "192.168.9.3-192.168.9.254"))
    c.node("node1", "100.64.0.2")
    c.pod("default", "web-1", "10.16.0.2")
    # web-2 also has an IPAM-only attachment (macvlan with Kube-OVN IPAM): an IP CR, no port.
    c.pod("default", "web-2", "10.16.0.3")
    web2 = api.get("pods", "web-2", "default")
    assert web2 is not None
    web2["metadata"]["annotations"].update({"mac1.default.kubernetes.io/allocated": "true",
                                            "mac1.default.kubernetes.io/ip_address": "192.168.9.2",
                                            "mac1.default.kubernetes.io/logical_switch": "mac1"})
    api.put("pods", web2)
    c.ip_cr("web-2.default.mac1.default", "mac1", "192.168.9.2", pod_name="web-2", namespace="default")
    c.running_vm("default", "vm-running", "10.16.0.4")
    c.stopped_vm("default", "vm-stopped", "10.16.0.5")
    sts = api.create("statefulsets", {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                      "metadata": {"name": "db", "namespace": "default", "creationTimestamp": OLD},
                                      "spec": {"replicas": 1}}, namespace="default")
    c.pod("default", "db-0", "10.16.0.9", pod_type="StatefulSet",
          owner={"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": sts["metadata"]["uid"],
                 "controller": True})
    # Not allocated yet: expects nothing.
    pod_only(c, "default", "pending", "", allocated=False, phase="Pending")
    nb.add_switch("neutron-net-1", {"neutron:network_name": "tenant"})
    nb.add_ports("neutron-net-1", [{"name": "neutron-port-1", "external_ids": {"neutron:device_owner": "compute"},
                                    "addresses": ["fa:16:3e:00:00:01 192.168.0.5"]}])
    return c
