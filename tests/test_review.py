"""Review, then apply exactly that: the reviewed report read and judged, the live plan restricted to it
(review.py), on plain data — a check report as Report.as_json writes it, hand-built snapshots."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from builders import NOW, ip, node, pod, port, snapshot
from kube_ovn_gc import review
from kube_ovn_gc.apply import ip_detail, port_detail
from kube_ovn_gc.errors import ReportRefused
from kube_ovn_gc.model import ClusterIdentity, Snapshot
from kube_ovn_gc.plan import Policy, PortAction, StuckIp, plan
from kube_ovn_gc.report import PLANNED, SKIPPED, ActionRecord, Report

POLICY = Policy(now=NOW, min_age=dt.timedelta(minutes=5), keep_vm_ip=True)
HOUR = dt.timedelta(hours=1)
CLUSTER = ClusterIdentity("ks-uid-1", "https://10.0.0.1:6443")


def check_report(snap: Snapshot, *, started: dt.datetime = NOW - dt.timedelta(minutes=10),
                 cluster: ClusterIdentity | None = CLUSTER, extra: list[ActionRecord] | None = None) -> Any:
    """What `kube-ovn-gc check -o json` writes for this snapshot (the same records apply.py makes)."""
    p = plan(snap, dataclasses.replace(POLICY, now=started))
    records = [ActionRecord("ip", a.ip.meta.name, a.reason, PLANNED, ip_detail(a.ip)) for a in p.ips]
    records += [ActionRecord("port", a.port.name, a.reason, PLANNED, port_detail(a)) for a in p.ports]
    records += extra or []
    records.append(ActionRecord("subnet-status", "ovn-default", "status drift", PLANNED,
                                {"before": {}, "after": {}, "changed": []}))
    report = Report(True, 1, started, 0.5, snap.inventory(), tuple(records),
                    extra={"undo": [], "cluster": None if cluster is None else cluster.as_json()})
    return report.as_json()


def reviewed_of(data: Any, *, now: dt.datetime = NOW, max_age: dt.timedelta = HOUR) -> review.Reviewed:
    return review.parse_report(data, source="check.json", now=now, max_age=max_age)


# The cluster of the check: web lives; gone-a and gone-b are leaked IP CRs (with their ports); orphan is a
# leaked port without IP CR.
WEB = pod("default", "web")
GONE_A, GONE_B = ip("gone-a.default", pod_name="gone-a"), ip("gone-b.default", pod_name="gone-b", v4="10.16.0.11")
ORPHAN = port("orphan.default", pod_key="default/orphan")


def checked() -> Snapshot:
    return snapshot(pods=(WEB,), nodes=(node("node1"),), ips=(ip("web.default", pod_name="web"), GONE_A, GONE_B),
                    ports=(port("web.default", pod_key="default/web"), ORPHAN))


# --- reading the report -------------------------------------------------------------------------------


def test_a_check_report_pins_each_planned_ip_by_uid_and_each_port_by_nb_uuid() -> None:
    reviewed = reviewed_of(check_report(checked()))
    assert {name: e.pin for name, e in reviewed.ips.items()} == {"gone-a.default": GONE_A.meta.uid,
                                                                "gone-b.default": GONE_B.meta.uid}
    assert {uuid: (e.name, e.switch) for uuid, e in reviewed.ports.items()} == {
        ORPHAN.uuid: ("orphan.default", "ovn-default")}
    assert reviewed.cluster == CLUSTER and reviewed.started_at == NOW - dt.timedelta(minutes=10)
    assert reviewed.releases == {}
    assert reviewed.ips["gone-a.default"].detail["addresses"] == "10.16.0.10"


def test_a_stuck_ip_planned_for_release_is_a_release_not_a_delete() -> None:
    stuck = ActionRecord("ip", "old.default", "stuck", PLANNED, {**ip_detail(ip("old.default")), "stuck": True,
                                                                 "uid": "uid-old"})
    reviewed = reviewed_of(check_report(checked(), extra=[stuck]))
    assert "old.default" not in reviewed.ips and reviewed.releases["old.default"].pin == "uid-old"


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: [d], "not a JSON object"),
    (lambda d: {**d, "dry_run": False}, "a run that acted"),
    (lambda d: {"exit_code": 1, "started_at": d["started_at"], "findings": [], "counts": {}}, "a doctor report"),
    (lambda d: {**d, "dry_run": False, "command": "restore"}, "a restore report"),
    (lambda d: {"hello": "world"}, "not a kube-ovn-gc report"),
    (lambda d: {k: d[k] for k in ("dry_run", "exit_code", "started_at", "duration_seconds")} | {"error": "NB down"},
     "did not run (NB down)"),
    (lambda d: {**d, "exit_code": 3}, "did not complete"),
    (lambda d: {**d, "started_at": "yesterday"}, "not a timestamp"),
    (lambda d: {**d, "started_at": "2026-11-27T11:55:00"}, "no time zone"),
    (lambda d: {**d, "cluster": None}, "does not record which cluster"),
    (lambda d: {**d, "cluster": {"uid": "", "server": "x"}}, "does not record which cluster"),
    (lambda d: {**d, "actions": {}}, "'actions' is not a list"),
    (lambda d: {**d, "actions": ["ip"]}, "actions[0] is not an object"),
    (lambda d: {**d, "actions": [{"kind": "ip"}]}, "no kind, name or outcome"),
    (lambda d: {**d, "actions": [{**d["actions"][0], "uid": None}]}, "records no uid"),
    (lambda d: {**d, "actions": [{**a, "uuid": None} if a["kind"] == "port" else a for a in d["actions"]]},
     "records no NB uuid"),
    (lambda d: {**d, "actions": [d["actions"][0], d["actions"][0]]}, "twice"),
])
def test_anything_but_a_check_report_is_refused_and_says_what_it_is(mutate: Any, message: str) -> None:
    with pytest.raises(ReportRefused, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        reviewed_of(mutate(check_report(checked())))


def test_a_report_older_than_max_report_age_is_refused_with_its_age() -> None:
    data = check_report(checked(), started=NOW - dt.timedelta(minutes=61))
    with pytest.raises(ReportRefused, match=r"is 1h01m old .* older than --max-report-age 1h00m"):
        reviewed_of(data)
    assert reviewed_of(data, max_age=dt.timedelta(hours=2)).ports  # the same report, allowed a longer age


def test_a_report_dated_in_the_future_is_refused_beyond_a_little_clock_skew() -> None:
    assert reviewed_of(check_report(checked(), started=NOW + dt.timedelta(minutes=2))).ips
    with pytest.raises(ReportRefused, match="in the future"):
        reviewed_of(check_report(checked(), started=NOW + dt.timedelta(minutes=6)))


def test_a_report_of_another_cluster_is_refused_naming_both() -> None:
    reviewed = reviewed_of(check_report(checked()))
    review.check_cluster(reviewed, ClusterIdentity("ks-uid-1", "https://lb.example:6443"))  # another URL, same
    with pytest.raises(ReportRefused, match=r"another cluster: .*ks-uid-1 .*10\.0\.0\.1.* this one is ks-uid-2"):
        review.check_cluster(reviewed, ClusterIdentity("ks-uid-2", "https://10.0.0.1:6443"))
    with pytest.raises(ReportRefused, match="cannot tell"):
        review.check_cluster(reviewed, ClusterIdentity(None, "https://10.0.0.1:6443"))


# --- restricting the live plan ----------------------------------------------------------------------------


def restricted(live: Snapshot, reviewed: review.Reviewed) -> review.Restricted:
    return review.restrict(plan(live, POLICY), reviewed, live.kube, live.nb, POLICY)


def stale_reasons(r: review.Restricted) -> dict[str, str]:
    return {s.entry.name: s.reason for s in r.stale}


def test_unchanged_reviewed_leaks_are_kept_and_nothing_else() -> None:
    snap = checked()
    r = restricted(snap, reviewed_of(check_report(snap)))
    assert {a.ip.meta.name for a in r.plan.ips} == {"gone-a.default", "gone-b.default"}
    assert [a.port.uuid for a in r.plan.ports] == [ORPHAN.uuid]
    assert r.stale == () and r.not_reviewed == ()


def test_a_leak_that_appeared_after_the_check_is_not_reviewed_and_left_out() -> None:
    reviewed = reviewed_of(check_report(checked()))
    late_ip, late_port = ip("late.default", pod_name="late", v4="10.16.0.12"), port("late-port.default")
    live = dataclasses.replace(checked(), kube=dataclasses.replace(checked().kube, ips=(*checked().kube.ips, late_ip)),
                               nb=dataclasses.replace(checked().nb, ports=(*checked().nb.ports, late_port)))
    r = restricted(live, reviewed)
    assert {a.ip.meta.name for a in r.plan.ips} == {"gone-a.default", "gone-b.default"}
    assert [a.port.name for a in r.plan.ports] == ["orphan.default"]
    assert {a.ip.meta.name if not isinstance(a, PortAction) else a.port.name for a in r.not_reviewed} == {
        "late.default", "late-port.default"}


def test_an_entry_whose_owner_came_back_is_stale_with_the_owner_as_reason() -> None:
    reviewed = reviewed_of(check_report(checked()))
    back = dataclasses.replace(checked().kube, pods=(WEB, pod("default", "gone-a"), pod("default", "orphan")))
    r = restricted(dataclasses.replace(checked(), kube=back), reviewed)
    assert {a.ip.meta.name for a in r.plan.ips} == {"gone-b.default"} and r.plan.ports == ()
    reasons = stale_reasons(r)
    assert reasons["gone-a.default"].startswith("no longer a leak: ") and "Pod default/gone-a" in reasons[
        "gone-a.default"]
    assert reasons["orphan.default"].startswith("no longer a leak: ")
    assert r.not_reviewed == ()


def test_an_ip_cr_recreated_with_a_new_uid_is_stale_and_the_new_one_not_reviewed() -> None:
    reviewed = reviewed_of(check_report(checked()))
    again = ip("gone-a.default", pod_name="gone-a")  # same name, a new uid: a different object
    assert again.meta.uid != GONE_A.meta.uid
    live = dataclasses.replace(checked(), kube=dataclasses.replace(checked().kube, ips=(
        ip("web.default", pod_name="web"), again, GONE_B)))
    r = restricted(live, reviewed)
    assert {a.ip.meta.uid for a in r.plan.ips} == {GONE_B.meta.uid}
    assert stale_reasons(r)["gone-a.default"] == (
        f"re-created since the check (uid {again.meta.uid}, the check saw {GONE_A.meta.uid}): a different IP CR "
        f"of the same name; left alone")
    assert [a.ip.meta.uid for a in r.not_reviewed if not isinstance(a, PortAction)] == [again.meta.uid]


def test_a_port_recreated_with_a_new_nb_uuid_is_stale() -> None:
    reviewed = reviewed_of(check_report(checked()))
    again = port("orphan.default", pod_key="default/orphan")
    live = dataclasses.replace(checked(), nb=dataclasses.replace(checked().nb, ports=(
        port("web.default", pod_key="default/web"), again)))
    r = restricted(live, reviewed)
    assert r.plan.ports == ()
    assert stale_reasons(r)["orphan.default"].startswith(f"re-created since the check (NB uuid {again.uuid}, "
                                                         f"the check saw {ORPHAN.uuid})")
    assert [a.port.uuid for a in r.not_reviewed if isinstance(a, PortAction)] == [again.uuid]


def test_entries_already_gone_are_stale_as_gone() -> None:
    reviewed = reviewed_of(check_report(checked()))
    live = snapshot(pods=(WEB,), nodes=(node("node1"),), ips=(ip("web.default", pod_name="web"),),
                    ports=(port("web.default", pod_key="default/web"),))
    r = restricted(live, reviewed)
    assert r.plan.empty
    assert stale_reasons(r) == dict.fromkeys(("gone-a.default", "gone-b.default", "orphan.default"), "already gone")


def test_a_port_that_has_an_ip_cr_now_is_stale() -> None:
    reviewed = reviewed_of(check_report(checked()))
    live = dataclasses.replace(checked(), kube=dataclasses.replace(checked().kube, ips=(
        *checked().kube.ips, ip("orphan.default", pod_name="orphan", created=NOW - dt.timedelta(minutes=1)))))
    r = restricted(live, reviewed)
    assert r.plan.ports == ()
    assert stale_reasons(r)["orphan.default"] == "no longer a leak: an IP CR of this name exists now (it decides)"


def test_a_port_moved_to_another_switch_under_the_same_uuid_is_stale() -> None:
    reviewed = reviewed_of(check_report(checked()))
    moved = dataclasses.replace(ORPHAN, switch="other", switch_uuid="ls-other")
    live = dataclasses.replace(checked(), nb=dataclasses.replace(checked().nb, ports=(
        port("web.default", pod_key="default/web"), moved)))
    r = restricted(live, reviewed)
    assert r.plan.ports == ()
    assert stale_reasons(r)["orphan.default"] == "changed since the check: now port orphan.default on switch other; " \
                                                 "left alone"


def test_finalizer_releases_are_pinned_by_uid_too() -> None:
    a, b = ip("a.default", deleted=NOW - HOUR * 3), ip("b.default", deleted=NOW - HOUR * 3)
    stuck = (StuckIp(a, HOUR * 3, True, "stuck"), StuckIp(b, HOUR * 3, True, "stuck"))
    record = ActionRecord("ip", "a.default", "stuck", PLANNED, {**ip_detail(a), "stuck": True})
    other = ActionRecord("ip", "b.default", "stuck", SKIPPED, {**ip_detail(b), "stuck": True})
    reviewed = reviewed_of(check_report(checked(), extra=[record, other]))
    pinned, rest = review.reviewed_stuck(stuck, reviewed)
    assert [s.ip.meta.name for s in pinned] == ["a.default"] and [s.ip.meta.name for s in rest] == ["b.default"]
    renewed = StuckIp(ip("a.default", deleted=NOW - HOUR * 3), HOUR * 3, True, "stuck")  # a new uid
    assert review.reviewed_stuck((renewed,), reviewed) == ((), (renewed,))
