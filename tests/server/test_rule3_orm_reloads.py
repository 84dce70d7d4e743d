"""README rule 3, every mode: ORM reloads, lazy loads, fetch-synchronize, merge and delete cascades read
the primary."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from helpers import PRIMARY, REPLICAS, unique, wait_eligible
from helpers import add_item as _add_item
from models import Address, Item, Part, User
from sqlalchemy import func, select, text, update

import rwsplit

MODES = ("session", "transaction", "off")


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


def test_reloads_of_a_pinned_session_carry_the_pin(make_engine, stale_replicas) -> None:
    """In a "session" session pinned by its write, refreshes, lazy and selectin loads all go to the
    primary under the pin's reason (kind "pinned"), with or without statement options."""
    e = make_engine(max_lag=60, read_your_writes="session")
    wait_eligible(e)
    events: list[rwsplit.RouteEvent] = []
    rwsplit.listen(e, "route", events.append)
    with rwsplit.sessionmaker(e)() as s:
        user = User(name=unique("p"), addresses=[Address(email="a@x")])
        s.add(user)
        s.commit()
        events.clear()
        s.refresh(user)
        assert [a.email for a in user.addresses] == ["a@x"]
        loaded = s.scalars(
            select(User)
            .where(User.id == user.id)
            .options(sa.orm.selectinload(User.addresses))
            .execution_options(populate_existing=True)
        ).all()
        assert [u.id for u in loaded] == [user.id]
    assert len(events) >= 3
    assert {(ev.target, ev.kind, ev.reason) for ev in events} == {
        (PRIMARY, "pinned", "read-your-writes: session wrote")
    }
