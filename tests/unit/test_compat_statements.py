"""rwsplit.compat, section "statements (classification)": every private SQLAlchemy attribute the
classifier reads still exists on the installed SQLAlchemy, and its absence routes to the primary."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    func,
    inspect,
    lambda_stmt,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, defer, mapped_column
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import Select
from sqlalchemy.types import TypeDecorator

from rwsplit import compat
from rwsplit.classifier import PRIMARY, REPLICA, cache_clear, classify

_metadata = MetaData()
_table = Table("compat_t", _metadata, Column("id", Integer, primary_key=True), Column("name", String(50)))
_other = Table("compat_u", _metadata, Column("id", Integer, primary_key=True))


class _Base(DeclarativeBase):
    pass


class _Item(_Base):
    __tablename__ = "compat_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class _Upper(TypeDecorator[str]):
    """A type that wraps its column in SQL when compiled."""

    impl = String
    cache_ok = True

    def column_expression(self, column: Any) -> Any:
        return column


def _without(obj: Any, name: str) -> Any:
    """``obj`` re-classed so that reading ``name`` fails, as if SQLAlchemy had renamed it."""

    class Renamed(type(obj)):  # type: ignore[misc]
        __slots__ = ()
        inherit_cache = True

        def __getattribute__(self, attr: str) -> Any:
            if attr == name:
                raise AttributeError(attr)
            return super().__getattribute__(attr)

        def __getattr__(self, attr: str) -> Any:  # lambda statements proxy missing attributes
            if attr == name:
                raise AttributeError(attr)
            return super().__getattr__(attr)

    obj.__class__ = Renamed
    return obj


# ------------------------------------------------------------------ each attribute exists and is read right


def test_for_update_arg() -> None:
    assert compat.for_update_arg(select(_table)) is None
    arg = compat.for_update_arg(select(_table).with_for_update(read=True, skip_locked=True))
    assert arg is not None and arg.read and arg.skip_locked


def test_prefixes() -> None:
    assert compat.statement_fragments(select(_table).prefix_with("HIGH_PRIORITY")) == ["HIGH_PRIORITY"]


def test_suffixes() -> None:
    assert compat.statement_fragments(select(_table).suffix_with("FOR UPDATE")) == ["FOR UPDATE"]


def test_hints() -> None:
    stmt = select(_table).with_hint(_table, "USE INDEX (ix_name)")
    assert compat.statement_fragments(stmt) == ["USE INDEX (ix_name)"]


def test_statement_hints() -> None:
    assert compat.statement_fragments(select(_table).with_statement_hint("SQL_NO_CACHE")) == ["SQL_NO_CACHE"]


def test_no_fragments_on_a_compound_select() -> None:
    assert compat.statement_fragments(select(_table.c.id).union(select(_other.c.id))) == []


def test_with_options() -> None:
    assert compat.has_options(select(_Item).options(defer(_Item.name)))
    assert not compat.has_options(select(_Item))
    assert not compat.has_options(object())


def test_annotations_parentmapper() -> None:
    mappers = {compat.parent_mapper(el) for el in visitors.iterate(select(_Item.id))}
    assert inspect(_Item) in mappers
    assert {compat.parent_mapper(el) for el in visitors.iterate(select(_table))} == {None}
    assert compat.parent_mapper(object()) is None


def test_type_expressions() -> None:
    assert not compat.type_renders_sql(String(10))
    assert compat.type_renders_sql(_Upper())


def test_lambda_resolved() -> None:
    resolved = compat.lambda_statement(lambda_stmt(lambda: select(_table)))
    assert isinstance(resolved, Select)


def test_from_statement() -> None:
    inner = text("SELECT * FROM compat_item")
    assert compat.from_statement_element(select(_Item).from_statement(inner)) is inner
    assert compat.from_statement_element(select(_Item)) is None
    assert isinstance(compat.from_statement_element(select(_Item).from_statement(inner)), TextClause)


def test_cache_key() -> None:
    key = compat.statement_cache_key(select(_table).where(_table.c.id == 1))
    assert key is not None
    assert key == compat.statement_cache_key(select(_table).where(_table.c.id == 2))  # same shape
    assert key != compat.statement_cache_key(select(_other))
    hash(key)


# ------------------------------------------------------------------ a missing attribute: loud, then primary


@pytest.mark.parametrize(
    ("accessor", "name"),
    [
        (compat.for_update_arg, "_for_update_arg"),
        (compat.statement_fragments, "_prefixes"),
        (compat.statement_fragments, "_suffixes"),
        (compat.statement_fragments, "_hints"),
        (compat.statement_fragments, "_statement_hints"),
        (compat.has_options, "_with_options"),
        (compat.parent_mapper, "_annotations"),
    ],
)
def test_missing_select_attribute_raises(accessor: Any, name: str) -> None:
    with pytest.raises(compat.SQLAlchemyChanged, match=name):
        accessor(_without(select(_table), name))


@pytest.mark.parametrize(
    "name",
    [
        "_for_update_arg",
        "_prefixes",
        "_suffixes",
        "_hints",
        "_statement_hints",
        "_with_options",
        "_annotations",
    ],
)
def test_missing_select_attribute_routes_to_the_primary(name: str) -> None:
    assert classify(select(_table)).target == REPLICA
    route = classify(_without(select(_table), name))
    assert (route.target, route.effect) == (PRIMARY, "write")
    assert name in route.reason


def test_missing_type_attribute_raises() -> None:
    with pytest.raises(compat.SQLAlchemyChanged, match="_has_column_expression"):
        compat.type_renders_sql(object())


def test_missing_lambda_resolution_routes_to_the_primary() -> None:
    with pytest.raises(compat.SQLAlchemyChanged, match="_resolved"):
        compat.lambda_statement(object())  # type: ignore[arg-type]
    route = classify(_without(lambda_stmt(lambda: select(_table)), "_resolved"))
    assert (route.target, route.effect) == (PRIMARY, "write")
    assert "_resolved" in route.reason


def test_moved_from_statement_routes_to_the_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    stmt = select(_Item).from_statement(text("SELECT * FROM compat_item"))
    assert classify(stmt).target == REPLICA
    monkeypatch.setattr(compat, "_FROM_STATEMENT", None)
    assert compat.from_statement_element(stmt) is None
    assert classify(stmt).target == PRIMARY


def test_missing_cache_key_only_skips_the_cache() -> None:
    assert compat.statement_cache_key(object()) is None
    assert classify(_without(select(_table), "_generate_cache_key")).target == REPLICA


def test_mapper_properties_added_later_are_seen() -> None:
    """The classifier counts ``mapper.attrs`` (public) to notice properties added after a verdict."""

    class Late(_Base):
        __tablename__ = "compat_late"

        id: Mapped[int] = mapped_column(primary_key=True)

    cache_clear()
    assert classify(select(Late)).target == REPLICA
    inspect(Late).add_property("scored", column_property(func.score_of(Late.__table__.c.id)))
    cache_clear()
    route = classify(select(Late))
    assert route.target == PRIMARY and "score_of" in route.reason
