"""README Core connections: RoutingConnection, begin(), begin_nested(), engine.begin(), connection state,
read_snapshot()."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import sqlalchemy.orm
from helpers import PRIMARY, REPLICAS, SERVER_ID, unique
from models import Item, User
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import InvalidRequestError

import rwsplit
from rwsplit.sandbox import Sandbox

MODES = ("session", "transaction", "off")


@pytest.mark.parametrize("mode", MODES)
def test_core_connection_routing(make_engine, where, ids, on_primary, caught_up, mode: str) -> None:
    e = make_engine(read_your_writes=mode)
    name = unique("core")
    count = "SELECT COUNT(*) FROM test_routing_user WHERE name = %s"
    with e.connect() as conn:
        assert where(conn) in REPLICAS
        assert ids[conn.exec_driver_sql(SERVER_ID).scalar()] in REPLICAS
        conn.execute(insert(User).values(name=name))
        assert conn.in_transaction()
        assert where(conn) == PRIMARY
        assert conn.scalar(select(func.count()).where(User.name == name)) == 1  # own uncommitted row
        assert on_primary(count, name) == 0  # …which really is uncommitted
        conn.commit()
        assert on_primary(count, name) == 1
        if mode == "session":
            assert where(conn) == PRIMARY
        else:
            assert where(conn) in REPLICAS

    with e.connect() as conn:
        assert conn.execute(select(User.id).where(User.name == name).with_for_update()).all()
        assert where(conn) == PRIMARY  # a locking read pins the transaction
        conn.commit()
        with conn.begin():
            conn.execute(insert(User).values(name=name + "-b"))
        assert on_primary(count, name + "-b") == 1

        conn.execute(insert(User).values(name=name + "-r"))
        conn.rollback()
        assert on_primary(count, name + "-r") == 0
        assert conn.scalar(select(func.count()).where(User.name == name + "-r")) == 0

        with pytest.raises(ZeroDivisionError), conn.begin():
            conn.execute(insert(User).values(name=name + "-e"))
            raise ZeroDivisionError
        assert on_primary(count, name + "-e") == 0

        caught_up()  # after commit, "transaction" and "off" may read a replica
        names = conn.scalars(select(User.name).where(User.name.like(name + "%")).order_by(User.name)).all()
        assert names == [name, name + "-b"]

    with e.connect() as conn:
        conn.execute(insert(User).values(name=name + "-c"))
    assert on_primary(count, name + "-c") == 0  # close rolled back


def test_nested_begin_raises_and_outer_rollback_undoes_everything(make_engine, on_primary) -> None:
    eng = make_engine(read_your_writes="transaction")
    a, b = unique("a"), unique("b")
    with eng.connect() as conn:
        with pytest.raises(ZeroDivisionError), conn.begin() as tx:
            assert isinstance(tx, rwsplit.RoutingTransaction)
            conn.execute(sa.insert(Item).values(name=a))
            with pytest.raises(InvalidRequestError, match="already begun"):
                conn.begin()
            conn.execute(sa.insert(Item).values(name=b))
            1 / 0  # noqa: B018
        assert not tx.is_active
        # a savepoint inside a transaction: its rollback keeps the outer write
        with conn.begin():
            conn.execute(sa.insert(Item).values(name=a))
            sp = conn.begin_nested()
            conn.execute(sa.insert(Item).values(name=b))
            sp.rollback()
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", a) == 1
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", b) == 0


def test_engine_begin_commits_on_success_and_rolls_back_on_error(make_engine, on_primary) -> None:
    eng = make_engine()
    ok, bad = unique("ok"), unique("bad")
    with eng.begin() as conn:
        conn.execute(sa.insert(Item).values(name=ok))
    with pytest.raises(RuntimeError), eng.begin() as conn:
        conn.execute(sa.insert(Item).values(name=bad))
        raise RuntimeError("boom")
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", ok) == 1
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", bad) == 0


def test_work_after_commit_inside_a_begin_block_is_refused(make_engine, on_primary) -> None:
    eng = make_engine(read_your_writes="transaction")
    a, b = unique("a"), unique("b")
    with pytest.raises(InvalidRequestError, match="closed transaction"), eng.connect() as conn, conn.begin():
        conn.execute(sa.insert(Item).values(name=a))
        conn.commit()
        conn.execute(sa.insert(Item).values(name=b))  # would escape the block (and be rolled back)
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", a) == 1
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", b) == 0


@pytest.mark.parametrize("mode", ["transaction", "causal", "off", "session"])
def test_core_connection_state_follows_its_reads(make_engine, server_of, mode: str) -> None:
    eng = make_engine(read_your_writes=mode)
    with eng.connect() as conn:
        conn.execute(text("SET time_zone = '+05:00'"))
        conn.execute(text("SET sql_mode = CONCAT(@@sql_mode, ',PIPES_AS_CONCAT')"))
        conn.execute(text("CREATE TEMPORARY TABLE ru_tmp (x INT)"))
        conn.execute(text("INSERT INTO ru_tmp VALUES (7)"))
        conn.commit()
        assert conn.scalar(text("SELECT TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), NOW())")) in (299, 300)
        assert conn.scalar(text("SELECT 'a' || 'b'")) == "ab"
        assert conn.scalar(text("SELECT x FROM ru_tmp")) == 7
        assert conn.last_target == PRIMARY
        assert server_of(conn) == PRIMARY
    with eng.connect() as fresh:  # a new connection has none of that state and reads a replica
        assert fresh.scalar(text("SELECT 'a' || 'b'")) in (0, "0")
        assert fresh.last_target in REPLICAS


def test_read_snapshot_is_consistent(eng, sandbox: Sandbox, ids, caught_up) -> None:
    early, late = unique("snap"), unique("snap")

    def insert_on_primary(name: str) -> None:
        with sandbox.connect("primary") as admin, admin.cursor() as cur:
            cur.execute(f"INSERT INTO {sandbox.database}.test_routing_user (name) VALUES (%s)", (name,))
        caught_up()

    def count(conn: object, name: str) -> int:
        return conn.scalar(select(func.count()).where(User.name == name))  # type: ignore[attr-defined]

    with eng.read_snapshot() as conn:
        insert_on_primary(early)  # after the snapshot started, before its first read
        assert count(conn, early) == 0
        assert ids[int(conn.exec_driver_sql(SERVER_ID).scalar())] in REPLICAS
        insert_on_primary(late)
        assert count(conn, late) == 0  # the replica has it, the snapshot does not
        with sa.orm.Session(bind=conn) as orm:
            assert orm.scalars(select(User).where(User.name.in_([early, late]))).all() == []
    with rwsplit.sessionmaker(eng)() as s:
        assert s.execute(select(func.count()).where(User.name.in_([early, late]))).scalar_one() == 2
        assert s.last_target in REPLICAS
    with eng.connect() as conn:
        assert count(conn, early) == 1 and count(conn, late) == 1
