"""``rwsplit.scoped_session``: rwsplit's session methods reached through the registry."""

from __future__ import annotations

import pytest
import sqlalchemy.orm
from helpers import PRIMARY, REPLICAS, unique
from models import Item
from sqlalchemy import select, text

import rwsplit


def test_the_registry_proxies_rwsplit_methods(make_engine) -> None:
    eng = make_engine(read_your_writes="causal", causal_timeout=2.0)
    Session = rwsplit.scoped_session(rwsplit.sessionmaker(eng))
    try:
        Session.execute(text("SELECT 1"))
        assert Session.last_target in REPLICAS
        assert Session.routing_engine is eng
        with Session.use_primary() as s:
            assert s is Session()
            Session.execute(text("SELECT 1"))
            assert Session.last_target == PRIMARY
        name = unique()
        Session.add(Item(name=name))
        Session.commit()
        token = Session.consistency_token()
        Session.remove()
        Session.advance(token)  # a fresh session of the registry waits for that write
        assert Session.scalar(select(Item.name).where(Item.name == name)) == name
        assert Session.last_target in REPLICAS
    finally:
        Session.remove()


def test_a_bad_token_and_a_plain_factory_fail_clearly(engine) -> None:
    Session = rwsplit.scoped_session(rwsplit.sessionmaker(engine))
    with pytest.raises(ValueError):
        Session.advance("not-a-token")
    Session.remove()
    with pytest.raises(TypeError, match=r"rwsplit\.sessionmaker"):
        rwsplit.scoped_session(sqlalchemy.orm.sessionmaker(bind=engine.primary))  # type: ignore[type-var]
