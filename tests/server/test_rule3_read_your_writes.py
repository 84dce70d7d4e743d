"""README rule 3: read-your-writes modes (session, transaction, off) and pin_window."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest
from helpers import PRIMARY, REPLICAS, unique
from models import Item, User
from sqlalchemy import insert, select
from sqlalchemy.orm import scoped_session

import rwsplit


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


# ------------------------------------------------------------------ pin_window


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
