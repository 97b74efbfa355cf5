"""The narrow interfaces the pass needs from its two back ends."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from .model import IpCR, KubeSnapshot, NbSnapshot, Node, Pod, Port, PortUUID, StatefulSet, Subnet, VirtualMachine


class Northbound(Protocol):
    def lsp_list(self, *, addresses: bool = True) -> NbSnapshot:
        """Every port; without ``addresses``, each port's left empty (:meth:`lsp_addresses` reads them)."""
        ...

    def lsp_addresses(self, uuids: Iterable[PortUUID]) -> Mapping[PortUUID, tuple[str, ...]]:
        """The ``addresses`` of these ports (absent ones left out)."""
        ...

    def lsp_get(self, uuids: Iterable[PortUUID]) -> Mapping[PortUUID, Any]:
        """Full rows of these ports with their switch (for the undo record)."""
        ...

    def lsp_del(self, ports: Sequence[Port]) -> Mapping[PortUUID, str]:
        """Per port: "done", "gone" (already absent: success) or "changed" (left alone)."""
        ...

    def lsp_add(self, switch_name: str, row: Mapping[str, Any]) -> PortUUID:
        """Put a row :meth:`lsp_get` returned back into its switch (ConflictError: the name exists)."""
        ...


class KubeReads(Protocol):
    def read(self) -> KubeSnapshot: ...

    def read_ips(self) -> tuple[IpCR, ...]: ...

    def read_counted_ips(self) -> tuple[tuple[IpCR, ...], tuple[IpCR, ...]]:
        """The IP CRs that parse, and those that count in their Subnet although their address does not."""
        ...

    def get_subnet(self, name: str) -> Subnet | None: ...


class KubeWrites(Protocol):
    """Guarded writes, and the single-object reads of the second look."""

    def get_ip_manifest(self, name: str) -> tuple[IpCR, dict[str, Any]] | None: ...

    def get_pod(self, namespace: str, name: str) -> Pod | None: ...

    def get_vm(self, namespace: str, name: str) -> VirtualMachine | None: ...

    def get_vmi(self, namespace: str, name: str) -> VirtualMachine | None: ...

    def get_statefulset(self, namespace: str, name: str) -> StatefulSet | None: ...

    def get_node(self, name: str) -> Node | None: ...

    def get_subnet(self, name: str) -> Subnet | None: ...

    def release_finalizers(self, manifest: dict[str, Any], finalizers: Collection[str]) -> str: ...

    def delete_ip(self, ip: IpCR) -> tuple[str, dict[str, Any] | None]:
        """("done", the manifest as deleted) or ("gone", None); ConflictError when a precondition fails."""
        ...

    def patch_subnet_status(self, subnet: Subnet, fields: dict[str, int | str]) -> None: ...
