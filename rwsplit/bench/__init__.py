"""``rwsplit bench``: one read/write workload under four routing strategies, with lag injection.

Each strategy runs for its share of the run against one bench table: ``primary`` (everything on
the primary), ``naive`` (SQLAlchemy's documented routing recipe: no lag bound, no pinning),
``session`` and ``causal`` (rwsplit's two read-your-writes modes). :func:`run_bench` returns the
JSON-shaped result.
"""

from __future__ import annotations

from .config import (
    DRIVERS,
    PLOT_HINT,
    RWSPLIT_STRATEGIES,
    SANDBOX_REPLICAS,
    STRATEGIES,
    BenchConfig,
    Delay,
    Pause,
    parse_delay,
    parse_pause,
    parse_strategies,
)
from .report import REASONS, causal_waits, exit_code, reads_by_reason, reason_table, report_tables, write_json
from .run import BenchFailed, check_servers, run_bench
from .staleness import StalenessChecker
from .workload import NaiveSession

__all__ = [
    "STRATEGIES",
    "DRIVERS",
    "RWSPLIT_STRATEGIES",
    "PLOT_HINT",
    "SANDBOX_REPLICAS",
    "Delay",
    "Pause",
    "BenchConfig",
    "BenchFailed",
    "check_servers",
    "NaiveSession",
    "StalenessChecker",
    "parse_delay",
    "parse_pause",
    "parse_strategies",
    "run_bench",
    "exit_code",
    "report_tables",
    "REASONS",
    "reads_by_reason",
    "causal_waits",
    "reason_table",
    "write_json",
]
