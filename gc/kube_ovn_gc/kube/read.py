"""Reading: single-object reads (the second looks) and the paged, consistent lists of a snapshot."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Final, TypeVar

from kubernetes import client as k8s

from ..errors import (
    ConflictError,
    FatalError,
    GCError,
    NotFoundError,
)
from ..memory import gc_paused
from ..model import (
    IpCR,
    KubeSnapshot,
    KubevirtState,
    Node,
    Pod,
    StatefulSet,
    Subnet,
    VirtualMachine,
)
from ..retry import RetryPolicy, retrying
from ..settings import KubeSettings
from .client import (
    IPS,
    IPTABLES_EIPS,
    NODES,
    OVN_EIPS,
    PODS,
    STATEFULSETS,
    SUBNETS,
    VIPS,
    VMIS,
    VMS,
    RawApi,
    RejectedError,
    _ExpiredError,
    _Kind,
)
from .decode import _decode_page
from .parse import (
    ParseError,
    Salvageable,
    Unparsed,
    _vm_or_placeholder,
    object_name,
    parse_ip,
    parse_iptables_eip,
    parse_node,
    parse_ovn_eip,
    parse_pod,
    parse_statefulset,
    parse_subnet,
    parse_vip,
    parse_vm,
    parse_vmi,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class _KubeAccess:
    """What reader and writer share: the API, the retry policy, and single-object reads."""

    def __init__(self, client: k8s.ApiClient, settings: KubeSettings, retry: RetryPolicy) -> None:
        self._api = RawApi(client, timeout=settings.timeout if settings.timeout > 0 else None,
                           page_size=settings.page_size)
        self._retry = retry

    def _get(self, k: _Kind, parse: Callable[[Any], T], name: str, namespace: str = "") -> T | None:
        path = k.item_path(name, namespace)
        try:
            raw = retrying(self._retry, f"GET {path}", partial(self._api.get, k, name, namespace))
        except NotFoundError:
            return None
        try:
            return parse(raw)
        except ParseError as exc:
            # it parsed in the snapshot; someone changed it since: skip it, do not stop the pass
            raise ConflictError(f"{k.kind} {path} can no longer be parsed: {exc}") from exc

    def get_ip(self, name: str) -> IpCR | None:
        return self._get(IPS, parse_ip, name)

    def get_ip_manifest(self, name: str) -> tuple[IpCR, dict[str, Any]] | None:
        """The IP CR parsed, and its full manifest (for the undo record)."""
        path = IPS.item_path(name)
        try:
            raw = retrying(self._retry, f"GET {path}", partial(self._api.get, IPS, name))
        except NotFoundError:
            return None
        try:
            return parse_ip(raw), dict(raw)
        except ParseError as exc:
            raise ConflictError(f"IP {path} can no longer be parsed: {exc}") from exc

    def get_subnet(self, name: str) -> Subnet | None:
        return self._get(SUBNETS, parse_subnet, name)

    def get_pod(self, namespace: str, name: str) -> Pod | None:
        return self._get(PODS, parse_pod, name, namespace)

    def get_node(self, name: str) -> Node | None:
        return self._get(NODES, parse_node, name)

    def get_statefulset(self, namespace: str, name: str) -> StatefulSet | None:
        return self._get(STATEFULSETS, parse_statefulset, name, namespace)

    def get_vm(self, namespace: str, name: str) -> VirtualMachine | None:
        return self._get(VMS, parse_vm, name, namespace)

    def get_vmi(self, namespace: str, name: str) -> VirtualMachine | None:
        return self._get(VMIS, parse_vmi, name, namespace)


# --- reading ----------------------------------------------------------------


def _log_unparsed(unparsed: tuple[tuple[str, str, str], ...]) -> None:
    for kind, name, why in unparsed:
        log.warning("cannot parse %s %s: %s; leaving it alone", kind, name, why)


class KubeReader(_KubeAccess):
    """Reads the Kubernetes half of a snapshot: the owned IP CRs first, then their owners."""

    def __init__(self, client: k8s.ApiClient, settings: KubeSettings, retry: RetryPolicy) -> None:
        super().__init__(client, settings, retry)
        self._full_pods: str | None = None  # why pods are listed in full (a field selector was refused)

    def read_ips(self) -> tuple[IpCR, ...]:
        """Only the IP CRs that parse; unparsable ones are logged."""
        return self.read_counted_ips()[0]

    def read_counted_ips(self) -> tuple[tuple[IpCR, ...], tuple[IpCR, ...]]:
        """The IP CRs that parse, and those whose address does not (with the addresses that do): both count
        in their Subnet (for recomputing a subnet status after a conflict). Other unparsable ones are logged."""
        odd: list[IpCR] = []
        ips, unparsed = self._list(IPS, parse_ip, tolerate=True, salvage=odd)
        _log_unparsed(unparsed)
        return ips, tuple(odd)

    def read(self) -> KubeSnapshot:
        """The whole Kubernetes half of a snapshot: :meth:`read_owned`, then :meth:`read_owners`."""
        return self.read_owners(self.read_owned())

    def read_owned(self) -> KubeSnapshot:
        """The Subnets, then the IP CRs (a snapshot with only those). One after the other, never together:
        any IP, Vip or EIP change after the Subnet read makes the controller rewrite the Subnet's status,
        which bumps its resourceVersion, so our rv-guarded status patch gets a 409 instead of writing counts
        computed from a stale IP list."""
        with gc_paused():
            subnets, _ = self._list(SUBNETS, parse_subnet)
            odd_ips: list[IpCR] = []
            ips, unparsed = self._list(IPS, parse_ip, tolerate=True, salvage=odd_ips)
        return KubeSnapshot(ips=ips, subnets=subnets, unparsed=unparsed, odd_ips=tuple(odd_ips))

    def read_owners(self, owned: KubeSnapshot) -> KubeSnapshot:
        """Every owner kind, all at once, each still paged and consistent; ``owned`` completed with them.

        Call it only once the IP CRs (``owned``) and the NB ports are read completely: every address in
        the snapshot then existed before its owner was looked for, so an owner created since is found
        (kept), and an owner missing from these lists was gone when its address was already there. No
        owner kind depends on another, so reading them together changes no decision: it only takes the
        time of the longest (the pods) instead of the sum.
        """
        with gc_paused(), ThreadPoolExecutor(max_workers=6, thread_name_prefix="gc-owners") as pool:
            pods = pool.submit(self._read_pods)
            # Nodes metadata-only: a Node's decision is its name and an annotation (parse_node), and its status
            # (images, conditions) is most of its bytes.
            nodes = pool.submit(self._list, NODES, parse_node, metadata_only=True)
            statefulsets = pool.submit(self._list, STATEFULSETS, parse_statefulset)
            kubevirt = pool.submit(self._read_kubevirt)
            vips = pool.submit(self._list_optional, VIPS, parse_vip)
            eips = pool.submit(lambda: self._list_optional(IPTABLES_EIPS, parse_iptables_eip)
                               + self._list_optional(OVN_EIPS, parse_ovn_eip))
            state, vms, kubevirt_error, bad_vms = kubevirt.result()
            snapshot = dataclasses.replace(
                owned,
                pods=pods.result(),
                nodes=nodes.result()[0],
                statefulsets=statefulsets.result()[0],
                vms=vms,
                vips=vips.result(),
                eips=eips.result(),
                kubevirt=state,
                kubevirt_error=kubevirt_error,
                unparsed=owned.unparsed + bad_vms,
            )
        _log_unparsed(snapshot.unparsed)
        return snapshot

    def costs(self) -> dict[str, dict[str, float]]:
        """What this reader's requests cost so far, per kind (see :class:`.client.Costs`)."""
        return self._api.costs.as_dict()

    # -- pods, the big list: metadata-only, with small field-selected lists for what metadata lacks --------

    def _read_pods(self) -> tuple[Pod, ...]:
        """Every pod, read light (see :func:`merge_pods`) unless this server refused a field selector once:
        then, and from then on, the full list (logged once)."""
        if self._full_pods is None:
            try:
                return self._read_pods_light()
            except RejectedError as exc:
                self._full_pods = str(exc)
                log.warning("the API server refuses a pod field selector (%s): pods are listed in full", exc)
        return self._list(PODS, parse_pod)[0]

    def _read_pods_light(self) -> tuple[Pod, ...]:
        """The pods in lists that each take only what the decisions need (see :func:`merge_pods` for why the
        order is safe): the active pods metadata-only, the host-network pods metadata-only (both at once),
        then the ended ones: the Succeeded pods metadata-only, one list per restartPolicy (which names
        both), and the Failed pods (and Succeeded ones with any other restartPolicy: none, as kube-apiserver
        validates it) in full, for their reason. Every pod comes once, at its metadata's size, but for the
        few Failed ones. A list answered in full although asked for metadata only is used as it is."""
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="gc-pods") as pool:
            host = pool.submit(self._pod_list, HOST_NETWORK, metadata_only=True)
            active = self._pod_list(ACTIVE, metadata_only=True)
            # Only now: the ended pods are listed after every active one was (see merge_pods).
            ended = [pool.submit(self._pod_list, FAILED)]
            ended += [pool.submit(self._pod_list, f"{SUCCEEDED},spec.restartPolicy={policy}", metadata_only=True,
                                  phase="Succeeded", restart_policy=policy) for policy in RESTART_POLICIES]
            ended.append(pool.submit(self._pod_list, SUCCEEDED + "".join(
                f",spec.restartPolicy!={policy}" for policy in RESTART_POLICIES)))
            return merge_pods(active, [p for f in ended for p in f.result()], host.result())

    def _pod_list(self, selector: str, *, metadata_only: bool = False, phase: str = "",
                  restart_policy: str = "") -> tuple[Pod, ...]:
        """The pods ``selector`` takes; when served metadata-only, with the ``phase`` and ``restart_policy`` the
        selector says they have."""
        kinds: set[str] = set()
        pods, _ = self._list(PODS, parse_pod, selector=selector, metadata_only=metadata_only, kinds=kinds)
        if phase and kinds - _FULL_POD_LISTS:
            pods = tuple(dataclasses.replace(p, phase=phase, restart_policy=restart_policy)
                         if not p.phase else p for p in pods)
        return pods

    def _read_kubevirt(self) -> tuple[KubevirtState, tuple[VirtualMachine, ...], str, Unparsed]:
        """The VMs and VMIs, the state of the KubeVirt API, why it is unreadable (or ""), and the objects
        skipped: one VM that does not parse is skipped by name, not a reason to lose the list."""
        try:
            retrying(self._retry, "GET /apis/kubevirt.io/v1", partial(self._api.discover, "kubevirt.io", "v1"))
        except NotFoundError:
            log.info("KubeVirt API kubevirt.io/v1 is not served: no virtual machines")
            return KubevirtState.ABSENT, (), "", ()
        except GCError as exc:
            log.warning("KubeVirt API cannot be discovered (%s): protecting anything VM-like", exc)
            return KubevirtState.UNREADABLE, (), str(exc), ()
        placeholders: list[VirtualMachine] = []
        try:
            vms, bad_vms = self._list(VMS, _vm_or_placeholder(parse_vm, VMS.kind), tolerate=True,
                                      salvage=placeholders)
            vmis, bad_vmis = self._list(VMIS, _vm_or_placeholder(parse_vmi, VMIS.kind), tolerate=True,
                                        salvage=placeholders)
        except GCError as exc:
            log.warning("KubeVirt objects cannot be listed (%s): protecting anything VM-like", exc)
            return KubevirtState.UNREADABLE, (), str(exc), ()
        bad = bad_vms + bad_vmis
        if len(bad) > len(placeholders):
            why = (f"{len(bad) - len(placeholders)} KubeVirt object(s) cannot be parsed and have no readable name "
                   "and namespace to protect: " + "; ".join(f"{kind} {name!r}: {why}" for kind, name, why in bad))
            log.warning("%s: protecting anything VM-like", why)
            return KubevirtState.UNREADABLE, (), why, ()
        return KubevirtState.READ, vms + vmis + tuple(placeholders), "", bad

    def _list_optional(self, k: _Kind, parse: Callable[[Any], T]) -> tuple[T, ...]:
        """A list of a CRD that may not be installed: 404 means there are none."""
        try:
            items, _ = self._list(k, parse)
        except NotFoundError:
            log.info("%s is not served (CRD not installed): none", k.list_path())
            return ()
        return items

    def _list(
        self, k: _Kind, parse: Callable[[Any], T], *, tolerate: bool = False, salvage: list[Any] | None = None,
        selector: str = "", metadata_only: bool = False, kinds: set[str] | None = None,
    ) -> tuple[tuple[T, ...], tuple[tuple[str, str, str], ...]]:
        """Every object of a kind (that the field ``selector`` takes), in pages; restarted once from the start
        if a continue token expires.

        With ``tolerate``, objects that do not parse are returned as ``(kind, name, why)``; the
        ``salvaged`` part of those that carry one (:class:`Salvageable`) is appended to ``salvage``.
        ``metadata_only`` asks for a metadata-only list; the list kinds served are added to ``kinds``.
        """
        with gc_paused():
            try:
                return self._list_once(k, parse, tolerate, salvage, selector, metadata_only, kinds)
            except _ExpiredError as exc:
                log.warning("listing %s: %s; restarting the list from the beginning", k.list_path(), exc)
            if salvage is not None:
                salvage.clear()
            if kinds is not None:
                kinds.clear()
            return self._list_once(k, parse, tolerate, salvage, selector, metadata_only, kinds)

    def _list_once(
        self, k: _Kind, parse: Callable[[Any], T], tolerate: bool, salvage: list[Any] | None = None,
        selector: str = "", metadata_only: bool = False, kinds: set[str] | None = None,
    ) -> tuple[tuple[T, ...], tuple[tuple[str, str, str], ...]]:
        """Page by page, each page dropped before the next is decoded; the next page is asked for while
        this one is decoded (see :func:`peek_continue`)."""
        items: list[T] = []
        bad: list[tuple[str, str, str]] = []
        path = k.list_path()
        what = f"GET {path}" + (f"?fieldSelector={selector}" if selector else "") + (
            " (metadata only)" if metadata_only else "")

        def fetch(cont: str | None) -> bytes:
            return retrying(self._retry, what, partial(self._api.list_body, k, cont, selector=selector,
                                                       metadata_only=metadata_only))

        pages, started = 0, time.monotonic()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gc-next-page") as ahead:
            body = fetch(None)
            while True:
                pages += 1
                guess = peek_continue(body)
                upcoming = ahead.submit(fetch, guess) if guess else None
                page = _decode_page(k, body, path, parse)
                del body
                if kinds is not None:
                    kinds.add(page.kind)
                if page.parsed:
                    items.extend(page.items)
                else:
                    for raw in page.items:
                        try:
                            items.append(parse(raw))
                        except ParseError as exc:
                            if not tolerate:
                                raise FatalError(f"cannot parse {k.kind} {object_name(raw)!r}: {exc}") from exc
                            bad.append((k.kind, object_name(raw), str(exc)))
                            if salvage is not None and isinstance(exc, Salvageable):
                                salvage.append(exc.salvaged)
                token = page.token
                del page  # the raw dicts go before the next page is decoded
                if token is not None and not isinstance(token, str):
                    raise FatalError(f"GET {path}: metadata.continue is not a string")
                if upcoming is not None and token == guess:
                    body = upcoming.result()
                    continue
                if upcoming is not None:  # a wrong guess (never from kube-apiserver): wait it out, drop it
                    log.debug("GET %s: the peeked continue token was not the page's; fetching again", path)
                    with contextlib.suppress(GCError):
                        upcoming.result()
                if not token:
                    break
                body = fetch(token)
        log.info("listed %d %s%s in %d page(s) in %.2fs", len(items), k.plural,
                 f" ({selector})" if selector else " (metadata only)" if metadata_only else "", pages,
                 time.monotonic() - started)
        return tuple(items), tuple(bad)


HOST_NETWORK: Final = "spec.hostNetwork=true"
"""A pod field selector since Kubernetes 1.28 (kubernetes/kubernetes#110477); an older server answers 400."""
ACTIVE: Final = "status.phase!=Succeeded,status.phase!=Failed,spec.hostNetwork=false"
"""The pods whose phase never decides (Pending, Running, Unknown), host-network ones aside (field selectors
take no ``in``: the others are excluded instead)."""
SUCCEEDED: Final = "status.phase=Succeeded"
FAILED: Final = "status.phase=Failed"
RESTART_POLICIES: Final = ("Always", "OnFailure", "Never")
"""The values kube-apiserver admits (pkg/apis/core/validation ``validateRestartPolicy``; defaulted to Always)."""
_FULL_POD_LISTS: Final = frozenset({"PodList", ""})


def _pod_key(pod: Pod) -> tuple[str, str, str]:
    return pod.meta.namespace, pod.meta.name, pod.meta.uid


def merge_pods(active: Iterable[Pod], ended: Iterable[Pod], host: Iterable[Pod]) -> tuple[Pod, ...]:
    """The pods of a pass from lists that partition them by field selectors. Pure; the decisions on the
    result are those on a full list (tests/test_reads.py runs the planner on both).

    ``active``: the pods neither Succeeded nor Failed, nor host-network, metadata-only: phase, reason and
    restartPolicy left empty, and no rule reads them for such a pod (:func:`kube_ovn_gc.plan.pod_liveness`
    as Kube-OVN's ``isPodAlive``, pkg/controller/pod.go v1.12.0-v1.16.0, looks only at Succeeded and
    Failed). ``ended``: the Succeeded and Failed pods with their phase, restartPolicy and (Failed) reason.
    ``host``: the host-network pods, metadata-only, which own no address. A pod in two lists (the same
    namespace, name *and* uid: one recreated under its name is another pod) is taken from ``ended``,
    then marked host-network if it is in ``host``.

    Why lists taken at different moments make one snapshot: ``ended`` is listed after ``active`` (each
    list is a consistent snapshot of its own moment), and a pod only ever moves from active to ended
    (Succeeded and Failed are terminal). So a pod that existed when ``active`` was listed is in it, or was
    already ended and is in ``ended`` (unless deleted since: gone, as in a later full list); a pod that
    ended in between is in both and taken as ended, which it is. ``hostNetwork`` and ``restartPolicy``
    cannot change on a pod, so the host-network list may be taken at any moment. ``spec.nodeName`` is
    not read for pods: no rule uses it.
    """
    # What a dict of every pod by key would give (an ended pod in place of the active one, the others after;
    # a host-network pod marked in place, the others after; ``active``, one list, has each pod once), but only
    # the few ended and host-network pods are indexed: no key tuple and dict entry for each active pod (~16 MB at
    # 150k pods, when the most is held).
    later: dict[tuple[str, str, str], Pod] = {}
    for pod in ended:
        later[_pod_key(pod)] = pod
    hosts: dict[tuple[str, str, str], Pod] = {}
    for pod in host:
        hosts.setdefault(_pod_key(pod), pod)
    pods: list[Pod] = []
    taken: set[tuple[str, str, str]] = set()
    for pod in active:
        if later or hosts:
            key = _pod_key(pod)
            if key in later:
                pod = later[key]
                taken.add(key)
            if key in hosts:
                taken.add(key)
                pod = _on_host(pod)
        pods.append(pod)
    for key, pod in later.items():
        if key not in taken:
            taken.add(key)
            pods.append(_on_host(pod) if key in hosts else pod)
    pods.extend(_on_host(pod) for key, pod in hosts.items() if key not in taken)
    return tuple(pods)


def _on_host(pod: Pod) -> Pod:
    return pod if pod.host_network else dataclasses.replace(pod, host_network=True)


_CONTINUE_IN_HEAD: Final = re.compile(rb'"continue"\s*:\s*"([A-Za-z0-9+/=_.-]+)"')
_HEAD: Final = 4096


def peek_continue(body: bytes) -> str | None:
    """The continue token of a list answer, read from its head without decoding it; None if not there.

    kube-apiserver writes a list's ``metadata`` (with ``continue``) before its
    ``items``, so the token can be had at once and the next page asked for while
    this one is decoded: the server encodes page n+1 while we decode page n, on
    another core, and a large list costs about the larger of the two rather than
    their sum. Only the part before ``"items"`` is searched; a token that needs
    JSON unescaping is not guessed at. The decoded page's own token stays the
    authority: a guess that differs from it is dropped.
    """
    head = body[:_HEAD]
    items = head.find(b'"items"')
    if items < 0:
        return None
    found = _CONTINUE_IN_HEAD.search(head, 0, items)
    return found.group(1).decode("ascii") if found else None

