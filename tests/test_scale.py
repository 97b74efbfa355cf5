"""The fast paths behind the scale benchmark give the same answers as the plain ones.

- slim list decoding (msgspec, only the keys ``parse_*`` read) against whole pages (orjson);
- the inet_pton fast path of address checks against :mod:`ipaddress`;
- first-match prefix lookup by length against trying every prefix in order;
- the token-refresh throttle;
- the fake API server's bulk seeding, checkpoint and rollback;
- and one pass over a generated cluster (``bench/``) deleting exactly what it leaked.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakeapi import FakeApiServer
from kube_ovn_gc import kube, plan
from kube_ovn_gc.errors import FatalError
from kube_ovn_gc.kube import client, decode
from kube_ovn_gc.kube import parse as kube_parse
from ovsdb import OvsdbServer

ROOT = Path(__file__).resolve().parent.parent
OLD = "2025-06-01T08:00:00Z"


# --- slim decoding --------------------------------------------------------------------------------------


def _pod(name: str, **over: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-1", "uid": f"uid-{name}", "resourceVersion": "12",
                     "creationTimestamp": OLD, "labels": {"app": "web"},
                     "annotations": {"ovn.kubernetes.io/allocated": "true",
                                     "ovn.kubernetes.io/ip_address": "10.16.0.5",
                                     "ovn.kubernetes.io/mac_address": "0a:58:0a:10:00:05",
                                     "ovn.kubernetes.io/logical_switch": "ovn-default",
                                     "attnet.default.ovn.kubernetes.io/allocated": "true",
                                     "attnet.default.ovn.kubernetes.io/ip_address": "172.17.0.4",
                                     "k8s.v1.cni.cncf.io/networks": "default/attnet"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8",
                                          "uid": "rs1", "controller": True, "blockOwnerDeletion": True}],
                     "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]},
        "spec": {"nodeName": "node1", "restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "podIP": "10.16.0.5", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    return _override(pod, over)


def _override(obj: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Set (or, with ``_DROP``, remove) fields given as ``metadata__labels__x=value``."""
    for path, value in over.items():
        target = obj
        *parents, last = path.split("__")
        for p in parents:
            target = target[p]
        if value is _DROP:
            target.pop(last, None)
        else:
            target[last] = value
    return obj


def _ip(name: str, **over: Any) -> dict[str, Any]:
    ip: dict[str, Any] = {
        "apiVersion": "kubeovn.io/v1", "kind": "IP",
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "9", "creationTimestamp": OLD,
                     "finalizers": ["kubeovn.io/kube-ovn-controller"],
                     "labels": {"ovn.kubernetes.io/subnet": "ovn-default", "ovn-default": ""}},
        "spec": {"podName": name.split(".")[0], "namespace": "team-1", "subnet": "ovn-default",
                 "attachSubnets": [], "nodeName": "node1", "ipAddress": "10.16.0.5,fd00::5",
                 "v4IpAddress": "10.16.0.5", "v6IpAddress": "fd00::5", "macAddress": "0a:58:0a:10:00:05",
                 "containerID": "abc", "podType": ""},
    }
    return _override(ip, over)


_DROP = object()

PODS: list[Any] = [
    _pod("a"),
    _pod("b", metadata__deletionTimestamp=OLD, metadata__deletionGracePeriodSeconds=30),
    _pod("c", spec__hostNetwork=True, status__phase="Succeeded", spec__restartPolicy="Never"),
    _pod("d", status__reason="Evicted", status__phase="Failed"),
    _pod("e", spec=None, status=None),
    _pod("f", metadata__annotations=_DROP, metadata__ownerReferences=_DROP),
    _pod("g", metadata__annotations={"ovn.kubernetes.io/allocated": 1}),  # unparsable: a non-string value
    _pod("h", metadata__ownerReferences="nope"),  # unparsable: not a list
    _pod("i", metadata__name=""),  # unparsable: no name
    _pod("j", spec__hostNetwork="yes"),  # unparsable: not a boolean
    _pod("k", metadata__creationTimestamp="yesterday"),  # unparsable: bad time
    {"metadata": None, "spec": {}},  # unparsable: no name
]
IPS: list[Any] = [
    _ip("a.team-1"),
    _ip("b.team-1", spec__v6IpAddress="", spec__ipAddress="10.16.0.6", spec__v4IpAddress="10.16.0.6"),
    _ip("c.team-1", spec__v4IpAddress="", spec__v6IpAddress="", spec__ipAddress=" 10.16.0.7 , fd00::7"),
    _ip("d.team-1", metadata__labels={"ovn.kubernetes.io/ip_reserved": "true"}, spec__attachSubnets=["x", "y"]),
    _ip("e.team-1", metadata__deletionTimestamp=OLD, spec__podType="VirtualMachine"),
    _ip("f.team-1", spec__v4IpAddress="010.16.0.7"),  # unparsable: leading zero
    _ip("g.team-1", spec__v6IpAddress="10.16.0.8"),  # unparsable: v4 in the v6 field
    _ip("h.team-1", spec__v6IpAddress="fe80::1%eth0"),  # ipaddress takes a scope id; inet_pton does not
    _ip("i.team-1", spec=None),  # unparsable: no spec
    _ip("j.team-1", spec__subnet=7),  # unparsable: not a string
    _ip("k.team-1", metadata__labels={"x": None}),  # unparsable: a non-string label
    {"metadata": None, "spec": None},  # unparsable: no spec
]


def _outcome(parse: Any, obj: Any) -> Any:
    try:
        return parse(obj)
    except kube.ParseError as exc:
        return ("ParseError", str(exc), kube.object_name(obj))


def _page(items: list[Any], **meta: Any) -> bytes:
    return orjson.dumps({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "5", **meta},
                         "items": items})


def _plain(k: Any, parse: Any, body: bytes) -> tuple[list[Any], Any]:
    page = decode._decode_page(k, body, "/x")  # no parse given: always the plain way
    assert not page.parsed
    return [_outcome(parse, o) for o in page.items], page.token


def _fast(k: Any, parse: Any, body: bytes) -> tuple[list[Any], Any, bool]:
    page = decode._decode_page(k, body, "/x", parse)
    items = page.items if page.parsed else [_outcome(parse, o) for o in page.items]
    return items, page.token, page.parsed


@pytest.mark.parametrize(("k", "parse", "objs"), [(kube.PODS, kube.parse_pod, PODS), (kube.IPS, kube.parse_ip, IPS)])
def test_fast_pages_parse_like_plain_pages(k: Any, parse: Any, objs: list[Any]) -> None:
    fast_pages = 0
    for i, obj in enumerate(objs):
        body = _page([obj], **({"continue": "tok"} if i % 2 else {}))
        items, token, parsed = _fast(k, parse, body)
        assert (items, token) == _plain(k, parse, body)
        fast_pages += parsed
    assert fast_pages >= 5  # the usual shapes do go the fast way
    body = _page(objs, **{"continue": "tok2"})
    items, token, parsed = _fast(k, parse, body)
    assert not parsed and (items, token) == _plain(k, parse, body)  # one odd item: the whole page goes plainly


@pytest.mark.parametrize("odd", [
    [1, "two"],  # items that are not objects
    [{"metadata": "a string"}],
    [{"metadata": {"name": "x"}, "spec": ["a", "list"]}],
    [{"metadata": {"name": "x", "deletionGracePeriodSeconds": True}}],
    [{"metadata": {"name": "x", "deletionGracePeriodSeconds": 3.0}}],
    [{"metadata": {"name": "x", "finalizers": [1]}}],
    [{"metadata": {"name": "x", "ownerReferences": [{"controller": "yes"}]}}],
])
@pytest.mark.parametrize(("k", "parse"), [(kube.PODS, kube.parse_pod), (kube.IPS, kube.parse_ip)])
def test_pages_the_fast_shapes_refuse_go_the_plain_way(k: Any, parse: Any, odd: list[Any]) -> None:
    body = _page([copy.deepcopy(PODS[0] if k is kube.PODS else IPS[0]), *odd])
    items, token, parsed = _fast(k, parse, body)
    assert not parsed and (items, token) == _plain(k, parse, body)


@pytest.mark.parametrize("envelope", [b'{"items": null}', b'{"metadata": {"continue": 5}, "items": []}',
                                      b'{"metadata": "x", "items": []}', b"{}"])
def test_odd_envelopes(envelope: bytes) -> None:
    for k, parse in ((kube.PODS, kube.parse_pod), (kube.IPS, kube.parse_ip)):
        items, token, _ = _fast(k, parse, envelope)
        assert (items, token) == _plain(k, parse, envelope)


def test_not_a_list_is_fatal() -> None:
    with pytest.raises(FatalError, match="not a list"):
        decode._decode_page(kube.PODS, b'{"items": {"a": 1}}', "/api/v1/pods", kube.parse_pod)


def test_undecodable_page_is_fatal() -> None:
    with pytest.raises(FatalError, match="undecodable"):
        decode._decode_page(kube.PODS, b'{"items": [', "/api/v1/pods", kube.parse_pod)


_STR = st.one_of(st.none(), st.sampled_from(["", "a", " ", "ovn", "true", "10.16.0.9", "fd00::9", "01.2.3.4",
                                             "2025-01-02T03:04:05Z", "2025-01-02T03:04:05", "bad", "fe80::1%e"]))
_VALUE = st.one_of(_STR, st.integers(-2, 2), st.booleans(), st.just([]), st.just(["a"]), st.just({}),
                   st.just({"k": "v"}), st.just({"ovn.kubernetes.io/allocated": "true"}),
                   st.floats(0, 1)).map(copy.deepcopy)  # fresh containers: they get mutated


@st.composite
def _mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with a few fields (the ones the parsers read, and others) set to odd values or dropped."""
    obj = copy.deepcopy(base)
    if draw(st.integers(0, 9)) == 0:  # now and then a whole section odd
        obj[draw(st.sampled_from(["metadata", "spec", "status"]))] = draw(_VALUE)
    refs = obj.get("metadata", {}).get("ownerReferences") if isinstance(obj.get("metadata"), dict) else None
    if isinstance(refs, list) and refs and draw(st.booleans()):
        refs[0][draw(st.sampled_from(["kind", "name", "uid", "apiVersion", "controller"]))] = draw(_VALUE)
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from(["metadata", "spec", "status"]))
        target = obj.setdefault(section, {}) if isinstance(obj.get(section), dict) or section not in obj else None
        if target is None:
            continue
        key = draw(st.sampled_from(sorted(set(target) | {"name", "namespace", "uid", "creationTimestamp",
                                                          "deletionTimestamp", "labels", "annotations",
                                                          "finalizers", "ownerReferences", "phase",
                                                          "hostNetwork", "subnet", "v4IpAddress",
                                                          "v6IpAddress", "ipAddress", "attachSubnets"})))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(_VALUE)
    return obj


@given(st.lists(_mutated(PODS[0]), min_size=1, max_size=3))
def test_fast_pods_agree_with_plain_parsing(objs: list[Any]) -> None:
    body = _page(objs)
    items, token, _ = _fast(kube.PODS, kube.parse_pod, body)
    assert (items, token) == _plain(kube.PODS, kube.parse_pod, body)


@given(st.lists(_mutated(IPS[0]), min_size=1, max_size=3))
def test_fast_ips_agree_with_plain_parsing(objs: list[Any]) -> None:
    body = _page(objs)
    items, token, _ = _fast(kube.IPS, kube.parse_ip, body)
    assert (items, token) == _plain(kube.IPS, kube.parse_ip, body)


# --- addresses -----------------------------------------------------------------------------------------

_ADDRESSES = ["10.16.0.5", " 10.16.0.5 ", "010.16.0.5", "10.16.0", "10.16.0.256", "1.2.3.4.5", "::1", "fd00::5",
              "FD00::A", "::ffff:10.1.2.3", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "::1.02.3.4", "", " ", "abc",
              "10.16.0.5/24", "0:0::0:1", "2001:db8:0:0:0:0:2:1"]


def _reference(text: str, family: int) -> str | None:
    if not text:
        return ""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return text.strip() if addr.version == family else None


@pytest.mark.parametrize("text", _ADDRESSES)
@pytest.mark.parametrize("family", [4, 6])
def test_address_check_agrees_with_ipaddress(text: str, family: int) -> None:
    try:
        got: str | None = kube_parse._address(text, family, "spec.x")
    except kube.ParseError:
        got = None
    assert got == _reference(text, family)


# --- prefixes ---------------------------------------------------------------------------------------------


@given(st.dictionaries(st.text("ab.", min_size=1, max_size=5), st.text("xyz", max_size=2), max_size=12),
       st.lists(st.text("ab.", max_size=7), max_size=20))
def test_prefix_index_is_first_match_in_order(prefixes: dict[str, str], names: list[str]) -> None:
    index = plan._PrefixIndex(prefixes)
    for name in names:
        expected = next((why for prefix, why in prefixes.items() if name.startswith(prefix)), None)
        assert index.first(name) == expected


# --- the token-refresh throttle -----------------------------------------------------------------------------


class _Config:
    refresh_api_key_hook: Any = None
    api_key: dict[str, str]
    host = ""


def test_token_refresh_runs_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, int]] = []
    now = [1000.0]
    monkeypatch.setattr(client.time, "monotonic", lambda: now[0])
    config = _Config()
    config.api_key = {}

    def loader_hook(generation: int) -> Any:  # like kube_config's: each run installs a fresh hook of its own
        def hook(conf: Any) -> None:
            calls.append((now[0], generation))
            conf.api_key["BearerToken"] = f"token-{generation}"
            conf.host = "https://api:6443"
            conf.refresh_api_key_hook = loader_hook(generation + 1)
        return hook

    config.refresh_api_key_hook = loader_hook(0)
    client._throttle_refresh(config, 10.0)
    throttled = config.refresh_api_key_hook
    for t in (1000.0, 1001.0, 1009.9, 1010.0, 1015.0, 1020.5):
        now[0] = t
        config.refresh_api_key_hook(config)
    assert calls == [(1000.0, 0), (1010.0, 1), (1020.5, 2)]  # the loader's newest hook runs each time
    assert config.refresh_api_key_hook is throttled  # never replaced by the loader's
    assert config.api_key == {"BearerToken": "token-2"} and config.host == "https://api:6443"


def test_no_hook_no_throttle() -> None:
    config = _Config()
    client._throttle_refresh(config, 10.0)
    assert config.refresh_api_key_hook is None


# --- the fake API server at scale ------------------------------------------------------------------------


def test_seed_checkpoint_rollback() -> None:
    server = FakeApiServer()
    assert server.seed("ips", [_ip(f"p{i}.team-1") for i in range(3)]) == 3
    state = server.checkpoint()
    server.delete("ips", "p0.team-1")  # terminating: it has a finalizer
    server.create("ips", _ip("new.team-1"))
    rv = server.resource_version
    server.rollback(state)
    assert sorted(o["metadata"]["name"] for o in server.list("ips")) == ["p0.team-1", "p1.team-1", "p2.team-1"]
    assert "deletionTimestamp" not in (server.get("ips", "p0.team-1") or {})["metadata"]
    server.create("ips", _ip("later.team-1"))
    assert server.resource_version > rv  # resourceVersions never go back


# --- one pass over a generated cluster ---------------------------------------------------------------------


def test_a_pass_over_a_generated_cluster_deletes_exactly_the_leaks(nb_server: OvsdbServer, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.cluster import Shape, generate, seed
    finally:
        sys.path.remove(str(ROOT))
    cluster = generate(Shape(800, leak_ratio=0.02))
    with FakeApiServer() as api:
        seed(cluster, api, nb_server)
        env = dict(os.environ, KUBECONFIG=str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        env.pop("OVN_NB_DB", None)
        out = subprocess.run(
            [sys.executable, "-m", "kube_ovn_gc", "run", "--output", "json", "--ovn-nb", nb_server.unix_remote,
             "--max-deletions", "100", "--no-lease", "--no-events", "--log-level", "WARNING"],
            env=env, capture_output=True, timeout=120, check=False,
        )
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        report = orjson.loads(out.stdout)
        done = {kind: {a["name"] for a in report["actions"] if a["kind"] == kind and a["outcome"] == "done"}
                for kind in ("ip", "port")}
        assert done["ip"] == cluster.leaked_ips and done["port"] == cluster.leaked_ports
        assert report["inventory"]["ips"] == len(cluster.objects["ips"])
        terminating = {o["metadata"]["name"] for o in api.list("ips") if o["metadata"].get("deletionTimestamp")}
        assert terminating == cluster.leaked_ips
        left = {p["name"] for p in nb_server.ports()}
        assert not left & cluster.leaked_ports and len(left) == cluster.ports - len(cluster.leaked_ports)


def test_generated_clusters_are_deterministic() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.cluster import Shape, generate
    finally:
        sys.path.remove(str(ROOT))
    a, b = generate(Shape(300)), generate(Shape(300))
    assert orjson.dumps(a.objects) == orjson.dumps(b.objects) and a.leaked_ips == b.leaked_ips
    assert dt.datetime.fromisoformat(a.objects["pods"][0]["metadata"]["creationTimestamp"]) < dt.datetime.now(dt.UTC)
