"""Pure: review, then apply exactly that (``kube-ovn-gc run --from-report CHECK.json``).

Terraform's ``plan -out`` / ``apply PLAN`` and ``calicoctl ipam check`` / ``ipam release --from-report``:
an operator reads what a check planned, then applies that and nothing else. The run is a normal live pass
(the same reads, the same plan, the same second looks, rails and brake); this module only

- reads the reviewed report (:func:`parse_report`): a JSON check report (``check -o json`` or
  ``run --dry-run -o json``) of this kube-ovn-gc, younger than ``--max-report-age``, that records its
  cluster; anything else is refused (:class:`ReportRefused`, exit 2) before anything is read or changed;
- checks it was made on this cluster (:func:`check_cluster`): the uid of namespace ``kube-system``;
- restricts the live plan to the reviewed entries (:func:`restrict`), each pinned: an IP CR by name and
  ``metadata.uid``, a port by its NB ``_uuid``, name and switch. A live leak that is not in the report is
  left alone (``not-reviewed``); a reviewed entry that is no longer a leak as the check saw it (its owner
  came back, it is a different object of the same name now, it is gone) is ``skipped`` with the reason.

Subnet status fixes are not pinned: a status is derived data (the counts of the IP CRs that exist), so
the run writes the status it recomputes live, after its own deletes, as any pass does. Writing the true
counts loses nothing, and the reviewed value would be wrong as soon as anything was allocated since.
Finalizer releases of stuck IP CRs (``--release-stuck-after``) are pinned like deletes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from . import plan as planner
from .errors import ReportRefused
from .model import ClusterIdentity, KubeSnapshot, NbSnapshot, Port
from .report import ACTION_KEYS

FUTURE_SKEW = dt.timedelta(minutes=5)
"""A report dated later than now by more than this is refused: the clocks disagree, its age cannot be told."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One object the reviewed report planned to act on, as the check recorded it."""

    kind: str  # "ip" | "port"
    name: str
    pin: str  # the IP CR's metadata.uid, the port's NB _uuid
    switch: str = ""  # ports: the logical switch that held it
    reason: str = ""  # why the check planned it
    detail: Mapping[str, object] = field(default_factory=dict)  # the entry's own fields, for the record


@dataclass(frozen=True)
class Reviewed:
    source: str  # the file, for messages
    started_at: dt.datetime
    cluster: ClusterIdentity
    ips: Mapping[str, Entry]  # IP CRs to delete, by name
    ports: Mapping[str, Entry]  # ports to delete, by NB uuid
    releases: Mapping[str, Entry]  # stuck IP CRs whose finalizers to release, by name

    def summary(self) -> dict[str, object]:
        """What the run's own report says of the report it applied."""
        return {"file": self.source, "started_at": self.started_at.isoformat(), "cluster": self.cluster.as_json(),
                "ips": len(self.ips), "ports": len(self.ports), "releases": len(self.releases)}


@dataclass(frozen=True, slots=True)
class Stale:
    """A reviewed entry the run leaves alone, and why."""

    entry: Entry
    reason: str


@dataclass(frozen=True)
class Restricted:
    plan: planner.Plan  # the live plan, only what was reviewed and is still the same leak
    stale: tuple[Stale, ...]  # reviewed, no longer what the check saw: skipped
    not_reviewed: tuple[planner.IpAction | planner.PortAction, ...]  # live leaks not in the report: left alone


# --- reading the report ---------------------------------------------------------------------------


def _human(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _kind_of(data: Mapping[str, object]) -> str | None:
    """Why this JSON object is not a check report, when it is recognisably something else."""
    if "findings" in data:
        return "a doctor report"
    if data.get("command") == "restore":
        return "a restore report"
    if data.get("dry_run") is False:
        return "the report of a run that acted (dry_run: false)"
    if "dry_run" not in data or "started_at" not in data:
        return "not a kube-ovn-gc report"
    return None


def parse_report(data: object, *, source: str, now: dt.datetime, max_age: dt.timedelta) -> Reviewed:
    """The reviewed plan from a decoded JSON report, or :class:`ReportRefused` saying why not."""
    hint = "review the report of `kube-ovn-gc check -o json` (or `run --dry-run -o json`)"
    if not isinstance(data, dict):
        raise ReportRefused(f"{source} is not a kube-ovn-gc check report (not a JSON object): {hint}")
    other = _kind_of(data)
    if other is not None:
        raise ReportRefused(f"{source} is {other}, not a check report: {hint}")
    if "actions" not in data:
        why = " ".join(str(data.get("error") or "it has no plan").split())
        raise ReportRefused(f"{source}: that check did not run ({why}); there is nothing to apply")
    if data.get("exit_code") not in (0, 1):
        raise ReportRefused(f"{source}: that check did not complete (exit code {data.get('exit_code')!r}); "
                            f"run the check again")
    started = _timestamp(data.get("started_at"), source)
    age = now - started
    if age > max_age:
        raise ReportRefused(f"{source} is {_human(age)} old (its check started at {started:%Y-%m-%d %H:%M:%S}Z), "
                            f"older than --max-report-age {_human(max_age)}: the cluster may have moved on; run the "
                            f"check again and review it")
    if -age > FUTURE_SKEW:
        raise ReportRefused(f"{source} is dated {_human(-age)} in the future ({started.isoformat()}): "
                            f"its age cannot be told; are the clocks right?")
    cluster = data.get("cluster")
    uid = cluster.get("uid") if isinstance(cluster, dict) else None
    if not isinstance(uid, str) or not uid:
        raise ReportRefused(f"{source} does not record which cluster it was made on (no cluster.uid: made by an "
                            f"older kube-ovn-gc, or the check could not read namespace kube-system); run the check "
                            f"again with this version")
    server = cluster.get("server") if isinstance(cluster, dict) else ""
    actions = data.get("actions")
    if not isinstance(actions, list):
        raise ReportRefused(f"{source}: 'actions' is not a list: not a check report")
    ips: dict[str, Entry] = {}
    ports: dict[str, Entry] = {}
    releases: dict[str, Entry] = {}
    for index, action in enumerate(actions):
        entry, stuck = _entry(action, index, source)
        if entry is None:
            continue
        target = ports if entry.kind == "port" else releases if stuck else ips
        key = entry.pin if entry.kind == "port" else entry.name
        if key in target:
            raise ReportRefused(f"{source}: actions[{index}] plans {entry.kind} {entry.name} twice: not a report "
                                f"kube-ovn-gc wrote")
        target[key] = entry
    return Reviewed(source, started, ClusterIdentity(uid, str(server or "")), ips, ports, releases)


def _timestamp(value: object, source: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ReportRefused(f"{source}: started_at {value!r} is not a timestamp: not a check report") from None
    if when.tzinfo is None:
        raise ReportRefused(f"{source}: started_at {value!r} has no time zone: not a report kube-ovn-gc wrote")
    return when


def _entry(action: object, index: int, source: str) -> tuple[Entry | None, bool]:
    """A planned deletion (or finalizer release) of the report, pinned; None for every other record."""
    where = f"{source}: actions[{index}]"
    if not isinstance(action, dict):
        raise ReportRefused(f"{where} is not an object: not a check report")
    kind, name, outcome = action.get("kind"), action.get("name"), action.get("outcome")
    if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(outcome, str):
        raise ReportRefused(f"{where} has no kind, name or outcome: not a check report")
    if outcome != "planned" or kind not in ("ip", "port"):
        return None, False  # kept, skipped, subnet statuses (recomputed live): nothing to pin
    detail = {k: action.get(k) for k in ACTION_KEYS[kind]}  # the record's shape, whatever else the file holds
    reason = str(action.get("reason") or "")
    if kind == "ip":
        uid = action.get("uid")
        if not isinstance(uid, str) or not uid:
            raise ReportRefused(f"{where} (IP CR {name}) records no uid: the report was made by an older "
                                f"kube-ovn-gc; run the check again with this version")
        return Entry("ip", name, uid, reason=reason, detail=detail), action.get("stuck") is True
    uuid, switch = action.get("uuid"), action.get("switch")
    if not isinstance(uuid, str) or not uuid or not isinstance(switch, str):
        raise ReportRefused(f"{where} (port {name}) records no NB uuid or switch: not a check report")
    return Entry("port", name, uuid, switch=switch, reason=reason, detail=detail), False


def check_cluster(reviewed: Reviewed, live: ClusterIdentity) -> None:
    """:class:`ReportRefused` unless the report was made on the cluster this run talks to."""
    same_cluster(reviewed.source, reviewed.cluster, live)


def same_cluster(source: str, recorded: ClusterIdentity, live: ClusterIdentity) -> None:
    """:class:`ReportRefused` unless the report ``source`` recorded (``recorded``, with a uid) is ``live``:
    the uid decides, the URL is for people (one cluster has several)."""
    if live.uid is None:
        raise ReportRefused(f"cannot tell whether {source} was made on this cluster: the uid of namespace "
                            f"kube-system could not be read (RBAC: get on namespaces kube-system)")
    if live.uid != recorded.uid:
        raise ReportRefused(
            f"{source} was made on another cluster: namespace kube-system uid {recorded.uid} "
            f"(API server {recorded.server or '?'}), this one is {live.uid} (API server {live.server}); "
            f"check the kubeconfig and context")


# --- restricting the live plan ------------------------------------------------------------------------


def restrict(live: planner.Plan, reviewed: Reviewed, kube: KubeSnapshot, nb: NbSnapshot,
             policy: planner.Policy) -> Restricted:
    """The live plan cut down to the reviewed entries that are still the same leak; the rest reported."""
    ips: list[planner.IpAction] = []
    ports: list[planner.PortAction] = []
    others: list[planner.IpAction | planner.PortAction] = []
    matched_ips: set[str] = set()
    matched_ports: set[str] = set()
    stale: list[Stale] = []
    for ip_action in live.ips:
        entry = reviewed.ips.get(ip_action.ip.meta.name)
        if entry is not None and entry.pin == ip_action.ip.meta.uid:
            ips.append(ip_action)
            matched_ips.add(entry.name)
        else:
            others.append(ip_action)
    for port_action in live.ports:
        port = port_action.port
        entry = reviewed.ports.get(port.uuid)
        if entry is None:
            others.append(port_action)
            continue
        matched_ports.add(entry.pin)
        if entry.name == port.name and entry.switch == port.switch:
            ports.append(port_action)
        else:
            others.append(port_action)
            stale.append(Stale(entry, f"changed since the check: now port {port.name} on switch "
                                      f"{port.switch or '(none)'}; left alone"))
    unmatched = ([e for name, e in reviewed.ips.items() if name not in matched_ips]
                 + [e for uuid, e in reviewed.ports.items() if uuid not in matched_ports])
    if unmatched:
        why = _Why(kube, nb, policy, live)
        stale.extend(Stale(e, why.ip(e) if e.kind == "ip" else why.port(e)) for e in unmatched)
    return Restricted(replace(live, ips=tuple(ips), ports=tuple(ports)), tuple(stale), tuple(others))


class _Why:
    """Why a reviewed entry is no longer the leak the check saw, judged on this pass's snapshot."""

    def __init__(self, kube: KubeSnapshot, nb: NbSnapshot, policy: planner.Policy, live: planner.Plan) -> None:
        self.kube, self.policy = kube, policy
        self.ips = {ip.meta.name: ip for ip in kube.ips}
        self.unparsed = {name: why for kind, name, why in kube.unparsed if kind.lower() == "ip"}
        self.ports_by_uuid: dict[str, Port] = {p.uuid: p for p in nb.ports}
        self.ports_by_name: dict[str, list[Port]] = {}
        for p in nb.ports:
            self.ports_by_name.setdefault(p.name, []).append(p)
        self.skipped = {(s.kind, s.name): s.reason for s in live.skipped}
        self._owners: planner.Owners | None = None

    @property
    def owners(self) -> planner.Owners:
        if self._owners is None:  # indexed only when an entry is still there and no longer leaked
            self._owners = planner.Owners(self.kube, self.policy)
        return self._owners

    def ip(self, entry: Entry) -> str:
        ip = self.ips.get(entry.name)
        if ip is None:
            if entry.name in self.unparsed:
                return f"cannot be judged now ({self.unparsed[entry.name]}); left alone"
            return "already gone"
        if ip.meta.uid != entry.pin:
            return (f"re-created since the check (uid {ip.meta.uid}, the check saw {entry.pin}): a different IP CR "
                    f"of the same name; left alone")
        verdict = planner.judge_ip(ip, self.owners)
        return f"no longer a leak: {verdict.reason}" if verdict.alive else f"left alone: {verdict.reason}"

    def port(self, entry: Entry) -> str:
        port = self.ports_by_uuid.get(entry.pin)
        if port is None:
            again = self.ports_by_name.get(entry.name)
            if again:
                return (f"re-created since the check (NB uuid {again[0].uuid}, the check saw {entry.pin}): a "
                        f"different port of the same name; left alone")
            return "already gone"
        if port.name != entry.name or port.switch != entry.switch:
            return f"changed since the check: now port {port.name} on switch {port.switch or '(none)'}; left alone"
        if port.name in self.ips or port.name in self.unparsed:
            return "no longer a leak: an IP CR of this name exists now (it decides)"
        skipped = self.skipped.get(("port", port.name))
        if skipped is not None:
            return f"cannot be judged now ({skipped}); left alone"
        if not planner.is_candidate_port(port):
            return "no longer a kube-ovn port; left alone"
        verdict = planner.judge_port(port, self.owners)
        if isinstance(verdict, planner.Skip):
            return f"cannot be judged now ({verdict.reason}); left alone"
        return f"no longer a leak: {verdict.reason}" if verdict.alive else f"left alone: {verdict.reason}"


def reviewed_stuck(stuck: tuple[planner.StuckIp, ...], reviewed: Reviewed,
                   ) -> tuple[tuple[planner.StuckIp, ...], tuple[planner.StuckIp, ...]]:
    """Stuck IP CRs split into those whose finalizer release was reviewed (same name and uid), and the rest
    (reported, never released)."""
    pinned = tuple(s for s in stuck if (e := reviewed.releases.get(s.ip.meta.name)) is not None
                   and e.pin == s.ip.meta.uid)
    return pinned, tuple(s for s in stuck if s not in pinned)
