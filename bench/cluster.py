"""A realistic Kube-OVN cluster of a given size, generated deterministically.

``generate(Shape(100_000))`` builds, in memory, what a 100k-pod Kube-OVN cluster holds
and what this job reads of it: Subnets (a tenth dual stack, one NAD attachment
subnet and one IPAM-only macvlan subnet), Nodes with their join ports, Deployment
and StatefulSet pods with full-size manifests (annotations, containers, volumes,
conditions), KubeVirt VMs running (VM, VMI, launcher pod) and stopped (VM only),
host-network and completed pods (no addresses), switch-LB Vips, an IP CR and an LSP
for every address (no LSP for IPAM-only attachments), a router port per switch,
and ``leak_ratio`` of the addresses leaked:

- three quarters with an IP CR and an LSP whose owner is gone: deleted pods,
  VMs stopped then deleted (kube-ovn#5367), StatefulSet slots scaled down;
- one quarter an LSP without an IP CR (kube-ovn#5688).

``seed`` writes it into a :class:`fakeapi.FakeApiServer` (bulk, no copies) and an
:class:`ovsdb.OvsdbServer` (one transaction per few thousand ports). Pod manifests
share their immutable parts (containers, volumes, tolerations) per workload, as
the fake server never changes a stored object in place: 100k pods fit in ~1 GB.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from fakeapi import FakeApiServer
from ovsdb import OvsdbServer, encode_value

JSON = dict[str, Any]

OLD = "2025-06-01T08:00:00Z"
FINALIZER = "kubeovn.io/kube-ovn-controller"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet
_ATTACH_NAD = ("attnet", "default")  # a Kube-OVN NAD: provider attnet.default.ovn, an LSP per attachment
_IPAM_NAD = ("macvlan", "default")  # an IPAM-only NAD: provider macvlan.default, an IP CR and no LSP
_PORT_BATCH = 5000


@dataclass(frozen=True)
class Shape:
    """How big: ``size`` addresses (≈ pods ≈ LSPs ≈ IP CRs); the rest scales with it."""

    size: int
    leak_ratio: float = 0.01
    seed: int = 20250601

    @property
    def subnets(self) -> int:
        return max(4, self.size // 1000)

    @property
    def nodes(self) -> int:
        return max(3, self.size // 100)

    @property
    def namespaces(self) -> int:
        return max(4, self.size // 250)

    @property
    def leaks(self) -> int:
        return round(self.size * self.leak_ratio)


@dataclass
class Cluster:
    """What to seed, and what a correct pass must delete."""

    shape: Shape
    objects: dict[str, list[JSON]] = field(default_factory=dict)  # resource plural -> manifests
    switches: dict[str, list[JSON]] = field(default_factory=dict)  # switch name -> port rows
    leaked_ips: set[str] = field(default_factory=set)  # IP CRs the pass must delete
    leaked_ports: set[str] = field(default_factory=set)  # LSPs without IP CR the pass must delete

    def count(self, resource: str) -> int:
        return len(self.objects.get(resource, ()))

    @property
    def ports(self) -> int:
        return sum(len(rows) for rows in self.switches.values())

    def summary(self) -> str:
        pods = self.objects.get("pods", [])
        running = sum(1 for p in pods if p["status"]["phase"] == "Running" and not p["spec"].get("hostNetwork"))
        return (f"{len(pods)} pods ({running} running with addresses), {self.count('ips')} IP CRs, "
                f"{self.ports} LSPs in {len(self.switches)} switches, {self.count('subnets')} subnets, "
                f"{self.count('nodes')} nodes, {self.count('statefulsets')} StatefulSets, "
                f"{self.count('virtualmachines')} VMs ({self.count('virtualmachineinstances')} running), "
                f"{self.count('vips')} Vips; leaked: {len(self.leaked_ips)} IP CRs + LSPs, "
                f"{len(self.leaked_ports)} LSPs without IP CR")


class _Pool:
    """Sequential addresses of one subnet (after the gateway and the excluded .2-.10)."""

    def __init__(self, index: int, dual: bool) -> None:
        self.v4_base = (10 << 24) | (index << 16)
        self.v6_prefix = f"fd00:10:{index:x}::" if dual else ""
        self.next = 11

    def take(self) -> tuple[str, str, str]:
        n = self.next
        self.next += 1
        v4 = self.v4_base + n
        v4_text = f"{v4 >> 24}.{(v4 >> 16) & 255}.{(v4 >> 8) & 255}.{v4 & 255}"
        v6_text = f"{self.v6_prefix}{n:x}" if self.v6_prefix else ""
        mac = "0a:58:" + ":".join(f"{(v4 >> s) & 255:02x}" for s in (24, 16, 8, 0))
        return v4_text, v6_text, mac


@dataclass
class _Subnet:
    name: str
    pool: _Pool
    cidr: str
    gateway: str
    provider: str = "ovn"
    has_switch: bool = True
    ips: int = 0


class _Builder:
    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)
        self.out = Cluster(shape)
        self.subnets: list[_Subnet] = []
        self.nodes: list[str] = []
        self.statefulsets: list[tuple[str, str, int, str]] = []  # (ns, name, replicas, subnet)
        self._managed_ips: dict[str, list[JSON]] = {}
        self._managed_pods: dict[tuple[Any, ...], list[JSON]] = {}

    # --- helpers ---------------------------------------------------------------

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def suffix(self, n: int = 5) -> str:
        return "".join(self.rng.choices(_ALPHABET, k=n))

    def add(self, resource: str, obj: JSON) -> JSON:
        self.out.objects.setdefault(resource, []).append(obj)
        return obj

    def node(self) -> str:
        return self.nodes[self.rng.randrange(len(self.nodes))]

    # --- infrastructure -----------------------------------------------------------

    def make_subnets(self) -> None:
        names = ["ovn-default"] + [f"subnet-{i:03d}" for i in range(1, self.shape.subnets)]
        for i, name in enumerate(names):
            dual = i % 10 == 5
            self.subnets.append(self.subnet(name, i + 1, dual))
        self.join = self.subnet("join", 200, False, cidr_v4="100.64.0.0/16", gw="100.64.0.1")
        self.attach = self.subnet("attach-net", 201, False, provider=".".join(_ATTACH_NAD) + ".ovn")
        self.ipam_only = self.subnet("macvlan-net", 202, False, provider=".".join(_IPAM_NAD), switch=False)

    def subnet(self, name: str, index: int, dual: bool, *, cidr_v4: str = "", gw: str = "",
               provider: str = "ovn", switch: bool = True) -> _Subnet:
        pool = _Pool(index, dual)
        if cidr_v4:
            pool.v4_base = (100 << 24) | (64 << 16)
        v4_net = f"{pool.v4_base >> 24}.{(pool.v4_base >> 16) & 255}"
        cidr = cidr_v4 or f"{v4_net}.0.0/16"
        gateway = gw or f"{v4_net}.0.1"
        if dual:
            cidr += f",{pool.v6_prefix}/64"
            gateway += f",{pool.v6_prefix}1"
        s = _Subnet(name, pool, cidr, gateway, provider, switch)
        if switch:
            self.out.switches[name] = [{
                "name": f"{name}-ovn-cluster", "type": "router",
                "external_ids": {"vendor": "kube-ovn"}, "options": {"router-port": f"ovn-cluster-{name}"},
                "addresses": ["router"],
            }]
        return s

    def finish_subnets(self) -> None:
        for s in [*self.subnets, self.join, self.attach, self.ipam_only]:
            dual = "," in s.cidr
            exclude = [g for g in s.gateway.split(",")]
            exclude.append(f"{s.cidr.split('.')[0]}.{s.cidr.split('.')[1]}.0.2..{s.cidr.split('.')[0]}."
                           f"{s.cidr.split('.')[1]}.0.10")
            # what the controller stored before the leaks (counts only; ranges left for it to fill)
            status: JSON = {"v4usingIPs": s.ips, "v4availableIPs": 65534 - 10 - s.ips,
                            "v6usingIPs": s.ips if dual else 0, "v6availableIPs": 0,
                            "v4usingIPrange": "", "v4availableIPrange": "", "v6usingIPrange": "",
                            "v6availableIPrange": "",
                            "conditions": [{"type": "Ready", "status": "True", "reason": "ResourceCreated",
                                            "lastUpdateTime": OLD, "lastTransitionTime": OLD}]}
            self.add("subnets", {
                "apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                "metadata": {"name": s.name, "uid": self.uid(), "creationTimestamp": OLD, "generation": 2,
                             "finalizers": [FINALIZER]},
                "spec": {"cidrBlock": s.cidr, "gateway": s.gateway, "excludeIps": exclude,
                         "protocol": "Dual" if dual else "IPv4", "provider": s.provider, "vpc": "ovn-cluster",
                         "default": s.name == "ovn-default", "gatewayType": "distributed",
                         "natOutgoing": s.provider == "ovn", "enableLb": True, "private": False,
                         "gatewayNode": "", "namespaces": []},
                "status": status,
            })

    def make_nodes(self) -> None:
        images = [{"names": [f"docker.io/kubeovn/kube-ovn@sha256:{i:064x}", f"docker.io/kubeovn/kube-ovn:v1.14.{i}"],
                   "sizeBytes": 200_000_000 + i} for i in range(8)]
        conditions = [{"type": t, "status": "False", "lastHeartbeatTime": OLD, "lastTransitionTime": OLD,
                       "reason": f"Kubelet{t}", "message": f"kubelet reports {t}"}
                      for t in ("MemoryPressure", "DiskPressure", "PIDPressure")]
        conditions.append({"type": "Ready", "status": "True", "lastHeartbeatTime": OLD, "lastTransitionTime": OLD,
                           "reason": "KubeletReady", "message": "kubelet is posting ready status"})
        for k in range(self.shape.nodes):
            name = f"worker-{k:04d}"
            self.nodes.append(name)
            v4, _, mac = self.join.pool.take()
            host_ip = f"172.18.{k >> 8}.{k & 255}"
            self.add("nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "uid": self.uid(), "creationTimestamp": OLD,
                             "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/worker": "",
                                        "kube-ovn/role": "worker"},
                             "annotations": {"ovn.kubernetes.io/allocated": "true",
                                             "ovn.kubernetes.io/ip_address": v4,
                                             "ovn.kubernetes.io/mac_address": mac,
                                             "ovn.kubernetes.io/cidr": "100.64.0.0/16",
                                             "ovn.kubernetes.io/gateway": "100.64.0.1",
                                             "ovn.kubernetes.io/logical_switch": "join",
                                             "ovn.kubernetes.io/port_name": f"node-{name}",
                                             "ovn.kubernetes.io/chassis": self.uid()}},
                "spec": {"podCIDR": f"10.244.{k & 255}.0/24", "providerID": f"kind://docker/kind/{name}"},
                "status": {"addresses": [{"type": "InternalIP", "address": host_ip},
                                         {"type": "Hostname", "address": name}],
                           "capacity": {"cpu": "32", "memory": "131900472Ki", "pods": "250"},
                           "allocatable": {"cpu": "32", "memory": "131798072Ki", "pods": "250"},
                           "conditions": conditions, "images": images,
                           "nodeInfo": {"kubeletVersion": "v1.33.1", "containerRuntimeVersion": "containerd://2.1",
                                        "kernelVersion": "6.1.0-31-amd64", "osImage": "Debian GNU/Linux 12",
                                        "architecture": "amd64", "operatingSystem": "linux",
                                        "machineID": self.uid(), "systemUUID": self.uid(), "bootID": self.uid()}},
            })
            self.ip_cr(f"node-{name}", self.join, (v4, "", mac), pod_name=name, namespace="", node=name)
            self.port(f"node-{name}", self.join, (v4, "", mac), pod_key=None)

    # --- what Kube-OVN writes per address --------------------------------------------

    def ip_cr(self, name: str, subnet: _Subnet, addr: tuple[str, str, str], *, pod_name: str, namespace: str,
              node: str, pod_type: str = "") -> None:
        v4, v6, mac = addr
        subnet.ips += 1
        self.add("ips", {
            "apiVersion": "kubeovn.io/v1", "kind": "IP",
            "metadata": {"name": name, "uid": self.uid(), "creationTimestamp": OLD, "generation": 1,
                         "finalizers": [FINALIZER],
                         "labels": {"ovn.kubernetes.io/subnet": subnet.name, "ovn.kubernetes.io/node-name": node,
                                    subnet.name: ""},
                         "managedFields": self.managed_ip(subnet.name)},
            "spec": {"podName": pod_name, "namespace": namespace, "subnet": subnet.name, "attachSubnets": [],
                     "nodeName": node, "ipAddress": f"{v4},{v6}" if v6 else v4, "v4IpAddress": v4,
                     "v6IpAddress": v6, "macAddress": mac, "containerID": f"{self.rng.getrandbits(256):064x}",
                     "podType": pod_type},
        })

    def managed_ip(self, subnet: str) -> list[JSON]:
        """``metadata.managedFields`` of an IP CR as kube-ovn-controller creates it (one per subnet: shared)."""
        found = self._managed_ips.get(subnet)
        if found is None:
            spec = {f"f:{k}": {} for k in ("attachSubnets", "containerID", "ipAddress", "macAddress", "namespace",
                                            "nodeName", "podName", "podType", "subnet", "v4IpAddress", "v6IpAddress")}
            found = self._managed_ips[subnet] = [{
                "apiVersion": "kubeovn.io/v1", "fieldsType": "FieldsV1", "manager": "kube-ovn-controller",
                "operation": "Update", "time": OLD, "fieldsV1": {
                    "f:metadata": {"f:finalizers": {".": {}, f'v:"{FINALIZER}"': {}},
                                   "f:labels": {".": {}, f"f:{subnet}": {}, "f:ovn.kubernetes.io/node-name": {},
                                                "f:ovn.kubernetes.io/subnet": {}}},
                    "f:spec": {".": {}, **spec}}}]
        return found

    def port(self, name: str, subnet: _Subnet, addr: tuple[str, str, str], *, pod_key: str | None) -> None:
        v4, v6, mac = addr
        ips = f"{v4} {v6}" if v6 else v4
        ext = {"vendor": "kube-ovn", "ls": subnet.name, "associated_sg_default-securitygroup": "false",
               "security_groups": ""}
        if pod_key is not None:
            ext["pod"] = pod_key
        self.out.switches[subnet.name].append({"name": name, "type": "", "external_ids": ext,
                                               "addresses": [f"{mac} {ips}"], "port_security": [f"{mac} {ips}"]})

    def address(self, name: str, subnet: _Subnet, *, owner: str, namespace: str, node: str,
                pod_type: str = "", lsp: bool = True) -> tuple[str, str, str]:
        addr = subnet.pool.take()
        self.ip_cr(name, subnet, addr, pod_name=owner, namespace=namespace, node=node, pod_type=pod_type)
        if lsp:
            self.port(name, subnet, addr, pod_key=f"{namespace}/{owner}")
        return addr

    # --- owners ---------------------------------------------------------------------------

    def template(self, app: str, image: str) -> JSON:
        """The pod spec a workload stamps out: shared by its pods."""
        return {
            "containers": [{
                "name": app, "image": image, "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "APP", "value": app}, {"name": "LOG_LEVEL", "value": "info"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                        "fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"cpu": "1", "memory": "512Mi"},
                              "requests": {"cpu": "100m", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                                   "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                                   "failureThreshold": 3},
                "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                              "fieldPath": "metadata.namespace"}}]}},
            ]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "securityContext": {},
            "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        }

    _CONDITIONS = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": OLD}
                   for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]

    def managed_pod(self, spec: JSON, labels: JSON, annotations: JSON, owner: JSON | None, pod_ip: str) -> list[JSON]:
        """``metadata.managedFields`` as kube-apiserver returns them in lists: the controller that made the pod
        (its metadata and spec), kube-ovn-controller (its annotations), the kubelet (the status subresource).
        Shared by the pods of a workload with the same annotations (the first one's pod IP in it: the size
        is what matters), as the fake server never changes a stored object in place."""
        key = (id(spec), tuple(labels), tuple(annotations), owner["uid"] if owner else None)
        found = self._managed_pods.get(key)
        if found is None:
            found = self._managed_pods[key] = self._managed_pod(spec, labels, annotations, owner, pod_ip)
        return found

    def _managed_pod(self, spec: JSON, labels: JSON, annotations: JSON, owner: JSON | None,
                     pod_ip: str) -> list[JSON]:
        def keys(obj: JSON) -> JSON:
            return {".": {}, **{f"f:{k}": {} for k in obj}}

        def container(c: JSON) -> JSON:
            out: JSON = {".": {}, **{f"f:{k}": {} for k in c if k not in ("env", "ports", "resources",
                                                                          "readinessProbe", "volumeMounts")}}
            out["f:env"] = {".": {}, **{f'k:{{"name":"{e["name"]}"}}': {".": {}, "f:name": {}, "f:value": {}}
                                        for e in c.get("env", ())}}
            out["f:ports"] = {".": {}, **{f'k:{{"containerPort":{p["containerPort"]},"protocol":"TCP"}}':
                                          {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}
                                          for p in c.get("ports", ())}}
            out["f:resources"] = {"f:limits": {".": {}, "f:cpu": {}, "f:memory": {}},
                                  "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}}
            return out

        maker: JSON = {"f:metadata": {"f:generateName": {}, "f:labels": keys(labels)},
                       "f:spec": {"f:containers": {f'k:{{"name":"{c["name"]}"}}': container(c)
                                                   for c in spec["containers"]},
                                  **{f"f:{k}": {} for k in spec if k not in ("containers", "volumes", "nodeName")},
                                  "f:volumes": {".": {}, **{f'k:{{"name":"{v["name"]}"}}': {".": {}, "f:name": {},
                                                                                             "f:projected": {}}
                                                            for v in spec.get("volumes", ())}}}}
        if owner is not None:
            maker["f:metadata"]["f:ownerReferences"] = {".": {}, f'k:{{"uid":"{owner["uid"]}"}}': {}}
        status = {"f:conditions": {f'k:{{"type":"{c["type"]}"}}': {".": {}, "f:lastTransitionTime": {},
                                                                   "f:status": {}, "f:type": {}}
                                   for c in self._CONDITIONS[1:]},
                  "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {},
                  "f:podIPs": {".": {}, f'k:{{"ip":"{pod_ip}"}}': {".": {}, "f:ip": {}}}, "f:startTime": {}}
        entry = {"apiVersion": "v1", "fieldsType": "FieldsV1", "operation": "Update", "time": OLD}
        out = [{**entry, "manager": "kube-controller-manager", "fieldsV1": maker}]
        if annotations:
            out.append({**entry, "manager": "kube-ovn-controller",
                        "fieldsV1": {"f:metadata": {"f:annotations": keys(annotations)}}})
        out.append({**entry, "manager": "kubelet", "fieldsV1": {"f:status": status}, "subresource": "status"})
        return out

    def pod(self, namespace: str, name: str, spec: JSON, *, labels: JSON, owner: JSON | None,
            nets: list[tuple[str, _Subnet, tuple[str, str, str]]], node: str, phase: str = "Running",
            extra_annotations: JSON | None = None) -> JSON:
        annotations: JSON = {"kubectl.kubernetes.io/restartedAt": OLD, **(extra_annotations or {})}
        for provider, subnet, (v4, v6, mac) in nets:
            cidr, gw = subnet.cidr, subnet.gateway
            annotations.update({
                f"{provider}.kubernetes.io/allocated": "true",
                f"{provider}.kubernetes.io/ip_address": f"{v4},{v6}" if v6 else v4,
                f"{provider}.kubernetes.io/mac_address": mac,
                f"{provider}.kubernetes.io/cidr": cidr,
                f"{provider}.kubernetes.io/gateway": gw,
                f"{provider}.kubernetes.io/logical_switch": subnet.name,
                f"{provider}.kubernetes.io/logical_router": "ovn-cluster",
                f"{provider}.kubernetes.io/pod_nic_type": "veth-pair",
                f"{provider}.kubernetes.io/routed": "true",
            })
        pod_ip = nets[0][2][0] if nets else f"172.18.0.{self.rng.randrange(1, 250)}"
        return self.add("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": self.uid(), "creationTimestamp": OLD,
                         "generateName": name[: name.rfind("-") + 1], "resourceVersion": "1",
                         "labels": labels, "annotations": annotations,
                         "ownerReferences": [owner] if owner else [],
                         "managedFields": self.managed_pod(spec, labels, annotations, owner, pod_ip)},
            "spec": {**spec, "nodeName": node},
            "status": {"phase": phase, "conditions": self._CONDITIONS, "hostIP": "172.18.0.2",
                       "hostIPs": [{"ip": "172.18.0.2"}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
                       "startTime": OLD, "qosClass": "Burstable",
                       "containerStatuses": [{
                           "name": spec["containers"][0]["name"], "ready": phase == "Running", "restartCount": 0,
                           "image": spec["containers"][0]["image"], "started": phase == "Running",
                           "imageID": "docker.io/library/app@sha256:" + "ab" * 32,
                           "containerID": f"containerd://{self.rng.getrandbits(256):064x}",
                           "state": {"running": {"startedAt": OLD}} if phase == "Running" else
                           {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": OLD,
                                           "finishedAt": OLD}}}]},
        })

    def deployment(self, ns: str, subnet: _Subnet, idx: int, replicas: int) -> int:
        app = f"app-{idx}"
        rs = f"{app}-{self.suffix(10)}"
        spec = self.template(app, f"registry.example.com/{ns}/{app}:1.{idx % 7}")
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": self.uid(),
                 "controller": True, "blockOwnerDeletion": True}
        labels = {"app": app, "pod-template-hash": rs.rsplit("-", 1)[1]}
        attach = self.rng.random()
        made = 0
        for _ in range(replicas):
            name = f"{rs}-{self.suffix()}"
            node = self.node()
            addr = self.address(f"{name}.{ns}", subnet, owner=name, namespace=ns, node=node)
            nets = [("ovn", subnet, addr)]
            extra: JSON = {}
            made += 1
            if attach < 0.07:  # a second interface on a Kube-OVN NAD: its own IP CR and LSP
                provider = ".".join(_ATTACH_NAD) + ".ovn"
                nets.append((provider, self.attach,
                             self.address(f"{name}.{ns}.{provider}", self.attach, owner=name, namespace=ns,
                                          node=node)))
                extra["k8s.v1.cni.cncf.io/networks"] = "/".join(reversed(_ATTACH_NAD))
                made += 1
            elif attach < 0.09:  # macvlan with Kube-OVN IPAM: an IP CR, no LSP
                provider = ".".join(_IPAM_NAD)
                nets.append((provider, self.ipam_only,
                             self.address(f"{name}.{ns}.{provider}", self.ipam_only, owner=name, namespace=ns,
                                          node=node, lsp=False)))
                extra["k8s.v1.cni.cncf.io/networks"] = "/".join(reversed(_IPAM_NAD))
                made += 1
            self.pod(ns, name, spec, labels=labels, owner=owner, nets=nets, node=node, extra_annotations=extra)
        return made

    def statefulset(self, ns: str, subnet: _Subnet, idx: int, replicas: int) -> int:
        name = f"db-{idx}"
        spec = self.template(name, f"registry.example.com/{ns}/db:15.{idx % 5}")
        sts = self.add("statefulsets", {
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": ns, "uid": self.uid(), "creationTimestamp": OLD, "generation": 1,
                         "labels": {"app": name}},
            "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "OrderedReady",
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                     "revisionHistoryLimit": 10,
                     "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}},
            "status": {"replicas": replicas, "readyReplicas": replicas, "currentReplicas": replicas,
                       "updatedReplicas": replicas, "availableReplicas": replicas, "observedGeneration": 1,
                       "currentRevision": f"{name}-{self.suffix(10)}", "collisionCount": 0},
        })
        owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": sts["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}
        for i in range(replicas):
            pod, node = f"{name}-{i}", self.node()
            addr = self.address(f"{pod}.{ns}", subnet, owner=pod, namespace=ns, node=node, pod_type="StatefulSet")
            self.pod(ns, pod, spec, labels={"app": name, "statefulset.kubernetes.io/pod-name": pod}, owner=owner,
                     nets=[("ovn", subnet, addr)], node=node)
        self.statefulsets.append((ns, name, replicas, subnet.name))
        return replicas

    def vm(self, ns: str, subnet: _Subnet, idx: int, *, running: bool, deleted: bool = False) -> int:
        name = f"vm-{idx}"
        multus = self.rng.random() < 0.2 and not deleted
        networks: list[JSON] = [{"name": "default", "pod": {}}]
        interfaces: list[JSON] = [{"name": "default", "bridge": {}}]
        if multus:
            networks.append({"name": "att", "multus": {"networkName": "/".join(reversed(_ATTACH_NAD))}})
            interfaces.append({"name": "att", "bridge": {}})
        domain = {"cpu": {"cores": 2}, "memory": {"guest": "4Gi"}, "resources": {"requests": {"memory": "4Gi"}},
                  "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}], "interfaces": interfaces}}
        vmi_spec = {"domain": domain, "networks": networks,
                    "volumes": [{"name": "root", "dataVolume": {"name": f"{name}-root"}}]}
        node = self.node()
        addr = self.address(f"{name}.{ns}", subnet, owner=name, namespace=ns, node=node, pod_type="VirtualMachine")
        nets = [("ovn", subnet, addr)]
        made = 1
        if multus:
            provider = ".".join(_ATTACH_NAD) + ".ovn"
            nets.append((provider, self.attach, self.address(f"{name}.{ns}.{provider}", self.attach, owner=name,
                                                             namespace=ns, node=node, pod_type="VirtualMachine")))
            made += 1
        if deleted:  # stopped, then deleted: nothing of it is left but its addresses
            return made
        self.add("virtualmachines", {
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": ns, "uid": self.uid(), "creationTimestamp": OLD, "generation": 1,
                         "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"],
                         "annotations": {"kubevirt.io/latest-observed-api-version": "v1",
                                         "kubevirt.io/storage-observed-api-version": "v1"}},
            "spec": {"runStrategy": "Always" if running else "Halted",
                     "template": {"metadata": {"labels": {"kubevirt.io/vm": name}}, "spec": vmi_spec}},
            "status": {"printableStatus": "Running" if running else "Stopped", "ready": running,
                       "created": running, "desiredGeneration": 1, "observedGeneration": 1},
        })
        if not running:
            return made
        vmi = self.add("virtualmachineinstances", {
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": ns, "uid": self.uid(), "creationTimestamp": OLD,
                         "generation": 4, "labels": {"kubevirt.io/vm": name},
                         "finalizers": ["kubevirt.io/virtualMachineControllerFinalize",
                                        "foregroundDeleteVirtualMachine"],
                         "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                                              "name": name, "uid": self.uid(), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": vmi_spec,
            "status": {"phase": "Running", "nodeName": node,
                       "interfaces": [{"name": "default", "ipAddress": addr[0], "mac": addr[2],
                                       "interfaceName": "eth0", "infoSource": "domain, guest-agent"}]},
        })
        owner = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": name,
                 "uid": vmi["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        spec = self.template("compute", "quay.io/kubevirt/virt-launcher:v1.5.0")
        extra = {"k8s.v1.cni.cncf.io/networks": "/".join(reversed(_ATTACH_NAD))} if multus else {}
        self.pod(ns, f"virt-launcher-{name}-{self.suffix()}", spec, owner=owner, nets=nets, node=node,
                 extra_annotations=extra,
                 labels={"kubevirt.io": "virt-launcher", "vm.kubevirt.io/name": name,
                         "vmi.kubevirt.io/id": name, "kubevirt.io/created-by": vmi["metadata"]["uid"]})
        return made

    def no_address_pods(self) -> None:
        """Host-network DaemonSet pods (two per node) and completed Job pods: they own nothing."""
        spec = {**self.template("kube-proxy", "registry.k8s.io/kube-proxy:v1.33.1"), "hostNetwork": True}
        for node in self.nodes:
            for ds in ("kube-proxy", "kube-ovn-cni"):
                owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds, "uid": self.uid(),
                         "controller": True}
                self.pod("kube-system", f"{ds}-{self.suffix()}", spec, labels={"app": ds}, owner=owner, nets=[],
                         node=node)
        job = {**self.template("report", "registry.example.com/batch/report:2"), "restartPolicy": "Never"}
        for k in range(max(1, self.shape.size // 15)):
            ns = f"team-{k % self.shape.namespaces:04d}"
            self.pod(ns, f"report-{k}-{self.suffix()}", job, labels={"job-name": f"report-{k}"}, owner=None,
                     nets=[], node=self.node(), phase="Succeeded")

    def vips(self) -> None:
        for k in range(self.shape.size // 5000 + 1):
            subnet = self.subnets[k % len(self.subnets)]
            ns = f"team-{k % self.shape.namespaces:04d}"
            v4, _, mac = subnet.pool.take()
            name = f"lb-vip-{k}"
            self.add("vips", {
                "apiVersion": "kubeovn.io/v1", "kind": "Vip",
                "metadata": {"name": name, "uid": self.uid(), "creationTimestamp": OLD, "generation": 1,
                             "labels": {"ovn.kubernetes.io/subnet": subnet.name,
                                        "ovn.kubernetes.io/vpc": "ovn-cluster"},
                             "finalizers": [FINALIZER]},
                "spec": {"namespace": ns, "subnet": subnet.name, "type": "switch_lb_vip", "v4ip": v4},
                "status": {"v4ip": v4, "mac": mac, "pv4ip": "", "ready": True},
            })
            self.port(f"{name}.{ns}", subnet, (v4, "", mac), pod_key=None)

    # --- leaks -----------------------------------------------------------------------------------

    def leaks(self) -> None:
        total = self.shape.leaks
        port_only = total // 4
        ip_leaks = total - port_only
        kinds = ["pod"] * 4 + ["vm"] * 3 + (["sts"] * 3 if self.statefulsets else ["pod"] * 3)
        for k in range(ip_leaks):
            kind = kinds[k % len(kinds)]
            ns = f"team-{self.rng.randrange(self.shape.namespaces):04d}"
            subnet = self.subnets[self.rng.randrange(len(self.subnets))]
            if kind == "pod":  # deleted while kube-ovn-controller was down
                owner = f"gone-{k}-{self.suffix(10)}-{self.suffix()}"
                pod_type = ""
            elif kind == "vm":  # the seed case: stopped, then deleted
                owner = f"vm-gone-{k}"
                pod_type = "VirtualMachine"
            else:  # a StatefulSet scaled down: the slot's IP CR stays (ordinal >= replicas)
                ns, sts, replicas, subnet_name = self.statefulsets[self.rng.randrange(len(self.statefulsets))]
                subnet = next(s for s in self.subnets if s.name == subnet_name)
                owner = f"{sts}-{replicas + k}"
                pod_type = "StatefulSet"
            name = f"{owner}.{ns}"
            self.address(name, subnet, owner=owner, namespace=ns, node=self.node(), pod_type=pod_type)
            self.out.leaked_ips.add(name)
        for k in range(port_only):  # an LSP whose IP CR is already gone (kube-ovn#5688)
            ns = f"team-{self.rng.randrange(self.shape.namespaces):04d}"
            subnet = self.subnets[self.rng.randrange(len(self.subnets))]
            owner = f"orphan-{k}-{self.suffix(10)}-{self.suffix()}"
            self.port(f"{owner}.{ns}", subnet, subnet.pool.take(), pod_key=f"{ns}/{owner}")
            self.out.leaked_ports.add(f"{owner}.{ns}")

    # --- the whole cluster ------------------------------------------------------------------

    def build(self) -> Cluster:
        self.make_subnets()
        self.make_nodes()
        made = idx = 0
        budget = self.shape.size - self.shape.nodes - self.shape.leaks - (self.shape.size // 5000 + 1)
        while made < budget:
            ns = f"team-{idx % self.shape.namespaces:04d}"
            subnet = self.subnets[(idx % self.shape.namespaces) % len(self.subnets)]
            r = self.rng.random()
            if r < 0.78:
                made += self.deployment(ns, subnet, idx, self.rng.choice((1, 2, 3, 3, 5, 8)))
            elif r < 0.88:
                made += self.statefulset(ns, subnet, idx, self.rng.choice((1, 3, 3, 5)))
            elif r < 0.95:
                made += self.vm(ns, subnet, idx, running=True)
            else:
                made += self.vm(ns, subnet, idx, running=False)
            idx += 1
        self.no_address_pods()
        self.vips()
        self.leaks()
        self.finish_subnets()
        return self.out


def generate(shape: Shape) -> Cluster:
    return _Builder(shape).build()


def seed(cluster: Cluster, api: FakeApiServer, nb: OvsdbServer) -> None:
    """Write the cluster into the fake API server (bulk) and ovsdb-server (big transactions)."""
    for resource, objs in cluster.objects.items():
        api.seed(resource, objs)
    for name, rows in cluster.switches.items():
        nb.add_switch(name, {"vendor": "kube-ovn", "logical_switch": name})
        for start in range(0, len(rows), _PORT_BATCH):
            chunk = rows[start : start + _PORT_BATCH]
            ops: list[JSON] = [{"op": "insert", "table": "Logical_Switch_Port", "uuid-name": f"p{i}",
                                "row": {k: encode_value(v) for k, v in row.items()}} for i, row in enumerate(chunk)]
            refs = ["set", [["named-uuid", f"p{i}"] for i in range(len(chunk))]]
            ops.append({"op": "mutate", "table": "Logical_Switch", "where": [["name", "==", name]],
                        "mutations": [["ports", "insert", refs]]})
            nb.transact(ops)
