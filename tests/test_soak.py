"""The churn soak (``bench/soak``): its ledger on plain data, a short run of it (the CI variant, ≥ 30
passes), and proof that it fails when the job breaks the first law."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.soak import ledger as lg  # noqa: E402
from bench.soak.run import Pass, Soak, parse_args, summary_line  # noqa: E402

DEFAULT = lg.SubnetSpec("ovn-default", "10.16.0.0/16", "10.16.0.1")


# --- the ledger ---------------------------------------------------------------------------------------


def test_liveness_spans_union_of_holders() -> None:
    live = lg.Liveness()
    assert live.hold("db-1.db", "slot:db/db/1", at=10.0)
    assert not live.hold("db-1.db", "pod:db/db-1", at=11.0)  # already alive: no new span
    assert not live.release("db-1.db", "slot:db/db/1", at=12.0)  # the pod still holds it
    assert live.release("db-1.db", "pod:db/db-1", at=13.0)
    assert live.hold("db-1.db", "slot:db/db/1", at=20.0)
    assert live.span_at("db-1.db", 12.5) == (10.0, 13.0)
    assert live.span_at("db-1.db", 15.0) is None
    assert live.span_at("db-1.db", 25.0) == (20.0, lg.INF)
    assert live.alive_throughout("db-1.db", 10.5, 12.9)
    assert not live.alive_throughout("db-1.db", 12.0, 14.0)
    assert live.alive_during("db-1.db", 12.0, 14.0)
    assert not live.alive_during("db-1.db", 13.0, 19.9)
    assert live.ended_during("db-1.db", 12.0, 14.0) == 13.0 and live.ended_during("db-1.db", 14.0, 30.0) is None
    assert not live.release("db-1.db", "nobody", at=30.0)
    assert live.live_names() == {"db-1.db"}


def test_leak_eligible_after_min_age_collected_once_and_reclaimed() -> None:
    ledger = lg.Ledger(min_age=3.0)
    young = ledger.plant(lg.CONTROLLER_DOWN, "ip", "web-1.default", gone=100.0, created=99.0)
    assert young is not None and young.eligible == 102.0  # created + min-age, later than the owner went
    old = ledger.plant(lg.LSP_ONLY, "port", "web-2.default", gone=100.0)
    assert old is not None and old.eligible == 100.0  # ports need no age
    assert ledger.plant(lg.IP_CR_ONLY, "ip", "web-1.default", gone=101.0) is None  # already planted
    assert ledger.collected("ip", "web-1.default", 105.0) is young and young.collected == 105.0
    assert ledger.collected("ip", "web-1.default", 106.0) is None
    ledger.reclaimed("web-2.default", 107.0)
    assert old.reclaimed == 107.0 and ledger.outstanding() == []


def test_expected_status_is_kube_ovn_arithmetic() -> None:
    """The numbers ``tests/scenario.py`` ``seed_clean`` writes, as kube-ovn-controller computes them."""
    status = lg.expected_status(DEFAULT, ["10.16.0.2", "10.16.0.3", "10.16.0.4", "10.16.0.5", "10.16.0.9"])
    assert status == {"v4availableIPs": 65528, "v4usingIPs": 5,
                      "v4availableIPrange": "10.16.0.6-10.16.0.8,10.16.0.10-10.16.255.254",
                      "v4usingIPrange": "10.16.0.2-10.16.0.5,10.16.0.9",
                      "v6availableIPs": 0, "v6usingIPs": 0, "v6availableIPrange": "", "v6usingIPrange": ""}
    empty = lg.expected_status(DEFAULT, [])
    assert (empty["v4availableIPs"], empty["v4availableIPrange"], empty["v4usingIPrange"]) == (
        65533, "10.16.0.2-10.16.255.254", "")
    edge = lg.expected_status(DEFAULT, ["10.16.0.2", "10.16.255.254"])
    assert edge["v4availableIPrange"] == "10.16.0.3-10.16.255.253"


def test_expected_statuses_count_only_live_assigned_names() -> None:
    ledger = lg.Ledger(min_age=0)
    ledger.live.hold("a.default", "pod:default/a")
    ledger.assign("a.default", "ovn-default", "10.16.0.7")
    ledger.assign("gone.default", "ovn-default", "10.16.0.8")  # its owner is not alive: a leak, not counted
    ledger.live.hold("never.default", "pod:default/never")  # alive but never allocated
    got = ledger.expected_statuses([DEFAULT])["ovn-default"]
    assert (got["v4usingIPs"], got["v4usingIPrange"]) == (1, "10.16.0.7")


def test_status_differences_compare_counts_as_numbers() -> None:
    want = lg.expected_status(DEFAULT, ["10.16.0.2"])
    written_by_old_kube_ovn = {**want, "v4availableIPs": 65532.0, "v4usingIPs": "1"}
    assert lg.status_differences(want, written_by_old_kube_ovn) == {}
    assert lg.status_differences(want, {**want, "v4usingIPs": 2}) == {"v4usingIPs": (1, 2)}
    assert set(lg.status_differences(want, {})) == set(want) - {"v6availableIPrange", "v6usingIPrange"}


def test_passes_to_collect_count_completed_passes_since_eligible() -> None:
    soak = Soak.__new__(Soak)
    soak.ledger = lg.Ledger(min_age=0)
    soak.passes = [Pass(0, 10.0, 11.0, 0), Pass(1, 11.0, 12.0, 3), Pass(2, 12.0, 13.0, 0), Pass(3, 13.0, 14.0, 0)]
    first = soak.ledger.plant(lg.LSP_ONLY, "port", "a.default", gone=10.5)
    second = soak.ledger.plant(lg.LSP_ONLY, "port", "b.default", gone=9.0)
    early = soak.ledger.plant(lg.LSP_ONLY, "port", "c.default", gone=10.9)
    assert first and second and early
    soak.ledger.collected("port", "a.default", 13.5)  # passes 1 (exit 3: not counted), 2 and 3 → 2
    soak.ledger.collected("port", "b.default", 10.5)  # the first pass
    soak.ledger.collected("port", "c.default", 10.95)  # by a pass that started before it was eligible → 1
    soak._passes_to_collect()
    assert (first.passes, second.passes, early.passes) == (2, 1, 1)


def test_summary_line_has_the_issue_fields() -> None:
    result: dict[str, Any] = {"summary": {"passes": 31, "changes": 1500, "leaks_planted": 40, "collected": 40,
                                          "max_passes_to_collect": 2, "live_deleted": 0,
                                          "exit_codes": {0: 30, 3: 1}}}
    assert summary_line(result) == ("passes=31 changes=1500 leaks_planted=40 collected=40 "
                                    "max_passes_to_collect=2 live_deleted=0 exit_codes={0: 30, 3: 1}")


def test_explained_exit_needs_an_injected_fault_and_its_reason() -> None:
    soak = Soak(parse_args(["--seed", "1"]))
    soak.faults = [(100.0, 105.0, "api-burst")]
    hit = Pass(0, 101.0, 110.0, 3, error="could not list pods: HTTP 500 InternalError: injected fault: HTTP 500")
    assert soak._fault_of(hit) == "api"
    assert soak._fault_of(Pass(1, 120.0, 121.0, 3, error="HTTP 500 InternalError")) == ""  # no fault then
    assert soak._fault_of(Pass(2, 101.0, 102.0, 4, error="refused: HTTP 500")) == ""  # 4 is never a fault's
    assert soak._fault_of(Pass(3, 101.0, 102.0, 5, error="a bug", reasons=["ip x: KeyError"])) == ""


# --- the soak itself --------------------------------------------------------------------------------------


def soak(tmp_path: Path, *args: str, timeout: float = 600) -> tuple[int, str, dict[str, Any]]:
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--out", str(out), "--workdir", str(tmp_path),
                           "--progress", "10", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.exists(), proc.stderr[-3000:]
    return proc.returncode, proc.stdout, json.loads(out.read_text())


def test_soak_ci_variant(tmp_path: Path) -> None:
    """≥ 30 passes at 50 changes/s with controller pauses, lost status writes, API 429/500s and a 500 burst:
    nothing live deleted, every leak collected within two passes, statuses right after the churn."""
    code, stdout, result = soak(tmp_path, "--passes", "30", "--rate", "50", "--seed", "20261205",
                                "--pause-every", "8", "--burst-every", "25", "--plot", str(tmp_path / "soak.png"))
    assert code == 0, json.dumps({k: result[k] for k in ("checks", "live_deleted", "leaks_left", "leaks_late",
                                                         "unexplained_exits", "status_differences", "end_state",
                                                         "world")}, indent=1)[:6000]
    summary = result["summary"]
    assert summary["passes"] == 31 and summary["live_deleted"] == 0
    assert summary["leaks_planted"] > 0 and summary["collected"] == summary["leaks_planted"]
    assert 1 <= summary["max_passes_to_collect"] <= 2
    assert result["world"]["pauses"] > 0 and result["world"]["lost_status_writes"] > 0
    assert result["faults"]["api_injected"] > 0
    assert result["leaks_by_kind"][lg.CONTROLLER_DOWN]["planted"] > 0
    assert stdout.startswith(f"passes=31 changes={summary['changes']} ")
    assert (tmp_path / "soak.png").stat().st_size > 10_000


@pytest.mark.parametrize("broken", ["vm-keep"])
def test_soak_fails_with_a_job_that_deletes_live_addresses(tmp_path: Path, broken: str) -> None:
    """The proof the soak can fail: the job with its VM keep rule patched out deletes stopped VMs' addresses."""
    code, stdout, result = soak(tmp_path, "--passes", "6", "--seed", "7",
                                "--job-cmd", f"{sys.executable} -m bench.soak.broken {broken} run")
    assert code == 1
    assert result["summary"]["live_deleted"] > 0 and not result["checks"]["live_deleted"]
    flagged = result["live_deleted"][0]
    assert flagged["kind"] == "ip" and any(h.startswith("vm:") for h in flagged["holders"])
    assert "live_deleted=0 " not in stdout
