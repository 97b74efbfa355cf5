"""What a pass did, why, and how it ended: JSON for machines, a table for people."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from .plan import SubnetSummary
    from .safety import Refusal


class ExitCode(IntEnum):
    OK = 0
    FOUND = 1  # leaks or drift found and left in place (check / --dry-run)
    USAGE = 2  # click's own
    INCOMPLETE = 3  # could not read everything: nothing changed
    REFUSED = 4  # a safety rail refused: nothing changed
    PARTIAL = 5  # some actions failed, the others were done


PLANNED, DONE, FAILED, SKIPPED = "planned", "done", "failed", "skipped"
NOT_REVIEWED = "not-reviewed"
"""``run --from-report``: a leak the live pass found that the reviewed report did not plan: left alone.
Not a failure and not a finding of this run (exit 0 all the same): the next check lists it for review."""

ACTION_KEYS: dict[str, tuple[str, ...]] = {
    "ip": ("subnet", "addresses", "namespace", "pod", "pod_type", "stuck", "uid"),
    "port": ("switch", "uuid", "addresses"),
    "subnet-status": ("before", "after", "changed"),
}
"""The keys every action of a kind carries in the JSON report, ``null`` where unknown (a skipped object
that could not be parsed, a plan refused whole), so that ``jq`` over reports never meets a missing key."""


@dataclass(frozen=True)
class ActionRecord:
    kind: str  # "ip" | "port" | "subnet-status" (or the kind of an object that could not be parsed)
    name: str
    reason: str
    outcome: str  # planned | done | failed | skipped | not-reviewed
    detail: dict[str, object] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "name": self.name, "reason": self.reason,
                                  "outcome": self.outcome}
        out.update(dict.fromkeys(ACTION_KEYS.get(self.kind, ())))
        out.update(self.detail)
        return out


@dataclass(frozen=True)
class Report:
    dry_run: bool
    exit_code: int
    started_at: dt.datetime
    duration_seconds: float
    inventory: dict[str, int]
    actions: tuple[ActionRecord, ...] = ()
    error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
    subnets: tuple[SubnetSummary, ...] = ()  # recomputed numbers of every subnet (metrics)
    refusal: Refusal | None = None  # the rail this plan trips: refused (real run) or would be (dry run)
    ran: bool = True  # False: stopped before a plan was made (configuration, a failed read, the Lease)
    # what reading cost, per source ("nb", "pods", "ips", ...): {"requests": n, "bytes": n, "seconds": x}
    reads: dict[str, dict[str, float]] = field(default_factory=dict)

    def read_bytes(self) -> int:
        """Bytes received by the reads of the pass, every source together."""
        return int(sum(cost.get("bytes", 0) for cost in self.reads.values()))

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((a.kind, a.outcome) for a in self.actions)

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
        }
        if not self.ran:  # what stopped it, and nothing else
            out["error"] = self.error
            return out
        out["inventory"] = self.inventory
        if self.reads:
            out["reads"] = self.reads
        out["actions"] = [a.as_json() for a in self.actions]
        out["subnets"] = [dataclasses.asdict(s) for s in self.subnets]
        if self.extra.get("command") != "restore":
            out["refusal"] = None if self.refusal is None else {"rail": self.refusal.rail,
                                                                 "reason": self.refusal.reason}
        if self.error:
            out["error"] = self.error
        out.update(self.extra)
        return out

    def to_json(self) -> str:
        # msgspec: the undo record of a big pass holds a thousand manifests; json.dumps takes ~0.4 s on it,
        # msgspec ~1 ms (orjson, as fast, refuses the counts of an IPv6 subnet wider than /64: ints > 64 bits)
        return msgspec.json.format(msgspec.json.encode(self.as_json(), enc_hook=str), indent=2).decode()

    def summary(self) -> str:
        if not self.ran:  # one line, whatever the error's own text (a YAML parser's runs over several)
            return f"did not run: {' '.join(str(self.error).split())}; nothing was changed → exit {self.exit_code}"
        c = self.counts()
        if self.extra.get("command") == "restore":
            return (f"restored {c['ip', DONE]} IP CRs and {c['port', DONE]} ports; "
                    f"{c['ip', SKIPPED] + c['port', SKIPPED]} refused, {c['ip', FAILED] + c['port', FAILED]} failed"
                    f" → exit {self.exit_code}")
        verb = "would remove" if self.dry_run else "removed"
        parts = [
            f"{verb} {c['ip', PLANNED if self.dry_run else DONE]} IP CRs",
            f"{c['port', PLANNED if self.dry_run else DONE]} ports",
            f"{'would fix' if self.dry_run else 'fixed'} "
            f"{c['subnet-status', PLANNED if self.dry_run else DONE]} subnet statuses",
        ]
        failed = sum(n for (_, outcome), n in c.items() if outcome == FAILED)
        skipped = sum(n for (_, outcome), n in c.items() if outcome == SKIPPED)
        parts.append(f"{failed} failed, {skipped} skipped")
        not_reviewed = sum(n for (_, outcome), n in c.items() if outcome == NOT_REVIEWED)
        if not_reviewed or "from_report" in self.extra:
            parts.append(f"{not_reviewed} leaks not in the reviewed report left alone")
        head = "DRY RUN: " if self.dry_run else ""
        scanned = f"{self.inventory.get('logical_switch_ports', 0)} ports, {self.inventory.get('ips', 0)} IPs"
        if self.reads:
            scanned += f", {_mib(self.read_bytes())} read"
        return (f"{head}{'; '.join(parts)} (scanned {scanned}) in {self.duration_seconds:.1f}s"
                f" → exit {self.exit_code}")

    def refusal_line(self) -> str | None:
        """Which rail refused the plan (or would refuse it, in a dry run), in one line."""
        if self.refusal is None:
            return None
        rail, reason = self.refusal.rail, self.refusal.reason
        if self.dry_run:
            return f"a real run would be refused by the {rail} rail: {reason} (--force overrides)"
        return f"refused by the {rail} rail, nothing changed: {reason} (--force overrides)"

    def to_text(self) -> str:
        if not self.ran:  # what stopped it, and nothing else: no empty table, no zero counts
            return self.summary() + "\n"
        lines: list[str] = []
        if self.dry_run:
            lines.append("*** DRY RUN: nothing was changed ***")
        if self.error:
            lines.append(f"ERROR: {self.error}")
        if self.actions:
            rows = [(a.kind, a.outcome, a.name, _where(a), a.reason) for a in self.actions]
            widths = [max(len(r[i]) for r in [*rows, _HEADER]) for i in range(4)]
            for row in [_HEADER, *rows]:
                lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
        else:
            lines.append("nothing to do")
        if (refused := self.refusal_line()) is not None:
            lines.append(refused)
        lines.append(self.summary())
        return "\n".join(lines) + "\n"


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


_HEADER = ("KIND", "OUTCOME", "NAME", "WHERE", "REASON")


def _where(action: ActionRecord) -> str:
    d = action.detail
    if action.kind == "port":
        return f"switch {d.get('switch', '?')}"
    if action.kind == "ip":
        return f"{d.get('subnet', '')} {d.get('addresses', '')}".strip()
    return ""
