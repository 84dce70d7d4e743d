"""The one routing path: classify → consistency policy → topology → balancer → target.

Sessions, Core connections and the benchmark all call :meth:`Router.decide`; nothing else
re-implements a piece of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._validate import check_seconds
from .balancer import Balancer
from .classifier import PRIMARY, Route, server_floor
from .classifier.api import bound_classifier
from .consistency_state import USE_PRIMARY, ConsistencyState
from .errors import NoReplicaAvailable
from .failover import RETRIED_ON_PRIMARY
from .gtid import Position
from .monitor import Monitor
from .policy import RoutingPolicy
from .state import ServerState, Snapshot

__all__ = ["Decision", "Router", "PRIMARY", "RETRIED_ON_PRIMARY"]

_MAX_WRITE_DECISIONS = 1024
_WAITED_ONCE = "causal: a wait for this position already timed out"
_BEHIND_READ = "monotonic reads: no eligible replica has what this session already read"


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one statement goes: ``target`` is ``"primary"`` or a replica name.

    ``writes``: the statement must run in the primary transaction; ``effect`` says why
    (``"write"`` may change data, ``"lock"`` locks rows, ``"session"`` sets or reads connection state).
    ``fallback``: a read meant for a replica that runs on the primary instead (no replica, a
    causal wait timed out, the replica failed): like a replica read it runs in autocommit.
    ``deferred``: counted in the stats only once its statement ran (a read sent with its causal
    wait: if the wait times out, the read runs elsewhere and counts there).
    """

    target: str
    reason: str
    writes: bool = False
    wait_for: Position | None = None
    effect: str = "read"
    fallback: bool = False
    kind: str = "read"  # for counters and metrics: one of rwsplit.observe.KINDS
    deferred: bool = False

    @property
    def on_primary(self) -> bool:
        return self.target == PRIMARY


# A read the app declared may write (a view or trigger calling a writing function).
_DECLARED_WRITE = Decision(PRIMARY, "rwsplit_route='write' option", writes=True, effect="write", kind="write")


class Router:
    """Decides the target of each statement for one routing engine."""

    def __init__(
        self,
        policy: RoutingPolicy,
        monitor: Monitor,
        balancer: Balancer,
        in_flight: Callable[[str], int],
    ) -> None:
        self.policy = policy
        self.monitor = monitor
        self.balancer = balancer
        self._in_flight = in_flight
        self._decisions: dict[tuple[str, str], Decision] = {}
        self._pinned: dict[str, Decision] = {}
        self._writes: dict[tuple[str, str], Decision] = {}
        self._fallbacks: dict[float, Decision] = {}
        # (monitor's version mapping, the classifier for the floor over the replicas' versions):
        # recomputed when the mapping changes; one tuple, replaced whole, for concurrent readers.
        self._classifier: tuple[Mapping[str, str] | None, Callable[[Any], Route]] = (
            None,
            bound_classifier(policy.read_only_functions, None),
        )

    def decide(
        self,
        statement: Any,
        state: ConsistencyState,
        options: Mapping[str, Any] | None = None,
        hint: str | None = None,
    ) -> Decision:
        """Route one statement for a session/connection in ``state``.

        ``options`` are the statement's execution options (``rwsplit_route="primary"``,
        ``rwsplit_max_lag=…``); ``hint`` is a caller-side reason to use the primary (an ORM
        refresh of an object this session wrote, …). Neither can send a write to a replica.
        """
        versions = self.monitor.versions
        seen, classify = self._classifier
        if versions is not seen:
            names = [r.name for r in self.monitor.snapshot().replicas]
            server = server_floor(versions.get(name) for name in names)
            classify = bound_classifier(self.policy.read_only_functions, server)
            self._classifier = (versions, classify)
        route = classify(statement)
        if route.target == PRIMARY:
            return self._writes.get((route.reason, route.effect)) or self._write_decision(route)
        if options and options.get("rwsplit_route") == "write":
            return _DECLARED_WRITE
        return self.read_target(state, options, hint, route.reason)

    def read_target(
        self,
        state: ConsistencyState,
        options: Mapping[str, Any] | None = None,
        hint: str | None = None,
        reason: str = "read",
    ) -> Decision:
        """Where a statement already known to be a replica-safe read goes."""
        max_lag = state.max_lag
        if options:
            route = options.get("rwsplit_route")
            if route is not None:
                if route == PRIMARY:
                    return Decision(PRIMARY, "rwsplit_route='primary' option", kind="hint")
                if route != "write":
                    raise ValueError(f"rwsplit_route must be 'primary' or 'write', got {route!r}")
            looser = options.get("rwsplit_max_lag")
            if looser is not None:
                max_lag = check_seconds("rwsplit_max_lag", looser)
        if hint is not None:
            retried = hint == RETRIED_ON_PRIMARY
            return Decision(PRIMARY, hint, fallback=retried, kind="retry" if retried else "hint")
        pinned = state.primary_reason()
        if pinned is not None:
            return self._pinned.get(pinned) or self._pinned_decision(pinned)
        if state.mode == "causal" or state.position.seqs:  # a token given to any session is honoured
            return self.causal_replica(state, max_lag, state.required(), reason)
        own = state.replica  # the common case: the session's replica is still eligible
        if own is not None and self.monitor.snapshot().is_eligible(own, max_lag):
            return self._decisions.get((own, reason)) or self._replica_decision(own, reason)
        return self.pick_replica(state, max_lag, reason)

    def causal_replica(
        self, state: ConsistencyState, max_lag: float, required: Position, reason: str
    ) -> Decision:
        """A replica known to have ``required``; else the most advanced one, after a bounded wait.

        The caller runs the wait (``Decision.wait_for``) on that replica's connection just before
        the read and goes to the primary if it times out.
        """
        monitor = self.monitor
        snapshot = monitor.snapshot()
        own = state.replica
        if (  # the common case, decided without looking at the other replicas (the same choice)
            own is not None
            and own not in state.failed
            and snapshot.is_eligible(own, max_lag)
            and _has(snapshot.by_name[own], required, state, monitor)
        ):
            choice = own
        else:
            candidates = [r for r in snapshot.eligible(max_lag) if r.name not in state.failed]
            if not candidates:
                return self._fallback(max_lag)
            covered = [r.name for r in candidates if _has(r, required, state, monitor)]
            if not covered:
                if state.waited_for(required):  # one bounded wait per position, whatever the token says
                    return Decision(PRIMARY, _WAITED_ONCE, fallback=True, kind="fallback")
                best = min(candidates, key=lambda r: _likely_first(r, required)).name
                return Decision(
                    best, "causal: wait for the session's position", wait_for=required, kind="causal"
                )
            choice = own if own in covered else self._balance(covered)
        if state.replica != choice:
            state.use_replica(choice)
        # Whatever this read sees is at least what the monitor last saw there: monotonic reads.
        state.observed(snapshot.by_name[choice].position, snapshot.primary.position)
        return self._replica_decision(choice, reason)

    def pick_replica(self, state: ConsistencyState, max_lag: float, reason: str) -> Decision:
        """An eligible replica for a session whose own replica is not (or that has none), else the fallback.

        Moving to another replica, the session takes only one the monitor saw at or past where
        it last saw the replicas this session read from (monotonic reads), else the primary.
        """
        snapshot = self.monitor.snapshot()
        if not snapshot.replicas:  # none configured (or none known yet): no lists to build
            return self._fallback(max_lag)
        replicas = [r for r in snapshot.eligible(max_lag) if r.name not in state.failed]
        if not replicas:
            return self._fallback(max_lag)
        if state.read_from:
            floor = _read_floor(snapshot, state.read_from)
            if floor:
                replicas = [r for r in replicas if r.position.covers(floor)]
                if not replicas:
                    return Decision(PRIMARY, _BEHIND_READ, fallback=True, kind="fallback")
        choice = self._balance([r.name for r in replicas])
        state.use_replica(choice)
        return self._replica_decision(choice, reason)

    def _fallback(self, max_lag: float) -> Decision:
        if self.policy.fallback == "error":
            raise NoReplicaAvailable(
                f"no replica within max_lag={max_lag:g}s is reachable (fallback='error')"
            )
        decision = self._fallbacks.get(max_lag)
        if decision is None:
            reason = f"no eligible replica within {max_lag:g}s"
            decision = Decision(PRIMARY, reason, fallback=True, kind="fallback")
            if len(self._fallbacks) < 64:  # one per max_lag in use: a handful
                self._fallbacks[max_lag] = decision
        return decision

    def _write_decision(self, route: Route) -> Decision:
        """A statement for the primary transaction, made once per reason and effect (a bounded set:
        emptied past :data:`_MAX_WRITE_DECISIONS`, as reasons may name functions or tables)."""
        if len(self._writes) >= _MAX_WRITE_DECISIONS:
            self._writes.clear()
        decision = Decision(PRIMARY, route.reason, writes=True, effect=route.effect, kind=route.effect)
        return self._writes.setdefault((route.reason, route.effect), decision)

    def _pinned_decision(self, reason: str) -> Decision:
        """A read pinned to the primary (the few reasons of ``primary_reason``), made once per reason."""
        kind = "hint" if reason == USE_PRIMARY else "pinned"
        return self._pinned.setdefault(reason, Decision(PRIMARY, reason, kind=kind))

    def _balance(self, names: list[str]) -> str:
        in_flight = {name: self._in_flight(name) for name in names}
        choice = self.balancer(names, in_flight)
        if choice not in in_flight:
            raise ValueError(f"balancer {self.balancer!r} returned {choice!r}, not one of {names}")
        return choice

    def _replica_decision(self, name: str, reason: str) -> Decision:
        """Replica decisions are few and immutable: reuse them instead of allocating per statement."""
        key = (name, reason)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decisions.setdefault(key, Decision(name, reason))
        return decision


def _has(replica: ServerState, required: Position, state: ConsistencyState, monitor: Monitor) -> bool:
    """Whether ``replica`` is known to have applied ``required``: the monitor saw it there, a wait
    of this session proved it, or a wait of any session since the monitor's last probe of it."""
    return (
        replica.position.covers(required)
        or state.confirmed_covers(replica.name, required)
        or monitor.applied_covers(replica, required)
    )


def _observed(snapshot: Snapshot, name: str) -> Position:
    """What the monitor last saw on replica ``name``, within the primary's domains and numbers.

    A lower bound of what a read there sees now. Empty while the primary's position is unknown.
    """
    return snapshot.by_name[name].position.within(snapshot.primary.position)


def _read_floor(snapshot: Snapshot, names: set[str]) -> Position:
    """The latest position the monitor saw on any of ``names`` (see :func:`_observed`)."""
    floor = Position()
    for name in names:
        if name in snapshot.by_name:
            floor = floor.merge(_observed(snapshot, name))
    return floor


def _likely_first(replica: ServerState, required: Position) -> tuple[int, float, float]:
    """Sort key: the replica most likely to reach ``required`` soonest comes first.

    Fewest transactions missing at its last probe first (a delayed replica looks "caught up"
    between writes, but its last-seen position trails), then the lowest recent average lag.
    """
    return (replica.position.behind(required), replica.lag_average or 0.0, replica.lag or 0.0)
