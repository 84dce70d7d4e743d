"""Routing against the real sandbox: reads on replicas, writes on the primary, read-your-writes.

Every check observes where a statement ran (``session.last_target`` and, independently,
``SELECT @@GLOBAL.server_id``) or what it returned from a replica made stale on purpose
(``MASTER_DELAY`` or a paused SQL thread).
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy import ForeignKey, String, func, insert, select, text, update
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    joinedload,
    mapped_column,
    relationship,
    scoped_session,
    selectinload,
)

import rwsplit
from rwsplit.sandbox import Sandbox

PRIMARY = "primary"
REPLICAS = ("replica1", "replica2")
SERVER_ID = "SELECT @@GLOBAL.server_id"
MODES = ("session", "transaction", "off")
FAST = 0.1  # monitor_interval for every engine of this module


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "test_routing_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    addresses: Mapped[list[Address]] = relationship(
        back_populates="user", lazy="select", order_by="Address.id"
    )


class Address(Base):
    __tablename__ = "test_routing_address"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("test_routing_user.id"))
    email: Mapped[str] = mapped_column(String(100))
    user: Mapped[User] = relationship(back_populates="addresses")


# ------------------------------------------------------------------ helpers


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def eligible(engine: rwsplit.RoutingEngine) -> set[str]:
    return {r.name for r in engine.status() if r.role == "replica" and r.eligible}


def wait_eligible(
    engine: rwsplit.RoutingEngine, names: set[str] | None = None, timeout: float = 15.0
) -> None:
    want = set(REPLICAS) if names is None else names
    wait_for(lambda: want <= eligible(engine), timeout, f"{sorted(want)} eligible")


def wait_ineligible(engine: rwsplit.RoutingEngine, names: set[str], timeout: float = 15.0) -> None:
    wait_for(lambda: not (names & eligible(engine)), timeout, f"{sorted(names)} not eligible")


def unique(prefix: str = "n") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def ids(sandbox: Sandbox) -> dict[int, str]:
    """server_id → server name."""
    return {sandbox.server_id(name): name for name in sandbox.server_names}


@pytest.fixture()
def where(ids: dict[int, str]) -> Callable[[object], str]:
    """The server a session/connection reads from right now, by ``@@GLOBAL.server_id``."""

    def run(executor: object, **options: object) -> str:
        stmt = text(SERVER_ID).execution_options(**options) if options else text(SERVER_ID)
        return ids[int(executor.execute(stmt).scalar_one())]  # type: ignore[attr-defined]

    return run


@pytest.fixture(scope="module")
def engine(sandbox: Sandbox) -> Iterator[rwsplit.RoutingEngine]:
    """The module's default routing engine; it also creates and drops the tables."""
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, monitor_interval=FAST)
    try:
        Base.metadata.drop_all(eng.primary)
        Base.metadata.create_all(eng.primary)
        sandbox.wait_caught_up(timeout=15)
        yield eng
    finally:
        try:
            Base.metadata.drop_all(eng.primary)
        finally:
            eng.dispose()


@pytest.fixture()
def eng(engine: rwsplit.RoutingEngine, caught_up) -> rwsplit.RoutingEngine:
    """The default engine once both replicas are caught up and eligible."""
    caught_up()
    wait_eligible(engine)
    return engine


@pytest.fixture()
def make_engine(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine, caught_up
) -> Iterator[Callable[..., rwsplit.RoutingEngine]]:
    """Build engines with other settings (disposed at teardown); waits until both replicas are eligible."""
    made: list[rwsplit.RoutingEngine] = []

    def make(**kw: object) -> rwsplit.RoutingEngine:
        kw.setdefault("monitor_interval", FAST)
        e = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, **kw)
        made.append(e)
        caught_up()
        wait_eligible(e)
        return e

    yield make
    for e in made:
        e.dispose()


@pytest.fixture()
def add_user(engine: rwsplit.RoutingEngine, caught_up) -> Callable[..., int]:
    """Insert a user (and addresses) on the primary, wait until the replicas have it, return its id."""

    def add(name: str | None = None, emails: tuple[str, ...] = ()) -> int:
        with engine.primary.begin() as conn:
            uid = conn.execute(insert(User).values(name=name or unique())).inserted_primary_key[0]
            for email in emails:
                conn.execute(insert(Address).values(user_id=uid, email=email))
        caught_up()
        return int(uid)

    return add


# ------------------------------------------------------------------ 1. reads vs writes


def test_plain_reads_go_to_a_replica(eng, where, add_user) -> None:
    uid = add_user("reader")
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        assert s.execute(select(User.name).where(User.id == uid)).scalar_one() == "reader"
        assert s.last_target in REPLICAS
        assert where(s) in REPLICAS
        assert s.get(User, uid).name == "reader"
        assert s.last_target in REPLICAS


WRITES = {
    "orm_add_flush": lambda s, n: (s.add(User(name=n)), s.flush()),
    "orm_insert": lambda s, n: s.execute(insert(User).values(name=n)),
    "orm_insert_max_lag_option": lambda s, n: s.execute(
        insert(User).values(name=n).execution_options(rwsplit_max_lag=60)
    ),
    "orm_insert_max_lag_kwarg": lambda s, n: s.execute(
        insert(User).values(name=n), execution_options={"rwsplit_max_lag": 60}
    ),
    "text_insert": lambda s, n: s.execute(text("INSERT INTO test_routing_user (name) VALUES (:n)"), {"n": n}),
    "text_insert_lowercase": lambda s, n: s.execute(
        text("  insert into test_routing_user (name) values (:n)"), {"n": n}
    ),
    "text_insert_comment": lambda s, n: s.execute(
        text("/* hello */ INSERT INTO test_routing_user (name) VALUES (:n)"), {"n": n}
    ),
    "text_insert_max_lag": lambda s, n: s.execute(
        text("INSERT INTO test_routing_user (name) VALUES (:n)").execution_options(rwsplit_max_lag=60),
        {"n": n},
    ),
    "text_replace": lambda s, n: s.execute(
        text("REPLACE INTO test_routing_user (name) VALUES (:n)"), {"n": n}
    ),
}


@pytest.mark.parametrize("how", sorted(WRITES))
def test_inserts_go_to_the_primary(eng, on_primary, how: str) -> None:
    name = unique(how)
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        WRITES[how](s, name)  # on a replica this fails: read_only (1290)
        assert s.last_target == PRIMARY
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", name) == 1


@pytest.mark.parametrize("kind", ["orm_update", "orm_delete", "text_update", "text_delete", "orm_dirty"])
@pytest.mark.parametrize("max_lag_option", [False, True])
def test_updates_and_deletes_go_to_the_primary(
    eng, on_primary, add_user, kind: str, max_lag_option: bool
) -> None:
    uid = add_user("before")
    opts = {"rwsplit_max_lag": 60} if max_lag_option else {}
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        if kind == "orm_update":
            s.execute(update(User).where(User.id == uid).values(name="after"), execution_options=opts)
        elif kind == "orm_delete":
            s.execute(sa.delete(User).where(User.id == uid), execution_options=opts)
        elif kind == "text_update":
            s.execute(
                text("UPDATE test_routing_user SET name = 'after' WHERE id = :i").execution_options(**opts),
                {"i": uid},
            )
        elif kind == "text_delete":
            s.execute(
                text("DELETE FROM test_routing_user WHERE id = :i").execution_options(**opts), {"i": uid}
            )
        else:
            user = s.get(User, uid)
            assert s.last_target in REPLICAS
            user.name = "after"
            s.flush()
        assert s.last_target == PRIMARY
        s.commit()
    got = on_primary("SELECT name FROM test_routing_user WHERE id = %s", uid)
    assert got == (None if kind.endswith("delete") else "after")


def test_core_write_with_max_lag_option_goes_to_the_primary(eng, on_primary, where) -> None:
    name = unique("core")
    with eng.connect() as conn:
        conn.execute(insert(User).values(name=name).execution_options(rwsplit_max_lag=60))
        conn.execute(
            text("UPDATE test_routing_user SET name = :n2 WHERE name = :n"),
            {"n": name, "n2": name + "x"},
            execution_options={"rwsplit_max_lag": 60},
        )
        assert where(conn) == PRIMARY
        conn.commit()
    assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", name + "x") == 1


# ------------------------------------------------------------------ 2-4. read-your-writes modes


def test_session_mode_pins_the_session_until_close(eng, where) -> None:
    Session = rwsplit.sessionmaker(eng, read_your_writes="session")
    s = Session()
    try:
        assert where(s) in REPLICAS
        s.flush()  # nothing to flush: no pin
        s.commit()
        assert where(s) in REPLICAS
        s.add(User(name=unique("pin")))
        s.flush()
        assert s.last_target == PRIMARY
        assert where(s) == PRIMARY
        s.commit()
        for _ in range(3):
            assert where(s) == PRIMARY
            assert s.last_target == PRIMARY
            s.execute(select(User.id).limit(1)).all()
            assert s.last_target == PRIMARY
            s.commit()
        s.rollback()
        assert where(s) == PRIMARY
        s.close()
        assert where(s) in REPLICAS  # a closed session starts afresh
    finally:
        s.close()
    with Session() as fresh:
        assert where(fresh) in REPLICAS


def test_session_override_of_mode(eng, where) -> None:
    Session = rwsplit.sessionmaker(eng)
    with Session(read_your_writes="transaction") as s:
        s.add(User(name=unique()))
        s.commit()
        assert where(s) in REPLICAS
    with Session(read_your_writes="session") as s:
        s.add(User(name=unique()))
        s.commit()
        assert where(s) == PRIMARY


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_transaction_mode_pin_ends_with_the_transaction(eng, where, end: str) -> None:
    Session = rwsplit.sessionmaker(eng, read_your_writes="transaction")
    with Session() as s:
        assert where(s) in REPLICAS
        s.add(User(name=unique("tx")))
        s.flush()
        assert where(s) == PRIMARY
        s.execute(select(User.id).limit(1)).all()
        assert s.last_target == PRIMARY
        getattr(s, end)()
        assert where(s) in REPLICAS
        s.execute(select(User.id).limit(1)).all()
        assert s.last_target in REPLICAS


def test_off_mode_keeps_only_the_writing_transaction_on_the_primary(eng, where) -> None:
    Session = rwsplit.sessionmaker(eng, read_your_writes="off")
    with Session() as s:
        name = unique("off")
        s.execute(insert(User).values(name=name))
        assert s.last_target == PRIMARY
        # same transaction: must see its own uncommitted row, so the primary
        assert s.execute(select(User.id).where(User.name == name)).scalar_one_or_none() is not None
        assert s.last_target == PRIMARY
        assert where(s) == PRIMARY
        s.commit()
        assert where(s) in REPLICAS
        s.execute(select(User.id).limit(1)).all()
        assert s.last_target in REPLICAS


# ------------------------------------------------------------------ 5. read-your-writes on stale replicas


@pytest.fixture()
def stale_engine(make_engine, stale_replicas, request) -> rwsplit.RoutingEngine:
    e = make_engine(max_lag=60, read_your_writes=request.param)
    wait_eligible(e)
    return e


def _prove_stale(engine: rwsplit.RoutingEngine, uid: int, expected: str | None = None) -> None:
    """A fresh session reading a replica does not see ``uid``'s latest state: the test means something."""
    with rwsplit.sessionmaker(engine)() as other:
        got = other.execute(select(User.name).where(User.id == uid)).scalar_one_or_none()
        assert other.last_target in REPLICAS
        assert got != expected


@pytest.mark.parametrize("stale_engine", MODES, indirect=True)
def test_stale_replica_insert_commit_then_attribute_access(stale_engine) -> None:
    Session = rwsplit.sessionmaker(stale_engine, expire_on_commit=True)
    with Session() as s:
        user = User(name="fresh")
        s.add(user)
        s.commit()
        _prove_stale(stale_engine, sa.inspect(user).identity[0], "fresh")
        assert user.name == "fresh"  # expired by commit: reloaded (ObjectDeletedError if on a replica)
        assert s.last_target == PRIMARY


@pytest.mark.parametrize("stale_engine", MODES, indirect=True)
def test_stale_replica_update_commit_then_refresh(stale_engine) -> None:
    Session = rwsplit.sessionmaker(stale_engine)
    with Session() as s:
        user = User(name="v1")
        s.add(user)
        s.commit()
        uid = user.id
        user.name = "v2"
        s.commit()
        _prove_stale(stale_engine, uid, "v2")
        s.refresh(user)
        assert user.name == "v2"
        assert s.last_target == PRIMARY


@pytest.mark.parametrize("stale_engine", MODES, indirect=True)
def test_stale_replica_lazy_load_after_commit(stale_engine) -> None:
    Session = rwsplit.sessionmaker(stale_engine)
    with Session() as s:
        user = User(name="parent", addresses=[Address(email="a@x")])
        s.add(user)
        s.commit()
        assert [a.email for a in user.addresses] == ["a@x"]
        user.addresses.append(Address(email="b@x"))
        s.commit()
        uid = user.id
        assert [a.email for a in user.addresses] == ["a@x", "b@x"]
        assert s.last_target == PRIMARY
    with Session() as other:
        assert other.execute(select(func.count()).where(Address.user_id == uid)).scalar_one() == 0
        assert other.last_target in REPLICAS  # the replicas really are stale


@pytest.mark.parametrize("stale_engine", MODES, indirect=True)
def test_stale_replica_update_with_fetch_synchronizes_the_session(stale_engine) -> None:
    Session = rwsplit.sessionmaker(stale_engine)
    with Session() as s:
        user = User(name="old")
        s.add(user)
        s.commit()
        assert user.name == "old"  # loaded again after commit; now in the identity map, not expired
        _prove_stale(stale_engine, user.id, "old")
        s.execute(
            update(User)
            .where(User.id == user.id)
            .values(name="new")
            .execution_options(synchronize_session="fetch")
        )
        # the pre-fetch SELECT found the row (on the primary), so the object was updated in place
        assert "name" in user.__dict__
        assert user.__dict__["name"] == "new"
        s.commit()
        assert user.name == "new"


# ------------------------------------------------------------------ 6. locking reads


def test_locking_read_pins_the_transaction(eng, where, ids, add_user) -> None:
    uid = add_user("locked")
    Session = rwsplit.sessionmaker(eng, read_your_writes="off")
    with Session() as s:
        assert where(s) in REPLICAS
        row = s.execute(
            select(User.name, sa.literal_column("@@GLOBAL.server_id")).where(User.id == uid).with_for_update()
        ).one()
        assert s.last_target == PRIMARY
        assert row[0] == "locked"
        assert ids[int(row[1])] == PRIMARY
        assert where(s) == PRIMARY
        s.execute(select(User.id).limit(1)).all()
        assert s.last_target == PRIMARY
        s.commit()
        assert where(s) in REPLICAS
        s.execute(select(User.id).limit(1)).all()
        assert s.last_target in REPLICAS


# ------------------------------------------------------------------ 7. monotonic reads


def test_monotonic_reads_stay_on_one_replica_until_it_is_ineligible(eng, where, sandbox: Sandbox) -> None:
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        targets = set()
        servers = set()
        for i in range(20):
            assert eligible(eng) == set(REPLICAS)
            servers.add(where(s))
            targets.add(s.last_target)
            if i % 5 == 4:
                s.commit()  # across transactions too
        assert len(targets) == 1 and targets == servers
        first = targets.pop()
        assert first in REPLICAS
        other = next(r for r in REPLICAS if r != first)
        sandbox.pause_replica(first)
        try:
            wait_ineligible(eng, {first})
            assert other in eligible(eng)
            for _ in range(5):
                assert where(s) == other
                assert s.last_target == other
        finally:
            sandbox.resume_replica(first)


# ------------------------------------------------------------------ 8. explicit control


def test_use_primary_block_and_route_option(eng, where, ids, add_user) -> None:
    uid = add_user("explicit")
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        assert where(s) in REPLICAS
        with s.use_primary():
            assert where(s) == PRIMARY
            assert s.get(User, uid).name == "explicit"
            assert s.last_target == PRIMARY
        assert where(s) in REPLICAS
        got = s.execute(
            select(User.name).where(User.id == uid).execution_options(rwsplit_route="primary")
        ).scalar_one()
        assert got == "explicit"
        assert s.last_target == PRIMARY
        assert where(s, rwsplit_route="primary") == PRIMARY
        assert where(s) in REPLICAS  # the option applied to that statement only
        opts = {"rwsplit_route": "primary"}
        assert ids[s.scalar(text(SERVER_ID), execution_options=opts)] == PRIMARY
        assert s.last_target == PRIMARY
        assert s.scalars(select(User.name).where(User.id == uid), execution_options=opts).all() == [
            "explicit"
        ]
        assert s.last_target == PRIMARY
        assert ids[s.execute(text(SERVER_ID), execution_options=opts).scalar_one()] == PRIMARY
        assert where(s) in REPLICAS
        got = s.query(User.name).filter_by(id=uid).execution_options(rwsplit_route="primary").all()
        assert [g.name for g in got] == ["explicit"]
        assert s.last_target == PRIMARY
        assert where(s) in REPLICAS
    with eng.connect() as conn:
        assert where(conn) in REPLICAS
        assert where(conn, rwsplit_route="primary") == PRIMARY
        primary_id = conn.scalar(text(SERVER_ID), execution_options={"rwsplit_route": "primary"})
        assert ids[primary_id] == PRIMARY
        assert where(conn) in REPLICAS


def test_use_primary_option_reaches_lazy_loads(eng, where, add_user) -> None:
    uid = add_user("lazy", ("l1@x", "l2@x"))
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:  # control: without the option the lazy load reads a replica
        user = s.scalars(select(User).where(User.id == uid)).one()
        assert s.last_target in REPLICAS
        assert [a.email for a in user.addresses] == ["l1@x", "l2@x"]
        assert s.last_target in REPLICAS
    with Session() as s:
        user = s.scalars(select(User).where(User.id == uid).options(rwsplit.UsePrimary())).one()
        assert s.last_target == PRIMARY
        addresses = user.addresses  # lazy load, started by a UsePrimary statement
        assert s.last_target == PRIMARY
        assert [a.email for a in addresses] == ["l1@x", "l2@x"]
        assert where(s) in REPLICAS  # only that statement and its loads
    with Session() as s:
        assert s.get(User, uid, options=[rwsplit.UsePrimary()]).name == "lazy"
        assert s.last_target == PRIMARY
    with Session() as s:
        assert [u.id for u in s.query(User).filter_by(id=uid).options(rwsplit.UsePrimary())] == [uid]
        assert s.last_target == PRIMARY
    with Session() as s:
        stmt = select(User).where(User.id == uid).options(rwsplit.UsePrimary(), selectinload(User.addresses))
        user = s.scalars(stmt).one()
        assert s.last_target == PRIMARY  # the selectin load ran last
        assert [a.email for a in user.__dict__["addresses"]] == ["l1@x", "l2@x"]


def test_max_lag_option_allows_a_staler_replica(eng, where, sandbox: Sandbox, add_user) -> None:
    Session = rwsplit.sessionmaker(eng)  # engine max_lag = 1.0
    sandbox.delay_replica(1, 30)
    sandbox.pause_replica(2)
    try:
        wait_for(
            lambda: {r.name: r for r in eng.status()}["replica1"].replicating, 10, "replica1 replicating"
        )
        with eng.primary.begin() as conn:
            uid = conn.execute(insert(User).values(name="late")).inserted_primary_key[0]
        wait_for(
            lambda: ({r.name: r for r in eng.status()}["replica1"].lag or 0) > 1.5,
            10,
            "replica1 lag > 1.5 s",
        )
        assert eligible(eng) == set()
        with Session() as s:
            assert where(s) == PRIMARY  # fallback: nothing within 1 s
            stmt = select(User.name).where(User.id == uid)
            assert s.execute(stmt).scalar_one_or_none() == "late"
            assert s.last_target == PRIMARY
            assert s.execute(stmt.execution_options(rwsplit_max_lag=60)).scalar_one_or_none() is None
            assert s.last_target == "replica1"  # stale (delayed), allowed by the looser bound
            assert where(s, rwsplit_max_lag=60) == "replica1"
            loose = {"rwsplit_max_lag": 60}
            assert s.scalars(select(User.name).where(User.id == uid), execution_options=loose).all() == []
            assert s.last_target == "replica1"
            assert where(s) == PRIMARY  # the looser bound was for those statements only
        with Session(max_lag=60) as s:
            assert where(s) == "replica1"
        with eng.connect() as conn:
            assert where(conn) == PRIMARY
            assert where(conn, rwsplit_max_lag=60) == "replica1"
            assert conn.scalar(select(User.name).where(User.id == uid), execution_options=loose) is None
    finally:
        sandbox.delay_replica(1, 0)
        sandbox.resume_replica(2)
        sandbox.wait_caught_up(timeout=15)


# ------------------------------------------------------------------ 9. fallback


def test_fallback_when_no_replica_is_eligible(eng, make_engine, where, sandbox: Sandbox) -> None:
    strict = make_engine(fallback="error")
    sandbox.pause_replica(1)
    sandbox.pause_replica(2)
    try:
        wait_ineligible(eng, set(REPLICAS))
        wait_ineligible(strict, set(REPLICAS))
        with rwsplit.sessionmaker(eng)() as s:
            assert where(s) == PRIMARY
            s.execute(select(User.id).limit(1)).all()
            assert s.last_target == PRIMARY
        with eng.connect() as conn:
            assert where(conn) == PRIMARY
        with rwsplit.sessionmaker(strict)() as s:
            with pytest.raises(rwsplit.NoReplicaAvailable):
                s.execute(select(User.id).limit(1)).all()
            s.rollback()
            with pytest.raises(rwsplit.NoReplicaAvailable):
                s.execute(text(SERVER_ID)).all()
            s.rollback()
            with s.use_primary():
                assert where(s) == PRIMARY
            s.add(User(name=unique("strict")))
            s.commit()  # writes still work
            assert where(s) == PRIMARY  # session pinned by its write: no replica needed
        with strict.connect() as conn, pytest.raises(rwsplit.NoReplicaAvailable):
            conn.execute(text(SERVER_ID))
    finally:
        sandbox.resume_replica(1)
        sandbox.resume_replica(2)
        sandbox.wait_caught_up(timeout=15)


# ------------------------------------------------------------------ 10. Core connections


@pytest.mark.parametrize("mode", MODES)
def test_core_connection_routing(make_engine, where, ids, on_primary, caught_up, mode: str) -> None:
    e = make_engine(read_your_writes=mode)
    name = unique("core")
    count = "SELECT COUNT(*) FROM test_routing_user WHERE name = %s"
    with e.connect() as conn:
        assert where(conn) in REPLICAS
        assert ids[conn.exec_driver_sql(SERVER_ID).scalar()] in REPLICAS
        conn.execute(insert(User).values(name=name))
        assert conn.in_transaction()
        assert where(conn) == PRIMARY
        assert conn.scalar(select(func.count()).where(User.name == name)) == 1  # own uncommitted row
        assert on_primary(count, name) == 0  # …which really is uncommitted
        conn.commit()
        assert on_primary(count, name) == 1
        if mode == "session":
            assert where(conn) == PRIMARY
        else:
            assert where(conn) in REPLICAS

    with e.connect() as conn:
        assert conn.execute(select(User.id).where(User.name == name).with_for_update()).all()
        assert where(conn) == PRIMARY  # a locking read pins the transaction
        conn.commit()
        with conn.begin():
            conn.execute(insert(User).values(name=name + "-b"))
        assert on_primary(count, name + "-b") == 1

        conn.execute(insert(User).values(name=name + "-r"))
        conn.rollback()
        assert on_primary(count, name + "-r") == 0
        assert conn.scalar(select(func.count()).where(User.name == name + "-r")) == 0

        with pytest.raises(ZeroDivisionError), conn.begin():
            conn.execute(insert(User).values(name=name + "-e"))
            raise ZeroDivisionError
        assert on_primary(count, name + "-e") == 0

        caught_up()  # after commit, "transaction" and "off" may read a replica
        names = conn.scalars(select(User.name).where(User.name.like(name + "%")).order_by(User.name)).all()
        assert names == [name, name + "-b"]

    with e.connect() as conn:
        conn.execute(insert(User).values(name=name + "-c"))
    assert on_primary(count, name + "-c") == 0  # close rolled back


# ------------------------------------------------------------------ 11. other APIs


def test_legacy_query_get_and_eager_loading_read_replicas(eng, add_user) -> None:
    name = unique("api")
    uid = add_user(name, ("e1@x", "e2@x"))
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        users = s.query(User).filter_by(name=name).all()
        assert [u.id for u in users] == [uid]
        assert s.last_target in REPLICAS
    with Session() as s:
        assert s.get(User, uid).name == name
        assert s.last_target in REPLICAS
    with Session() as s:
        user = s.scalars(select(User).where(User.id == uid).options(selectinload(User.addresses))).one()
        assert s.last_target in REPLICAS
        assert "addresses" in user.__dict__
        assert [a.email for a in user.addresses] == ["e1@x", "e2@x"]
    with Session() as s:
        user = (
            s.scalars(select(User).where(User.id == uid).options(joinedload(User.addresses))).unique().one()
        )
        assert s.last_target in REPLICAS
        assert [a.email for a in user.__dict__["addresses"]] == ["e1@x", "e2@x"]


def test_bulk_writes_go_to_the_primary(eng, on_primary) -> None:
    a, b, c, d = (unique("bulk") for _ in range(4))
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        s.execute(insert(User), [{"name": a}, {"name": b}])
        assert s.last_target == PRIMARY
        s.commit()
    with Session() as s:
        s.bulk_save_objects([User(name=c), User(name=d)])
        assert s.last_target == PRIMARY
        s.commit()
    for n in (a, b, c, d):
        assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", n) == 1


def test_session_connection_is_the_primary(eng, on_primary) -> None:
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        conn = s.connection()
        assert conn.exec_driver_sql(SERVER_ID).scalar() == 1
        name = unique("conn")
        conn.execute(insert(User).values(name=name))
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", name) == 1


def test_scoped_session(eng, where, add_user) -> None:
    uid = add_user("scoped")
    scoped = scoped_session(rwsplit.sessionmaker(eng))
    try:
        assert scoped.execute(select(User.name).where(User.id == uid)).scalar_one() == "scoped"
        assert scoped().last_target in REPLICAS
        assert isinstance(scoped(), rwsplit.RoutingSession)
        scoped.add(User(name=unique("scoped")))
        scoped.commit()
        assert scoped().last_target == PRIMARY
        assert where(scoped) == PRIMARY  # session mode: pinned after its write
        scoped.remove()
        assert where(scoped) in REPLICAS
    finally:
        scoped.remove()


# ------------------------------------------------------------------ 12. pin_window


def test_pin_window_pins_this_context_not_other_threads(make_engine, where) -> None:
    e = make_engine(pin_window=2.0, read_your_writes="transaction")
    Session = rwsplit.sessionmaker(e)

    def body() -> None:
        with Session() as writer:
            assert where(writer) in REPLICAS
            writer.add(User(name=unique("pin")))
            writer.commit()
        assert rwsplit.pinned_until() > time.time() + 1
        with Session() as reader:
            assert where(reader) == PRIMARY
            reader.execute(select(User.id).limit(1)).all()
            assert reader.last_target == PRIMARY
        result: dict[str, object] = {}

        def other_thread() -> None:
            try:
                with Session() as s:
                    result["server"] = where(s)
                    result["target"] = s.last_target
            except BaseException as exc:  # reported in the main thread
                result["error"] = exc

        t = threading.Thread(target=other_thread)
        t.start()
        t.join(30)
        assert "error" not in result, result.get("error")
        assert result["server"] in REPLICAS
        assert result["target"] in REPLICAS

    contextvars.Context().run(body)  # a fresh context: the pin does not leak into other tests


def test_pin_window_counts_from_the_commit(make_engine, where) -> None:
    """The window covers replication lag, which starts when the write commits, not when it was flushed."""
    e = make_engine(pin_window=1.0, read_your_writes="transaction")
    Session = rwsplit.sessionmaker(e)

    def body() -> None:
        with Session() as writer:
            writer.add(User(name=unique("slowtx")))
            writer.flush()
            time.sleep(1.3)  # a transaction longer than the window
            writer.commit()  # only now can replication start
        with Session() as reader:
            assert where(reader) == PRIMARY, "pin_window expired before the write was even committed"

    contextvars.Context().run(body)


# ------------------------------------------------------------------ 13. read snapshot


def test_read_snapshot_is_consistent(eng, sandbox: Sandbox, ids, caught_up) -> None:
    early, late = unique("snap"), unique("snap")

    def insert_on_primary(name: str) -> None:
        with sandbox.connect("primary") as admin, admin.cursor() as cur:
            cur.execute(f"INSERT INTO {sandbox.database}.test_routing_user (name) VALUES (%s)", (name,))
        caught_up()

    def count(conn: object, name: str) -> int:
        return conn.scalar(select(func.count()).where(User.name == name))  # type: ignore[attr-defined]

    with eng.read_snapshot() as conn:
        insert_on_primary(early)  # after the snapshot started, before its first read
        assert count(conn, early) == 0
        assert ids[int(conn.exec_driver_sql(SERVER_ID).scalar())] in REPLICAS
        insert_on_primary(late)
        assert count(conn, late) == 0  # the replica has it, the snapshot does not
        with sa.orm.Session(bind=conn) as orm:
            assert orm.scalars(select(User).where(User.name.in_([early, late]))).all() == []
    with rwsplit.sessionmaker(eng)() as s:
        assert s.execute(select(func.count()).where(User.name.in_([early, late]))).scalar_one() == 2
        assert s.last_target in REPLICAS
    with eng.connect() as conn:
        assert count(conn, early) == 1 and count(conn, late) == 1


# ------------------------------------------------------------------ 14. bad input

PW = "s3cr3t-PW"


def _bad_cases() -> dict[str, tuple[dict[str, object], type[Exception] | tuple, tuple[str, ...]]]:
    p = f"mysql+pymysql://app:{PW}@127.0.0.1:1/app"
    r1 = f"mysql+pymysql://app:{PW}@127.0.0.1:2/app"
    r2 = f"mysql+pymysql://app:{PW}@127.0.0.1:3/app"
    both = (ValueError, TypeError)
    return {
        "invalid_url": (
            {"url": f"mysql+pymysql//app:{PW}@127.0.0.1/app", "replicas": [r1]},
            both,
            ("mysql",),
        ),
        "invalid_url_no_scheme": ({"url": f"app:{PW}@127.0.0.1/app", "replicas": [r1]}, both, ("mysql",)),
        "invalid_port": (
            {"url": f"mysql+pymysql://app:{PW}@127.0.0.1:33o6/app", "replicas": [r1]},
            both,
            ("mysql",),
        ),
        "invalid_replica_port": (
            {"url": p, "replicas": [f"mysql+pymysql://app:{PW}@127.0.0.1:x2/app"]},
            both,
            ("mysql",),
        ),
        "invalid_replica_url": ({"url": p, "replicas": [f"::{PW}::"]}, both, ("mysql",)),
        "postgresql_primary": (
            {"url": f"postgresql://app:{PW}@127.0.0.1/app", "replicas": [r1]},
            both,
            ("mysql",),
        ),
        "postgresql_replica": ({"url": p, "replicas": [f"postgresql://app:{PW}@h/app"]}, both, ("mysql",)),
        "sqlite_primary": ({"url": "sqlite://", "replicas": [r1]}, both, ("mysql",)),
        "bare_string_replicas": ({"url": p, "replicas": r1}, TypeError, ("list",)),
        "duplicate_replicas": ({"url": p, "replicas": [r1, r2, r1]}, both, ("replica",)),
        "duplicate_replicas_spelling": (
            {"url": p, "replicas": [r1, f"mysql+pymysql://other:{PW}@127.0.0.1:2/otherdb"]},
            both,
            ("replica",),
        ),
        "replica_is_primary": ({"url": p, "replicas": [r1, p]}, both, ("primary",)),
        "replica_is_primary_default_port": (
            {
                "url": f"mysql+pymysql://app:{PW}@DB1.example/app",
                "replicas": [f"mysql+pymysql://app:{PW}@db1.example:3306/app"],
            },
            both,
            ("primary",),
        ),
        "negative_max_lag": ({"url": p, "replicas": [r1], "max_lag": -1}, both, ("max_lag",)),
        "nan_max_lag": ({"url": p, "replicas": [r1], "max_lag": float("nan")}, both, ("max_lag",)),
        "string_max_lag": ({"url": p, "replicas": [r1], "max_lag": "1"}, both, ("max_lag",)),
        "unknown_read_your_writes": (
            {"url": p, "replicas": [r1], "read_your_writes": "always"},
            both,
            ("session", "transaction", "off"),
        ),
        "unknown_fallback": ({"url": p, "replicas": [r1], "fallback": "replica"}, both, ("primary", "error")),
        "unknown_balancer": (
            {"url": p, "replicas": [r1], "balancer": "fastest"},
            both,
            ("least_outstanding", "round_robin", "random", "weighted"),
        ),
        "weights_unknown_replica": (
            {"url": p, "replicas": [r1, r2], "weights": {"replica1": 1, "replica3": 2}},
            both,
            ("replica3", "replica1", "replica2"),
        ),
        "weights_keyed_by_url": (
            {"url": p, "replicas": [r1, r2], "weights": {r1: 3, r2: 1}},
            both,
            ("replica1", "replica2"),
        ),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_construction_arguments(case: str) -> None:
    kwargs, exc_type, words = BAD[case]
    kwargs = dict(kwargs)
    url = kwargs.pop("url")
    started = time.monotonic()
    with pytest.raises(exc_type) as err:
        rwsplit.create_engine(url, **kwargs)
    assert time.monotonic() - started < 1.0  # rejected up front, not after trying to connect
    message = str(err.value)
    for word in words:
        assert word in message, (word, message)
    assert PW not in message
    assert PW not in repr(err.value)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_lag": -1}, ("max_lag",)),
        ({"max_lag": "fast"}, ("max_lag",)),
        ({"read_your_writes": "x"}, ("session", "transaction", "off")),
    ],
)
def test_bad_session_arguments(engine, sandbox: Sandbox, kwargs: dict, words: tuple[str, ...]) -> None:
    password = sa.make_url(sandbox.primary_url).password
    Session = rwsplit.sessionmaker(engine)
    with pytest.raises((ValueError, TypeError)) as err:
        Session(**kwargs)
    for word in words:
        assert word in str(err.value)
    assert password not in str(err.value)
    with pytest.raises((ValueError, TypeError)):
        engine.connect(**kwargs)


# ------------------------------------------------------------------ 15. no password leaks


def test_no_password_in_repr_status_or_logs(sandbox: Sandbox, caplog, where) -> None:
    password = sa.make_url(sandbox.primary_url).password
    assert password and len(password) >= 8
    caplog.set_level(logging.DEBUG, logger="rwsplit")
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    e = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, monitor_interval=FAST)
    try:
        sandbox.wait_caught_up(timeout=15)
        wait_eligible(e)
        Session = rwsplit.sessionmaker(e)
        with Session() as s:
            s.execute(select(User.id).limit(1)).all()
            s.add(User(name=unique("leak")))
            s.commit()
            assert where(s) == PRIMARY
            with pytest.raises(sa.exc.ProgrammingError):
                s.execute(text("SELECT nope FROM no_such_table"))
        with e.connect() as conn:
            conn.execute(select(User.id).limit(1)).all()
        texts = [repr(e), str(e), repr(e.status())]
        for row in e.status():
            texts.extend(str(v) for v in dataclasses.asdict(row).values())
            assert "***" in row.url or "@" not in row.url
        time.sleep(3 * FAST)  # a few monitor rounds at DEBUG
    finally:
        e.dispose()
    records = [r.getMessage() for r in caplog.records]
    assert any(r.name.startswith("sqlalchemy") for r in caplog.records)  # logging really was on
    for item in [*texts, *records, caplog.text]:
        assert password not in item


# ------------------------------------------------------------------ 16. threads


def test_many_threads_share_one_engine(make_engine) -> None:
    e = make_engine(pool_size=32, max_overflow=16)
    Session = rwsplit.sessionmaker(e)
    targets: list[str | None] = []
    lock = threading.Lock()

    def work(tid: int) -> int:
        seen: list[str | None] = []
        checks = 0
        for i in range(20):
            value = f"thread-{tid}-{i}-{uuid.uuid4().hex[:8]}"
            with Session() as s:
                user = User(name=value)
                s.add(user)
                s.commit()
                pk = user.id
                seen.append(s.last_target)
                got = s.execute(select(User.name).where(User.id == pk)).scalar_one_or_none()
                assert got == value, (tid, i, got, s.last_target)
                seen.append(s.last_target)
                checks += 1
            with Session() as s:
                s.execute(select(func.count()).select_from(User)).scalar_one()
                seen.append(s.last_target)
        with lock:
            targets.extend(seen)
        return checks

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(work, range(32)))
    assert results == [20] * 32
    assert PRIMARY in targets
    assert set(targets) & set(REPLICAS)
    assert set(targets) <= {PRIMARY, *REPLICAS}


# ------------------------------------------------------------------ 17. URL forms


def test_accepts_url_objects_and_parse_url_list(sandbox: Sandbox, eng, where, on_primary) -> None:
    joined = ", ".join(sandbox.replica_urls)
    assert rwsplit.parse_url_list(joined) == sandbox.replica_urls
    assert rwsplit.parse_url_list(" ".join(sandbox.replica_urls)) == sandbox.replica_urls
    assert rwsplit.parse_url_list(",".join(sandbox.replica_urls) + ",") == sandbox.replica_urls
    engines = [
        rwsplit.create_engine(
            sa.make_url(sandbox.primary_url),
            replicas=[sa.make_url(u) for u in sandbox.replica_urls],
            monitor_interval=FAST,
        ),
        rwsplit.create_engine(
            sandbox.primary_url, replicas=rwsplit.parse_url_list(joined), monitor_interval=FAST
        ),
    ]
    try:
        for e in engines:
            assert len(e.replicas) == 2
            wait_eligible(e)
            with rwsplit.sessionmaker(e)() as s:
                assert where(s) in REPLICAS
                name = unique("url")
                s.add(User(name=name))
                s.commit()
                assert where(s) == PRIMARY
            assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", name) == 1
    finally:
        for e in engines:
            e.dispose()
