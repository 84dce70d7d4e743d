"""rwsplit.classify properties (hypothesis): spelling never changes a route, writes never reach a replica."""

from __future__ import annotations

import re
from typing import Any

import pytest
from classify_corpus import CORPUS
from hypothesis import given, settings
from hypothesis import strategies as st

from rwsplit.classifier import PRIMARY, REPLICA, Route, classify

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
