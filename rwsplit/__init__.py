"""rwsplit: read/write splitting for SQLAlchemy on MySQL/MariaDB.

Writes go to the primary, reads to replicas within a lag bound, and a session that wrote
reads its own writes::

    engine = rwsplit.create_engine(primary_url, replicas=[replica_url, ...])
    Session = rwsplit.sessionmaker(engine)
"""

from typing import TYPE_CHECKING

from ._version import __version__
from .balancer import (
    Balancer,
    LeastOutstandingBalancer,
    RandomBalancer,
    RoundRobinBalancer,
    WeightedBalancer,
)
from .balancer import __getattr__ as _balancer_names  # the balancers' pre-0.2 names, deprecated
from .causal import ConsistencyScope, consistency
from .classifier import Route, classify
from .connection import RoutingConnection, RoutingTransaction
from .consistency_state import pin_primary_until, pinned_until
from .engine import RoutingEngine, ServerReport, create_engine
from .errors import (
    NoReplicaAvailable,
    PrimaryUnavailable,
    RwsplitError,
    SandboxError,
    ServerBinariesNotFound,
)
from .failover import Retry
from .integrations.scoping import RoutingScopedSession, scoped_session
from .observe import CausalWaits, ReplicaEvent, RouteEvent, Stats, listen, listens_for
from .observe import remove as remove_listener
from .session import RoutingSession, UsePrimary, sessionmaker
from .tokens import merge_tokens
from .urls import parse_url_list

if TYPE_CHECKING:  # type checkers see the async API's real types; at run time it loads on first use
    from .aio import (
        AsyncRoutingConnection,
        AsyncRoutingEngine,
        AsyncRoutingSession,
        AsyncRoutingTransaction,
        async_sessionmaker,
        create_async_engine,
    )

_ASYNC_NAMES = frozenset(
    {
        "create_async_engine",
        "async_sessionmaker",
        "AsyncRoutingEngine",
        "AsyncRoutingSession",
        "AsyncRoutingConnection",
        "AsyncRoutingTransaction",
    }
)


def __getattr__(name: str) -> object:
    """The async API (:mod:`rwsplit.aio`) on first use: ``import rwsplit`` stays free of asyncio."""
    if name in _ASYNC_NAMES:
        from . import aio

        return getattr(aio, name)
    try:
        return _balancer_names(name)
    except AttributeError:
        raise AttributeError(f"module 'rwsplit' has no attribute {name!r}") from None


__all__ = [
    "__version__",
    "create_async_engine",
    "async_sessionmaker",
    "AsyncRoutingEngine",
    "AsyncRoutingSession",
    "AsyncRoutingConnection",
    "AsyncRoutingTransaction",
    "classify",
    "Route",
    "create_engine",
    "sessionmaker",
    "scoped_session",
    "RoutingScopedSession",
    "RoutingEngine",
    "RoutingSession",
    "RoutingConnection",
    "RoutingTransaction",
    "ServerReport",
    "UsePrimary",
    "Retry",
    "Stats",
    "CausalWaits",
    "RouteEvent",
    "ReplicaEvent",
    "listen",
    "listens_for",
    "remove_listener",
    "consistency",
    "ConsistencyScope",
    "merge_tokens",
    "parse_url_list",
    "pinned_until",
    "pin_primary_until",
    "Balancer",
    "LeastOutstandingBalancer",
    "RoundRobinBalancer",
    "RandomBalancer",
    "WeightedBalancer",
    "RwsplitError",
    "PrimaryUnavailable",
    "NoReplicaAvailable",
    "SandboxError",
    "ServerBinariesNotFound",
]
