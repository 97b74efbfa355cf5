"""RBAC as kube-apiserver evaluates it, for the rules that ``cronjob.yaml`` grants the job.

``load_cluster_role`` collects every rule the manifest grants the job's
ServiceAccount: a ClusterRole bound by a ClusterRoleBinding applies everywhere;
a Role (or a ClusterRole) bound by a RoleBinding applies in that namespace only.
``allowed`` answers like the RBAC authorizer: verb, API group and
``resource[/subresource]`` must match, a rule with ``resourceNames`` matches
only requests that name one of them (so never ``create`` or ``list``), and a
namespaced rule matches only requests in its namespace.

``required_permissions`` turns the fake API server's request log into what the
job needs; ``granted_permissions`` lists what the rules give, to show nothing
is granted that is never used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fakeapi import RequestRecord

Permission = tuple[str, str, str]
"""(verb, API group, ``resource`` or ``resource/subresource``)."""

SERVICE_ACCOUNT = ("kube-system", "kube-ovn-gc")


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    resource_names: frozenset[str] = frozenset()
    namespace: str | None = None  # None: cluster-wide (ClusterRoleBinding)
    source: str = ""  # "ClusterRole/kube-ovn-gc", for messages

    def matches(self, verb: str, group: str, resource: str, namespace: str = "", name: str = "") -> bool:
        if self.namespace is not None and namespace != self.namespace:
            return False
        if self.resource_names and name not in self.resource_names:
            return False
        return (_has(self.verbs, verb) and _has(self.api_groups, group) and _has(self.resources, resource))


def _has(values: frozenset[str], value: str) -> bool:
    return value in values or "*" in values


def load_manifests(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def _binds_job(binding: dict[str, Any], service_account: tuple[str, str]) -> bool:
    ns, name = service_account
    return any(s.get("kind") == "ServiceAccount" and s.get("name") == name and s.get("namespace") == ns
               for s in binding.get("subjects") or ())


def load_cluster_role(path: str | Path, service_account: tuple[str, str] = SERVICE_ACCOUNT) -> list[Rule]:
    """Every rule the manifest grants ``service_account`` (namespace, name), scoped by its binding."""
    docs = load_manifests(path)
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    rules: list[Rule] = []
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding") or not _binds_job(binding, service_account):
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        role_ns = scope if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        if role is None:
            raise ValueError(f"{binding['kind']}/{binding['metadata']['name']} refers to {ref['kind']}/"
                             f"{ref['name']}, which the manifest does not define")
        for r in role.get("rules") or ():
            if r.get("nonResourceURLs"):
                raise ValueError(f"{ref['kind']}/{ref['name']}: nonResourceURLs are not expected")
            rules.append(Rule(frozenset(r.get("verbs") or ()), frozenset(r.get("apiGroups") or ()),
                              frozenset(r.get("resources") or ()), frozenset(r.get("resourceNames") or ()),
                              scope, f"{ref['kind']}/{ref['name']}"))
    return rules


def allowed(rules: Iterable[Rule], verb: str, group: str, resource: str, subresource: str = "", *,
            namespace: str = "", name: str = "") -> bool:
    """Whether any rule allows the request (RBAC has no deny rules)."""
    full = f"{resource}/{subresource}" if subresource else resource
    return any(rule.matches(verb, group, full, namespace, name) for rule in rules)


def request_allowed(rules: Iterable[Rule], r: RequestRecord) -> bool:
    return allowed(rules, r.verb, r.group, r.resource, r.subresource, namespace=r.namespace, name=r.name)


def _is_resource_request(r: RequestRecord) -> bool:
    """Discovery (``/api``, ``/apis/kubevirt.io/v1``) and ``/version`` are non-resource requests that
    every authenticated user may make (``system:discovery``): they need nothing from our roles."""
    return bool(r.resource)


def required_permissions(requests: Iterable[RequestRecord]) -> set[Permission]:
    """(verb, group, resource[/subresource]) of every resource request, whatever its answer was:
    authorization comes before the handler, so a 404 or an injected 500 still needed the permission."""
    return {(r.verb, r.group, f"{r.resource}/{r.subresource}" if r.subresource else r.resource)
            for r in requests if _is_resource_request(r)}


def denied_requests(rules: Iterable[Rule], requests: Iterable[RequestRecord]) -> list[RequestRecord]:
    """The resource requests the rules would have refused (403 on a real cluster)."""
    rules = list(rules)
    return [r for r in requests if _is_resource_request(r) and not request_allowed(rules, r)]


def granted_permissions(rules: Iterable[Rule]) -> set[Permission]:
    """(verb, group, resource) of every combination the rules spell out; wildcards are refused."""
    out: set[Permission] = set()
    for rule in rules:
        for values in (rule.verbs, rule.api_groups, rule.resources):
            if "*" in values:
                raise ValueError(f"{rule.source}: wildcard in {sorted(values)}: grant exact verbs and resources")
        out |= {(v, g, res) for v in rule.verbs for g in rule.api_groups for res in rule.resources}
    return out
