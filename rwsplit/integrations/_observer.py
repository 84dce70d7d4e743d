"""What the metrics integrations read from an engine's Observer, in one place.

They need two things :mod:`rwsplit.observe` does not offer yet: counts that
``engine.stats(reset=True)`` never lowers (:func:`totals`) and each causal wait's duration
(:func:`on_causal_wait`). Until it does, a :class:`_Tap` wraps the Observer's ``stats`` and
``waited`` of the engines the integrations watch.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..engine import RoutingEngine
from ..observe import CausalWaits, Observer, Stats

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
    return _tap(engine._observer).totals()


def on_causal_wait(engine: RoutingEngine, fn: WaitListener) -> Callable[[], None]:
    """Call ``fn(seconds, reached)`` after each causal wait; returns what stops it."""
    tap = _tap(engine._observer)
    with tap.lock:
        tap.listeners = [*tap.listeners, fn]

    def stop() -> None:
        with tap.lock:
            tap.listeners = [f for f in tap.listeners if f is not fn]

    return stop


def _plus(a: Stats, b: Stats) -> Stats:
    """``a`` + ``b`` counts: ``since`` of ``a`` (the earlier window), percentiles of ``b``."""
    statements, kinds = Counter(a.statements), Counter(a.kinds)
    statements.update(b.statements)
    kinds.update(b.kinds)
    reads, replica_reads = a.reads + b.reads, a.replica_reads + b.replica_reads
    waits = CausalWaits(
        a.causal_waits.count + b.causal_waits.count,
        a.causal_waits.timeouts + b.causal_waits.timeouts,
        b.causal_waits.p50_ms,
        b.causal_waits.p99_ms,
    )
    return replace(
        b,
        statements=dict(statements),
        kinds=dict(kinds),
        reads=reads,
        replica_reads=replica_reads,
        offload=replica_reads / reads if reads else None,
        causal_waits=waits,
        failovers=a.failovers + b.failovers,
        fallbacks=a.fallbacks + b.fallbacks,
        replicas_out=a.replicas_out + b.replicas_out,
        replicas_readmitted=a.replicas_readmitted + b.replicas_readmitted,
        since=a.since,
    )


class _Tap:
    """Keeps what each reset took away and tells listeners of each causal wait."""

    def __init__(self, observer: Observer) -> None:
        self.lock = threading.Lock()
        self.carried: Stats | None = None  # the totals each reset returned, added up
        self.listeners: list[WaitListener] = []
        self._stats = observer.stats
        waited = observer.waited

        def stats(reset: bool = False) -> Stats:
            if not reset:
                return self._stats(False)
            with self.lock:
                before = self._stats(True)
                self.carried = before if self.carried is None else _plus(self.carried, before)
            return before

        def waited_and_told(seconds: float, reached: bool) -> None:
            waited(seconds, reached)
            for fn in self.listeners:
                try:
                    fn(seconds, reached)
                except Exception:  # a metrics bug must not fail the read
                    logging.getLogger("rwsplit").exception("rwsplit causal wait listener %r failed", fn)

        setattr(observer, "stats", stats)  # noqa: B010  (instance attributes shadow the methods)
        setattr(observer, "waited", waited_and_told)  # noqa: B010

    def totals(self) -> Stats:
        with self.lock:
            now = self._stats(False)
            return now if self.carried is None else _plus(self.carried, now)


_taps: weakref.WeakKeyDictionary[Observer, _Tap] = weakref.WeakKeyDictionary()
_taps_lock = threading.Lock()


def _tap(observer: Observer) -> _Tap:
    with _taps_lock:
        tap = _taps.get(observer)
        if tap is None:
            tap = _taps[observer] = _Tap(observer)
        return tap
