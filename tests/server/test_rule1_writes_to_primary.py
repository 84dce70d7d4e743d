"""README Routing rules, rule 1: writes (ORM, Core, text) go to the primary; plain reads go to a replica."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from helpers import PRIMARY, REPLICAS, unique
from models import User
from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import joinedload, selectinload

import rwsplit


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
