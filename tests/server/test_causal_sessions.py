"""Causal reads in sessions: savepoints, transactions that wrote nothing, tokens given at construction."""

from __future__ import annotations

import pytest
from helpers import REPLICAS, unique, wait_on_its_own
from models import Item
from sqlalchemy import select, text

import rwsplit
import rwsplit.causal
import rwsplit.engine


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


def _two_commits_read_back(eng: rwsplit.RoutingEngine) -> tuple[int, int, str | None, str | None]:
    """Session ``b`` commits, then ``a``; ``a`` reads its row back, then ``b``: the causal waits after
    ``a``'s read and after both, and where each read went."""
    make = rwsplit.sessionmaker(eng)
    first, second = unique(), unique()
    with make() as b, make() as a:
        b.add(Item(name=first))
        b.commit()
        a.add(Item(name=second))
        a.commit()
        waits = eng.stats().causal_waits.count
        assert a.scalar(select(Item.name).where(Item.name == second)) == second
        after_a = eng.stats().causal_waits.count - waits
        assert b.scalar(select(Item.name).where(Item.name == first)) == first
        return after_a, eng.stats().causal_waits.count - waits, a.last_target, b.last_target


def test_a_wait_one_session_ran_spares_another_session_its_own(make_engine) -> None:
    """Session ``a`` waits for its commit on a replica; that wait also proves ``b``'s earlier commit
    there, so ``b`` reads that replica without a wait (no probe in between: a 60 s interval)."""
    eng = make_engine(read_your_writes="causal", causal_timeout=5.0, monitor_interval=60)
    after_a, after_both, a_read, b_read = _two_commits_read_back(eng)
    assert (after_a, after_both) == (1, 1)
    assert a_read in REPLICAS and b_read == a_read


@pytest.mark.parametrize("wait", ["with the read", "on its own"])
def test_a_wait_during_which_its_replica_was_probed_proves_nothing_for_others(
    make_engine, monkeypatch: pytest.MonkeyPatch, wait: str
) -> None:
    """A probe that lands while a wait runs replaces the view the wait's proof would refine: the
    proof is dropped, and the other session waits for itself."""
    eng = make_engine(read_your_writes="causal", causal_timeout=5.0, monitor_interval=60)
    module, name = (
        (rwsplit.causal, "_with_wait")
        if wait == "with the read"
        else (rwsplit.engine, "wait_and_read_applied")
    )
    if wait == "on its own":
        wait_on_its_own(monkeypatch)
    real = getattr(module, name)

    def probed_meanwhile(*args: object, **kw: object) -> object:
        answer = real(*args, **kw)
        for replica in REPLICAS:  # as a probe would: a new view of each replica, the same readings
            eng.monitor._publish(eng.monitor.snapshot().by_name[replica])
        return answer

    monkeypatch.setattr(module, name, probed_meanwhile)
    assert _two_commits_read_back(eng)[:2] == (1, 2)


@pytest.mark.parametrize("wait", ["with the read", "on its own"])
def test_a_sessions_own_wait_confirms_only_the_position_it_waited_for(
    make_engine, caught_up, monkeypatch: pytest.MonkeyPatch, wait: str
) -> None:
    """A session keeps only the position it waited for (its confirmations last as long as it does).
    A wait on its own also reads what the replica had applied besides: that is shared until the
    next probe. A wait sent with the read proves only its own position."""
    if wait == "on its own":
        wait_on_its_own(monkeypatch)
    eng = make_engine(read_your_writes="causal", causal_timeout=5.0, monitor_interval=60)
    make = rwsplit.sessionmaker(eng)
    mine, later = unique(), unique()
    with make() as a, make() as b:
        a.add(Item(name=mine))
        a.commit()
        b.add(Item(name=later))
        b.commit()
        caught_up()  # the replicas have b's commit too before a's wait
        assert a.scalar(select(Item.name).where(Item.name == mine)) == mine
        replica = a.last_target
        assert replica in REPLICAS
        assert a.rwsplit_state.confirmed_covers(replica, a.rwsplit_state.position)
        assert not a.rwsplit_state.confirmed_covers(replica, b.rwsplit_state.position)
        view = eng.monitor.snapshot().by_name[replica]
        assert eng.monitor.applied_covers(view, a.rwsplit_state.position)
        # shared until a probe, where the wait read it
        assert eng.monitor.applied_covers(view, b.rwsplit_state.position) is (wait == "on its own")
