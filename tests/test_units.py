"""Pure logic, no server: GTID positions, the lag timeline, balancers, settings validation."""

from __future__ import annotations

import collections
import random
import threading

import pytest

import rwsplit
from rwsplit.balancer import (
    LeastOutstandingBalancer,
    RandomBalancer,
    RoundRobinBalancer,
    WeightedBalancer,
    resolve_balancer,
)
from rwsplit.consistency_state import ConsistencyState
from rwsplit.failover import Retry
from rwsplit.gtid import Position, parse_mariadb, parse_mysql
from rwsplit.policy import RoutingPolicy
from rwsplit.state import ServerState, Snapshot
from rwsplit.timeline import Timeline

# ------------------------------------------------------------------ GTID


def test_parse_mariadb_positions_and_compare() -> None:
    p = parse_mariadb("0-1-100,1-2-5")
    assert dict(p.seqs) == {"0": 100, "1": 5}
    assert str(p) == "0-1-100,1-2-5"
    assert p.covers(parse_mariadb("0-1-99"))
    assert p.covers(parse_mariadb("0-1-100,1-2-5"))
    assert not p.covers(parse_mariadb("0-1-101"))
    assert not p.covers(parse_mariadb("2-1-1"))
    assert p.covers(Position())
    assert not Position().covers(p)
    assert parse_mariadb("") == Position()
    assert not parse_mariadb(None)


def test_merge_keeps_the_later_position_per_domain() -> None:
    a = parse_mariadb("0-1-10,1-1-3")
    b = parse_mariadb("0-2-8,1-2-7,2-2-1")
    m = a.merge(b)
    assert dict(m.seqs) == {"0": 10, "1": 7, "2": 1}
    assert str(m) == "0-1-10,1-2-7,2-2-1"
    assert m.covers(a) and m.covers(b)
    assert a.merge(Position()) is a and Position().merge(a) is a


@pytest.mark.parametrize(
    "bad", ["0-1", "x-1-2", "0-1-2-3", "0-1-2,", "'; DROP", "0-1-99999999999999999999999"]
)
def test_parse_mariadb_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_mariadb(bad)


def test_parse_mysql_sets() -> None:
    u1, u2 = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "4e11fa47-71ca-11e1-9e33-c80aa9429562"
    p = parse_mysql(f"{u1}:1-5:7-9,\n{u2}:1-3")
    assert dict(p.seqs) == {u1: 9, u2: 3}
    assert dict(parse_mysql(f"{u1}:1-5:7-9", contiguous=True).seqs) == {u1: 5}
    assert str(parse_mysql(f"{u1}:1-5")) == f"{u1}:1-5"
    with pytest.raises(ValueError):
        parse_mysql("not-a-uuid:1-5")


# ------------------------------------------------------------------ lag timeline


def _pos(n: int) -> Position:
    return parse_mariadb(f"0-1-{n}")


def test_timeline_lag_interpolates_by_transaction_number() -> None:
    tl = Timeline()
    for t, n in [(100.0, 10), (101.0, 20), (102.0, 30)]:
        tl.add(t, _pos(n))
    assert tl.lag(_pos(30), now=102.5) == 0.0
    assert tl.lag(_pos(40), now=102.5) == 0.0
    # seq 15 applied: the primary committed 16 at ~100.6, so 2.0 s stale at 102.6
    assert tl.lag(_pos(15), now=102.6) == pytest.approx(2.0)
    assert tl.lag(_pos(20), now=102.6) == pytest.approx(102.6 - 101.1)
    # older than the whole timeline: at least its span
    assert tl.lag(_pos(5), now=102.0) == pytest.approx(2.0)
    assert tl.lag(Position(), now=102.0) == pytest.approx(2.0)
    assert Timeline().lag(_pos(1), now=5.0) is None


def test_timeline_takes_the_worst_domain() -> None:
    tl = Timeline()
    tl.add(10.0, parse_mariadb("0-1-5,1-1-5"))
    tl.add(11.0, parse_mariadb("0-1-6,1-1-15"))
    assert tl.lag(parse_mariadb("0-1-6,1-1-5"), now=12.0) == pytest.approx(12.0 - 10.1)


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
    snap = Snapshot(primary, replicas, by_name={r.name: r for r in replicas})
    rows = snap.report(1.0, {"primary": 3, "ok": 1, "laggy": 0}.__getitem__)
    assert [(r.name, r.eligible, r.in_flight, r.replicating) for r in rows] == [
        ("primary", True, 3, None),
        ("ok", True, 1, True),
        ("laggy", False, 0, True),
    ]
    assert isinstance(rows[0], rwsplit.ServerReport)


# ------------------------------------------------------------------ balancers


def test_least_outstanding_prefers_the_idle_replica() -> None:
    lo = LeastOutstandingBalancer(random.Random(1))
    picks = collections.Counter(lo(["a", "b"], {"a": 5, "b": 0}) for _ in range(200))
    assert picks == {"b": 200}
    picks = collections.Counter(lo(["a", "b", "c"], {"a": 0, "b": 9, "c": 9}) for _ in range(3000))
    assert picks["a"] > 1800  # a wins every pair it is drawn in (2 of 3 pairs)


@pytest.mark.parametrize(
    "balancer",
    [LeastOutstandingBalancer(random.Random(2)), RoundRobinBalancer(), RandomBalancer(random.Random(3))],
)
def test_no_replica_starves(balancer) -> None:
    names = ["r1", "r2", "r3"]
    picks = collections.Counter(balancer(names, {}) for _ in range(3000))
    assert set(picks) == set(names)
    assert min(picks.values()) > 800


def test_round_robin_is_exact_and_thread_safe() -> None:
    rr = RoundRobinBalancer()
    picks: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        got = [rr(["a", "b"], {}) for _ in range(1000)]
        with lock:
            picks.extend(got)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert collections.Counter(picks) == {"a": 4000, "b": 4000}


def test_weighted_follows_weights() -> None:
    w = WeightedBalancer({"a": 3, "b": 1, "c": 0}, random.Random(4))
    picks = collections.Counter(w(["a", "b", "c"], {}) for _ in range(4000))
    assert picks["c"] == 0
    assert 2.4 < picks["a"] / picks["b"] < 3.8
    with pytest.raises(ValueError, match="weight of 'x'"):
        WeightedBalancer({"x": -1})
    with pytest.raises(TypeError):
        WeightedBalancer([1, 2])  # type: ignore[arg-type]


def test_resolve_balancer() -> None:
    assert isinstance(resolve_balancer("round_robin"), RoundRobinBalancer)
    assert isinstance(resolve_balancer("weighted", {"a": 1}), WeightedBalancer)

    def mine(candidates, in_flight):
        return candidates[-1]

    assert resolve_balancer(mine) is mine
    with pytest.raises(ValueError, match="accepted: least_outstanding, round_robin, random, weighted"):
        resolve_balancer("fastest")
    with pytest.raises(TypeError):
        resolve_balancer(3)


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"max_lag": -1}, ValueError, "max_lag must be"),
        ({"max_lag": "1"}, TypeError, "max_lag must be a number"),
        ({"max_lag": float("nan")}, ValueError, "max_lag"),
        ({"max_lag": True}, TypeError, "max_lag"),
        ({"read_your_writes": "always"}, ValueError, "accepted: 'session', 'transaction', 'off'"),
        ({"fallback": "replica"}, ValueError, "accepted: 'primary', 'error'"),
        ({"pin_window": -0.1}, ValueError, "pin_window"),
        ({"retry": 3}, TypeError, "rwsplit.Retry"),
    ],
)
def test_policy_validation(kwargs: dict, exc: type, message: str) -> None:
    with pytest.raises(exc, match=message):
        RoutingPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"replica_attempts": -1}, {"primary_attempts": 0}, {"backoff": -1}, {"primary_timeout": 0}],
)
def test_retry_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="Retry"):
        Retry(**kwargs)


def test_retry_is_immutable() -> None:
    r = Retry()
    with pytest.raises(AttributeError):
        r.replica_attempts = 5  # type: ignore[misc]


def test_consistency_state_modes() -> None:
    s = ConsistencyState("session", 1.0)
    assert s.primary_reason() is None
    s.wrote()
    assert "transaction" in s.primary_reason()
    s.transaction_ended()
    assert "session wrote" in s.primary_reason()
    s.reset()
    assert s.primary_reason() is None
    t = ConsistencyState("transaction", 1.0)
    t.wrote()
    t.transaction_ended()
    assert t.primary_reason() is None
    o = ConsistencyState("off", 1.0)
    o.forced += 1
    assert o.primary_reason() == "use_primary block"


def test_consistency_state_transitions() -> None:
    s = ConsistencyState("session", 1.0)
    s.use_replica("replica1")
    assert s.replica == "replica1" and s.read_from == {"replica1"}
    s.drop_replica()
    assert s.replica is None and s.read_from == {"replica1"}  # monotonic reads remember it
    s.use_replica("replica2")
    s.replica_failed("replica2")
    assert s.replica is None and s.failed == {"replica2"}
    with s.primary_only():
        with s.primary_only():
            assert s.primary_reason() == "use_primary block"
        assert s.primary_reason() == "use_primary block"
    assert s.primary_reason() is None
    s.mark_connection_state()
    assert "connection state" in s.primary_reason()
    s.reset()
    assert s.primary_reason() is None and not s.read_from


def test_parse_url_list() -> None:
    a = "mysql+pymysql://app:p%2Cw@r1:3306/db"
    b = "mysql+pymysql://app:pw@r2/db?charset=utf8mb4"
    assert rwsplit.parse_url_list(f"{a},{b}") == [a, b]
    assert rwsplit.parse_url_list(f" {a}\n  {b} ") == [a, b]
    assert rwsplit.parse_url_list(f"{a}, {b},") == [a, b]
    assert rwsplit.parse_url_list("") == []
    with pytest.raises(TypeError):
        rwsplit.parse_url_list(None)  # type: ignore[arg-type]
