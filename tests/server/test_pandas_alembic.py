"""README pandas and Alembic: pandas reads through a RoutingConnection run on a replica, its writes and
DDL (``to_sql``) and Alembic migrations on the primary."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from helpers import PRIMARY, REPLICAS, SERVER_ID, unique
from models import Item
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connectable

import rwsplit
from rwsplit.sandbox import Sandbox

COLUMNS = "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"


@pytest.fixture()
def drop_later(sandbox: Sandbox) -> Iterator[Callable[..., str]]:
    """A table name (``unique(prefix)`` as an identifier, or ``exact``) to drop on the primary at teardown."""
    names: list[str] = []

    def name(prefix: str, *, exact: bool = False) -> str:
        names.append(prefix if exact else unique(prefix).replace("-", "_").lower())
        return names[-1]

    yield name
    with sandbox.connect("primary") as conn, conn.cursor() as cur:
        for name in names:
            cur.execute(f"DROP TABLE IF EXISTS `{sandbox.database}`.`{name}`")


def _columns(sandbox: Sandbox, server: str, table: str) -> int:
    with sandbox.connect(server) as conn, conn.cursor() as cur:
        cur.execute(COLUMNS, (sandbox.database, table))
        return int(cur.fetchone()[0])  # type: ignore[index]


def test_read_sql_of_a_string_a_select_and_a_text_runs_on_a_replica(eng, ids) -> None:
    with eng.connect() as conn:
        for query in (SERVER_ID, select(sa.literal_column("@@GLOBAL.server_id")), text(SERVER_ID)):
            frame = pd.read_sql(query, conn)
            assert ids[int(frame.iloc[0, 0])] in REPLICAS, query
            assert conn.last_target in REPLICAS
        assert not conn.in_transaction()


def test_read_sql_table_reads_a_replica(make_engine, stale_replicas, on_primary) -> None:
    eng = make_engine(max_lag=60)
    fresh = unique("pd")
    on_primary("INSERT INTO test_ru_item (name) VALUES (%s)", fresh)  # the stale replicas lack it
    with eng.connect() as conn:
        frame = pd.read_sql_table(Item.__tablename__, conn)
        assert conn.last_target in REPLICAS
        assert fresh not in set(frame["name"])
        assert list(frame.columns) == ["id", "name"]  # reflected (on the primary's catalog)


def test_read_sql_after_a_write_of_the_connection_reads_the_primary(make_engine, stale_replicas) -> None:
    eng = make_engine(max_lag=60)
    name = unique("pd")
    with eng.connect() as conn:
        conn.execute(insert(Item).values(name=name))
        frame = pd.read_sql(select(Item.name).where(Item.name == name), conn)
        assert list(frame["name"]) == [name]
        assert conn.last_target == PRIMARY
        conn.commit()


def test_to_sql_creates_and_fills_the_table_on_the_primary(
    eng, sandbox, caught_up, on_primary, drop_later
) -> None:
    table = drop_later("pd_out")
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    with eng.connect() as conn:
        assert df.to_sql(table, conn, index=False) == 3
        assert not conn.in_transaction()  # pandas' own begin() block committed
        assert df.to_sql(table, conn, index=False, if_exists="append") == 3
        back = pd.read_sql(f"SELECT a, b FROM {table} ORDER BY a", conn)  # the table is new: primary
        assert len(back) == 6
    assert on_primary(f"SELECT COUNT(*) FROM {table}") == 6
    caught_up()
    for replica in REPLICAS:
        assert _columns(sandbox, replica, table) == 2


def test_to_sql_replace_drops_and_recreates_on_the_primary(eng, on_primary, drop_later) -> None:
    table = drop_later("pd_rep")
    with eng.connect() as conn:
        pd.DataFrame({"a": [1, 2]}).to_sql(table, conn, index=False)
        pd.DataFrame({"c": [7]}).to_sql(table, conn, index=False, if_exists="replace")
    assert on_primary(f"SELECT c FROM {table}") == 7


ROUTED = r"pass a routed connection \(`with engine\.connect\(\) as conn: .*`\), or engine\.primary"


def test_pandas_given_the_engine_itself_is_told_to_pass_a_connection(eng, sandbox, drop_later) -> None:
    """pandas takes anything but an Engine/Connection for sqlite3 and asks it for a cursor: the
    RoutingEngine answers with a TypeError naming engine.connect() and engine.primary, before any SQL."""
    assert not isinstance(eng, Connectable)  # else pandas would run its statements on the engine itself
    table = drop_later("pd_eng")
    calls: list[Callable[[], object]] = [
        lambda: pd.read_sql(SERVER_ID, eng),
        lambda: pd.read_sql_query(SERVER_ID, eng),
        lambda: pd.read_sql_table(Item.__tablename__, eng),
        lambda: pd.DataFrame({"a": [1]}).to_sql(table, eng, index=False),
    ]
    for call in calls:
        with (
            pytest.warns(UserWarning, match="only supports SQLAlchemy connectable"),
            pytest.raises(TypeError, match=ROUTED),
        ):
            call()
    assert _columns(sandbox, "primary", table) == 0  # to_sql created nothing


@pytest.mark.parametrize("query", [select(sa.literal_column("@@GLOBAL.server_id")), text(SERVER_ID)])
def test_pandas_given_the_engine_and_a_select_raises_its_own_type_error(eng, query) -> None:
    """For a select()/text() pandas refuses before it touches the engine (README says so)."""
    with (
        pytest.warns(UserWarning, match="only supports SQLAlchemy connectable"),
        pytest.raises(TypeError, match="Query must be a string unless using sqlalchemy"),
    ):
        pd.read_sql(query, eng)


def test_pandas_given_engine_primary_runs_everything_on_the_primary(eng, ids, on_primary, drop_later) -> None:
    table = drop_later("pd_prim")
    for query in (SERVER_ID, select(sa.literal_column("@@GLOBAL.server_id")), text(SERVER_ID)):
        assert ids[int(pd.read_sql(query, eng.primary).iloc[0, 0])] == PRIMARY
    assert pd.DataFrame({"a": [1, 2]}).to_sql(table, eng.primary, index=False) == 2
    assert list(pd.read_sql_table(table, eng.primary)["a"]) == [1, 2]
    assert on_primary(f"SELECT COUNT(*) FROM {table}") == 2


def _migrate(conn: object, table: str) -> None:
    """A real migration: create a table, then add a column, through Alembic's Operations."""
    ctx = MigrationContext.configure(conn)  # type: ignore[arg-type]
    with ctx.begin_transaction():
        op = Operations(ctx)
        op.create_table(
            table, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50))
        )
        op.add_column(table, sa.Column("extra", sa.Integer))
        op.execute(sa.text(f"INSERT INTO {table} (name, extra) VALUES ('seed', 1)"))


@pytest.mark.parametrize("via", ["routing", "primary"])
def test_alembic_migration_runs_on_the_primary_and_replicates(
    eng: rwsplit.RoutingEngine, sandbox, caught_up, on_primary, drop_later, via: str
) -> None:
    table = drop_later(f"alembic_{via}")
    connect = eng.connect if via == "routing" else eng.primary.connect
    with connect() as conn:
        _migrate(conn, table)
        conn.commit()
    assert _columns(sandbox, "primary", table) == 3
    assert on_primary(f"SELECT extra FROM {table} WHERE name = 'seed'") == 1
    caught_up()
    for replica in REPLICAS:
        assert _columns(sandbox, replica, table) == 3


def test_alembic_reads_its_version_on_the_primary(
    make_engine, stale_replicas, on_primary, drop_later
) -> None:
    eng = make_engine(max_lag=60)
    drop_later("alembic_version", exact=True)
    on_primary("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    on_primary("INSERT INTO alembic_version VALUES ('rev1')")  # the stale replicas lack both
    with eng.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "rev1"


def test_the_readme_pandas_example_runs_as_written(eng, on_primary, drop_later) -> None:
    from test_readme import Base as ReadmeBase
    from test_readme import User as ReadmeUser
    from test_readme import code_block

    drop_later("test_readme_copy", exact=True)
    ReadmeBase.metadata.create_all(eng.primary)
    on_primary("INSERT INTO test_readme_user (name) VALUES ('Pandas')")
    scope: dict[str, object] = {"engine": eng, "User": ReadmeUser}
    exec(compile(code_block("pandas and Alembic"), "README.rst:pandas", "exec"), scope)
    assert on_primary("SELECT COUNT(*) FROM test_readme_copy") == len(scope["users"])  # type: ignore[arg-type]
    assert int(scope["count"].iloc[0, 0]) >= 1  # type: ignore[attr-defined]
    assert "Pandas" in set(scope["names"]["name"])  # type: ignore[index]


def test_read_sql_with_parameters_and_chunks_reads_a_replica(eng, caught_up, on_primary) -> None:
    names = [unique("chunk") for _ in range(3)]
    for name in names:
        on_primary("INSERT INTO test_ru_item (name) VALUES (%s)", name)
    caught_up()
    query = text("SELECT name FROM test_ru_item WHERE name IN :names ORDER BY name")
    query = query.bindparams(sa.bindparam("names", expanding=True))
    with eng.connect() as conn:
        frames = list(pd.read_sql(query, conn, params={"names": names}, chunksize=2))
        assert conn.last_target in REPLICAS
        assert [len(f) for f in frames] == [2, 1]
        assert list(pd.concat(frames)["name"]) == sorted(names)
        one = pd.read_sql("SELECT name FROM test_ru_item WHERE name = %(n)s", conn, params={"n": names[0]})
        assert list(one["name"]) == [names[0]] and conn.last_target in REPLICAS


ENV_PY = """
from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
"""

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "rev1"
down_revision = None


def upgrade():
    op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))
    op.add_column("{table}", sa.Column("extra", sa.Integer))
"""


def test_alembic_upgrade_through_env_py_commits_and_is_not_rerun(
    make_engine, stale_replicas, on_primary, drop_later, tmp_path
) -> None:
    from alembic import command
    from alembic.config import Config

    eng = make_engine(max_lag=60)
    drop_later("alembic_version", exact=True)
    table = drop_later("alembic_env")
    (tmp_path / "env.py").write_text(ENV_PY)
    (tmp_path / "script.py.mako").write_text("")
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "rev1.py").write_text(REVISION.format(table=table))
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    for _ in range(2):  # the second run reads the version the first wrote (the replicas lack it)
        with eng.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    assert on_primary("SELECT version_num FROM alembic_version") == "rev1"  # committed
    assert on_primary(COLUMNS, "app", table) == 2


def test_the_readme_alembic_env_py_runs_as_written(
    make_engine, stale_replicas, on_primary, drop_later, tmp_path
) -> None:
    """README's env.py block, verbatim, under what Alembic and the app give it (``context``,
    ``engine``, ``Base``): the upgrade runs and commits on the primary, and is not re-run."""
    from alembic import command
    from alembic.config import Config
    from test_readme import Base as ReadmeBase
    from test_readme import code_block

    eng = make_engine(max_lag=60)
    drop_later("alembic_version", exact=True)
    table = drop_later("alembic_readme")
    prelude = (
        "from alembic import context\n"
        "engine = context.config.attributes['engine']\n"
        "Base = context.config.attributes['Base']\n"
    )
    (tmp_path / "env.py").write_text(prelude + code_block("pandas and Alembic", after="``env.py``"))
    (tmp_path / "script.py.mako").write_text("")
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "rev1.py").write_text(REVISION.format(table=table))
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    config.attributes.update(engine=eng, Base=ReadmeBase)
    for _ in range(2):  # the second run reads the version the first wrote (the replicas lack it)
        command.upgrade(config, "head")
    assert on_primary("SELECT version_num FROM alembic_version") == "rev1"
    assert on_primary(COLUMNS, "app", table) == 2
