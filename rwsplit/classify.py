"""Decide whether a statement may run on a read-only replica or must go to the primary.

``classify(statement)`` returns a :class:`Route` whose ``target`` is :data:`REPLICA` only
for statements whose text shows a pure read that neither changes data nor depends on (or
changes) the state of the connection; everything else, including anything the
classifier does not understand, goes to :data:`PRIMARY`.  What the text cannot show
(a view whose definition calls a writing function) is the application's to route.
Built-ins that are native only from some server version count as built-ins only when
``server`` says the servers have them.  Nothing here can send a
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
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
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
    "Effect",
    "Route",
    "Server",
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


Effect = Literal["read", "write", "lock", "session"]
Server = tuple[str, tuple[int, ...]]
"""``(flavour, version)`` of the servers that may run a read, e.g. ``("mariadb", (10, 11, 19))``."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a statement may run (``target``), a short human-readable ``reason`` and its ``effect``.

    ``effect`` is ``"read"`` (replica reads), ``"write"`` (may change data, or unknown),
    ``"lock"`` (a locking read and nothing else) or ``"session"`` (touches only the
    connection's own state); it defaults from the target (``"read"``/``"write"``).
    """

    target: Target
    reason: str
    effect: Effect = field(default=None, compare=False)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.effect is None:
            object.__setattr__(self, "effect", "read" if self.target == REPLICA else "write")


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
"""Built-in functions that neither write nor depend on connection state.

Some are native only from a given server version (see :data:`_MARIADB_NATIVE` and
:data:`_MYSQL_NATIVE`); on older servers, or when the version is unknown, the same
unqualified name resolves to a stored function of the current schema, which may write.
"""

# Per flavour: "<since> NAME..." (native from that version on), "<since>..<until> NAME..."
# (native from since, removed in until) or "- NAME..." (never native). Names not listed
# are native in every supported version: MariaDB >= 10.3.7 and MySQL >= 5.7.9 (the first GA
# releases; names added in their pre-GA milestones are not listed). Versions are from the
# MariaDB knowledge base / MySQL reference manual; where unsure the later one is used.
_MARIADB_NATIVE: Final = """
    10.3.16 JSON_MERGE_PATCH JSON_MERGE_PRESERVE
    10.3.29 ST_DISTANCE_SPHERE
    10.5.0  JSON_ARRAYAGG JSON_OBJECTAGG
    10.6.1  ADD_MONTHS SYS_GUID TO_CHAR JSON_TABLE
    10.7.1  NATURAL_SORT_KEY SFORMAT JSON_EQUALS JSON_NORMALIZE
    10.8.1  CRC32C
    10.9.1  JSON_OVERLAPS
    10.10.1 RANDOM_BYTES
    10.11.0 JSON_PRETTY
    11.0.2  FORMAT_PICO_TIME
    11.1.1  JSON_SCHEMA_VALID
    11.2.1  JSON_ARRAY_INTERSECT JSON_KEY_VALUE JSON_OBJECT_FILTER_KEYS JSON_OBJECT_TO_ARRAY
    11.3.1  KDF
    11.7.1  UUID_V4 UUID_V7 VEC_DISTANCE_COSINE VEC_DISTANCE_EUCLIDEAN VEC_FROMTEXT VEC_TOTEXT
    11.8.1  VEC_DISTANCE
    12.0.1  ST_COLLECT ST_GEOHASH ST_ISVALID ST_LATFROMGEOHASH ST_LONGFROMGEOHASH
            ST_POINTFROMGEOHASH ST_SIMPLIFY ST_VALIDATE
    12.2.1  TRUNC
    -       ANY_VALUE BIN_TO_UUID UUID_TO_BIN IS_UUID FORMAT_BYTES GEOMCOLLECTION GROUPING
            ICU_VERSION JSON_SCHEMA_VALIDATION_REPORT JSON_STORAGE_FREE JSON_STORAGE_SIZE
            MBRCOVEREDBY MBRCOVERS REGEXP_LIKE STATEMENT_DIGEST STATEMENT_DIGEST_TEXT
            STRING_TO_VECTOR VECTOR_TO_STRING VECTOR_DIM ST_BUFFER_STRATEGY ST_FRECHETDISTANCE
            ST_GEOMCOLLFROMTXT ST_HAUSDORFFDISTANCE ST_LATITUDE ST_LONGITUDE
            ST_LINEINTERPOLATEPOINT ST_LINEINTERPOLATEPOINTS ST_MAKEENVELOPE ST_NUMINTERIORRING
            ST_POINTATDISTANCE ST_SWAPXY ST_TRANSFORM
"""
_MYSQL_NATIVE: Final = """
    5.7.19  GEOMCOLLECTION
    5.7.22  JSON_ARRAYAGG JSON_OBJECTAGG JSON_MERGE_PATCH JSON_MERGE_PRESERVE JSON_PRETTY
            JSON_STORAGE_SIZE
    8.0.0   BIN_TO_UUID UUID_TO_BIN IS_UUID
    8.0.1   GROUPING
    8.0.2   JSON_STORAGE_FREE CUME_DIST DENSE_RANK FIRST_VALUE LAG LAST_VALUE LEAD NTH_VALUE
            NTILE PERCENT_RANK RANK ROW_NUMBER
    8.0.4   ICU_VERSION JSON_TABLE REGEXP_INSTR REGEXP_LIKE REGEXP_REPLACE REGEXP_SUBSTR
            STATEMENT_DIGEST STATEMENT_DIGEST_TEXT
    8.0.12  ST_LATITUDE ST_LONGITUDE
    8.0.13  ST_TRANSFORM
    8.0.16  FORMAT_BYTES FORMAT_PICO_TIME
    8.0.17  JSON_OVERLAPS JSON_SCHEMA_VALID JSON_SCHEMA_VALIDATION_REPORT
    8.0.21  JSON_VALUE
    8.0.23  ST_FRECHETDISTANCE ST_HAUSDORFFDISTANCE
    8.0.24  ST_COLLECT ST_LINEINTERPOLATEPOINT ST_LINEINTERPOLATEPOINTS ST_POINTATDISTANCE
    9.0.0   STRING_TO_VECTOR VECTOR_TO_STRING VECTOR_DIM
    5.7.9..8.0.0  ASTEXT ASWKT ASBINARY ASWKB GEOMFROMTEXT GEOMFROMWKB POINTFROMTEXT X Y AREA
            CENTROID DIMENSION ENVELOPE GEOMETRYTYPE ISEMPTY ISSIMPLE SRID GLENGTH NUMPOINTS
            STARTPOINT ENDPOINT POINTN BUFFER CONVEXHULL INTERSECTS WITHIN CONTAINS CROSSES
            DISJOINT EQUALS OVERLAPS TOUCHES MBREQUAL
    5.7.9..8.0.3  ENCODE DECODE DES_ENCRYPT DES_DECRYPT ENCRYPT
    5.7.9..8.0.11 PASSWORD
    -       OLD_PASSWORD NATURAL_SORT_KEY SFORMAT LENGTHB CHR TO_CHAR DECODE_ORACLE ADD_MONTHS
            SYS_GUID NVL NVL2 MEDIAN PERCENTILE_CONT PERCENTILE_DISC JSON_COMPACT JSON_DETAILED
            JSON_LOOSE JSON_EQUALS JSON_EXISTS JSON_NORMALIZE JSON_QUERY JSON_KEY_VALUE
            JSON_ARRAY_INTERSECT JSON_OBJECT_FILTER_KEYS JSON_OBJECT_TO_ARRAY COLUMN_ADD
            COLUMN_CHECK COLUMN_CREATE COLUMN_DELETE COLUMN_EXISTS COLUMN_GET COLUMN_JSON
            COLUMN_LIST KDF UUID_V4 UUID_V7 VEC_DISTANCE VEC_DISTANCE_COSINE
            VEC_DISTANCE_EUCLIDEAN VEC_FROMTEXT VEC_TOTEXT TRUNC CRC32C BOUNDARY ST_BOUNDARY
            ST_RELATE ST_POINTONSURFACE
"""

_Version = tuple[int, ...]
_NativeRange = tuple[_Version, "_Version | None"] | None


def _version(text: str) -> _Version:
    return tuple(int(part) for part in text.split("."))


def _native_table(text: str) -> dict[str, _NativeRange]:
    """Parse a ``_*_NATIVE`` listing into name -> (since, until) or None (never native)."""
    table: dict[str, _NativeRange] = {}
    spec: _NativeRange = None
    for token in text.split():
        if token == "-":
            spec = None
        elif token[0].isdigit():
            since, _, until = token.partition("..")
            spec = (_version(since), _version(until) if until else None)
        else:
            table[token] = spec
    return table


_NATIVE: Final = {"mariadb": _native_table(_MARIADB_NATIVE), "mysql": _native_table(_MYSQL_NATIVE)}
_VERSION_GATED: Final = frozenset(_NATIVE["mariadb"]) | frozenset(_NATIVE["mysql"])
"""Built-ins that are not native in every supported server version."""

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

_USER_LOCK_FUNCTIONS: Final = frozenset(
    _names("GET_LOCK RELEASE_LOCK RELEASE_ALL_LOCKS IS_FREE_LOCK IS_USED_LOCK")
)
"""Named user locks: held by the connection, touch no data (effect ``"session"``)."""

_SPECIAL_FUNCTIONS: Final = {
    **{name: Route(PRIMARY, f"session-bound function: {name}", "session") for name in _SESSION_FUNCTIONS},
    **{
        name: Route(
            PRIMARY,
            f"side-effecting function: {name}",
            "session" if name in _USER_LOCK_FUNCTIONS else "write",
        )
        for name in _SIDE_EFFECT_FUNCTIONS
    },
    **{name: Route(PRIMARY, f"sequence function: {name}") for name in _SEQUENCE_FUNCTIONS},
}
_SPECIAL_FUNCTIONS_B: Final = {k.encode(): v for k, v in _SPECIAL_FUNCTIONS.items()}


def _is_native(name: str, server: Server | None) -> bool:
    """True if built-in ``name`` is native on ``server`` (unknown server: only ungated names)."""
    if name not in _VERSION_GATED:
        return True
    if server is None:
        return False
    flavour, version = server
    table = _NATIVE.get(flavour)
    if table is None:
        return False
    if name not in table:
        return True
    spec = table[name]
    return spec is not None and spec[0] <= version and (spec[1] is None or version < spec[1])


_VERSION_RE: Final = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def _server_floor(versions: Iterable[str | None]) -> Server | None:
    """Oldest of the servers' ``get_server_info()`` strings as a :data:`Server`; None if any is
    unknown or unparsable, if the flavours differ, or if there are none."""
    floor: Server | None = None
    for info in versions:
        if not info:
            return None
        flavour = "mariadb" if "mariadb" in info.lower() else "mysql"
        found = _VERSION_RE.findall(info)
        if flavour == "mariadb" and len(found) > 1 and found[0] == ("5", "5", "5"):
            found = found[1:]  # "5.5.5-10.11.19-MariaDB": the prefix is for old clients
        if not found:
            return None
        version = tuple(int(part) for part in found[0])
        if floor is None:
            floor = (flavour, version)
        elif floor[0] != flavour:
            return None
        elif version < floor[1]:
            floor = (flavour, version)
    return floor


class _Ctx:
    """What one classification assumes: declared read-only functions and the server's built-ins.

    Interned per ``(read_only_functions, server)`` by :func:`_context`, so caches key on identity.
    """

    __slots__ = ("ro", "server", "builtins", "safe_calls")

    def __init__(self, ro: frozenset[str], server: Server | None) -> None:
        if server is not None and not (
            isinstance(server, tuple)
            and len(server) == 2
            and isinstance(server[0], str)
            and isinstance(server[1], tuple)
            and all(isinstance(part, int) for part in server[1])
        ):
            raise TypeError(f"server must be None or (flavour, (major, minor, patch)), not {server!r}")
        self.ro = ro
        self.server = server
        self.builtins = frozenset(n for n in _BUILTIN_FUNCTIONS if _is_native(n, server))
        self.safe_calls = frozenset(n.encode() for n in self.builtins | _PAREN_KEYWORDS)


@lru_cache(maxsize=256)
def _context(ro: frozenset[str], server: Server | None) -> _Ctx:
    return _Ctx(ro, server)


_GEOMETRY_ARITY: Final = {
    b"POINT": (2, 2), b"LINESTRING": (1, None), b"POLYGON": (1, None), b"MULTIPOINT": (1, None),
    b"MULTILINESTRING": (1, None), b"MULTIPOLYGON": (1, None), b"GEOMETRYCOLLECTION": (1, None),
    b"GEOMCOLLECTION": (1, None),
}  # fmt: skip
"""Geometry constructors parsed by the grammar only with these argument counts (min, max);
with other counts the server looks the name up as a stored function."""

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
        if _word_re(word).search(b2):
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
    for m in _word_re(b"INTO").finditer(b2):
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


def _normalize_name(name: str) -> str:
    """Lower-case a possibly qualified, possibly backquoted function name."""
    return ".".join(part.strip().strip("`").strip() for part in name.lower().split("."))


def _call_route(b2: bytes, raw: bytes, ro: _Ctx) -> Route | None:
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
            arity = _GEOMETRY_ARITY.get(name)
            if arity is None or _arity_ok(arity, _arg_count(raw, offset)):
                continue
            return Route(PRIMARY, f"{name.decode().lower()}() with this argument count: a stored function")
        route = _judge_call(name, head, chunks[i + 1], b2, ro)
        if route is not None:
            if route.effect == "write":
                return route
            found = found or route
    return found


def _arity_ok(arity: tuple[int, int | None], count: int) -> bool:
    low, high = arity
    return count >= low and (high is None or count <= high)


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
    return _normalize_name(text.decode("utf-8", "replace"))


def _judge_call(name: bytes, head: bytes, after: bytes, b2: bytes, ro: _Ctx) -> Route | None:
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
    special = _SPECIAL_FUNCTIONS_B.get(name)
    if special is not None:
        return special
    text = _normalize_name(name.decode("utf-8", "replace"))
    if text in ro.ro:
        return None
    if b"`" in name:
        return Route(PRIMARY, f"call of a quoted identifier (stored function): {text or '?'}")
    return Route(PRIMARY, f"unknown function (stored function or UDF?): {text}")


def _scan_read(b1: bytes, raw: bytes, ro: _Ctx, locks_nothing: bool = False) -> Route | None:
    """Look for anything that disqualifies a read; None if it is a pure read.

    A write wins over anything else; a locking read that also depends on session state counts
    as a write. With ``locks_nothing`` (EXPLAIN) shared-lock clauses are ignored (``FOR UPDATE``
    is not: a read-only MariaDB replica refuses even ``EXPLAIN SELECT ... FOR UPDATE``).
    """
    hits = _FLAG_WORDS_B.intersection(b1.split())
    b2: bytes | None = None
    lock: str | None = None
    found: Route | None = None
    if hits:
        b2 = raw.translate(_T_CALLS)
        if hits & _LOCK_WORDS:
            b2, lock = _blank_locking(b2)
            if lock is not None:
                hits = _FLAG_WORDS_B.intersection(b2.translate(_T_WORDS).split())
                lock = None if locks_nothing and "UPDATE" not in lock else lock
        route = _flag_route(hits, b2)
        if route is not None:
            if route.effect == "write":
                return route
            found = route
    if b"@" in b1:
        b2 = b2 or raw.translate(_T_CALLS)
        route = _variable_route(b2)
        if route is not None:
            found = found or route
    if b"(" in raw:
        b2 = b2 or raw.translate(_T_CALLS)
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


def _words(b1: bytes, limit: int) -> list[tuple[bytes, int]]:
    """The first ``limit`` words of ``b1`` with their end offsets."""
    return [(m.group(), m.end()) for m in islice(_WORD_TOKEN_RE.finditer(b1), limit)]


_READ_STARTS: Final = frozenset({b"SELECT", b"WITH", b"VALUES", b"TABLE", b"HELP"})
_EXPLAIN_OPTIONS: Final = frozenset({b"EXTENDED", b"PARTITIONS", b"ANALYZE", b"VERBOSE"})
_DML_WORDS: Final = frozenset({b"INSERT", b"REPLACE", b"UPDATE", b"DELETE", b"LOAD"})


def _explain_route(b1: bytes, raw: bytes, ro: _Ctx) -> Route:
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
    route = _scan_read(b1, raw, ro, locks_nothing=not executes)
    if route is not None and route.effect == "lock" and not executes:
        return Route(PRIMARY, f"{verb} of a FOR UPDATE read (a read-only replica refuses it)")
    return route or Route(REPLICA, f"read: {verb}")


def _analyze_route(b1: bytes, raw: bytes, ro: _Ctx) -> Route:
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


def _show_route(b1: bytes, raw: bytes, ro: _Ctx) -> Route:
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


_SET_WRITES: Final = frozenset({b"GLOBAL", b"PERSIST", b"PERSIST_ONLY"})
_SET_WRITE_SUBJECTS: Final = frozenset({b"PASSWORD", b"DEFAULT", b"TRANSACTION", b"STATEMENT"})
"""Words (anywhere / right after ``SET``) that make it more than a change of connection state."""
_SET_STATEMENT_RE: Final = re.compile(
    rb"\s*SET\s+STATEMENT\s+(?:[A-Z_][A-Z0-9_$]*\s*=\s*(?:''|[-+]?(?:\d+\.?\d*|\.\d+)(?:E[-+]?\d+)?"
    rb"|ON|OFF|TRUE|FALSE|DEFAULT|NULL)\s*(?:,\s*|(?=\s)))+\s*FOR(?![" + _W + rb"])"
)
"""``SET STATEMENT var=literal[, ...] FOR``: the variables apply to the inner statement only."""


def _other_route(first: bytes, b1: bytes, raw: bytes, ro: _Ctx) -> Route:
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


def _set_route(b1: bytes, raw: bytes, ro: _Ctx, route: Route) -> Route:
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
    values = _scan_read(b1[start:], raw[start:], ro)
    if values is not None and values.effect != "session":
        return Route(PRIMARY, f"{route.reason}; {values.reason}")
    return Route(PRIMARY, route.reason, "session")


def _temporary_table_route(words: list[bytes], b1: bytes, raw: bytes, ro: _Ctx, route: Route) -> Route:
    """CREATE/DROP TEMPORARY TABLE affect only the connection, unless a query part may write."""
    kind = words.index(b"TEMPORARY")
    if kind + 1 >= len(words) or words[kind + 1] not in (b"TABLE", b"TABLES"):
        return route
    query = _word_re(b"SELECT").search(b1)
    if query is not None:
        rest = _scan_read(b1[query.start() :], raw[query.start() :], ro)
        if rest is not None:
            return Route(PRIMARY, f"{route.reason} ... {rest.reason}")
    return Route(PRIMARY, f"{route.reason} TEMPORARY TABLE", "session")


def _classify_part(raw: bytes, ro: _Ctx) -> Route | None:
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
    return _other_route(first, b1, raw, ro)


def _classify_masked(masked: str, ro: _Ctx) -> Route:
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


def _classify_sql(sql: str, ro: _Ctx) -> Route:
    """Classify a SQL string under every tokenization the server could apply.

    A reading that does not parse (or leaves nothing to run) is an error on a server
    that uses it, hence harmless; the replica is chosen only if every other reading
    is a replica read.
    """
    modes = _ESCAPE_MODES if "\\" in sql else _ESCAPE_MODES[:1]
    careful = ("/*" in sql and _CAREFUL_TRIGGER_RE.search(sql) is not None) or (
        bool(ro.ro) and ("`" in sql or '"' in sql)
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
                masked = _mask_careful(sql, mode, versioned_as_sql, keep_names=bool(ro.ro))
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


def _classify_str(sql: str, ro: _Ctx) -> Route:
    """Cached string classification (long statements bypass the cache).

    The key holds the interned context, i.e. the read-only functions and the server version.
    """
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


def _fragment_route(text: str, ro: _Ctx, what: str) -> Route | None:
    """Classify a raw SQL fragment embedded in a construct; None if it is harmless."""
    route = _classify_str("SELECT " + text, ro)
    if route.target == PRIMARY:
        return Route(PRIMARY, f"{what}: {route.reason}", route.effect)
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


def _function_route(fn: FunctionElement[Any], ro: _Ctx) -> Route | None:
    """Judge one SQL function element; None if it is a safe built-in or declared read-only."""
    if isinstance(fn, next_value):
        return Route(PRIMARY, f"sequence: NEXT VALUE FOR {fn.sequence.name}")
    name = getattr(fn, "name", None)
    if not isinstance(name, str):
        return Route(PRIMARY, f"unrecognized function element: {type(fn).__name__}")
    packages = tuple(getattr(fn, "packagenames", None) or ())
    if packages:
        full = _normalize_name(".".join((*packages, name)))
        return None if full in ro.ro else Route(PRIMARY, f"stored function: {full}")
    upper = name.upper()
    special = _SPECIAL_FUNCTIONS.get(upper)
    if special is not None:
        return special
    if upper in ro.builtins:
        arity = _GEOMETRY_ARITY.get(upper.encode())
        if arity is None or _arity_ok(arity, len(getattr(fn, "clauses", ()))):
            return None
        return Route(PRIMARY, f"{name.lower()}() with this argument count: a stored function")
    if upper in _SQLALCHEMY_GENERIC_FUNCTIONS:
        return None
    if _normalize_name(name) in ro.ro:
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


def _custom_operator_route(el: Any, ro: _Ctx) -> Route | None:
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


def _walk_construct(stmt: Any, ro: _Ctx, dialect: Dialect | None) -> Route:
    """Walk a select-like construct looking for anything that rules out a replica.

    A write ends the walk; locking and session-bound findings are collected (together: a write).
    """
    needs_compile = False
    mappers: set[int] = set()
    lock: str | None = None
    found: list[Route] = []
    for el in visitors.iterate(stmt):
        route: Route | None = None
        if isinstance(el, ForUpdateArg):
            lock = lock or _for_update_reason(el)
            continue
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
            if route.effect == "write":
                return route
            found.append(route)
        if isinstance(el, GenerativeSelect):
            arg = getattr(el, "_for_update_arg", None)
            if arg is not None:
                lock = lock or _for_update_reason(arg)
            for text in _hint_texts(el):
                route = _fragment_route(text, ro, "prefix, suffix or hint")
                if route is not None:
                    if route.effect == "write":
                        return route
                    found.append(route)
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
    if lock is not None:
        found.append(Route(PRIMARY, lock, "lock"))
    if not found:
        return _READ
    if len({r.effect for r in found}) > 1:
        return Route(PRIMARY, "; ".join(dict.fromkeys(r.reason for r in found)))
    return found[0]


def _compiled_route(stmt: Any, ro: _Ctx, dialect: Dialect | None) -> Route:
    """Compile a construct and classify the SQL it renders."""
    try:
        sql = stmt.compile(dialect=dialect or _default_dialect()).string
    except Exception as exc:
        return Route(PRIMARY, f"could not compile to inspect it: {type(exc).__name__}")
    route = _classify_str(sql, ro)
    if route.target == PRIMARY:
        return Route(PRIMARY, f"compiled SQL: {route.reason}", route.effect)
    return route


def _classify_select(stmt: Any, ro: _Ctx, dialect: Dialect | None) -> Route:
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
    key = (cache_key.key, ro.ro, ro.server, dialect.name if dialect is not None else None)
    route = _shapes.routes.get(key)
    if route is None:
        route = _walk_construct(stmt, ro, dialect)
        _shapes.put(key, route)
    else:
        _shapes.hits += 1
    return route


def _classify_construct(stmt: Any, ro: _Ctx, dialect: Dialect | None) -> Route:
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
    server: Server | None = None,
) -> Route:
    """Return where ``statement`` may run: ``Route(REPLICA, ...)`` only for proven pure reads.

    ``statement`` is a SQL string or a SQLAlchemy ``Executable``.
    ``read_only_functions`` names stored functions/UDFs (case-insensitive, optionally
    ``schema.name``) that the application declares free of writes and session state.
    ``dialect`` is only used to compile constructs whose SQL is partly generated at
    compile time (default: the MySQL dialect).
    ``server`` is the version floor of the servers that may run the read, e.g.
    ``("mariadb", (10, 11, 19))``; built-ins newer than that (or all version-gated ones
    when None, i.e. unknown) count as stored functions.
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
    ctx = _context(ro, server)
    cls = type(statement)
    if cls is Select:  # by far the most common statement: skip the type dispatch
        return _classify_select(statement, ctx, dialect)
    if cls is str:
        return _classify_str(statement, ctx)
    if isinstance(statement, str):
        return _classify_str(str.__str__(statement), ctx)
    if isinstance(statement, Executable):
        return _classify_construct(statement, ctx, dialect)
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
