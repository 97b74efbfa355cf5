"""Kube-OVN naming rules (DESIGN.md §1), pure."""

from __future__ import annotations

import json

from .model import PortName

OVN_PROVIDER = "ovn"
NODE_PREFIX = "node-"
MCAST_PREFIX = "mcast-querier."
U2O_PREFIX = "u2o-interconnection."
NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"


def port_name(owner: str, namespace: str, provider: str = OVN_PROVIDER) -> PortName:
    """``PodNameToPortName``: ``<owner>.<ns>`` for ``ovn``, else ``<owner>.<ns>.<provider>``."""
    if not provider or provider == OVN_PROVIDER:
        return PortName(f"{owner}.{namespace}")
    return PortName(f"{owner}.{namespace}.{provider}")


def node_port_name(node: str) -> PortName:
    return PortName(f"{NODE_PREFIX}{node}")


def node_of_port(name: str) -> str | None:
    """``node-<n>`` without a dot names node ``<n>`` (as Kube-OVN's gcNode reads it)."""
    if name.startswith(NODE_PREFIX) and "." not in name:
        return name[len(NODE_PREFIX) :]
    return None


def subnet_of_special(name: str) -> str | None:
    """The Subnet that owns ``mcast-querier.<subnet>`` or ``u2o-interconnection.<vpc>.<subnet>``."""
    if name.startswith(MCAST_PREFIX):
        return name[len(MCAST_PREFIX) :] or None
    if name.startswith(U2O_PREFIX):
        rest = name[len(U2O_PREFIX) :]
        _, dot, subnet = rest.partition(".")
        return subnet if dot and subnet else None
    return None


def split_ordinal(pod_name: str) -> tuple[str, int] | None:
    """``db-3`` → ``("db", 3)``; None when there is no numeric ``-N`` suffix."""
    base, dash, num = pod_name.rpartition("-")
    if not dash or not base or not num.isdigit():
        return None
    return base, int(num)


def nad_provider(name: str, namespace: str) -> str:
    """The provider of a Kube-OVN NAD attachment: ``<nad>.<nadNs>.ovn``."""
    return f"{name}.{namespace}.{OVN_PROVIDER}"


def parse_network_selection(raw: str, default_namespace: str) -> list[tuple[str, str, str]]:
    """Parse the Multus ``k8s.v1.cni.cncf.io/networks`` annotation.

    Returns ``(namespace, name, interface)`` triples. Accepts the JSON list form
    and the comma-separated ``[ns/]name[@ifname]`` form. Raises ``ValueError``
    on a value neither form can read.
    """
    text = raw.strip()
    if not text:
        return []
    out: list[tuple[str, str, str]] = []
    if text.startswith("["):
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("networks annotation is not a list")
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise ValueError(f"bad network selection element {item!r}")
            ns = item.get("namespace") or default_namespace
            iface = item.get("interface") or ""
            out.append((str(ns), item["name"], str(iface)))
        return out
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        ref, _, iface = part.partition("@")
        ns, slash, name = ref.partition("/")
        if not slash:
            ns, name = default_namespace, ref
        if not name or not ns:
            raise ValueError(f"bad network selection {part!r}")
        out.append((ns, name, iface))
    return out


def split_network_name(network_name: str, default_namespace: str) -> tuple[str, str]:
    """``ns/name`` or bare ``name`` (in the VM's namespace) → ``(ns, name)``."""
    ns, slash, name = network_name.partition("/")
    if slash:
        return ns, name
    return default_namespace, network_name
