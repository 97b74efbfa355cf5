"""Writing: guarded deletes, finalizer releases, restores and Subnet status patches."""

from __future__ import annotations

import copy
from collections.abc import Collection
from functools import partial
from typing import Any

from ..errors import (
    NotFoundError,
)
from ..model import (
    IpCR,
    Subnet,
)
from ..retry import retrying
from .client import IPS, SUBNETS
from .read import _KubeAccess

# --- writing and second looks -----------------------------------------------


class KubeWriter(_KubeAccess):
    """Guarded writes; the inherited ``get_*`` give the second look before a write."""

    def delete_ip(self, ip: IpCR) -> tuple[str, dict[str, Any] | None]:
        """Delete an IP CR if it still has the uid and resourceVersion of the snapshot.

        Returns ``("done", manifest)`` (deleted, or now terminating behind its finalizer;
        the manifest as the API server answered, for the undo record) or ``("gone", None)``
        (404: already deleted — success). A precondition that does not hold raises
        :class:`ConflictError`.
        """
        what = f"DELETE {IPS.item_path(ip.meta.name)}"
        call = partial(self._api.delete_cluster_object, IPS, ip.meta.name, ip.meta.uid, ip.meta.resource_version)
        try:
            answer = retrying(self._retry, what, call)
        except NotFoundError:
            return "gone", None
        return "done", answer if isinstance(answer, dict) and answer.get("kind") == "IP" else None

    def release_finalizers(self, manifest: dict[str, Any], finalizers: Collection[str]) -> str:
        """Drop ``finalizers`` from a (terminating) IP CR with a PUT guarded by its resourceVersion.

        Returns "done" or "gone" (404); a stale resourceVersion raises :class:`ConflictError`.
        """
        meta = manifest.get("metadata") or {}
        name = str(meta.get("name", ""))
        body = copy.deepcopy(manifest)
        body["metadata"]["finalizers"] = [f for f in meta.get("finalizers") or [] if f not in finalizers]
        what = f"PUT {IPS.item_path(name)}"
        try:
            retrying(self._retry, what, partial(self._api.replace_cluster_object, IPS, name, body))
        except NotFoundError:
            return "gone"
        return "done"

    def create_ip(self, manifest: dict[str, Any]) -> None:
        """Create an IP CR (restore); an existing name raises :class:`ConflictError` (409 AlreadyExists)."""
        name = str((manifest.get("metadata") or {}).get("name", ""))
        retrying(self._retry, f"POST {IPS.list_path()} {name}", partial(self._api.create_cluster_object, IPS, manifest))

    def patch_subnet_status(self, subnet: Subnet, fields: dict[str, int | str]) -> None:
        """Merge-patch the status subresource, guarded by the snapshot's resourceVersion (409 → ConflictError)."""
        body: dict[str, Any] = {
            "metadata": {"resourceVersion": subnet.meta.resource_version},
            "status": dict(fields),
        }
        what = f"PATCH {SUBNETS.item_path(subnet.meta.name)}/status"
        retrying(self._retry, what, partial(self._api.merge_patch_cluster_status, SUBNETS, subnet.meta.name, body))
