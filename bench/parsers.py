"""The JSON parsers measured against each other, on the data of a generated cluster.

    python -m bench.parsers --size 100000

- NB: the reply to the job's ``select`` (a real ovsdb-server seeded with the cluster's ports), parsed by
  python-ovs's parser (``ovs.json.from_string``), the stdlib, orjson and msgspec;
- Kubernetes: the pod list in pages of 500, parsed whole by the stdlib, orjson and msgspec, and the way the
  job reads it (msgspec into the fields it needs, then the snapshot objects).

Best of three, the cyclic GC paused as the job pauses it.
"""

from __future__ import annotations

import argparse
import gc
import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

from bench.cluster import Shape, generate
from bench.floor import NB_OPS
from kube_ovn_gc import kube
from kube_ovn_gc.kube import decode
from ovsdb import OvsdbServer, encode_value


def _best(fn: Callable[[], Any], rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _nb_reply(rows_by_switch: dict[str, list[dict[str, Any]]]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="kogc-parsers-", dir="/tmp") as tmp:
        nb = OvsdbServer(Path(tmp))
        nb.start()
        try:
            for name, rows in rows_by_switch.items():
                nb.add_switch(name)
                for start in range(0, len(rows), 5000):
                    chunk = rows[start : start + 5000]
                    ops: list[dict[str, Any]] = [
                        {"op": "insert", "table": "Logical_Switch_Port", "uuid-name": f"p{i}",
                         "row": {k: encode_value(v) for k, v in row.items()}} for i, row in enumerate(chunk)]
                    refs = ["set", [["named-uuid", f"p{i}"] for i in range(len(chunk))]]
                    ops.append({"op": "mutate", "table": "Logical_Switch", "where": [["name", "==", name]],
                                "mutations": [["ports", "insert", refs]]})
                    nb.transact(ops)
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(nb.sock_path))
                s.sendall(orjson.dumps({"id": 1, "method": "transact", "params": ["OVN_Northbound", *NB_OPS]})
                          + orjson.dumps({"id": "end", "method": "echo", "params": []}))
                buf = bytearray()
                while (at := buf.find(b'"end"')) < 0:
                    buf += s.recv(1 << 20)
            return bytes(buf[: buf.rfind(b"{", 0, at)])
        finally:
            nb.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parsers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100000)
    parser.add_argument("--no-python-ovs", action="store_true", help="skip python-ovs's parser (~20 s at 100k)")
    args = parser.parse_args(argv)
    cluster = generate(Shape(args.size))
    pods = cluster.objects["pods"]
    pages = [orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                           "items": pods[i : i + 500]}) for i in range(0, len(pods), 500)]
    reply = _nb_reply(cluster.switches)
    ports = cluster.ports
    del cluster, pods
    gc.collect()
    gc.disable()
    mb = sum(map(len, pages)) / 1e6
    print(f"NB reply to the job's select: {len(reply) / 1e6:.1f} MB, {ports:,} ports")
    text = reply.decode()
    if not args.no_python_ovs:
        import ovs.json

        print(f"  python-ovs ovs.json.from_string  {_best(lambda: ovs.json.from_string(text), 1):6.2f} s")
    print(f"  json.loads                       {_best(lambda: json.loads(reply)):6.2f} s")
    print(f"  orjson.loads                     {_best(lambda: orjson.loads(reply)):6.2f} s")
    print(f"  msgspec.json.decode              {_best(lambda: msgspec.json.decode(reply)):6.2f} s")
    print(f"Pod list: {len(pages)} pages of 500, {mb:.0f} MB")

    def each(fn: Callable[[bytes], Any]) -> Callable[[], None]:
        return lambda: [fn(p) for p in pages] and None

    print(f"  json.loads                       {_best(each(json.loads)):6.2f} s")
    print(f"  orjson.loads                     {_best(each(orjson.loads)):6.2f} s   (the floor)")
    print(f"  msgspec.json.decode              {_best(each(msgspec.json.decode)):6.2f} s")
    fast = decode._FAST["pods"][0]
    print(f"  msgspec, only the needed fields  {_best(each(fast.decode)):6.2f} s")
    job = each(lambda body: decode._decode_page(kube.PODS, body, "/api/v1/pods", kube.parse_pod))
    print(f"  the job: those + snapshot objects {_best(job):5.2f} s")
    plain = each(lambda body: [kube.parse_pod(o) for o in orjson.loads(body)["items"]])
    print(f"  orjson + parse_pod (the plain way) {_best(plain):4.2f} s")
    gc.enable()
    return 0


if __name__ == "__main__":
    sys.exit(main())
