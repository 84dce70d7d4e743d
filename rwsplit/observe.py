"""Routing made visible: the decision log (logger ``rwsplit.route``), counters and events.

Every routed statement passes :meth:`Observer.routed` once with its final decision. Counting is
lock-free (each thread counts in its own dict; :meth:`Observer.stats` adds them up); the log
record and the ``route`` event cost nothing unless DEBUG is on for ``rwsplit.route`` or a
listener is registered. Replica state events come from the monitor's published snapshots.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .classifier import PRIMARY

if TYPE_CHECKING:
    from .router import Decision
    from .state import Snapshot

__all__ = [
    "EVENTS",
    "KINDS",
    "CausalWait",
    "CausalWaits",
    "ReplicaEvent",
    "RouteEvent",
    "Stats",
    "Observer",
    "ROUTE_LOG",
    "listen",
    "listens_for",
    "remove",
]

ROUTE_LOG = logging.getLogger("rwsplit.route")
_DEBUG = logging.DEBUG
_logging_debug = ROUTE_LOG.isEnabledFor  # bound once
# logging's own per-level answer cache (Logger._cache, cleared in place whenever a level changes):
# a cached False skips the call on every statement. Anything else asks isEnabledFor, which also
# honours Logger.disabled; a logger class with its own isEnabledFor is always asked.
_debug_cache: dict[int, bool] = (
    getattr(ROUTE_LOG, "_cache", {}) if type(ROUTE_LOG).isEnabledFor is logging.Logger.isEnabledFor else {}
)
EVENTS = ("route", "replica_down", "replica_up", "lag_exceeded", "causal_wait")
KINDS = ("read", "write", "lock", "session", "hint", "pinned", "causal", "fallback", "retry")
"""Decision kinds: replica reads (``read``; ``causal`` after a wait), statements the classifier
sent to the primary (``write``, ``lock``, ``session``), reads sent there on purpose (``hint``:
an option or ``use_primary``; ``pinned``: read-your-writes), and reads that could not leave it
(``fallback``: no eligible replica or a causal wait timed out; ``retry``: a replica failed)."""
_PRIMARY_KINDS = frozenset({"write", "lock", "session"})
_STATEMENT_TEXT = 200  # characters of statement text in the log, when asked for
_WAIT_SAMPLES = 2048


@dataclass(frozen=True)
class RouteEvent:
    """One routed statement: where it went, why, and that replica's lag (None on the primary)."""

    target: str
    reason: str
    kind: str
    lag: float | None
    statement: str | None  # only with ``create_engine(log_statements=True)``, truncated


@dataclass(frozen=True)
class ReplicaEvent:
    """A replica left or rejoined the eligible set (``replica_down``/``replica_up``) or its lag
    crossed ``max_lag`` (``lag_exceeded``)."""

    name: str
    event: str
    reason: str
    lag: float | None


@dataclass(frozen=True)
class CausalWait:
    """A causal wait on a replica ended: how long it took and whether the replica got there."""

    replica: str
    seconds: float
    reached: bool


@dataclass(frozen=True)
class CausalWaits:
    """Causal waits on replicas: how many, how many timed out, median and p99 in milliseconds
    (of the latest 2,048)."""

    count: int
    timeouts: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class Stats:
    """What an engine routed since it started (or since ``stats(reset=True)``).

    ``statements``: routing decisions per server: one per statement the application runs; a
    flush, whose statements all go to the primary, counts once per connection the ORM asks for.
    ``kinds``: decisions per kind (:data:`KINDS`). ``reads``/``replica_reads``: reads, and those a
    replica served; ``offload`` is their ratio (None before the first read).
    ``failovers``: reads retried elsewhere after their replica failed; ``fallbacks``: reads meant
    for a replica that ran on the primary. ``replicas_out``/``replicas_readmitted``: replicas
    that left/rejoined the eligible set.
    """

    statements: Mapping[str, int]
    kinds: Mapping[str, int]
    reads: int
    replica_reads: int
    offload: float | None
    causal_waits: CausalWaits
    failovers: int
    fallbacks: int
    replicas_out: int
    replicas_readmitted: int
    since: float


_Counts = tuple[defaultdict[str, int], defaultdict[str, int]]  # statements per target, per kind


def _add(total: _Counts, counts: _Counts, sign: int = 1) -> None:
    """Add ``counts`` (times ``sign``) into ``total``; ``dict()`` copies while their thread counts."""
    for into, source in zip(total, counts, strict=True):
        for key, n in dict(source).items():
            into[key] += sign * n


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Observer:
    """One routing engine's counters, decision log and event listeners."""

    def __init__(
        self,
        max_lag: float,
        *,
        lag: Callable[[str], float | None] = lambda name: None,
        log_statements: bool = False,
    ) -> None:
        self.max_lag = max_lag
        self._lag = lag  # a replica's last measured lag: read only when logging or listening
        self.log_statements = log_statements
        self._listeners: dict[str, list[Callable[[Any], None]]] = {name: [] for name in EVENTS}
        self._listening = False  # any route listener: read once per statement
        self._local = threading.local()
        self._lock = threading.Lock()  # registration of a thread's counts, stats(), events
        self._threads: list[tuple[weakref.ref[threading.Thread], _Counts]] = []
        self._retired: _Counts = (defaultdict(int), defaultdict(int))
        self._events: Counter[str] = Counter()
        self._waits: deque[float] = deque(maxlen=_WAIT_SAMPLES)
        self._since = self._started = time.time()
        self._carried: _Counts = (defaultdict(int), defaultdict(int))  # what resets took away
        self._carried_events: Counter[str] = Counter()

    # ------------------------------------------------------------------ per statement
    def routed(self, decision: Decision, statement: Any) -> None:
        """Count one routed statement (a ``deferred`` decision: once it ran, :meth:`counted`); log it
        and tell ``route`` listeners when anyone listens."""
        if not decision.deferred:  # counted() inlined: one frame less per statement
            try:
                targets, kinds = self._local.counts
            except AttributeError:
                targets, kinds = self._register()
            targets[decision.target] += 1
            kinds[decision.kind] += 1
        if self._listening or (_debug_cache.get(_DEBUG) is not False and _logging_debug(_DEBUG)):
            self._emit(decision, statement)

    def counted(self, decision: Decision) -> None:
        """Count one statement routed by ``decision`` in this thread's counts (never taken back)."""
        try:
            targets, kinds = self._local.counts
        except AttributeError:
            targets, kinds = self._register()
        targets[decision.target] += 1  # string keys, plain dicts: ~50 ns each
        kinds[decision.kind] += 1

    def _register(self) -> _Counts:
        counts: _Counts = (defaultdict(int), defaultdict(int))
        with self._lock:
            self._fold_finished()
            self._threads.append((weakref.ref(threading.current_thread()), counts))
        self._local.counts = counts
        return counts

    def _fold_finished(self) -> None:
        """Keep only live threads' dicts (under the lock): a finished thread's counts move to the total."""
        alive = []
        for ref, counts in self._threads:
            thread = ref()
            if thread is None or not thread.is_alive():
                _add(self._retired, counts)
            else:
                alive.append((ref, counts))
        self._threads = alive

    def _emit(self, decision: Decision, statement: Any) -> None:
        target = decision.target
        replica_lag = None if target == PRIMARY else self._lag(target)
        text = None
        if self.log_statements and statement is not None:
            text = " ".join(str(statement).split())[:_STATEMENT_TEXT]
        extra = {"rwsplit_target": target, "rwsplit_reason": decision.reason, "rwsplit_lag": replica_lag}
        if text is None:
            ROUTE_LOG.debug("%s: %s", target, decision.reason, extra=extra)
        else:
            ROUTE_LOG.debug("%s: %s | %s", target, decision.reason, text, extra=extra)
        if self._listening:
            self._fire("route", RouteEvent(target, decision.reason, decision.kind, replica_lag, text))

    # ------------------------------------------------------------------ rarer events
    def failed_over(self, name: str, error: str) -> None:
        """A read's replica failed; the read is tried elsewhere."""
        with self._lock:
            self._events["failovers"] += 1
        ROUTE_LOG.debug("retry after %s failed: %s", name, error, extra={"rwsplit_target": name})

    def waited(self, replica: str, seconds: float, reached: bool) -> None:
        """A causal wait on a replica ended (reached its position or timed out)."""
        self._waits.append(seconds * 1000.0)
        with self._lock:
            self._events["causal_waits"] += 1
            if not reached:
                self._events["causal_timeouts"] += 1
        if self._listeners["causal_wait"]:
            self._fire("causal_wait", CausalWait(replica, seconds, reached))

    def snapshot_changed(self, old: Snapshot, new: Snapshot) -> None:
        """The monitor published a new view: count and tell which replicas left/rejoined/lag too much."""
        for replica in new.replicas:
            before = old.by_name.get(replica.name)
            if before is None:
                continue
            was = old.is_eligible(replica.name, self.max_lag)
            now = new.is_eligible(replica.name, self.max_lag)
            lagging = replica.lag is not None and replica.lag > self.max_lag
            was_lagging = before.lag is not None and before.lag > self.max_lag
            if lagging and not was_lagging:
                event = ReplicaEvent(replica.name, "lag_exceeded", "lag above max_lag", replica.lag)
                self._replica_event(event)
            if was and not now:
                self._count("replicas_out")
                why = replica.error or ("lag above max_lag" if lagging else "not eligible")
                self._replica_event(ReplicaEvent(replica.name, "replica_down", why, replica.lag))
            elif now and not was:
                if before.probes:  # not the first reading after start
                    self._count("replicas_readmitted")
                self._replica_event(ReplicaEvent(replica.name, "replica_up", "eligible", replica.lag))

    def _count(self, name: str) -> None:
        with self._lock:
            self._events[name] += 1

    def _replica_event(self, event: ReplicaEvent) -> None:
        logging.getLogger("rwsplit").info("%s %s: %s", event.name, event.event, event.reason)
        self._fire(event.event, event)

    # ------------------------------------------------------------------ listeners
    def listen(self, name: str, fn: Callable[[Any], None]) -> None:
        if name not in self._listeners:
            raise ValueError(f"unknown rwsplit event {name!r}; events are {list(EVENTS)}")
        if not callable(fn):
            raise TypeError(f"an event listener must be callable, got {type(fn).__name__}")
        with self._lock:
            self._listeners[name] = [*self._listeners[name], fn]
            self._listening = bool(self._listeners["route"])

    def remove(self, name: str, fn: Callable[[Any], None]) -> None:
        if name not in self._listeners:
            raise ValueError(f"unknown rwsplit event {name!r}; events are {list(EVENTS)}")
        with self._lock:
            listeners = self._listeners[name]
            if fn not in listeners:
                raise ValueError(f"{fn!r} is not listening to {name!r}")
            self._listeners[name] = [f for f in listeners if f is not fn]
            self._listening = bool(self._listeners["route"])

    def _fire(self, name: str, event: Any) -> None:
        for fn in self._listeners[name]:
            try:
                fn(event)
            except Exception:  # a listener's bug must not fail the statement or the monitor
                logging.getLogger("rwsplit").exception("rwsplit %s listener %r failed", name, fn)

    # ------------------------------------------------------------------ totals
    def totals(self) -> Stats:
        """Like :meth:`stats` since the engine started: ``stats(reset=True)`` never lowers it
        (what monotonic metrics read)."""
        return self.stats(lifetime=True)

    def stats(self, reset: bool = False, *, lifetime: bool = False) -> Stats:
        """The counters now (and start again from zero with ``reset``)."""
        with self._lock:
            self._fold_finished()
            total: _Counts = (defaultdict(int), defaultdict(int))
            statements, kinds = total
            _add(total, self._retired)
            for _, counts in self._threads:
                _add(total, counts)
            events = Counter(self._events)
            waits = sorted(self._waits)
            since = self._since
            if lifetime:
                _add(total, self._carried)
                events.update(self._carried_events)
                since = self._started
            elif reset:  # the live dicts keep counting: the total restarts below zero by what they hold
                _add(self._carried, total)
                self._carried_events.update(events)
                old, self._retired = self._retired, (defaultdict(int), defaultdict(int))
                _add(self._retired, old)
                _add(self._retired, total, sign=-1)
                self._events.clear()
                self._waits.clear()
                self._since = time.time()
        reads = sum(n for kind, n in kinds.items() if kind not in _PRIMARY_KINDS)
        replica_reads = sum(n for target, n in statements.items() if target != PRIMARY)
        fallbacks = kinds.get("fallback", 0) + kinds.get("retry", 0)
        return Stats(
            statements={k: n for k, n in statements.items() if n},
            kinds={k: n for k, n in kinds.items() if n},
            reads=reads,
            replica_reads=replica_reads,
            offload=replica_reads / reads if reads else None,
            causal_waits=CausalWaits(
                count=events["causal_waits"],
                timeouts=events["causal_timeouts"],
                p50_ms=_percentile(waits, 0.5),
                p99_ms=_percentile(waits, 0.99),
            ),
            failovers=events["failovers"],
            fallbacks=fallbacks,
            replicas_out=events["replicas_out"],
            replicas_readmitted=events["replicas_readmitted"],
            since=since,
        )


def _observer_of(engine: Any) -> Observer:
    observer = getattr(getattr(engine, "sync_engine", engine), "_observer", None)
    if not isinstance(observer, Observer):
        raise TypeError(
            f"rwsplit events are listened to on a RoutingEngine or AsyncRoutingEngine, got "
            f"{type(engine).__name__} (SQLAlchemy's own events: sqlalchemy.event on engine.primary)"
        )
    return observer


def listen(engine: Any, name: str, fn: Callable[[Any], None]) -> None:
    """Call ``fn(event)`` on each ``name`` event of a routing engine, as ``sqlalchemy.event.listen``.

    ``"route"``: a :class:`RouteEvent` per routed statement, on the thread that runs it (keep it
    cheap); ``"replica_down"``, ``"replica_up"``, ``"lag_exceeded"``: a :class:`ReplicaEvent`, on a
    monitor thread. A listener that raises is logged and skipped: it never fails a statement.
    """
    _observer_of(engine).listen(name, fn)


def remove(engine: Any, name: str, fn: Callable[[Any], None]) -> None:
    """Stop calling ``fn`` for ``name`` events (``ValueError`` if it was not listening)."""
    _observer_of(engine).remove(name, fn)


def listens_for(engine: Any, name: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Decorator form of :func:`listen`: ``@rwsplit.listens_for(engine, "replica_down")``."""
    observer = _observer_of(engine)

    def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        observer.listen(name, fn)
        return fn

    return register
