"""The narrow interfaces the pass needs from its two back ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from .model import IpCR, KubeSnapshot, NbSnapshot, Port, PortUUID, Subnet


class Northbound(Protocol):
    def lsp_list(self) -> NbSnapshot: ...

    def lsp_del(self, ports: Sequence[Port]) -> Mapping[PortUUID, str]:
        """Per port: "done", "gone" (already absent: success) or "changed" (left alone)."""
        ...


class KubeReads(Protocol):
    def read(self) -> KubeSnapshot: ...

    def read_ips(self) -> tuple[IpCR, ...]: ...

    def get_subnet(self, name: str) -> Subnet | None: ...


class KubeWrites(Protocol):
    def delete_ip(self, ip: IpCR) -> str:
        """ "done", or "gone" when already absent; ConflictError when a precondition fails."""
        ...

    def patch_subnet_status(self, subnet: Subnet, fields: dict[str, int | str]) -> None: ...
