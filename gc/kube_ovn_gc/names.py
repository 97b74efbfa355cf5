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
    """The Subnet named by ``mcast-querier.<subnet>`` or ``u2o-interconnection.<vpc>.<subnet>`` (the pattern only)."""
    if name.startswith(MCAST_PREFIX):
        return name[len(MCAST_PREFIX) :] or None
    if name.startswith(U2O_PREFIX):
        rest = name[len(U2O_PREFIX) :]
        _, dot, subnet = rest.partition(".")
        return subnet if dot and subnet else None
    return None


def subnet_owned(name: str, namespace: str, owner: str) -> str | None:
    """The Subnet that owns the multicast-querier or U2O address ``name``; None for anything else.

    ``namespace``/``owner`` are what the object says owns it: an IP CR's ``spec.namespace``/``spec.podName``,
    or the two halves of a port's ``pod`` external id. Kube-OVN writes these with the CR's own name as the
    owner, whatever the namespace: ``createOrUpdateIPCR("", name, ip, mac, subnet, "default", "", "")``
    (v1.13.0-v1.15.0 pkg/controller/subnet.go ``acquireMcastQuerierIP``, ``acquireU2OIP``; v1.16.0 the same
    with ``metav1.NamespaceDefault``; v1.12.0 pkg/controller/subnet.go ``createOrUpdateCrdIPs(u2oInterconnName,
    …, "default", …)`` for U2O, no querier yet), and the querier's LSP with ``pod=default/<name>``
    (``handleMcastQuerierChange`` → ``CreateLogicalSwitchPort(…, mcastQuerierLspName, "default", …)``).
    An object outside any namespace carries no workload either. A Pod ``mcast-querier`` in namespace ``x``
    has the same name ``mcast-querier.x`` but names itself, ``mcast-querier``, as the owner: a workload.
    """
    subnet = subnet_of_special(name)
    if subnet is None or (namespace and owner != name):
        return None
    return subnet


def is_ovn_provider(provider: str) -> bool:
    """Kube-OVN's ``util.IsOvnProvider`` (pkg/util/subnet.go, v1.13.0-v1.16.0): ``""``, ``ovn``, or three
    dot-separated fields with ``ovn`` last (``<nad>.<nadNs>.ovn``). ``mv1.ovn`` (an IPAM-only NAD in a
    namespace called ``ovn``) is not one."""
    if provider in ("", OVN_PROVIDER):
        return True
    fields = provider.split(".")
    return len(fields) == 3 and fields[2] == OVN_PROVIDER


def attachment_has_port(provider: str, subnet_provider: str | None = None) -> bool:
    """Whether Kube-OVN gives a pod attachment ``provider`` an LSP, not only an IP CR.

    Kube-OVN's ``isOVNProvided`` (pkg/controller/gc.go, v1.14.0-v1.16.0; v1.12.0 the same with a
    ``HasSuffix`` test) asks the Subnet named by the attachment's ``logical_switch`` annotation:
    ``IsOvnProvider(subnet.Spec.Provider)`` (``isOvnSubnet``); pass that Subnet's provider when it is known.
    Without it, the attachment's own provider decides, less the ``.<ifname>`` v1.16.0 appends when one NAD
    is attached twice (pkg/controller/pod.go ``getPodKubeovnNets``: ``<nad>.<ns>.ovn.<ifname>``, still an
    OVN attachment with its own LSP).
    """
    if subnet_provider is not None:
        return is_ovn_provider(subnet_provider)
    fields = provider.split(".")
    if len(fields) > 3 and fields[2] == OVN_PROVIDER:
        return True
    return is_ovn_provider(provider)


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
