"""rwsplit.classify without a server: version-gated built-ins, qualified calls, Route.effect."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from classify_corpus import MARIADB_10_11, QUALIFIED_SPELLINGS

from rwsplit.classifier import Route, classify, vocabulary


def test_gated_names_follow_the_version_floor() -> None:
    for sql in ("SELECT uuid_v7()", "SELECT UUID_V4()", "SELECT kdf('a', 'b')", "SELECT vec_fromtext('[1]')"):
        assert classify(sql).target == "primary"  # version unknown
        assert classify(sql, server=MARIADB_10_11).target == "primary"
        assert classify(sql, server=("mariadb", (11, 8, 2))).target == "replica"
    assert classify(sa.select(sa.func.uuid_v7())).target == "primary"
    assert classify(sa.select(sa.func.uuid_v7()), server=("mariadb", (11, 7, 2))).target == "replica"
    assert classify(sa.select(sa.func.uuid_v7()), server=MARIADB_10_11).target == "primary"
    # MySQL-only and removed names
    assert classify("SELECT bin_to_uuid(x) FROM t", server=("mysql", (8, 0, 36))).target == "replica"
    assert classify("SELECT bin_to_uuid(x) FROM t", server=MARIADB_10_11).target == "primary"
    assert classify("SELECT ASTEXT(g) FROM t", server=("mysql", (5, 7, 44))).target == "replica"
    assert classify("SELECT ASTEXT(g) FROM t", server=("mysql", (8, 0, 36))).target == "primary"
    assert classify("SELECT ROW_NUMBER() OVER () FROM t", server=("mysql", (5, 7, 44))).target == "primary"
    assert classify("SELECT ROW_NUMBER() OVER () FROM t", server=MARIADB_10_11).target == "replica"
    # always-native names need no version
    assert classify("SELECT md5(a), json_extract(d, '$.a') FROM t").target == "replica"


def test_server_is_part_of_both_cache_keys() -> None:
    stmt = sa.select(sa.func.uuid_v7())
    assert classify(stmt, server=("mariadb", (11, 7, 2))).target == "replica"
    assert classify(stmt).target == "primary"
    assert classify("SELECT uuid_v7()", server=("mariadb", (11, 7, 2))).target == "replica"
    assert classify("SELECT uuid_v7()").target == "primary"


def test_geometry_constructors_with_other_argument_counts_are_stored_calls() -> None:
    assert classify("SELECT ST_AsText(POINT(1, 2))").target == "replica"
    assert classify("SELECT POINT(1)").target == "primary"
    assert classify("SELECT POINT(1, 2, 3)").target == "primary"
    assert classify("SELECT LINESTRING()").target == "primary"
    assert classify("SELECT LINESTRING(POINT(0, 0), POINT(1, (1)))").target == "replica"
    assert classify(sa.select(sa.func.point(1))).target == "primary"
    assert classify(sa.select(sa.func.point(1, 2))).target == "replica"


def test_server_floor_parsing() -> None:
    floor = vocabulary.server_floor
    assert floor(["5.5.5-10.11.19-MariaDB-0+deb12u1-log"]) == ("mariadb", (10, 11, 19))
    assert floor(["11.4.2-MariaDB", "5.5.5-10.6.1-MariaDB"]) == ("mariadb", (10, 6, 1))
    assert floor(["8.0.36", "8.4.0"]) == ("mysql", (8, 0, 36))
    assert floor(["8.0.36", "10.11.2-MariaDB"]) is None  # mixed flavours: unknown
    assert floor(["10.11.2-MariaDB", None]) is None  # a replica not probed yet
    assert floor([]) is None
    with pytest.raises(TypeError):
        classify("SELECT 1", server=["mariadb", (10, 11)])  # type: ignore[arg-type]


@pytest.mark.parametrize("sql", QUALIFIED_SPELLINGS)
def test_qualified_calls_are_never_builtins(sql: str) -> None:
    route = classify(sql, server=MARIADB_10_11)
    assert route.target == "primary" and route.effect == "write", route
    assert classify(sql).target == "primary"


def test_qualified_call_declared_read_only_is_a_read() -> None:
    for sql in ("SELECT app . md5('x')", "SELECT app./**/md5('x')", "SELECT `app` . md5('x')"):
        assert classify(sql, read_only_functions=["app.md5"]).target == "replica", sql
    assert classify("SELECT t.a, md5(t.b) FROM t").target == "replica"
    assert classify("SELECT t . a, md5(t . b) FROM t").target == "replica"


def test_set_statement_for_a_read() -> None:
    assert classify("SET STATEMENT max_statement_time=5 FOR SELECT * FROM t").target == "replica"
    assert classify("set statement max_statement_time = 1.5, sql_mode = '' for select 1").target == "replica"
    for sql in (
        "SET STATEMENT max_statement_time=@x FOR SELECT 1",
        "SET STATEMENT max_statement_time=f() FOR SELECT 1",
        "SET STATEMENT max_statement_time=1 FOR SELECT LAST_INSERT_ID()",
        "SET STATEMENT max_statement_time=1 FOR DELETE FROM t",
        "SET STATEMENT max_statement_time=1 FOR SELECT uuid_v7()",
        "SET STATEMENT max_statement_time=1 FOR SELECT a FROM t FOR UPDATE",
        "SET STATEMENT max_statement_time=1 SELECT 1",
    ):
        assert classify(sql, server=MARIADB_10_11).target == "primary", sql


def test_explain_of_a_shared_locking_read_locks_nothing() -> None:
    assert classify("EXPLAIN SELECT * FROM t LOCK IN SHARE MODE").target == "replica"
    assert classify("EXPLAIN FORMAT=JSON SELECT * FROM t LOCK IN SHARE MODE").target == "replica"
    assert classify("DESCRIBE SELECT * FROM t FOR SHARE").target == "replica"
    assert classify("ANALYZE SELECT * FROM t LOCK IN SHARE MODE").effect == "lock"  # executes it
    assert classify("EXPLAIN ANALYZE SELECT * FROM t LOCK IN SHARE MODE").target == "primary"
    assert classify("EXPLAIN UPDATE t SET a = 1").target == "primary"
    # A read-only MariaDB replica refuses EXPLAIN of FOR UPDATE (see the server test below).
    assert classify("EXPLAIN SELECT * FROM t FOR UPDATE").target == "primary"


EFFECTS = [
    ("SELECT a FROM t", "read"),
    ("INSERT INTO t VALUES (1)", "write"),
    ("UPDATE t SET a = 1", "write"),
    ("CREATE TABLE t (a INT)", "write"),
    ("CALL p()", "write"),
    ("EXECUTE stmt", "write"),
    ("BEGIN", "write"),
    ("COMMIT", "write"),
    ("SELECT app.f()", "write"),
    ("SELECT 1; SELECT 2 FOR UPDATE", "write"),
    ("SELECT 'unterminated", "write"),
    ("SET GLOBAL max_connections = 10", "write"),
    ("SET @@global.sql_mode = ''", "write"),
    ("SET PASSWORD = 'x'", "write"),
    ("SET @x = app.f()", "write"),
    ("SELECT a INTO OUTFILE '/tmp/x' FROM t", "write"),
    ("SELECT a FROM t FOR UPDATE", "lock"),
    ("SELECT a FROM t LOCK IN SHARE MODE", "lock"),
    ("SELECT a FROM t FOR SHARE SKIP LOCKED", "lock"),
    ("SELECT app.f() FROM t FOR UPDATE", "write"),
    ("SELECT @x FROM t FOR UPDATE", "write"),
    ("SET @x = 1", "session"),
    ("SET NAMES utf8mb4", "session"),
    ("SET CHARACTER SET utf8mb4", "session"),
    ("SET time_zone = '+00:00'", "session"),
    ("SET SESSION sql_mode = 'ANSI'", "session"),
    ("SELECT @x", "session"),
    ("SELECT @x := 1", "session"),
    ("SELECT LAST_INSERT_ID()", "session"),
    ("SELECT FOUND_ROWS()", "session"),
    ("SELECT CONNECTION_ID()", "session"),
    ("SELECT a INTO @v FROM t", "session"),
    ("CREATE TEMPORARY TABLE tmp (a INT)", "session"),
    ("CREATE TEMPORARY TABLE tmp AS SELECT app.f()", "write"),
    ("DROP TEMPORARY TABLE tmp", "session"),
    ("SELECT GET_LOCK('x', 1)", "session"),
    ("SELECT RELEASE_LOCK('x')", "session"),
    ("PREPARE s FROM 'SELECT 1'", "session"),
    ("DEALLOCATE PREPARE s", "session"),
    ("USE app", "session"),
    ("LOCK TABLES t READ", "session"),
    ("UNLOCK TABLES", "session"),
    ("SHOW WARNINGS", "session"),
    ("SHOW VARIABLES LIKE 'x'", "session"),
    ("SHOW GLOBAL STATUS", "read"),
    ("SELECT SLEEP(1)", "write"),
]


@pytest.mark.parametrize(("sql", "effect"), EFFECTS)
def test_effect(sql: str, effect: str) -> None:
    assert classify(sql).effect == effect


def test_effect_of_constructs_and_default() -> None:
    t = sa.table("t", sa.column("a"))
    assert classify(sa.select(t)).effect == "read"
    assert classify(sa.select(t).with_for_update()).effect == "lock"
    assert classify(sa.select(sa.func.last_insert_id())).effect == "session"
    assert classify(sa.select(sa.func.last_insert_id()).with_for_update()).effect == "write"
    assert classify(sa.select(sa.func.app.f()).with_for_update()).effect == "write"
    assert classify(t.insert()).effect == "write"
    assert Route("primary", "x").effect == "write"
    assert Route("replica", "x").effect == "read"
    assert Route("primary", "x") == Route("primary", "x", "session")  # equality: target and reason
