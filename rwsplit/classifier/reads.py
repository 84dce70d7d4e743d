"""Find what disqualifies a masked read: writes, locking clauses, variables, non-built-in calls."""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from typing import Final

from .lexer import T_CALLS, T_WORDS, word_re
from .lexer import WORD_CHARS as _W
from .route import PRIMARY, Route
from .vocabulary import (
    FLAG_WORDS_B,
    GEOMETRY_ARITY,
    SEQUENCE_FUNCTIONS,
    SPECIAL_FUNCTIONS_B,
    Context,
    arity_ok,
    normalize_name,
)

_LOCKING_RE: Final = re.compile(
    rb"(?<![" + _W + rb".])(?:FOR +UPDATE|FOR +SHARE|LOCK +IN +SHARE +MODE)(?![" + _W + rb"])"
)
_NEXT_VALUE_RE: Final = re.compile(rb"(?<![" + _W + rb".])(NEXT|PREVIOUS) +VALUE +FOR(?![" + _W + rb"])")
_VARIABLE_RE: Final = re.compile(rb"@@?[" + _W + rb".]*")
_CTE_COLUMNS_RE: Final = re.compile(rb"[ ," + _W + rb"]*, *AS *\Z")
_QUALIFIED_REV_RE: Final = re.compile(rb"[" + _W + rb"]+(?: *\. *[" + _W + rb"]*)*")
_SUBQUERY_START_RE: Final = re.compile(rb" *(?:(?:SELECT|WITH|TABLE|VALUES)(?![" + _W + rb"])|\Z)")


_FLAG_SEQUENCE_WORDS: Final = frozenset(w.encode() for w in SEQUENCE_FUNCTIONS)
_WRITE_PRIORITY: Final = tuple(
    b"""
    INSERT REPLACE UPDATE DELETE LOAD CREATE ALTER DROP RENAME TRUNCATE GRANT REVOKE CALL
    HANDLER LOCK UNLOCK KILL PURGE OPTIMIZE CHANGE SET
    """.split()
)
"""Write keywords in the order their presence is reported."""


def _after_dot(text: bytes, start: int) -> bool:
    """True if the token at ``start`` is qualified (follows a ``.``), hence an identifier."""
    return text[:start].rstrip(b" ").endswith(b".")


def _keyword_used(word: bytes, b2: bytes) -> bool:
    """True if ``word`` occurs in ``b2`` as a statement keyword (not as a function or name)."""
    for m in word_re(word).finditer(b2):
        start, end = m.span()
        if _after_dot(b2, start):
            continue
        if word in (b"INSERT", b"REPLACE", b"TRUNCATE") and b2[end:].lstrip(b" ").startswith(b"("):
            continue
        if word == b"SET" and b2[:start].rstrip(b" ").endswith((b"CHARACTER", b"CHAR")):
            continue
        return True
    return False


def _flag_route(hits: AbstractSet[bytes], b2: bytes) -> Route | None:
    """Resolve suspicious words found in a read (locking clauses already blanked out);
    None if they turn out harmless. Writes are reported before session-bound findings."""
    for word in _WRITE_PRIORITY:
        if word in hits and _keyword_used(word, b2):
            return Route(PRIMARY, f"write: {word.decode()}")
    into: Route | None = None
    if b"INTO" in hits and _keyword_used(b"INTO", b2):
        into = _into_route(b2)
        if into.effect == "write":
            return into
    for word in sorted(hits & _FLAG_SEQUENCE_WORDS):
        if word_re(word).search(b2):
            return Route(PRIMARY, f"sequence function: {word.decode()}")
    if hits & {b"NEXT", b"PREVIOUS"}:
        m = _NEXT_VALUE_RE.search(b2)
        if m is not None:
            return Route(PRIMARY, f"sequence: {m.group(1).decode()} VALUE FOR")
    if into is not None:
        return into
    if b"SQL_CALC_FOUND_ROWS" in hits:
        return Route(PRIMARY, "session-bound: SQL_CALC_FOUND_ROWS", "session")
    for word in (b"CURRENT_USER", b"CURRENT_ROLE"):
        if word in hits and _keyword_used(word, b2):
            return Route(PRIMARY, f"session-bound function: {word.decode()}", "session")
    return None


def _into_route(b2: bytes) -> Route:
    """``SELECT ... INTO @var`` only sets user variables; ``INTO OUTFILE``/``DUMPFILE``/a
    local variable (in a routine) is a write."""
    for m in word_re(b"INTO").finditer(b2):
        if not _after_dot(b2, m.start()) and not b2[m.end() :].lstrip(b" ").startswith(b"@"):
            return Route(PRIMARY, "SELECT ... INTO (file or variables)")
    return Route(PRIMARY, "SELECT ... INTO @variables", "session")


def _blank_locking(b2: bytes) -> tuple[bytes, str | None]:
    """``b2`` with locking clauses (``FOR UPDATE``...) blanked out, and the first one found."""
    m = _LOCKING_RE.search(b2)
    if m is None:
        return b2, None
    clause = " ".join(m.group().decode().split())
    return _LOCKING_RE.sub(lambda x: b" " * len(x.group()), b2), clause


def _variable_route(b2: bytes) -> Route | None:
    """Primary for user variables and session/bare system variables; ``@@global.x`` is fine."""
    for m in _VARIABLE_RE.finditer(b2):
        var = m.group()
        if var.startswith(b"@@GLOBAL.") and len(var) > 9:
            continue
        name = var.decode("utf-8", "replace").lower()
        if var.startswith(b"@@"):
            return Route(PRIMARY, f"session variable: {name}", "session")
        return Route(PRIMARY, f"user variable: {name}", "session")
    return None


def _call_route(b2: bytes, raw: bytes, ro: Context) -> Route | None:
    """Check every ``name(`` in ``b2``; None if all are known-safe calls or not calls.

    The first call that may write wins; otherwise the first session-bound one.
    """
    chunks = b2.split(b"(")
    safe = ro.safe_calls
    found: Route | None = None
    offset = 0
    for i in range(len(chunks) - 1):
        chunk = chunks[i]
        offset += len(chunk) + 1
        head = chunk.rstrip(b" ")
        if not head:
            continue
        token = head[head.rfind(b" ") + 1 :]
        name = token[token.rfind(b",") + 1 :]
        if not name:
            continue
        # ``schema . md5(``: a qualified call is never the built-in, whatever the spacing.
        if name in safe and not head[: len(head) - len(name)].rstrip(b" ").endswith(b"."):
            arity = GEOMETRY_ARITY.get(name)
            if arity is None or arity_ok(arity, _arg_count(raw, offset)):
                continue
            return Route(PRIMARY, f"{name.decode().lower()}() with this argument count: a stored function")
        route = _judge_call(name, head, chunks[i + 1], b2, ro)
        if route is not None:
            if route.effect == "write":
                return route
            found = found or route
    return found


def _arg_count(raw: bytes, start: int) -> int:
    """Top-level arguments of the call whose ``(`` ends at ``start`` (strings already masked)."""
    depth = 1
    commas = 0
    empty = True
    for byte in raw[start:]:
        if byte == 0x28:
            depth += 1
        elif byte == 0x29:
            depth -= 1
            if depth == 0:
                break
        elif byte == 0x2C and depth == 1:
            commas += 1
        if byte not in b" \t\r\n\x0b\x0c" and depth >= 1:
            empty = False
    return 0 if empty and commas == 0 else commas + 1


def _qualified_name(head: bytes) -> str:
    """The normalized ``schema.name`` that ends ``head`` (scanned backwards)."""
    tail = head[-400:][::-1]
    m = _QUALIFIED_REV_RE.match(tail)
    text = (m.group() if m else tail)[::-1]
    return normalize_name(text.decode("utf-8", "replace"))


def _judge_call(name: bytes, head: bytes, after: bytes, b2: bytes, ro: Context) -> Route | None:
    """Decide about one non-built-in ``name(``; None if it is not a call or is allowed."""
    if b"@" in name:
        return _variable_route(name) or Route(PRIMARY, "user variable", "session")
    before = head[: len(head) - len(name)].rstrip(b" ")
    if b"." in name or before.endswith(b"."):
        full = _qualified_name(head)
        return None if full in ro.ro else Route(PRIMARY, f"stored function: {full}")
    previous = before[before.rfind(b" ") + 1 :]
    previous = previous[previous.rfind(b",") + 1 :]
    if previous in (b"AS", b"RETURNING", b"WITH", b"RECURSIVE"):
        return None
    if _CTE_COLUMNS_RE.match(after):
        return None
    if name in (b"ANY", b"SOME") and _SUBQUERY_START_RE.match(after):
        return None
    if name == b"COLUMNS" and b"JSON_TABLE" in b2:
        return None
    special = SPECIAL_FUNCTIONS_B.get(name)
    if special is not None:
        return special
    text = normalize_name(name.decode("utf-8", "replace"))
    if text in ro.ro:
        return None
    if b"`" in name:
        return Route(PRIMARY, f"call of a quoted identifier (stored function): {text or '?'}")
    return Route(PRIMARY, f"unknown function (stored function or UDF?): {text}")


def scan_read(b1: bytes, raw: bytes, ro: Context, locks_nothing: bool = False) -> Route | None:
    """Look for anything that disqualifies a read; None if it is a pure read.

    A write wins over anything else; a locking read that also depends on session state counts
    as a write. With ``locks_nothing`` (EXPLAIN) shared-lock clauses are ignored (``FOR UPDATE``
    is not: a read-only MariaDB replica refuses even ``EXPLAIN SELECT ... FOR UPDATE``).
    """
    hits = FLAG_WORDS_B.intersection(b1.split())
    b2: bytes | None = None
    lock: str | None = None
    found: Route | None = None
    if hits:
        b2 = raw.translate(T_CALLS)
        if hits & _LOCK_WORDS:
            b2, lock = _blank_locking(b2)
            if lock is not None:
                hits = FLAG_WORDS_B.intersection(b2.translate(T_WORDS).split())
                lock = None if locks_nothing and "UPDATE" not in lock else lock
        route = _flag_route(hits, b2)
        if route is not None:
            if route.effect == "write":
                return route
            found = route
    if b"@" in b1:
        b2 = b2 or raw.translate(T_CALLS)
        route = _variable_route(b2)
        if route is not None:
            found = found or route
    if b"(" in raw:
        b2 = b2 or raw.translate(T_CALLS)
        route = _call_route(b2, raw, ro)
        if route is not None:
            if route.effect == "write":
                return route
            found = found or route
    if lock is not None:
        if found is not None:
            return Route(PRIMARY, f"locking read: {lock}; {found.reason}")
        return Route(PRIMARY, f"locking read: {lock}", "lock")
    return found


_LOCK_WORDS: Final = frozenset({b"UPDATE", b"SHARE", b"LOCK"})
