"""rwsplit.classify on SQLAlchemy constructs (ORM, Core, text, DDL, lambdas)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import (
    DDL,
    ForeignKey,
    Sequence,
    String,
    TypeDecorator,
    delete,
    func,
    insert,
    lambda_stmt,
    literal_column,
    select,
    text,
    union,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    column_property,
    mapped_column,
    relationship,
    selectinload,
)
from sqlalchemy.schema import CreateTable, DropTable
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from rwsplit.classifier import PRIMARY, REPLICA, Route, cache_clear, cache_info, classify


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    addresses: Mapped[list[Address]] = relationship(back_populates="user")


class Address(Base):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    email: Mapped[str] = mapped_column(String(100))
    user: Mapped[User] = relationship(back_populates="addresses")


class Product(Base):
    """An entity whose column_property calls a stored function at load time."""

    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    price: Mapped[int] = mapped_column()
    taxed = column_property(func.shop_tax(price))


class Note(Base):
    """An entity whose column_property only uses built-ins."""

    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(100))
    loud = column_property(func.upper(body))


class Decrypted(TypeDecorator[str]):
    """A type that wraps the column in a (stored) function when selected."""

    impl = String
    cache_ok = True

    def column_expression(self, col: Any) -> Any:
        return func.my_decrypt(col)


class Secret(Base):
    __tablename__ = "secrets"
    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[str] = mapped_column(Decrypted(100))


class Owner(Base):
    """An entity with a joined eager relationship (compiled to check)."""

    __tablename__ = "owners"
    id: Mapped[int] = mapped_column(primary_key=True)
    pets: Mapped[list[Pet]] = relationship(lazy="joined")


class Pet(Base):
    __tablename__ = "pets"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id"))


def _target(stmt: Any, **kw: Any) -> str:
    return classify(stmt, **kw).target


def test_orm_select_is_a_read() -> None:
    assert classify(select(User)) == Route(REPLICA, "read")
    assert _target(select(User).where(User.id == 5)) == REPLICA
    stmt = (
        select(User.name, func.count(Address.id), func.max(Address.email))
        .join(Address)
        .where(func.lower(User.name).like("a%"))
        .group_by(User.name)
        .order_by(func.coalesce(User.name, ""))
        .limit(10)
    )
    assert _target(stmt) == REPLICA
    assert _target(select(func.now(), func.current_timestamp(), func.random())) == REPLICA
    assert _target(select(func.aggregate_strings(User.name, ","))) == REPLICA
    assert _target(select(User).where(User.id.in_([1, 2, 3]))) == REPLICA


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "locking read: FOR UPDATE"),
        ({"read": True}, "locking read: FOR SHARE"),
        ({"nowait": True}, "FOR UPDATE NOWAIT"),
        ({"skip_locked": True}, "FOR UPDATE SKIP LOCKED"),
        ({"of": User, "skip_locked": True}, "FOR UPDATE OF SKIP LOCKED"),
        ({"read": True, "nowait": True}, "FOR SHARE NOWAIT"),
    ],
)
def test_with_for_update(kwargs: dict[str, Any], expected: str) -> None:
    route = classify(select(User).where(User.id == 1).with_for_update(**kwargs))
    assert route.target == PRIMARY
    assert expected in route.reason


def test_dml_constructs() -> None:
    assert classify(insert(User).values(name="x")) == Route(PRIMARY, "write: INSERT")
    assert classify(update(User).values(name="y")) == Route(PRIMARY, "write: UPDATE")
    assert classify(delete(User).where(User.id == 1)) == Route(PRIMARY, "write: DELETE")
    upsert = mysql.insert(User).values(id=1, name="x")
    assert _target(upsert.on_duplicate_key_update(name="x")) == PRIMARY
    assert _target(insert(Address).from_select(["email"], select(User.name))) == PRIMARY


def test_from_statement() -> None:
    returning = select(User).from_statement(insert(User).returning(User))
    assert classify(returning) == Route(PRIMARY, "write: INSERT")
    plain = select(User).from_statement(text("SELECT * FROM users"))
    assert _target(plain) == REPLICA
    locking = select(User).from_statement(text("SELECT * FROM users FOR UPDATE"))
    assert _target(locking) == PRIMARY


def test_compound_selects() -> None:
    assert _target(union(select(User.id), select(Address.user_id))) == REPLICA
    locked = union(select(User.id), select(Address.user_id).with_for_update())
    assert "FOR UPDATE" in classify(locked).reason
    assert _target(union(select(User.id), select(func.my_udf(1)))) == PRIMARY


def test_functions_in_constructs() -> None:
    route = classify(select(func.get_lock("x", 1)))
    assert route == Route(PRIMARY, "side-effecting function: GET_LOCK")
    assert "LAST_INSERT_ID" in classify(select(func.last_insert_id())).reason
    assert "CURRENT_USER" in classify(select(func.current_user())).reason
    udf = select(User.id).where(func.my_udf(User.id) > 0)
    assert "my_udf" in classify(udf).reason
    assert _target(udf, read_only_functions={"my_udf"}) == REPLICA
    assert _target(udf, read_only_functions={"MY_UDF"}) == REPLICA
    qualified = select(func.shop.price_of(1))
    assert classify(qualified).reason == "stored function: shop.price_of"
    assert _target(qualified, read_only_functions={"shop.price_of"}) == REPLICA
    sequence = classify(select(Sequence("s").next_value()))
    assert sequence.target == PRIMARY and "sequence" in sequence.reason


def test_function_element_executed_directly() -> None:
    assert _target(func.now()) == REPLICA
    assert _target(func.get_lock("x", 1)) == PRIMARY


def test_nested_constructs() -> None:
    sub = select(func.my_udf(Address.id)).scalar_subquery()
    assert _target(select(User).where(User.id == sub)) == PRIMARY
    locked_cte = select(User.id).with_for_update().cte("c")
    assert _target(select(locked_cte)) == PRIMARY
    exists = select(User).where(select(Address.id).where(Address.user_id == User.id).exists())
    assert _target(exists) == REPLICA


def test_text_constructs() -> None:
    assert classify(text("select 1")) == Route(REPLICA, "read")
    assert _target(text("delete from t")) == PRIMARY
    assert _target(text("SELECT * FROM users WHERE id = :id")) == REPLICA
    textual = text("SELECT id, name FROM users").columns(User.id, User.name)
    assert _target(textual) == REPLICA
    assert _target(text("SELECT id FROM users FOR UPDATE").columns(User.id)) == PRIMARY
    assert _target(select(User).from_statement(textual)) == REPLICA


def test_text_fragments_inside_selects() -> None:
    assert _target(select(literal_column("count(*)")).select_from(User)) == REPLICA
    assert _target(select(User).where(text("users.name = 'x'"))) == REPLICA
    assert _target(select(func.date_sub(func.now(), text("INTERVAL 1 DAY")))) == REPLICA
    assert "text fragment" in classify(select(User).where(text("users.id = @x"))).reason
    assert "literal column" in classify(select(literal_column("my_fn(1)"))).reason
    assert _target(select(User).where(text("1 = 1 FOR UPDATE"))) == PRIMARY


def test_prefixes_suffixes_and_hints() -> None:
    calc = select(User).prefix_with("SQL_CALC_FOUND_ROWS")
    assert "SQL_CALC_FOUND_ROWS" in classify(calc).reason
    assert _target(select(User).prefix_with("HIGH_PRIORITY")) == REPLICA
    assert _target(select(User).suffix_with("FOR UPDATE")) == PRIMARY
    assert _target(select(User).with_hint(User, "USE INDEX (ix_name)")) == REPLICA
    assert _target(select(User).with_statement_hint("/*+ MAX_EXECUTION_TIME(100) */")) == REPLICA


def test_compile_time_sql_is_checked() -> None:
    assert "shop_tax" in classify(select(Product)).reason
    assert _target(select(Product), read_only_functions={"shop_tax"}) == REPLICA
    assert _target(select(Note)) == REPLICA
    assert "my_decrypt" in classify(select(Secret)).reason
    assert "my_decrypt" in classify(select(Secret.value)).reason
    assert _target(select(Owner)) == REPLICA
    assert _target(select(User).options(selectinload(User.addresses))) == REPLICA
    assert _target(select(Note), dialect=mysql.dialect()) == REPLICA


def test_ddl_constructs() -> None:
    create = CreateTable(User.__table__)  # type: ignore[arg-type]
    assert classify(create) == Route(PRIMARY, "DDL: CreateTable")
    assert _target(DropTable(User.__table__)) == PRIMARY  # type: ignore[arg-type]
    assert _target(DDL("CREATE INDEX ix ON users (name)")) == PRIMARY


def test_query_and_lambda_statements() -> None:
    query = Session().query(User).filter(User.id == 1)
    assert _target(query.statement) == REPLICA
    assert _target(query) == REPLICA
    assert _target(query.with_for_update()) == PRIMARY
    assert _target(lambda_stmt(lambda: select(User))) == REPLICA
    assert _target(lambda_stmt(lambda: select(User).with_for_update())) == PRIMARY


def test_unknown_executable_goes_to_primary() -> None:
    class Custom(Executable, ClauseElement):
        inherit_cache = True

    route = classify(Custom())
    assert route.target == PRIMARY and "unsupported statement type" in route.reason


def test_construct_cache_uses_the_statement_cache_key() -> None:
    cache_clear()
    joined = select(User).join(User.addresses).where(User.id == 5)
    classify(joined)
    classify(joined)
    classify(select(User).join(User.addresses).where(User.id == 6))
    info = cache_info().constructs
    assert (info.misses, info.hits, info.currsize) == (1, 2, 1)
    classify(joined, read_only_functions={"x"})
    assert cache_info().constructs.currsize == 2


def test_constructs_go_through_the_cache_by_their_cache_key() -> None:
    cache_clear()
    classify(select(User).where(User.id == 5))
    classify(select(User).where(User.id == 6))  # same shape, another object: a hit
    classify(select(User).where(User.name == "x"))
    assert (cache_info().constructs.misses, cache_info().constructs.hits) == (2, 1)
    assert cache_info().constructs.currsize == 2


def test_bound_classifier_shares_the_cache_one_table_per_context(monkeypatch: pytest.MonkeyPatch) -> None:
    from rwsplit.classifier import constructs
    from rwsplit.classifier.api import bound_classifier

    cache_clear()
    plain, declared = bound_classifier(), bound_classifier({"f"})
    assert plain(select(User).where(User.id == 5)).target == REPLICA  # a miss, stored
    assert plain(select(User).where(User.id == 6)).target == REPLICA  # the same shape: a hit
    assert classify(select(User).where(User.id == 7)).target == REPLICA  # classify() shares the table
    uses_f = select(User).where(func.f(User.id) == 1)
    assert declared(uses_f).target == REPLICA and plain(uses_f).target == PRIMARY  # one table each
    info = cache_info().constructs
    assert (info.misses, info.hits, info.currsize) == (3, 2, 3)
    cache_clear()  # emptied in place: the bound classifiers keep working, and miss first
    assert cache_info().constructs.currsize == 0
    assert declared(uses_f).target == REPLICA and declared(uses_f).target == REPLICA
    assert (cache_info().constructs.misses, cache_info().constructs.hits) == (1, 1)
    # Bounded over all tables together: full, every table starts over.
    monkeypatch.setattr(constructs.shapes, "maxsize", 2)
    plain(select(User).where(User.name == "x"))
    plain(select(User).where(User.id > 1))
    assert cache_info().constructs.currsize == 1
    cache_clear()


def test_a_context_flood_leaves_no_route_cache_clear_cannot_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    from rwsplit.classifier import constructs
    from rwsplit.classifier.api import bound_classifier
    from rwsplit.classifier.vocabulary import context

    cache_clear()
    monkeypatch.setattr(constructs, "_MAX_TABLES", 2)
    shapes = constructs.shapes
    bound = bound_classifier()
    held = shapes.table(context(frozenset(), None), None)  # the table the bound classifier holds
    stmt = select(User).where(User.id == 1)
    assert bound(stmt).target == REPLICA and held
    classify(stmt, read_only_functions={"a"})
    classify(stmt, read_only_functions={"b"})  # a third context: every table dropped and emptied
    assert not held and all(table is not held for table in shapes.tables.values())
    # A walk that began before the flood stores its route after it, into the dropped table: undone.
    monkeypatch.setattr(shapes, "table", lambda ctx, dialect: held)
    shapes.put(context(frozenset(), None), None, stmt._generate_cache_key().key, Route(REPLICA, "late"))
    assert not held
    monkeypatch.undo()
    # The bound classifier takes the registered table at its next miss, and hits there after.
    hits = cache_info().constructs.hits
    assert bound(stmt).target == REPLICA and bound(stmt).target == REPLICA
    assert cache_info().constructs.hits == hits + 1
    cache_clear()


def test_bound_classifier_walks_a_statement_without_a_cache_key() -> None:
    from sqlalchemy.sql.functions import GenericFunction

    from rwsplit.classifier.api import bound_classifier

    class uncached_fn(GenericFunction[int]):  # noqa: N801 (SQL name); no inherit_cache: no cache key
        name = "uncached_fn"

    stmt = select(User.id).where(uncached_fn() == 1)
    with pytest.warns(Warning, match="inherit_cache"):
        assert stmt._generate_cache_key() is None
    cache_clear()
    route = bound_classifier()(stmt)
    assert route == classify(stmt) and route.target == PRIMARY  # an unknown function: a stored one
    assert cache_info().constructs.currsize == 0  # nothing to key it by: not cached


def test_custom_operators_are_checked() -> None:
    assert _target(select(User).where(User.name.op("REGEXP")("^a"))) == REPLICA
    evil = select(User).where(User.name.op("= 'x'; DELETE FROM users; --")("y"))
    assert "custom operator" in classify(evil).reason
