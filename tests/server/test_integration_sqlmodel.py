"""SQLModel: ``RoutingSQLModelSession.exec()`` routes, honours call-level options and fails over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from helpers import PRIMARY, REPLICAS, created_tables, unique
from sqlmodel import Field, SQLModel, select

import rwsplit
from rwsplit.integrations.sqlmodel import RoutingSQLModelSession
from rwsplit.sandbox import Sandbox


class Hero(SQLModel, table=True):
    __tablename__ = "test_sqlmodel_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)


@pytest.fixture(scope="module")
def heroes(sandbox: Sandbox) -> Iterator[None]:
    with created_tables(sandbox, SQLModel.metadata):
        yield


pytestmark = pytest.mark.usefixtures("heroes")


def test_exec_reads_replicas_writes_the_primary_and_honours_options(make_engine, on_primary) -> None:
    eng = make_engine(read_your_writes="off")
    name = unique()
    with RoutingSQLModelSession(eng) as s:  # SQLModel's usual Session(engine)
        assert s.exec(select(Hero)).all() == []
        assert s.last_target in REPLICAS
        s.exec(select(Hero), execution_options={"rwsplit_route": "primary"}).all()
        assert s.last_target == PRIMARY
        s.exec(select(Hero).execution_options(rwsplit_route="primary")).all()
        assert s.last_target == PRIMARY
        s.add(Hero(name=name))
        s.commit()
    assert on_primary("SELECT COUNT(*) FROM test_sqlmodel_hero WHERE name = %s", name) == 1
    with rwsplit.sessionmaker(eng, class_=RoutingSQLModelSession)() as s:
        s.exec(select(Hero.id)).all()
        assert s.last_target in REPLICAS


def test_exec_fails_over_from_a_killed_replica(sandbox: Sandbox, caught_up) -> None:
    # No probe between the kill and the read (monitor_interval=30): exec() itself must meet the dead
    # replica and retry elsewhere.
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, monitor_interval=30)
    try:
        with RoutingSQLModelSession(eng, read_your_writes="off") as s:
            assert s.exec(select(sa.literal(1))).one() == 1
            dead = s.last_target
            assert dead in REPLICAS
            sandbox.kill(dead)
            try:
                assert s.exec(select(sa.literal(2))).one() == 2
                assert s.last_target != dead
            finally:
                sandbox.start(dead)
    finally:
        eng.dispose()
    caught_up()


def test_without_a_routing_engine_it_says_what_to_pass(sandbox: Sandbox) -> None:
    plain = sa.create_engine(sandbox.primary_url)
    with pytest.raises(TypeError, match="RoutingEngine"):
        RoutingSQLModelSession(plain)
    plain.dispose()
