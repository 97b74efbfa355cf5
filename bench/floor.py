"""The floor: the least a pass must do to read what it decides on, and nothing more.

Run as its own process (``python -m bench.floor``) against the same servers and data
as the job: one OVSDB ``transact`` holding the two ``select``\\ s the job sends (the
columns it needs, over a raw unix socket, parsed with orjson), then the same paged
Kubernetes lists in the same order with the same ``limit`` (urllib3 keep-alive, each
page parsed with orjson, then dropped). Nothing is kept or built. Prints one JSON
object of timings on stdout.

orjson is the fastest JSON parser available here; see the README's "Scale" section
for the parsers measured against it.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any

import orjson
import urllib3

NB_OPS: list[dict[str, Any]] = [  # what kube_ovn_gc.ovn.OvsdbNorthbound.lsp_list sends
    {"op": "select", "table": "Logical_Switch", "where": [], "columns": ["_uuid", "name", "ports"]},
    {"op": "select", "table": "Logical_Switch_Port", "where": [],
     "columns": ["_uuid", "name", "type", "external_ids", "addresses"]},
]

LISTS: list[tuple[str, str]] = [  # (name, path) in the order kube_ovn_gc.kube.KubeReader.read lists them
    ("subnets", "/apis/kubeovn.io/v1/subnets"),
    ("ips", "/apis/kubeovn.io/v1/ips"),
    ("pods", "/api/v1/pods"),
    ("nodes", "/api/v1/nodes"),
    ("statefulsets", "/apis/apps/v1/statefulsets"),
    ("kubevirt-discovery", "/apis/kubevirt.io/v1"),
    ("virtualmachines", "/apis/kubevirt.io/v1/virtualmachines"),
    ("virtualmachineinstances", "/apis/kubevirt.io/v1/virtualmachineinstances"),
    ("vips", "/apis/kubeovn.io/v1/vips"),
    ("iptables-eips", "/apis/kubeovn.io/v1/iptables-eips"),
    ("ovn-eips", "/apis/kubeovn.io/v1/ovn-eips"),
]


def read_nb(sock_path: str) -> dict[str, Any]:
    """One transact with both selects; the reply ends where the echo sent after it begins (a read on a
    standalone server is answered in order; the job frames by message boundaries instead, see ovn/wire.py)."""
    started = time.perf_counter()
    marker = b'"floor-echo"'
    request = orjson.dumps({"id": 1, "method": "transact", "params": ["OVN_Northbound", *NB_OPS]})
    echo = orjson.dumps({"id": "floor-echo", "method": "echo", "params": []})
    buf = bytearray()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path)
        s.sendall(request + echo)
        scan = 0
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise ConnectionError("ovsdb-server closed the connection")
            buf += chunk
            at = buf.find(marker, scan)
            if at >= 0 and buf.find(b"}", at) >= 0:
                break
            scan = max(0, len(buf) - len(marker))
    received = time.perf_counter()
    reply = orjson.loads(buf[: buf.rfind(b"{", 0, at)])
    ports = len(reply["result"][1]["rows"])
    switches = len(reply["result"][0]["rows"])
    size = len(buf)
    del reply, buf
    done = time.perf_counter()
    return {"seconds": done - started, "parse_seconds": done - received, "ports": ports, "switches": switches,
            "bytes": size}


def read_lists(server: str, token: str, limit: int) -> dict[str, Any]:
    http = urllib3.PoolManager(maxsize=1, retries=False)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    out: dict[str, Any] = {}
    for name, path in LISTS:
        started = time.perf_counter()
        items = pages = size = 0
        parse = 0.0
        cont = ""
        while True:
            fields = {"limit": str(limit)} if name != "kubevirt-discovery" else {}
            if cont:
                fields["continue"] = cont
            resp = http.request("GET", server + path, fields=fields, headers=headers, preload_content=True)
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {resp.data[:200]!r}")
            body = resp.data
            t = time.perf_counter()
            page = orjson.loads(body)
            parse += time.perf_counter() - t
            pages += 1
            size += len(body)
            items += len(page.get("items") or ())
            cont = (page.get("metadata") or {}).get("continue") or ""
            del page, body
            if not cont:
                break
        out[name] = {"seconds": time.perf_counter() - started, "parse_seconds": parse, "items": items,
                     "pages": pages, "bytes": size}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True, help="API server URL")
    parser.add_argument("--token", required=True)
    parser.add_argument("--nb", required=True, help="unix:PATH of ovsdb-server")
    parser.add_argument("--limit", type=int, default=500, help="page size (the job's)")
    args = parser.parse_args(argv)
    if not args.nb.startswith("unix:"):
        parser.error("--nb must be unix:PATH")
    started = time.perf_counter()
    nb = read_nb(args.nb[len("unix:"):])
    kube = read_lists(args.server, args.token, args.limit)
    total = time.perf_counter() - started
    sys.stdout.write(orjson.dumps({"seconds": total, "nb": nb, "lists": kube}).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
