"""The bench's output: exit code, the report tables, reads by reason, the JSON file and the lag plot."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RWSPLIT_STRATEGIES

if TYPE_CHECKING:
    from ..observe import Stats
    from .run import _Run

REASONS = ("replica", "causal", "pinned", "hint", "fallback", "retry", "primary_strategy")
"""Keys of ``reads_by_reason``: served by a replica (``replica``; ``causal`` after a causal wait),
kept on the primary by rwsplit (``pinned``, ``hint``, ``fallback``, ``retry``: the decision kinds
of :data:`rwsplit.observe.KINDS`) or by the ``primary`` strategy itself (``primary_strategy``)."""
_REASON_OF_KIND = {"read": "replica"}  # the other read kinds keep their names
_NOT_READS = frozenset({"write", "lock", "session"})
_WAIT_HEADERS = ["waits", "wait_timeouts", "wait_p50_ms", "wait_p99_ms"]


def exit_code(result: Mapping[str, Any]) -> int:
    """1 if an rwsplit strategy (``session``/``causal``) read a write of its own session stale, else 0."""
    strategies = result.get("strategies", {})
    return int(any(strategies.get(name, {}).get("ryw_violations", 0) > 0 for name in RWSPLIT_STRATEGIES))


def report_tables(
    result: Mapping[str, Any],
) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]]]:
    """Headers and rows of the strategy table and of the replica table."""
    strategy_headers = [
        "strategy",
        "reads",
        "writes",
        "replica_reads",
        "ryw_violations",
        "stale_reads",
        "ops_per_s",
        "read_p50_ms",
        "read_p99_ms",
        "write_p50_ms",
        "write_p99_ms",
    ]
    strategy_rows = [
        [
            name,
            s["reads"],
            s["writes"],
            s["replica_reads"],
            s["ryw_violations"],
            s["stale_reads"],
            f"{s['ops_per_s']:.0f}",
            _fmt(s["read_ms"]["p50"]),
            _fmt(s["read_ms"]["p99"]),
            _fmt(s["write_ms"]["p50"]),
            _fmt(s["write_ms"]["p99"]),
        ]
        for name, s in result["strategies"].items()
    ]
    replica_headers = ["replica", "lag_p50_ms", "lag_p99_ms", "lag_max_ms", "excluded"]
    replica_rows = [
        [name, _fmt(r["lag_ms"]["p50"]), _fmt(r["lag_ms"]["p99"]), _fmt(r["lag_ms"]["max"]), r["excluded"]]
        for name, r in result["replicas"].items()
    ]
    return strategy_headers, strategy_rows, replica_headers, replica_rows


def reads_by_reason(strategy: str, reads: int, stats: Stats | None) -> dict[str, int]:
    """Each of :data:`REASONS` → reads: from the engine's decision kinds (``stats``, rwsplit
    strategies), else all on the primary (``primary``) or all on replicas (``naive``)."""
    counts = dict.fromkeys(REASONS, 0)
    if stats is not None:
        for kind, n in stats.kinds.items():
            if kind not in _NOT_READS:
                reason = _REASON_OF_KIND.get(kind, kind)
                counts[reason] = counts.get(reason, 0) + n  # a kind added later gets its own key
    elif strategy == "primary":
        counts["primary_strategy"] = reads
    else:
        counts["replica"] = reads
    return counts


def causal_waits(stats: Stats | None) -> dict[str, Any]:
    """The engine's causal waits (none without an rwsplit engine): count, timeouts, p50/p99 ms."""
    if stats is None:
        return {"count": 0, "timeouts": 0, "p50_ms": None, "p99_ms": None}
    waits = stats.causal_waits
    return {
        "count": waits.count,
        "timeouts": waits.timeouts,
        "p50_ms": _round(waits.p50_ms),
        "p99_ms": _round(waits.p99_ms),
    }


def reason_table(result: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the reads-by-reason table: a column per reason any strategy has, then
    the causal waits."""
    strategies = result["strategies"]
    present: list[str] = []
    for s in strategies.values():
        present += [r for r, n in s["reads_by_reason"].items() if n and r not in present]
    order = {r: i for i, r in enumerate(REASONS)}
    present.sort(key=lambda r: order.get(r, len(REASONS)))
    rows = [
        [
            name,
            *(s["reads_by_reason"].get(r, 0) for r in present),
            s["causal_waits"]["count"],
            s["causal_waits"]["timeouts"],
            _fmt(s["causal_waits"]["p50_ms"]),
            _fmt(s["causal_waits"]["p99_ms"]),
        ]
        for name, s in strategies.items()
    ]
    return ["strategy", *present, *_WAIT_HEADERS], rows


def _round(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 3)


def _fmt(ms: float | None) -> str | None:
    return None if ms is None else f"{ms:.1f}"


def write_json(result: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")


def _plot(path: Path, run: _Run) -> None:
    """Each replica's lag over time, the max_lag line, the strategy phases and stale reads."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    fig, ax = plt.subplots(figsize=(11, 5))
    for i in range(1, len(run.replica_urls) + 1):
        name = f"replica{i}"
        points = [(t, lag * 1000) for t, n, lag, _ in run.samples if n == name and lag is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=f"{name} lag", linewidth=1.2)
    ax.axhline(run.config.max_lag * 1000, color="red", linestyle="--", label="max_lag")
    ax.set_ylim(bottom=0)
    markers = itertools.cycle(["x", "+", "1", "."])
    for name, start, end in run.phases:
        ax.axvspan(start, end, alpha=0.05, color="grey")
        ax.text((start + end) / 2, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", fontsize=9)
        events = [(t, age * 1000) for s, t, age in run.stale_events if s == name]
        if events:
            ax.scatter(
                [e[0] for e in events],
                [e[1] for e in events],
                marker=next(markers),
                s=14,
                label=f"stale reads: {name} ({len(events)})",
            )
    ax.set_xlabel("seconds since the start of the run")
    ax.set_ylabel("lag / staleness (ms)")
    ax.set_title("rwsplit bench: replica lag and stale reads", pad=20)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
