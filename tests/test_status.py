"""Subnet status recomputation: hand-built snapshots, values worked out by hand."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_ovn_gc.model import STATUS_FIELDS, Eip, IpCR, KubeSnapshot, Meta, Subnet, Vip
from kube_ovn_gc.status import (
    SubnetStatus,
    canonical_range,
    compute_statuses,
    drift,
    format_address,
    parse_address,
    read_count,
    same_count,
    stored_count,
)

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def subnet(
    name: str = "s1",
    cidr: str = "10.0.0.0/24",
    gateway: str = "10.0.0.1",
    exclude: tuple[str, ...] = ("10.0.0.1",),
    status: dict[str, str] | None = None,
) -> Subnet:
    return Subnet(
        meta=Meta(name=name),
        cidr=cidr,
        protocol="",
        gateway=gateway,
        exclude_ips=exclude,
        provider="ovn",
        status=tuple((status or {}).items()),
    )


def ip(
    name: str,
    v4: str = "",
    v6: str = "",
    sub: str = "s1",
    attach: tuple[str, ...] = (),
    deleting: bool = False,
) -> IpCR:
    return IpCR(
        meta=Meta(name=name, deletion=NOW if deleting else None),
        pod_name=name,
        namespace="ns",
        subnet=sub,
        attach_subnets=attach,
        node_name="n1",
        v4=v4,
        v6=v6,
        mac="",
        pod_type="",
        reserved=False,
    )


def vip(name: str, v4: str, label: str = "s1", reserved: str | None = "") -> Vip:
    return Vip(
        meta=Meta(name=name),
        subnet=label,
        namespace="",
        type="",
        v4=v4,
        v6="",
        subnet_label=label,
        reserved_label=reserved,
    )


def eip(name: str, v4: str, kind: str, label: str = "s1") -> Eip:
    return Eip(meta=Meta(name=name), kind=kind, type="", v4=v4, v6="", subnet_label=label)


def one(kube: KubeSnapshot, name: str = "s1", released: tuple[str, ...] = ()) -> SubnetStatus:
    result = compute_statuses(kube, released)[name]
    assert isinstance(result, SubnetStatus), result
    return result


def v4_only(available: int, using: int, available_range: str, using_range: str) -> SubnetStatus:
    return SubnetStatus(available, using, available_range, using_range, 0, 0, "", "")


# --- counts and ranges, one rule per test -----------------------------------


def test_plain_v4_slash24() -> None:
    kube = KubeSnapshot(
        subnets=(subnet(),),
        ips=(ip("a", "10.0.0.10"), ip("b", "10.0.0.2"), ip("c", "10.0.0.3")),
    )
    # 254 usable (.1-.254), gateway .1 excluded, 3 in use
    assert one(kube) == v4_only(250, 3, "10.0.0.4-10.0.0.9,10.0.0.11-10.0.0.254", "10.0.0.2-10.0.0.3,10.0.0.10")


def test_dual_stack_counts_every_ip_cr_in_both_families() -> None:
    s = subnet(cidr="10.0.0.0/24,fd00::/120", gateway="10.0.0.1,fd00::1", exclude=("10.0.0.1", "fd00::1"))
    kube = KubeSnapshot(
        subnets=(s,),
        ips=(ip("a", "10.0.0.2", "fd00::2"), ip("b", "10.0.0.3", "fd00::3"), ip("c", "10.0.0.4")),
    )
    # "c" has no v6 address and still counts in v6 (Kube-OVN counts IP CRs, not addresses)
    assert one(kube) == SubnetStatus(
        250, 3, "10.0.0.5-10.0.0.254", "10.0.0.2-10.0.0.4", 250, 3, "fd00::4-fd00::fe", "fd00::2-fd00::3"
    )


def test_dual_stack_ip_cr_with_one_excluded_address_is_discounted_but_still_held() -> None:
    s = subnet(
        cidr="10.0.0.0/24,fd00::/120",
        gateway="10.0.0.1,fd00::1",
        exclude=("10.0.0.1", "fd00::1", "fd00::10..fd00::1f"),
    )
    kube = KubeSnapshot(subnets=(s,), ips=(ip("a", "10.0.0.2", "fd00::2"), ip("d", "10.0.0.5", "fd00::15")))
    # "d" has its v6 address in an exclude range: not counted anywhere, but the IPAM
    # holds its v4 address, so 10.0.0.5 stays in the v4 using range (as in Kube-OVN).
    # v6: 254 usable - 17 excluded - 1 using = 236
    assert one(kube) == SubnetStatus(
        252,
        1,
        "10.0.0.3-10.0.0.4,10.0.0.6-10.0.0.254",
        "10.0.0.2,10.0.0.5",
        236,
        1,
        "fd00::3-fd00::f,fd00::20-fd00::fe",
        "fd00::2",
    )


def test_slash31_has_two_addresses() -> None:
    kube = KubeSnapshot(subnets=(subnet(cidr="10.0.0.0/31", gateway="10.0.0.0", exclude=("10.0.0.0",)),))
    # both addresses usable, the gateway (the network address) excluded
    assert one(kube) == v4_only(1, 0, "10.0.0.1", "")


def test_slash32_has_one_address() -> None:
    # no gateway given: Kube-OVN's default (network + 1) lies outside a /32 and excludes nothing
    kube = KubeSnapshot(subnets=(subnet(cidr="10.0.0.5/32", gateway="", exclude=()),), ips=(ip("a", "10.0.0.5"),))
    assert one(kube) == v4_only(0, 1, "", "10.0.0.5")


def test_v6_slash120_drops_network_and_all_ones() -> None:
    s = subnet(cidr="fd00::/120", gateway="fd00::1", exclude=("fd00::1",))
    kube = KubeSnapshot(subnets=(s,), ips=(ip("a", v6="fd00::fe"),))
    # usable fd00::1-fd00::fe (254), gateway excluded, 1 in use
    assert one(kube) == SubnetStatus(0, 0, "", "", 252, 1, "fd00::2-fd00::fd", "fd00::fe")


def test_v6_slash64_is_counted_not_enumerated() -> None:
    kube = KubeSnapshot(subnets=(subnet(cidr="fd00:10:16::/64", gateway="fd00:10:16::1", exclude=()),))
    assert one(kube) == SubnetStatus(0, 0, "", "", 2**64 - 3, 0, "fd00:10:16::2-fd00:10:16:0:ffff:ffff:ffff:fffe", "")


def test_exclude_ips_single_and_range_with_ip_crs_inside_not_counted() -> None:
    s = subnet(exclude=("10.0.0.1", "10.0.0.5", "10.0.0.10..10.0.0.19"))
    kube = KubeSnapshot(subnets=(s,), ips=(ip("a", "10.0.0.2"), ip("b", "10.0.0.5"), ip("c", "10.0.0.15")))
    # excluded: .1, .5, .10-.19 = 12; only "a" counts: 254 - 12 - 1 = 241
    assert one(kube) == v4_only(241, 1, "10.0.0.3-10.0.0.4,10.0.0.6-10.0.0.9,10.0.0.20-10.0.0.254", "10.0.0.2")


def test_exclude_ranges_are_clipped_to_the_usable_addresses() -> None:
    s = subnet(cidr="10.0.0.0/28", exclude=("10.0.0.1", "9.255.255.250..10.0.0.3", "10.0.0.12..10.0.0.40"))
    # usable .1-.14 (14); excluded inside: .1-.3 and .12-.14 = 6
    assert one(KubeSnapshot(subnets=(s,))) == v4_only(8, 0, "10.0.0.4-10.0.0.11", "")


def test_gateway_is_excluded_even_when_not_listed() -> None:
    kube = KubeSnapshot(subnets=(subnet(cidr="10.0.0.0/28", gateway="", exclude=()),))
    # default gateway 10.0.0.1; usable .1-.14 (14) - 1 = 13
    assert one(kube) == v4_only(13, 0, "10.0.0.2-10.0.0.14", "")


def test_ip_cr_on_the_gateway_entry_still_counts() -> None:
    # Kube-OVN only discounts IP CRs inside *non-gateway* excludeIps entries
    kube = KubeSnapshot(subnets=(subnet(cidr="10.0.0.0/28"),), ips=(ip("a", "10.0.0.1"),))
    assert one(kube) == v4_only(12, 1, "10.0.0.2-10.0.0.14", "")


def test_only_unbound_vips_count() -> None:
    kube = KubeSnapshot(
        subnets=(subnet(),),
        vips=(
            vip("unbound", "10.0.0.20"),
            vip("reserved", "10.0.0.21", reserved="true"),
            vip("no-label", "10.0.0.22", reserved=None),
            vip("elsewhere", "10.0.0.23", label="s2"),
        ),
    )
    assert one(kube) == v4_only(252, 1, "10.0.0.2-10.0.0.19,10.0.0.21-10.0.0.254", "10.0.0.20")


def test_iptables_and_ovn_eips_count_by_label() -> None:
    s = subnet(name="ext", cidr="172.18.0.0/24", gateway="172.18.0.1", exclude=("172.18.0.1",))
    kube = KubeSnapshot(
        subnets=(s,),
        eips=(
            eip("e1", "172.18.0.10", "IptablesEIP", label="ext"),
            eip("e2", "172.18.0.11", "OvnEip", label="ext"),
            eip("e3", "172.18.0.12", "OvnEip", label="other"),
        ),
    )
    assert one(kube, "ext") == v4_only(
        251, 2, "172.18.0.2-172.18.0.9,172.18.0.12-172.18.0.254", "172.18.0.10-172.18.0.11"
    )


def test_attach_subnets_count_once_each() -> None:
    a = subnet(name="a")
    b = subnet(name="b", cidr="10.1.0.0/24", gateway="10.1.0.1", exclude=("10.1.0.1",))
    kube = KubeSnapshot(
        subnets=(a, b),
        ips=(ip("x", "10.0.0.2", sub="a", attach=("b",)), ip("y", "10.0.0.3", sub="a", attach=("a",))),
    )
    statuses = compute_statuses(kube, ())
    assert statuses["a"] == v4_only(251, 2, "10.0.0.4-10.0.0.254", "10.0.0.2-10.0.0.3")
    # "x" counts in "b" too; its address is not inside b's CIDR, so no range holds it
    assert statuses["b"] == v4_only(252, 1, "10.1.0.2-10.1.0.254", "")


def test_ip_crs_whose_address_does_not_parse_still_count() -> None:
    # Kube-OVN counts a Subnet's IP CRs whatever their address (calculateUsingIPs: len(podUsedIPs));
    # the reader hands them over as odd_ips with the addresses that do parse (none here).
    kube = KubeSnapshot(subnets=(subnet(),), ips=(ip("a", "10.0.0.2"),),
                        odd_ips=(ip("odd"), ip("gone-odd"), ip("dying-odd", deleting=True)))
    assert one(kube, released=("gone-odd",)) == v4_only(251, 2, "10.0.0.3-10.0.0.254", "10.0.0.2")


def test_terminating_and_released_ip_crs_not_counted() -> None:
    kube = KubeSnapshot(
        subnets=(subnet(),),
        ips=(ip("live", "10.0.0.2"), ip("terminating", "10.0.0.3", deleting=True), ip("gone", "10.0.0.4")),
    )
    assert one(kube, released=("gone",)) == v4_only(252, 1, "10.0.0.3-10.0.0.254", "10.0.0.2")


def test_available_floored_at_zero_and_duplicates_and_strays_count() -> None:
    kube = KubeSnapshot(
        subnets=(subnet(cidr="10.0.0.0/30"),),
        ips=(ip("a", "10.0.0.2"), ip("dup", "10.0.0.2"), ip("stray", "10.9.9.9"), ip("empty")),
    )
    # usable .1-.2, gateway excluded: 2 - 1 - 4 < 0
    assert one(kube) == v4_only(0, 4, "", "10.0.0.2")


def test_range_compression_format() -> None:
    addrs = ("10.0.0.9", "10.0.0.3", "10.0.0.6", "10.0.0.2", "10.0.0.8", "10.0.0.4")
    kube = KubeSnapshot(subnets=(subnet(),), ips=tuple(ip(f"p{i}", a) for i, a in enumerate(addrs)))
    status = one(kube)
    assert status.v4_using_range == "10.0.0.2-10.0.0.4,10.0.0.6,10.0.0.8-10.0.0.9"
    assert status.v4_available_range == "10.0.0.5,10.0.0.7,10.0.0.10-10.0.0.254"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fd00::", "fd00::"),
        ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  # first of two equal zero runs
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  # a single zero group stays
        ("::ffff:10.0.0.1", "10.0.0.1"),  # Go writes v4-mapped addresses as IPv4
        ("::1", "::1"),
    ],
)
def test_v6_addresses_written_as_go_does(text: str, expected: str) -> None:
    parsed = parse_address(text)
    assert parsed is not None
    assert format_address(*parsed) == expected


@pytest.mark.parametrize(
    ("field", "value", "reason_part"),
    [
        ("cidr", "10.0.0.0/33", "not a CIDR"),
        ("cidr", "10.0.0.0", "not a CIDR"),
        ("cidr", "", "not one CIDR"),
        ("cidr", "10.0.0.0/24,10.1.0.0/24", "two IPv4 blocks"),
        ("exclude", ("10.0.0.1", "10.0.0.300"), "not an address"),
        ("exclude", ("10.0.0.9..10.0.0.3",), "starts after it ends"),
        ("exclude", ("10.0.0.3..fd00::1",), "mixes IPv4 and IPv6"),
        ("gateway", "10.0.0.x", "not an IP address"),
    ],
)
def test_unreadable_subnet_gives_a_reason(field: str, value: object, reason_part: str) -> None:
    bad = subnet(name="bad")
    if field == "cidr":
        assert isinstance(value, str)
        bad = subnet(name="bad", cidr=value)
    elif field == "gateway":
        assert isinstance(value, str)
        bad = subnet(name="bad", gateway=value)
    else:
        assert isinstance(value, tuple)
        bad = subnet(name="bad", exclude=value)
    kube = KubeSnapshot(subnets=(bad, subnet()), ips=(ip("a", "10.0.0.2", sub="bad"), ip("b", "10.0.0.2")))
    statuses = compute_statuses(kube, ())
    assert isinstance(statuses["bad"], str)
    assert reason_part in statuses["bad"]
    assert statuses["s1"] == v4_only(252, 1, "10.0.0.3-10.0.0.254", "10.0.0.2")


# --- the interval arithmetic against brute force -----------------------------


def _brute_render(addresses: set[int]) -> str:
    items: list[str] = []
    for a in sorted(addresses):
        if items and a - 1 in addresses:
            items[-1] = items[-1].split("-")[0] + f"-10.0.0.{a}"
        else:
            items.append(f"10.0.0.{a}")
    return ",".join(items)


@settings(max_examples=300, deadline=None)
@given(
    excludes=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 8)), max_size=5),
    held=st.lists(st.integers(0, 40), max_size=20),
)
def test_ranges_and_counts_match_brute_force_on_a_slash27(excludes: list[tuple[int, int]], held: list[int]) -> None:
    # 10.0.0.0/27: usable .1-.30, gateway .1; excludes may run past the CIDR (up to .48)
    entries = tuple(f"10.0.0.{a}" if n == 0 else f"10.0.0.{a}..10.0.0.{a + n}" for a, n in excludes)
    kube = KubeSnapshot(
        subnets=(subnet(cidr="10.0.0.0/27", exclude=entries),),
        ips=tuple(ip(f"p{i}", f"10.0.0.{h}") for i, h in enumerate(held)),
    )
    usable = set(range(1, 31))
    excluded = {1} | {x for a, n in excludes for x in range(a, a + n + 1)}
    not_gateway = {x for a, n in excludes if (a, n) != (1, 0) for x in range(a, a + n + 1)}
    using = sum(1 for h in held if h not in not_gateway)
    assert one(kube) == v4_only(
        max(0, len(usable) - len(usable & excluded) - using),
        using,
        _brute_render(usable - excluded - set(held)),
        _brute_render((set(held) & usable) - excluded),
    )


# --- drift --------------------------------------------------------------------

PLAIN = v4_only(250, 3, "10.0.0.4-10.0.0.9,10.0.0.11-10.0.0.254", "10.0.0.2-10.0.0.3,10.0.0.10")
STORED = {
    "v4availableIPs": "250.0",
    "v4usingIPs": "3",
    "v4availableIPrange": "10.0.0.11-10.0.0.254,10.0.0.4-10.0.0.9",
    "v4usingIPrange": "10.0.0.10,10.0.0.3,10.0.0.2",
    "v6availableIPs": "0",
    "v6usingIPs": "0.0",
    "v6availableIPrange": "",
    "v6usingIPrange": "",
}


def test_as_fields_uses_the_status_json_names() -> None:
    fields = PLAIN.as_fields()
    assert tuple(fields) == STATUS_FIELDS
    assert fields["v4availableIPs"] == 250
    assert fields["v4usingIPrange"] == "10.0.0.2-10.0.0.3,10.0.0.10"


def test_no_drift_for_float_counts_and_equivalent_ranges() -> None:
    assert drift(subnet(status=STORED), PLAIN) == {}


def test_drift_lists_differing_fields_with_stored_text() -> None:
    stored = {**STORED, "v4usingIPs": "4", "v6usingIPs": "", "v4availableIPrange": "garbage"}
    assert drift(subnet(status=stored), PLAIN) == {
        "v4usingIPs": ("4", 3),
        "v6usingIPs": ("", 0),
        "v4availableIPrange": ("garbage", "10.0.0.4-10.0.0.9,10.0.0.11-10.0.0.254"),
    }


def test_huge_v6_count_stored_as_float_is_not_drift() -> None:
    s = subnet(cidr="fd00:10:16::/64", gateway="fd00:10:16::1", exclude=())
    computed = one(KubeSnapshot(subnets=(s,)))
    stored = {k: str(v) for k, v in computed.as_fields().items()}
    stored["v6availableIPs"] = "1.8446744073709552e+19"  # float64 as Kube-OVN <= 1.15 wrote it
    assert drift(subnet(cidr=s.cidr, gateway=s.gateway, exclude=(), status=stored), computed) == {}
    stored["v6availableIPs"] = "18446744073709551614"  # exact integer: off by one
    assert drift(subnet(cidr=s.cidr, gateway=s.gateway, exclude=(), status=stored), computed) == {
        "v6availableIPs": ("18446744073709551614", 2**64 - 3)
    }


def test_stale_float_count_that_fits_int64_is_drift() -> None:
    # A /66: 2^62 - 2 usable, - gateway - 1 IP CR. Kube-OVN <= 1.15 stored float64, which cannot hold it:
    # the nearest float64 is 2^62 exactly. That float is not the count: stale, rewritten as the exact
    # integer (which kube-apiserver keeps exactly, as an int64).
    s = subnet(cidr="fd00:10:16::/66", gateway="fd00:10:16::1", exclude=())
    computed = one(KubeSnapshot(subnets=(s,), ips=(ip("a", v6="fd00:10:16::5"),)))
    assert computed.v6_available == 2**62 - 4
    stored = {k: str(v) for k, v in computed.as_fields().items()}
    stored["v6availableIPs"] = repr(float(2**62 - 4))  # '4.611686018427388e+18'
    assert drift(subnet(cidr=s.cidr, gateway=s.gateway, exclude=(), status=stored), computed) == {
        "v6availableIPs": ("4.611686018427388e+18", 2**62 - 4)
    }
    stored["v6availableIPs"] = str(2**62 - 4)  # what the fix writes: no drift on the next pass
    assert drift(subnet(cidr=s.cidr, gateway=s.gateway, exclude=(), status=stored), computed) == {}


def test_counts_beyond_int64_compare_with_what_the_api_server_can_hold() -> None:
    # /56: 2^72 - 2 usable - gateway. kube-apiserver keeps an integer beyond int64 as the nearest float64,
    # served as Go writes it ("4722366482869645213696" below 1e21 is 'f' format, above it 'e').
    exact = 2**72 - 3
    assert stored_count(exact) == 2**72
    assert same_count("4.722366482869645e+21", exact)
    assert same_count("4722366482869645213696", exact)
    assert same_count(str(exact), exact)  # an exact integer is the count too
    assert not same_count("4.7223664828696e+21", exact)  # another float: stale
    assert not same_count(str(exact - 1), exact)
    assert stored_count(2**63 - 1) == 2**63 - 1 and stored_count(2**63) == 2**63


@pytest.mark.parametrize(("text", "value"), [
    ("10", 10), ("10.0", 10), (" 7 ", 7), ("1.8446744073709552e+19", 2**64), ("4722366482869645213693", 2**72 - 3),
    ("", None), ("10.5", None), ("nan", None), ("inf", None), ("ten", None),
])
def test_read_count_is_exact(text: str, value: int | None) -> None:
    assert read_count(text) == value


def test_counts_of_a_slash48_are_exact_integers() -> None:
    s = subnet(cidr="fd00:10::/48", gateway="fd00:10::1", exclude=("fd00:10::1", "fd00:10::100..fd00:10::1ff"))
    computed = one(KubeSnapshot(subnets=(s,), ips=(ip("a", v6="fd00:10::5"), ip("b", v6="fd00:10::150"))))
    assert computed.v6_available == 2**80 - 2 - 1 - 256 - 1
    assert computed.v6_using == 1 and type(computed.v6_available) is int


def test_canonical_range_merges_and_sorts() -> None:
    assert canonical_range("10.0.0.5,10.0.0.3-10.0.0.4,10.0.0.1") == "10.0.0.1,10.0.0.3-10.0.0.5"
    assert canonical_range("fd00::3, fd00::2") == "fd00::2-fd00::3"
    assert canonical_range("10.0.0.1,fd00::1") == "10.0.0.1,fd00::1"  # mixed: left as is
    assert canonical_range(" ") == ""


# --- scale ----------------------------------------------------------------------


def _v4(n: int, offset: int) -> str:
    return f"10.{n}.{offset >> 8}.{offset & 255}"


def test_100k_ip_crs_over_100_subnets_in_well_under_a_second() -> None:
    subnets = tuple(
        subnet(name=f"s{n}", cidr=f"10.{n}.0.0/16", gateway=f"10.{n}.0.1", exclude=(f"10.{n}.0.1",)) for n in range(100)
    )
    # every other address from .0.2 to .7.208: the worst shape for ranges (1000 items each)
    ips = tuple(ip(f"p{n}-{k}", _v4(n, 2 + 2 * k), sub=f"s{n}") for n in range(100) for k in range(1000))
    kube = KubeSnapshot(subnets=subnets, ips=ips)
    start = time.process_time()  # CPU time: other jobs on the machine do not count
    statuses = compute_statuses(kube, ())
    elapsed = time.process_time() - start
    assert elapsed < 1.0, elapsed
    s7 = statuses["s7"]
    assert isinstance(s7, SubnetStatus)
    assert (s7.v4_available, s7.v4_using, s7.v6_available, s7.v6_using) == (65534 - 1 - 1000, 1000, 0, 0)
    using = s7.v4_using_range.split(",")
    assert (len(using), using[0], using[1], using[-1]) == (1000, "10.7.0.2", "10.7.0.4", "10.7.7.208")
    free = s7.v4_available_range.split(",")
    # odd offsets 3..1999 one by one, then 2001 to the end
    assert (len(free), free[0], free[-2], free[-1]) == (1000, "10.7.0.3", "10.7.7.207", "10.7.7.209-10.7.255.254")
