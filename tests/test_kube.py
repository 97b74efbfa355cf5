"""The Kubernetes adapter: pure parsing and error translation, then against the wire-level fake API server."""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from fakeapi import FakeApiServer
from kube_ovn_gc import kube
from kube_ovn_gc.errors import ConfigError, ConflictError, FatalError, NotFoundError, TransientError
from kube_ovn_gc.model import STATUS_FIELDS, KubevirtState, OwnerRef, PodNetwork
from kube_ovn_gc.retry import RetryPolicy
from kube_ovn_gc.settings import KubeSettings

UTC = dt.UTC


def meta(name: str, namespace: str = "", **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "resourceVersion": "7"}
    if namespace:
        m["namespace"] = namespace
    m.update(extra)
    return m


def ip_obj(name: str, spec: Any = None, labels: dict[str, str] | None = None, **meta_extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "kubeovn.io/v1", "kind": "IP", "metadata": meta(name, **meta_extra)}
    if labels is not None:
        obj["metadata"]["labels"] = labels
    if spec is not None:
        obj["spec"] = spec
    return obj


# --- parsing ------------------------------------------------------------------


class TestParseIp:
    def test_all_fields(self) -> None:
        ip = kube.parse_ip(
            ip_obj(
                "web-0.default",
                {
                    "podName": "web-0",
                    "namespace": "default",
                    "subnet": "ovn-default",
                    "attachSubnets": ["a", "b"],
                    "nodeName": "node1",
                    "ipAddress": "10.16.0.5,fd00::5",
                    "v4IpAddress": "10.16.0.5",
                    "v6IpAddress": "fd00::5",
                    "macAddress": "00:00:00:aa:bb:cc",
                    "containerID": "abc",
                    "podType": "StatefulSet",
                },
                labels={"ovn.kubernetes.io/subnet": "ovn-default"},
                creationTimestamp="2024-05-01T10:00:00Z",
                finalizers=["kubeovn.io/kube-ovn-controller"],
            )
        )
        assert ip.name == "web-0.default"
        assert (ip.pod_name, ip.namespace, ip.subnet, ip.node_name) == ("web-0", "default", "ovn-default", "node1")
        assert ip.attach_subnets == ("a", "b")
        assert (ip.v4, ip.v6, ip.mac, ip.pod_type) == ("10.16.0.5", "fd00::5", "00:00:00:aa:bb:cc", "StatefulSet")
        assert ip.reserved is False
        assert ip.meta.uid == "uid-web-0.default" and ip.meta.resource_version == "7"
        assert ip.meta.creation == dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
        assert ip.meta.deletion is None
        assert ip.meta.finalizers == ("kubeovn.io/kube-ovn-controller",)

    @pytest.mark.parametrize(
        ("joined", "v4", "v6"),
        [
            ("10.16.0.9", "10.16.0.9", ""),
            ("fd00::9", "", "fd00::9"),
            ("10.16.0.9,fd00::9", "10.16.0.9", "fd00::9"),
            ("fd00::9, 10.16.0.9", "10.16.0.9", "fd00::9"),
            ("", "", ""),
        ],
    )
    def test_ip_address_split_by_family(self, joined: str, v4: str, v6: str) -> None:
        ip = kube.parse_ip(ip_obj("x.ns", {"subnet": "s", "ipAddress": joined}))
        assert (ip.v4, ip.v6) == (v4, v6)

    def test_family_fields_win_and_missing_family_falls_back(self) -> None:
        ip = kube.parse_ip(ip_obj("x.ns", {"subnet": "s", "v4IpAddress": "10.0.0.1", "ipAddress": "10.0.0.9,fd00::9"}))
        assert (ip.v4, ip.v6) == ("10.0.0.1", "fd00::9")

    def test_reserved_label(self) -> None:
        labels = {"ovn.kubernetes.io/ip_reserved": "true"}
        assert kube.parse_ip(ip_obj("x.ns", {"subnet": "s"}, labels=labels)).reserved is True
        labels = {"ovn.kubernetes.io/ip_reserved": ""}
        assert kube.parse_ip(ip_obj("x.ns", {"subnet": "s"}, labels=labels)).reserved is False

    def test_timestamps_are_aware_utc(self) -> None:
        ip = kube.parse_ip(
            ip_obj(
                "x.ns",
                {"subnet": "s"},
                creationTimestamp="2024-05-01T12:00:00+02:00",
                deletionTimestamp="2024-05-01T10:00:01.5Z",
            )
        )
        assert ip.meta.creation == dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
        assert ip.meta.creation is not None and ip.meta.creation.utcoffset() == dt.timedelta(0)
        assert ip.meta.deletion == dt.datetime(2024, 5, 1, 10, 0, 1, 500000, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("obj", "why"),
        [
            (ip_obj("x.ns"), "spec"),
            (ip_obj("x.ns", ["not", "a", "dict"]), "spec"),
            (ip_obj("x.ns", {"podName": "x"}), "spec.subnet"),
            (ip_obj("x.ns", {"subnet": "s", "v4IpAddress": "10.0.0.300"}), "bad address"),
            (ip_obj("x.ns", {"subnet": "s", "v4IpAddress": "fd00::1"}), "not an IPv4"),
            (ip_obj("x.ns", {"subnet": "s", "ipAddress": "10.0.0.1,10.0.0.2"}), "two IPv4"),
            (ip_obj("x.ns", {"subnet": "s", "ipAddress": "garbage"}), "bad address"),
            (ip_obj("x.ns", {"subnet": "s", "attachSubnets": "a"}), "attachSubnets"),
            (ip_obj("x.ns", {"subnet": 5}), "spec.subnet"),
            (ip_obj("x.ns", {"subnet": "s"}, creationTimestamp="yesterday"), "timestamp"),
            ({"kind": "IP", "spec": {"subnet": "s"}}, "metadata.name"),
            ("not an object", "not a JSON object"),
        ],
    )
    def test_unparsable(self, obj: Any, why: str) -> None:
        with pytest.raises(kube.ParseError, match=why):
            kube.parse_ip(obj)


def test_parse_meta_owner_references() -> None:
    m = kube.parse_meta(
        {
            "metadata": meta(
                "virt-launcher-vm1-abcde",
                "ns1",
                ownerReferences=[
                    {
                        "apiVersion": "kubevirt.io/v1",
                        "kind": "VirtualMachineInstance",
                        "name": "vm1",
                        "uid": "u1",
                        "controller": True,
                        "blockOwnerDeletion": True,
                    },
                    {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u2"},
                ],
            )
        }
    )
    assert m.key == "ns1/virt-launcher-vm1-abcde"
    assert m.owners == (
        OwnerRef("VirtualMachineInstance", "vm1", "u1", "kubevirt.io/v1", True),
        OwnerRef("Node", "n1", "u2", "v1", False),
    )


def test_parse_subnet_status_rendering() -> None:
    subnet = kube.parse_subnet(
        {
            "metadata": meta("net1"),
            "spec": {
                "cidrBlock": "10.16.0.0/16,fd00::/64",
                "protocol": "Dual",
                "gateway": "10.16.0.1,fd00::1",
                "excludeIps": ["10.16.0.1", "10.16.0.10..10.16.0.20"],
                "provider": "ovn",
            },
            "status": {
                "v4availableIPs": 65500,
                "v4usingIPs": 10.0,
                "v4availableIPrange": "10.16.0.2-10.16.255.254",
                "v6usingIPs": 0,
                "conditions": [{"type": "Ready"}],
            },
        }
    )
    assert subnet.cidr == "10.16.0.0/16,fd00::/64"
    assert (subnet.protocol, subnet.gateway, subnet.provider) == ("Dual", "10.16.0.1,fd00::1", "ovn")
    assert subnet.exclude_ips == ("10.16.0.1", "10.16.0.10..10.16.0.20")
    assert [k for k, _ in subnet.status] == list(STATUS_FIELDS)
    assert subnet.status_value("v4availableIPs") == "65500"
    assert subnet.status_value("v4usingIPs") == "10.0"
    assert subnet.status_value("v4availableIPrange") == "10.16.0.2-10.16.255.254"
    assert subnet.status_value("v6usingIPs") == "0"
    assert subnet.status_value("v4usingIPrange") == ""
    assert subnet.meta.resource_version == "7"


def test_parse_subnet_reads_which_addresses_of_its_own_it_wants() -> None:
    """spec.enableMulticastSnoop / spec.u2oInterconnection (json tags of SubnetSpec, pkg/apis/kubeovn/v1:
    types.go v1.12.0-v1.13.0, subnet.go v1.14.0-v1.16.0): the doctor's remedies for the querier / U2O address."""
    def parsed(**spec: object) -> tuple[bool, bool]:
        s = kube.parse_subnet({"metadata": meta("s1"), "spec": {"cidrBlock": "10.40.0.0/24", **spec}})
        return s.multicast_snoop, s.u2o_interconnection

    assert parsed() == (False, False)
    assert parsed(enableMulticastSnoop=True, u2oInterconnection=True) == (True, True)
    assert parsed(enableMulticastSnoop="true", u2oInterconnection=1) == (False, False)  # not what the CRD allows


def test_parse_pod() -> None:
    pod = kube.parse_pod(
        {
            "metadata": meta(
                "web-0",
                "default",
                deletionTimestamp="2024-05-01T10:00:00Z",
                deletionGracePeriodSeconds=30,
                annotations={
                    "ovn.kubernetes.io/allocated": "true",
                    "ovn.kubernetes.io/ip_address": "10.16.0.5",
                    "ovn.kubernetes.io/mac_address": "00:00:00:01:02:03",
                    "ovn.kubernetes.io/logical_switch": "ovn-default",
                    "attach.ns1.ovn.kubernetes.io/allocated": "true",
                    "attach.ns1.ovn.kubernetes.io/ip_address": "172.17.0.4",
                    "attach.ns1.ovn.kubernetes.io/logical_switch": "attach-subnet",
                    "macvlan.ns1.kubernetes.io/allocated": "false",
                    "k8s.v1.cni.cncf.io/networks": "ns1/attach",
                },
                ownerReferences=[{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "s1"}],
            ),
            "spec": {"restartPolicy": "Always", "hostNetwork": False, "nodeName": "node1"},
            "status": {"phase": "Failed", "reason": "Evicted"},
        }
    )
    assert (pod.phase, pod.reason, pod.restart_policy) == ("Failed", "Evicted", "Always")
    assert pod.host_network is False
    assert pod.grace_period == 30
    assert pod.meta.resource_version == ""  # no rule reads a pod's: not kept
    assert pod.meta.deletion == dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert pod.meta.owners == (OwnerRef("StatefulSet", "web", "s1", "apps/v1", False),)
    assert pod.networks == (
        PodNetwork("attach.ns1.ovn", "attach-subnet"),
        PodNetwork("ovn", "ovn-default"),
    )


def test_parse_pod_minimal_and_host_network() -> None:
    pod = kube.parse_pod({"metadata": meta("p", "ns"), "spec": {"hostNetwork": True}})
    assert (pod.phase, pod.reason, pod.restart_policy) == ("", "", "")
    assert pod.host_network is True and pod.grace_period is None and pod.networks == ()


def test_parse_pod_bad_annotations() -> None:
    with pytest.raises(kube.ParseError, match="annotations"):
        kube.parse_pod({"metadata": meta("p", "ns", annotations={"a": 1})})


def test_parse_node() -> None:
    node = kube.parse_node({"metadata": meta("node1")})
    assert (node.name, node.uid) == ("node1", "uid-node1")


@pytest.mark.parametrize(
    ("spec", "replicas", "start"),
    [({}, 1, 0), ({"replicas": 0}, 0, 0), ({"replicas": 3, "ordinals": {"start": 5}}, 3, 5)],
)
def test_parse_statefulset(spec: dict[str, Any], replicas: int, start: int) -> None:
    sts = kube.parse_statefulset({"metadata": meta("web", "default"), "spec": spec})
    assert (sts.replicas, sts.ordinals_start) == (replicas, start)


def test_parse_statefulset_bad_replicas() -> None:
    with pytest.raises(kube.ParseError, match="replicas"):
        kube.parse_statefulset({"metadata": meta("web", "default"), "spec": {"replicas": "3"}})


def test_parse_vm_and_vmi() -> None:
    networks = [
        {"name": "default", "pod": {}},
        {"name": "a", "multus": {"networkName": "ns1/attach", "default": True}},
        {"name": "b", "multus": {"networkName": "other"}},
    ]
    vm = kube.parse_vm(
        {
            "metadata": meta("vm1", "ns1"),
            "spec": {
                "runStrategy": "Halted",
                "template": {
                    "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": "ns1/attach, other"}},
                    "spec": {"networks": networks},
                },
            },
        }
    )
    assert vm.kind == "VirtualMachine" and vm.meta.key == "ns1/vm1"
    assert vm.multus_networks == ("ns1/attach, other",)
    assert vm.spec_networks == (("ns1/attach", True), ("other", False))

    vmi = kube.parse_vmi({"metadata": meta("vm2", "ns1"), "spec": {"networks": networks[2:]}})
    assert vmi.kind == "VirtualMachineInstance"
    assert vmi.multus_networks == ()
    assert vmi.spec_networks == (("other", False),)

    annotated = {"metadata": meta("vm3", "ns1", annotations={"k8s.v1.cni.cncf.io/networks": "x"})}
    assert kube.parse_vmi(annotated).multus_networks == ("x",)
    assert kube.parse_vm({"metadata": meta("vm4", "ns1")}).spec_networks == ()


def test_parse_vip() -> None:
    vip = kube.parse_vip(
        {
            "metadata": meta("vip1", labels={"ovn.kubernetes.io/subnet": "net1", "ovn.kubernetes.io/ip_reserved": ""}),
            "spec": {"subnet": "net1", "namespace": "ns1", "type": "switch_lb_vip", "v4ip": "10.0.0.9"},
            "status": {"v6ip": "fd00::9"},
        }
    )
    assert (vip.subnet, vip.namespace, vip.type) == ("net1", "ns1", "switch_lb_vip")
    assert (vip.v4, vip.v6) == ("10.0.0.9", "fd00::9")
    assert (vip.subnet_label, vip.reserved_label) == ("net1", "")
    bare = kube.parse_vip({"metadata": meta("vip2"), "spec": {"subnet": "s"}, "status": {"v4ip": "10.0.0.8"}})
    assert bare.v4 == "10.0.0.8" and bare.reserved_label is None and bare.subnet_label == ""


def test_parse_eips() -> None:
    labels = {"ovn.kubernetes.io/subnet": "external"}
    ipt = kube.parse_iptables_eip(
        {"metadata": meta("eip1", labels=labels), "spec": {"v4ip": "1.1.1.1", "v6ip": "fd01::1"}, "status": {}}
    )
    assert (ipt.kind, ipt.v4, ipt.v6, ipt.subnet_label) == ("IptablesEIP", "1.1.1.1", "fd01::1", "external")
    ipt = kube.parse_iptables_eip({"metadata": meta("eip2"), "spec": {}, "status": {"ip": "1.1.1.2"}})
    assert ipt.v4 == "1.1.1.2" and ipt.subnet_label == ""
    ovn = kube.parse_ovn_eip(
        {
            "metadata": meta("oe1", labels=labels),
            "spec": {"type": "lrp", "v4Ip": "1.1.1.3"},
            "status": {"v6Ip": "fd01::3"},
        }
    )
    assert (ovn.kind, ovn.type, ovn.v4, ovn.v6, ovn.subnet_label) == ("OvnEip", "lrp", "1.1.1.3", "fd01::3", "external")


# --- error translation ----------------------------------------------------------


def api_exc(status: int, message: str = "", headers: dict[str, str] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    if message:
        exc.body = orjson.dumps({"kind": "Status", "status": "Failure", "message": message, "code": status}).decode()
    if headers is not None:
        exc.headers = urllib3.HTTPHeaderDict(headers)
    return exc


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (404, NotFoundError),
        (409, ConflictError),
        (429, TransientError),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
        (400, kube.RejectedError),  # a FatalError: what was asked is not served
        (401, FatalError),
        (403, FatalError),
        (415, FatalError),
        (422, FatalError),
        (501, FatalError),
        (0, FatalError),
    ],
)
def test_translate_status(status: int, cls: type[Exception]) -> None:
    err = kube.translate_error(api_exc(status, "the message"), "GET", "/apis/kubeovn.io/v1/ips")
    assert type(err) is cls
    assert "GET /apis/kubeovn.io/v1/ips" in str(err) and "the message" in str(err) and str(status) in str(err)


def test_translate_410_is_fatal_but_recognisable() -> None:
    err = kube.translate_error(api_exc(410, "too old resource version"), "GET", "/api/v1/pods")
    assert isinstance(err, FatalError)


def test_translate_reason_when_body_is_not_a_status() -> None:
    exc = ApiException(status=503, reason="Service Unavailable")
    assert "Service Unavailable" in str(kube.translate_error(exc, "GET", "/api/v1/nodes"))
    exc.body = "<html>oops</html>"
    assert "oops" in str(kube.translate_error(exc, "GET", "/api/v1/nodes"))


def test_translate_retry_after() -> None:
    err = kube.translate_error(api_exc(429, "slow down", {"Retry-After": "3"}), "GET", "/api/v1/pods")
    assert isinstance(err, TransientError) and err.retry_after == 3.0
    when = email.utils.format_datetime(dt.datetime.now(UTC) + dt.timedelta(seconds=120), usegmt=True)
    err = kube.translate_error(api_exc(503, "", {"Retry-After": when}), "GET", "/api/v1/pods")
    assert isinstance(err, TransientError) and err.retry_after is not None and 100 < err.retry_after <= 120
    err = kube.translate_error(api_exc(429, "", {"Retry-After": "soon"}), "GET", "/api/v1/pods")
    assert isinstance(err, TransientError) and err.retry_after is None
    err = kube.translate_error(api_exc(429), "GET", "/api/v1/pods")
    assert isinstance(err, TransientError) and err.retry_after is None


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (
            urllib3.exceptions.MaxRetryError(
                None,  # type: ignore[arg-type]
                "/api/v1/pods",
                urllib3.exceptions.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
            ),
            TransientError,
        ),
        (urllib3.exceptions.ReadTimeoutError(None, "/api/v1/pods", "read timed out"), TransientError),  # type: ignore[arg-type]
        (urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()), TransientError),
        (ConnectionResetError(104, "Connection reset by peer"), TransientError),
        (urllib3.exceptions.SSLError("certificate verify failed"), FatalError),
        (orjson.JSONDecodeError("bad", "{", 0), FatalError),
    ],
)
def test_translate_transport(exc: Exception, cls: type[Exception]) -> None:
    err = kube.translate_error(exc, "GET", "/api/v1/pods")
    assert type(err) is cls
    assert "GET /api/v1/pods" in str(err)


# --- building the client -----------------------------------------------------------


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {server: "http://127.0.0.1:1"}
- name: c2
  cluster: {server: "http://127.0.0.2:2"}
users:
- name: u1
  user: {token: secret}
contexts:
- name: one
  context: {cluster: c1, user: u1}
- name: two
  context: {cluster: c2, user: u1}
current-context: one
"""


def test_api_client_from_kubeconfig_and_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    with kube.api_client(KubeSettings(kubeconfig=str(path))) as client:
        assert client.configuration.host == "http://127.0.0.1:1"
    with kube.api_client(KubeSettings(kubeconfig=str(path), context="two")) as client:
        assert client.configuration.host == "http://127.0.0.2:2"
    monkeypatch.setenv("KUBECONFIG", str(path))
    with kube.api_client(KubeSettings()) as client:
        assert client.configuration.host == "http://127.0.0.1:1"


def test_api_client_failures_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    with pytest.raises(ConfigError, match="in-cluster"):
        kube.api_client(KubeSettings())
    bad = tmp_path / "bad"
    bad.write_text("::: not yaml [")
    with pytest.raises(ConfigError, match="kubeconfig"):
        kube.api_client(KubeSettings(kubeconfig=str(bad)))
    good = tmp_path / "good"
    good.write_text(KUBECONFIG)
    with pytest.raises(ConfigError):
        kube.api_client(KubeSettings(kubeconfig=str(good), context="nope"))
    with pytest.raises(ConfigError):
        kube.api_client(KubeSettings(kubeconfig=str(tmp_path / "missing")))


# --- against the fake API server ---------------------------------------------------

FAST = RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.01, max_retry_after=0.3)
ONCE = RetryPolicy(attempts=1)


@dataclass
class Cluster:
    server: FakeApiServer
    reader: kube.KubeReader
    writer: kube.KubeWriter

    def list_requests(self, resource: str) -> list[Any]:
        return [r for r in self.server.requests if r.verb == "list" and r.resource == resource]


@contextlib.contextmanager
def connect(
    server: FakeApiServer, tmp_path: Path, *, page_size: int = 2, retry: RetryPolicy = FAST
) -> Iterator[Cluster]:
    settings = KubeSettings(
        kubeconfig=str(server.write_kubeconfig(tmp_path / "kubeconfig")), page_size=page_size, timeout=10.0
    )
    with kube.api_client(settings) as client:
        yield Cluster(server, kube.KubeReader(client, settings, retry), kube.KubeWriter(client, settings, retry))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with FakeApiServer() as server, connect(server, tmp_path) as c:
        yield c


def seed_ip(server: FakeApiServer, name: str, v4: str, *, subnet: str = "ovn-default", **spec: Any) -> dict[str, Any]:
    pod_name, _, namespace = name.partition(".")
    return server.create(
        "ips",
        {
            "metadata": {
                "name": name,
                "labels": {"ovn.kubernetes.io/subnet": subnet, subnet: ""},
                "finalizers": ["kubeovn.io/kube-ovn-controller"],
            },
            "spec": {
                "podName": pod_name,
                "namespace": namespace,
                "subnet": subnet,
                "nodeName": "node1",
                "ipAddress": v4,
                "v4IpAddress": v4,
                "v6IpAddress": "",
                "macAddress": "00:00:00:00:00:01",
                "podType": "",
                **spec,
            },
        },
    )


def seed_subnet(server: FakeApiServer, name: str = "ovn-default") -> dict[str, Any]:
    return server.create(
        "subnets",
        {
            "metadata": {"name": name},
            "spec": {
                "cidrBlock": "10.16.0.0/16",
                "protocol": "IPv4",
                "gateway": "10.16.0.1",
                "excludeIps": ["10.16.0.1"],
                "provider": "ovn",
            },
            "status": {
                "v4availableIPs": 65530,
                "v4usingIPs": 3,
                "v4usingIPrange": "10.16.0.2-10.16.0.4",
                "v4availableIPrange": "10.16.0.5-10.16.255.254",
                "v6availableIPs": 0,
                "v6usingIPs": 0,
            },
        },
    )


def seed_cluster(server: FakeApiServer) -> None:
    for i in range(5):
        seed_ip(server, f"pod{i}.default", f"10.16.0.{i + 2}")
    seed_subnet(server)
    seed_subnet(server, "net2")
    for ns, name in (("default", "pod0"), ("default", "pod1"), ("other", "web-0")):
        server.create(
            "pods",
            {
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "annotations": {"ovn.kubernetes.io/allocated": "true", "ovn.kubernetes.io/ip_address": "10.16.0.2"},
                },
                "spec": {"nodeName": "node1", "restartPolicy": "Always"},
                "status": {"phase": "Running"},
            },
        )
    for name in ("node1", "node2", "node3"):
        server.create("nodes", {"metadata": {"name": name}})
    server.create(
        "statefulsets",
        {"metadata": {"name": "web", "namespace": "other"}, "spec": {"replicas": 2, "ordinals": {"start": 1}}},
    )
    server.create(
        "virtualmachines",
        {
            "metadata": {"name": "vm1", "namespace": "default"},
            "spec": {
                "runStrategy": "Halted",
                "template": {"spec": {"networks": [{"name": "a", "multus": {"networkName": "attach"}}]}},
            },
        },
    )
    server.create("virtualmachineinstances", {"metadata": {"name": "vmi1", "namespace": "other"}, "spec": {}})
    server.create(
        "vips",
        {
            "metadata": {"name": "vip1", "labels": {"ovn.kubernetes.io/subnet": "ovn-default"}},
            "spec": {"subnet": "ovn-default", "type": ""},
            "status": {"v4ip": "10.16.0.100"},
        },
    )
    server.create("iptables-eips", {"metadata": {"name": "eip1"}, "spec": {"v4ip": "172.18.0.5"}})
    server.create("ovn-eips", {"metadata": {"name": "oeip1"}, "spec": {"type": "nat", "v4Ip": "172.18.0.6"}})


def test_read_full_cluster_in_pages(cluster: Cluster) -> None:
    seed_cluster(cluster.server)
    snap = cluster.reader.read()

    assert sorted(ip.name for ip in snap.ips) == [f"pod{i}.default" for i in range(5)]
    ip0 = next(ip for ip in snap.ips if ip.name == "pod0.default")
    assert (ip0.subnet, ip0.v4, ip0.pod_name, ip0.namespace) == ("ovn-default", "10.16.0.2", "pod0", "default")
    assert ip0.meta.uid and ip0.meta.resource_version and ip0.meta.creation is not None
    assert [s.meta.name for s in snap.subnets] == ["net2", "ovn-default"]
    assert snap.subnets[1].status_value("v4usingIPs") == "3"
    assert sorted(p.meta.key for p in snap.pods) == ["default/pod0", "default/pod1", "other/web-0"]
    assert snap.pods[0].networks == (PodNetwork("ovn"),)
    assert [n.name for n in snap.nodes] == ["node1", "node2", "node3"]
    assert [(s.meta.key, s.replicas, s.ordinals_start) for s in snap.statefulsets] == [("other/web", 2, 1)]
    assert snap.kubevirt is KubevirtState.READ
    assert [(v.kind, v.meta.key, v.spec_networks) for v in snap.vms] == [
        ("VirtualMachine", "default/vm1", (("attach", False),)),
        ("VirtualMachineInstance", "other/vmi1", ()),
    ]
    assert [(v.meta.name, v.v4, v.subnet_label) for v in snap.vips] == [("vip1", "10.16.0.100", "ovn-default")]
    assert [(e.kind, e.meta.name, e.v4) for e in snap.eips] == [
        ("IptablesEIP", "eip1", "172.18.0.5"),
        ("OvnEip", "oeip1", "172.18.0.6"),
    ]
    assert snap.unparsed == ()

    lists = [r for r in cluster.server.requests if r.verb == "list"]
    assert all(r.query.get("limit") == "2" for r in lists)
    assert all("resourceVersion" not in r.query for r in lists)  # never resourceVersion=0: a consistent read
    for resource, pages in (("ips", 3), ("subnets", 1), ("nodes", 2)):
        reqs = cluster.list_requests(resource)
        assert len(reqs) == pages, resource
        assert "continue" not in reqs[0].query
        assert all(r.query.get("continue") for r in reqs[1:]), resource
    # pods: the active ones metadata-only (3 pods, 2 pages), the host-network ones metadata-only, the ended
    # ones (Succeeded metadata-only, one list per restartPolicy; Failed and other Succeeded in full); every
    # page repeats its selector
    pods: dict[str, list[Any]] = {}
    for r in cluster.list_requests("pods"):
        pods.setdefault(r.query.get("fieldSelector", ""), []).append(r)
    succeeded = [f"{kube.SUCCEEDED},spec.restartPolicy={p}" for p in kube.RESTART_POLICIES]
    other = kube.SUCCEEDED + "".join(f",spec.restartPolicy!={p}" for p in kube.RESTART_POLICIES)
    assert sorted(pods) == sorted([kube.ACTIVE, kube.HOST_NETWORK, kube.FAILED, *succeeded, other])
    assert [bool(r.query.get("continue")) for r in pods[kube.ACTIVE]] == [False, True]
    assert all(r.accept == kube.METADATA_ONLY for s in (kube.ACTIVE, kube.HOST_NETWORK, *succeeded) for r in pods[s])
    assert [r.accept for s in (kube.FAILED, other) for r in pods[s]] == ["application/json"] * 2
    # subnets (whose status we may write) first, then the owned things, then their owners, all at once
    order = list(dict.fromkeys(r.resource for r in lists))
    assert order[:2] == ["subnets", "ips"]
    assert set(order[2:]) == {"pods", "nodes", "statefulsets", "virtualmachines", "virtualmachineinstances", "vips",
                              "iptables-eips", "ovn-eips"}
    last_ip = max(i for i, r in enumerate(lists) if r.resource == "ips")
    assert all(r.resource in ("subnets", "ips") for r in lists[:last_ip + 1])  # no owner before the last IP page
    assert any(r.verb == "get" and r.group == "kubevirt.io" and not r.resource for r in cluster.server.requests)


def test_kubevirt_absent(tmp_path: Path) -> None:
    with FakeApiServer(kubevirt=False) as server, connect(server, tmp_path) as c:
        seed_ip(server, "a.default", "10.16.0.2")
        snap = c.reader.read()
        assert c.writer.get_vm("default", "vm1") is None
    assert snap.kubevirt is KubevirtState.ABSENT
    assert snap.vms == () and len(snap.ips) == 1
    assert not c.list_requests("virtualmachines")


def test_kubevirt_unlistable_is_unreadable_not_an_error(cluster: Cluster) -> None:
    seed_cluster(cluster.server)
    cluster.server.inject("GET", r"/apis/kubevirt.io/v1/virtualmachines$", 500, times=None)
    snap = cluster.reader.read()
    assert snap.kubevirt is KubevirtState.UNREADABLE
    assert snap.vms == ()
    assert len(snap.ips) == 5 and len(snap.eips) == 2  # the rest of the pass is read as usual
    assert len(cluster.list_requests("virtualmachines")) == FAST.attempts
    assert "GET /apis/kubevirt.io/v1/virtualmachines: 500" in snap.kubevirt_error


def test_kubevirt_discovery_failing_is_unreadable(cluster: Cluster) -> None:
    cluster.server.inject("GET", r"^/apis/kubevirt.io/v1$", 503, times=None)
    assert cluster.reader.read().kubevirt is KubevirtState.UNREADABLE


def test_ip_list_retried_after_500(cluster: Cluster) -> None:
    seed_cluster(cluster.server)
    cluster.server.inject("GET", r"/apis/kubeovn.io/v1/ips$", 500, times=2)
    snap = cluster.reader.read()
    assert len(snap.ips) == 5
    statuses = [r.status for r in cluster.list_requests("ips")]
    assert statuses == [500, 500, 200, 200, 200]


def test_429_retry_after_is_honoured(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    seed_ip(cluster.server, "a.default", "10.16.0.2")
    cluster.server.inject("GET", r"/apis/kubeovn.io/v1/ips$", 429, headers={"Retry-After": "5"})
    caplog.set_level(logging.WARNING, logger="kube_ovn_gc.retry")
    started = time.monotonic()
    ips = cluster.reader.read_ips()
    elapsed = time.monotonic() - started
    assert [ip.name for ip in ips] == ["a.default"]
    assert [r.status for r in cluster.list_requests("ips")] == [429, 200]
    # Retry-After 5s, capped by the policy's max_retry_after (0.3s) instead of the 1ms backoff
    assert elapsed >= 0.3
    assert any("429" in m for m in caplog.messages)  # the retry was logged


def test_ip_list_failing_persistently_raises(cluster: Cluster) -> None:
    seed_cluster(cluster.server)
    cluster.server.inject("GET", r"/apis/kubeovn.io/v1/ips$", 503, times=None)
    with pytest.raises(TransientError, match=r"GET /apis/kubeovn.io/v1/ips: 503 injected fault"):
        cluster.reader.read()
    assert len(cluster.list_requests("ips")) == FAST.attempts
    assert not cluster.list_requests("pods")  # stopped right there


@pytest.mark.parametrize(("status", "error"), [(403, FatalError), (401, FatalError), (504, TransientError)])
def test_failed_owner_list_stops_the_read(cluster: Cluster, status: int, error: type[Exception]) -> None:
    seed_cluster(cluster.server)
    cluster.server.inject("GET", r"^/api/v1/pods$", status, times=None)
    with pytest.raises(error, match=rf"GET /api/v1/pods: {status}"):
        cluster.reader.read()


def test_missing_optional_crds_mean_none(cluster: Cluster) -> None:
    seed_cluster(cluster.server)
    for plural in ("vips", "iptables-eips", "ovn-eips"):
        cluster.server.inject("GET", rf"/apis/kubeovn.io/v1/{plural}$", 404, times=None)
    snap = cluster.reader.read()
    assert snap.vips == () and snap.eips == () and len(snap.ips) == 5


def test_unparsable_ip_goes_to_unparsed(cluster: Cluster) -> None:
    seed_ip(cluster.server, "good.default", "10.16.0.2")
    cluster.server.create("ips", {"metadata": {"name": "nosubnet.default"}, "spec": {"podName": "nosubnet"}})
    cluster.server.create(
        "ips",
        {"metadata": {"name": "badaddr.default"}, "spec": {"subnet": "ovn-default", "v4IpAddress": "10.16.0.999"}},
    )
    cluster.server.create("ips", {"metadata": {"name": "nospec.default"}, "spec": "oops"})
    snap = cluster.reader.read()
    assert [ip.name for ip in snap.ips] == ["good.default"]
    assert sorted((kind, name) for kind, name, _ in snap.unparsed) == [
        ("IP", "badaddr.default"),
        ("IP", "nospec.default"),
        ("IP", "nosubnet.default"),
    ]
    assert all(why for _, _, why in snap.unparsed)
    # the one whose address alone does not parse still counts in its Subnet, as in Kube-OVN
    assert [(ip.name, ip.subnet, ip.v4) for ip in snap.odd_ips] == [("badaddr.default", "ovn-default", "")]


def test_undecodable_body_is_fatal(cluster: Cluster) -> None:
    cluster.server.inject("GET", r"/apis/kubeovn.io/v1/ips$", 200, body="{not json", times=None)
    with pytest.raises(FatalError, match="undecodable"):
        cluster.reader.read()
    assert len(cluster.list_requests("ips")) == 1  # not retried


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    server = FakeApiServer().start()
    with connect(server, tmp_path, retry=ONCE) as c:
        server.stop()
        with pytest.raises(TransientError, match=r"GET /apis/kubeovn\.io/v1/subnets"):
            c.reader.read()


class ExpiringServer(FakeApiServer):
    """Forgets list snapshots just before the next ``expirations`` continued pages (etcd compaction)."""

    expirations = 1

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        if "continue=" in target and self.expirations > 0:
            self.expirations -= 1
            self.expire_continue_tokens()
        return super().handle(method, target, headers, raw)


def test_expired_continue_restarts_the_list_once(tmp_path: Path) -> None:
    server = ExpiringServer()
    with server, connect(server, tmp_path) as c:
        seed_cluster(server)
        snap = c.reader.read()
        assert len(snap.ips) == 5
        statuses = [(r.status, bool(r.query.get("continue"))) for r in c.list_requests("ips")]
        assert statuses == [(200, False), (410, True), (200, False), (200, True), (200, True)]

        server.expirations = 2
        server.reset_log()
        with pytest.raises(FatalError, match="410"):
            c.reader.read()
        assert [r.status for r in c.list_requests("ips")] == [200, 410, 200, 410]


def test_the_next_page_is_asked_for_while_this_one_is_decoded(cluster: Cluster) -> None:
    for name in ("node1", "node2", "node3"):
        cluster.server.create("nodes", {"metadata": {"name": name}})
    asked_while_decoding = []

    def parse_slowly(raw: Any) -> Any:
        if raw["metadata"]["name"] == "node1":  # the first page is being decoded: is page two on its way?
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len(cluster.list_requests("nodes")) < 2:
                time.sleep(0.01)
            asked_while_decoding.append(len(cluster.list_requests("nodes")) == 2)
        return kube.parse_node(raw)

    nodes, _ = cluster.reader._list(kube.NODES, parse_slowly)
    assert [n.name for n in nodes] == ["node1", "node2", "node3"]
    assert asked_while_decoding == [True]
    first, second = cluster.list_requests("nodes")
    assert not first.query.get("continue") and second.query.get("continue")


class DecoyServer(FakeApiServer):
    """Writes a decoy ``"continue"`` into the head of every list answer, before the real metadata."""

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        status, payload, extra = super().handle(method, target, headers, raw)
        if isinstance(payload, dict) and "items" in payload:
            payload = {"decoy": {"continue": "bm90LWEtdG9rZW4"}, **payload}
        return status, payload, extra


def test_a_wrong_peek_is_dropped_and_the_page_token_is_followed(tmp_path: Path) -> None:
    server = DecoyServer()
    with server, connect(server, tmp_path) as c:
        seed_cluster(server)
        assert sorted(ip.name for ip in c.reader.read_ips()) == [f"pod{i}.default" for i in range(5)]
        tokens = [r.query.get("continue") for r in c.list_requests("ips")]
        assert tokens.count("bm90LWEtdG9rZW4") == 3  # one decoy guess per page, each answered 400 and dropped
        assert len([t for t in tokens if t and t != "bm90LWEtdG9rZW4"]) == 2  # the real pages two and three


@pytest.mark.parametrize(("body", "token"), [
    (b'{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5","continue":"eyJ2Ijo-_"},"items":[]}',
     "eyJ2Ijo-_"),
    (b'{"kind": "PodList", "metadata": {"continue": "abc=", "remainingItemCount": 3}, "items": []}', "abc="),
    (b'{"kind":"PodList","metadata":{"resourceVersion":"5"},"items":[]}', None),  # the last page
    (b'{"items":[],"metadata":{"continue":"abc"}}', None),  # metadata after items: not guessed at
    (b'{"metadata":{"continue":"a\\u002fb"},"items":[]}', None),  # escaped: not guessed at
    (b'{"metadata":{"resourceVersion":"5"},"items":[{"metadata":{"continue":"inside"}}]}', None),
    (b'{"metadata":{"continue":"abc"}}', None),  # no items at all: not a list page, no guess
    (b"", None),
])
def test_peek_continue(body: bytes, token: str | None) -> None:
    assert kube.peek_continue(body) == token


# --- writes and second looks ---------------------------------------------------------


def test_delete_ip_with_stale_resource_version_conflicts(cluster: Cluster) -> None:
    seed_ip(cluster.server, "a.default", "10.16.0.2")
    [ip] = cluster.reader.read_ips()
    stored = cluster.server.get("ips", "a.default")
    assert stored is not None
    stored["metadata"]["labels"]["touched"] = "yes"
    cluster.server.put("ips", stored)  # someone else wrote it since we read it
    with pytest.raises(ConflictError, match=r"DELETE /apis/kubeovn.io/v1/ips/a.default: 409"):
        cluster.writer.delete_ip(ip)
    still = cluster.server.get("ips", "a.default")
    assert still is not None and "deletionTimestamp" not in still["metadata"]
    [delete] = [r for r in cluster.server.requests if r.method == "DELETE"]
    assert delete.body["preconditions"] == {"uid": ip.meta.uid, "resourceVersion": ip.meta.resource_version}


def test_delete_ip_with_finalizer_leaves_it_terminating(cluster: Cluster) -> None:
    seed_ip(cluster.server, "a.default", "10.16.0.2")
    [ip] = cluster.reader.read_ips()
    outcome, manifest = cluster.writer.delete_ip(ip)
    assert outcome == "done"
    # the answer is the object as deleted: the undo record keeps it
    assert manifest is not None and manifest["metadata"]["name"] == "a.default"
    assert manifest["metadata"]["deletionTimestamp"] and manifest["spec"]["v4IpAddress"] == "10.16.0.2"
    terminating = cluster.writer.get_ip("a.default")
    assert terminating is not None and terminating.meta.deletion is not None
    assert terminating.meta.finalizers == ("kubeovn.io/kube-ovn-controller",)
    # deleting it again (as the next pass would, from a fresh read) is fine and changes nothing
    assert cluster.writer.delete_ip(terminating)[0] == "done"
    again = cluster.writer.get_ip("a.default")
    assert again is not None and again.meta.deletion == terminating.meta.deletion
    # the controller drops its finalizer: the CR is gone, and deleting it is still a success
    cluster.server.remove_finalizers("ips", "a.default")
    assert cluster.writer.get_ip("a.default") is None
    assert cluster.writer.delete_ip(terminating) == ("gone", None)


def test_delete_ip_without_finalizer_and_404(cluster: Cluster) -> None:
    cluster.server.create("ips", {"metadata": {"name": "a.default"}, "spec": {"subnet": "ovn-default"}})
    [ip] = cluster.reader.read_ips()
    assert cluster.writer.delete_ip(ip)[0] == "done"
    assert cluster.server.get("ips", "a.default") is None
    assert cluster.writer.delete_ip(ip) == ("gone", None)


def test_patch_subnet_status_writes_only_status(cluster: Cluster) -> None:
    seed_subnet(cluster.server)
    subnet = cluster.writer.get_subnet("ovn-default")
    assert subnet is not None
    before = cluster.server.get("subnets", "ovn-default")
    assert before is not None

    cluster.writer.patch_subnet_status(subnet, {"v4usingIPs": 1, "v4usingIPrange": "10.16.0.2"})

    after = cluster.server.get("subnets", "ovn-default")
    assert after is not None
    assert after["spec"] == before["spec"] and after["metadata"].get("labels") == before["metadata"].get("labels")
    assert after["status"] == {**before["status"], "v4usingIPs": 1, "v4usingIPrange": "10.16.0.2"}
    [patch] = [r for r in cluster.server.requests if r.method == "PATCH"]
    assert (patch.path, patch.subresource) == ("/apis/kubeovn.io/v1/subnets/ovn-default/status", "status")
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {
        "metadata": {"resourceVersion": subnet.meta.resource_version},
        "status": {"v4usingIPs": 1, "v4usingIPrange": "10.16.0.2"},
    }
    fresh = cluster.writer.get_subnet("ovn-default")
    assert fresh is not None and fresh.status_value("v4usingIPs") == "1"

    # the same, computed from the old resourceVersion: refused, nothing written
    with pytest.raises(ConflictError, match="409"):
        cluster.writer.patch_subnet_status(subnet, {"v4usingIPs": 0})
    final = cluster.server.get("subnets", "ovn-default")
    assert final is not None and final["status"]["v4usingIPs"] == 1


def test_patch_subnet_status_of_deleted_subnet(cluster: Cluster) -> None:
    seed_subnet(cluster.server)
    subnet = cluster.writer.get_subnet("ovn-default")
    assert subnet is not None
    cluster.server.delete("subnets", "ovn-default")
    with pytest.raises(NotFoundError):
        cluster.writer.patch_subnet_status(subnet, {"v4usingIPs": 0})


def test_single_gets(cluster: Cluster) -> None:
    seed_cluster(cluster.server)
    w = cluster.writer
    pod = w.get_pod("default", "pod0")
    assert pod is not None and pod.meta.key == "default/pod0" and pod.phase == "Running"
    assert w.get_pod("default", "nope") is None
    vm = w.get_vm("default", "vm1")
    assert vm is not None and vm.kind == "VirtualMachine"
    vmi = w.get_vmi("other", "vmi1")
    assert vmi is not None and vmi.kind == "VirtualMachineInstance"
    assert w.get_vmi("default", "vm1") is None
    sts = w.get_statefulset("other", "web")
    assert sts is not None and sts.replicas == 2
    assert w.get_statefulset("default", "web") is None
    node = w.get_node("node2")
    assert node is not None and node.name == "node2" and node.uid
    assert w.get_node("node9") is None
    ip = w.get_ip("pod3.default")
    assert ip is not None and ip.v4 == "10.16.0.5"
    assert w.get_ip("nope") is None
    assert cluster.reader.get_subnet("net2") is not None
    assert w.get_subnet("nope") is None


def test_single_get_of_an_object_that_became_unparsable(cluster: Cluster) -> None:
    cluster.server.create("ips", {"metadata": {"name": "a.default"}, "spec": {"podName": "a"}})
    with pytest.raises(ConflictError, match=r"spec\.subnet"):
        cluster.writer.get_ip("a.default")


def test_single_get_retries(cluster: Cluster) -> None:
    cluster.server.create("nodes", {"metadata": {"name": "node1"}})
    cluster.server.inject("GET", r"^/api/v1/nodes/node1$", 502)
    assert cluster.writer.get_node("node1") is not None


# --- counts of any size (IPv6 subnets wider than /64) --------------------------------------------


def test_subnet_counts_beyond_64_bits_are_read_exactly(cluster: Cluster) -> None:
    # Kube-OVN v1.16 writes internal.BigInt as its digits; a float64 of <= v1.15 as Go writes it.
    seed_subnet(cluster.server, "wide")
    obj = cluster.server.get("subnets", "wide")
    assert obj is not None
    obj["status"] = {"v6availableIPs": 2**72 - 5, "v6usingIPs": 2**64 + 1, "v4availableIPs": 1.8446744073709552e19}
    cluster.server.put("subnets", obj)
    [listed] = [s for s in cluster.reader.read().subnets if s.meta.name == "wide"]
    got = cluster.writer.get_subnet("wide")
    for subnet in (listed, got):
        assert subnet is not None
        assert subnet.status_value("v6availableIPs") == str(2**72 - 5)  # not 4.722366482869645e+21
        assert subnet.status_value("v6usingIPs") == str(2**64 + 1)
        assert subnet.status_value("v4availableIPs") == "1.8446744073709552e+19"


def test_patch_subnet_status_writes_counts_beyond_64_bits_exactly(cluster: Cluster) -> None:
    seed_subnet(cluster.server)
    subnet = cluster.writer.get_subnet("ovn-default")
    assert subnet is not None
    cluster.writer.patch_subnet_status(subnet, {"v6availableIPs": 2**72 - 3, "v6usingIPs": 2**62 - 4})
    [patch] = [r for r in cluster.server.requests if r.method == "PATCH"]
    assert patch.body["status"] == {"v6availableIPs": 2**72 - 3, "v6usingIPs": 2**62 - 4}  # as sent, exactly
    stored = cluster.server.get("subnets", "ovn-default")
    assert stored is not None
    # kube-apiserver keeps an int64 exactly and anything wider as the nearest float64
    assert stored["status"]["v6usingIPs"] == 2**62 - 4 and stored["status"]["v6availableIPs"] == 2.0**72


def test_loads_and_dumps_keep_integers_of_any_size() -> None:
    assert kube.loads(b'{"a": 340282366920938463463374607431768211454, "b": 1.5}') == {
        "a": 2**128 - 2, "b": 1.5}
    assert kube.loads(kube.dumps({"n": 2**100, "m": -(2**70)})) == {"n": 2**100, "m": -(2**70)}


def test_odd_addresses_keep_what_parses_and_are_counted_again_after_a_conflict(cluster: Cluster) -> None:
    seed_ip(cluster.server, "good.default", "10.16.0.2")
    cluster.server.create("ips", {"metadata": {"name": "half.default"},
                                  "spec": {"subnet": "dual", "v4IpAddress": "10.16.0.3", "v6IpAddress": "fd00::zz"}})
    cluster.server.create("ips", {"metadata": {"name": "joined.default"},
                                  "spec": {"subnet": "dual", "ipAddress": "10.16.0.4,10.16.0.5"}})
    ips, odd = cluster.reader.read_counted_ips()
    assert [ip.name for ip in ips] == ["good.default"]
    assert [(ip.name, ip.v4, ip.v6) for ip in odd] == [("half.default", "10.16.0.3", ""), ("joined.default", "", "")]
    assert [ip.name for ip in cluster.reader.read_ips()] == ["good.default"]


def test_one_unparsable_vm_does_not_lose_the_list(cluster: Cluster) -> None:
    seed_cluster(cluster.server)
    cluster.server.create("virtualmachines", {"metadata": {"name": "bad", "namespace": "ns1"},
                                              "spec": {"template": {"spec": {"networks": "oops"}}}})
    cluster.server.create("virtualmachineinstances", {"metadata": {"name": "badi", "namespace": "ns2",
                                                                   "annotations": {"a": 1}}})
    snap = cluster.reader.read()
    assert snap.kubevirt is KubevirtState.READ and snap.kubevirt_error == ""
    # a placeholder owns what a VM of that name owns; the object itself is reported, by name
    assert sorted((v.kind, v.meta.key) for v in snap.vms) == [
        ("VirtualMachine", "default/vm1"), ("VirtualMachine", "ns1/bad"),
        ("VirtualMachineInstance", "ns2/badi"), ("VirtualMachineInstance", "other/vmi1")]
    assert sorted((kind, name) for kind, name, _ in snap.unparsed) == [
        ("VirtualMachine", "ns1/bad"), ("VirtualMachineInstance", "ns2/badi")]  # by key, as parsed ones
    assert all("every address named after it is kept" in why for _, _, why in snap.unparsed)


def test_an_unparsable_vm_without_a_namespace_makes_kubevirt_unreadable(cluster: Cluster) -> None:
    seed_cluster(cluster.server)
    cluster.server.create("virtualmachines", {"metadata": {"name": "bad", "namespace": "ns1"}, "spec": 5})
    cluster.server.inject("GET", r"/apis/kubevirt.io/v1/virtualmachines$", 200,
                          body='{"kind": "VirtualMachineList", "metadata": {}, "items": [{"spec": 5}]}', times=None)
    snap = cluster.reader.read()
    assert snap.kubevirt is KubevirtState.UNREADABLE and snap.vms == ()
    assert "no readable name and namespace" in snap.kubevirt_error
