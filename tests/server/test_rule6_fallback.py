"""README rule 6: with no eligible replica, reads go to the primary (in AUTOCOMMIT) or raise
NoReplicaAvailable."""

from __future__ import annotations

import pytest
from helpers import PRIMARY, REPLICAS, SERVER_ID, eligible, unique, wait_ineligible
from helpers import add_item as _add_item
from models import Item, User
from sqlalchemy import select, text
from waiting import wait_for

import rwsplit
from rwsplit.sandbox import Sandbox


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
