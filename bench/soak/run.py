"""The churn soak: ``kube-ovn-gc run`` passes, back to back, each its own process, while the simulated
kube-ovn-controller changes the cluster (``bench/soak/world.py``) and faults are injected.

    python -m bench.soak [--passes 1000] [--rate 50] [--raft] [--plot soak.png] [--job-cmd CMD]

The job runs with its shipped defaults except ``--min-age`` (short, ``--min-age 3s`` by default). The
soak asserts, and prints as one summary line:

- **live_deleted = 0**: no IP CR (the API server's audit of the job's DELETEs, timed) and no LSP (an
  OVSDB monitor; every deletion the controller did not make is the job's) was deleted while the ledger
  says its owner was alive. A delete whose owner appeared only after the job's last look at it (its
  second-look GET) is a race no single pass can close (an owner created between a GET and a DELETE);
  it is counted apart as ``raced`` and listed, and does not fail the soak;
- **every planted leak collected within two passes** of becoming eligible (owner gone; for an IP CR
  also older than ``--min-age``): the passes counted are the completed ones (exit 0) that started after
  it became eligible, up to the one that collected it;
- **exit codes**: 0, or 3/5 only in a pass that met an injected fault, with a reason that names it;
- **statuses**: after the churn stops (and the controller's own status writes are switched off) one more
  pass leaves every Subnet status equal to the ledger's (``bench/soak/ledger.py``);
- and the end state: every live owner's IP CR and LSP is there, no planted leak is left, the world
  made no error of its own.

The JSON result goes to ``--out`` (default ``bench/results/soak-<time>.json``); ``--plot FILE.png`` draws
leaks outstanding and pass durations over time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.soak import ledger as lg
from bench.soak.audit import AuditedApi
from bench.soak.nb import NbClient, PortWatch
from bench.soak.world import SUBNETS, Config, World

DEFAULT_JOB = f"{shlex.quote(sys.executable)} -m kube_ovn_gc run"
API_FAULT = re.compile(r"injected fault|HTTP (429|500)|\b(429|500)\b|TooManyRequests|InternalError|Internal Server")
NB_FAULT = re.compile(r"(?i)\bNB\b|ovsdb|northbound|unreachable|connection|leader|tcp:127")
PORT_WATCH_MARGIN = 0.2  # a live monitor update arrives within this of the deletion


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Pass:
    index: int
    start: float
    end: float
    code: int
    duration: float | None = None  # the job's own
    ips: int = 0  # IP CRs it deleted
    ports: int = 0
    statuses: int = 0
    failed: int = 0
    error: str = ""
    reasons: list[str] = field(default_factory=list)
    fault: str = ""  # the injected fault it met, if any
    final: bool = False


@dataclass
class Deletion:
    kind: str  # "ip" or "port"
    name: str
    t0: float
    t1: float
    holders: list[str]
    born: float | None
    last_look: float | None
    verdict: str  # "live" or "raced"
    pass_index: int | None = None
    reason: str = ""


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = Path(tempfile.mkdtemp(prefix="soak-", dir=args.workdir))
        self.ledger = lg.Ledger(min_age=args.min_age)
        self.api = AuditedApi(fault_rate=args.fault_rate, rng=random.Random(self.rng.random()))
        self.passes: list[Pass] = []
        self.deletions: list[Deletion] = []
        self.timeline: list[tuple[float, int, int]] = []  # (time, planted and not collected, of them eligible)
        self.faults: list[tuple[float, float, str]] = []  # (start, end, what)
        self._lock = threading.Lock()
        self._current: Pass | None = None
        self._stop = threading.Event()

    # --- servers ------------------------------------------------------------------------------------

    def start_servers(self) -> None:
        self.api.start()
        self.kubeconfig = self.api.write_kubeconfig(self.workdir / "kubeconfig")
        if self.args.raft:
            from bench.soak.raft import RaftCluster

            self.raft: Any = RaftCluster(self.workdir / "nb")
            self.raft.start()
            self.nb_remotes = self.raft.remotes
            self.world_remotes = self.raft.remotes
        else:
            from ovsdb import OvsdbServer

            self.raft = None
            self.nb_server = OvsdbServer(self.workdir / "nb")
            (self.workdir / "nb").mkdir(exist_ok=True)
            self.nb_server.start()
            self.nb_remotes = [self.nb_server.tcp_remote]
            self.world_remotes = [self.nb_server.unix_remote]

    def stop_servers(self) -> None:
        self.api.stop()
        if self.raft is not None:
            self.raft.cleanup()
        else:
            self.nb_server.cleanup()

    # --- audit: the job's deletions, judged against the ledger ---------------------------------------

    def _judge(self, kind: str, name: str, t0: float, t1: float) -> None:
        live = self.ledger.live
        if live.alive_during(name, t0, t1):
            span = live.span_at(name, t0) or live.span_at(name, t1)
            born = span[0] if span else None
            look = self._last_look(name, t1)
            if not live.alive_throughout(name, t0, t1):
                died = live.ended_during(name, t0, t1)
                if died is not None and live.span_at(name, t1) is None and look is not None and look >= died:
                    return  # the owner went within the window and the job looked (404) after it went
                verdict = "raced"  # the owner came or went while the delete was under way
            elif born is not None and look is not None and born > look:
                verdict = "raced"  # the owner appeared after the job's last look at it
            else:
                verdict = "live"
            with self._lock:
                current = self._current.index if self._current else None
                self.deletions.append(Deletion(kind, name, t0, t1, sorted(live.holders(name)), born, look, verdict,
                                               current))
            log(f"{verdict.upper()} DELETE of {kind} {name} (holders {sorted(live.holders(name))})")

    def _last_look(self, name: str, before: float) -> float | None:
        """When the job last GOT an object that could own ``name`` (its second look), before ``before``."""
        owner, _, rest = name.partition(".")
        ns = rest.split(".", 1)[0]
        candidates = [("pods", ns, owner), ("virtualmachines", ns, owner), ("virtualmachineinstances", ns, owner)]
        base, dash, num = owner.rpartition("-")
        if dash and num.isdigit():
            candidates.append(("statefulsets", ns, base))
        times = [t for t in (self.api.last_get(*c) for c in candidates) if t is not None and t <= before]
        return max(times) if times else None

    def on_ip_delete(self, name: str, t0: float, t1: float) -> None:
        self._judge("ip", name, t0, t1)
        self.ledger.collected("ip", name, t0)
        self.world.ip_deleted(name)

    def on_port_delete(self, uuid: str, name: str, t0: float, t1: float) -> None:
        if uuid in self.world.controller_deleted:
            self.world.controller_deleted.discard(uuid)
            return
        self._judge("port", name, t0 - PORT_WATCH_MARGIN if t0 == t1 else t0, t1)
        self.ledger.collected("port", name, t1)

    # --- faults ---------------------------------------------------------------------------------------

    def _fault_clock(self) -> None:
        """API bursts and, with --raft, the NB leader killed and restarted."""
        next_burst = time.time() + (self.rng.expovariate(1 / self.args.burst_every) if self.args.burst_every else 1e18)
        next_kill = time.time() + (self.args.raft_kill_every if self.raft is not None else 1e18)
        while not self._stop.wait(0.2):
            now = time.time()
            if now >= next_burst:
                seconds = self.rng.uniform(1.0, 10.0)
                self.api.burst(seconds)
                self.faults.append((now, now + seconds, "api-burst"))
                next_burst = now + seconds + self.rng.expovariate(1 / self.args.burst_every)
            if now >= next_kill:
                down = self.rng.uniform(2.0, 6.0)
                killed = self.raft.kill_leader()
                log(f"raft: killed the leader {killed}; restarting it in {down:.1f}s")
                if self._stop.wait(down):
                    self.raft.restart(killed)
                    break
                self.raft.restart(killed)
                self.faults.append((now, time.time() + 3.0, f"raft-leader-killed:{killed}"))
                next_kill = time.time() + self.args.raft_kill_every

    def _sampler(self) -> None:
        while not self._stop.wait(1.0):
            now = time.time()
            out = self.ledger.outstanding()
            self.timeline.append((now, len(out), sum(1 for leak in out if leak.eligible <= now)))

    # --- passes ---------------------------------------------------------------------------------------

    def job_command(self) -> list[str]:
        return [*shlex.split(self.args.job_cmd), "--kubeconfig", str(self.kubeconfig),
                "--ovn-nb", ",".join(self.nb_remotes), "--min-age", f"{self.args.min_age:g}s", "--output", "json"]

    def run_pass(self, index: int, final: bool = False) -> Pass:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE_OVN_GC_", "OVN_NB_", "KUBECONFIG"))}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gc"), env.get("PYTHONPATH", "")])
        start = time.time()
        p = Pass(index, start, start, -1, final=final)
        with self._lock:
            self._current = p
        proc = subprocess.run(self.job_command(), env=env, cwd=ROOT, capture_output=True, timeout=600)
        p.end, p.code = time.time(), proc.returncode
        with self._lock:
            self._current = None
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            report = {}
            p.error = f"no JSON report; stderr: {proc.stderr.decode(errors='replace')[-600:]}"
        p.duration = report.get("duration_seconds")
        p.error = p.error or str(report.get("error") or "")
        for action in report.get("actions", []):
            outcome, kind = action.get("outcome"), action.get("kind")
            if outcome == "done":
                p.ips += kind == "ip"
                p.ports += kind == "port"
                p.statuses += kind == "subnet-status"
            elif outcome == "failed":
                p.failed += 1
                p.reasons.append(f"{kind} {action.get('name')}: {action.get('reason')}")
            self._explain(action)
        if p.code != 0:
            p.fault = self._fault_of(p)
            (self.workdir / "passes").mkdir(exist_ok=True)
            (self.workdir / "passes" / f"{index:05d}.stderr").write_bytes(proc.stderr)
            (self.workdir / "passes" / f"{index:05d}.json").write_bytes(proc.stdout)
        self.passes.append(p)
        return p

    def _explain(self, action: dict[str, Any]) -> None:
        """Attach the job's own reason to a deletion the audit flagged."""
        if action.get("outcome") != "done":
            return
        with self._lock:
            for d in self.deletions:
                if d.name == action.get("name") and d.kind == action.get("kind") and not d.reason:
                    d.reason = str(action.get("reason"))

    def _fault_of(self, p: Pass) -> str:
        """The injected fault that explains a pass that did not exit 0, or ""."""
        text = " ".join([p.error, *p.reasons])
        met = [what for start, end, what in self.faults if start <= p.end and end >= p.start]
        if any(p.start <= t <= p.end for t, _ in self.api.fault_times) and "api-burst" not in met:
            met.append("api-fault")
        if p.code not in (3, 5):
            return ""
        if any(m.startswith("api") for m in met) and API_FAULT.search(text):
            return "api"
        if any(m.startswith("raft") for m in met) and NB_FAULT.search(text):
            return "raft"
        return ""

    # --- the whole soak ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        self.start_servers()
        cfg = Config(rate=self.args.rate, pods=self.args.pods, vms=self.args.vms, pause_every=self.args.pause_every,
                     status_loss=self.args.status_loss)
        self.world = World(self.api, NbClient(self.world_remotes), self.ledger, cfg, random.Random(self.rng.random()))
        self.api.on_ip_delete = self.on_ip_delete
        self.watch = PortWatch(self.world_remotes, self.on_port_delete)
        self.watch.start()
        if not self.watch.ready.wait(30):
            raise RuntimeError("the NB port watch did not start")
        self.world.setup()
        self.world.populate()
        self.world.start()
        self._wait_drained(60)

    def _wait_drained(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while not self.world.drained():
            if time.time() > deadline:
                raise RuntimeError("the simulated controller did not settle")
            time.sleep(0.05)

    def run(self) -> dict[str, Any]:
        args = self.args
        self.prepare()
        log(f"soak: {args.passes} passes at {args.rate:g} changes/s, min-age {args.min_age:g}s, "
            f"{'NB Raft cluster of 3' if self.raft is not None else 'one NB'}; work dir {self.workdir}")
        threads = [threading.Thread(target=self._fault_clock, daemon=True),
                   threading.Thread(target=self._sampler, daemon=True)]
        self.world.start_churn()
        churn_start = time.time()
        for t in threads:
            t.start()
        try:
            for i in range(args.passes):
                p = self.run_pass(i)
                if p.code != 0 or (i + 1) % args.progress == 0:
                    log(f"pass {i + 1}/{args.passes}: exit {p.code} in {p.end - p.start:.2f}s, "
                        f"{p.ips} IP CRs, {p.ports} ports, {p.statuses} statuses; "
                        f"{len(self.ledger.outstanding())} leaks outstanding {p.error[:160]}")
        finally:
            self._stop.set()
            for t in threads:
                t.join(timeout=30)
        churn_end = time.time()
        # The churn stops: no changes, no faults; the controller settles, every leak left becomes eligible.
        self.world.stop_churn()
        self.api.faults_on = False
        self._wait_drained(120)
        out = self.ledger.outstanding()
        wait = max([leak.eligible for leak in out] + [time.time()]) - time.time() + 1.0
        time.sleep(max(0.0, wait))
        self.world.status_writes_off = True  # what the statuses say now is the job's doing
        final = self.run_pass(len(self.passes), final=True)
        self._wait_drained(60)
        try:
            return self.result(churn_start, churn_end, final)
        finally:
            self.watch.stop()
            self.world.stop()
            self.stop_servers()

    # --- result --------------------------------------------------------------------------------------------

    def _passes_to_collect(self) -> None:
        completed = [p.start for p in self.passes if p.code == 0]
        for leak in self.ledger.leaks:
            if leak.collected is not None:
                n = sum(1 for s in completed if leak.eligible <= s <= leak.collected)
                leak.passes = max(1, n)

    def _end_state(self) -> list[str]:
        """Live owners whose IP CR or LSP is gone or terminating."""
        problems = []
        ports = {r["name"] for r in self._nb_ports()}
        ips = {i["metadata"]["name"]: i for i in self.api.list("ips")}
        for name in sorted(self.ledger.live.live_names()):
            if name not in self.ledger.addresses:
                continue  # never allocated (an attachment of a VM that has not run since)
            ip = ips.get(name)
            if ip is None or ip["metadata"].get("deletionTimestamp"):
                problems.append(f"IP CR {name} of a live owner is {'terminating' if ip else 'missing'}")
            subnet = self.ledger.addresses[name][0]
            if subnet != "mac1" and name not in ports:
                problems.append(f"LSP {name} of a live owner is missing")
        return problems

    def _nb_ports(self) -> list[dict[str, Any]]:
        client = NbClient(self.world_remotes)
        try:
            return list(client.transact([{"op": "select", "table": "Logical_Switch_Port", "where": [],
                                          "columns": ["name"]}])[0]["rows"])
        finally:
            client.close()

    def result(self, churn_start: float, churn_end: float, final: Pass) -> dict[str, Any]:
        self._passes_to_collect()
        leaks = self.ledger.leaks
        planted = [leak for leak in leaks if leak.reclaimed is None and leak.cleaned is None]
        collected = [leak for leak in planted if leak.collected is not None]
        max_passes = max((leak.passes or 0 for leak in collected), default=0)
        late = [leak for leak in collected if (leak.passes or 0) > 2]
        left = [leak for leak in planted if leak.collected is None]
        live = [d for d in self.deletions if d.verdict == "live"]
        raced = [d for d in self.deletions if d.verdict == "raced"]
        codes = Counter(p.code for p in self.passes)
        unexplained = [p for p in self.passes if p.code != 0 and not p.fault]
        expected = self.ledger.expected_statuses(SUBNETS)
        actual = {s["metadata"]["name"]: s.get("status") or {} for s in self.api.list("subnets")}
        status_diff = {name: {k: list(v) for k, v in lg.status_differences(want, actual.get(name, {})).items()}
                       for name, want in expected.items()}
        status_diff = {k: v for k, v in status_diff.items() if v}
        end_state = self._end_state()
        checks = {
            "live_deleted": not live,
            "leaks_collected_within_two_passes": not late and not left,
            "exit_codes_explained": not unexplained,
            "final_pass_exit_0": final.code == 0,
            "statuses_equal_ledger": not status_diff,
            "live_owners_intact": not end_state,
            "world_without_errors": not self.world.stats.errors,
        }
        by_kind: dict[str, dict[str, int]] = {}
        for leak in leaks:
            k = by_kind.setdefault(leak.kind, {"planted": 0, "collected": 0, "reclaimed": 0, "cleaned": 0,
                                               "max_passes": 0})
            if leak.reclaimed is not None or leak.cleaned is not None:
                k["reclaimed" if leak.reclaimed is not None else "cleaned"] += 1
                continue
            k["planted"] += 1
            if leak.collected is not None:
                k["collected"] += 1
                k["max_passes"] = max(k["max_passes"], leak.passes or 0)
        stats = self.world.stats
        durations = sorted(p.end - p.start for p in self.passes)
        summary = {
            "passes": len(self.passes),
            "changes": sum(stats.changes.values()),
            "leaks_planted": len(planted),
            "collected": len(collected),
            "max_passes_to_collect": max_passes,
            "live_deleted": len(live),
            "exit_codes": dict(sorted(codes.items())),
        }
        return {
            "ok": all(checks.values()),
            "summary": summary,
            "checks": checks,
            "settings": {k: v for k, v in vars(self.args).items() if k not in ("plot", "out")},
            "job_command": self.job_command(),
            "churn_seconds": round(churn_end - churn_start, 1),
            "changes_per_second": round(summary["changes"] / max(churn_end - churn_start, 1e-9), 2),
            "changes": dict(stats.changes),
            "pass_seconds": {"median": durations[len(durations) // 2] if durations else 0,
                             "max": durations[-1] if durations else 0},
            "leaks_by_kind": by_kind,
            "leaks_reclaimed": sum(1 for leak in leaks if leak.reclaimed is not None),
            "leaks_cleaned_by_controller": sum(1 for leak in leaks if leak.cleaned is not None),
            "leaks_left": [leak.as_json() for leak in left],
            "leaks_late": [leak.as_json() for leak in late],
            "live_deleted": [asdict(d) for d in live],
            "raced": [asdict(d) for d in raced],
            "unexplained_exits": [asdict(p) for p in unexplained],
            "passes_not_ok": [asdict(p) for p in self.passes if p.code != 0],
            "status_differences": status_diff,
            "end_state": end_state,
            "world": {"steps": stats.steps, "lost_events": stats.lost_events, "pauses": stats.pauses,
                      "pause_seconds": round(stats.pause_seconds, 1), "status_writes": stats.status_writes,
                      "lost_status_writes": stats.lost_status_writes, "max_lag_seconds": round(stats.max_lag, 3),
                      "errors": stats.errors[:20]},
            "faults": {"api_injected": sum(1 for _ in self.api.fault_times), "api_bursts": len(self.api.bursts),
                       "raft_kills": sum(1 for f in self.faults if f[2].startswith("raft")),
                       "port_watch_reconnects": self.watch.reconnects,
                       "port_watch_blind_seconds": round(self.watch.blind_seconds, 1)},
            "api_requests": dict(sorted(self.api.audit.items())),
            "workdir": str(self.workdir),
            "series": {
                "passes": [[round(p.start - churn_start, 2), round(p.end - p.start, 3), p.code] for p in self.passes],
                "outstanding": [[round(t - churn_start, 1), n, e] for t, n, e in self.timeline],
                "faults": [[round(s - churn_start, 1), round(e - churn_start, 1), w] for s, e, w in self.faults],
                "pauses": [[round(s - churn_start, 1), round(e - churn_start, 1)]
                           for s, e in self.world.pause_windows],
            },
        }


def summary_line(result: dict[str, Any]) -> str:
    s = result["summary"]
    codes = "{" + ", ".join(f"{k}: {v}" for k, v in s["exit_codes"].items()) + "}"
    return (f"passes={s['passes']} changes={s['changes']} leaks_planted={s['leaks_planted']} "
            f"collected={s['collected']} max_passes_to_collect={s['max_passes_to_collect']} "
            f"live_deleted={s['live_deleted']} exit_codes={codes}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=1000, help="job passes while the churn runs (+1 after it)")
    ap.add_argument("--rate", type=float, default=50.0, help="changes per second (default 50)")
    ap.add_argument("--min-age", type=float, default=3.0, help="the job's --min-age, seconds (default 3)")
    ap.add_argument("--job-cmd", default=DEFAULT_JOB, help="the job command; the soak appends --kubeconfig, "
                    "--ovn-nb, --min-age and --output json (default: this Python's kube_ovn_gc run)")
    ap.add_argument("--raft", action="store_true", help="NB is a 3-member Raft cluster whose leader is killed "
                    "and restarted every --raft-kill-every seconds; the job gets all three members")
    ap.add_argument("--raft-kill-every", type=float, default=120.0)
    ap.add_argument("--pods", type=int, default=500, help="plain pods kept around (plus VMs and StatefulSets)")
    ap.add_argument("--vms", type=int, default=30)
    ap.add_argument("--pause-every", type=float, default=30.0, help="mean seconds between controller pauses")
    ap.add_argument("--status-loss", type=float, default=0.1, help="share of controller status writes lost")
    ap.add_argument("--fault-rate", type=float, default=0.005, help="share of the job's requests answered 429/500")
    ap.add_argument("--burst-every", type=float, default=120.0, help="mean seconds between API 500 bursts (0: none)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="the JSON result (default bench/results/soak-*.json)")
    ap.add_argument("--plot", type=Path, default=None, help="draw leaks outstanding and pass durations (PNG)")
    ap.add_argument("--workdir", default=None, help="where the servers' files go (default: a temp dir)")
    ap.add_argument("--progress", type=int, default=50, help="log every N passes")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(2**32)
    soak = Soak(args)
    result = soak.run()
    out = args.out or ROOT / "bench" / "results" / f"soak-{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    if args.plot:
        from bench.soak.plot import plot

        plot(result, args.plot)
    for name, ok in result["checks"].items():
        if not ok:
            log(f"FAILED: {name}")
    for d in result["live_deleted"][:10]:
        log(f"live deleted: {d['kind']} {d['name']} held by {d['holders']} (job's reason: {d['reason']})")
    log(f"result: {out}")
    print(summary_line(result), flush=True)
    return 0 if result["ok"] else 1

