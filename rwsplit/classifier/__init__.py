"""Decide whether a statement may run on a read-only replica or must go to the primary.

Only a statement proven to be a pure read goes to a replica; anything not understood goes
to the primary. README.rst ("Statement classification") states the rules.
"""

from .api import CacheStats, ClassifyCacheInfo, cache_clear, cache_info, classify
from .constructs import CONSTRUCT_CACHE_SIZE
from .route import PRIMARY, REPLICA, Effect, Route, Server, Target
from .statements import MAX_CACHED_SQL_LENGTH, SQL_CACHE_SIZE
from .vocabulary import server_floor

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
    "server_floor",
]
