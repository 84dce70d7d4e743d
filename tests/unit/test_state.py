"""rwsplit.state: which replicas are eligible, and the rows ``status()`` reports."""

from __future__ import annotations

import rwsplit
from rwsplit.state import ServerState, Snapshot


def _replica(name: str, **kw: object) -> ServerState:
    base = dict(reachable=True, io_running=True, sql_running=True, lag=0.1)
    base.update(kw)
    return ServerState(name=name, role="replica", url="u", **base)  # type: ignore[arg-type]


def test_eligibility_rules() -> None:
    primary = ServerState(name="primary", role="primary", url="u", reachable=True)
    snap = Snapshot(
        primary,
        (
            _replica("ok"),
            _replica("laggy", lag=2.0),
            _replica("unknown", lag=None),
            _replica("down", reachable=False),
            _replica("sql_stopped", sql_running=False),
            _replica("io_stopped", io_running=False),
            _replica("tripped", tripped=True),
        ),
    )
    assert [r.name for r in snap.eligible(1.0)] == ["ok"]
    assert [r.name for r in snap.eligible(5.0)] == ["ok", "laggy"]
    assert [r.name for r in snap.eligible(0.05)] == []
    primary_down = Snapshot(
        ServerState(name="primary", role="primary", url="u", reachable=False), snap.replicas
    )
    assert [r.name for r in primary_down.eligible(1.0)] == ["ok", "io_stopped"]


def test_snapshot_report_rows() -> None:
    primary = ServerState(name="primary", role="primary", url="u", reachable=True)
    replicas = (_replica("ok"), _replica("laggy", lag=2.0))
    snap = Snapshot(primary, replicas)
    assert snap.by_name == {r.name: r for r in replicas}  # derived from replicas
    rows = snap.report(1.0, {"primary": 3, "ok": 1, "laggy": 0}.__getitem__)
    assert [(r.name, r.eligible, r.in_flight, r.replicating) for r in rows] == [
        ("primary", True, 3, None),
        ("ok", True, 1, True),
        ("laggy", False, 0, True),
    ]
    assert isinstance(rows[0], rwsplit.ServerReport)
