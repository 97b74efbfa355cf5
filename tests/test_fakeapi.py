"""The fake API server, driven over real HTTP by the real ``kubernetes`` client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config
from kubernetes.client import ApiException

from fakeapi import FakeApiServer, StatusError

KUBEOVN = ("kubeovn.io", "v1")
SMP = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def make_client(server: FakeApiServer, tmp_path: Path, **settings: Any) -> client.ApiClient:
    path = server.write_kubeconfig(tmp_path / "kubeconfig")
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    for name, value in settings.items():
        setattr(cfg, name, value)
    return client.ApiClient(cfg)


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as srv:
        yield srv


@pytest.fixture
def api(server: FakeApiServer, tmp_path: Path) -> Iterator[client.ApiClient]:
    with make_client(server, tmp_path) as api_client:
        yield api_client


@pytest.fixture
def crd(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def ip(name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "IP", "metadata": {"name": name, **meta},
            "spec": {"podName": name.split(".")[0], "subnet": "ovn-default"}}


def subnet(name: str) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"cidrBlock": "10.16.0.0/16"}, "status": {"v4usingIPs": 3}}


def pod(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body = json.loads(exc.value.body)
    assert body["kind"] == "Status" and body["code"] == exc.value.status
    return body  # type: ignore[no-any-return]


# ---------------------------------------------------------------- discovery


def test_discovery_lists_groups_and_resources(api: client.ApiClient) -> None:
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    served = client.ApisApi(api).get_api_versions().groups
    groups = {g.name: g.preferred_version.group_version for g in served}
    assert groups == {"apps": "apps/v1", "batch": "batch/v1", "coordination.k8s.io": "coordination.k8s.io/v1",
                      "events.k8s.io": "events.k8s.io/v1", "kubeovn.io": "kubeovn.io/v1",
                      "kubevirt.io": "kubevirt.io/v1"}
    kubeovn = {r.name: r for r in client.CustomObjectsApi(api).get_api_resources(*KUBEOVN).resources}
    assert set(kubeovn) == {"ips", "subnets", "subnets/status", "vips", "vips/status", "iptables-eips",
                            "iptables-eips/status", "ovn-eips", "ovn-eips/status"}
    ips = kubeovn["ips"]
    assert (ips.kind, ips.singular_name, ips.namespaced) == ("IP", "ip", False)
    assert "list" in kubeovn["ips"].verbs and kubeovn["subnets/status"].verbs == ["get", "patch", "update"]
    core = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert core["pods"].namespaced and not core["nodes"].namespaced and "pods/status" in core
    vms = client.CustomObjectsApi(api).get_api_resources("kubevirt.io", "v1").resources
    assert {(r.name, r.kind, r.namespaced) for r in vms if "/" not in r.name} == {
        ("virtualmachines", "VirtualMachine", True),
        ("virtualmachineinstances", "VirtualMachineInstance", True),
    }


def test_kubevirt_absent_is_not_served(tmp_path: Path) -> None:
    with FakeApiServer(kubevirt=False) as server, make_client(server, tmp_path) as api:
        groups = [g.name for g in client.ApisApi(api).get_api_versions().groups]
        assert "kubevirt.io" not in groups and "kubeovn.io" in groups
        crd = client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as exc:
            crd.get_api_resources("kubevirt.io", "v1")
        assert exc.value.status == 404
        with pytest.raises(ApiException) as exc:
            crd.list_custom_object_for_all_namespaces("kubevirt.io", "v1", "virtualmachines")
        assert exc.value.status == 404 and status_of(exc)["reason"] == "NotFound"
        assert server.requests[-1].group == "kubevirt.io"
        with pytest.raises(KeyError):
            server.create("virtualmachines", {"metadata": {"name": "vm"}})


def test_unknown_group_version_resource_is_404(crd: client.CustomObjectsApi) -> None:
    for group, version, plural in [("nope.io", "v1", "things"), ("kubeovn.io", "v2", "ips"),
                                   ("kubeovn.io", "v1", "things")]:
        with pytest.raises(ApiException) as exc:
            crd.list_cluster_custom_object(group, version, plural)
        assert exc.value.status == 404


# ---------------------------------------------------------------- lists


def test_paged_list_is_a_snapshot(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    for name in ["c", "a", "e", "b", "d"]:
        server.create("ips", ip(name))
    first = crd.list_cluster_custom_object(*KUBEOVN, "ips", limit=2)
    assert first["kind"] == "IPList" and first["apiVersion"] == "kubeovn.io/v1"
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    assert all(i["kind"] == "IP" and i["apiVersion"] == "kubeovn.io/v1" for i in first["items"])
    assert first["metadata"]["remainingItemCount"] == 3
    snapshot_rv = first["metadata"]["resourceVersion"]
    assert snapshot_rv == str(server.resource_version)

    server.create("ips", ip("bb"))  # would land on page 2 of a fresh list
    server.delete("ips", "e")
    second = crd.list_cluster_custom_object(*KUBEOVN, "ips", limit=2, _continue=first["metadata"]["continue"])
    assert [i["metadata"]["name"] for i in second["items"]] == ["c", "d"]
    assert second["metadata"]["resourceVersion"] == snapshot_rv
    third = crd.list_cluster_custom_object(*KUBEOVN, "ips", limit=2, _continue=second["metadata"]["continue"])
    assert [i["metadata"]["name"] for i in third["items"]] == ["e"]
    assert "continue" not in third["metadata"]

    fresh = crd.list_cluster_custom_object(*KUBEOVN, "ips")
    assert [i["metadata"]["name"] for i in fresh["items"]] == ["a", "b", "bb", "c", "d"]
    assert int(fresh["metadata"]["resourceVersion"]) > int(snapshot_rv)


def test_expired_continue_token_is_410(server: FakeApiServer, core: client.CoreV1Api) -> None:
    for i in range(3):
        server.create("pods", pod(f"p{i}"))
    page = core.list_namespaced_pod("default", limit=1)
    assert page.metadata.remaining_item_count == 2
    server.expire_continue_tokens()
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", limit=1, _continue=page.metadata._continue)
    assert exc.value.status == 410 and status_of(exc)["reason"] == "Expired"
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", limit=1, _continue="not-a-token!")
    assert exc.value.status == 400


def test_continue_token_belongs_to_its_resource(server: FakeApiServer, core: client.CoreV1Api,
                                                crd: client.CustomObjectsApi) -> None:
    for i in range(2):
        server.create("ips", ip(f"i{i}"))
    token = crd.list_cluster_custom_object(*KUBEOVN, "ips", limit=1)["metadata"]["continue"]
    with pytest.raises(ApiException) as exc:
        core.list_node(limit=1, _continue=token)
    assert exc.value.status == 400 and "continue key is not valid" in status_of(exc)["message"]


def test_all_namespaces_list_sorts_by_namespace_then_name(server: FakeApiServer,
                                                          core: client.CoreV1Api) -> None:
    for ns, name in [("b", "x"), ("a", "z"), ("b", "a"), ("a", "y")]:
        server.create("pods", pod(name, ns))
    listed = core.list_pod_for_all_namespaces()
    assert [(p.metadata.namespace, p.metadata.name) for p in listed.items] == [
        ("a", "y"), ("a", "z"), ("b", "a"), ("b", "x")]
    assert [p.metadata.name for p in core.list_namespaced_pod("b").items] == ["a", "x"]
    assert listed.kind == "PodList"


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", ["web-1", "web-2"]),
    ("app==web,tier=front", ["web-1"]),
    ("app!=web", ["db", "plain"]),
    ("tier", ["db", "web-1"]),
    ("!tier", ["plain", "web-2"]),
    ("app in (db, web)", ["db", "web-1", "web-2"]),
    ("app notin (web),tier", ["db"]),
    ("", ["db", "plain", "web-1", "web-2"]),
])
def test_label_selectors(server: FakeApiServer, core: client.CoreV1Api, selector: str,
                         expected: list[str]) -> None:
    server.create("pods", pod("web-1", app="web", tier="front"))
    server.create("pods", pod("web-2", app="web"))
    server.create("pods", pod("db", app="db", tier="back"))
    server.create("pods", pod("plain"))
    names = [p.metadata.name for p in core.list_namespaced_pod("default", label_selector=selector).items]
    assert names == expected


def test_selected_pages_have_no_remaining_count(server: FakeApiServer, core: client.CoreV1Api) -> None:
    for i in range(4):
        server.create("pods", pod(f"p{i}", app="x"))
    page = core.list_namespaced_pod("default", label_selector="app=x", limit=3)
    assert len(page.items) == 3 and page.metadata._continue
    assert page.metadata.remaining_item_count is None


@pytest.mark.parametrize("selector", ["app=(x", "a b", "app in ()", "=x", "app>1"])
def test_bad_label_selector_is_400(core: client.CoreV1Api, selector: str) -> None:
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", label_selector=selector)
    assert exc.value.status == 400 and status_of(exc)["reason"] == "BadRequest"


def test_field_selectors(server: FakeApiServer, core: client.CoreV1Api, crd: client.CustomObjectsApi) -> None:
    server.create("pods", pod("a", "ns1"))
    server.create("pods", pod("b", "ns2"))
    names = lambda sel: [p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector=sel).items]  # noqa: E731
    assert names("metadata.name=a") == ["a"]
    assert names("metadata.namespace==ns2") == ["b"]
    assert names("metadata.name!=a,metadata.namespace!=ns1") == ["b"]
    with pytest.raises(ApiException) as exc:
        core.list_pod_for_all_namespaces(field_selector="spec.foo=x")
    assert exc.value.status == 400
    with pytest.raises(ApiException) as exc:
        crd.list_cluster_custom_object(*KUBEOVN, "ips", field_selector="spec.subnet=x")
    assert exc.value.status == 400 and "not a known field selector" in status_of(exc)["message"]


# ---------------------------------------------------------------- get / create


def test_get_missing_is_404_with_status(crd: client.CustomObjectsApi, core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as exc:
        crd.get_cluster_custom_object(*KUBEOVN, "ips", "x")
    assert exc.value.status == 404
    assert exc.value.headers["Content-Type"] == "application/json"
    assert json.loads(exc.value.body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'ips.kubeovn.io "x" not found', "reason": "NotFound",
        "details": {"name": "x", "group": "kubeovn.io", "kind": "ips"}, "code": 404}
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("p", "default")
    assert status_of(exc)["message"] == 'pods "p" not found'
    assert status_of(exc)["details"] == {"name": "p", "kind": "pods"}


def test_create_assigns_metadata_and_refuses_duplicates(server: FakeApiServer,
                                                        crd: client.CustomObjectsApi) -> None:
    rv_before = server.resource_version
    created = crd.create_cluster_custom_object(*KUBEOVN, "ips", ip("a.ns"))
    meta = created["metadata"]
    assert meta["resourceVersion"] == str(rv_before + 1) and len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z") and len(meta["creationTimestamp"]) == 20
    assert crd.get_cluster_custom_object(*KUBEOVN, "ips", "a.ns") == created
    with pytest.raises(ApiException) as exc:
        crd.create_cluster_custom_object(*KUBEOVN, "ips", ip("a.ns"))
    assert exc.value.status == 409 and status_of(exc)["reason"] == "AlreadyExists"
    assert status_of(exc)["message"] == 'ips.kubeovn.io "a.ns" already exists'


def test_create_with_generate_name_and_namespace_from_path(core: client.CoreV1Api) -> None:
    body = pod("ignored", namespace="")
    body["metadata"] = {"generateName": "web-"}
    created = core.create_namespaced_pod("prod", body)
    assert created.metadata.name.startswith("web-") and len(created.metadata.name) == 9
    assert created.metadata.namespace == "prod"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod("prod", pod("x", namespace="other"))
    assert exc.value.status == 400


def test_writes_need_a_namespaced_path(server: FakeApiServer) -> None:
    http = urllib3.PoolManager()
    auth = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    try:
        resp = http.request("POST", server.url + "/api/v1/pods", body=json.dumps(pod("p")), headers=auth)
        assert resp.status == 405 and json.loads(resp.data)["reason"] == "MethodNotAllowed"
        resp = http.request("GET", server.url + "/api/v1/pods/p", headers=auth)
        assert resp.status == 404
        resp = http.request("POST", server.url + "/api/v1/namespaces/x/pods", body=b"{oops", headers=auth)
        assert resp.status == 400 and json.loads(resp.data)["reason"] == "BadRequest"
    finally:
        http.clear()
    assert server.list("pods") == []


def test_create_keeps_status_of_status_resources(crd: client.CustomObjectsApi) -> None:
    created = crd.create_cluster_custom_object(*KUBEOVN, "subnets", subnet("s"))
    assert created["status"] == {"v4usingIPs": 3}


def test_seeding_keeps_identity(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    seeded = server.create("ips", ip("old", uid="u-1", creationTimestamp="2020-01-01T00:00:00Z"))
    got = crd.get_cluster_custom_object(*KUBEOVN, "ips", "old")
    assert got["metadata"]["uid"] == "u-1" == seeded["metadata"]["uid"]
    assert got["metadata"]["creationTimestamp"] == "2020-01-01T00:00:00Z"


# ---------------------------------------------------------------- update / patch


def test_put_requires_resource_version(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    server.create("ips", ip("a"))
    with pytest.raises(ApiException) as exc:
        crd.replace_cluster_custom_object(*KUBEOVN, "ips", "a", ip("a"))
    body = status_of(exc)
    assert exc.value.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == ('IP.kubeovn.io "a" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
                               "must be specified for an update")
    assert body["details"]["causes"][0]["field"] == "metadata.resourceVersion"


def test_put_with_stale_resource_version_is_409(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    current = server.create("ips", ip("a"))
    stale_rv = current["metadata"]["resourceVersion"]
    current["spec"]["nodeName"] = "n1"
    updated = crd.replace_cluster_custom_object(*KUBEOVN, "ips", "a", current)
    assert int(updated["metadata"]["resourceVersion"]) > int(stale_rv)
    assert updated["metadata"]["generation"] == 2
    current["spec"]["nodeName"] = "n2"
    with pytest.raises(ApiException) as exc:
        crd.replace_cluster_custom_object(*KUBEOVN, "ips", "a", current)
    assert exc.value.status == 409 and status_of(exc)["reason"] == "Conflict"
    assert status_of(exc)["message"] == (
        'Operation cannot be fulfilled on ips.kubeovn.io "a": the object has been modified; '
        "please apply your changes to the latest version and try again")
    assert server.get("ips", "a")["spec"]["nodeName"] == "n1"  # type: ignore[index]


def test_put_name_mismatch_is_400_and_uid_mismatch_is_409(server: FakeApiServer,
                                                          crd: client.CustomObjectsApi) -> None:
    current = server.create("ips", ip("a"))
    with pytest.raises(ApiException) as exc:
        crd.replace_cluster_custom_object(*KUBEOVN, "ips", "a", {**current, "metadata": {
            **current["metadata"], "name": "b"}})
    assert exc.value.status == 400 and "does not match the name on the URL" in status_of(exc)["message"]
    with pytest.raises(ApiException) as exc:
        crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", {"metadata": {"uid": "other"}})
    assert exc.value.status == 409 and "UID in precondition: other" in status_of(exc)["message"]


def test_merge_patch_null_deletes_and_rv_is_a_precondition(server: FakeApiServer,
                                                            crd: client.CustomObjectsApi) -> None:
    created = server.create("ips", ip("a", labels={"x": "1", "y": "2"}))
    rv = created["metadata"]["resourceVersion"]
    patched = crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", {
        "metadata": {"resourceVersion": rv, "labels": {"x": None, "z": "3"}}})
    assert patched["metadata"]["labels"] == {"y": "2", "z": "3"}
    assert server.requests[-1].content_type == "application/merge-patch+json"
    with pytest.raises(ApiException) as exc:
        crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", {"metadata": {"resourceVersion": rv,
                                                                            "labels": {"w": "4"}}})
    assert exc.value.status == 409 and "the object has been modified" in status_of(exc)["message"]
    assert "w" not in server.get("ips", "a")["metadata"]["labels"]  # type: ignore[index]


def test_noop_patch_keeps_resource_version(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    created = server.create("ips", ip("a"))
    same = crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", {"spec": {"subnet": "ovn-default"}})
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_json_patch_ops_and_failed_test_is_422(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    server.create("ips", ip("a", finalizers=["f1", "f2"]))
    patched = crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", [
        {"op": "test", "path": "/spec/subnet", "value": "ovn-default"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
        {"op": "add", "path": "/metadata/labels", "value": {"a~b/c": "1"}},
        {"op": "replace", "path": "/spec/subnet", "value": "s2"},
        {"op": "copy", "from": "/spec/subnet", "path": "/spec/attachSubnets"},
        {"op": "move", "from": "/spec/podName", "path": "/spec/owner"},
    ], _content_type=JSON_PATCH)
    assert patched["metadata"]["finalizers"] == ["f2"]
    assert patched["metadata"]["labels"] == {"a~b/c": "1"}
    assert patched["spec"] == {"subnet": "s2", "attachSubnets": "s2", "owner": "a"}
    with pytest.raises(ApiException) as exc:
        crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", [
            {"op": "test", "path": "/spec/subnet", "value": "other"},
            {"op": "replace", "path": "/spec/subnet", "value": "s3"},
        ], _content_type=JSON_PATCH)
    assert exc.value.status == 422 and status_of(exc)["reason"] == "Invalid"
    assert server.get("ips", "a")["spec"]["subnet"] == "s2"  # type: ignore[index]


def test_strategic_merge_patch(server: FakeApiServer, crd: client.CustomObjectsApi,
                               core: client.CoreV1Api) -> None:
    server.create("ips", ip("a"))
    with pytest.raises(ApiException) as exc:
        crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", {"spec": {"subnet": "x"}}, _content_type=SMP)
    assert exc.value.status == 415 and status_of(exc)["reason"] == "UnsupportedMediaType"
    server.create("pods", pod("p"))
    patched = core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"a": "b"}}},
                                        _content_type=SMP)
    assert patched.metadata.labels == {"a": "b"}
    assert server.requests[-1].content_type == SMP


def test_apply_patch_is_415(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    server.create("ips", ip("a"))
    with pytest.raises(ApiException) as exc:
        crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", ip("a"), field_manager="gc",
                                        _content_type="application/apply-patch+yaml")
    assert exc.value.status == 415


def test_status_subresource_separates_spec_and_status(server: FakeApiServer,
                                                      crd: client.CustomObjectsApi) -> None:
    created = server.create("subnets", subnet("s"))
    via_status = crd.patch_cluster_custom_object_status(*KUBEOVN, "subnets", "s", {
        "spec": {"cidrBlock": "10.0.0.0/8"}, "metadata": {"labels": {"a": "b"}}, "status": {"v4usingIPs": 1}})
    assert via_status["status"] == {"v4usingIPs": 1}
    assert via_status["spec"] == {"cidrBlock": "10.16.0.0/16"} and "labels" not in via_status["metadata"]
    assert via_status["metadata"]["generation"] == created["metadata"]["generation"]

    via_main = crd.patch_cluster_custom_object(*KUBEOVN, "subnets", "s", {
        "spec": {"cidrBlock": "10.0.0.0/8"}, "status": {"v4usingIPs": 99}})
    assert via_main["spec"] == {"cidrBlock": "10.0.0.0/8"} and via_main["status"] == {"v4usingIPs": 1}
    assert via_main["metadata"]["generation"] == created["metadata"]["generation"] + 1

    stale = via_status["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        crd.patch_cluster_custom_object_status(*KUBEOVN, "subnets", "s", {
            "metadata": {"resourceVersion": stale}, "status": {"v4usingIPs": 2}})
    assert exc.value.status == 409
    fresh = crd.get_cluster_custom_object_status(*KUBEOVN, "subnets", "s")
    replaced = crd.replace_cluster_custom_object_status(*KUBEOVN, "subnets", "s", {
        **fresh, "status": {"v4usingIPs": 2}})
    assert replaced["status"] == {"v4usingIPs": 2}
    assert server.requests[-1].subresource == "status" and server.requests[-1].verb == "update"


def test_ips_have_no_status_subresource(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    server.create("ips", ip("a"))
    with pytest.raises(ApiException) as exc:
        crd.patch_cluster_custom_object_status(*KUBEOVN, "ips", "a", {"status": {"x": 1}})
    assert exc.value.status == 404
    patched = crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", {"status": {"x": 1}})
    assert patched["status"] == {"x": 1}


# ---------------------------------------------------------------- delete / finalizers


def test_delete_preconditions(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    created = server.create("ips", ip("a"))
    uid, rv = created["metadata"]["uid"], created["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a", body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid="wrong")))
    assert exc.value.status == 409 and status_of(exc)["message"] == (
        f'Operation cannot be fulfilled on ips.kubeovn.io "a": Precondition failed: '
        f"UID in precondition: wrong, UID in object meta: {uid}")
    with pytest.raises(ApiException) as exc:
        crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a", body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version="1")))
    assert exc.value.status == 409 and f"ResourceVersion in object meta: {rv}" in status_of(exc)["message"]
    assert server.get("ips", "a") is not None
    deleted = crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a", body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=uid, resource_version=rv)))
    assert deleted["metadata"]["name"] == "a" and server.get("ips", "a") is None
    with pytest.raises(ApiException) as exc:
        crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a")
    assert exc.value.status == 404


def test_finalizers_make_delete_graceful(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    server.create("ips", ip("a", finalizers=["kubeovn.io/kube-ovn-controller"]))
    marked = crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a")
    meta = marked["metadata"]
    assert meta["deletionTimestamp"].endswith("Z") and meta["deletionGracePeriodSeconds"] == 0
    assert crd.get_cluster_custom_object(*KUBEOVN, "ips", "a")["metadata"] == meta
    again = crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a")
    assert again["metadata"]["resourceVersion"] == meta["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", {"metadata": {"finalizers": ["a", "b"]}})
    assert exc.value.status == 422
    crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        crd.get_cluster_custom_object(*KUBEOVN, "ips", "a")
    assert exc.value.status == 404


def test_controller_removing_finalizers_completes_the_delete(server: FakeApiServer,
                                                             crd: client.CustomObjectsApi) -> None:
    server.create("ips", ip("a", finalizers=["kube-ovn-controller"]))
    server.create("ips", ip("b", finalizers=["kube-ovn-controller"]))
    crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a")
    server.remove_finalizers("ips", "a")
    server.remove_finalizers("ips", "b")
    names = [i["metadata"]["name"] for i in crd.list_cluster_custom_object(*KUBEOVN, "ips")["items"]]
    assert names == ["b"]


def test_delete_of_builtin_returns_status(server: FakeApiServer, api: client.ApiClient) -> None:
    server.create("statefulsets", {"metadata": {"name": "s", "namespace": "ns"}, "spec": {"replicas": 1}})
    result = client.AppsV1Api(api).delete_namespaced_stateful_set("s", "ns")
    assert result["kind"] == "Status" and result["status"] == "Success"
    assert result["details"]["name"] == "s" and result["details"]["group"] == "apps"
    server.create("pods", pod("p"))
    assert client.CoreV1Api(api).delete_namespaced_pod("p", "default").metadata.name == "p"


def test_delete_collection_honours_selectors(server: FakeApiServer, core: client.CoreV1Api) -> None:
    server.create("pods", pod("a", app="x"))
    server.create("pods", pod("b", app="y"))
    core.delete_collection_namespaced_pod("default", label_selector="app=x")
    assert [p["metadata"]["name"] for p in server.list("pods")] == ["b"]


def test_dry_run_does_not_persist(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    server.create("ips", ip("a"))
    crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a", dry_run="All")
    crd.create_cluster_custom_object(*KUBEOVN, "ips", ip("b"), dry_run="All")
    assert [i["metadata"]["name"] for i in server.list("ips")] == ["a"]


# ---------------------------------------------------------------- other groups


def test_builtin_groups_round_trip(server: FakeApiServer, api: client.ApiClient) -> None:
    apps, coord = client.AppsV1Api(api), client.CoordinationV1Api(api)
    apps.create_namespaced_stateful_set("ns", {"metadata": {"name": "web"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "serviceName": "web",
        "template": {"metadata": {"labels": {"a": "b"}},
                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    sts = apps.list_stateful_set_for_all_namespaces().items
    assert [(s.metadata.namespace, s.metadata.name, s.spec.replicas) for s in sts] == [("ns", "web", 2)]
    lease = coord.create_namespaced_lease("kube-system", {"metadata": {"name": "gc"},
                                                          "spec": {"holderIdentity": "me"}})
    lease.spec.holder_identity = "you"
    replaced = coord.replace_namespaced_lease("gc", "kube-system", lease)
    assert replaced.spec.holder_identity == "you"
    client.EventsV1Api(api).create_namespaced_event("default", {
        "metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Collected",
        "action": "Delete", "reportingController": "kube-ovn-gc", "reportingInstance": "gc",
        "type": "Normal"})
    assert [e["metadata"]["name"] for e in server.list("events.events.k8s.io")] == ["e1"]
    assert server.list("events") == []  # core v1 events are stored apart
    server.create("nodes", {"metadata": {"name": "n1"}})
    assert [n.metadata.name for n in client.CoreV1Api(api).list_node().items] == ["n1"]


def test_virtual_machines_are_namespaced(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    server.create("virtualmachines", {"metadata": {"name": "vm1", "namespace": "ns"},
                                      "spec": {"runStrategy": "Halted"}})
    vms = crd.list_custom_object_for_all_namespaces("kubevirt.io", "v1", "virtualmachines")
    assert [(v["metadata"]["namespace"], v["metadata"]["name"]) for v in vms["items"]] == [("ns", "vm1")]
    assert vms["kind"] == "VirtualMachineList"
    got = crd.get_namespaced_custom_object("kubevirt.io", "v1", "ns", "virtualmachines", "vm1")
    assert got["kind"] == "VirtualMachine" and got["spec"] == {"runStrategy": "Halted"}


# ---------------------------------------------------------------- faults, hooks, log


def test_injected_500_fails_once(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    server.create("ips", ip("a"))
    server.inject("GET", r"/ips/a$", 500)
    with pytest.raises(ApiException) as exc:
        crd.get_cluster_custom_object(*KUBEOVN, "ips", "a")
    assert exc.value.status == 500 and status_of(exc)["reason"] == "InternalError"
    assert crd.get_cluster_custom_object(*KUBEOVN, "ips", "a")["metadata"]["name"] == "a"
    assert [r.status for r in server.requests] == [500, 200]


def test_injected_429_carries_retry_after(server: FakeApiServer, tmp_path: Path) -> None:
    server.create("ips", ip("a"))
    server.inject("DELETE", r"/ips/", 429, headers={"Retry-After": "1"}, times=2)
    with make_client(server, tmp_path, retries=0) as api:
        crd = client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as exc:
            crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a")
        assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "1"
        assert status_of(exc)["details"] == {"retryAfterSeconds": 1}
        assert status_of(exc)["reason"] == "TooManyRequests"
        with pytest.raises(ApiException):
            crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a")
        crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a")
    assert [r.status for r in server.requests] == [429, 429, 200]


def test_urllib3_default_retries_hide_429_on_idempotent_calls(server: FakeApiServer,
                                                              crd: client.CustomObjectsApi) -> None:
    """Not the fake's doing: urllib3's default Retry honours Retry-After for GET/PUT/DELETE."""
    server.create("ips", ip("a"))
    server.inject("GET", r"/ips/a$", 429, headers={"Retry-After": "0"})
    assert crd.get_cluster_custom_object(*KUBEOVN, "ips", "a")["metadata"]["name"] == "a"
    assert [r.status for r in server.requests] == [429, 200]
    server.inject("PATCH", r"/ips/a$", 429, headers={"Retry-After": "0"})
    with pytest.raises(ApiException) as exc:
        crd.patch_cluster_custom_object(*KUBEOVN, "ips", "a", {"spec": {"x": 1}})
    assert exc.value.status == 429


def test_inject_custom_body_and_method_wildcard(server: FakeApiServer, core: client.CoreV1Api) -> None:
    server.inject("*", r"^/api/v1/nodes$", 503, body={"kind": "Status", "code": 503, "message": "busy"},
                  times=None)
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            core.list_node(_request_timeout=5)
        assert exc.value.status == 503 and json.loads(exc.value.body)["message"] == "busy"


def test_before_hook_runs_just_before_the_request(server: FakeApiServer,
                                                  crd: client.CustomObjectsApi) -> None:
    seen: list[int] = []

    def create_owner(srv: FakeApiServer) -> None:
        seen.append(len(srv.requests))
        srv.create("ips", ip("late"))

    server.before("GET", r"/ips/late$", create_owner)
    assert crd.get_cluster_custom_object(*KUBEOVN, "ips", "late")["metadata"]["name"] == "late"
    with pytest.raises(ApiException):
        crd.get_cluster_custom_object(*KUBEOVN, "ips", "other")
    assert seen == [0]


def test_before_hook_may_answer_with_a_status(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    def deny(_: FakeApiServer) -> None:
        raise StatusError(403, 'ips.kubeovn.io "a" is forbidden')

    server.create("ips", ip("a"))
    server.before("DELETE", r"/ips/a$", deny, times=None)
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            crd.delete_cluster_custom_object(*KUBEOVN, "ips", "a")
        assert exc.value.status == 403 and status_of(exc)["reason"] == "Forbidden"
    assert server.get("ips", "a") is not None


def test_request_log_records_each_request(server: FakeApiServer, api: client.ApiClient) -> None:
    crd, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    server.create("subnets", subnet("s"))
    crd.list_cluster_custom_object(*KUBEOVN, "ips", label_selector="a=b", limit=10)
    crd.patch_cluster_custom_object_status(*KUBEOVN, "subnets", "s", {"status": {"v4usingIPs": 0}})
    core.create_namespaced_pod("ns1", pod("p", "ns1"))
    with pytest.raises(ApiException):
        core.delete_namespaced_pod("missing", "ns1")
    rows = [(r.method, r.verb, r.group, r.version, r.resource, r.subresource, r.namespace, r.name, r.status)
            for r in server.requests]
    assert rows == [
        ("GET", "list", "kubeovn.io", "v1", "ips", "", "", "", 200),
        ("PATCH", "patch", "kubeovn.io", "v1", "subnets", "status", "", "s", 200),
        ("POST", "create", "", "v1", "pods", "", "ns1", "", 201),
        ("DELETE", "delete", "", "v1", "pods", "", "ns1", "missing", 404),
    ]
    first = server.requests[0]
    assert first.path == "/apis/kubeovn.io/v1/ips" and first.query == {"labelSelector": "a=b", "limit": "10"}
    assert server.requests[1].content_type == "application/merge-patch+json"
    assert server.requests[1].body == {"status": {"v4usingIPs": 0}}
    assert server.requests[2].body == {"metadata": {"name": "p", "namespace": "ns1", "labels": {}},
                                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    server.reset_log()
    assert server.requests == []


# ---------------------------------------------------------------- wire details and the Python API


def test_every_response_is_json_and_needs_a_bearer_token(server: FakeApiServer) -> None:
    http = urllib3.PoolManager()
    try:
        for path in ["/api", "/apis/kubeovn.io/v1", "/apis/kubeovn.io/v1/ips", "/nope", "/version"]:
            resp = http.request("GET", server.url + path, headers={"Authorization": "Bearer anything"})
            assert resp.headers["Content-Type"] == "application/json"
            json.loads(resp.data)
        resp = http.request("GET", server.url + "/api/v1/pods")
        assert resp.status == 401 and resp.headers["Content-Type"] == "application/json"
        assert json.loads(resp.data)["reason"] == "Unauthorized"
    finally:
        http.clear()


def test_python_api_semantics(server: FakeApiServer) -> None:
    created = server.create("pods", pod("p"))
    assert created["kind"] == "Pod" and created["apiVersion"] == "v1"
    assert server.get("pods", "p", "default") == created and server.get("pods", "nope") is None
    rv = int(created["metadata"]["resourceVersion"])
    overwritten = server.put("pods", {**created, "spec": {"containers": []}})
    assert int(overwritten["metadata"]["resourceVersion"]) == rv + 1
    assert overwritten["metadata"]["uid"] == created["metadata"]["uid"]
    server.create("ips", ip("f", finalizers=["x"]))
    marked = server.delete("ips", "f")
    assert marked is not None and "deletionTimestamp" in marked["metadata"]
    assert server.get("ips", "f") is not None
    assert server.remove_finalizers("ips", "f") is not None and server.get("ips", "f") is None
    assert server.delete("ips", "f") is None
    server.create("ips", ip("plain"))
    rv = server.resource_version
    assert server.remove_finalizers("ips", "plain") is not None and server.resource_version == rv
    assert server.delete("pods", "p") is not None and server.list("pods") == []
    server.create("ips", ip("g"))
    with pytest.raises(StatusError, match="already exists"):
        server.create("ips", ip("g"))


def test_concurrent_writes_get_distinct_resource_versions(server: FakeApiServer, tmp_path: Path) -> None:
    def worker(n: int) -> None:
        (tmp_path / str(n)).mkdir()
        with make_client(server, tmp_path / str(n)) as api:
            crd = client.CustomObjectsApi(api)
            for i in range(5):
                crd.create_cluster_custom_object(*KUBEOVN, "ips", ip(f"w{n}-{i}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rvs = [i["metadata"]["resourceVersion"] for i in server.list("ips")]
    assert len(rvs) == 20 and len(set(rvs)) == 20


# ---------------------------------------------------------------- pods/log, RBAC-like refusals


def test_pod_log_whole_and_followed(server: FakeApiServer, core: client.CoreV1Api) -> None:
    server.create("pods", pod("p"), namespace="default")
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod_log("p", "default")
    assert exc.value.status == 400
    assert status_of(exc)["message"] == 'container "c" in pod "p" is waiting to start: ContainerCreating'
    running = server.get("pods", "p", "default")
    assert running is not None
    running["status"] = {"containerStatuses": [{"name": "c", "state": {"running": {}}}]}
    server.put("pods", running)
    server.write_log("default", "p", "c", "one\n")
    assert core.read_namespaced_pod_log("p", "default") == "one\n"
    stream = core.read_namespaced_pod_log("p", "default", follow=True, _preload_content=False)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(stream.stream(1)))
    reader.start()
    server.write_log("default", "p", "c", "two\n")
    reader.join(timeout=0.3)
    assert reader.is_alive(), "a followed log stays open until the container ends"
    server.close_log("default", "p", "c")
    reader.join(timeout=5)
    assert not reader.is_alive() and b"".join(got) == b"one\ntwo\n"
    stream.release_conn()
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod_log("p", "default", container="d")
    assert status_of(exc)["message"] == "container d is not valid for pod p"


def test_restricted_token_gets_kube_apiservers_403(server: FakeApiServer, tmp_path: Path) -> None:
    server.restrict("fake-token", "alice", lambda verb, group, resource, sub, ns, name: verb == "list")
    with make_client(server, tmp_path) as api:
        core = client.CoreV1Api(api)
        assert core.list_namespaced_pod("default").items == []
        with pytest.raises(ApiException) as exc:
            core.read_namespaced_pod_log("p", "kube-system")
        assert exc.value.status == 403
        assert status_of(exc)["message"] == ('pods "p" is forbidden: User "alice" cannot get resource "pods/log" '
                                             'in API group "" in the namespace "kube-system"')
        with pytest.raises(ApiException) as exc:
            client.BatchV1Api(api).create_namespaced_job("ci", {"metadata": {"name": "j"}})
        assert status_of(exc)["message"] == ('jobs.batch is forbidden: User "alice" cannot create resource "jobs" '
                                             'in API group "batch" in the namespace "ci"')
    assert [r.user for r in server.requests] == ["alice"] * 3


def test_watch_sends_what_changed_since_a_resource_version(server: FakeApiServer, tmp_path: Path) -> None:
    server.create("pods", pod("a"), namespace="default")
    since = server.resource_version
    server.create("pods", pod("b"), namespace="default")
    server.delete("pods", "a", "default")  # before the watch starts: from a tombstone
    http = urllib3.PoolManager()
    try:
        resp = http.request("GET", server.url + f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={since}"
                            "&timeoutSeconds=1", headers={"Authorization": "Bearer t"}, preload_content=False)
        assert resp.status == 200
        server.create("pods", pod("c"), namespace="default")
        events = [json.loads(line) for line in resp.read().splitlines()]
    finally:
        http.clear()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "b"), ("DELETED", "a"), ("ADDED", "c")]
