"""README Core: a RoutingConnection answers what SQLAlchemy code expects of a Connection (dialect,
transactions, execution options, info, invalidate, DDL, inspect) and runs the rest on the primary."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from helpers import PRIMARY, REPLICAS, unique
from models import Item
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connectable, Connection
from sqlalchemy.exc import InvalidRequestError, PendingRollbackError, ResourceClosedError

import rwsplit
from rwsplit.sandbox import Sandbox

COUNT = "SELECT COUNT(*) FROM test_ru_item WHERE name = %s"


def test_it_is_a_connectable_with_the_primarys_dialect_and_its_engine(eng) -> None:
    with eng.connect() as conn:
        assert isinstance(conn, Connectable)  # what pandas checks
        assert conn.dialect is eng.primary.dialect
        assert conn.dialect.name == "mysql"
        assert conn.engine is eng
        assert not conn.closed
    assert conn.closed
    with pytest.raises(ResourceClosedError):
        conn.execute(text("SELECT 1"))


def test_begin_returns_a_transaction_like_root_transaction(eng, on_primary) -> None:
    name = unique("tx")
    with eng.connect() as conn:
        assert conn.get_transaction() is None
        trans = conn.begin()
        assert isinstance(trans, rwsplit.RoutingTransaction)
        assert (trans.is_active, trans.is_valid, trans.nested) == (True, True, False)
        assert conn.get_transaction() is trans and conn.in_transaction()
        conn.execute(insert(Item).values(name=name))
        trans.commit()
        assert not trans.is_active and conn.get_transaction() is None
        with pytest.raises(InvalidRequestError):
            trans.commit()
        trans.close()  # closing an inactive transaction is a no-op, as in SQLAlchemy
        with conn.begin() as block:
            conn.execute(insert(Item).values(name=name + "b"))
        assert not block.is_active
    assert on_primary(COUNT, name) == 1 and on_primary(COUNT, name + "b") == 1


def test_get_transaction_of_an_autobegun_write_commits_it(eng, on_primary) -> None:
    name = unique("auto")
    with eng.connect() as conn:
        conn.execute(insert(Item).values(name=name))
        trans = conn.get_transaction()
        assert trans is not None and trans.is_active
        assert conn.get_transaction() is trans
        trans.commit()
        assert not conn.in_transaction()
    assert on_primary(COUNT, name) == 1


def test_begin_nested_is_a_savepoint_reported_by_the_connection(eng, on_primary, where) -> None:
    keep, drop = unique("keep"), unique("drop")
    with eng.connect() as conn:
        assert not conn.in_nested_transaction() and conn.get_nested_transaction() is None
        with conn.begin():
            conn.execute(insert(Item).values(name=keep))
            savepoint = conn.begin_nested()
            assert conn.in_nested_transaction() and conn.get_nested_transaction() is savepoint
            conn.execute(insert(Item).values(name=drop))
            savepoint.rollback()
            assert not conn.in_nested_transaction()
            assert where(conn) == PRIMARY
    assert (on_primary(COUNT, keep), on_primary(COUNT, drop)) == (1, 0)


def test_execution_options_apply_to_later_statements_and_return_the_connection(eng, where) -> None:
    with eng.connect() as conn:
        assert where(conn) in REPLICAS
        assert conn.execution_options(rwsplit_route="primary") is conn
        assert conn.get_execution_options()["rwsplit_route"] == "primary"
        assert where(conn) == PRIMARY
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1 and conn.last_target == PRIMARY
    with eng.connect() as other:  # options belong to one connection
        assert where(other) in REPLICAS and other.get_execution_options() == {}


def test_isolation_level_option_sets_the_primary_connection_and_reads_follow(eng, where) -> None:
    with eng.connect() as conn:
        conn.execution_options(isolation_level="READ COMMITTED")
        assert conn.get_isolation_level() == "READ COMMITTED"
        assert conn.scalar(text("SELECT @@SESSION.tx_isolation")) == "READ-COMMITTED"
        assert conn.last_target == PRIMARY
        assert where(conn) == PRIMARY
        assert conn.default_isolation_level == "REPEATABLE READ"


def test_info_is_a_dict_of_each_connection(eng) -> None:
    with eng.connect() as conn:
        conn.info["request"] = 7
        assert conn.info == {"request": 7}
    with eng.connect() as other:
        assert other.info == {}


def test_transaction_close_loses_the_open_transaction(eng, on_primary) -> None:
    name = unique("close")
    with eng.connect() as conn:
        trans = conn.begin()
        conn.execute(insert(Item).values(name=name))
        trans.close()  # as RootTransaction.close(): rolls back
        assert not trans.is_active and not conn.in_transaction()
        assert on_primary(COUNT, name) == 0
        assert conn.scalar(text("SELECT 1")) == 1


# The invalidate() tests run each scenario on a plain SQLAlchemy Connection (engine.primary) and on a
# RoutingConnection: the same assertions hold for both (SQLAlchemy 2.x's behaviour, checked live).
VIA = pytest.mark.parametrize("via", ["sqlalchemy", "routing"])
PENDING = "Can't reconnect until invalid transaction is rolled back"


def _connect(eng: rwsplit.RoutingEngine, via: str) -> Connection | rwsplit.RoutingConnection:
    return eng.primary.connect() if via == "sqlalchemy" else eng.connect()


def _statements(conn: Connection | rwsplit.RoutingConnection) -> list[Callable[[], object]]:
    return [
        lambda: conn.execute(text("SELECT 1")),
        lambda: conn.execute(insert(Item).values(name=unique("lost"))),
        lambda: conn.exec_driver_sql("SELECT 1"),
        lambda: conn.scalar(select(sa.literal(1))),
        conn.begin_nested,
        conn.get_isolation_level,
    ]


@VIA
@pytest.mark.parametrize("end", ["rollback", "trans.rollback", "trans.close"])
def test_invalidate_inside_a_transaction_raises_until_rollback(eng, on_primary, via: str, end: str) -> None:
    name = unique("inv")
    with _connect(eng, via) as conn:
        trans = conn.begin()
        conn.execute(insert(Item).values(name=name))
        conn.invalidate()
        assert conn.invalidated and conn.in_transaction() and conn.get_transaction() is trans
        assert trans.is_active and not trans.is_valid
        for statement in _statements(conn):
            with pytest.raises(PendingRollbackError, match=PENDING):
                statement()
        with pytest.raises(InvalidRequestError):
            conn.begin()
        assert conn.execution_options(stream_results=False) is conn  # options need no connection
        conn.invalidate()  # again: fine
        {"rollback": conn.rollback, "trans.rollback": trans.rollback, "trans.close": trans.close}[end]()
        assert not conn.in_transaction() and not trans.is_active and conn.get_transaction() is None
        assert conn.invalidated  # until the next statement reconnects
        assert conn.scalar(text("SELECT 1")) == 1
        assert not conn.invalidated
    assert on_primary(COUNT, name) == 0  # the lost transaction's write never committed


@VIA
def test_commit_after_invalidate_fails_and_statements_raise_until_rollback(eng, on_primary, via: str) -> None:
    name = unique("inv")
    with _connect(eng, via) as conn:
        trans = conn.begin()
        conn.execute(insert(Item).values(name=name))
        conn.invalidate()
        with pytest.raises(PendingRollbackError, match=PENDING):
            conn.commit()
        assert not trans.is_active and not conn.in_transaction()  # the commit ended it ...
        with pytest.raises(PendingRollbackError, match=PENDING):
            conn.execute(text("SELECT 1"))  # ... yet nothing runs before rollback()
        with pytest.raises(InvalidRequestError):
            conn.begin()
        trans.rollback()  # inactive, and still what makes the connection usable again
        assert conn.scalar(text("SELECT 1")) == 1
    assert on_primary(COUNT, name) == 0


@VIA
def test_invalidate_in_a_begin_block_fails_the_block_which_rolls_back(eng, on_primary, via: str) -> None:
    name = unique("inv")
    with _connect(eng, via) as conn:
        with pytest.raises(PendingRollbackError, match=PENDING), conn.begin():
            conn.execute(insert(Item).values(name=name))
            conn.invalidate()  # the block's commit fails; it rolls back, and raises
        assert not conn.in_transaction()
        assert conn.scalar(text("SELECT 1")) == 1
        conn.commit()  # ends the read's autobegun transaction (a plain Connection's)
        with pytest.raises(PendingRollbackError, match=PENDING), conn.begin():
            conn.invalidate()
            conn.execute(text("SELECT 1"))  # raises inside: the block rolls back
        assert conn.scalar(text("SELECT 1")) == 1
    assert on_primary(COUNT, name) == 0


@VIA
def test_invalidate_of_an_autobegun_write_raises_until_rollback(eng, on_primary, via: str) -> None:
    name = unique("inv")
    with _connect(eng, via) as conn:
        conn.execute(insert(Item).values(name=name))  # commit as you go: the write autobegins
        conn.invalidate()
        assert conn.in_transaction()
        with pytest.raises(PendingRollbackError, match=PENDING):
            conn.execute(text("SELECT 1"))
        conn.rollback()
        assert conn.scalar(text("SELECT 1")) == 1
    assert on_primary(COUNT, name) == 0


@VIA
def test_invalidate_inside_a_savepoint_names_it(eng, via: str) -> None:
    with _connect(eng, via) as conn:
        conn.begin()
        conn.begin_nested()
        conn.invalidate()
        with pytest.raises(PendingRollbackError, match="until invalid savepoint transaction is rolled back"):
            conn.execute(text("SELECT 1"))
        conn.rollback()
        assert conn.scalar(text("SELECT 1")) == 1


@VIA
def test_invalidate_outside_a_transaction_reconnects_on_the_next_statement(eng, on_primary, via: str) -> None:
    name = unique("inv")
    with _connect(eng, via) as conn:
        conn.invalidate()  # nothing held yet
        conn.execute(insert(Item).values(name=name))
        conn.commit()
        assert not conn.in_transaction()
        conn.invalidate()
        assert conn.invalidated
        assert conn.scalar(text("SELECT COUNT(*) FROM test_ru_item WHERE name = :n"), {"n": name}) == 1
        assert not conn.invalidated
        conn.commit()
    assert on_primary(COUNT, name) == 1
    conn.close()
    with pytest.raises(ResourceClosedError):
        conn.invalidate()


def test_invalidate_after_replica_reads_reconnects_them(make_engine, where) -> None:
    """Replica reads begin no transaction (unlike a plain Connection's reads): invalidate() then
    just discards the replica's DBAPI connection, and the next read opens a fresh one."""
    eng = make_engine()
    discarded: list[str] = []
    for name in REPLICAS:
        sa.event.listen(eng.engines[name].pool, "invalidate", lambda *_, name=name: discarded.append(name))
    with eng.connect() as conn:
        first = where(conn)
        assert first in REPLICAS and not conn.in_transaction()
        conn.invalidate()
        assert discarded == [first]
        assert where(conn) == first  # no PendingRollbackError: a fresh connection, same replica
        assert not conn.invalidated


def test_the_rest_of_connections_api_runs_on_the_primary(eng, where) -> None:
    names = sorted(n for n in dir(Connection) if not n.startswith("_") and n != "dispatch")
    with eng.connect() as conn:
        assert where(conn) in REPLICAS
        missing = [n for n in names if not hasattr(conn, n)]
        assert missing == []
        assert where(conn) == PRIMARY  # after an unknown effect, reads follow the primary connection
        with pytest.raises(AttributeError, match="no_such_thing"):
            conn.no_such_thing  # noqa: B018
        with pytest.raises(InvalidRequestError, match=r"engine\.primary or engine\.engines"):
            sa.event.listen(conn, "before_execute", lambda *args: None)
    with eng.connect() as conn:
        dbapi = conn.connection  # raw DBAPI access: invisible to routing
        with dbapi.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.server_id")
        assert where(conn) == PRIMARY


def test_ddl_through_the_connection_runs_on_the_primary(
    make_engine, stale_replicas, sandbox: Sandbox, on_primary
) -> None:
    eng = make_engine(max_lag=60)
    name = unique("ddl").replace("-", "_")
    table = sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    try:
        with eng.connect() as conn:
            table.create(conn)
            assert conn.last_target == PRIMARY
            assert sa.inspect(conn).has_table(name)  # the primary's catalog: the replicas lag
            assert conn.scalar(select(sa.func.count()).select_from(table)) == 0  # follows it there
            assert conn.last_target == PRIMARY
            conn.commit()
        with eng.connect() as conn:
            assert name in sa.inspect(conn).get_table_names()
            table.metadata.drop_all(conn)
            conn.commit()
        assert on_primary("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = %s", name) == 0
    finally:
        on_primary(f"DROP TABLE IF EXISTS {name}")
