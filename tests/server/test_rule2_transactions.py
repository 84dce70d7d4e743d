"""README rule 2: a transaction that wrote or locked stays on the primary; a commit's outcome is the
primary's."""

from __future__ import annotations

import contextlib

import pytest
import sqlalchemy as sa
from helpers import PRIMARY, REPLICAS, SERVER_ID, unique
from models import Item, User
from sqlalchemy import insert, select, text

import rwsplit
from rwsplit.sandbox import Sandbox


def test_locking_read_pins_the_transaction(eng, where, ids, add_user) -> None:
    uid = add_user("locked")
    Session = rwsplit.sessionmaker(eng, read_your_writes="off")
    with Session() as s:
        assert where(s) in REPLICAS
        row = s.execute(
            select(User.name, sa.literal_column("@@GLOBAL.server_id")).where(User.id == uid).with_for_update()
        ).one()
        assert s.last_target == PRIMARY
        assert row[0] == "locked"
        assert ids[int(row[1])] == PRIMARY
        assert where(s) == PRIMARY
        s.execute(select(User.id).limit(1)).all()
        assert s.last_target == PRIMARY
        s.commit()
        assert where(s) in REPLICAS
        s.execute(select(User.id).limit(1)).all()
        assert s.last_target in REPLICAS


def test_session_connection_is_the_primary(eng, on_primary) -> None:
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        conn = s.connection()
        assert conn.exec_driver_sql(SERVER_ID).scalar() == 1
        name = unique("conn")
        conn.execute(insert(User).values(name=name))
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", name) == 1


MODES = ("session", "transaction", "off", "causal")


def _kill_app_connections(sandbox: Sandbox, which: str) -> int:
    """Kill every connection of the app user on one server (as wait_timeout or a restart would)."""
    killed = 0
    with sandbox.connect(which) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE user = 'app'")
        for (pid,) in cur.fetchall():
            cur.execute(f"KILL CONNECTION {int(pid)}")
            killed += 1
    return killed


@pytest.mark.parametrize("mode", MODES)
def test_commit_never_reaches_a_replica_connection(
    make_engine, sandbox: Sandbox, on_primary, mode: str
) -> None:
    """The replica the session read from dies before commit: the primary's commit stands, no error."""
    eng = make_engine(read_your_writes=mode)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        assert s.execute(select(Item.id).limit(1)).all() is not None
        read_on = s.last_target
        assert read_on in REPLICAS
        assert _kill_app_connections(sandbox, read_on) >= 1
        s.add(Item(name=name))
        s.commit()  # COMMIT on the dead replica connection would raise 2013/2006
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", name) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("savepoint", [False, True])
def test_the_replica_connection_dies_mid_transaction_and_the_commit_stands(
    make_engine, sandbox: Sandbox, on_primary, mode: str, savepoint: bool
) -> None:
    eng = make_engine(read_your_writes=mode)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        s.execute(select(Item.id).limit(1)).all()
        target = s.last_target
        assert target in REPLICAS
        with s.begin_nested() if savepoint else contextlib.nullcontext():
            s.execute(select(Item.id).limit(1)).all()
            assert _kill_app_connections(sandbox, target) >= 1
            s.execute(select(Item.id).limit(1)).all()  # fails on the dead connection, retried elsewhere
            s.add(Item(name=name))
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", name) == 1


@pytest.mark.parametrize("mode", ["session", "causal"])
def test_the_replica_connection_dies_in_a_savepoint_rolled_back(
    make_engine, sandbox: Sandbox, on_primary, mode: str
) -> None:
    eng = make_engine(read_your_writes=mode)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        savepoint = s.begin_nested()
        s.execute(select(Item.id).limit(1)).all()
        target = s.last_target
        assert target in REPLICAS
        assert _kill_app_connections(sandbox, target) >= 1
        s.execute(select(Item.id).limit(1)).all()
        savepoint.rollback()
        s.add(Item(name=name))
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", name) == 1


@pytest.mark.parametrize("mode", MODES)
def test_get_or_create_in_a_savepoint(make_engine, on_primary, mode: str) -> None:
    eng = make_engine(read_your_writes=mode)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        s.execute(select(Item.id).limit(1)).all()  # a replica connection joins the session first
        for _ in range(2):
            with s.begin_nested():
                found = s.scalar(select(Item).where(Item.name == name))
                if found is None:
                    s.add(Item(name=name))
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", name) == 1


def test_get_bind_without_a_statement_does_not_pin(make_engine) -> None:
    eng = make_engine(read_your_writes="session")
    with rwsplit.sessionmaker(eng)() as s:
        assert s.get_bind().dialect.name in ("mysql", "mariadb")
        s.commit()
        s.execute(select(Item.id).limit(1)).all()
        assert s.last_target in REPLICAS


@pytest.mark.parametrize("mode", MODES)
def test_no_connection_stays_checked_out(make_engine, mode: str) -> None:
    eng = make_engine(read_your_writes=mode)
    with rwsplit.sessionmaker(eng)() as s:
        s.execute(select(Item.id).limit(1)).all()
        with s.begin_nested():
            s.add(Item(name=unique()))
            s.flush()
        s.commit()
        s.execute(select(Item.id).limit(1)).all()
    with eng.connect() as conn:
        conn.execute(select(Item.id).limit(1)).all()
        conn.execute(text("SET @x = 1"))
        conn.execute(select(Item.id).limit(1)).all()
    with eng.begin() as conn:
        conn.execute(sa.insert(Item).values(name=unique()))
    pools = [e.pool for e in eng._all_engines()]
    assert [p.checkedout() for p in pools] == [0] * len(pools)  # type: ignore[attr-defined]
