"""What the metrics integrations read from an engine's Observer, in one place.

Counts that ``engine.stats(reset=True)`` never lowers (:func:`totals`), each causal wait's
duration (:func:`on_causal_wait`) and the SQLAlchemy Engines behind a routing engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine import RoutingEngine
from ..observe import CausalWait, Stats

__all__ = ["routing_engine", "totals", "on_causal_wait", "server_engines"]

WaitListener = Callable[[float, bool], None]  # (seconds, reached)


def routing_engine(engine: Any) -> RoutingEngine:
    """The RoutingEngine of a RoutingEngine or AsyncRoutingEngine (``TypeError`` otherwise)."""
    sync = getattr(engine, "sync_engine", engine)
    if not isinstance(sync, RoutingEngine):
        raise TypeError(
            f"expected a rwsplit RoutingEngine or AsyncRoutingEngine, got {type(engine).__name__}"
        )
    return sync


def server_engines(engine: RoutingEngine) -> dict[Any, str]:
    """Every SQLAlchemy Engine of a routing engine → the server it reaches (fallback reads' engine
    is the primary's)."""
    named: dict[Any, str] = {e: "primary" for e in engine._all_engines()}
    named.update({e: name for name, e in engine.engines.items()})
    return named


def totals(engine: RoutingEngine) -> Stats:
    """Counts since the engine started, whatever ``stats(reset=True)`` did since."""
    return engine._observer.totals()


def on_causal_wait(engine: RoutingEngine, fn: WaitListener) -> Callable[[], None]:
    """Call ``fn(seconds, reached)`` after each causal wait; returns what stops it."""
    observer = engine._observer

    def listener(event: CausalWait) -> None:
        fn(event.seconds, event.reached)

    observer.listen("causal_wait", listener)
    return lambda: observer.remove("causal_wait", listener)
