"""What MySQL/MariaDB names mean: built-in, session-bound, side-effecting and version-gated functions.

The tables come from the MySQL 8 / MariaDB 11 manuals. :class:`Context` holds what one
classification assumes (declared read-only functions, the servers' version).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

from .route import PRIMARY, Route, Server


def _names(text: str) -> list[str]:
    """Whitespace-separated words of a vocabulary listing."""
    return text.split()


BUILTIN_FUNCTIONS: Final = frozenset(
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
    """``"10.11.0"`` -> ``(10, 11, 0)``."""
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
SEQUENCE_FUNCTIONS: Final = frozenset({"NEXTVAL", "SETVAL", "LASTVAL", "CURRVAL"})

_USER_LOCK_FUNCTIONS: Final = frozenset(
    _names("GET_LOCK RELEASE_LOCK RELEASE_ALL_LOCKS IS_FREE_LOCK IS_USED_LOCK")
)
"""Named user locks: held by the connection, touch no data (effect ``"session"``)."""

SPECIAL_FUNCTIONS: Final = {
    **{name: Route(PRIMARY, f"session-bound function: {name}", "session") for name in _SESSION_FUNCTIONS},
    **{
        name: Route(
            PRIMARY,
            f"side-effecting function: {name}",
            "session" if name in _USER_LOCK_FUNCTIONS else "write",
        )
        for name in _SIDE_EFFECT_FUNCTIONS
    },
    **{name: Route(PRIMARY, f"sequence function: {name}") for name in SEQUENCE_FUNCTIONS},
}
SPECIAL_FUNCTIONS_B: Final = {k.encode(): v for k, v in SPECIAL_FUNCTIONS.items()}


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


def server_floor(versions: Iterable[str | None]) -> Server | None:
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


class Context:
    """What one classification assumes: declared read-only functions and the server's built-ins.

    Interned per ``(read_only_functions, server)`` by :func:`context`, so caches key on identity.
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
        self.builtins = frozenset(n for n in BUILTIN_FUNCTIONS if _is_native(n, server))
        self.safe_calls = frozenset(n.encode() for n in self.builtins | _PAREN_KEYWORDS)


@lru_cache(maxsize=256)
def context(ro: frozenset[str], server: Server | None) -> Context:
    """The interned :class:`Context` for these read-only functions and this server."""
    return Context(ro, server)


GEOMETRY_ARITY: Final = {
    b"POINT": (2, 2), b"LINESTRING": (1, None), b"POLYGON": (1, None), b"MULTIPOINT": (1, None),
    b"MULTILINESTRING": (1, None), b"MULTIPOLYGON": (1, None), b"GEOMETRYCOLLECTION": (1, None),
    b"GEOMCOLLECTION": (1, None),
}  # fmt: skip
"""Geometry constructors parsed by the grammar only with these argument counts (min, max);
with other counts the server looks the name up as a stored function."""

SQLALCHEMY_GENERIC_FUNCTIONS: Final = frozenset(
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

FLAG_WORDS_B: Final = frozenset(
    w.encode()
    for w in _WRITE_WORDS
    | {"INTO", "SHARE", "NEXT", "PREVIOUS", "SQL_CALC_FOUND_ROWS", "CURRENT_USER"}
    | {"CURRENT_ROLE"}
    | SEQUENCE_FUNCTIONS
)


def normalize_name(name: str) -> str:
    """Lower-case a possibly qualified, possibly backquoted function name."""
    return ".".join(part.strip().strip("`").strip() for part in name.lower().split("."))


def arity_ok(arity: tuple[int, int | None], count: int) -> bool:
    """True if ``count`` arguments fit a geometry constructor's ``(min, max)`` arity."""
    low, high = arity
    return count >= low and (high is None or count <= high)
