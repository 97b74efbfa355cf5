"""The scale benchmark: one full ``kube-ovn-gc run`` pass against a generated cluster, and its floor.

For each size: a real ovsdb-server and the fake API server (in this process) are
seeded with :func:`bench.cluster.generate`; then, ``--repeat`` times on the same data
(both servers are rolled back between passes):

- the **floor** (``python -m bench.floor``, a child process): one OVSDB select of the
  columns the job needs and the same paged lists, parsed with orjson, nothing kept;
- the **job** (``python -m kube_ovn_gc run --output json``, a child process): its wall
  time, its peak RSS (``os.wait4``), its phases (from its JSON logs), and a check that
  it deleted exactly the leaked IP CRs and LSPs and nothing else.

Then ``lsp_del`` of 1,000 of the ports through the job's own NB adapter. Medians are
printed as a table (``--readme`` also writes it into README.md) and the raw numbers
go to ``bench/results/``.

    python -m bench --sizes 10000,100000 [--repeat 5] [--readme]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.cluster import Cluster, Shape, generate, seed
from fakeapi import FakeApiServer
from ovsdb import OvsdbServer

README_BEGIN = "<!-- bench:begin -->"
README_END = "<!-- bench:end -->"
TOKEN = "fake-token"  # FakeApiServer accepts any bearer token


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# --- the two servers, seeded once, rolled back between passes ------------------------------


class Servers:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.nb = OvsdbServer(workdir)
        self.api = FakeApiServer()
        self._api_state: object = None
        self._nb_seed = workdir / "nb.db.seeded"

    def start(self) -> None:
        self.nb.start()
        self.api.start()
        self.kubeconfig = self.api.write_kubeconfig(self.workdir / "kubeconfig")

    def checkpoint(self) -> None:
        self._api_state = self.api.checkpoint()
        self.nb.stop()
        subprocess.run(["ovsdb-tool", "compact", str(self.nb.db_path)], check=True, capture_output=True)
        shutil.copyfile(self.nb.db_path, self._nb_seed)
        self.nb.start()
        self.warm()

    def rollback(self) -> None:
        self.api.rollback(self._api_state)
        self.nb.stop()
        shutil.copyfile(self._nb_seed, self.nb.db_path)
        self.nb.start()
        self.warm()

    def warm(self) -> None:
        """A full read of NB and a small one of the API, so neither the floor nor the job pays a cold start
        (ovsdb-server's first big select after a restart is ~30% slower than the next ones)."""
        from bench.floor import read_nb

        read_nb(str(self.nb.sock_path))
        import urllib3

        urllib3.request("GET", f"{self.api.url}/api/v1/nodes?limit=1", headers={"Authorization": f"Bearer {TOKEN}"})

    def stop(self) -> None:
        self.api.stop()
        self.nb.cleanup()


# --- child processes ------------------------------------------------------------------------------


@dataclass
class Child:
    wall: float
    max_rss_mib: float
    returncode: int
    started_at: float  # time.time() at spawn, to line the child's log times up
    stdout: str
    stderr: str
    rss: list[tuple[float, float]]  # (s since spawn, RSS MiB), every 20 ms


class Spawner:
    """The small process (bench/spawn.py) that forks and times the job and the floor: see its docstring."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "spawn.py")], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)

    def run(self, cmd: list[str], env: dict[str, str], workdir: Path, tag: str) -> Child:
        out, err = workdir / f"{tag}.stdout", workdir / f"{tag}.stderr"
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"cmd": cmd, "env": env, "cwd": str(ROOT), "stdout": str(out),
                                           "stderr": str(err)}) + "\n")
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the spawner died")
        got = json.loads(line)
        return Child(got["wall"], got["max_rss_kib"] / 1024, got["returncode"], got["started_at"], out.read_text(),
                     err.read_text(), [tuple(x) for x in got["rss"]])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)


def run_floor(spawner: Spawner, servers: Servers, workdir: Path, rep: int) -> dict[str, Any]:
    child = spawner.run([sys.executable, "-m", "bench.floor", "--server", servers.api.url, "--token", TOKEN,
                       "--nb", servers.nb.unix_remote], dict(os.environ), workdir, f"floor-{rep}")
    if child.returncode != 0:
        raise RuntimeError(f"floor failed ({child.returncode}): {child.stderr[-2000:]}")
    result = json.loads(child.stdout)
    lists = result["lists"]
    return {"wall": child.wall, "max_rss_mib": child.max_rss_mib, "read_seconds": result["seconds"], "lists": lists,
            "nb_seconds": result["nb"]["seconds"], "nb_bytes": result["nb"]["bytes"],
            "kube_seconds": sum(v["seconds"] for v in lists.values()),
            "kube_bytes": sum(v["bytes"] for v in lists.values()),
            "pods_seconds": lists["pods"]["seconds"], "ips_seconds": lists["ips"]["seconds"]}


_PHASES = (  # (phase name, message prefix of its last log line)
    ("start", "connected to OVN Northbound"),
    ("nb_read", "listed "),
    ("kube_read", "read {"),
)


def _phases(child: Child) -> dict[str, Any]:
    """Times (s since spawn) of the job's milestones, from its JSON log lines."""
    marks: dict[str, float] = {}
    ip_times: list[float] = []
    port_times: list[float] = []
    status_times: list[float] = []
    last = 0.0
    for line in child.stderr.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        t = dt.datetime.fromisoformat(rec["time"]).timestamp() - child.started_at
        msg = str(rec.get("message", ""))
        last = max(last, t)
        for name, prefix in _PHASES:
            if msg.startswith(prefix) and name not in marks:
                marks[name] = t
        if re.match(r"ip \S+ (deleted|already gone)", msg):
            ip_times.append(t)
        elif re.match(r"port \S+ deleted", msg):
            port_times.append(t)
        elif re.match(r"subnet \S+ status corrected", msg):
            status_times.append(t)
    out: dict[str, Any] = dict(marks)
    if ip_times:
        out.update(ips_first=ip_times[0], ips_last=ip_times[-1], ips_done=len(ip_times))
        if len(ip_times) > 1:
            out["ms_per_ip"] = 1000 * (ip_times[-1] - ip_times[0]) / (len(ip_times) - 1)
    if port_times:
        out.update(ports_last=port_times[-1], ports_done=len(port_times))
    if status_times:
        out.update(statuses_last=status_times[-1], statuses_done=len(status_times))
    out["last_log"] = last
    # peak RSS (sampled) up to the end of each read, and over the whole pass
    for name in ("nb_read", "kube_read"):
        if name in marks:
            out[f"rss_{name}"] = max((r for t, r in child.rss if t <= marks[name]), default=0.0)
    out["rss_sampled_max"] = max((r for _, r in child.rss), default=0.0)
    return out


def run_job(spawner: Spawner, servers: Servers, cluster: Cluster, workdir: Path, rep: int,
            command: str = "run") -> dict[str, Any]:
    """One pass of ``kube-ovn-gc <command>`` (``run``, ``check`` or ``doctor``) in its own process."""
    env = dict(os.environ, KUBECONFIG=str(servers.kubeconfig))
    env.pop("OVN_NB_DB", None)
    cmd = [sys.executable, "-m", "kube_ovn_gc", command, "--output", "json", "--log-format", "json",
           "--ovn-nb", servers.nb.unix_remote]
    if command != "doctor":
        cmd += ["--max-deletions", str(10 * cluster.shape.leaks + 100)]
    child = spawner.run(cmd, env, workdir, f"{command}-{rep}")
    try:
        report = json.loads(child.stdout)
    except ValueError as exc:
        raise RuntimeError(f"{command} printed no report (exit {child.returncode}): {child.stderr[-3000:]}") from exc
    problems = check_report(report, cluster, "done" if command == "run" else "planned") if command != "doctor" else []
    expected = 0 if command == "run" else 1  # check and doctor find the leaks
    if child.returncode != expected:
        problems.append(f"exit code {child.returncode}: {report.get('error')}")
    reads = report.get("reads", {})
    return {"wall": child.wall, "max_rss_mib": child.max_rss_mib, "exit_code": child.returncode,
            "duration_seconds": report.get("duration_seconds"), "phases": _phases(child), "problems": problems,
            "inventory": report.get("inventory", {}), "reads": reads,
            "kube_bytes": sum(int(v.get("bytes", 0)) for k, v in reads.items() if k != "nb"),
            "nb_bytes": int(reads.get("nb", {}).get("bytes", 0))}


def check_report(report: dict[str, Any], cluster: Cluster, outcome: str = "done") -> list[str]:
    """The pass must have deleted (``done``; ``planned`` in a dry run) exactly the leaked IP CRs and the LSPs
    without IP CR."""
    done: dict[str, set[str]] = {"ip": set(), "port": set()}
    problems = []
    for action in report.get("actions", []):
        if action["outcome"] == outcome and action["kind"] in done:
            done[action["kind"]].add(action["name"])
        elif action["outcome"] == "failed" or (action["kind"] in done and action["outcome"] in ("planned", "done")):
            problems.append(f"{action['kind']} {action['name']}: {action['outcome']}: {action['reason']}")
    for kind, expected in (("ip", cluster.leaked_ips), ("port", cluster.leaked_ports)):
        if done[kind] != expected:
            problems.append(f"{kind}: {len(done[kind] - expected)} deleted that are not leaked "
                            f"({sorted(done[kind] - expected)[:3]}), {len(expected - done[kind])} leaked not deleted "
                            f"({sorted(expected - done[kind])[:3]})")
    return problems[:10]


def nb_delete(servers: Servers, count: int) -> dict[str, Any]:
    """``lsp_del`` of ``count`` kube-ovn ports spread over every switch, through the job's adapter."""
    from kube_ovn_gc.ovn import OvsdbNorthbound
    from kube_ovn_gc.retry import RetryPolicy
    from kube_ovn_gc.settings import NbSettings

    with OvsdbNorthbound(NbSettings(remotes=(servers.nb.unix_remote,)), RetryPolicy(attempts=1)) as nb:
        ports = [p for p in nb.lsp_list().ports if p.type == "" and p.external_id("vendor") == "kube-ovn"]
        step = max(1, len(ports) // count)
        chosen = ports[::step][:count]
        t0 = time.perf_counter()
        result = nb.lsp_del(chosen)
        seconds = time.perf_counter() - t0
    deleted = sum(1 for v in result.values() if v == "done")
    return {"seconds": seconds, "deleted": deleted, "asked": len(chosen)}


# --- one size ---------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    size: int
    cluster: dict[str, Any]
    generate_seconds: float
    seed_seconds: float
    floors: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # run, 1% leaks acted on
    checks: list[dict[str, Any]] = field(default_factory=list)  # check (dry run)
    doctors: list[dict[str, Any]] = field(default_factory=list)
    nb_deletes: list[dict[str, Any]] = field(default_factory=list)

    def median(self, runs: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in getattr(self, runs))

    def phase(self, key: str) -> float | None:
        values = [r["phases"][key] for r in self.jobs if key in r["phases"]]
        return statistics.median(values) if values else None

    @property
    def ok(self) -> bool:
        return (all(not j["problems"] for j in self.jobs + self.checks + self.doctors)
                and all(d["deleted"] == d["asked"] for d in self.nb_deletes))

    def job_bytes(self, runs: str) -> float:
        """Median bytes a pass of ``runs`` received: its Kubernetes reads and its NB select (the floor's, the same
        select, when the NB adapter does not count its bytes)."""
        return statistics.median(j["kube_bytes"] + (j["nb_bytes"] or f["nb_bytes"])
                                 for j, f in zip(getattr(self, runs), self.floors, strict=False))

    def floor_bytes(self) -> float:
        return statistics.median(f["kube_bytes"] + f["nb_bytes"] for f in self.floors)


def bench_size(spawner: Spawner, size: int, repeat: int, leak: float, keep: bool,
               doctor_passes: int = 1) -> SizeResult:
    workdir = Path(tempfile.mkdtemp(prefix=f"kogc-bench-{size}-", dir="/tmp"))
    servers = Servers(workdir)
    try:
        servers.start()
        t0 = time.perf_counter()
        cluster = generate(Shape(size, leak_ratio=leak))
        generated = time.perf_counter() - t0
        log(f"size {size}: generated in {generated:.1f}s: {cluster.summary()}")
        t0 = time.perf_counter()
        seed(cluster, servers.api, servers.nb)
        seeded = time.perf_counter() - t0
        servers.checkpoint()
        log(f"size {size}: seeded in {seeded:.1f}s")
        # The seeded objects live as long as the servers: keep the collector of this process (where the
        # fake API server's threads run) from scanning them again and again.
        gc.collect()
        gc.freeze()
        counts = {"pods": cluster.count("pods"), "ips": cluster.count("ips"), "ports": cluster.ports,
                  "subnets": cluster.count("subnets"), "nodes": cluster.count("nodes"),
                  "leaked_ips": len(cluster.leaked_ips), "leaked_ports": len(cluster.leaked_ports)}
        result = SizeResult(size, counts, generated, seeded)
        del cluster.objects  # the fake server holds them now; the check needs only the leaked names
        for rep in range(repeat):
            floor = run_floor(spawner, servers, workdir, rep)
            result.floors.append(floor)
            log(f"size {size} #{rep + 1}: floor {floor['wall']:.2f}s (NB {floor['nb_seconds']:.2f}s, "
                f"lists {floor['kube_seconds']:.2f}s)")
            checked = run_job(spawner, servers, cluster, workdir, rep, "check")  # a dry run changes nothing
            result.checks.append(checked)
            log(f"size {size} #{rep + 1}: check {checked['wall']:.2f}s, peak RSS {checked['max_rss_mib']:.0f} MiB, "
                f"ratio {checked['wall'] / floor['wall']:.2f}, {checked['kube_bytes'] / 2**20:.0f} MiB from the API "
                f"(floor {floor['kube_bytes'] / 2**20:.0f} MiB)")
            for problem in checked["problems"]:
                log(f"  CHECK FAILED (check): {problem}")
            if rep < doctor_passes:
                doc = run_job(spawner, servers, cluster, workdir, rep, "doctor")
                result.doctors.append(doc)
                log(f"size {size} #{rep + 1}: doctor {doc['wall']:.2f}s, peak RSS {doc['max_rss_mib']:.0f} MiB")
                for problem in doc["problems"]:
                    log(f"  CHECK FAILED (doctor): {problem}")
            job = run_job(spawner, servers, cluster, workdir, rep)
            result.jobs.append(job)
            ph = job["phases"]
            log(f"size {size} #{rep + 1}: job {job['wall']:.2f}s, peak RSS {job['max_rss_mib']:.0f} MiB, "
                f"ratio {job['wall'] / floor['wall']:.2f}; phases {_fmt_phases(ph)}")
            for problem in job["problems"]:
                log(f"  CHECK FAILED: {problem}")
            servers.rollback()
        for rep in range(repeat):
            deleted = nb_delete(servers, 1000)
            result.nb_deletes.append(deleted)
            log(f"size {size} #{rep + 1}: NB lsp_del of {deleted['asked']} ports: {deleted['seconds']:.2f}s "
                f"({deleted['deleted']} deleted)")
            servers.rollback()
        return result
    finally:
        servers.stop()
        gc.unfreeze()
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _fmt_phases(ph: dict[str, Any]) -> str:
    keys = ("start", "nb_read", "kube_read", "ips_first", "ips_last", "ports_last", "statuses_last", "last_log")
    text = " ".join(f"{k}@{ph[k]:.2f}" for k in keys if k in ph)
    if "ms_per_ip" in ph:
        text += f" ({ph['ms_per_ip']:.1f} ms per IP CR deleted)"
    rss = [f"{k[4:]} {ph[k]:.0f}" for k in ("rss_nb_read", "rss_kube_read", "rss_sampled_max") if k in ph]
    return text + (f"; RSS MiB by: {', '.join(rss)}" if rss else "")


# --- the table ----------------------------------------------------------------------------------------


_STEPS = (  # (label, from mark, to mark): the job's time, step by step, from its log
    ("start-up, until NB is connected", "", "start"),
    ("NB read (one select; imports, kubeconfig, Lease, Subnets and IP CRs meanwhile)", "start", "nb_read"),
    ("Kubernetes read (the rest of the IP CRs, then the owners at once)", "nb_read", "kube_read"),
    ("plan, rails, first second look", "kube_read", "ips_first"),
    ("IP CRs: second looks + deletes", "ips_first", "ips_last"),
    ("ports: second looks + NB delete", "ips_last", "ports_last"),
    ("subnet statuses", "ports_last", "statuses_last"),
    ("events, report, exit", "statuses_last", "wall"),
)


def _steps(job: dict[str, Any]) -> dict[str, float]:
    marks = {**job["phases"], "": 0.0, "wall": job["wall"]}
    return {label: marks[b] - marks[a] for label, a, b in _STEPS if a in marks and b in marks}


def _ratio(runs: list[dict[str, Any]], floors: list[dict[str, Any]]) -> str:
    """The median of the per-pass ratios to the floor of the same repetition, and their spread."""
    ratios = sorted(j["wall"] / f["wall"] for j, f in zip(runs, floors, strict=False))
    spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
    return f"**{statistics.median(ratios):.2f}**{spread}"


def table(results: list[SizeResult]) -> str:
    head = ("| size | pods / LSPs / IP CRs / subnets | leaked: IP CRs + LSPs | floor: NB + lists = wall "
            "| check | check / floor | run | run / floor | peak RSS: run / doctor | MiB received: job / floor "
            "| NB `lsp_del` of 1,000 ports |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        c = r.cluster
        floor = r.median("floors", "wall")
        doctor = f"{r.median('doctors', 'max_rss_mib'):.0f}" if r.doctors else "-"
        job_bytes, floor_bytes = r.job_bytes("jobs"), r.floor_bytes()
        lines.append(
            f"| {r.size:,} | {c['pods']:,} / {c['ports']:,} / {c['ips']:,} / {c['subnets']} "
            f"| {c['leaked_ips']:,} + {c['leaked_ports']:,} "
            f"| {r.median('floors', 'nb_seconds'):.2f} + {r.median('floors', 'kube_seconds'):.2f} = {floor:.2f} s "
            f"| {r.median('checks', 'wall'):.2f} s | {_ratio(r.checks, r.floors)} "
            f"| {r.median('jobs', 'wall'):.2f} s | {_ratio(r.jobs, r.floors)} "
            f"| {r.median('jobs', 'max_rss_mib'):.0f} / {doctor} MiB "
            f"| {job_bytes / 2**20:.0f} / {floor_bytes / 2**20:.0f} (**{job_bytes / floor_bytes:.0%}**) "
            f"| {r.median('nb_deletes', 'seconds'):.2f} s |")
    lines += ["", "What the run read, per source (medians: requests, MiB, the floor's MiB, and seconds in its "
              "requests, summed over a kind's lists, which overlap: the pods' seven, and the owner kinds with each "
              "other):", ""]
    head3 = "| source | " + " | ".join(f"{r.size:,}" for r in results) + " |"
    lines += [head3, "|" + "---|" * (head3.count("|") - 1)]
    sources = sorted({s for r in results for j in r.jobs for s in j["reads"]}, key=lambda s: (s != "pods", s))
    for source in sources:
        cells = []
        for r in results:
            got = [j["reads"][source] for j in r.jobs if source in j["reads"]]
            floor_mib = statistics.median(f.get("lists", {}).get(source, {}).get("bytes", 0) for f in r.floors) / 2**20
            if not got:
                cells.append("-")
                continue
            mib = statistics.median(g["bytes"] for g in got) / 2**20
            cells.append(f"{statistics.median(g['requests'] for g in got):.0f} req, {mib:.1f} MiB"
                         + (f" ({floor_mib:.1f})" if floor_mib else "")
                         + f", {statistics.median(g['seconds'] for g in got):.2f} s")
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    lines += ["", "Where the job's time goes (medians, seconds):", ""]
    head2 = "| step | " + " | ".join(f"{r.size:,}" for r in results) + " |"
    lines += [head2, "|" + "---|" * (head2.count("|") - 1)]
    per_size = [[_steps(j) for j in r.jobs] for r in results]
    for label, _, _ in _STEPS:
        cells = []
        for runs in per_size:
            values = [s[label] for s in runs if label in s]
            cells.append(f"{statistics.median(values):.2f}" if values else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        ms = [j["phases"]["ms_per_ip"] for j in r.jobs if "ms_per_ip" in j["phases"]]
        cells.append(f"{statistics.median(ms):.1f} ms" if ms else "-")
    lines.append("| (IP CRs: wall time per IP CR deleted) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def linearity(results: list[SizeResult]) -> list[str]:
    out = []
    for runs in ("checks", "jobs"):
        by_size = {r.size: r.median(runs, "wall") for r in results}
        sizes = sorted(by_size)
        name = "run" if runs == "jobs" else "check"
        for small, big in itertools.pairwise(sizes):
            out.append(f"{name} time({big:,}) / {name} time({small:,}) = {by_size[big] / by_size[small]:.2f} "
                       f"(sizes x{big / small:g})")
    return out


def environment() -> str:
    try:
        ovsdb = subprocess.run(["ovsdb-server", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        ovsdb = "ovsdb-server ?"
    return (f"{os.cpu_count()} cores, Python {platform.python_version()}, {ovsdb}, "
            f"{dt.date.today().isoformat()}")


def write_readme(text: str) -> None:
    path = ROOT / "README.md"
    readme = path.read_text()
    begin, end = readme.find(README_BEGIN), readme.find(README_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"README.md has no {README_BEGIN} … {README_END} block to fill")
    path.write_text(readme[: begin + len(README_BEGIN)] + "\n" + text + "\n" + readme[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated cluster sizes (addresses)")
    parser.add_argument("--repeat", type=int, default=5, help="passes per size (medians are reported)")
    parser.add_argument("--leak", type=float, default=0.01, help="share of the addresses leaked")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (logs, db files)")
    parser.add_argument("--doctor", type=int, default=1, help="doctor passes per size (its peak RSS)")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    spawner = Spawner()  # first, while this process is small: see bench/spawn.py
    try:
        results = [bench_size(spawner, size, args.repeat, args.leak, args.keep, args.doctor) for size in sizes]
    finally:
        spawner.close()
    text = "\n".join([table(results), "", *(f"- {line}" for line in linearity(results)),
                      f"- medians of {args.repeat} passes each; {environment()}"])
    print(text)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    if args.readme:
        write_readme(text)
    failed = [r.size for r in results if not r.ok]
    if failed:
        log(f"CHECK FAILED for sizes {failed}: see the lines above")
        return 1
    return 0
