"""The light read of pods (issue 12): metadata-only, plus small field-selected lists, decides exactly as the full list.

The proof runs the planner (and the doctor) on the generated clusters of the property tests
(``strategies.cases``) twice: once on the pods as the full list gives them (the read path before),
once on the pods as the light path gives them, both read over HTTP from the fake API server, which
serves metadata-only lists and pod field selectors as kube-apiserver does. Plans and findings must be
equal. A few hundred clusters by default; ``-m long`` runs 2,000.

Also here: what the fake serves (metadata-only lists, field selectors, 400 and 406 as kube-apiserver),
the fallbacks (a refused selector, a server that answers the full list), and the read costs reported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import NOW, pod
from fakeapi import POD_FIELDS, FakeApiServer
from kube_ovn_gc import doctor, kube, metrics
from kube_ovn_gc.errors import FatalError
from kube_ovn_gc.model import KubeSnapshot, NbSnapshot, Node, Pod, Snapshot
from kube_ovn_gc.plan import Plan, Policy, plan
from kube_ovn_gc.report import Report
from kube_ovn_gc.retry import RetryPolicy
from kube_ovn_gc.settings import KubeSettings
from strategies import Case, cases

pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

LONG_SELECTED = "'long' in config.getoption('markexpr') and 'not long' not in config.getoption('markexpr')"
ONCE = RetryPolicy(attempts=1)


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def manifest(p: Pod) -> dict[str, Any]:
    """A pod as kube-apiserver serves it, from the model object (what the job reads, and some of the rest)."""
    m = p.meta
    annotations: dict[str, str] = {"kubernetes.io/psp": "restricted"}
    for net in p.networks:
        annotations[f"{net.provider}.kubernetes.io/allocated"] = "true"
        annotations[f"{net.provider}.kubernetes.io/ip_address"] = "10.16.0.9"  # read by no rule: not kept
        annotations[f"{net.provider}.kubernetes.io/mac_address"] = "0a:58:0a:10:00:09"
        if net.logical_switch:
            annotations[f"{net.provider}.kubernetes.io/logical_switch"] = net.logical_switch
    meta: dict[str, Any] = {"name": m.name, "namespace": m.namespace, "uid": m.uid, "annotations": annotations,
                            "labels": {"app": m.name.split("-")[0]}}
    if m.creation is not None:
        meta["creationTimestamp"] = _time(m.creation)
    if m.deletion is not None:
        meta["deletionTimestamp"] = _time(m.deletion)
    if p.grace_period is not None:
        meta["deletionGracePeriodSeconds"] = p.grace_period
    if m.finalizers:
        meta["finalizers"] = list(m.finalizers)
    if m.owners:
        meta["ownerReferences"] = [{"kind": r.kind, "name": r.name, "uid": r.uid, "apiVersion": r.api_version,
                                    "controller": r.controller} for r in m.owners]
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox", "env": [{"name": "A", "value": "1"}]}]}
    if p.restart_policy:
        spec["restartPolicy"] = p.restart_policy
    if p.host_network:
        spec["hostNetwork"] = True
    spec["nodeName"] = "node1"  # read by no rule: not kept
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True"}]}
    if p.phase:
        status["phase"] = p.phase
    if p.reason:
        status["reason"] = p.reason
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


@dataclasses.dataclass
class Api:
    server: FakeApiServer
    kubeconfig: Path
    empty: object

    def reader(self, page_size: int = 3) -> kube.KubeReader:
        settings = KubeSettings(kubeconfig=str(self.kubeconfig), page_size=page_size)
        return kube.KubeReader(kube.api_client(settings), settings, ONCE)

    def pod_lists(self) -> list[Any]:
        return [r for r in self.server.requests if r.verb == "list" and r.resource == "pods"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = FakeApiServer()
    with server:
        path = server.write_kubeconfig(tmp_path_factory.mktemp("reads") / "kubeconfig")
        yield Api(server, path, server.checkpoint())


def full_pods(reader: kube.KubeReader) -> tuple[Pod, ...]:
    """The pods as the read path before this one took them: the full list."""
    return reader._list(kube.PODS, kube.parse_pod)[0]


def comparable(p: Plan) -> tuple[Any, ...]:
    return (sorted((a.ip.meta.name, a.reason) for a in p.ips), sorted((a.port.uuid, a.reason) for a in p.ports),
            sorted((s.kind, s.name, s.reason) for s in p.skipped), sorted(p.kept.items()))


def node_manifest(n: Node) -> dict[str, Any]:
    """A Node as kube-apiserver serves it: what the job reads, and the status that is most of its bytes."""
    annotations = {"ovn.kubernetes.io/allocated": "true"} if n.allocated else {}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n.name, "uid": n.uid or f"uid-{n.name}", "annotations": annotations,
                         "labels": {"kubernetes.io/hostname": n.name}},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "images": [{"names": [f"registry.example/image-{i}:v1"], "sizeBytes": 1000 + i}
                                  for i in range(5)]}}


def without_addresses(nb: NbSnapshot) -> NbSnapshot:
    """The ports as ``run`` and ``check`` list them: without their addresses (``lsp_list(addresses=False)``)."""
    return NbSnapshot(tuple(dataclasses.replace(p, addresses=()) for p in nb.ports), nb.switch_count)


def check_same_decisions(api: Api, case: Case) -> None:
    api.server.rollback(api.empty)
    api.server.seed("pods", [manifest(p) for p in case.snapshot.kube.pods])
    api.server.seed("nodes", [node_manifest(n) for n in case.snapshot.kube.nodes])
    reader = api.reader()
    before, light = full_pods(reader), reader._read_pods()
    assert sorted(p.meta.key for p in light) == sorted(p.meta.key for p in before)
    nodes_before = reader._list(kube.NODES, kube.parse_node)[0]  # in full, as before
    api.server.reset_log()
    nodes_light = reader.read_owners(KubeSnapshot()).nodes  # metadata-only, as a pass reads them
    assert {r.accept for r in api.server.requests if r.verb == "list" and r.resource == "nodes"} == {
        kube.METADATA_ONLY}
    policy = Policy(now=NOW, min_age=case.min_age, keep_vm_ip=case.keep_vm_ip)
    kube_of = case.snapshot.kube
    on = {name: Snapshot(case.snapshot.nb, dataclasses.replace(kube_of, pods=pods, nodes=nodes))
          for name, pods, nodes in (("original", kube_of.pods, kube_of.nodes), ("full", before, nodes_before),
                                    ("light", light, nodes_light))}
    plans = {name: comparable(plan(snap, policy)) for name, snap in on.items()}
    assert plans["full"] == plans["original"], "the rendering of the pods or nodes lost something"
    assert plans["light"] == plans["full"]
    # run and check list the ports without their addresses: no rule reads them
    assert comparable(plan(dataclasses.replace(on["light"], nb=without_addresses(case.snapshot.nb)), policy)) \
        == plans["full"]
    findings = {name: doctor.examine(snap, policy, dt.timedelta(minutes=10)) for name, snap in on.items()}
    assert findings["light"] == findings["full"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=cases())
def test_light_pod_reads_decide_as_the_full_list(api: Api, case: Case) -> None:
    check_same_decisions(api, case)


@pytest.mark.long
@pytest.mark.skipif(f"not ({LONG_SELECTED})", reason="2,000 clusters: run with -m long")
@settings(max_examples=2_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(case=cases())
def test_light_pod_reads_decide_as_the_full_list_long(api: Api, case: Case) -> None:
    check_same_decisions(api, case)


# --- merge_pods on plain data --------------------------------------------------------------------------------


def _bare(p: Pod) -> Pod:
    """``p`` as a metadata-only list gives it."""
    return dataclasses.replace(p, phase="", reason="", restart_policy="", host_network=False)


def test_merge_takes_what_metadata_lacks_from_the_same_pod_only() -> None:
    running = pod("default", "a")
    ended_since = pod("default", "b", phase="Succeeded", restart="Never")  # active when listed, ended since
    host = pod("default", "c", host_network=True)
    recreated_old = pod("default", "d", phase="Failed", restart="Never")  # its name now has another pod
    recreated = dataclasses.replace(recreated_old, meta=dataclasses.replace(recreated_old.meta, uid="new"),
                                    phase="Running", restart_policy="Never")
    done_host = pod("kube-system", "e", phase="Succeeded", restart="Never", host_network=True)
    merged = {(p.meta.name, p.meta.uid): p for p in kube.merge_pods(
        [_bare(p) for p in (running, ended_since, recreated)],
        [ended_since, recreated_old, dataclasses.replace(done_host, host_network=False)],
        [_bare(host), _bare(done_host)])}
    assert sorted(name for name, _ in merged) == ["a", "b", "c", "d", "d", "e"]
    assert merged["a", running.meta.uid] == _bare(running)
    assert merged["b", ended_since.meta.uid] == ended_since
    assert merged["c", host.meta.uid].host_network  # known from the host-network list only
    assert merged["d", "new"].phase == ""  # not the old pod's Failed: it would be judged dead
    assert merged["e", done_host.meta.uid] == done_host  # ended, and host-network


# --- what the fake serves -------------------------------------------------------------------------------------


def seed_three(server: FakeApiServer) -> None:
    server.create("pods", manifest(pod("default", "run")))
    server.create("pods", manifest(pod("default", "done", phase="Succeeded", restart="Never")))
    server.create("pods", manifest(pod("kube-system", "proxy", host_network=True)))


def test_the_fake_serves_metadata_only_lists_and_pod_field_selectors_as_kube_apiserver(api: Api) -> None:
    server = api.server
    server.rollback(api.empty)
    seed_three(server)
    raw = kube.RawApi(kube.api_client(KubeSettings(kubeconfig=str(api.kubeconfig))), timeout=10)
    listed = kube.loads(raw.list_body(kube.PODS, None, metadata_only=True))
    assert (listed["kind"], listed["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    assert {i["kind"] for i in listed["items"]} == {"PartialObjectMetadata"}
    assert all(set(i) == {"kind", "apiVersion", "metadata"} for i in listed["items"])
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == ["done", "proxy", "run"]
    ended = kube.loads(raw.list_body(kube.PODS, None, selector=f"{kube.SUCCEEDED},spec.restartPolicy=Never"))
    assert [i["metadata"]["name"] for i in ended["items"]] == ["done"]
    assert ended["kind"] == "PodList"
    active = kube.loads(raw.list_body(kube.PODS, None, selector=kube.ACTIVE, metadata_only=True))
    assert [i["metadata"]["name"] for i in active["items"]] == ["run"]
    host = kube.loads(raw.list_body(kube.PODS, None, selector=kube.HOST_NETWORK, metadata_only=True))
    assert [i["metadata"]["name"] for i in host["items"]] == ["proxy"]
    not_host = kube.loads(raw.list_body(kube.PODS, None, selector="spec.hostNetwork=false"))
    assert sorted(i["metadata"]["name"] for i in not_host["items"]) == ["done", "run"]  # absent reads as false
    with pytest.raises(kube.RejectedError, match=r"field label not supported: spec\.dnsPolicy"):
        raw.list_body(kube.PODS, None, selector="spec.dnsPolicy=None")
    with pytest.raises(kube.RejectedError, match=r'"spec\.type" is not a known field selector'):
        raw.list_body(kube.IPS, None, selector="spec.type=x")
    # no metadata-only lists (an aggregated API, say): the full list when JSON is also acceptable, else 406
    server.metadata_lists = False
    try:
        assert kube.loads(raw.list_body(kube.PODS, None, metadata_only=True))["kind"] == "PodList"
        with pytest.raises(FatalError, match="406"):
            raw.request("GET", "/api/v1/pods", accept=kube.METADATA_ONLY.split(",")[0])
    finally:
        server.metadata_lists = True


def test_pods_are_read_light_and_a_refused_selector_falls_back_to_the_full_list_once(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    server = api.server
    server.rollback(api.empty)
    seed_three(server)
    reader = api.reader(page_size=2)
    server.reset_log()
    light = {p.meta.name: p for p in reader._read_pods()}
    assert (light["done"].phase, light["done"].restart_policy, light["proxy"].host_network) == (
        "Succeeded", "Never", True)
    assert (light["run"].phase, light["run"].host_network) == ("", False)
    assert len(api.pod_lists()) == 7 and all(r.query.get("fieldSelector") for r in api.pod_lists())

    server.pod_fields = tuple(f for f in POD_FIELDS if f != "spec.hostNetwork")  # a server before 1.28
    try:
        server.reset_log()
        with caplog.at_level(logging.WARNING, logger="kube_ovn_gc.kube.read"):
            full = {p.meta.name: p for p in reader._read_pods()}
            again = {p.meta.name: p for p in reader._read_pods()}
        assert full == again
        assert (full["run"].phase, full["proxy"].host_network) == ("Running", True)  # the full list
        refused = [r for r in caplog.records if "refuses a pod field selector" in r.getMessage()]
        assert len(refused) == 1  # logged once; the second read does not ask again
        statuses = [(r.query.get("fieldSelector", ""), r.status) for r in api.pod_lists()]
        assert (kube.ACTIVE, 400) in statuses
        assert sum(1 for r in api.pod_lists() if r.accept == "application/json" and not r.query.get("fieldSelector")
                   and not r.query.get("continue")) == 2  # one full list per read
    finally:
        server.pod_fields = POD_FIELDS


def test_a_server_that_answers_the_metadata_list_in_full_is_used_as_it_is(api: Api) -> None:
    server = api.server
    server.rollback(api.empty)
    seed_three(server)
    server.metadata_lists = False
    try:
        pods = {p.meta.name: p for p in api.reader()._read_pods()}
    finally:
        server.metadata_lists = True
    assert (pods["run"].phase, pods["done"].phase, pods["proxy"].host_network) == ("Running", "Succeeded", True)


def test_read_costs_are_counted_per_kind(api: Api) -> None:
    server = api.server
    server.rollback(api.empty)
    seed_three(server)
    reader = api.reader(page_size=2)
    server.reset_log()
    reader.read()
    costs = reader.costs()
    pods = [r for r in api.pod_lists()]
    assert costs["pods"]["requests"] == len(pods) == 7  # active, host network, 5 lists of ended ones
    assert costs["pods"]["bytes"] == sum(r.size for r in pods)
    assert costs["pods"]["seconds"] >= 0
    assert {"ips", "subnets", "nodes", "statefulsets", "virtualmachines"} <= set(costs)



def test_read_costs_go_to_the_metrics_and_the_summary_line() -> None:
    reads = {"nb": {"requests": 1, "bytes": 3 << 20, "seconds": 0.5},
             "pods": {"requests": 301, "bytes": 48211003, "seconds": 1.9}}
    report = Report(True, 0, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 2.0, {"ips": 1}, reads=reads)
    registry = metrics.build_registry(report)
    got = {(s.name, s.labels.get("source")): s.value for m in registry.collect() for s in m.samples
           if s.name.startswith("kube_ovn_gc_read_")}
    assert got[("kube_ovn_gc_read_bytes", "pods")] == 48211003
    assert got[("kube_ovn_gc_read_requests", "pods")] == 301
    assert got[("kube_ovn_gc_read_seconds", "nb")] == 0.5
    assert "49.0 MiB read" in report.summary()  # 3 MiB + 45.98 MiB
    assert report.as_json()["reads"] == reads


def _merge_by_dict(active: list[Pod], ended: list[Pod], host: list[Pod]) -> tuple[Pod, ...]:
    """merge_pods as it was written first: one dict of every pod by (namespace, name, uid)."""
    pods = {(p.meta.namespace, p.meta.name, p.meta.uid): p for p in active}
    for p in ended:
        pods[p.meta.namespace, p.meta.name, p.meta.uid] = p
    for p in host:
        key = (p.meta.namespace, p.meta.name, p.meta.uid)
        known = pods.get(key)
        if known is None:
            pods[key] = dataclasses.replace(p, host_network=True)
        elif not known.host_network:
            pods[key] = dataclasses.replace(known, host_network=True)
    return tuple(pods.values())


_SOME_PODS = [pod(ns, name, phase=phase, restart="Never") for ns in ("a", "b") for name in ("x", "y", "z")
              for phase in ("", "Succeeded")]
_RECREATED = [dataclasses.replace(p, meta=dataclasses.replace(p.meta, uid="other")) for p in _SOME_PODS[:4]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_SOME_PODS + _RECREATED), unique_by=lambda p: (p.meta.key, p.meta.uid)),
       st.lists(st.sampled_from(_SOME_PODS + _RECREATED)), st.lists(st.sampled_from(_SOME_PODS + _RECREATED)))
def test_merge_pods_gives_what_one_dict_of_every_pod_gave(active: list[Pod], ended: list[Pod],
                                                          host: list[Pod]) -> None:
    # ``active`` is one list: each pod once; the ended lists and the host-network list may repeat one
    assert kube.merge_pods(active, ended, host) == _merge_by_dict(active, ended, host)
