"""rwsplit.classify's interface: Route, input checks, read_only_functions, caches."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from rwsplit.classifier import (
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

# ------------------------------------------------------------------ Route, constants, input validation


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


# ------------------------------------------------------------------ read_only_functions


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


# ------------------------------------------------------------------ caches


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
