"""``--plot FILE.png``: leaks outstanding and pass durations over the soak, the picture an operator looks at.

matplotlib is an optional dependency (``pip install -e '.[soak]'``; ``scripts/setup`` installs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["series"]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6.5), height_ratios=(3, 2))
    minutes = [t / 60 for t, _, _ in series["outstanding"]]
    top.plot(minutes, [n for _, n, _ in series["outstanding"]], lw=0.8, color="tab:gray",
             label="planted, not yet collected")
    top.plot(minutes, [e for _, _, e in series["outstanding"]], lw=1.0, color="tab:red",
             label="eligible (owner gone, older than --min-age), not yet collected")
    top.set_ylabel("leaks outstanding")
    passes = series["passes"]
    ok = [(s / 60, d) for s, d, code in passes if code == 0]
    bad = [(s / 60, d, code) for s, d, code in passes if code != 0]
    bottom.plot([m for m, _ in ok], [d for _, d in ok], ".", ms=2, color="tab:blue", label="pass (exit 0)")
    for m, d, code in bad:
        bottom.plot([m], [d], "x", color="tab:orange")
        bottom.annotate(str(code), (m, d), fontsize=7, color="tab:orange")
    bottom.set_ylabel("pass wall time (s)")
    bottom.set_xlabel("minutes since the churn started")
    for start, end, what in series["faults"]:
        for ax in (top, bottom):
            ax.axvspan(start / 60, end / 60, color="tab:purple" if what.startswith("raft") else "tab:orange",
                       alpha=0.15, lw=0)
    for start, end in series["pauses"]:
        top.axvspan(start / 60, end / 60, color="tab:green", alpha=0.12, lw=0)
    s = result["summary"]
    codes = ", ".join(f"{k}: {v}" for k, v in s["exit_codes"].items())
    fig.suptitle(f"kube-ovn-gc churn soak: {s['passes']} passes, {s['changes']} changes, "
                 f"{s['leaks_planted']} leaks planted, {s['collected']} collected "
                 f"(≤ {s['max_passes_to_collect']} passes), {s['live_deleted']} live deleted; exit codes {{{codes}}}",
                 fontsize=9)
    top.legend(loc="upper right", fontsize=8, title="green: controller paused; orange: API 500 burst; "
               "purple: NB leader killed", title_fontsize=7)
    bottom.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
