"""Recompute the address fields of a Kube-OVN Subnet's status (DESIGN.md §5).

Pure: a :class:`~kube_ovn_gc.model.KubeSnapshot` and the names of the IP CRs
this pass deletes go in, one :class:`SubnetStatus` (or the reason it cannot
be computed) per Subnet comes out. Nothing here reads or writes anything.

What Kube-OVN's controller does (``calcSubnetStatusIP`` and its IPAM), and
what this module does the same way:

- **using** counts IP CRs of the subnet (``spec.subnet`` or ``attachSubnets``)
  one each, whatever addresses they hold — an IP CR of a dual-stack subnet
  with only one family, an address outside the CIDR, an address that does not
  parse at all (``KubeSnapshot.odd_ips``) and two CRs with the same address
  all count — minus those with an address inside a non-gateway
  ``excludeIps`` entry (the entry as written, not clipped to the CIDR); plus
  unbound Vips, IptablesEIPs and OvnEips labelled with the subnet. Dual stack
  reports the same number for both families.
- **available** = usable addresses of the CIDR - excluded addresses inside
  them (the gateway is always excluded) - using, floored at 0.
- **ranges** are the sets the IPAM would hold: using = addresses of what is
  counted, within the usable part of the CIDR, minus every exclude (gateway
  included); available = usable - excludes - those addresses. Items are
  ``a`` or ``a-b``, ascending, comma-joined, adjacent ranges merged.

Where it differs on purpose: IP CRs that are terminating or deleted by this
pass are not counted (DESIGN.md §5), and overlapping ``excludeIps`` entries
are counted once (the controller sums entries, but it de-overlaps them when it
formats the Subnet, so the results agree on any Subnet it has formatted).

Everything is integer interval arithmetic; no range is enumerated address by
address. Addresses are converted with :func:`socket.inet_pton` /
:func:`socket.inet_ntop`: pure string/bytes conversions (no socket is opened),
about fifteen times faster than :mod:`ipaddress`, which matters at 100k IPs.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton

from .model import STATUS_FIELDS, KubeSnapshot, Subnet

Interval = tuple[int, int]
"""An inclusive ``(first, last)`` range of addresses as integers."""

Addr = tuple[int, int]
"""``(family, address)``: family 4 or 6, the address as an integer."""

_V4_MAPPED = 0xFFFF


@dataclass(frozen=True, slots=True)
class SubnetStatus:
    """The eight address fields of a Subnet's status, as this pass computes them."""

    v4_available: int
    v4_using: int
    v4_available_range: str
    v4_using_range: str
    v6_available: int
    v6_using: int
    v6_available_range: str
    v6_using_range: str

    def as_fields(self) -> dict[str, int | str]:
        """The status fields under their JSON names, in ``STATUS_FIELDS`` order."""
        values: tuple[int | str, ...] = (
            self.v4_available,
            self.v4_using,
            self.v4_available_range,
            self.v4_using_range,
            self.v6_available,
            self.v6_using,
            self.v6_available_range,
            self.v6_using_range,
        )
        return dict(zip(STATUS_FIELDS, values, strict=True))


# --- addresses and intervals ------------------------------------------------


def parse_address(text: str) -> Addr | None:
    """``(family, integer)`` of one IPv4/IPv6 address, or None if it is not one."""
    s = text.strip()
    if not s:
        return None
    try:
        if ":" in s:
            return 6, int.from_bytes(inet_pton(AF_INET6, s), "big")
        return 4, int.from_bytes(inet_pton(AF_INET, s), "big")
    except (OSError, ValueError):
        return None


def format_address(family: int, value: int) -> str:
    """The address as Go's ``net.IP.String`` writes it (what Kube-OVN stores)."""
    return _format_v4(value) if family == 4 else _format_v6(value)


def _format_v4(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _format_v6(value: int) -> str:
    if value >> 48:
        return inet_ntop(AF_INET6, value.to_bytes(16, "big"))
    # Within ::/80 inet_ntop writes embedded-IPv4 forms; Go writes a v4-mapped
    # address as plain IPv4 and everything else in hex.
    if value >> 32 == _V4_MAPPED:
        return _format_v4(value & 0xFFFFFFFF)
    return str(ipaddress.IPv6Address(value))


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping, with adjacent intervals joined."""
    out: list[Interval] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _runs(points: Iterable[int]) -> list[Interval]:
    """Distinct addresses folded into maximal runs of consecutive ones."""
    out: list[Interval] = []
    start = prev = -2
    for p in sorted(set(points)):
        if p != prev + 1:
            if prev >= 0:
                out.append((start, prev))
            start = p
        prev = p
    if prev >= 0:
        out.append((start, prev))
    return out


def _start(interval: Interval) -> int:
    return interval[0]


def _end(interval: Interval) -> int:
    return interval[1]


def _clip(intervals: Sequence[Interval], lo: int, hi: int) -> list[Interval]:
    """The part of merged ``intervals`` within ``[lo, hi]``; only the two ends are touched."""
    first = bisect_left(intervals, lo, key=_end)
    last = bisect_right(intervals, hi, key=_start)
    out = list(intervals[first:last])
    if out:
        if out[0][0] < lo:
            out[0] = (lo, out[0][1])
        if out[-1][1] > hi:
            out[-1] = (out[-1][0], hi)
    return out


def _subtract(base: Sequence[Interval], cut: Sequence[Interval]) -> list[Interval]:
    """Merged ``base`` minus merged ``cut``.

    Walks ``cut`` and bisects into ``base``, copying untouched stretches of
    ``base`` whole, so a few excludes cost little against a long list.
    """
    out: list[Interval] = []
    i, n = 0, len(base)
    pending: Interval | None = None  # the tail of a base interval the last cut ended inside
    for lo, hi in cut:
        if pending is not None:
            if pending[1] < lo:
                out.append(pending)
                pending = None
            else:
                if pending[0] < lo:
                    out.append((pending[0], lo - 1))
                pending = (hi + 1, pending[1]) if pending[1] > hi else None
                if pending is not None:
                    continue
        k = bisect_left(base, lo, i, n, key=_end)
        out.extend(base[i:k])
        i = k
        while i < n and base[i][0] <= hi:
            b_lo, b_hi = base[i]
            i += 1
            if b_lo < lo:
                out.append((b_lo, lo - 1))
            if b_hi > hi:
                pending = (hi + 1, b_hi)
                break
    if pending is not None:
        out.append(pending)
    out.extend(base[i:])
    return out


def _size(intervals: Iterable[Interval]) -> int:
    return sum(hi - lo + 1 for lo, hi in intervals)


def _render(family: int, intervals: Iterable[Interval]) -> str:
    """Kube-OVN's ``IPRangeList.String``: ``a`` or ``a-b`` items, comma-joined."""
    fmt = _format_v4 if family == 4 else _format_v6
    return ",".join([fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}" for lo, hi in intervals])


# --- one subnet's layout ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Block:
    """One CIDR block of a subnet with its excludes resolved."""

    family: int
    usable: Interval  # the addresses the IPAM hands out, before excludes
    excluded: tuple[Interval, ...]  # every excludeIps entry plus the gateway, merged, unclipped


@dataclass(frozen=True, slots=True)
class _Layout:
    blocks: tuple[_Block, ...]
    # merged non-gateway excludeIps entries per family, for "is this IP CR excluded"
    not_gateway: dict[int, tuple[Interval, ...]]
    not_gateway_starts: dict[int, tuple[int, ...]]


def _usable(network: int, host_bits: int) -> Interval:
    if host_bits >= 2:  # minus network and broadcast (for IPv6: the all-ones address)
        return network + 1, network + (1 << host_bits) - 2
    return network, network + (1 << host_bits) - 1  # /31 (/127) has 2, /32 (/128) has 1


def _first_ip(network: int, host_bits: int) -> int:
    """Kube-OVN's default gateway for a block (``util.FirstIP``)."""
    return network if host_bits == 1 else network + 1


def _layout(subnet: Subnet) -> _Layout | str:
    """The subnet's blocks and excludes, or why they cannot be read."""
    cidrs = [c.strip() for c in subnet.cidr.split(",") if c.strip()]
    if not 1 <= len(cidrs) <= 2:
        return f"cidrBlock {subnet.cidr!r} is not one CIDR or a v4,v6 pair"
    networks: dict[int, tuple[int, int]] = {}  # family -> (network, host bits)
    for cidr in cidrs:
        try:
            if not cidr.partition("/")[2].isdigit():  # Go's ParseCIDR wants a prefix length
                raise ValueError(cidr)
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return f"cidrBlock {subnet.cidr!r}: {cidr!r} is not a CIDR"
        if net.version in networks:
            return f"cidrBlock {subnet.cidr!r} has two IPv{net.version} blocks"
        networks[net.version] = int(net.network_address), net.max_prefixlen - net.prefixlen

    gateways: dict[int, int] = {}
    for text in subnet.gateway.split(","):
        if not text.strip():
            continue
        gw = parse_address(text)
        if gw is None:
            return f"gateway {subnet.gateway!r}: {text.strip()!r} is not an IP address"
        if gw[0] in gateways:
            return f"gateway {subnet.gateway!r} has two IPv{gw[0]} addresses"
        gateways[gw[0]] = gw[1]
    for family, (network, host_bits) in networks.items():
        gateways.setdefault(family, _first_ip(network, host_bits))

    entries: dict[int, list[Interval]] = {4: [], 6: []}
    not_gateway: dict[int, list[Interval]] = {4: [], 6: []}
    for entry in subnet.exclude_ips:
        parts = entry.split("..")
        first, last = parse_address(parts[0]), parse_address(parts[-1])
        if len(parts) > 2 or first is None or last is None:
            return f"excludeIps entry {entry!r} is not an address or an a..b range"
        if first[0] != last[0]:
            return f"excludeIps entry {entry!r} mixes IPv4 and IPv6"
        if first[1] > last[1]:
            return f"excludeIps entry {entry!r} starts after it ends"
        family, interval = first[0], (first[1], last[1])
        entries[family].append(interval)
        if not (len(parts) == 1 and gateways.get(family) == first[1]):
            not_gateway[family].append(interval)

    blocks = tuple(
        _Block(
            family=family,
            usable=_usable(network, host_bits),
            excluded=tuple(_merge([*entries[family], (gateways[family], gateways[family])])),
        )
        for family, (network, host_bits) in sorted(networks.items())
    )
    merged = {family: tuple(_merge(ivs)) for family, ivs in not_gateway.items()}
    return _Layout(
        blocks=blocks,
        not_gateway=merged,
        not_gateway_starts={family: tuple(lo for lo, _ in ivs) for family, ivs in merged.items()},
    )


def _inside(starts: tuple[int, ...], intervals: tuple[Interval, ...], value: int) -> bool:
    i = bisect_right(starts, value) - 1
    return i >= 0 and value <= intervals[i][1]


# --- the pass -------------------------------------------------------------------


def _parse_as(text: str, family: int) -> Addr | None:
    """:func:`parse_address`, trying the family the field is meant to hold first."""
    try:
        return family, int.from_bytes(inet_pton(AF_INET if family == 4 else AF_INET6, text), "big")
    except (OSError, ValueError):
        return parse_address(text)  # padded, or the other family


def _addresses(v4: str, v6: str) -> tuple[Addr, ...]:
    """The parseable addresses of a ``v4``/``v6`` field pair."""
    first = _parse_as(v4, 4) if v4 else None
    second = _parse_as(v6, 6) if v6 else None
    if second is None:
        return () if first is None else (first,)
    return (second,) if first is None else (first, second)


class _Tally:
    """What a Subnet holds, counted as the IP CRs, Vips and EIPs go by: the using count and every address (a
    plain int each; not a tuple of tuples an IP CR: ~100 bytes less an address, 20 MB at 150k IP CRs)."""

    __slots__ = ("layout", "points", "using")

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        self.using = 0
        self.points: dict[int, list[int]] = {4: [], 6: []}

    def add_ip(self, addrs: tuple[Addr, ...]) -> None:
        """An IP CR: counted unless an address of it is in a non-gateway ``excludeIps`` entry."""
        layout = self.layout
        excludes = layout.not_gateway
        any_excludes = bool(excludes[4] or excludes[6])
        excluded = False
        for family, value in addrs:
            self.points[family].append(value)
            if any_excludes and _inside(layout.not_gateway_starts[family], excludes[family], value):
                excluded = True
        if not excluded:
            self.using += 1

    def add_other(self, addrs: tuple[Addr, ...]) -> None:
        """A Vip or an EIP: never discounted."""
        self.using += 1
        for family, value in addrs:
            self.points[family].append(value)


def _status(tally: _Tally) -> SubnetStatus:
    layout, using, points = tally.layout, tally.using, tally.points

    fields: dict[int, tuple[int, int, str, str]] = {4: (0, 0, "", ""), 6: (0, 0, "", "")}
    for block in layout.blocks:
        lo, hi = block.usable
        held = _runs(points[block.family])
        free = _subtract(_subtract([block.usable], block.excluded), held)
        in_use = _subtract(_clip(held, lo, hi), block.excluded)
        available = (hi - lo + 1) - _size(_clip(block.excluded, lo, hi)) - using
        fields[block.family] = (
            max(available, 0),
            using,
            _render(block.family, free),
            _render(block.family, in_use),
        )
    return SubnetStatus(*fields[4], *fields[6])


def compute_statuses(kube: KubeSnapshot, released: Collection[str]) -> dict[str, SubnetStatus | str]:
    """Each Subnet's status as it should read once ``released`` IP CRs are gone.

    One pass over IP CRs, Vips and EIPs. IP CRs named in ``released`` (deleted
    by this pass) or already terminating are not counted. A Subnet whose
    CIDR, gateway or excludeIps cannot be read maps to the reason, as a str.
    """
    gone = released if isinstance(released, (set, frozenset)) else frozenset(released)
    layouts = {s.meta.name: _layout(s) for s in kube.subnets}
    ips = {n: _Tally(lay) for n, lay in layouts.items() if not isinstance(lay, str)}

    for ip in itertools.chain(kube.ips, kube.odd_ips):  # an address that does not parse still counts, as in Kube-OVN
        if ip.meta.deletion is not None or ip.meta.name in gone:
            continue
        if ip.attach_subnets:
            targets = [n for n in dict.fromkeys((ip.subnet, *ip.attach_subnets)) if n in ips]
        else:
            targets = [ip.subnet] if ip.subnet in ips else []
        if targets:
            addrs = _addresses(ip.v4, ip.v6)
            for name in targets:
                ips[name].add_ip(addrs)
    for vip in kube.vips:
        if vip.reserved_label == "" and vip.subnet_label in ips:
            ips[vip.subnet_label].add_other(_addresses(vip.v4, vip.v6))
    for eip in kube.eips:
        if eip.subnet_label in ips:
            ips[eip.subnet_label].add_other(_addresses(eip.v4, eip.v6))

    return {name: layout if isinstance(layout, str) else _status(ips[name]) for name, layout in layouts.items()}


# --- comparing with what is stored -------------------------------------------


INT64_MAX = (1 << 63) - 1


def stored_count(count: int) -> int:
    """The value kube-apiserver keeps when ``count`` is written into a Subnet's status.

    A custom resource's JSON is decoded by kube-apiserver into ``int64`` where an
    integer fits, else into ``float64`` (k8s.io/apimachinery/pkg/util/json.Unmarshal ->
    sigs.k8s.io/json UnmarshalCaseSensitivePreserveInts: "falling back to float64 on any
    parse or overflow error"), and stored and served from that. So an exact count beyond
    int64 (every IPv6 /64 or wider: 2^64 - 2 - ...) is kept as the float64 nearest to it,
    whoever writes it: Kube-OVN v1.16 (``internal.BigInt``) or this job.
    """
    if -INT64_MAX - 1 <= count <= INT64_MAX:
        return count
    return int(float(count))


def read_count(stored: str) -> int | None:
    """A stored JSON number (``10``, ``10.0``, ``1.8446744073709552e+19``) as the exact integer it is,
    or None: absent, unreadable, or not a whole number (a float is taken at its exact value)."""
    text = stored.strip()
    if not text:
        return None  # absent: the controller has never written it
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or not value.is_integer():
        return None
    return int(value)  # exact: every finite float64 is a dyadic rational, a whole one an exact int


def same_count(stored: str, computed: int) -> bool:
    """Is the stored count the exact count, as far as kube-apiserver can hold it?

    Compared exactly, never through a float: Kube-OVN <= v1.15 stored float64
    (``V6AvailableIPs float64``, pkg/apis/kubeovn/v1/subnet.go at v1.14.0/v1.15.0,
    types.go at v1.12.0/v1.13.0), so ``4.611686018427388e+18`` where the exact count
    is 2^62 - 4 is stale when the exact count fits in int64 (a /65 or narrower) and is
    rewritten. Beyond int64 the API server itself keeps only the nearest float64
    (:func:`stored_count`): that one value stands for the exact count too (rewriting it
    would store the same float again, and the pass would never converge); any other is stale.
    """
    value = read_count(stored)
    return value is not None and (value == computed or value == stored_count(computed))


def canonical_range(text: str) -> str:
    """A stored range string re-rendered (sorted, merged); unreadable text is returned as is."""
    if not text.strip():
        return ""
    family = 0
    intervals: list[Interval] = []
    for item in text.split(","):
        parts = item.split("-")
        first, last = parse_address(parts[0]), parse_address(parts[-1])
        if len(parts) > 2 or first is None or last is None or first[0] != last[0] or first[1] > last[1]:
            return text
        if family and first[0] != family:
            return text
        family = first[0]
        intervals.append((first[1], last[1]))
    return _render(family, _merge(intervals))


def drift(subnet: Subnet, computed: SubnetStatus) -> dict[str, tuple[object, object]]:
    """``{field: (stored, computed)}`` for each status field that differs.

    ``stored`` is the text as stored ("" when absent). Counts compare as exact
    integers (:func:`same_count`: "10.0" equals 10; absent differs from everything); ranges compare
    after :func:`canonical_range`, so an equivalent ordering is not drift.
    """
    out: dict[str, tuple[object, object]] = {}
    for key, value in computed.as_fields().items():
        stored = subnet.status_value(key)
        same = same_count(stored, value) if isinstance(value, int) else canonical_range(stored) == value
        if not same:
            out[key] = (stored, value)
    return out
