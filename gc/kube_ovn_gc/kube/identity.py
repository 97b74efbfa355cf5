"""Which cluster the pass talks to: the uid of namespace ``kube-system``, and the API server's URL.

``kube-system`` is created with the cluster and cannot be deleted (kube-apiserver refuses to delete it:
``pkg/registry/core/namespace/storage``'s immortal namespaces, and the ``NamespaceLifecycle`` admission
plugin), so its uid names the cluster for as long as it lives; one GET, ~1 ms. Recorded in every pass
report, so that ``run --from-report`` can refuse a report made on another cluster. Needs ``get`` on
``namespaces`` named ``kube-system`` (cronjob.yaml grants it).
"""

from __future__ import annotations

from functools import partial

import kubernetes.client as k8s

from ..errors import FatalError
from ..model import ClusterIdentity
from ..retry import RetryPolicy, retrying
from ..settings import KubeSettings
from .client import RawApi

NAMESPACE = "kube-system"
PATH = f"/api/v1/namespaces/{NAMESPACE}"


def cluster_identity(client: k8s.ApiClient, settings: KubeSettings, retry: RetryPolicy) -> ClusterIdentity:
    """The identity, or a GCError (translated, after retries) when namespace kube-system cannot be read."""
    api = RawApi(client, timeout=settings.timeout if settings.timeout > 0 else None)
    obj = retrying(retry, f"GET {PATH}", partial(api.request, "GET", PATH))
    uid = ((obj.get("metadata") or {}).get("uid") if isinstance(obj, dict) else None)
    if not isinstance(uid, str) or not uid:
        raise FatalError(f"GET {PATH}: the answer has no metadata.uid")
    return ClusterIdentity(uid, str(client.configuration.host))
