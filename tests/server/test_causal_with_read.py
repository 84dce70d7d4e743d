"""A causal wait sent with its read (MariaDB's ``SET STATEMENT … FOR``): one round trip, the same
guarantees as a wait of its own: the read sees the commit, a timed-out wait sends the read to the
primary unrun on the replica, and the app's events see the read as written."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import REPLICAS, unique, with_driver
from models import Item
from sqlalchemy import select, text

import rwsplit
from rwsplit.sandbox import Sandbox


@contextlib.contextmanager
def _replicas_paused(sandbox: Sandbox, resume_after: float | None) -> Iterator[None]:
    """Both replicas stop applying; they resume after ``resume_after`` s (None: at the end)."""
    sandbox.wait_caught_up(timeout=15)
    for r in (1, 2):
        sandbox.pause_replica(r)
    timer = None
    if resume_after is not None:
        timer = threading.Timer(resume_after, lambda: [sandbox.resume_replica(r) for r in (1, 2)])
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.join()
        for r in (1, 2):
            sandbox.resume_replica(r)  # a no-op if the timer did
        sandbox.wait_caught_up(timeout=15)


def _seen(engine: rwsplit.RoutingEngine) -> dict[str, list[str]]:
    """What the app's ``before_cursor_execute`` listeners see run on each replica."""
    seen: dict[str, list[str]] = {name: [] for name in REPLICAS}
    for name in REPLICAS:

        def record(conn: Any, cursor: Any, statement: str, *rest: Any, name: str = name) -> None:
            seen[name].append(statement)

        sa.event.listen(engine.engines[name], "before_cursor_execute", record)
    return seen


def _read_own_write_late(session: rwsplit.RoutingSession, sandbox: Sandbox) -> Any:
    """Commit a row while both replicas are paused (they resume 0.4 s later) and read it back in
    ``session``; the query, to read it again."""
    name = unique()
    query = select(Item.name).where(Item.name == name)
    with _replicas_paused(sandbox, resume_after=0.4):
        session.add(Item(name=name))
        session.commit()
        assert session.scalar(query) == name
    return query


def _events(engine: rwsplit.RoutingEngine) -> tuple[list[rwsplit.CausalWait], list[str]]:
    waits: list[rwsplit.CausalWait] = []
    reasons: list[str] = []
    rwsplit.listen(engine, "causal_wait", waits.append)
    rwsplit.listen(engine, "route", lambda e: reasons.append(e.reason))
    return waits, reasons


@pytest.mark.parametrize("driver", ["pymysql", "mysqldb", "mariadbconnector"])
def test_the_wait_goes_with_the_read_which_sees_the_commit(
    sandbox: Sandbox, tables: None, driver: str
) -> None:
    """Replicas paused at the commit, resumed 0.4 s later: the read waits that long on a replica,
    in its own statement (no other statement reaches the replica), and returns the row."""
    eng = rwsplit.create_engine(
        with_driver(sandbox.primary_url, driver),
        replicas=[with_driver(u, driver) for u in sandbox.replica_urls],
        read_your_writes="causal",
        causal_timeout=5.0,
        monitor_interval=60,  # no probe sees the commit applied: the read must wait
    )
    try:
        seen = _seen(eng)
        waits, reasons = _events(eng)
        with rwsplit.sessionmaker(eng)() as s:
            query = _read_own_write_late(s, sandbox)
            target = s.last_target
            assert target in REPLICAS
            assert reasons[-1] == f"causal: the read waits on {target}"
            assert [(w.replica, w.reached) for w in waits] == [(target, True)]
            assert waits[0].seconds >= 0.3
            assert len(seen[target]) == 1 and "GTID" not in seen[target][0]  # the read, as written
            assert s.scalar(query) is not None  # confirmed: no second wait
            assert len(waits) == 1 and s.last_target == target
    finally:
        eng.dispose()


def test_a_read_whose_wait_times_out_runs_on_the_primary(make_engine, sandbox: Sandbox) -> None:
    eng = make_engine(read_your_writes="causal", causal_timeout=0.3, monitor_interval=60)
    waits, reasons = _events(eng)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s, _replicas_paused(sandbox, resume_after=None):
        s.add(Item(name=name))
        s.commit()
        query = select(Item.name).where(Item.name == name)
        assert s.scalar(query) == name  # from the primary: no error reaches the app
        assert s.last_target == "primary"
        assert [w.reached for w in waits] == [False] and waits[0].seconds >= 0.25
        assert reasons[-2].startswith("causal: the read waits on replica")
        assert reasons[-1] == "causal: a wait for this position already timed out"
        stats = eng.stats()
        assert stats.causal_waits.timeouts == 1
        # One read, counted once: where it ran (the primary), not also on the replica it failed on.
        assert stats.kinds.get("causal", 0) == 0 and stats.kinds["fallback"] == 1
        assert not any(stats.statements.get(r, 0) for r in REPLICAS)
        assert stats.reads == 1 and stats.replica_reads == 0
        assert s.scalar(query) == name and s.last_target == "primary"
        assert len(waits) == 1  # one bounded wait per position


def test_a_statement_that_cannot_carry_the_wait_waits_just_before_it(make_engine, sandbox: Sandbox) -> None:
    """A leading comment: ``SET STATEMENT … FOR`` cannot carry it, so the wait runs just before it
    on the same connection, unseen by events, and the read still sees the commit."""
    eng = make_engine(read_your_writes="causal", causal_timeout=5.0, monitor_interval=60)
    seen = _seen(eng)
    waits, _ = _events(eng)
    name = unique()
    commented = text(f"/* report */ SELECT name FROM {Item.__tablename__} WHERE name = :n")
    with rwsplit.sessionmaker(eng)() as s, _replicas_paused(sandbox, resume_after=0.4):
        s.add(Item(name=name))
        s.commit()
        assert s.scalar(commented, {"n": name}) == name
        target = s.last_target
        assert target in REPLICAS
        assert [w.reached for w in waits] == [True] and waits[0].seconds >= 0.3
        assert seen[target] == [str(commented.compile(eng.primary)).replace(":n", "%(n)s")]


@pytest.mark.parametrize("many", [False, True], ids=["execute", "executemany"])
def test_a_core_connection_sends_the_wait_with_its_read(make_engine, sandbox: Sandbox, many: bool) -> None:
    """An ``executemany`` read cannot carry it: its wait runs just before, unseen by events."""
    eng = make_engine(read_your_writes="causal", causal_timeout=5.0, monitor_interval=60)
    seen = _seen(eng)
    waits, reasons = _events(eng)
    name = unique()
    table = Item.__table__
    with eng.connect() as conn, _replicas_paused(sandbox, resume_after=0.4):
        conn.execute(sa.insert(table).values(name=name))
        conn.commit()
        if many:
            conn.exec_driver_sql(f"SELECT name FROM {Item.__tablename__} WHERE name = %s", [(name,), (name,)])
        else:
            assert conn.execute(select(table.c.name).where(table.c.name == name)).scalar() == name
        target = conn.last_target
        assert target in REPLICAS and reasons[-1] == f"causal: the read waits on {target}"
        assert [w.reached for w in waits] == [True] and waits[0].seconds >= 0.3
        assert len(seen[target]) == 1


def test_a_failing_read_with_a_wait_raises_its_own_error(make_engine) -> None:
    """The read's own error (an unknown column) is the app's: not retried, not taken for a timeout."""
    eng = make_engine(read_your_writes="causal", causal_timeout=5.0, monitor_interval=60)
    waits, _ = _events(eng)
    with rwsplit.sessionmaker(eng)() as s:
        s.add(Item(name=unique()))
        s.commit()
        with pytest.raises(sa.exc.DBAPIError, match="1054"):
            s.execute(text(f"SELECT no_such_column FROM {Item.__tablename__}"))
        assert s.last_target in REPLICAS
        assert waits == [] and eng.stats().causal_waits.timeouts == 0
        s.rollback()
        assert s.scalar(select(sa.func.count()).select_from(Item)) >= 1  # the next read waits and runs
        assert [w.reached for w in waits] == [True]


def test_a_replica_that_refuses_the_connection_for_the_wait_sends_the_read_to_the_primary(
    make_engine, sandbox: Sandbox
) -> None:
    """Both replicas die unseen by the monitor (60 s probes): the connection the read and its wait
    need is refused, the replica is marked down, and the read runs on the primary."""
    eng = make_engine(read_your_writes="causal", causal_timeout=2.0, monitor_interval=60)
    name = unique()
    try:
        for r in (1, 2):
            sandbox.kill(r)
        with rwsplit.sessionmaker(eng)() as s:
            s.add(Item(name=name))
            s.commit()
            assert s.scalar(select(Item.name).where(Item.name == name)) == name
            assert s.last_target == "primary"
        assert not all(row.reachable for row in eng.status() if row.name in REPLICAS)
        with eng.connect() as conn:  # the same from a Core connection
            assert conn.execute(select(Item.name).where(Item.name == name)).scalar() == name
    finally:
        for r in (1, 2):
            sandbox.start(r)
        sandbox.wait_caught_up(timeout=60)


def test_a_causal_timeout_near_the_read_timeout_keeps_the_wait_apart(make_engine, sandbox: Sandbox) -> None:
    """With the wait sent along, ``read_timeout`` bounds the wait and the read together: only with
    ``causal_timeout`` at most a tenth of it; beyond that the wait is a statement of its own."""
    eng = make_engine(
        read_your_writes="causal", causal_timeout=1.0, monitor_interval=60, connect_args={"read_timeout": 5}
    )
    seen = _seen(eng)
    waits, reasons = _events(eng)
    with rwsplit.sessionmaker(eng)() as s:
        _read_own_write_late(s, sandbox)
        target = s.last_target
        assert target in REPLICAS and reasons[-1].startswith("causal: waited ")
        assert [w.reached for w in waits] == [True]
        assert len(seen[target]) == 2 and "GTID_WAIT" in seen[target][0]


def test_a_wait_whose_read_never_ran_is_dropped(make_engine) -> None:
    """A statement that fails before it reaches the server (a missing bind parameter) leaves no
    wait armed on its replica connection for a later statement to carry."""
    eng = make_engine(read_your_writes="causal", causal_timeout=5.0, monitor_interval=60)
    unbound = text(f"SELECT name FROM {Item.__tablename__} WHERE name = :n")
    with rwsplit.sessionmaker(eng)() as s:
        s.add(Item(name=unique()))
        s.commit()
        with pytest.raises(sa.exc.StatementError):
            s.execute(unbound)  # no value for :n
        target = s.last_target
        assert target in REPLICAS
        assert not _armed(s.connection(bind_arguments={"bind": eng.engines[target]}))
    with eng.connect() as conn:
        conn.execute(sa.insert(Item.__table__).values(name=unique()))
        conn.commit()
        with pytest.raises(sa.exc.StatementError):
            conn.execute(unbound)
        assert conn.last_target in REPLICAS
        assert not _armed(conn._replica_connection(conn.last_target))


def _armed(connection: sa.Connection) -> bool:
    return any(key.startswith("_rwsplit_armed") for key in vars(connection))
