"""The Kubernetes adapter: read one consistent snapshot, then write a few guarded changes.

Reading lists every kind in pages (``limit`` + ``continue``, never
``resourceVersion=0``), takes each page as raw bytes, decodes it (pods and IP
CRs with msgspec into only the fields the job needs, see "fast decoding"; the
rest generically with msgspec, see :func:`loads`) and turns each item into the slim frozen objects of
:mod:`kube_ovn_gc.model` right away, so a page is dropped before the next one is
fetched. No typed Kubernetes models are built, and the generated API classes
are not used (see :class:`RawApi`).

Every library failure goes through :func:`translate_error`; every request
goes through :func:`kube_ovn_gc.retry.retrying`.

The package, by concern: :mod:`.client` (the ApiClient, raw requests, error translation, the
resources, the JSON codec), :mod:`.parse` (raw objects to model objects, checked), :mod:`.decode`
(list pages, the fast way for the big lists), :mod:`.read` (the snapshot), :mod:`.write` (guarded
writes). Every public name is importable from here.
"""

from __future__ import annotations

from .client import (
    IPS,
    IPTABLES_EIPS,
    METADATA_ONLY,
    NODES,
    OVN_EIPS,
    PODS,
    STATEFULSETS,
    SUBNETS,
    TOKEN_REFRESH_INTERVAL,
    VIPS,
    VMIS,
    VMS,
    Costs,
    RawApi,
    RejectedError,
    api_client,
    dumps,
    loads,
    translate_error,
)
from .identity import cluster_identity
from .parse import (
    MULTUS_ANNOTATION,
    NODE_ALLOCATED,
    RESERVED_LABEL,
    SUBNET_LABEL,
    OddAddressError,
    ParseError,
    Raw,
    Salvageable,
    Unparsed,
    object_name,
    parse_ip,
    parse_iptables_eip,
    parse_meta,
    parse_node,
    parse_ovn_eip,
    parse_pod,
    parse_statefulset,
    parse_subnet,
    parse_timestamp,
    parse_vip,
    parse_vm,
    parse_vmi,
)
from .read import (
    ACTIVE,
    FAILED,
    HOST_NETWORK,
    RESTART_POLICIES,
    SUCCEEDED,
    KubeReader,
    merge_pods,
    peek_continue,
)
from .write import (
    KubeWriter,
)

__all__ = [
    "ACTIVE",
    "FAILED",
    "HOST_NETWORK",
    "IPS",
    "IPTABLES_EIPS",
    "METADATA_ONLY",
    "MULTUS_ANNOTATION",
    "NODES",
    "NODE_ALLOCATED",
    "OVN_EIPS",
    "PODS",
    "RESERVED_LABEL",
    "RESTART_POLICIES",
    "STATEFULSETS",
    "SUBNETS",
    "SUBNET_LABEL",
    "SUCCEEDED",
    "TOKEN_REFRESH_INTERVAL",
    "VIPS",
    "VMIS",
    "VMS",
    "Costs",
    "KubeReader",
    "KubeWriter",
    "OddAddressError",
    "ParseError",
    "Raw",
    "RawApi",
    "RejectedError",
    "Salvageable",
    "Unparsed",
    "api_client",
    "cluster_identity",
    "dumps",
    "loads",
    "merge_pods",
    "object_name",
    "parse_ip",
    "parse_iptables_eip",
    "parse_meta",
    "parse_node",
    "parse_ovn_eip",
    "parse_pod",
    "parse_statefulset",
    "parse_subnet",
    "parse_timestamp",
    "parse_vip",
    "parse_vm",
    "parse_vmi",
    "peek_continue",
    "translate_error",
]
