"""README Core: a RoutingConnection answers what SQLAlchemy code expects of a Connection (dialect,
transactions, execution options, info, invalidate, DDL, inspect) and runs the rest on the primary."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from helpers import PRIMARY, REPLICAS, unique
from models import Item
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connectable, Connection
from sqlalchemy.exc import InvalidRequestError, ResourceClosedError

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


@pytest.mark.parametrize("end", ["close", "invalidate"])
def test_transaction_close_and_invalidate_lose_the_open_transaction(eng, on_primary, end: str) -> None:
    name = unique(end)
    with eng.connect() as conn:
        trans = conn.begin()
        conn.execute(insert(Item).values(name=name))
        if end == "close":
            trans.close()  # as RootTransaction.close(): rolls back
        else:
            conn.invalidate()  # the DBAPI connections are discarded
            assert conn.invalidated and not trans.is_valid
        assert not trans.is_active and not conn.in_transaction()
        assert on_primary(COUNT, name) == 0
        assert conn.scalar(text("SELECT 1")) == 1  # usable again, on fresh connections
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
