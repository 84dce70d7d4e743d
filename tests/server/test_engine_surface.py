"""README "Using the engine like an Engine": attributes, begin, raw_connection, execution_options,
inspect(), DDL through the engine, per-server logging names, and plain Sessions refused."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
import sqlalchemy.orm
from helpers import PRIMARY, REPLICAS, SERVER_ID, unique, wait_ineligible
from models import User
from sqlalchemy import func, insert, select, text

import rwsplit
from rwsplit.sandbox import Sandbox

_ENGINE_LOGGER = "sqlalchemy.engine.Engine"


def test_engine_attributes_are_the_primarys(eng: rwsplit.RoutingEngine, sandbox: Sandbox) -> None:
    primary = eng.primary
    assert eng.url == primary.url == sa.make_url(sandbox.primary_url)
    assert "***" in str(eng.url)  # str() hides the password, as for any Engine
    assert eng.dialect is primary.dialect
    assert eng.name == primary.name and eng.name in ("mysql", "mariadb")
    assert eng.driver == "pymysql"
    assert eng.pool is primary.pool
    assert eng.echo == primary.echo and not eng.echo


def test_begin_commits_on_the_primary(eng, on_primary) -> None:
    name = unique("begin")
    with eng.begin() as conn:
        conn.execute(insert(User).values(name=name))
    assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", name) == 1
    with pytest.raises(ZeroDivisionError), eng.begin() as conn:
        conn.execute(insert(User).values(name=name + "x"))
        raise ZeroDivisionError
    assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", name + "x") == 0


def test_raw_connection_is_the_primarys(eng, ids) -> None:
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(SERVER_ID)
        assert ids[int(cur.fetchone()[0])] == PRIMARY
    finally:
        raw.close()


def test_execution_options_view(eng, where) -> None:
    view = eng.execution_options(isolation_level="READ COMMITTED")
    assert isinstance(view, rwsplit.RoutingEngine)
    assert view.get_execution_options()["isolation_level"] == "READ COMMITTED"
    assert "isolation_level" not in eng.get_execution_options()  # the original is unchanged
    isolation = text("SELECT @@SESSION.tx_isolation")
    Session = rwsplit.sessionmaker(view)
    with Session() as s:
        assert where(s) in REPLICAS  # reads still go to replicas (in autocommit)
        with s.use_primary():
            assert s.scalar(isolation) == "READ-COMMITTED"
    with rwsplit.sessionmaker(eng)() as s, s.use_primary():
        assert s.scalar(isolation) == "REPEATABLE-READ"
    with view.connect() as conn:
        assert where(conn) in REPLICAS
        conn.execute(insert(User).values(name=unique("view")))
        assert where(conn) == PRIMARY
        assert conn.scalar(isolation) == "READ-COMMITTED"
        conn.rollback()
    assert view.monitor is eng.monitor and view.pool is eng.pool
    with pytest.raises(ValueError, match="per statement"):
        eng.execution_options(rwsplit_route="primary")


def test_inspect_gives_an_inspector_on_the_primary(eng) -> None:
    inspector = sa.inspect(eng)
    assert isinstance(inspector, sa.engine.Inspector)
    assert inspector.bind is eng.primary
    assert "test_routing_user" in inspector.get_table_names()
    reflected = sa.Table("test_routing_user", sa.MetaData(), autoload_with=eng)
    assert "name" in reflected.c


def test_ddl_through_the_engine_runs_on_the_primary(eng, paused_replicas, on_primary) -> None:
    # Replicas paused: DDL that went anywhere but the primary could not show up there.
    metadata = sa.MetaData()
    name = unique("ddl")
    table = sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True))
    other = sa.Table(name + "_b", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    exists = "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = %s"
    try:
        metadata.create_all(eng)
        other.create(eng)
        assert on_primary(exists, name) == 1 and on_primary(exists, name + "_b") == 1
        assert sa.inspect(eng).has_table(name)
        with rwsplit.sessionmaker(eng)() as s:
            s.execute(sa.insert(table).values(id=1))  # the new table is writable at once
            s.commit()
    finally:
        other.drop(eng, checkfirst=True)
        metadata.drop_all(eng)
    assert on_primary(exists, name) == 0 and on_primary(exists, name + "_b") == 0


def _routed_reads_and_writes(e: rwsplit.RoutingEngine) -> None:
    with rwsplit.sessionmaker(e)() as s:
        s.execute(text("SELECT 'read-marker'")).all()
        s.execute(insert(User).values(name="write-marker"))
        s.rollback()


def _logger_of(records: list[logging.LogRecord], marker: str) -> set[str]:
    return {r.name for r in records if marker in r.getMessage()}


def test_each_server_logs_under_its_own_name(make_engine, caplog, sandbox) -> None:
    e = make_engine(echo=True)
    assert e.echo is True and all(x.echo is True for x in e.engines.values())
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        _routed_reads_and_writes(e)
    reads = _logger_of(caplog.records, "read-marker")
    assert reads and reads <= {f"{_ENGINE_LOGGER}.{r}" for r in REPLICAS}
    assert _logger_of(caplog.records, "INSERT INTO test_routing_user") == {f"{_ENGINE_LOGGER}.primary"}
    password = sa.make_url(sandbox.primary_url).password
    assert password and not any(password in r.getMessage() for r in caplog.records)
    e.echo = False
    assert all(x.echo is False for x in (*e.engines.values(), e._primary_reads))


def test_fallback_reads_log_as_primary_reads(make_engine, caplog, paused_replicas) -> None:
    e = make_engine(wait=False)
    wait_ineligible(e, set(REPLICAS))
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"), rwsplit.sessionmaker(e)() as s:
        s.execute(text("SELECT 'fallback-marker'")).all()
    assert _logger_of(caplog.records, "fallback-marker") == {f"{_ENGINE_LOGGER}.primary_reads"}


def test_logging_name_of_the_app_prefixes_the_servers(make_engine) -> None:
    e = make_engine(wait=False, logging_name="shop")
    assert e.primary.logging_name == "shop.primary" and e.primary.pool.logging_name == "primary"
    assert [e.engines[r].logging_name for r in REPLICAS] == ["shop.replica1", "shop.replica2"]
    assert e._primary_reads.logging_name == "shop.primary_reads"


@pytest.mark.parametrize(
    "make_session",
    [
        lambda e: sqlalchemy.orm.Session(e),
        lambda e: sqlalchemy.orm.sessionmaker(bind=e)(),
        lambda e: sqlalchemy.orm.Session(binds={User: e}),
    ],
    ids=["Session(engine)", "sessionmaker(bind=engine)", "binds"],
)
def test_plain_session_is_refused_before_anything_runs(eng, on_primary, make_session) -> None:
    name = unique("plain")
    with make_session(eng) as s:
        s.add(User(name=name))
        with pytest.raises(TypeError, match=r"rwsplit\.sessionmaker\(engine\)"):
            s.commit()
        s.rollback()
        with pytest.raises(TypeError, match=r"rwsplit\.sessionmaker"):
            s.scalar(select(func.count()).select_from(User))
    assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", name) == 0
    assert all(x.pool.checkedout() == 0 for x in eng.engines.values())


def test_the_readme_section_runs_as_written(sandbox: Sandbox, capsys) -> None:
    from test_readme import code_block, on_sandbox

    source = on_sandbox(code_block("Using the engine like an Engine"), sandbox)
    exec(compile(source, "README.rst:Using the engine like an Engine", "exec"), {})
    assert capsys.readouterr().out == "mysql True\n"
