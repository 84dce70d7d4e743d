"""Patterns real apps use (issue 11, B–D): commits, savepoints, connection state, ORM reloads, merge.

Each test runs against the real sandbox and observes where a statement ran (``last_target`` and
``@@GLOBAL.server_id``) or what it returned while the replicas were made stale on purpose.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import ForeignKey, String, select, text
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from waiting import wait_for

import rwsplit
from rwsplit.sandbox import Sandbox

PRIMARY = "primary"
REPLICAS = ("replica1", "replica2")
MODES = ("session", "transaction", "off", "causal")


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "test_ru_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    parts: Mapped[list[Part]] = relationship(cascade="all, delete-orphan", order_by="Part.id")


class Part(Base):
    __tablename__ = "test_ru_part"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("test_ru_item.id"))
    label: Mapped[str] = mapped_column(String(100))


def unique(prefix: str = "n") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def eligible(engine: rwsplit.RoutingEngine) -> set[str]:
    return {r.name for r in engine.status() if r.role == "replica" and r.eligible}


@pytest.fixture(scope="module")
def tables(sandbox: Sandbox) -> Iterator[None]:
    eng = sa.create_engine(sandbox.primary_url)
    try:
        Base.metadata.drop_all(eng)
        Base.metadata.create_all(eng)
        sandbox.wait_caught_up(timeout=15)
        yield
        Base.metadata.drop_all(eng)
    finally:
        eng.dispose()


@pytest.fixture()
def make_engine(sandbox: Sandbox, tables: None, caught_up) -> Iterator[Callable[..., rwsplit.RoutingEngine]]:
    """Engines with caught-up, eligible replicas (disposed at teardown)."""
    made: list[rwsplit.RoutingEngine] = []

    def make(*, wait: bool = True, **kw: object) -> rwsplit.RoutingEngine:
        kw.setdefault("monitor_interval", 0.1)
        e = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, **kw)
        made.append(e)
        if wait:
            caught_up()
            wait_for(lambda: set(REPLICAS) <= eligible(e), 15)
        return e

    yield make
    for e in made:
        e.dispose()


@pytest.fixture()
def server_of(sandbox: Sandbox) -> Callable[[object], str]:
    """Where an executor's next read runs, by ``@@GLOBAL.server_id`` (a replica-safe read)."""
    ids = {sandbox.server_id(name): name for name in sandbox.server_names}

    def run(executor: object) -> str:
        return ids[int(executor.execute(text("SELECT @@GLOBAL.server_id")).scalar_one())]  # type: ignore[attr-defined]

    return run


def _add_item(on_primary: Callable[..., object], name: str, *labels: str) -> int:
    on_primary("INSERT INTO test_ru_item (name) VALUES (%s)", name)
    item_id = int(on_primary("SELECT id FROM test_ru_item WHERE name = %s", name))  # type: ignore[arg-type]
    for label in labels:
        on_primary("INSERT INTO test_ru_part (item_id, label) VALUES (%s, %s)", item_id, label)
    return item_id


def _kill_app_connections(sandbox: Sandbox, which: str) -> int:
    """Kill every connection of the app user on one server (as wait_timeout or a restart would)."""
    killed = 0
    with sandbox.connect(which) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE user = 'app'")
        for (pid,) in cur.fetchall():
            cur.execute(f"KILL CONNECTION {int(pid)}")
            killed += 1
    return killed


# ------------------------------------------------------------------ B. a commit's outcome is true


@pytest.mark.parametrize("mode", MODES)
def test_commit_never_reaches_a_replica_connection(
    make_engine, sandbox: Sandbox, on_primary, mode: str
) -> None:
    """The replica the session read from dies before commit: the primary's commit stands, no error."""
    eng = make_engine(read_your_writes=mode)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        assert s.execute(select(Item.id).limit(1)).all() is not None
        read_on = s.last_target
        assert read_on in REPLICAS
        assert _kill_app_connections(sandbox, read_on) >= 1
        s.add(Item(name=name))
        s.commit()  # COMMIT on the dead replica connection would raise 2013/2006
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", name) == 1


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


# ------------------------------------------------------------------ C. savepoints and session state


@pytest.mark.parametrize("mode", MODES)
def test_get_or_create_in_a_savepoint(make_engine, on_primary, mode: str) -> None:
    eng = make_engine(read_your_writes=mode)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        s.execute(select(Item.id).limit(1)).all()  # a replica connection joins the session first
        for _ in range(2):
            with s.begin_nested():
                found = s.scalar(select(Item).where(Item.name == name))
                if found is None:
                    s.add(Item(name=name))
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", name) == 1


def test_releasing_a_savepoint_does_not_pin_a_causal_session(make_engine) -> None:
    eng = make_engine(read_your_writes="causal", causal_timeout=2.0)
    name, other = unique(), unique()
    with rwsplit.sessionmaker(eng)() as s:
        s.add(Item(name=name))
        s.flush()
        with s.begin_nested():
            s.add(Item(name=other))
        s.commit()
        assert s.scalar(select(Item.name).where(Item.name == other)) == other
        assert s.last_target in REPLICAS
        assert not s.rwsplit_state.session_pinned


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


def test_a_causal_transaction_without_a_write_does_not_pin(make_engine) -> None:
    eng = make_engine(read_your_writes="causal")
    with rwsplit.sessionmaker(eng)() as s:
        lock = unique("lock")
        assert s.scalar(text("SELECT GET_LOCK(:k, 0)"), {"k": lock}) == 1
        assert s.scalar(text("SELECT RELEASE_LOCK(:k)"), {"k": lock}) == 1
        s.execute(text("SET @ru_marker = 1"))
        s.commit()
        s.execute(select(Item.id).limit(1)).all()
        assert s.last_target in REPLICAS
        assert not s.rwsplit_state.session_pinned


# ------------------------------------------------------------------ D. read-your-writes holes


def test_a_write_through_session_connection_pins_the_session(make_engine, stale_replicas) -> None:
    eng = make_engine(max_lag=60, read_your_writes="session")
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        s.connection().exec_driver_sql("INSERT INTO test_ru_item (name) VALUES (%s)", (name,))
        s.commit()
        assert s.scalar(select(Item.name).where(Item.name == name)) == name
        assert s.last_target == PRIMARY
    with rwsplit.sessionmaker(eng)() as other:  # the replicas really are stale
        assert other.scalar(select(Item.name).where(Item.name == name)) is None
        assert other.last_target in REPLICAS


@pytest.mark.parametrize("mode", ["transaction", "off"])
def test_orm_reloads_after_non_orm_writes_read_the_primary(
    make_engine, stale_replicas, on_primary, mode: str
) -> None:
    eng = make_engine(max_lag=60, read_your_writes=mode)
    item_id = _add_item(on_primary, unique("v1"))
    with rwsplit.sessionmaker(eng, expire_on_commit=True)() as s:
        item = s.get(Item, item_id, execution_options={"rwsplit_route": "primary"})  # no ORM write
        assert item is not None
        renamed = unique("v2")
        s.execute(text("UPDATE test_ru_item SET name = :n WHERE id = :i"), {"n": renamed, "i": item_id})
        s.execute(sa.insert(Part.__table__).values(item_id=item_id, label="core"))
        s.execute(text("INSERT INTO test_ru_part (item_id, label) VALUES (:i, 'text')"), {"i": item_id})
        s.commit()
        assert item.name == renamed  # expired reload (on a replica: ObjectDeletedError)
        assert s.last_target == PRIMARY
        assert [p.label for p in item.parts] == ["core", "text"]  # lazy load
        assert s.last_target == PRIMARY
        s.commit()  # a new transaction, so the refresh can see a later commit (as in plain SQLAlchemy)
        on_primary("UPDATE test_ru_item SET name = %s WHERE id = %s", renamed + "x", item_id)
        s.refresh(item)
        assert item.name == renamed + "x"
        assert s.last_target == PRIMARY


def test_merge_decides_insert_or_update_on_the_primary(make_engine, stale_replicas, on_primary) -> None:
    eng = make_engine(max_lag=60, read_your_writes="off")
    item_id = _add_item(on_primary, unique("old"))
    new = unique("new")
    with rwsplit.sessionmaker(eng)() as s:
        assert s.scalar(select(Item.id).where(Item.id == item_id)) is None  # the replica is stale
        assert s.last_target in REPLICAS
        s.merge(Item(id=item_id, name=new))
        s.commit()  # a stale replica read would INSERT: IntegrityError 1062
    assert on_primary("SELECT name FROM test_ru_item WHERE id = %s", item_id) == new


def test_delete_cascade_loads_children_from_the_primary(make_engine, stale_replicas, on_primary) -> None:
    eng = make_engine(max_lag=60, read_your_writes="off")
    item_id = _add_item(on_primary, unique("parent"), "p1", "p2")
    with rwsplit.sessionmaker(eng)() as s:
        item = s.get(Item, item_id, execution_options={"rwsplit_route": "primary"})
        assert item is not None
        s.delete(item)  # cascade: the parts must come from the primary, or the FK refuses the delete
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_ru_part WHERE item_id = %s", item_id) == 0


def test_a_fallback_read_sees_the_latest_commits(make_engine, paused_replicas, on_primary) -> None:
    eng = make_engine(read_your_writes="off", wait=False)
    wait_for(lambda: not eligible(eng), 10)
    item_id = _add_item(on_primary, unique("a"))
    later = unique("b")
    with eng.connect() as conn, rwsplit.sessionmaker(eng)() as s:
        query = select(Item.name).where(Item.id == item_id)
        conn.scalar(query)
        s.scalar(query)
        assert (conn.last_target, s.last_target) == (PRIMARY, PRIMARY)
        on_primary("UPDATE test_ru_item SET name = %s WHERE id = %s", later, item_id)
        assert conn.scalar(query) == later  # a REPEATABLE READ snapshot would return the old name
        assert s.scalar(query) == later


# ------------------------------------------------------------------ found in review


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("savepoint", [False, True])
def test_the_replica_connection_dies_mid_transaction_and_the_commit_stands(
    make_engine, sandbox: Sandbox, on_primary, mode: str, savepoint: bool
) -> None:
    eng = make_engine(read_your_writes=mode)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        s.execute(select(Item.id).limit(1)).all()
        target = s.last_target
        assert target in REPLICAS
        with s.begin_nested() if savepoint else contextlib.nullcontext():
            s.execute(select(Item.id).limit(1)).all()
            assert _kill_app_connections(sandbox, target) >= 1
            s.execute(select(Item.id).limit(1)).all()  # fails on the dead connection, retried elsewhere
            s.add(Item(name=name))
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", name) == 1


@pytest.mark.parametrize("mode", ["session", "causal"])
def test_the_replica_connection_dies_in_a_savepoint_rolled_back(
    make_engine, sandbox: Sandbox, on_primary, mode: str
) -> None:
    eng = make_engine(read_your_writes=mode)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        savepoint = s.begin_nested()
        s.execute(select(Item.id).limit(1)).all()
        target = s.last_target
        assert target in REPLICAS
        assert _kill_app_connections(sandbox, target) >= 1
        s.execute(select(Item.id).limit(1)).all()
        savepoint.rollback()
        s.add(Item(name=name))
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", name) == 1


def test_work_after_commit_inside_a_begin_block_is_refused(make_engine, on_primary) -> None:
    eng = make_engine(read_your_writes="transaction")
    a, b = unique("a"), unique("b")
    with pytest.raises(InvalidRequestError, match="closed transaction"), eng.connect() as conn, conn.begin():
        conn.execute(sa.insert(Item).values(name=a))
        conn.commit()
        conn.execute(sa.insert(Item).values(name=b))  # would escape the block (and be rolled back)
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", a) == 1
    assert on_primary("SELECT COUNT(*) FROM test_ru_item WHERE name = %s", b) == 0


@pytest.fixture()
def writing_view(sandbox: Sandbox, tables: None) -> Iterator[None]:
    """A view whose definition calls a function that writes: invisible to any text classifier."""
    with sandbox.connect("primary") as conn, conn.cursor() as cur:
        cur.execute(f"USE {sandbox.database}")
        cur.execute(
            "CREATE OR REPLACE FUNCTION ru_log() RETURNS INT DETERMINISTIC MODIFIES SQL DATA "
            "BEGIN INSERT INTO test_ru_item (name) VALUES (CONCAT('v-', UUID())); RETURN 1; END"
        )
        cur.execute("CREATE OR REPLACE VIEW ru_v AS SELECT ru_log() AS x")
    sandbox.wait_caught_up(timeout=15)
    yield
    with sandbox.connect("primary") as conn, conn.cursor() as cur:
        cur.execute(f"USE {sandbox.database}")
        cur.execute("DROP VIEW IF EXISTS ru_v")
        cur.execute("DROP FUNCTION IF EXISTS ru_log")


@pytest.mark.parametrize("mode", MODES)
def test_a_declared_hidden_write_keeps_the_transaction_on_the_primary(
    make_engine, writing_view: None, mode: str
) -> None:
    eng = make_engine(read_your_writes=mode)
    count = select(sa.func.count()).select_from(Item).where(Item.name.like("v-%"))
    with rwsplit.sessionmaker(eng)() as s:
        before = s.scalar(count.execution_options(rwsplit_route="primary"))
        assert s.scalar(text("SELECT x FROM ru_v").execution_options(rwsplit_route="write")) == 1
        assert s.last_target == PRIMARY
        assert s.scalar(count) == before + 1  # the uncommitted row: same primary transaction
        assert s.last_target == PRIMARY
        s.rollback()
        with pytest.raises(ValueError, match="rwsplit_route must be 'primary' or 'write'"):
            s.scalar(count.execution_options(rwsplit_route="replica"))


def test_get_bind_without_a_statement_does_not_pin(make_engine) -> None:
    eng = make_engine(read_your_writes="session")
    with rwsplit.sessionmaker(eng)() as s:
        assert s.get_bind().dialect.name in ("mysql", "mariadb")
        s.commit()
        s.execute(select(Item.id).limit(1)).all()
        assert s.last_target in REPLICAS


def test_a_token_given_at_construction_outlives_close(make_engine, stale_replicas) -> None:
    eng = make_engine(max_lag=60, read_your_writes="off", causal_timeout=0.2)
    name = unique()
    with rwsplit.sessionmaker(eng, read_your_writes="causal")() as writer:
        writer.add(Item(name=name))
        writer.commit()
        token = writer.consistency_token()
    s = rwsplit.sessionmaker(eng)(after=token)
    query = select(Item.name).where(Item.name == name)
    assert s.scalar(query) == name
    s.close()
    assert s.scalar(query) == name  # the stale replicas cannot have it: the token still counts
    s.close()


def test_a_causal_commit_with_a_savepoint_open_records_its_position(make_engine) -> None:
    eng = make_engine(read_your_writes="causal", causal_timeout=2.0)
    name = unique()
    with rwsplit.sessionmaker(eng)() as s:
        s.begin_nested()
        s.add(Item(name=name))
        s.commit()
        assert s.rwsplit_state.position
        assert not s.rwsplit_state.session_pinned
        assert s.scalar(select(Item.name).where(Item.name == name)) == name
        assert s.last_target in REPLICAS


@pytest.mark.parametrize("mode", MODES)
def test_no_connection_stays_checked_out(make_engine, mode: str) -> None:
    eng = make_engine(read_your_writes=mode)
    with rwsplit.sessionmaker(eng)() as s:
        s.execute(select(Item.id).limit(1)).all()
        with s.begin_nested():
            s.add(Item(name=unique()))
            s.flush()
        s.commit()
        s.execute(select(Item.id).limit(1)).all()
    with eng.connect() as conn:
        conn.execute(select(Item.id).limit(1)).all()
        conn.execute(text("SET @x = 1"))
        conn.execute(select(Item.id).limit(1)).all()
    with eng.begin() as conn:
        conn.execute(sa.insert(Item).values(name=unique()))
    pools = [e.pool for e in eng._all_engines()]
    assert [p.checkedout() for p in pools] == [0] * len(pools)  # type: ignore[attr-defined]
