"""README Explicit control: use_primary(), UsePrimary(), rwsplit_route='primary'/'write'."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from helpers import PRIMARY, REPLICAS, SERVER_ID
from models import Item, User
from sqlalchemy import select, text
from sqlalchemy.orm import selectinload

import rwsplit
from rwsplit.sandbox import Sandbox

MODES = ("session", "transaction", "off", "causal")


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
