"""README Statement classification on the real server: replica refusals, version-gated names, hostile
SQL."""

from __future__ import annotations

from collections.abc import Iterator

import pymysql
import pytest
import sqlalchemy as sa
from classify_corpus import CORPUS, QUALIFIED_SPELLINGS
from helpers import FAULT_TABLE as TABLE

import rwsplit
from rwsplit.classifier import classify, vocabulary
from rwsplit.gtid import parse_mariadb
from rwsplit.sandbox import Sandbox
from rwsplit.testing import checksum


@pytest.fixture()
def engine(fault_engine: rwsplit.RoutingEngine) -> rwsplit.RoutingEngine:
    """max_lag=1.0 and 3 s read/write timeouts (``fault_engine`` in conftest)."""
    return fault_engine


# ------------------------------------------------------------------ replica-routed statements on a replica


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


# ------------------------------------------------------------------ the vocabulary vs the server


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


@pytest.mark.parametrize("sql", QUALIFIED_SPELLINGS)
def test_mariadb_runs_the_stored_function_for_every_spelling(
    sandbox: Sandbox, writing_functions: None, sql: str
) -> None:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        assert cur.fetchone()[0] == "stored md5"


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


# ------------------------------------------------------------------ hostile SQL


HOSTILE = [
    "/* SELECT */ DELETE FROM app.fault_rows",
    "SELECT 1; DELETE FROM app.fault_rows",
    "SELECT 1 /*! ; DELETE FROM app.fault_rows */",
    "SELECT /*!50000 1 FROM DUAL; UPDATE app.fault_rows SET v = 'x' */",
    "/*M! DELETE FROM app.fault_rows */",
    "/*+ SET_VAR(sql_mode='') */ INSERT INTO app.fault_rows VALUES (9, 'hint', 0)",
    "SELECT * FROM app.fault_rows WHERE v = '' --'\nUNION SELECT 1,2,3 FROM DUAL; DELETE FROM app.fault_rows",
    "  \n\t(SELECT 1) ; INSERT INTO app.fault_rows VALUES (10, 'x', 0)",
    "WITH x AS (SELECT 1) DELETE FROM app.fault_rows",
    "SELECT id FROM app.fault_rows INTO OUTFILE '/tmp/rwsplit-hostile'",
    "SELECT id INTO @x FROM app.fault_rows LIMIT 1",
    "SELECT GET_LOCK('rwsplit', 0)",
    "SELECT NEXTVAL(app.nosuchseq)",
    "SELECT app.nosuchfunc(1)",
    "select`id`from`app`.`fault_rows`for update",
    "SELECT 1 FROM DUAL LOCK IN SHARE MODE",
    "CREATE TEMPORARY TABLE tmp_hostile (id INT)",
    "SET @@session.sql_log_bin = 0",
    "DO RELEASE_LOCK('rwsplit')",
    "REPLACE INTO app.fault_rows VALUES (11, 'x', 0)",
    "SELECT 'x' /* unterminated",
    "SeLeCt 1 # comment\n; TRUNCATE app.fault_rows",
]


@pytest.mark.usefixtures("fault_table")
def test_hostile_sql_never_reaches_a_replica(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine, caught_up
) -> None:
    caught_up()
    before = {r: sandbox.replica_gtid(r) for r in (1, 2)}
    rows_before = {r: checksum(sandbox, f"replica{r}", TABLE) for r in (1, 2)}
    Session = rwsplit.sessionmaker(engine)
    for sql in HOSTILE:
        with Session(read_your_writes="off") as s:
            try:
                s.execute(sa.text(sql.replace(":", r"\:")))
            except sa.exc.DBAPIError as exc:
                assert exc.orig.args[0] != 1290, f"reached a read-only replica: {sql!r}"
            assert s.last_target == "primary", sql
            s.rollback()
    for r in (1, 2):
        # Nothing was applied on a replica but what replication brought from the primary.
        assert all(
            server == sandbox.server_id("primary")
            for server in parse_mariadb(sandbox.replica_gtid(r)).servers.values()
        )
        assert parse_mariadb(sandbox.replica_gtid(r)).covers(parse_mariadb(before[r]))
    caught_up()
    for r in (1, 2):
        assert checksum(sandbox, f"replica{r}", TABLE) == checksum(sandbox, "primary", TABLE)
    assert rows_before  # the replicas were compared before and after
