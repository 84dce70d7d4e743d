"""Classification that depends on the server: version-gated built-ins, qualified calls, effects.

Server tests run against the real MariaDB sandbox; the rest is pure classifier logic.
"""

from __future__ import annotations

from collections.abc import Iterator

import pymysql
import pytest
import sqlalchemy as sa

import rwsplit
from rwsplit.classifier import Route, classify, vocabulary
from rwsplit.sandbox import Sandbox

MARIADB_10_11 = ("mariadb", (10, 11, 19))
UNKNOWN_FUNCTION = 1305  # FUNCTION app.x does not exist: the name was looked up as a stored function


def _server_floor(sandbox: Sandbox) -> tuple[str, tuple[int, ...]]:
    with sandbox.connect() as conn:
        floor = vocabulary.server_floor([conn.get_server_info()])
    assert floor is not None
    return floor


def _builtins(server: object) -> frozenset[str]:
    return vocabulary.context(frozenset(), server).builtins


def _resolves_to_stored(cur: pymysql.cursors.Cursor, call: str) -> bool:
    """True if the server looks ``call`` up as a stored function of the current schema."""
    try:
        cur.execute(f"SELECT {call}")
        cur.fetchall()
    except pymysql.err.MySQLError as exc:
        return bool(exc.args and exc.args[0] == UNKNOWN_FUNCTION)
    return False


@pytest.fixture()
def admin(sandbox: Sandbox) -> Iterator[pymysql.cursors.Cursor]:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute("USE app")
        yield cur


# ------------------------------------------------------------------ A1: the vocabulary vs the server


def test_every_builtin_on_this_server_is_native_there(
    sandbox: Sandbox, admin: pymysql.cursors.Cursor
) -> None:
    """No stored function ``app.<name>`` may be reachable by an unqualified call of a name the
    classifier treats as built-in (tried with 0 to 4 arguments; geometry constructors only with
    the argument counts the classifier accepts)."""
    server = _server_floor(sandbox)
    assert server[0] == "mariadb" and server[1] >= (10, 11)
    arity = vocabulary.GEOMETRY_ARITY
    reachable = []
    for name in sorted(_builtins(server)):
        low, high = arity.get(name.encode(), (0, 4))
        for count in range(low, min(high if high is not None else 4, 4) + 1):
            if _resolves_to_stored(admin, f"{name}({', '.join(['1'] * count)})"):
                reachable.append(f"{name}/{count}")
    assert reachable == []


def test_every_name_gated_off_on_this_server_is_really_absent(
    sandbox: Sandbox, admin: pymysql.cursors.Cursor
) -> None:
    server = _server_floor(sandbox)
    gated_off = sorted(vocabulary.BUILTIN_FUNCTIONS - _builtins(server))
    for name in ("UUID_V7", "UUID_V4", "BIN_TO_UUID", "FORMAT_BYTES", "KDF", "TRUNC", "VEC_DISTANCE"):
        assert name in gated_off
    present = [name for name in gated_off if not _resolves_to_stored(admin, f"{name}(1)")]
    assert present == []
    assert len(gated_off) >= 55


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


@pytest.fixture()
def writing_functions(sandbox: Sandbox) -> Iterator[None]:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS app.fn_calls (id INT AUTO_INCREMENT PRIMARY KEY, fn VARCHAR(20))"
        )
        for name in ("uuid_v7", "kdf", "md5"):
            arg = "x VARCHAR(20)" if name == "md5" else ""
            cur.execute(
                f"CREATE OR REPLACE FUNCTION app.{name}({arg}) RETURNS VARCHAR(20) "
                "DETERMINISTIC MODIFIES SQL DATA "
                f"BEGIN INSERT INTO app.fn_calls (fn) VALUES ('{name}'); RETURN 'stored {name}'; END"
            )
    sandbox.wait_caught_up()
    yield
    with sandbox.connect() as conn, conn.cursor() as cur:
        for name in ("uuid_v7", "kdf", "md5"):
            cur.execute(f"DROP FUNCTION IF EXISTS app.{name}")
        cur.execute("DROP TABLE IF EXISTS app.fn_calls")


def test_gated_stored_functions_run_on_the_primary(sandbox: Sandbox, writing_functions: None) -> None:
    engine = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls)
    try:
        with sandbox.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.server_id")
            primary_id = cur.fetchone()[0]
        session_factory = rwsplit.sessionmaker(engine)
        statements: list[object] = [
            sa.text("SELECT uuid_v7()"),
            sa.select(sa.func.uuid_v7()),
            sa.text("SELECT kdf()"),
            sa.text("SELECT app . md5('x')"),
            sa.text("SELECT app./**/md5('x')"),
            sa.text("SELECT `app` . md5('x')"),
        ]
        for stmt in statements:
            with session_factory() as session:
                value = session.execute(stmt).scalar()  # type: ignore[call-overload]
                assert str(value).startswith("stored "), (stmt, value)
                assert session.last_target == "primary", stmt
                session.commit()
            with session_factory() as session:
                # Independent check: the same routing of a statement that reports where it ran.
                probe = sa.text(f"SELECT @@GLOBAL.server_id, {str(stmt).split('SELECT', 1)[1].strip()}")
                server_id = session.execute(probe).first()[0]  # type: ignore[index]
                assert server_id == primary_id, stmt
                session.commit()
        sandbox.wait_caught_up()
        assert [s.last_error for s in sandbox.status() if s.role == "replica"] == [None, None]
        with sandbox.connect("primary") as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM app.fn_calls")
            assert cur.fetchone()[0] == 2 * len(statements)
        for i in range(1, len(sandbox.replica_urls) + 1):
            with sandbox.connect(i) as conn, conn.cursor() as cur:
                cur.execute("SHOW SLAVE STATUS")
                row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
                assert row["Slave_SQL_Running"] == "Yes" and not row["Last_SQL_Error"], row["Last_SQL_Error"]
                cur.execute("SELECT COUNT(*) FROM app.fn_calls")
                assert cur.fetchone()[0] == 2 * len(statements)
    finally:
        engine.dispose()


# ------------------------------------------------------------------ A2: qualified calls


QUALIFIED_SPELLINGS = [
    "SELECT app.md5('x')",
    "SELECT app .md5('x')",
    "SELECT app . md5('x')",
    "SELECT app. md5('x')",
    "SELECT app./**/md5('x')",
    "SELECT app/**/./**/md5('x')",
    "SELECT `app` . md5('x')",
    "SELECT `app`.`md5`('x')",
    "SELECT app.`md5`('x')",
    "SELECT app.\n  md5('x')",
    "SELECT app.-- c\nmd5('x')",
    "SELECT app.# c\nmd5('x')",
    "SELECT app./*!*/md5('x')",
    "SELECT app/*!.*/md5('x')",
    "SELECT app./*M!*/md5('x')",
]


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


@pytest.mark.parametrize("sql", QUALIFIED_SPELLINGS)
def test_mariadb_runs_the_stored_function_for_every_spelling(
    sandbox: Sandbox, writing_functions: None, sql: str
) -> None:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        assert cur.fetchone()[0] == "stored md5"


# ------------------------------------------------------------------ smaller classifier items


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


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("EXPLAIN SELECT * FROM app.explain_t WHERE id = 1 LOCK IN SHARE MODE", False),
        ("EXPLAIN SELECT * FROM app.explain_t WHERE id = 1 FOR UPDATE", True),
    ],
)
def test_explain_of_locking_reads_on_a_read_only_replica(sandbox: Sandbox, sql: str, refused: bool) -> None:
    """What the route relies on: the replica runs EXPLAIN of a shared-lock read, refuses FOR UPDATE."""
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS app.explain_t (id INT PRIMARY KEY)")
    sandbox.wait_caught_up()
    assert classify(sql).target == ("primary" if refused else "replica")
    url = sa.make_url(sandbox.replica_urls[0])
    conn = pymysql.connect(host=url.host, port=url.port, user=url.username, password=url.password)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@read_only")
            assert cur.fetchone()[0] == 1
            try:
                cur.execute(sql)
                error = None
            except pymysql.err.MySQLError as exc:
                error = exc.args[0]
            assert error == (1290 if refused else None)
    finally:
        conn.close()


# ------------------------------------------------------------------ Route.effect

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
