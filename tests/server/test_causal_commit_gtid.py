"""The GTID of a causal commit: from the COMMIT's OK packet (PyMySQL, MariaDB Connector/Python) or,
for drivers that do not show OK packets (mysqlclient), from ``SELECT @@last_gtid`` right after it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import FAST, unique, with_driver
from models import Item

import rwsplit
from rwsplit.causal import request_capture, take_captured, wait_and_read_applied
from rwsplit.flavor import MARIADB
from rwsplit.sandbox import Sandbox
from rwsplit.testing import ConsistencyLoad, create_table

TRACKED = {"pymysql": True, "mariadbconnector": True, "mysqldb": False}


@pytest.fixture()
def make(sandbox: Sandbox, tables: None, caught_up: Callable[..., None]) -> Iterator[Callable[..., Any]]:
    made: list[rwsplit.RoutingEngine] = []

    def build(driver: str, **kw: Any) -> rwsplit.RoutingEngine:
        kw.setdefault("monitor_interval", FAST)
        eng = rwsplit.create_engine(
            with_driver(sandbox.primary_url, driver),
            replicas=[with_driver(u, driver) for u in sandbox.replica_urls],
            read_your_writes="causal",
            max_lag=30,
            **kw,
        )
        made.append(eng)
        return eng

    caught_up()
    yield build
    for eng in made:
        eng.dispose()


def _com_select(conn: sa.Connection) -> int:
    row = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_select'").one()
    return int(row[1])


def _captured_commit(conn: sa.Connection) -> tuple[str | None, int]:
    """Insert and commit on ``conn`` with the capture armed: (captured GTID, SELECTs the commit ran)."""
    conn.execute(sa.insert(Item).values(name=unique()))
    before = _com_select(conn)  # runs inside the transaction: before the COMMIT
    request_capture()
    conn.commit()
    captured = take_captured()
    return captured, _com_select(conn) - before


@pytest.mark.parametrize("driver", sorted(TRACKED))
def test_the_captured_gtid_is_the_connections_last_gtid(make: Callable[..., Any], driver: str) -> None:
    eng = make(driver)
    with eng.primary.connect() as conn:
        for _ in range(3):
            captured, selects = _captured_commit(conn)
            assert captured is not None
            assert captured == conn.exec_driver_sql("SELECT @@last_gtid").scalar()
            # the OK packet's GTID costs no query; other drivers read it with one SELECT
            assert selects == (0 if TRACKED[driver] else 1), (driver, selects)


@pytest.mark.parametrize("driver", ["pymysql", "mariadbconnector"])
def test_a_connection_that_stopped_tracking_falls_back_to_the_query(
    make: Callable[..., Any], driver: str
) -> None:
    eng = make(driver)
    with eng.primary.connect() as conn:
        conn.exec_driver_sql("SET SESSION session_track_system_variables = ''")
        conn.commit()
        captured, selects = _captured_commit(conn)
        assert captured == conn.exec_driver_sql("SELECT @@last_gtid").scalar()
        assert selects == 1


@pytest.mark.parametrize("driver", ["pymysql", "mariadbconnector"])
def test_a_commit_that_wrote_nothing_reads_the_query_like_before(
    make: Callable[..., Any], driver: str
) -> None:
    eng = make(driver)
    with eng.primary.connect() as conn:
        captured, _ = _captured_commit(conn)
        conn.exec_driver_sql("SELECT 1").scalar()
        request_capture()
        conn.commit()  # nothing written: the OK packet reports no GTID; the query answers the last one
        assert take_captured() == captured


@pytest.mark.parametrize("driver", sorted(TRACKED))
def test_session_tokens_name_the_commit_and_other_connections_are_untouched(
    sandbox: Sandbox, make: Callable[..., Any], driver: str
) -> None:
    eng = make(driver)
    Session = rwsplit.sessionmaker(eng)
    for _ in range(5):
        name = unique()
        with Session() as s:
            s.add(Item(name=name))
            s.commit()
            assert str(rwsplit.tokens.decode_token(s.consistency_token())) == sandbox.primary_gtid()
            assert s.scalar(sa.select(Item.name).where(Item.name == name)) == name
    # only the primary's connections track last_gtid; replicas keep the server's default
    with eng.replicas[0].connect() as conn:
        tracked = conn.exec_driver_sql("SELECT @@session_track_system_variables").scalar()
        assert "last_gtid" not in tracked.split(",")


@pytest.mark.parametrize("driver", ["pymysql", "mysqldb"])
def test_causal_read_your_writes_under_load_on_both_paths(
    sandbox: Sandbox, make: Callable[..., Any], driver: str
) -> None:
    table = f"app.gtid_load_{driver}"
    create_table(sandbox, table)
    try:
        eng = make(driver)
        with ConsistencyLoad(eng, table, mode="causal", threads=6) as load:
            time.sleep(3)
        r = load.results
        assert r.read_errors == [] and r.write_errors == []
        assert r.ryw_violations == 0 and r.stale_reads == 0
        assert r.writes > 20
    finally:
        with sandbox.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE {table}")
        sandbox.wait_caught_up()


@pytest.mark.parametrize("driver", sorted(TRACKED))
def test_the_causal_wait_answers_reached_or_timed_out(make: Callable[..., Any], driver: str) -> None:
    """Reached at once for a position the replica has; for one the primary never produced, not
    reached, and only after the timeout."""
    eng = make(driver)
    with eng.primary.connect() as conn:
        have = eng._parse_position(conn.exec_driver_sql("SELECT @@gtid_binlog_pos").scalar())
    far = MARIADB.parse_position(",".join(f"{d}-1-{n + 10**6}" for d, n in have.seqs.items()))
    with eng.replicas[0].connect() as conn:
        started = time.monotonic()
        assert wait_and_read_applied(conn, MARIADB, have, 5.0)[0] is True
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        assert wait_and_read_applied(conn, MARIADB, far, 0.3)[0] is False
        assert time.monotonic() - started >= 0.25
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1  # the connection is still usable


@pytest.mark.parametrize("driver", sorted(TRACKED))
def test_the_causal_wait_also_reads_what_the_replica_applied(make: Callable[..., Any], driver: str) -> None:
    """Reached or not, the wait tells what the replica had applied: at least what it had before the
    wait (and the position waited for, when reached); never a position the primary did not produce."""
    eng = make(driver)
    with eng.primary.connect() as conn:
        have = eng._parse_position(conn.exec_driver_sql("SELECT @@gtid_binlog_pos").scalar())
    far = MARIADB.parse_position(",".join(f"{d}-1-{n + 10**6}" for d, n in have.seqs.items()))
    with eng.replicas[0].connect() as conn:
        before = MARIADB.parse_position(conn.exec_driver_sql("SELECT @@gtid_slave_pos").scalar())
        reached, applied = wait_and_read_applied(conn, MARIADB, have, 5.0)
        assert reached and applied.covers(have) and applied.covers(before)
        reached, applied = wait_and_read_applied(conn, MARIADB, far, 0.2)
        assert not reached and applied.covers(have) and not applied.covers(far)


@pytest.mark.parametrize("driver", sorted(TRACKED))
def test_a_wait_on_a_killed_connection_raises_like_sqlalchemy(
    sandbox: Sandbox, make: Callable[..., Any], driver: str
) -> None:
    """A driver error is SQLAlchemy's ``DBAPIError`` with the connection invalidated: failover reads
    elsewhere and the pool never hands the dead connection out again."""
    eng = make(driver)
    with eng.primary.connect() as conn:
        have = eng._parse_position(conn.exec_driver_sql("SELECT @@gtid_binlog_pos").scalar())
    with eng.replicas[0].connect() as conn:
        own = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
        with sandbox.connect("replica1") as admin, admin.cursor() as cur:
            cur.execute(f"KILL CONNECTION {int(own)}")
        with pytest.raises(sa.exc.DBAPIError) as err:
            wait_and_read_applied(conn, MARIADB, have, 1.0)
        assert err.value.connection_invalidated
        assert conn.invalidated
