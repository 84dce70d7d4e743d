"""Tests for rwsplit.classify: corpus, SQLAlchemy constructs, caches and properties."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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

sys.path.insert(0, str(Path(__file__).parent))

from classify_corpus import CORPUS  # noqa: E402

from rwsplit.classifier import (  # noqa: E402
    CONSTRUCT_CACHE_SIZE,
    MAX_CACHED_SQL_LENGTH,
    PRIMARY,
    REPLICA,
    SQL_CACHE_SIZE,
    Route,
    cache_clear,
    cache_info,
    classify,
)

# --------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------


def _case_id(sql: str) -> str:
    compact = " ".join(sql.split())
    return compact[:60] or "<empty>"


@pytest.mark.parametrize(
    ("sql", "target", "reason"),
    CORPUS,
    ids=[f"{i:03d}-{_case_id(sql)}" for i, (sql, _, _) in enumerate(CORPUS)],
)
def test_corpus(sql: str, target: str, reason: str | None) -> None:
    route = classify(sql)
    assert route.target == target, route
    if reason is not None:
        assert reason in route.reason


def test_corpus_is_large_and_covers_both_targets() -> None:
    targets = [t for _, t, _ in CORPUS]
    assert len(CORPUS) >= 250
    assert targets.count(REPLICA) >= 100
    assert targets.count(PRIMARY) >= 100
    assert len({sql for sql, _, _ in CORPUS}) == len(CORPUS)


# --------------------------------------------------------------------------------------
# Route, constants, input validation
# --------------------------------------------------------------------------------------


def test_constants_and_route_value() -> None:
    assert (PRIMARY, REPLICA) == ("primary", "replica")
    route = classify("SELECT 1")
    assert route == Route(REPLICA, "read")
    assert not hasattr(route, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        route.target = PRIMARY  # type: ignore[misc]
    assert hash(route) == hash(Route(REPLICA, "read"))


@pytest.mark.parametrize("bad", [None, b"SELECT 1", bytearray(b"SELECT 1"), 42, object(), ["x"]])
def test_type_error_names_accepted_types(bad: Any) -> None:
    with pytest.raises(TypeError, match="str or a SQLAlchemy Executable"):
        classify(bad)


def test_bad_read_only_functions_and_dialect() -> None:
    with pytest.raises(TypeError, match="iterable of str"):
        classify("SELECT 1", read_only_functions="my_fn")
    with pytest.raises(TypeError, match="str names"):
        classify("SELECT 1", read_only_functions=[1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="Dialect"):
        classify("SELECT 1", dialect="mysql")  # type: ignore[arg-type]


def test_str_subclass_is_accepted() -> None:
    class SQL(str):
        pass

    assert classify(SQL("SELECT 1")).target == REPLICA
    assert classify(SQL("DELETE FROM t")).target == PRIMARY


# --------------------------------------------------------------------------------------
# read_only_functions
# --------------------------------------------------------------------------------------


def test_read_only_functions_unqualified_and_case_insensitive() -> None:
    assert classify("SELECT my_udf(1)").target == PRIMARY
    assert classify("SELECT my_udf(1)", read_only_functions={"my_udf"}).target == REPLICA
    assert classify("SELECT MY_UDF (1)", read_only_functions=["My_Udf"]).target == REPLICA
    assert classify("SELECT other_udf(1)", read_only_functions={"my_udf"}).target == PRIMARY


def test_read_only_functions_qualified_and_quoted() -> None:
    ro = frozenset({"shop.price_of"})
    assert classify("SELECT shop.price_of(1)", read_only_functions=ro).target == REPLICA
    assert classify("SELECT `shop`.`price_of`(1)", read_only_functions=ro).target == REPLICA
    assert classify("SELECT Shop . Price_Of (1)", read_only_functions=ro).target == REPLICA
    assert classify("SELECT other.price_of(1)", read_only_functions=ro).target == PRIMARY
    assert classify("SELECT price_of(1)", read_only_functions=ro).target == PRIMARY
    quoted = classify("SELECT `price_of`(1)", read_only_functions={"price_of"})
    assert quoted.target == REPLICA
    declared_quoted = classify("SELECT shop.price_of(1)", read_only_functions={"`shop`.`price_of`"})
    assert declared_quoted.target == REPLICA


def test_read_only_functions_cannot_whitelist_session_or_side_effects() -> None:
    ro = {"get_lock", "last_insert_id", "nextval"}
    assert classify("SELECT GET_LOCK('x', 1)", read_only_functions=ro).target == PRIMARY
    assert classify("SELECT LAST_INSERT_ID()", read_only_functions=ro).target == PRIMARY
    assert classify("SELECT NEXTVAL(s)", read_only_functions=ro).target == PRIMARY


def test_read_only_functions_accepts_any_iterable() -> None:
    names = (n for n in ["my_udf"])
    assert classify("SELECT my_udf(1)", read_only_functions=names).target == REPLICA
    assert classify("SELECT my_udf(1)", read_only_functions=()).target == PRIMARY


# --------------------------------------------------------------------------------------
# Caches
# --------------------------------------------------------------------------------------


def test_sql_cache_hits_and_clear() -> None:
    cache_clear()
    info = cache_info()
    assert info.sql.currsize == 0 and info.sql.maxsize == SQL_CACHE_SIZE == 4096
    assert info.constructs.maxsize == CONSTRUCT_CACHE_SIZE
    first = classify("SELECT 4242 FROM cache_test")
    second = classify("SELECT 4242 FROM cache_test")
    assert first == second
    info = cache_info()
    assert (info.sql.misses, info.sql.hits, info.sql.currsize) == (1, 1, 1)
    cache_clear()
    assert cache_info().sql.currsize == 0


def test_cache_key_includes_read_only_functions() -> None:
    cache_clear()
    assert classify("SELECT my_udf(2)").target == PRIMARY
    assert classify("SELECT my_udf(2)", read_only_functions={"my_udf"}).target == REPLICA
    assert classify("SELECT my_udf(2)").target == PRIMARY
    assert cache_info().sql.currsize == 2


def test_long_statements_bypass_the_cache() -> None:
    cache_clear()
    long_sql = "SELECT a FROM t WHERE a IN (" + ",".join(["1"] * 40000) + ")"
    assert len(long_sql) > MAX_CACHED_SQL_LENGTH
    assert classify(long_sql).target == REPLICA
    assert classify(long_sql + " FOR UPDATE").target == PRIMARY
    assert cache_info().sql.currsize == 0


def test_sql_cache_is_bounded() -> None:
    cache_clear()
    for i in range(SQL_CACHE_SIZE + 50):
        classify(f"SELECT a FROM t WHERE id = {i}")
    assert cache_info().sql.currsize == SQL_CACHE_SIZE


# --------------------------------------------------------------------------------------
# SQLAlchemy constructs
# --------------------------------------------------------------------------------------


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


def test_custom_operators_are_checked() -> None:
    assert _target(select(User).where(User.name.op("REGEXP")("^a"))) == REPLICA
    evil = select(User).where(User.name.op("= 'x'; DELETE FROM users; --")("y"))
    assert "custom operator" in classify(evil).reason


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`]|``)*`|%\(\w+\)s|\s+|[A-Za-z_]\w*|."""
)
_SEPARATORS = [
    " ", "\t", "\n", "  ", "\r\n", " /* c */ ", " -- c\n", " # c\n", "\n/* x\n y */\t", "/**/",
    "/* DELETE */", " /*+ NO_ICP(t) */ ",
]  # fmt: skip
_WRAPPABLE = [
    (sql, target) for sql, target, _ in CORPUS if not any(marker in sql for marker in ("/*", "--", "#", "\\"))
]


def _rewrite(sql: str, data: st.DataObject) -> str:
    """Same statement with other whitespace/comments between tokens and keyword case."""
    out: list[str] = []
    for token in _TOKEN_RE.findall(sql):
        if token.isspace():
            out.append(data.draw(st.sampled_from(_SEPARATORS)))
        elif re.fullmatch(r"[A-Za-z_]\w*", token):
            flips = data.draw(st.lists(st.booleans(), min_size=len(token), max_size=len(token)))
            out.append("".join(c.upper() if f else c.lower() for c, f in zip(token, flips, strict=True)))
        else:
            out.append(token)
    lead = data.draw(st.sampled_from(["", " ", "/* lead */ ", "-- lead\n", "\n"]))
    tail = data.draw(st.sampled_from(["", " ", " /* tail */", " -- tail", " # tail"]))
    return lead + "".join(out) + tail


@settings(max_examples=400, deadline=None)
@given(entry=st.sampled_from(_WRAPPABLE), data=st.data())
def test_comments_whitespace_and_case_never_change_the_route(
    entry: tuple[str, str], data: st.DataObject
) -> None:
    sql, target = entry
    rewritten = _rewrite(sql, data)
    assert classify(rewritten) == classify(sql)
    assert classify(rewritten).target == target


_WRITE_KEYWORDS = [
    "INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "TRUNCATE", "GRANT",
    "REVOKE", "LOCK", "UNLOCK", "CALL", "SET", "LOAD", "RENAME", "HANDLER", "KILL", "PURGE",
    "OPTIMIZE", "CHANGE", "INTO",
]  # fmt: skip
_READ_PREFIXES = [
    "", "SELECT", "SELECT a FROM t WHERE", "WITH c AS ( SELECT 1 ) SELECT", "(", "VALUES",
    "TABLE", "EXPLAIN", "DESCRIBE", "SHOW TABLES", "SHOW GLOBAL STATUS", "ANALYZE SELECT",
    "SELECT 1 ;", "HELP",
]  # fmt: skip
_FILLER = [
    "a", "b", "t", "users", "x1", "`update`", "`delete from t`", "t.a", '"str"',
    "FROM", "WHERE", "AND", "OR", "NOT", "IN", "AS", "ON", "JOIN", "GROUP", "BY", "ORDER",
    "LIMIT", "UNION", "ALL", "DISTINCT", "CASE", "WHEN", "THEN", "ELSE", "END", "IS", "NULL",
    "LIKE", "FOR", "SHARE", "MODE", "VALUE", "NEXT", "SELECT", "WITH", "EXISTS", "COUNT",
    "MAX", "LOWER", "NOW", ",", "(", ")", "=", "<", ">", "+", "-", "*", "/", ".", ";",
    "1", "2.5", "'x'", "'FOR UPDATE'", "'DELETE'", "0x1F", "%s", "?", ":p", "%(p)s", "X'0F'",
    "/* DELETE */", "-- UPDATE t\n", "# DROP\n", "/*+ NO_ICP(t) */",
]  # fmt: skip
_BEFORE_KEYWORD = ["a", ",", ")", "AND", "1", "'s'", "WHERE", "("]
_AFTER_KEYWORD = ["x", "t", "a", "1", "users"]


@settings(max_examples=600, deadline=None)
@given(
    prefix=st.sampled_from(_READ_PREFIXES),
    before=st.lists(st.sampled_from(_FILLER), max_size=8),
    separator=st.sampled_from(_BEFORE_KEYWORD),
    keyword=st.sampled_from(_WRITE_KEYWORDS),
    after_first=st.sampled_from(_AFTER_KEYWORD),
    after=st.lists(st.sampled_from(_FILLER), max_size=8),
    lower=st.booleans(),
)
def test_write_keyword_token_never_routes_to_replica(
    prefix: str,
    before: list[str],
    separator: str,
    keyword: str,
    after_first: str,
    after: list[str],
    lower: bool,
) -> None:
    """A write keyword outside strings/comments (not after a dot and not a function call)."""
    word = keyword.lower() if lower else keyword
    sql = " ".join([prefix, *before, separator, word, after_first, *after])
    assert classify(sql).target == PRIMARY, sql


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(sql: str) -> None:
    route = classify(sql)
    assert isinstance(route, Route)
    assert route.target in (PRIMARY, REPLICA)
    assert route.reason


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.binary(),
        st.integers(),
        st.floats(),
        st.lists(st.text(), max_size=2),
        st.dictionaries(st.text(), st.text(), max_size=2),
    )
)
def test_non_statements_raise_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        classify(value)
