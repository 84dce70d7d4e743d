"""Spot-check the classifier against real semantics: a read-only replica and a non-privileged user.

Every corpus statement routed to a replica is run there as the application user (which
``read_only=ON`` stops from writing): none may be refused as a write (error 1290), whatever else
it fails with (tables of the corpus mostly do not exist). A sample of statements routed to the
primary as writes is refused there, which shows the check can fail.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import sqlalchemy as sa

import rwsplit
from rwsplit.sandbox import Sandbox

sys.path.insert(0, str(Path(__file__).parent))
from classify_corpus import CORPUS  # noqa: E402

READ_ONLY_REFUSAL = 1290
_SKIP_ON_SERVER = ("SLEEP", "BENCHMARK")  # replica-safe but slow; routed to the primary anyway


@pytest.fixture(scope="module")
def replica_conn(sandbox: Sandbox) -> Iterator[pymysql.Connection]:
    url = sa.make_url(sandbox.replica_urls[0])
    conn = pymysql.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
        autocommit=True,
        read_timeout=10,
    )
    with conn.cursor() as cur:
        cur.execute("SELECT @@read_only, CURRENT_USER()")
        read_only, user = cur.fetchone()
    assert read_only == 1 and user.startswith("app@")
    yield conn
    conn.close()


def _run(conn: pymysql.Connection, sql: str) -> int | None:
    """The server's error number for ``sql``, None if it ran."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql.replace("%", "%%"))
            while cur.nextset():
                pass
        return None
    except pymysql.err.MySQLError as exc:
        return exc.args[0] if exc.args else -1


def test_replica_routed_statements_are_never_refused_as_writes(replica_conn: pymysql.Connection) -> None:
    replica_sql = [sql for sql, _, _ in CORPUS if rwsplit.classify(sql).target == "replica"]
    assert len(replica_sql) > 150
    refused = [sql for sql in replica_sql if _run(replica_conn, sql) == READ_ONLY_REFUSAL]
    assert refused == []


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO app.spot VALUES (1)",
        "/* SELECT */ DELETE FROM app.spot",
        "UPDATE app.spot SET id = 2",
        "REPLACE INTO app.spot VALUES (3)",
        "CREATE TABLE app.spot2 (id INT)",
        "TRUNCATE app.spot",
    ],
)
def test_write_routed_statements_are_refused_on_the_replica(
    sandbox: Sandbox, replica_conn: pymysql.Connection, sql: str
) -> None:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS app.spot (id INT PRIMARY KEY)")
    sandbox.wait_caught_up()
    assert rwsplit.classify(sql).target == "primary"
    assert _run(replica_conn, sql) == READ_ONLY_REFUSAL
