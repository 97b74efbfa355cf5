"""The OVN Northbound adapter against a real ovsdb-server (and one scripted peer for framing)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kube_ovn_gc import ovn
from kube_ovn_gc.errors import ConfigError, ConflictError, FatalError, NotFoundError, TransientError
from kube_ovn_gc.model import Port, PortName, PortUUID
from kube_ovn_gc.ovn import OvsdbNorthbound, parse_remotes, wire
from kube_ovn_gc.retry import RetryPolicy
from kube_ovn_gc.settings import NbSettings
from ovsdb import OvsdbServer, encode_map

ONCE = RetryPolicy(attempts=1)
TWICE = RetryPolicy(attempts=2, initial_delay=0.01)
KUBE_OVN = {"vendor": "kube-ovn"}


def connect(*remotes: str, retry: RetryPolicy = ONCE, tls: dict[str, str] | None = None) -> OvsdbNorthbound:
    tls = tls or {}
    settings = NbSettings(
        remotes=remotes,
        timeout=10.0,
        private_key=tls.get("private_key"),
        certificate=tls.get("certificate"),
        ca_cert=tls.get("ca_cert"),
    )
    return OvsdbNorthbound(settings, retry)


def pod_port(name: str, switch: str = "ovn-default") -> dict[str, Any]:
    pod, _, ns = name.partition(".")
    return {
        "name": name,
        "external_ids": {"vendor": "kube-ovn", "ls": switch, "pod": f"{ns}/{pod}"},
        "addresses": ["00:00:00:aa:bb:cc 10.16.0.5"],
    }


def by_name(ports: Any) -> dict[str, Any]:
    if ports and isinstance(ports[0], Port):
        return {p.name: p for p in ports}
    return {p["name"]: p for p in ports}


@pytest.fixture
def cluster(nb_server: OvsdbServer) -> OvsdbServer:
    """Kube-OVN switches and ports next to rows that belong to somebody else."""
    nb_server.add_switch("ovn-default", {"vendor": "kube-ovn"})
    nb_server.add_switch("join", {"vendor": "kube-ovn"})
    nb_server.add_switch("neutron-6b1c", {"neutron:network_name": "private"})
    nb_server.add_ports("ovn-default", [pod_port("a.default"), pod_port("b.default"), pod_port("c.kube-system")])
    nb_server.add_ports(
        "ovn-default",
        [
            {
                "name": "ovn-default-ovn-cluster",
                "type": "router",
                "options": {"router-port": "ovn-cluster-ovn-default"},
                "addresses": "router",
            },
        ],
    )
    # node ports carry no `ls` and no `pod` external id
    nb_server.add_ports(
        "join", [{"name": "node-n1", "external_ids": KUBE_OVN, "addresses": ["00:00:00:11:22:33 100.64.0.2"]}]
    )
    nb_server.add_ports(
        "neutron-6b1c",
        [
            {
                "name": "6f0e2c1a-neutron-port",
                "external_ids": {"neutron:device_owner": "compute:nova"},
                "addresses": ["fa:16:3e:00:00:01 192.168.0.10"],
            }
        ],
    )
    return nb_server


# --- parse_remotes and settings ----------------------------------------------


def test_parse_remotes_accepts_the_ovn_nbctl_forms() -> None:
    assert parse_remotes(
        " tcp:10.0.0.1:6641, tcp:[fd00::1]:6641,ssl:ovn-nb.kube-system:6641,unix:/run/ovn/nb.sock"
    ) == (
        "tcp:10.0.0.1:6641",
        "tcp:[fd00::1]:6641",
        "ssl:ovn-nb.kube-system:6641",
        "unix:/run/ovn/nb.sock",
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        " , ",
        "http://10.0.0.1:6641",
        "ptcp:6641",
        "punix:/run/ovn/nb.sock",
        "tcp:10.0.0.1",
        "tcp::6641",
        "tcp:::1:6641",
        "tcp:[::1]",
        "tcp:[::1]6641",
        "tcp:[not-v6]:6641",
        "tcp:10.0.0.1:0",
        "tcp:10.0.0.1:65536",
        "tcp:10.0.0.1:http",
        "tcp:300.1.1.1:6641",
        "tcp:bad_host:6641",
        "unix:",
        "tcp:10.0.0.1:6641,udp:10.0.0.2:6641",
    ],
)
def test_parse_remotes_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="NB remote"):
        parse_remotes(text)


def test_settings_with_a_bad_remote_are_refused_before_connecting() -> None:
    with pytest.raises(ConfigError, match=re.escape("bad NB remote 'tcp:10.0.0.1'")):
        connect("tcp:10.0.0.1")


def test_ssl_remote_needs_the_three_tls_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="private key"):
        connect("ssl:127.0.0.1:6641")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    key.write_text("k")
    cert.write_text("c")
    with pytest.raises(ConfigError, match="CA certificate"):
        connect("ssl:127.0.0.1:6641", tls={"private_key": str(key), "certificate": str(cert)})
    with pytest.raises(ConfigError, match=r"CA certificate '.*/ca.pem' is missing or unreadable"):
        tls = {"private_key": str(key), "certificate": str(cert), "ca_cert": str(tmp_path / "ca.pem")}
        connect("ssl:127.0.0.1:6641", tls=tls)


# --- lsp_list ---------------------------------------------------------------------


def test_lsp_list_gives_every_port_with_the_switch_that_holds_it(cluster: OvsdbServer) -> None:
    switches = {s["name"]: s["uuid"] for s in cluster.switches()}
    truth = by_name(cluster.ports())
    with connect(cluster.unix_remote) as nb:
        snap = nb.lsp_list()
    ports = by_name(snap.ports)
    assert snap.switch_count == 3
    assert (
        set(ports)
        == set(truth)
        == {
            "a.default",
            "b.default",
            "c.kube-system",
            "ovn-default-ovn-cluster",
            "node-n1",
            "6f0e2c1a-neutron-port",
        }
    )
    for name, port in ports.items():
        assert port.uuid == truth[name]["uuid"]
        assert port.switch == truth[name]["switch"]
        assert port.switch_uuid == switches[port.switch]
    node = ports["node-n1"]
    assert (node.switch, node.external_id("ls"), node.external_id("pod")) == ("join", "", "")
    assert ports["6f0e2c1a-neutron-port"].switch == "neutron-6b1c"


def test_lsp_list_takes_the_switch_from_ports_not_from_the_ls_external_id(nb_server: OvsdbServer) -> None:
    nb_server.add_switch("ovn-default")
    nb_server.add_switch("subnet-b")
    nb_server.add_ports("subnet-b", [pod_port("moved.default", switch="ovn-default")])
    with connect(nb_server.unix_remote) as nb:
        (port,) = nb.lsp_list().ports
    assert (port.name, port.switch, port.external_id("ls")) == ("moved.default", "subnet-b", "ovn-default")


def test_lsp_list_decodes_ovsdb_sets_and_maps(nb_server: OvsdbServer) -> None:
    sw = nb_server.add_switch("s1")
    nb_server.add_ports(
        "s1",
        [
            {"name": "none", "addresses": []},
            {"name": "one", "addresses": "00:00:00:00:00:01 10.0.0.1", "external_ids": {"vendor": "kube-ovn"}},
            {
                "name": "two",
                "addresses": ["unknown", "dynamic"],
                "type": "localnet",
                "external_ids": {"vendor": "kube-ovn", "pod": "ns/two", "ls": "s1", "attach-vips": "a,b"},
            },
        ],
    )
    with connect(nb_server.unix_remote) as nb:
        ports = by_name(nb.lsp_list().ports)
    assert ports["none"].addresses == ()
    assert ports["none"].external_ids == ()
    assert ports["none"].type == ""
    assert ports["one"].addresses == ("00:00:00:00:00:01 10.0.0.1",)
    assert ports["one"].external_ids == (("vendor", "kube-ovn"),)
    assert sorted(ports["two"].addresses) == ["dynamic", "unknown"]
    assert ports["two"].type == "localnet"
    assert dict(ports["two"].external_ids) == {"vendor": "kube-ovn", "pod": "ns/two", "ls": "s1", "attach-vips": "a,b"}
    assert {p.switch_uuid for p in ports.values()} == {sw}


def test_lsp_list_without_addresses_reads_less_and_lsp_addresses_reads_them_for_some_ports(
        nb_server: OvsdbServer) -> None:
    nb_server.add_switch("s1")
    nb_server.add_ports("s1", [{"name": "none", "addresses": []},
                               {"name": "one", "addresses": "00:00:00:00:00:01 10.0.0.1"},
                               {"name": "two", "addresses": ["unknown", "dynamic"]}])
    with connect(nb_server.unix_remote) as nb:
        full = nb.lsp_list()
        full_bytes = nb.list_bytes
        light = nb.lsp_list(addresses=False)
        light_bytes = nb.list_bytes
        assert (nb.list_requests, light_bytes < full_bytes) == (1, True)
        assert [dataclasses.replace(p, addresses=()) for p in full.ports] == list(light.ports)
        by_uuid = {p.uuid: p.addresses for p in full.ports}
        nb.lsp_del([p for p in light.ports if p.name == "none"])
        got = nb.lsp_addresses([p.uuid for p in light.ports])
        assert nb.list_requests == 2 and nb.list_bytes > light_bytes  # added to what the list cost
    assert got == {u: a for u, a in by_uuid.items() if a != ()}  # the deleted port is left out
    assert sorted(got[next(p.uuid for p in full.ports if p.name == "two")]) == ["dynamic", "unknown"]


def test_a_reply_left_undecoded_points_into_bytes_that_never_change() -> None:
    """The rows of lsp_list's reply stay undecoded (msgspec.Raw) until each Port is built: the bytes under them must
    be the connection's buffer only when it gives that buffer up (the reply is all of it), else a copy."""
    reply = b'{"id": 7, "result": [{"rows": [{"name": "a"}]}], "error": null}'
    buf = bytearray(reply)
    (msg,) = wire._parse(buf, 0, len(buf), "test", whole=False, raw=True)
    assert isinstance(msg["result"], msgspec.Raw) and (msg["id"], msg["error"]) == (7, None)
    assert bytes(msg["result"]) == b'[{"rows": [{"name": "a"}]}]'
    probe = b'{"id": "echo", "method": "echo", "params": []}'
    buf = bytearray(probe + b"\n" + reply)
    (msg,) = wire._parse(buf, len(probe) + 1, len(buf), "test", whole=False, raw=True)
    buf[:] = b"x" * len(buf)  # the connection compacts or reuses its buffer: the copy is not touched
    assert msgspec.json.decode(msg["result"]) == [{"rows": [{"name": "a"}]}]
    with pytest.raises(wire._IncompleteError):
        wire._parse(bytearray(reply[:-5]), 0, len(reply) - 5, "test", whole=False, raw=True)
    spaced = bytearray(probe + b" " * 100 + reply)  # two messages the boundary search cannot split: the plain way
    first, second = wire._parse(spaced, 0, len(spaced), "test", whole=True, raw=True)
    assert (first["method"], second["result"]) == ("echo", [{"rows": [{"name": "a"}]}])


def test_lsp_list_of_an_empty_database(nb_server: OvsdbServer) -> None:
    with connect(nb_server.unix_remote) as nb:
        snap = nb.lsp_list()
    assert (snap.ports, snap.switch_count) == ((), 0)


# --- lsp_del ---------------------------------------------------------------------------


def test_lsp_del_deletes_in_batches_and_touches_nothing_else(cluster: OvsdbServer) -> None:
    many = [pod_port(f"p{i}.load") for i in range(2 * ovn.BATCH_SIZE + 500)]
    cluster.add_ports("ovn-default", many)
    # a port group weakly referencing one victim and one survivor, and an ACL on it
    truth = by_name(cluster.ports())
    cluster.transact(
        [
            {
                "op": "insert",
                "table": "ACL",
                "uuid-name": "acl",
                "row": {"priority": 1000, "direction": "to-lport", "match": "ip4", "action": "allow"},
            },
            {
                "op": "insert",
                "table": "Port_Group",
                "row": {
                    "name": "pg_any",
                    "acls": ["named-uuid", "acl"],
                    "ports": ["set", [["uuid", truth["p0.load"]["uuid"]], ["uuid", truth["a.default"]["uuid"]]]],
                },
            },
        ]
    )
    before = {t: cluster.rows(t) for t in ("Logical_Switch_Port", "Logical_Switch", "ACL", "Port_Group")}
    with connect(cluster.unix_remote) as nb:
        victims = [p for p in nb.lsp_list().ports if p.name.endswith(".load")]
        assert len(victims) == len(many)
        outcome = nb.lsp_del(victims)
    assert outcome == {p.uuid: "done" for p in victims}

    after = {t: cluster.rows(t) for t in before}
    victim_uuids = {p.uuid for p in victims}
    assert {r["name"] for r in after["Logical_Switch_Port"]} == {
        "a.default",
        "b.default",
        "c.kube-system",
        "ovn-default-ovn-cluster",
        "node-n1",
        "6f0e2c1a-neutron-port",
    }
    # surviving ports: byte-for-byte the same rows, same _version
    survivors = [r for r in before["Logical_Switch_Port"] if r["_uuid"][1] not in victim_uuids]
    assert sorted(after["Logical_Switch_Port"], key=str) == sorted(survivors, key=str)
    # other switches untouched; ovn-default only lost the victims
    sw_before, sw_after = by_name(before["Logical_Switch"]), by_name(after["Logical_Switch"])
    assert sw_after["join"] == sw_before["join"]
    assert sw_after["neutron-6b1c"] == sw_before["neutron-6b1c"]
    held = {u for _, u in sw_after["ovn-default"]["ports"][1]}
    assert held == {u for _, u in sw_before["ovn-default"]["ports"][1]} - victim_uuids
    assert after["ACL"] == before["ACL"]
    (pg,) = after["Port_Group"]
    assert pg["ports"] == ["uuid", truth["a.default"]["uuid"]]  # the weak reference to p0.load dropped by ovsdb


def test_lsp_del_reports_an_already_deleted_port_as_gone(cluster: OvsdbServer) -> None:
    with connect(cluster.unix_remote) as nb:
        ports = by_name(nb.lsp_list().ports)
        cluster.delete_ports([ports["a.default"].uuid])
        outcome = nb.lsp_del([ports["a.default"], ports["b.default"]])
    assert outcome == {ports["a.default"].uuid: "gone", ports["b.default"].uuid: "done"}
    assert {"a.default", "b.default"}.isdisjoint(by_name(cluster.ports()))


def test_lsp_del_leaves_a_port_rewritten_since_the_listing(cluster: OvsdbServer) -> None:
    with connect(cluster.unix_remote) as nb:
        ports = by_name(nb.lsp_list().ports)
        a, b, c = ports["a.default"], ports["b.default"], ports["c.kube-system"]
        cluster.set_port(a.uuid, external_ids={"vendor": "kube-ovn", "ls": "ovn-default", "pod": "default/a2"})
        cluster.set_port(b.uuid, name="b2.default")
        outcome = nb.lsp_del([a, b, c])
    assert outcome == {a.uuid: "changed", b.uuid: "changed", c.uuid: "done"}
    now = by_name(cluster.ports())
    assert now["a.default"]["uuid"] == a.uuid
    assert now["a.default"]["external_ids"]["pod"] == "default/a2"
    assert now["b2.default"]["uuid"] == b.uuid
    assert "c.kube-system" not in now


def test_lsp_del_leaves_a_port_changed_between_its_check_and_the_delete(
    cluster: OvsdbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``wait`` in the delete transaction catches what the pre-check could not see."""
    with connect(cluster.unix_remote) as nb:
        ports = by_name(nb.lsp_list().ports)
        a, b = ports["a.default"], ports["b.default"]
        real_current = nb._current
        calls = []

        def current_then_race(batch: Any) -> Any:
            seen = real_current(batch)
            calls.append(sorted(p.name for p in batch))
            if len(calls) == 1:  # somebody rewrites b right after our check
                cluster.set_port(b.uuid, external_ids={"vendor": "kube-ovn", "pod": "default/b", "new": "1"})
            return seen

        monkeypatch.setattr(nb, "_current", current_then_race)
        outcome = nb.lsp_del([a, b])
    assert outcome == {a.uuid: "done", b.uuid: "changed"}
    assert calls == [["a.default", "b.default"], ["a.default", "b.default"]]  # re-checked after the failed wait
    now = by_name(cluster.ports())
    assert "a.default" not in now
    assert now["b.default"]["external_ids"]["new"] == "1"


def test_lsp_del_gives_up_on_a_batch_that_keeps_changing(cluster: OvsdbServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with connect(cluster.unix_remote) as nb:
        a = by_name(nb.lsp_list().ports)["a.default"]
        stale = {a.uuid: (a.name, dict(a.external_ids))}
        cluster.set_port(a.uuid, external_ids={"vendor": "kube-ovn", "pod": "default/other"})
        monkeypatch.setattr(nb, "_current", lambda batch: stale)  # a check that never sees the change
        with pytest.raises(ConflictError, match="kept changing"):
            nb.lsp_del([a])
    assert by_name(cluster.ports())["a.default"]["external_ids"]["pod"] == "default/other"


def test_lsp_del_leaves_a_port_that_moved_to_another_switch(cluster: OvsdbServer) -> None:
    with connect(cluster.unix_remote) as nb:
        a = by_name(nb.lsp_list().ports)["a.default"]
        ref = ["set", [["uuid", a.uuid]]]
        cluster.transact(
            [
                {
                    "op": "mutate",
                    "table": "Logical_Switch",
                    "where": [["name", "==", "ovn-default"]],
                    "mutations": [["ports", "delete", ref]],
                },
                {
                    "op": "mutate",
                    "table": "Logical_Switch",
                    "where": [["name", "==", "join"]],
                    "mutations": [["ports", "insert", ref]],
                },
            ]
        )
        assert nb.lsp_del([a]) == {a.uuid: "changed"}
    assert by_name(cluster.ports())["a.default"]["switch"] == "join"


def test_lsp_del_refuses_a_port_without_a_switch(cluster: OvsdbServer) -> None:
    lost = Port(PortUUID("00000000-0000-0000-0000-000000000001"), PortName("x.y"), "", (), (), "")
    with connect(cluster.unix_remote) as nb, pytest.raises(FatalError, match="no switch"):
        nb.lsp_del([lost])


# --- lsp_get / lsp_add --------------------------------------------------------------


def test_lsp_get_then_lsp_add_restores_the_same_row(nb_server: OvsdbServer) -> None:
    nb_server.add_switch("ovn-default")
    row = {
        "name": "vm1.default",
        "external_ids": {"vendor": "kube-ovn", "ls": "ovn-default", "pod": "default/vm1", "security_groups": "sg1"},
        "addresses": ["00:00:00:12:34:56 10.16.0.9 fd00::9"],
        "port_security": ["00:00:00:12:34:56 10.16.0.9 fd00::9"],
        "options": {"requested-chassis": "node1"},
        "tag_request": 7,
        "enabled": True,
    }
    (u,) = nb_server.add_ports("ovn-default", [row])
    missing = PortUUID("00000000-0000-0000-0000-000000000002")
    with connect(nb_server.unix_remote) as nb:
        got = nb.lsp_get([PortUUID(u), missing])
        assert set(got) == {u}
        record = got[PortUUID(u)]
        assert record["switch"] == "ovn-default"
        assert record["switch_uuid"] == nb_server.switches()[0]["uuid"]
        assert record["row"]["_uuid"] == ["uuid", u]
        assert record["row"]["tag_request"] == 7
        port = by_name(nb.lsp_list().ports)["vm1.default"]
        assert nb.lsp_del([port]) == {port.uuid: "done"}
        assert nb_server.ports() == []

        new = nb.lsp_add(record["switch"], record["row"])
        again = nb.lsp_get([new])[new]
    assert new != u
    assert again["switch"] == "ovn-default"
    strip = ("_uuid", "_version")
    assert {k: v for k, v in again["row"].items() if k not in strip} == {
        k: v for k, v in record["row"].items() if k not in strip
    }
    assert [(p["name"], p["switch"]) for p in nb_server.ports()] == [("vm1.default", "ovn-default")]


def test_lsp_add_refuses_a_name_that_exists(cluster: OvsdbServer) -> None:
    before = cluster.rows("Logical_Switch_Port")
    with (
        connect(cluster.unix_remote) as nb,
        pytest.raises(ConflictError, match=re.escape("'a.default' already exists")),
    ):
        nb.lsp_add("join", {"name": "a.default", "external_ids": encode_map(KUBE_OVN)})
    assert cluster.rows("Logical_Switch_Port") == before


def test_lsp_add_into_a_missing_switch_is_not_found(cluster: OvsdbServer) -> None:
    with connect(cluster.unix_remote) as nb, pytest.raises(NotFoundError, match="'gone-subnet'"):
        nb.lsp_add("gone-subnet", {"name": "z.default"})
    assert "z.default" not in by_name(cluster.ports())


def test_an_ovsdb_operation_error_is_fatal(cluster: OvsdbServer) -> None:
    with (
        connect(cluster.unix_remote) as nb,
        pytest.raises(FatalError, match=r"insert \(operation 2\) failed: unknown column"),
    ):
        nb.lsp_add("join", {"name": "z.default", "no_such_column": "x"})
    assert "z.default" not in by_name(cluster.ports())


# --- connections and faults ----------------------------------------------------------------


def test_a_dead_first_remote_fails_over_to_the_next(cluster: OvsdbServer, tmp_path: Path) -> None:
    dead_unix = f"unix:{tmp_path}/nobody-here.sock"
    with connect(dead_unix, cluster.tcp_remote) as nb:
        assert nb.remote == cluster.tcp_remote
        assert len(nb.lsp_list().ports) == 6


def test_no_reachable_remote_is_transient(nb_server: OvsdbServer, tmp_path: Path) -> None:
    tcp = nb_server.tcp_remote
    nb_server.stop()
    nb = connect(f"unix:{tmp_path}/nobody-here.sock", tcp)
    with pytest.raises(TransientError, match="no NB remote usable") as err:
        nb.connect()
    assert "nobody-here.sock" in str(err.value) and tcp in str(err.value)
    assert nb.remote is None


def test_a_killed_server_is_transient_and_the_next_call_reconnects(cluster: OvsdbServer) -> None:
    with connect(cluster.tcp_remote) as nb:
        assert len(nb.lsp_list().ports) == 6
        cluster.kill()
        with pytest.raises(TransientError, match=cluster.tcp_remote):
            nb.lsp_list()
        assert nb.remote is None  # the broken connection was dropped
        cluster.start()
        assert len(nb.lsp_list().ports) == 6


def test_retry_policy_rides_over_a_restart(cluster: OvsdbServer) -> None:
    with connect(cluster.unix_remote, retry=TWICE) as nb:
        cluster.restart()
        assert len(nb.lsp_list().ports) == 6


def test_a_server_without_the_nb_database_is_a_config_error(tmp_path: Path) -> None:
    """Pointing at the Southbound port (6642) by mistake is not worth retrying."""
    server = OvsdbServer(tmp_path, schema=Path("/usr/share/ovn/ovn-sb.ovsschema"))
    server.start()
    try:
        with pytest.raises(ConfigError, match="serves no OVN_Northbound database"):
            connect(server.unix_remote).connect()
    finally:
        server.cleanup()


def test_duplicate_switch_names_refuse_lsp_add(nb_server: OvsdbServer) -> None:
    nb_server.add_switch("twin")
    nb_server.add_switch("twin")
    with connect(nb_server.unix_remote) as nb, pytest.raises(ConflictError, match="2 switches are named 'twin'"):
        nb.lsp_add("twin", {"name": "z.default"})
    assert nb_server.ports() == []


def test_inactivity_probes_are_answered_and_a_dropped_connection_is_replaced(
    cluster: OvsdbServer, caplog: pytest.LogCaptureFixture
) -> None:
    """ovsdb-server probes an idle tcp client after 1 s and drops it a second later."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster.transact(
        [
            {
                "op": "insert",
                "table": "Connection",
                "uuid-name": "c",
                "row": {"target": f"ptcp:{port}:127.0.0.1", "inactivity_probe": 1000},
            },
            {"op": "insert", "table": "NB_Global", "row": {"connections": ["named-uuid", "c"]}},
        ]
    )
    cluster.appctl("ovsdb-server/add-remote", "db:OVN_Northbound,NB_Global,connections")
    remote = f"tcp:127.0.0.1:{port}"
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "probe remote never came up"
            time.sleep(0.05)
    caplog.set_level(logging.DEBUG, logger="kube_ovn_gc.ovn")
    with connect(remote, retry=TWICE) as nb:
        assert len(nb.lsp_list().ports) == 6
        time.sleep(1.5)  # a probe is waiting in our socket
        assert len(nb.lsp_list().ports) == 6
        assert any("answering echo" in r.getMessage() for r in caplog.records)
        time.sleep(2.6)  # probed, unanswered, disconnected
        assert len(nb.lsp_list().ports) == 6
    assert any("failed (attempt 1 of 2)" in r.getMessage() for r in caplog.records)


# --- framing: a server request slipped in before the reply ------------------------------


STANDALONE = {"name": "OVN_Northbound", "model": "standalone", "connected": True, "leader": True}
FOLLOWER = {"name": "OVN_Northbound", "model": "clustered", "connected": True, "leader": False}
CUT_OFF = {"name": "OVN_Northbound", "model": "clustered", "connected": False, "leader": False}


class ScriptedPeer:
    """A unix-socket JSON-RPC peer that answers like ovsdb-server with a fixed ``_Server``
    row and one port; it sends its own echo request glued in front of each NB reply.

    ``commit_later``: as a Raft member does, it answers an NB ``transact`` only after every
    other request that came in the same read (an ``echo`` is answered at once), and sends
    that late reply in pieces, each cut right after a ``}``.
    """

    def __init__(self, path: Path, database: dict[str, Any], commit_later: bool = False) -> None:
        self.path = path
        self.database = database
        self.commit_later = commit_later
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(path))
        self._listener.listen(4)
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        decoder = json.JSONDecoder()
        text = ""
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            text += data.decode()
            late: list[bytes] = []
            while text.strip():
                text = text.lstrip()
                try:
                    msg, end = decoder.raw_decode(text)
                except json.JSONDecodeError:
                    break
                text = text[end:]
                self.received.append(msg)
                answer = self._answer(msg)
                if self.commit_later and msg.get("method") == "transact" and msg["params"][0] != "_Server":
                    late.append(answer)
                    continue
                try:
                    conn.sendall(answer)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client under test hung up (it may: it is done with this peer)
            for answer in late:
                try:
                    for piece in re.split(rb"(?<=})", answer):
                        conn.sendall(piece)
                        time.sleep(0.002)
                except (BrokenPipeError, ConnectionResetError):
                    return

    def _answer(self, msg: dict[str, Any]) -> bytes:
        if msg.get("method") == "echo":
            return json.dumps({"id": msg["id"], "result": msg["params"], "error": None}).encode()
        if msg.get("method") != "transact":
            return b""  # an answer to our echo: nothing to say
        if msg["params"][0] == "_Server":
            return json.dumps({"id": msg["id"], "result": [{"rows": [self.database]}], "error": None}).encode()
        switch = {
            "_uuid": ["uuid", "5a1e0000-0000-0000-0000-000000000001"],
            "name": "sw",
            "ports": ["uuid", "9047e000-0000-0000-0000-000000000001"],
        }
        port = {
            "_uuid": ["uuid", "9047e000-0000-0000-0000-000000000001"],
            "name": "a.b{}",
            "type": "",
            "external_ids": ["map", [["pod", "b/a{"]]],
            "addresses": ["set", []],
        }
        probe = {"id": "echo", "method": "echo", "params": []}
        reply = {"id": msg["id"], "result": [{"rows": [switch]}, {"rows": [port]}], "error": None}
        return (json.dumps(probe) + "\n" + json.dumps(reply)).encode()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def peers() -> Iterator[Callable[..., ScriptedPeer]]:
    made: list[ScriptedPeer] = []

    def make(database: dict[str, Any], commit_later: bool = False) -> ScriptedPeer:
        path = Path(f"/tmp/kovn-peer-{os.getpid()}-{time.monotonic_ns()}.sock")
        made.append(ScriptedPeer(path, database, commit_later))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_a_server_echo_before_the_reply_is_answered_and_skipped(
    peers: Callable[..., ScriptedPeer],
) -> None:
    peer = peers(STANDALONE)
    with connect(f"unix:{peer.path}") as nb:
        (port,) = nb.lsp_list().ports
    assert (port.name, port.switch, port.external_ids) == ("a.b{}", "sw", (("pod", "b/a{"),))
    deadline = time.monotonic() + 5  # the peer's thread reads the answer on its own time
    while {"id": "echo", "result": [], "error": None} not in peer.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {"id": "echo", "result": [], "error": None} in peer.received


def test_a_reply_that_comes_after_a_later_request_is_matched_by_its_id(
    peers: Callable[..., ScriptedPeer],
) -> None:
    """A Raft member answers a write once it is committed, after later requests (issue 10)."""
    peer = peers(STANDALONE, commit_later=True)
    with connect(f"unix:{peer.path}") as nb:
        for _ in range(3):  # the connection stays usable: nothing left over from the last reply
            (port,) = nb.lsp_list().ports
            assert (port.name, port.switch, port.external_ids) == ("a.b{}", "sw", (("pod", "b/a{"),))
    deadline = time.monotonic() + 5
    while {"id": "echo", "result": [], "error": None} not in peer.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {"id": "echo", "result": [], "error": None} in peer.received  # the server's probe was answered


def test_a_raft_leader_is_preferred_over_an_earlier_follower(
    cluster: OvsdbServer, peers: Callable[..., ScriptedPeer]
) -> None:
    follower = peers(FOLLOWER)
    with connect(f"unix:{follower.path}", cluster.unix_remote) as nb:
        assert nb.remote == cluster.unix_remote
        assert len(nb.lsp_list().ports) == 6
    assert follower.connections == 1


def test_a_follower_is_used_when_no_leader_answers(
    peers: Callable[..., ScriptedPeer], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    cut_off, follower = peers(CUT_OFF), peers(FOLLOWER)
    remotes = (f"unix:{tmp_path}/down.sock", f"unix:{cut_off.path}", f"unix:{follower.path}")
    with connect(*remotes) as nb:
        assert nb.remote == f"unix:{follower.path}"
        assert [p.name for p in nb.lsp_list().ports] == ["a.b{}"]
    assert any("no Raft leader" in r.getMessage() for r in caplog.records)


def test_a_member_cut_off_from_its_cluster_is_not_used(peers: Callable[..., ScriptedPeer]) -> None:
    cut_off = peers(CUT_OFF)
    with pytest.raises(TransientError, match="not connected to its cluster"):
        connect(f"unix:{cut_off.path}").connect()


def test_a_hung_server_times_out_as_transient(cluster: OvsdbServer) -> None:
    nb = OvsdbNorthbound(NbSettings(remotes=(cluster.unix_remote,), timeout=0.5), ONCE)
    with nb:
        cluster.pause()
        try:
            started = time.monotonic()
            with pytest.raises(TransientError, match=r"no answer within 0.5s"):
                nb.lsp_list()
            assert time.monotonic() - started < 3
        finally:
            cluster.resume()
        assert len(nb.lsp_list().ports) == 6


def test_a_host_name_remote_is_resolved(cluster: OvsdbServer) -> None:
    port = cluster.tcp_remote.rsplit(":", 1)[1]
    with connect(f"tcp:localhost:{port}") as nb:
        assert len(nb.lsp_list().ports) == 6


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    for args in (["init"], ["req+sign", "server", "switch"], ["req+sign", "client", "switch"]):
        subprocess.run(["ovs-pki", f"--dir={d}/pki", "--force", *args], cwd=d, check=True, capture_output=True)
    return {
        "ca": d / "pki/switchca/cacert.pem",
        "other_ca": d / "pki/controllerca/cacert.pem",
        "server_key": d / "server-privkey.pem",
        "server_cert": d / "server-cert.pem",
        "client_key": d / "client-privkey.pem",
        "client_cert": d / "client-cert.pem",
    }


def test_ssl_remote(pki: dict[str, Path], tmp_path: Path) -> None:
    server = OvsdbServer(tmp_path, ssl_files=(pki["server_key"], pki["server_cert"], pki["ca"]))
    server.start()
    try:
        server.add_switch("ovn-default")
        server.add_ports("ovn-default", [pod_port("a.default")])
        tls = {"private_key": str(pki["client_key"]), "certificate": str(pki["client_cert"]), "ca_cert": str(pki["ca"])}
        with connect(server.ssl_remote, tls=tls) as nb:
            (port,) = nb.lsp_list().ports
            assert nb.lsp_del([port]) == {port.uuid: "done"}
        assert server.ports() == []
    finally:
        server.cleanup()


def test_ssl_with_a_ca_that_did_not_sign_the_server_is_refused(pki: dict[str, Path], tmp_path: Path) -> None:
    server = OvsdbServer(tmp_path, ssl_files=(pki["server_key"], pki["server_cert"], pki["ca"]))
    server.start()
    try:
        tls = {
            "private_key": str(pki["client_key"]),
            "certificate": str(pki["client_cert"]),
            "ca_cert": str(pki["other_ca"]),
        }
        with pytest.raises(TransientError, match="TLS handshake failed"):
            connect(server.ssl_remote, tls=tls).connect()
        tls["ca_cert"] = str(pki["client_key"])  # not a certificate at all
        with pytest.raises(ConfigError, match="cannot load the NB TLS files"):
            connect(server.ssl_remote, tls=tls)
    finally:
        server.cleanup()
