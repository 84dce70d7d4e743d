"""Decide whether a statement may run on a read-only replica or must go to the primary.

``classify(statement)`` returns a :class:`Route` whose ``target`` is :data:`REPLICA` only
for statements proven to be pure reads that neither change data nor depend on (or
change) the state of the connection; everything else, including anything the
classifier does not understand, goes to :data:`PRIMARY`.  Nothing here can send a
write to a replica, and there is no override towards the replica.

SQL strings are read with MySQL/MariaDB lexical rules by a single-pass tokenizer:
strings (both quote styles, backslash escapes, doubled quotes), backquoted
identifiers, ``/* */``, ``#`` and ``-- `` comments, optimizer hints (``/*+ */``,
ignored), executable comments (``/*! */``, ``/*!NNNNN */``, ``/*M! */``,
``/*M!NNNNNN */``, whose content is classified as SQL) and ``;``-separated
multi-statements.  Where the server configuration could change how a statement is
tokenized (``NO_BACKSLASH_ESCAPES``, ``ANSI_QUOTES``, versioned or MariaDB-only
executable comments that a server may treat as plain comments), every
interpretation is classified and the replica is chosen only if each one that
parses is a replica read; unterminated strings, identifiers or comments make the
statement unparsable and route it to the primary.

Function calls (``name(`` or ``name (``) must be known built-ins; session-bound
(``LAST_INSERT_ID``, ``FOUND_ROWS``, ``DATABASE``, ``CURRENT_USER``...), side-effecting
(locks, ``SLEEP``, ``BENCHMARK``, replication waits, ``LOAD_FILE``) and sequence
functions, qualified ``schema.func(`` calls and calls of quoted identifiers are
sent to the primary unless the name is listed in ``read_only_functions`` (which
never overrides the built-in session-bound or side-effecting functions).
``SLEEP`` is deliberately kept on the primary together with the other
timing/locking functions.  Reserved write keywords (``UPDATE``, ``SET``, ``INTO``...)
outside strings, comments and quoted identifiers send a would-be read to the
primary, except after a dot (``t.update`` is a qualified identifier in MySQL).

SQLAlchemy constructs are judged from their structure: DML and DDL elements,
``with_for_update()``, sequences, functions, DML inside CTEs, and the text of any
``text()``/``literal_column()`` fragment, prefix, suffix or hint (each fragment is
classified as ``SELECT <fragment>`` and any non-replica verdict sends the whole
statement to the primary).  When SQL is injected at compile time (ORM
``column_property`` expressions, joined eager loads, loader options, types with
SQL-level bind/column expressions), the statement is compiled with ``dialect``
(default: the MySQL dialect) and the compiled SQL is classified.  Unknown
executable types go to the primary.

Results are cached: SQL strings of up to :data:`MAX_CACHED_SQL_LENGTH` characters
in an LRU of :data:`SQL_CACHE_SIZE` (4096) entries keyed by the string and the
read-only function set; constructs in a cache of :data:`CONSTRUCT_CACHE_SIZE`
(1024) entries keyed by SQLAlchemy's statement cache key (which SQLAlchemy
memoizes on the statement and reuses when executing it); statements are never
modified.  Constructs without a cache key are classified on every call.  See
:func:`cache_info` and :func:`cache_clear`, also reachable as ``classify.cache_info()``
and ``classify.cache_clear()`` because the package re-exports the function under the
module's name.
"""

from __future__ import annotations

import re
import types
import weakref
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any, Final, Literal, NamedTuple

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Query
from sqlalchemy.orm.context import FromStatement
from sqlalchemy.schema import Column
from sqlalchemy.sql import visitors
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.ddl import ExecutableDDLElement
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import (
    BinaryExpression,
    ClauseList,
    ColumnClause,
    ColumnElement,
    TextClause,
    UnaryExpression,
)
from sqlalchemy.sql.functions import FunctionElement, next_value
from sqlalchemy.sql.lambdas import StatementLambdaElement
from sqlalchemy.sql.operators import custom_op
from sqlalchemy.sql.selectable import (
    ForUpdateArg,
    GenerativeSelect,
    Select,
    TextualSelect,
)

__all__ = [
    "CONSTRUCT_CACHE_SIZE",
    "MAX_CACHED_SQL_LENGTH",
    "PRIMARY",
    "REPLICA",
    "SQL_CACHE_SIZE",
    "CacheStats",
    "ClassifyCacheInfo",
    "Route",
    "Target",
    "cache_clear",
    "cache_info",
    "classify",
]

Target = Literal["primary", "replica"]
PRIMARY: Final = "primary"
REPLICA: Final = "replica"

SQL_CACHE_SIZE: Final = 4096
CONSTRUCT_CACHE_SIZE: Final = 1024
MAX_CACHED_SQL_LENGTH: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    """Where a statement may run (``target``) and a short human-readable ``reason``."""

    target: Target
    reason: str


class CacheStats(NamedTuple):
    """Hit/miss counters and sizes of one classification cache."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class ClassifyCacheInfo(NamedTuple):
    """Statistics of the SQL-string cache and of the SQLAlchemy-construct cache."""

    sql: CacheStats
    constructs: CacheStats


_EMPTY: frozenset[str] = frozenset()


def _names(text: str) -> list[str]:
    """Whitespace-separated words of a vocabulary listing."""
    return text.split()


_READ = Route(REPLICA, "read")
_EMPTY_STATEMENT = Route(PRIMARY, "empty statement (only whitespace or comments)")
_UNPARSABLE = Route(PRIMARY, "unparsable: unterminated string, identifier or comment")

# --------------------------------------------------------------------------------------
# Vocabulary (from the MySQL 8 / MariaDB 11 manuals)
# --------------------------------------------------------------------------------------

_BUILTIN_FUNCTIONS: Final = frozenset(
    _names(
        """
    ASCII BIN BIT_LENGTH CHAR CHAR_LENGTH CHARACTER_LENGTH CHR CONCAT CONCAT_WS ELT
    EXPORT_SET EXTRACTVALUE FIELD FIND_IN_SET FORMAT FROM_BASE64 HEX INSERT INSTR LCASE
    LEFT LENGTH LENGTHB LOCATE LOWER LPAD LTRIM MAKE_SET MID NATURAL_SORT_KEY OCT
    OCTET_LENGTH ORD POSITION QUOTE REPEAT REPLACE REVERSE RIGHT RPAD RTRIM SFORMAT
    SOUNDEX SPACE STRCMP SUBSTR SUBSTRING SUBSTRING_INDEX TO_BASE64 TO_CHAR TRIM UCASE
    UNHEX UPDATEXML UPPER WEIGHT_STRING REGEXP_INSTR REGEXP_LIKE REGEXP_REPLACE
    REGEXP_SUBSTR CONVERT CAST COLLATION CHARSET COERCIBILITY COMPRESS UNCOMPRESS
    UNCOMPRESSED_LENGTH DECODE ENCODE DECODE_ORACLE FORMAT_BYTES FORMAT_PICO_TIME
    ABS ACOS ASIN ATAN ATAN2 CEIL CEILING CONV COS COT CRC32 CRC32C DEGREES EXP FLOOR LN
    LOG LOG10 LOG2 MOD PI POW POWER RADIANS RAND ROUND SIGN SIN SQRT TAN TRUNCATE TRUNC
    BIT_COUNT
    ADDDATE ADDTIME ADD_MONTHS CONVERT_TZ CURDATE CURRENT_DATE CURRENT_TIME
    CURRENT_TIMESTAMP CURTIME DATE DATE_ADD DATE_FORMAT DATE_SUB DATEDIFF DAY DAYNAME
    DAYOFMONTH DAYOFWEEK DAYOFYEAR EXTRACT FROM_DAYS FROM_UNIXTIME GET_FORMAT HOUR
    LAST_DAY LOCALTIME LOCALTIMESTAMP MAKEDATE MAKETIME MICROSECOND MINUTE MONTH
    MONTHNAME NOW PERIOD_ADD PERIOD_DIFF QUARTER SEC_TO_TIME SECOND STR_TO_DATE SUBDATE
    SUBTIME SYSDATE TIME TIME_FORMAT TIME_TO_SEC TIMEDIFF TIMESTAMP TIMESTAMPADD
    TIMESTAMPDIFF TO_DAYS TO_SECONDS UNIX_TIMESTAMP UTC_DATE UTC_TIME UTC_TIMESTAMP WEEK
    WEEKDAY WEEKOFYEAR YEAR YEARWEEK
    JSON_ARRAY JSON_ARRAY_APPEND JSON_ARRAY_INSERT JSON_ARRAY_INTERSECT JSON_ARRAYAGG
    JSON_COMPACT JSON_CONTAINS JSON_CONTAINS_PATH JSON_DEPTH JSON_DETAILED JSON_EQUALS
    JSON_EXISTS JSON_EXTRACT JSON_INSERT JSON_KEY_VALUE JSON_KEYS JSON_LENGTH JSON_LOOSE
    JSON_MERGE JSON_MERGE_PATCH JSON_MERGE_PRESERVE JSON_NORMALIZE JSON_OBJECT
    JSON_OBJECT_FILTER_KEYS JSON_OBJECT_TO_ARRAY JSON_OBJECTAGG JSON_OVERLAPS JSON_PRETTY
    JSON_QUERY JSON_QUOTE JSON_REMOVE JSON_REPLACE JSON_SCHEMA_VALID
    JSON_SCHEMA_VALIDATION_REPORT JSON_SEARCH JSON_SET JSON_STORAGE_FREE
    JSON_STORAGE_SIZE JSON_TABLE JSON_TYPE JSON_UNQUOTE JSON_VALID JSON_VALUE
    AVG BIT_AND BIT_OR BIT_XOR COUNT GROUP_CONCAT MAX MIN STD STDDEV STDDEV_POP
    STDDEV_SAMP SUM VAR_POP VAR_SAMP VARIANCE ANY_VALUE GROUPING CUME_DIST DENSE_RANK
    FIRST_VALUE LAG LAST_VALUE LEAD NTH_VALUE NTILE PERCENT_RANK RANK ROW_NUMBER MEDIAN
    PERCENTILE_CONT PERCENTILE_DISC
    IF IFNULL NULLIF COALESCE NVL NVL2 ISNULL INTERVAL GREATEST LEAST
    AES_DECRYPT AES_ENCRYPT DES_DECRYPT DES_ENCRYPT ENCRYPT MD5 SHA SHA1 SHA2 PASSWORD
    OLD_PASSWORD RANDOM_BYTES STATEMENT_DIGEST STATEMENT_DIGEST_TEXT KDF
    BIN_TO_UUID UUID_TO_BIN IS_UUID UUID UUID_SHORT UUID_V4 UUID_V7 SYS_GUID INET_ATON
    INET_NTOA INET6_ATON INET6_NTOA IS_IPV4 IS_IPV4_COMPAT IS_IPV4_MAPPED IS_IPV6
    NAME_CONST DEFAULT VERSION ICU_VERSION
    COLUMN_ADD COLUMN_CHECK COLUMN_CREATE COLUMN_DELETE COLUMN_EXISTS COLUMN_GET
    COLUMN_JSON COLUMN_LIST
    VEC_DISTANCE VEC_DISTANCE_COSINE VEC_DISTANCE_EUCLIDEAN VEC_FROMTEXT VEC_TOTEXT
    STRING_TO_VECTOR VECTOR_TO_STRING VECTOR_DIM
    POINT LINESTRING POLYGON MULTIPOINT MULTILINESTRING MULTIPOLYGON GEOMETRYCOLLECTION
    GEOMCOLLECTION MBRCONTAINS MBRCOVEREDBY MBRCOVERS MBRDISJOINT MBREQUAL MBREQUALS
    MBRINTERSECTS MBROVERLAPS MBRTOUCHES MBRWITHIN ASTEXT ASWKT ASBINARY ASWKB
    GEOMFROMTEXT GEOMFROMWKB POINTFROMTEXT X Y AREA CENTROID DIMENSION ENVELOPE
    GEOMETRYTYPE ISEMPTY ISSIMPLE SRID GLENGTH NUMPOINTS STARTPOINT ENDPOINT POINTN
    BOUNDARY BUFFER CONVEXHULL INTERSECTS WITHIN CONTAINS CROSSES DISJOINT EQUALS
    OVERLAPS TOUCHES
    ST_AREA ST_ASBINARY ST_ASWKB ST_ASGEOJSON ST_ASTEXT ST_ASWKT ST_BOUNDARY ST_BUFFER
    ST_BUFFER_STRATEGY ST_CENTROID ST_COLLECT ST_CONTAINS ST_CONVEXHULL ST_CROSSES
    ST_DIFFERENCE ST_DIMENSION ST_DISJOINT ST_DISTANCE ST_DISTANCE_SPHERE ST_ENDPOINT
    ST_ENVELOPE ST_EQUALS ST_EXTERIORRING ST_FRECHETDISTANCE ST_GEOHASH
    ST_GEOMCOLLFROMTEXT ST_GEOMCOLLFROMTXT ST_GEOMCOLLFROMWKB
    ST_GEOMETRYCOLLECTIONFROMTEXT ST_GEOMETRYCOLLECTIONFROMWKB ST_GEOMETRYFROMTEXT
    ST_GEOMETRYFROMWKB ST_GEOMETRYN ST_GEOMETRYTYPE ST_GEOMFROMGEOJSON ST_GEOMFROMTEXT
    ST_GEOMFROMWKB ST_HAUSDORFFDISTANCE ST_INTERIORRINGN ST_INTERSECTION ST_INTERSECTS
    ST_ISCLOSED ST_ISEMPTY ST_ISRING ST_ISSIMPLE ST_ISVALID ST_LATFROMGEOHASH
    ST_LATITUDE ST_LENGTH ST_LINEFROMTEXT ST_LINEFROMWKB ST_LINEINTERPOLATEPOINT
    ST_LINEINTERPOLATEPOINTS ST_LINESTRINGFROMTEXT ST_LINESTRINGFROMWKB
    ST_LONGFROMGEOHASH ST_LONGITUDE ST_MAKEENVELOPE ST_MLINEFROMTEXT ST_MLINEFROMWKB
    ST_MPOINTFROMTEXT ST_MPOINTFROMWKB ST_MPOLYFROMTEXT ST_MPOLYFROMWKB
    ST_MULTILINESTRINGFROMTEXT ST_MULTILINESTRINGFROMWKB ST_MULTIPOINTFROMTEXT
    ST_MULTIPOINTFROMWKB ST_MULTIPOLYGONFROMTEXT ST_MULTIPOLYGONFROMWKB ST_NUMGEOMETRIES
    ST_NUMINTERIORRING ST_NUMINTERIORRINGS ST_NUMPOINTS ST_OVERLAPS ST_POINTATDISTANCE
    ST_POINTFROMGEOHASH ST_POINTFROMTEXT ST_POINTFROMWKB ST_POINTN ST_POINTONSURFACE
    ST_POLYFROMTEXT ST_POLYFROMWKB ST_POLYGONFROMTEXT ST_POLYGONFROMWKB ST_RELATE
    ST_SIMPLIFY ST_SRID ST_STARTPOINT ST_SWAPXY ST_SYMDIFFERENCE ST_TOUCHES
    ST_TRANSFORM ST_UNION ST_VALIDATE ST_WITHIN ST_X ST_Y
    """
    )
)
"""Built-in functions that neither write nor depend on connection state."""

_PAREN_KEYWORDS: Final = frozenset(
    _names(
        """
    AGAINST ALL AND AS ASC BETWEEN BOTH BY CASE DESC DISTINCT DISTINCTROW DIV ELSE EXCEPT
    EXISTS FORCE FROM GROUP HAVING IGNORE IN INDEX INTERSECT IS JOIN KEY LATERAL LEADING
    LIKE MATCH NOT OF ON OR OVER PARTITION RANGE RECURSIVE REGEXP RLIKE ROW ROWS SELECT
    STRAIGHT_JOIN THEN TO TRAILING UNION USE USING VALUES WHEN WHERE WINDOW WITH XOR
    EXPLAIN DESCRIBE ANALYZE
    BIGINT BINARY CHARACTER DEC DECIMAL DOUBLE FLOAT FLOAT4 FLOAT8 INT INT1 INT2 INT3 INT4
    INT8 INTEGER MEDIUMINT NUMERIC REAL SMALLINT TINYINT VARBINARY VARCHAR VARCHARACTER
    """
    )
)
"""Reserved words that may be followed by ``(`` without being a function call."""

_SESSION_FUNCTIONS: Final = frozenset(
    _names(
        """
    LAST_INSERT_ID FOUND_ROWS ROW_COUNT CONNECTION_ID DATABASE SCHEMA USER CURRENT_USER
    SESSION_USER SYSTEM_USER CURRENT_ROLE ROLES_GRAPHML PS_CURRENT_THREAD_ID PS_THREAD_ID
    """
    )
)
_SIDE_EFFECT_FUNCTIONS: Final = frozenset(
    _names(
        """
    GET_LOCK RELEASE_LOCK RELEASE_ALL_LOCKS IS_FREE_LOCK IS_USED_LOCK SLEEP BENCHMARK
    MASTER_POS_WAIT SOURCE_POS_WAIT MASTER_GTID_WAIT WAIT_FOR_EXECUTED_GTID_SET
    WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS GTID_SUBSET GTID_SUBTRACT LOAD_FILE
    """
    )
)
_SEQUENCE_FUNCTIONS: Final = frozenset({"NEXTVAL", "SETVAL", "LASTVAL", "CURRVAL"})

_SPECIAL_FUNCTIONS: Final = {
    **{name: f"session-bound function: {name}" for name in _SESSION_FUNCTIONS},
    **{name: f"side-effecting function: {name}" for name in _SIDE_EFFECT_FUNCTIONS},
    **{name: f"sequence function: {name}" for name in _SEQUENCE_FUNCTIONS},
}
_SPECIAL_FUNCTIONS_B: Final = {k.encode(): v for k, v in _SPECIAL_FUNCTIONS.items()}
_SAFE_CALLS_B: Final = frozenset(n.encode() for n in _BUILTIN_FUNCTIONS | _PAREN_KEYWORDS)

_SQLALCHEMY_GENERIC_FUNCTIONS: Final = frozenset(
    _names(
        """
    AGGREGATE_STRINGS RANDOM MODE ARRAY_AGG GROUPING_SETS CUBE ROLLUP CHAR_LENGTH
    """
    )
)
"""SQLAlchemy generic functions whose names differ from what they render (all pure)."""

_WRITE_WORDS: Final = frozenset(
    _names(
        """
    INSERT UPDATE DELETE REPLACE CREATE DROP ALTER TRUNCATE GRANT REVOKE LOCK UNLOCK CALL
    SET LOAD RENAME HANDLER KILL PURGE OPTIMIZE CHANGE
    """
    )
)
"""Statement keywords that have no business inside a read."""

_FLAG_WORDS_B: Final = frozenset(
    w.encode()
    for w in _WRITE_WORDS
    | {"INTO", "SHARE", "NEXT", "PREVIOUS", "SQL_CALC_FOUND_ROWS", "CURRENT_USER"}
    | {"CURRENT_ROLE"}
    | _SEQUENCE_FUNCTIONS
)

# --------------------------------------------------------------------------------------
# Lexing
# --------------------------------------------------------------------------------------


def _quoted_body(quote: str, escapes: bool) -> str:
    """Regex for the rest of a quoted token after its opening quote."""
    q = re.escape(quote)
    if escapes:
        return rf"[^{q}\\]*+(?:(?:\\[\s\S]|{q}{q})[^{q}\\]*+)*+{q}"
    return rf"[^{q}]*+(?:{q}{q}[^{q}]*+)*+{q}"


_COMMENT_BODY = r"\*[^*]*+\*++(?:[^/*][^*]*+\*++)*+/"
_LINE_COMMENT_TAIL = r"(?=[\x00-\x20\x7f]|\Z)[^\n]*+"


def _fast_lexer(sq_escapes: bool, dq_escapes: bool) -> re.Pattern[str]:
    """Splitter whose groups are (value, quoted identifier, unterminated token).

    Every branch starts with one of a few characters so the regex engine can skip
    ordinary text at C speed; the branch is picked by a look-behind on that character.
    Values are single-quoted strings and ``%(name)s`` placeholders; comments are
    matched without a group.
    """
    return re.compile(
        r"""['"`/#%-](?:"""
        rf"((?<='){_quoted_body(chr(39), sq_escapes)}|(?<=%)\(\w*\)s)"
        rf"|(?<=/){_COMMENT_BODY}"
        r"|(?<=\#)[^\n]*+"
        rf"|(?<=-)-{_LINE_COMMENT_TAIL}"
        rf"""|(?<=["`])((?<="){_quoted_body('"', dq_escapes)}|(?<=`){_quoted_body("`", False)})"""
        r"""|((?<=['"`])[\s\S]*|(?<=/)\*[\s\S]*)"""
        r")"
    )


def _careful_lexer(sq_escapes: bool, dq_escapes: bool) -> re.Pattern[str]:
    """Tokenizer for executable comments, hints and quoted-name recovery."""
    return re.compile(
        rf"(?P<sq>'{_quoted_body(chr(39), sq_escapes)})"
        rf"""|(?P<dq>"{_quoted_body('"', dq_escapes)})"""
        rf"|(?P<bq>`{_quoted_body('`', False)})"
        r"|(?P<xo>/\*(?P<maria>M?)!(?P<version>\d*))"
        rf"|(?P<cm>/{_COMMENT_BODY})"
        r"|(?P<xc>\*/)"
        rf"|(?P<lc>\#[^\n]*+|--{_LINE_COMMENT_TAIL})"
        r"|(?P<ph>%\(\w*\)s)"
        r"""|(?P<bad>['"`]|/\*)"""
    )


_ESCAPE_MODES: Final = ((True, True), (False, False), (True, False))
"""(backslash escapes in '...', in "...") for default, NO_BACKSLASH_ESCAPES, ANSI_QUOTES."""

_FAST_LEXERS: Final = {mode: _fast_lexer(*mode) for mode in _ESCAPE_MODES}
_CAREFUL_LEXERS: Final = {mode: _careful_lexer(*mode) for mode in _ESCAPE_MODES}
_COMMENT_RE: Final = re.compile(rf"/{_COMMENT_BODY}")
_CAREFUL_TRIGGER_RE: Final = re.compile(r"/\*(?:M?!|\+)")
_VERSIONED_EXEC_RE: Final = re.compile(r"/\*(?:M!|!\d)")
_SIMPLE_NAME_RE: Final = re.compile(r"[0-9A-Za-z_$\u0080-\uffff]+")


def _mask_fast(sql: str, mode: tuple[bool, bool]) -> str | None:
    """Blank out comments, values become ``''`` and quoted identifiers ``````.

    Returns None if a string, identifier or comment is unterminated.
    """
    parts = _FAST_LEXERS[mode].split(sql)
    if len(parts) == 1:
        return sql
    unterminated = parts[3::4]
    if unterminated.count(None) != len(unterminated):
        return None
    parts[1::4] = [" " if v is None else " '' " for v in parts[1::4]]
    parts[2::4] = ["" if q is None else " `` " for q in parts[2::4]]
    del parts[3::4]
    return "".join(parts)


def _mask_careful(sql: str, mode: tuple[bool, bool], versioned_as_sql: bool, keep_names: bool) -> str | None:
    """Like :func:`_mask_fast`, also unwrapping executable comments; None if unparsable.

    Versioned and MariaDB-only executable comments are read as SQL or, when
    ``versioned_as_sql`` is false, as the plain comments some servers see.  With
    ``keep_names`` simple quoted identifiers keep their name (as `` `name` ``).
    """
    lexer = _CAREFUL_LEXERS[mode]
    out: list[str] = []
    pos = 0
    in_exec = False
    while (m := lexer.search(sql, pos)) is not None:
        out.append(sql[pos : m.start()])
        kind = m.lastgroup
        if kind == "sq" or kind == "ph":
            out.append(" '' ")
        elif kind == "lc":
            out.append(" ")
        elif kind == "dq" or kind == "bq":
            name = m.group()[1:-1]
            if keep_names and _SIMPLE_NAME_RE.fullmatch(name):
                out.append(f" `{name}` ")
            else:
                out.append(" `` ")
        elif kind == "xo":
            if in_exec:
                return None
            if (m.group("maria") or m.group("version")) and not versioned_as_sql:
                comment = _COMMENT_RE.match(sql, m.start())
                if comment is None:
                    return None
                out.append(" ")
                pos = comment.end()
                continue
            in_exec = True
            out.append(" ")
        elif kind == "cm":
            body = m.group()
            if body.startswith("/*+") and ("`" in body or '"' in body):
                return None
            out.append(" ")
        elif kind == "xc":
            if not in_exec:
                out.append("*")
                pos = m.start() + 1
                continue
            in_exec = False
            out.append(" ")
        else:
            return None
        pos = m.end()
    if in_exec:
        return None
    out.append(sql[pos:])
    return "".join(out)


def _byte_table(keep: bytes, other: str) -> bytes:
    """Translation table: ASCII upper-casing, word bytes kept, whitespace to space."""
    table = bytearray(256)
    word = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_$"
    for i in range(256):
        if 0x61 <= i <= 0x7A:
            table[i] = i - 32
        elif i >= 0x80 or i in word or i in keep:
            table[i] = i
        elif i in b" \t\n\r\x0b\x0c":
            table[i] = 0x20
        else:
            table[i] = ord(other)
    return bytes(table)


_T_WORDS: Final = _byte_table(b"@`", " ")
"""Bytes -> words separated by spaces (dots and brackets become spaces)."""
_T_CALLS: Final = _byte_table(b"@`.(", ",")
"""Bytes -> words, dots, ``(`` and spaces kept; every other punctuation becomes ``,``."""

_W = rb"0-9A-Z_$\x80-\xff`"
_FIRST_WORD_RE: Final = re.compile(rb" *([^ ]*)")
_WORD_TOKEN_RE: Final = re.compile(rb"[^ ]+")
_LOCKING_RE: Final = re.compile(
    rb"(?<![" + _W + rb".])(?:FOR +UPDATE|FOR +SHARE|LOCK +IN +SHARE +MODE)(?![" + _W + rb"])"
)
_NEXT_VALUE_RE: Final = re.compile(rb"(?<![" + _W + rb".])(NEXT|PREVIOUS) +VALUE +FOR(?![" + _W + rb"])")
_VARIABLE_RE: Final = re.compile(rb"@@?[" + _W + rb".]*")
_CTE_COLUMNS_RE: Final = re.compile(rb"[ ," + _W + rb"]*, *AS *\Z")
_QUALIFIED_REV_RE: Final = re.compile(rb"[" + _W + rb"]+(?: *\. *[" + _W + rb"]*)*")
_SUBQUERY_START_RE: Final = re.compile(rb" *(?:(?:SELECT|WITH|TABLE|VALUES)(?![" + _W + rb"])|\Z)")
_WORD_RES: dict[bytes, re.Pattern[bytes]] = {}
_FLAG_SEQUENCE_WORDS: Final = frozenset(w.encode() for w in _SEQUENCE_FUNCTIONS)
_WRITE_PRIORITY: Final = tuple(
    w.encode()
    for w in _names(
        """
        INSERT REPLACE UPDATE DELETE LOAD CREATE ALTER DROP RENAME TRUNCATE GRANT REVOKE CALL
        HANDLER LOCK UNLOCK KILL PURGE OPTIMIZE CHANGE SET
        """
    )
)
"""Write keywords in the order their presence is reported."""


def _word_re(word: bytes) -> re.Pattern[bytes]:
    """Regex matching ``word`` as a whole token."""
    pattern = _WORD_RES.get(word)
    if pattern is None:
        pattern = re.compile(rb"(?<![" + _W + rb"])" + word + rb"(?![" + _W + rb"])")
        _WORD_RES[word] = pattern
    return pattern


# --------------------------------------------------------------------------------------
# Classifying masked SQL
# --------------------------------------------------------------------------------------


def _after_dot(text: bytes, start: int) -> bool:
    """True if the token at ``start`` is qualified (follows a ``.``), hence an identifier."""
    return text[:start].rstrip(b" ").endswith(b".")


def _keyword_used(word: bytes, b2: bytes) -> bool:
    """True if ``word`` occurs in ``b2`` as a statement keyword (not as a function or name)."""
    for m in _word_re(word).finditer(b2):
        start, end = m.span()
        if _after_dot(b2, start):
            continue
        if word in (b"INSERT", b"REPLACE", b"TRUNCATE") and b2[end:].lstrip(b" ").startswith(b"("):
            continue
        if word == b"SET" and b2[:start].rstrip(b" ").endswith((b"CHARACTER", b"CHAR")):
            continue
        return True
    return False


def _flag_route(hits: set[bytes], b2: bytes) -> Route | None:
    """Resolve suspicious words found in a read; None if they turn out harmless."""
    if hits & {b"UPDATE", b"SHARE", b"LOCK"}:
        m = _LOCKING_RE.search(b2)
        if m is not None:
            return Route(PRIMARY, "locking read: " + " ".join(m.group().decode().split()))
    for word in _WRITE_PRIORITY:
        if word in hits and _keyword_used(word, b2):
            return Route(PRIMARY, f"write: {word.decode()}")
    if b"INTO" in hits and _keyword_used(b"INTO", b2):
        return Route(PRIMARY, "SELECT ... INTO (variables or file)")
    for word in sorted(hits & _FLAG_SEQUENCE_WORDS):
        if _word_re(word).search(b2):
            return Route(PRIMARY, f"sequence function: {word.decode()}")
    if hits & {b"NEXT", b"PREVIOUS"}:
        m = _NEXT_VALUE_RE.search(b2)
        if m is not None:
            return Route(PRIMARY, f"sequence: {m.group(1).decode()} VALUE FOR")
    if b"SQL_CALC_FOUND_ROWS" in hits:
        return Route(PRIMARY, "session-bound: SQL_CALC_FOUND_ROWS")
    for word in (b"CURRENT_USER", b"CURRENT_ROLE"):
        if word in hits and _keyword_used(word, b2):
            return Route(PRIMARY, f"session-bound function: {word.decode()}")
    return None


def _variable_route(b2: bytes) -> Route | None:
    """Primary for user variables and session/bare system variables; ``@@global.x`` is fine."""
    for m in _VARIABLE_RE.finditer(b2):
        var = m.group()
        if var.startswith(b"@@GLOBAL.") and len(var) > 9:
            continue
        name = var.decode("utf-8", "replace").lower()
        if var.startswith(b"@@"):
            return Route(PRIMARY, f"session variable: {name}")
        return Route(PRIMARY, f"user variable: {name}")
    return None


def _normalize_name(name: str) -> str:
    """Lower-case a possibly qualified, possibly backquoted function name."""
    return ".".join(part.strip().strip("`").strip() for part in name.lower().split("."))


def _call_route(b2: bytes, ro: frozenset[str]) -> Route | None:
    """Check every ``name(`` in ``b2``; None if all are known-safe calls or not calls."""
    chunks = b2.split(b"(")
    for i in range(len(chunks) - 1):
        head = chunks[i].rstrip(b" ")
        if not head:
            continue
        token = head[head.rfind(b" ") + 1 :]
        name = token[token.rfind(b",") + 1 :]
        if not name or name in _SAFE_CALLS_B:
            continue
        route = _judge_call(name, head, chunks[i + 1], b2, ro)
        if route is not None:
            return route
    return None


def _qualified_name(head: bytes) -> str:
    """The normalized ``schema.name`` that ends ``head`` (scanned backwards)."""
    tail = head[-400:][::-1]
    m = _QUALIFIED_REV_RE.match(tail)
    text = (m.group() if m else tail)[::-1]
    return _normalize_name(text.decode("utf-8", "replace"))


def _judge_call(name: bytes, head: bytes, after: bytes, b2: bytes, ro: frozenset[str]) -> Route | None:
    """Decide about one non-built-in ``name(``; None if it is not a call or is allowed."""
    if b"@" in name:
        return _variable_route(name) or Route(PRIMARY, "user variable")
    before = head[: len(head) - len(name)].rstrip(b" ")
    if b"." in name or before.endswith(b"."):
        full = _qualified_name(head)
        return None if full in ro else Route(PRIMARY, f"stored function: {full}")
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
    special = _SPECIAL_FUNCTIONS_B.get(name)
    if special is not None:
        return Route(PRIMARY, special)
    text = _normalize_name(name.decode("utf-8", "replace"))
    if text in ro:
        return None
    if b"`" in name:
        return Route(PRIMARY, f"call of a quoted identifier (stored function): {text or '?'}")
    return Route(PRIMARY, f"unknown function (stored function or UDF?): {text}")


def _scan_read(b1: bytes, raw: bytes, ro: frozenset[str]) -> Route | None:
    """Look for anything that disqualifies a read; None if it is a pure read."""
    hits = _FLAG_WORDS_B.intersection(b1.split())
    b2: bytes | None = None
    if hits:
        b2 = raw.translate(_T_CALLS)
        route = _flag_route(hits, b2)
        if route is not None:
            return route
    if b"@" in b1:
        b2 = b2 or raw.translate(_T_CALLS)
        route = _variable_route(b2)
        if route is not None:
            return route
    if b"(" in raw:
        b2 = b2 or raw.translate(_T_CALLS)
        route = _call_route(b2, ro)
        if route is not None:
            return route
    return None


def _words(b1: bytes, limit: int) -> list[tuple[bytes, int]]:
    """The first ``limit`` words of ``b1`` with their end offsets."""
    return [(m.group(), m.end()) for m in islice(_WORD_TOKEN_RE.finditer(b1), limit)]


_READ_STARTS: Final = frozenset({b"SELECT", b"WITH", b"VALUES", b"TABLE", b"HELP"})
_EXPLAIN_OPTIONS: Final = frozenset({b"EXTENDED", b"PARTITIONS", b"ANALYZE", b"VERBOSE"})
_DML_WORDS: Final = frozenset({b"INSERT", b"REPLACE", b"UPDATE", b"DELETE", b"LOAD"})


def _explain_route(b1: bytes, raw: bytes, ro: frozenset[str]) -> Route:
    """EXPLAIN/DESCRIBE/DESC of a read or of a table is a read; of a write, primary."""
    words = _words(b1, 8)
    i = 1
    while i < len(words):
        word = words[i][0]
        if word == b"FORMAT":
            i += 2
        elif word in _EXPLAIN_OPTIONS:
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
    route = _scan_read(b1, raw, ro)
    return route or Route(REPLICA, f"read: {verb}")


def _analyze_route(b1: bytes, raw: bytes, ro: frozenset[str]) -> Route:
    """MariaDB ANALYZE <statement> executes it; ANALYZE TABLE writes statistics."""
    words = _words(b1, 6)
    i = 1
    while i < len(words) and words[i][0] in (b"FORMAT", b"NO_WRITE_TO_BINLOG", b"LOCAL"):
        i += 2 if words[i][0] == b"FORMAT" else 1
    subject = words[i][0] if i < len(words) else b""
    if subject in (b"SELECT", b"WITH", b"VALUES"):
        return _scan_read(b1, raw, ro) or Route(REPLICA, "read: ANALYZE (executes the read)")
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


def _show_route(b1: bytes, raw: bytes, ro: frozenset[str]) -> Route:
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
            return Route(PRIMARY, f"session-scoped SHOW {label}")
        span = 1
    elif subject in _SHOW_SESSION:
        return Route(PRIMARY, f"{_SHOW_SESSION[subject]}: SHOW {label}")
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
    route = _scan_read(b1[end:], raw[end:], ro)
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


def _other_route(first: bytes, b1: bytes) -> Route:
    """Reason for a statement that is not a read."""
    label = first.decode("utf-8", "replace")[:40]
    words = [w for w, _ in _words(b1, 4)]
    if first in (b"START", b"SET") and b"TRANSACTION" in words[1:3]:
        return Route(PRIMARY, f"transaction control: {label} TRANSACTION")
    family = _FAMILIES.get(first)
    if family is None:
        return Route(PRIMARY, f"unrecognized statement: {label}")
    return Route(PRIMARY, f"{family}: {label}")


def _classify_part(raw: bytes, ro: frozenset[str]) -> Route | None:
    """Classify one statement of a (possibly multi-statement) text; None if empty."""
    b1 = raw.translate(_T_WORDS)
    m = _FIRST_WORD_RE.match(b1)
    first = m.group(1) if m else b""
    if not first:
        return None
    if first in _READ_STARTS:
        return _scan_read(b1, raw, ro) or _READ
    if first in (b"EXPLAIN", b"DESCRIBE", b"DESC"):
        return _explain_route(b1, raw, ro)
    if first == b"SHOW":
        return _show_route(b1, raw, ro)
    if first == b"ANALYZE":
        return _analyze_route(b1, raw, ro)
    return _other_route(first, b1)


def _classify_masked(masked: str, ro: frozenset[str]) -> Route:
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


def _classify_sql(sql: str, ro: frozenset[str]) -> Route:
    """Classify a SQL string under every tokenization the server could apply.

    A reading that does not parse (or leaves nothing to run) is an error on a server
    that uses it, hence harmless; the replica is chosen only if every other reading
    is a replica read.
    """
    modes = _ESCAPE_MODES if "\\" in sql else _ESCAPE_MODES[:1]
    careful = ("/*" in sql and _CAREFUL_TRIGGER_RE.search(sql) is not None) or (
        bool(ro) and ("`" in sql or '"' in sql)
    )
    exec_readings: tuple[bool, ...] = (True,)
    if careful and _VERSIONED_EXEC_RE.search(sql):
        exec_readings = (True, False)
    result: Route | None = None
    empty = False
    single = len(modes) * len(exec_readings) == 1
    for mode in modes:
        for versioned_as_sql in exec_readings:
            if careful:
                masked = _mask_careful(sql, mode, versioned_as_sql, keep_names=bool(ro))
            else:
                masked = _mask_fast(sql, mode)
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


_classify_sql_cached = lru_cache(maxsize=SQL_CACHE_SIZE)(_classify_sql)


def _classify_str(sql: str, ro: frozenset[str]) -> Route:
    """Cached string classification (long statements bypass the cache)."""
    if len(sql) <= MAX_CACHED_SQL_LENGTH:
        return _classify_sql_cached(sql, ro)
    return _classify_sql(sql, ro)


# --------------------------------------------------------------------------------------
# SQLAlchemy constructs
# --------------------------------------------------------------------------------------


class _ShapeCache:
    """Routes of construct shapes, keyed by SQLAlchemy's cache key; emptied when full.

    A plain dict: a hit is one lookup (atomic under the GIL, no lock); there are rarely more
    shapes than entries, so starting over when full bounds memory at little cost.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.routes: dict[Hashable, Route] = {}
        self.hits = 0
        self.misses = 0

    def put(self, key: Hashable, route: Route) -> None:
        self.misses += 1
        if len(self.routes) >= self.maxsize:
            self.routes.clear()
        self.routes[key] = route

    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, self.maxsize, len(self.routes))

    def clear(self) -> None:
        self.routes.clear()
        self.hits = self.misses = 0


_shapes = _ShapeCache(CONSTRUCT_CACHE_SIZE)


@lru_cache(maxsize=1)
def _default_dialect() -> Dialect:
    """The MySQL dialect used to compile constructs when none is given."""
    from sqlalchemy.dialects import mysql

    return mysql.dialect()  # type: ignore[no-any-return]


def _fragment_route(text: str, ro: frozenset[str], what: str) -> Route | None:
    """Classify a raw SQL fragment embedded in a construct; None if it is harmless."""
    route = _classify_str("SELECT " + text, ro)
    if route.target == PRIMARY:
        return Route(PRIMARY, f"{what}: {route.reason}")
    return None


def _for_update_reason(arg: ForUpdateArg) -> str:
    """Human-readable locking clause of ``with_for_update()``."""
    words = ["FOR SHARE" if arg.read else "FOR UPDATE"]
    if arg.of:
        words.append("OF")
    if arg.nowait:
        words.append("NOWAIT")
    if arg.skip_locked:
        words.append("SKIP LOCKED")
    return "locking read: " + " ".join(words)


def _function_route(fn: FunctionElement[Any], ro: frozenset[str]) -> Route | None:
    """Judge one SQL function element; None if it is a safe built-in or declared read-only."""
    if isinstance(fn, next_value):
        return Route(PRIMARY, f"sequence: NEXT VALUE FOR {fn.sequence.name}")
    name = getattr(fn, "name", None)
    if not isinstance(name, str):
        return Route(PRIMARY, f"unrecognized function element: {type(fn).__name__}")
    packages = tuple(getattr(fn, "packagenames", None) or ())
    if packages:
        full = _normalize_name(".".join((*packages, name)))
        return None if full in ro else Route(PRIMARY, f"stored function: {full}")
    upper = name.upper()
    special = _SPECIAL_FUNCTIONS.get(upper)
    if special is not None:
        return Route(PRIMARY, special)
    if upper in _BUILTIN_FUNCTIONS or upper in _SQLALCHEMY_GENERIC_FUNCTIONS:
        return None
    if _normalize_name(name) in ro:
        return None
    return Route(PRIMARY, f"unknown function (stored function or UDF?): {name.lower()}")


def _type_has_sql(type_: Any) -> bool:
    """True if a SQLAlchemy type wraps binds or columns in SQL at compile time."""
    cls = type(type_)
    plain = _PLAIN_TYPE_CLASSES.get(cls)
    if plain is None:
        plain = not (
            getattr(cls, "_has_column_expression", False) or getattr(cls, "_has_bind_expression", False)
        )
        _PLAIN_TYPE_CLASSES[cls] = plain
    if plain:
        return False
    return bool(
        getattr(type_, "_has_column_expression", False) or getattr(type_, "_has_bind_expression", False)
    )


_PLAIN_TYPE_CLASSES: dict[type, bool] = {}
"""Type classes whose class attributes say they never add SQL (memoized)."""


def _is_custom_op(op: Any) -> bool:
    """True for ``op("...")`` operators (plain operator functions are skipped cheaply)."""
    return type(op) not in _PLAIN_OPERATOR_TYPES and isinstance(op, custom_op)


_PLAIN_OPERATOR_TYPES: Final = frozenset({types.FunctionType, types.BuiltinFunctionType, type(None)})


def _mapper_injects_sql(mapper: Any) -> bool:
    """True if loading this ORM entity renders SQL that is not in the statement tree."""
    for m in mapper.self_and_descendants:
        if m.polymorphic_on is not None and not isinstance(m.polymorphic_on, Column):
            return True
        for prop in m.column_attrs:
            for col in prop.columns:
                if not isinstance(col, Column) or _type_has_sql(col.type):
                    return True
        for rel in m.relationships:
            if rel.lazy in ("joined", False):
                return True
    return False


_MAPPER_VERDICTS: dict[int, tuple[weakref.ref[Any], int, bool]] = {}


def _mapper_needs_compile(mapper: Any) -> bool:
    """Cached :func:`_mapper_injects_sql` (recomputed if properties are added)."""
    props = len(getattr(mapper, "_props", ()))
    entry = _MAPPER_VERDICTS.get(id(mapper))
    if entry is not None and entry[0]() is mapper and entry[1] == props:
        return entry[2]
    verdict = _mapper_injects_sql(mapper)
    _MAPPER_VERDICTS[id(mapper)] = (weakref.ref(mapper), props, verdict)
    return verdict


def _custom_operator_route(el: Any, ro: frozenset[str]) -> Route | None:
    """Check the verbatim SQL of ``op("...")`` operators."""
    for attr in ("operator", "modifier"):
        op = getattr(el, attr, None)
        if _is_custom_op(op):
            route = _fragment_route(f"1 {op.opstring} 1", ro, "custom operator")
            if route is not None:
                return route
    return None


def _hint_texts(el: Any) -> list[str]:
    """Texts of prefixes, suffixes and hints attached to a statement."""
    texts = [str(getattr(t, "text", t)) for t, _ in getattr(el, "_prefixes", ())]
    texts += [str(getattr(t, "text", t)) for t, _ in getattr(el, "_suffixes", ())]
    texts += [str(t) for t in dict(getattr(el, "_hints", None) or {}).values()]
    texts += [str(t) for _, t in getattr(el, "_statement_hints", ())]
    return texts


def _walk_construct(stmt: Any, ro: frozenset[str], dialect: Dialect | None) -> Route:
    """Walk a select-like construct looking for anything that rules out a replica."""
    needs_compile = False
    mappers: set[int] = set()
    for el in visitors.iterate(stmt):
        route: Route | None = None
        if isinstance(el, ForUpdateArg):
            return Route(PRIMARY, _for_update_reason(el))
        if isinstance(el, UpdateBase):
            kind = "INSERT" if el.is_insert else "UPDATE" if el.is_update else "DELETE"
            return Route(PRIMARY, f"write inside a read construct: {kind}")
        if isinstance(el, FunctionElement):
            route = _function_route(el, ro)
        elif isinstance(el, TextualSelect):
            route = _classify_str(el.element.text, ro)  # type: ignore[attr-defined]
            route = route if route.target == PRIMARY else None
        elif isinstance(el, TextClause):
            route = _fragment_route(el.text, ro, "text fragment")
        elif isinstance(el, ColumnClause) and el.is_literal:
            route = _fragment_route(el.name, ro, "literal column")
        elif isinstance(el, (BinaryExpression, UnaryExpression, ClauseList)):
            route = _custom_operator_route(el, ro)
        if route is not None:
            return route
        if isinstance(el, GenerativeSelect):
            arg = getattr(el, "_for_update_arg", None)
            if arg is not None:
                return Route(PRIMARY, _for_update_reason(arg))
            for text in _hint_texts(el):
                route = _fragment_route(text, ro, "prefix, suffix or hint")
                if route is not None:
                    return route
            if getattr(el, "_with_options", ()):
                needs_compile = True
        if isinstance(el, ColumnElement) and _type_has_sql(el.type):
            needs_compile = True
        annotations = getattr(el, "_annotations", None)
        mapper = annotations.get("parentmapper") if annotations else None
        if mapper is not None and id(mapper) not in mappers:
            mappers.add(id(mapper))
            needs_compile = needs_compile or _mapper_needs_compile(mapper)
    if needs_compile:
        return _compiled_route(stmt, ro, dialect)
    return _READ


def _compiled_route(stmt: Any, ro: frozenset[str], dialect: Dialect | None) -> Route:
    """Compile a construct and classify the SQL it renders."""
    try:
        sql = stmt.compile(dialect=dialect or _default_dialect()).string
    except Exception as exc:
        return Route(PRIMARY, f"could not compile to inspect it: {type(exc).__name__}")
    route = _classify_str(sql, ro)
    if route.target == PRIMARY:
        return Route(PRIMARY, f"compiled SQL: {route.reason}")
    return route


def _classify_select(stmt: Any, ro: frozenset[str], dialect: Dialect | None) -> Route:
    """Cached structural classification, keyed by SQLAlchemy's memoized statement cache key.

    Generating the key is not extra work: SQLAlchemy memoizes it on the statement and reuses it
    to find the compiled form when the statement is executed right after.
    """
    try:
        cache_key = stmt._generate_cache_key()
    except Exception:
        cache_key = None
    if cache_key is None:
        return _walk_construct(stmt, ro, dialect)
    key = (cache_key.key, ro, dialect.name if dialect is not None else None)
    route = _shapes.routes.get(key)
    if route is None:
        route = _walk_construct(stmt, ro, dialect)
        _shapes.put(key, route)
    else:
        _shapes.hits += 1
    return route


def _classify_construct(stmt: Any, ro: frozenset[str], dialect: Dialect | None) -> Route:
    """Classify a SQLAlchemy executable by its type and structure."""
    if isinstance(stmt, TextClause):
        return _classify_str(stmt.text, ro)
    if isinstance(stmt, TextualSelect):
        return _classify_str(stmt.element.text, ro)  # type: ignore[attr-defined]
    if isinstance(stmt, ExecutableDDLElement):
        return Route(PRIMARY, f"DDL: {type(stmt).__name__}")
    if getattr(stmt, "is_dml", False):
        kind = "INSERT" if stmt.is_insert else "UPDATE" if stmt.is_update else "DELETE"
        if not (stmt.is_insert or stmt.is_update or stmt.is_delete):
            kind = type(stmt).__name__
        return Route(PRIMARY, f"write: {kind}")
    if isinstance(stmt, FromStatement):
        return _classify_construct(stmt.element, ro, dialect)
    if isinstance(stmt, Query):
        return _classify_construct(stmt.statement, ro, dialect)
    if isinstance(stmt, StatementLambdaElement):
        return _classify_construct(stmt._resolved, ro, dialect)
    if isinstance(stmt, (GenerativeSelect, FunctionElement)):
        return _classify_select(stmt, ro, dialect)
    return Route(PRIMARY, f"unsupported statement type: {type(stmt).__name__}")


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _normalized_names(names: frozenset[Any]) -> frozenset[str]:
    """Validate and normalize a read-only function set (cached per distinct set)."""
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"read_only_functions must contain str names, not {type(name).__name__}")
    return frozenset(_normalize_name(name) for name in names if name.strip())


def classify(
    statement: Executable | str,
    *,
    dialect: Dialect | None = None,
    read_only_functions: Iterable[str] = _EMPTY,
) -> Route:
    """Return where ``statement`` may run: ``Route(REPLICA, ...)`` only for proven pure reads.

    ``statement`` is a SQL string or a SQLAlchemy ``Executable``.
    ``read_only_functions`` names stored functions/UDFs (case-insensitive, optionally
    ``schema.name``) that the application declares free of writes and session state.
    ``dialect`` is only used to compile constructs whose SQL is partly generated at
    compile time (default: the MySQL dialect).
    """
    if not read_only_functions:
        ro = _EMPTY
    elif isinstance(read_only_functions, str):
        raise TypeError("read_only_functions must be an iterable of str, not a str")
    else:
        names = read_only_functions
        ro = _normalized_names(names if isinstance(names, frozenset) else frozenset(names))
    if dialect is not None and not isinstance(dialect, Dialect):
        raise TypeError(f"dialect must be a SQLAlchemy Dialect or None, not {type(dialect).__name__}")
    cls = type(statement)
    if cls is Select:  # by far the most common statement: skip the type dispatch
        return _classify_select(statement, ro, dialect)
    if cls is str:
        return _classify_str(statement, ro)
    if isinstance(statement, str):
        return _classify_str(str.__str__(statement), ro)
    if isinstance(statement, Executable):
        return _classify_construct(statement, ro, dialect)
    raise TypeError(
        f"classify() expects a SQL str or a SQLAlchemy Executable, not {type(statement).__name__}"
    )


def cache_info() -> ClassifyCacheInfo:
    """Hit/miss statistics and sizes of the SQL-string and construct caches."""
    sql = _classify_sql_cached.cache_info()
    return ClassifyCacheInfo(
        sql=CacheStats(sql.hits, sql.misses, sql.maxsize or 0, sql.currsize),
        constructs=_shapes.stats(),
    )


def cache_clear() -> None:
    """Empty both classification caches and reset their statistics."""
    _classify_sql_cached.cache_clear()
    _shapes.clear()


classify.cache_info = cache_info  # type: ignore[attr-defined]
classify.cache_clear = cache_clear  # type: ignore[attr-defined]
