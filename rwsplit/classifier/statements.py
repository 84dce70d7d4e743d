"""Route a SQL string by statement kind, under every tokenization the server could apply (cached)."""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import islice
from typing import Final

from .lexer import (
    CAREFUL_TRIGGER_RE,
    ESCAPE_MODES,
    T_WORDS,
    VERSIONED_EXEC_RE,
    mask_careful,
    mask_fast,
    word_re,
)
from .lexer import (
    WORD_CHARS as _W,
)
from .reads import scan_read
from .route import PRIMARY, READ, REPLICA, Route
from .vocabulary import Context

SQL_CACHE_SIZE: Final = 4096
"""Entries of the LRU cache of SQL strings."""
MAX_CACHED_SQL_LENGTH: Final = 64 * 1024
"""Longer SQL strings are classified on every call, not cached."""

_EMPTY_STATEMENT = Route(PRIMARY, "empty statement (only whitespace or comments)")
_UNPARSABLE = Route(PRIMARY, "unparsable: unterminated string, identifier or comment")


_FIRST_WORD_RE: Final = re.compile(rb" *([^ ]*)")
_WORD_TOKEN_RE: Final = re.compile(rb"[^ ]+")


def _words(b1: bytes, limit: int) -> list[tuple[bytes, int]]:
    """The first ``limit`` words of ``b1`` with their end offsets."""
    return [(m.group(), m.end()) for m in islice(_WORD_TOKEN_RE.finditer(b1), limit)]


_READ_STARTS: Final = frozenset({b"SELECT", b"WITH", b"VALUES", b"TABLE", b"HELP"})
_EXPLAIN_OPTIONS: Final = frozenset({b"EXTENDED", b"PARTITIONS", b"ANALYZE", b"VERBOSE"})
_DML_WORDS: Final = frozenset({b"INSERT", b"REPLACE", b"UPDATE", b"DELETE", b"LOAD"})


def _explain_route(b1: bytes, raw: bytes, ro: Context) -> Route:
    """EXPLAIN/DESCRIBE/DESC of a read or of a table is a read; of a write, primary."""
    words = _words(b1, 8)
    i = 1
    executes = False
    while i < len(words):
        word = words[i][0]
        if word == b"FORMAT":
            i += 2
        elif word in _EXPLAIN_OPTIONS:
            executes = executes or word == b"ANALYZE"
            i += 1
        else:
            break
    if i >= len(words):
        return Route(PRIMARY, "incomplete EXPLAIN")
    subject = words[i][0]
    verb = words[0][0].decode()
    if subject in _DML_WORDS:
        return Route(PRIMARY, f"{verb} of a write: {subject.decode()}")
    if subject == b"FOR":
        return Route(PRIMARY, f"{verb} FOR CONNECTION (server-specific)")
    # Plain EXPLAIN only plans the statement: a locking read locks nothing (EXPLAIN ANALYZE runs it).
    route = scan_read(b1, raw, ro, locks_nothing=not executes)
    if route is not None and route.effect == "lock" and not executes:
        return Route(PRIMARY, f"{verb} of a FOR UPDATE read (a read-only replica refuses it)")
    return route or Route(REPLICA, f"read: {verb}")


def _analyze_route(b1: bytes, raw: bytes, ro: Context) -> Route:
    """MariaDB ANALYZE <statement> executes it; ANALYZE TABLE writes statistics."""
    words = _words(b1, 6)
    i = 1
    while i < len(words) and words[i][0] in (b"FORMAT", b"NO_WRITE_TO_BINLOG", b"LOCAL"):
        i += 2 if words[i][0] == b"FORMAT" else 1
    subject = words[i][0] if i < len(words) else b""
    if subject in (b"SELECT", b"WITH", b"VALUES"):
        return scan_read(b1, raw, ro) or Route(REPLICA, "read: ANALYZE (executes the read)")
    if subject in _DML_WORDS:
        return Route(PRIMARY, f"ANALYZE executes the write: {subject.decode()}")
    return Route(PRIMARY, "table maintenance: ANALYZE TABLE")


_SHOW_REPLICA: Final = {
    b"DATABASES": 1, b"SCHEMAS": 1, b"TABLES": 1, b"COLUMNS": 1, b"FIELDS": 1, b"INDEX": 1,
    b"INDEXES": 1, b"KEYS": 1, b"TRIGGERS": 1, b"EVENTS": 1, b"COLLATION": 1, b"CHARSET": 1,
    b"ENGINES": 1, b"PLUGINS": 1, b"PRIVILEGES": 1, b"CONTRIBUTORS": 1, b"AUTHORS": 1,
    b"LOCALES": 1, b"TABLE": 2, b"CHARACTER": 2, b"STORAGE": 2, b"PROCEDURE": 2,
    b"FUNCTION": 2, b"PACKAGE": 2,
}  # fmt: skip
"""SHOW subjects that read (replicated) metadata, with the number of subject words."""

_SHOW_CREATE_OBJECTS: Final = frozenset(
    b"TABLE VIEW DATABASE SCHEMA PROCEDURE FUNCTION TRIGGER EVENT SEQUENCE PACKAGE USER".split()
)
_SHOW_SESSION: Final = {
    b"WARNINGS": "session diagnostics", b"ERRORS": "session diagnostics",
    b"COUNT": "session diagnostics", b"PROFILE": "session profiling",
    b"PROFILES": "session profiling",
}  # fmt: skip


def _show_route(b1: bytes, raw: bytes, ro: Context) -> Route:
    """SHOW of replicated metadata or global variables/status is a read; the rest primary."""
    words = _words(b1, 8)
    scope = b"SESSION"
    i = 1
    while i < len(words) and words[i][0] in (b"FULL", b"EXTENDED", b"GLOBAL", b"SESSION", b"LOCAL"):
        if words[i][0] in (b"GLOBAL", b"SESSION", b"LOCAL"):
            scope = words[i][0]
        i += 1
    if i >= len(words):
        return Route(PRIMARY, "incomplete SHOW")
    subject = words[i][0]
    label = subject.decode("utf-8", "replace")
    if subject in (b"VARIABLES", b"STATUS"):
        if scope != b"GLOBAL":
            return Route(PRIMARY, f"session-scoped SHOW {label}", "session")
        span = 1
    elif subject in _SHOW_SESSION:
        return Route(PRIMARY, f"{_SHOW_SESSION[subject]}: SHOW {label}", "session")
    elif subject == b"CREATE":
        if i + 1 >= len(words) or words[i + 1][0] not in _SHOW_CREATE_OBJECTS:
            return Route(PRIMARY, "unknown SHOW CREATE")
        span = (
            3 if words[i + 1][0] == b"PACKAGE" and i + 2 < len(words) and (words[i + 2][0] == b"BODY") else 2
        )
    elif subject in _SHOW_REPLICA:
        span = _SHOW_REPLICA[subject]
        if subject == b"PACKAGE" and i + 1 < len(words) and words[i + 1][0] == b"BODY":
            span = 3
    else:
        return Route(PRIMARY, f"server or session state: SHOW {label}")
    last = min(i + span, len(words)) - 1
    end = words[last][1]
    route = scan_read(b1[end:], raw[end:], ro)
    return route or Route(REPLICA, f"read: SHOW {label}")


_FAMILIES: Final = {
    **dict.fromkeys((b"INSERT", b"REPLACE", b"UPDATE", b"DELETE", b"LOAD"), "write"),
    **dict.fromkeys((b"CREATE", b"ALTER", b"DROP", b"RENAME", b"TRUNCATE", b"IMPORT"), "DDL"),
    **dict.fromkeys(
        (b"BEGIN", b"COMMIT", b"ROLLBACK", b"SAVEPOINT", b"RELEASE", b"XA"), "transaction control"
    ),
    **dict.fromkeys((b"SET", b"USE"), "session state"),
    **dict.fromkeys((b"LOCK", b"UNLOCK"), "table locking"),
    b"CALL": "stored procedure call",
    b"DO": "DO statement",
    b"HANDLER": "HANDLER (session-bound cursor)",
    **dict.fromkeys((b"PREPARE", b"EXECUTE", b"DEALLOCATE"), "prepared statement"),
    **dict.fromkeys((b"GRANT", b"REVOKE"), "account management"),
    **dict.fromkeys((b"OPTIMIZE", b"REPAIR", b"CHECK", b"CHECKSUM"), "table maintenance"),
    **dict.fromkeys(
        (
            b"FLUSH",
            b"RESET",
            b"KILL",
            b"PURGE",
            b"INSTALL",
            b"UNINSTALL",
            b"BINLOG",
            b"CHANGE",
            b"START",
            b"STOP",
            b"SHUTDOWN",
            b"RESTART",
            b"CLONE",
            b"CACHE",
            b"BACKUP",
        ),
        "administrative",
    ),  # fmt: skip
    **dict.fromkeys((b"SIGNAL", b"RESIGNAL", b"GET"), "diagnostics (session-bound)"),
}


_SET_WRITES: Final = frozenset({b"GLOBAL", b"PERSIST", b"PERSIST_ONLY"})
_SET_WRITE_SUBJECTS: Final = frozenset({b"PASSWORD", b"DEFAULT", b"TRANSACTION", b"STATEMENT"})
"""Words (anywhere / right after ``SET``) that make it more than a change of connection state."""
_SET_STATEMENT_RE: Final = re.compile(
    rb"\s*SET\s+STATEMENT\s+(?:[A-Z_][A-Z0-9_$]*\s*=\s*(?:''|[-+]?(?:\d+\.?\d*|\.\d+)(?:E[-+]?\d+)?"
    rb"|ON|OFF|TRUE|FALSE|DEFAULT|NULL)\s*(?:,\s*|(?=\s)))+\s*FOR(?![" + _W + rb"])"
)
"""``SET STATEMENT var=literal[, ...] FOR``: the variables apply to the inner statement only."""


def _other_route(first: bytes, b1: bytes, raw: bytes, ro: Context) -> Route:
    """Route for a statement that is not a read (its ``effect`` says what kind)."""
    label = first.decode("utf-8", "replace")[:40]
    words = [w for w, _ in _words(b1, 5)]
    if first in (b"START", b"SET") and b"TRANSACTION" in words[1:3]:
        return Route(PRIMARY, f"transaction control: {label} TRANSACTION")
    family = _FAMILIES.get(first)
    if family is None:
        return Route(PRIMARY, f"unrecognized statement: {label}")
    route = Route(PRIMARY, f"{family}: {label}")
    second = words[1] if len(words) > 1 else b""
    if first == b"SET":
        return _set_route(b1, raw, ro, route)
    if (
        first in (b"USE", b"PREPARE", b"DEALLOCATE")
        or (first == b"DROP" and second == b"PREPARE")
        or (first in (b"LOCK", b"UNLOCK") and second in (b"TABLE", b"TABLES"))
        or (first == b"GET" and b"DIAGNOSTICS" in words[1:3])
    ):
        return Route(PRIMARY, route.reason, "session")
    if first in (b"CREATE", b"DROP") and b"TEMPORARY" in words[1:4]:
        return _temporary_table_route(words, b1, raw, ro, route)
    return route


def _set_route(b1: bytes, raw: bytes, ro: Context, route: Route) -> Route:
    """``SET`` of session or user variables only changes the connection (unless a value writes)."""
    m = _SET_STATEMENT_RE.match(raw.upper())
    if m is not None:
        inner = _classify_part(raw[m.end() :], ro)
        if inner is not None and inner.target == REPLICA:
            return Route(REPLICA, f"SET STATEMENT ... FOR {inner.reason}")
        return Route(PRIMARY, f"SET STATEMENT ... FOR: {inner.reason if inner else 'nothing'}")
    rest_words = b1.split()[1:]
    if (
        _SET_WRITES.intersection(rest_words)
        or (rest_words[:1] and rest_words[0] in _SET_WRITE_SUBJECTS)
        or b"@@GLOBAL" in b1
        or b"@@PERSIST" in b1
    ):
        return route
    start = b1.find(b"SET") + 3
    values = scan_read(b1[start:], raw[start:], ro)
    if values is not None and values.effect != "session":
        return Route(PRIMARY, f"{route.reason}; {values.reason}")
    return Route(PRIMARY, route.reason, "session")


def _temporary_table_route(words: list[bytes], b1: bytes, raw: bytes, ro: Context, route: Route) -> Route:
    """CREATE/DROP TEMPORARY TABLE affect only the connection, unless a query part may write."""
    kind = words.index(b"TEMPORARY")
    if kind + 1 >= len(words) or words[kind + 1] not in (b"TABLE", b"TABLES"):
        return route
    query = word_re(b"SELECT").search(b1)
    if query is not None:
        rest = scan_read(b1[query.start() :], raw[query.start() :], ro)
        if rest is not None:
            return Route(PRIMARY, f"{route.reason} ... {rest.reason}")
    return Route(PRIMARY, f"{route.reason} TEMPORARY TABLE", "session")


def _classify_part(raw: bytes, ro: Context) -> Route | None:
    """Classify one statement of a (possibly multi-statement) text; None if empty."""
    b1 = raw.translate(T_WORDS)
    m = _FIRST_WORD_RE.match(b1)
    first = m.group(1) if m else b""
    if not first:
        return None
    if first in _READ_STARTS:
        return scan_read(b1, raw, ro) or READ
    if first in (b"EXPLAIN", b"DESCRIBE", b"DESC"):
        return _explain_route(b1, raw, ro)
    if first == b"SHOW":
        return _show_route(b1, raw, ro)
    if first == b"ANALYZE":
        return _analyze_route(b1, raw, ro)
    return _other_route(first, b1, raw, ro)


def _classify_masked(masked: str, ro: Context) -> Route:
    """Classify SQL whose strings and comments have been blanked out."""
    raw = masked.encode("utf-8", "surrogatepass")
    if b";" not in raw:
        return _classify_part(raw, ro) or _EMPTY_STATEMENT
    routes = [r for r in (_classify_part(p, ro) for p in raw.split(b";")) if r is not None]
    if not routes:
        return _EMPTY_STATEMENT
    if len(routes) == 1:
        return routes[0]
    for n, route in enumerate(routes, 1):
        if route.target == PRIMARY:
            return Route(PRIMARY, f"multi-statement, part {n}: {route.reason}")
    return Route(REPLICA, "read (multi-statement)")


def _classify_sql(sql: str, ro: Context) -> Route:
    """Classify a SQL string under every tokenization the server could apply.

    A reading that does not parse (or leaves nothing to run) is an error on a server
    that uses it, hence harmless; the replica is chosen only if every other reading
    is a replica read.
    """
    modes = ESCAPE_MODES if "\\" in sql else ESCAPE_MODES[:1]
    careful = ("/*" in sql and CAREFUL_TRIGGER_RE.search(sql) is not None) or (
        bool(ro.ro) and ("`" in sql or '"' in sql)
    )
    exec_readings: tuple[bool, ...] = (True,)
    if careful and VERSIONED_EXEC_RE.search(sql):
        exec_readings = (True, False)
    result: Route | None = None
    empty = False
    single = len(modes) * len(exec_readings) == 1
    for mode in modes:
        for versioned_as_sql in exec_readings:
            if careful:
                masked = mask_careful(sql, mode, versioned_as_sql, keep_names=bool(ro.ro))
            else:
                masked = mask_fast(sql, mode)
            if masked is None:
                continue
            route = _classify_masked(masked, ro)
            if route is _EMPTY_STATEMENT and not single:
                empty = True
            elif route.target == PRIMARY:
                return route
            else:
                result = route
    return result or (_EMPTY_STATEMENT if empty else _UNPARSABLE)


classify_sql_cached = lru_cache(maxsize=SQL_CACHE_SIZE)(_classify_sql)


def classify_str(sql: str, ro: Context) -> Route:
    """Cached string classification (long statements bypass the cache).

    The key holds the interned context, i.e. the read-only functions and the server version.
    """
    if len(sql) <= MAX_CACHED_SQL_LENGTH:
        return classify_sql_cached(sql, ro)
    return _classify_sql(sql, ro)
