"""Per-session consistency state: what a session did that decides where its next read may go.

Sessions and Core connections each hold a :class:`ConsistencyState`; the router asks it
:meth:`~ConsistencyState.primary_reason` before choosing a replica. The ``pin_window`` pin is
per thread/task (a context variable) so it can outlive one session.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from .causal import ConsistencyScope, current_scope
from .gtid import Position

__all__ = ["ConsistencyState", "pinned_until", "pin_primary_until"]


_pinned_until: ContextVar[float] = ContextVar("rwsplit_pinned_until", default=0.0)


def pinned_until() -> float:
    """Wall-clock time until which this thread/task reads from the primary (``pin_window``)."""
    return _pinned_until.get()


_pin_limit = 0.0  # the longest pin_window of any engine made in this process


def allow_pin_window(seconds: float) -> None:
    """An engine with this ``pin_window`` exists: restored pins may last that long from now."""
    global _pin_limit
    _pin_limit = max(_pin_limit, seconds)


def pin_primary_until(until: float) -> None:
    """Carry a pin across requests: restore a value saved from :func:`pinned_until` (e.g. a cookie).

    The value comes from a client: it must be a number, and it is clamped to the longest
    ``pin_window`` of this process's engines from now (a client cannot pin itself for longer).
    Sign it on its way through the client with ``engine.pin_cookie()``/``engine.restore_pin()``.
    """
    if isinstance(until, bool) or not isinstance(until, (int, float)):
        raise TypeError(
            f"pin_primary_until takes a time in seconds since the epoch (a float), got {type(until).__name__}"
        )
    if not math.isfinite(until):
        raise ValueError(f"pin_primary_until takes a finite time, got {until!r}")
    until = min(float(until), time.time() + _pin_limit)
    if until > _pinned_until.get():
        _pinned_until.set(until)


USE_PRIMARY = "use_primary block"  # the reason of reads in a use_primary() block (a hint, not a pin)


_NOWHERE = Position()  # positions are immutable: every fresh state shares the empty one


class ConsistencyState:
    """What one session or connection has done that constrains where its reads may go.

    Not thread-safe: like a SQLAlchemy Session, one per thread or task.
    """

    __slots__ = (
        "mode",
        "max_lag",
        "pin_window",
        "session_pinned",
        "tx_on_primary",
        "tx_wrote",
        "session_wrote",
        "connection_state",
        "forced",
        "replica",
        "failed",
        "position",
        "after",
        "confirmed",
        "cluster",
        "read_from",
        "gave_up",
        "_verify",
        "_encode",
        "_observed",
    )

    def __init__(self, mode: str, max_lag: float, pin_window: float = 0.0) -> None:
        self.mode = mode
        self.max_lag = max_lag
        self.pin_window = pin_window
        self.session_pinned = False
        self.tx_on_primary = False  # the open transaction is bound to the primary (wrote, locked, SET …)
        self.tx_wrote = False  # … and may have changed data: its commit matters to later reads
        self.session_wrote = False  # some transaction of this session may have changed data
        self.connection_state = False  # a Core connection's SET/temporary table/lock lives on its primary
        self.forced = 0
        self.replica: str | None = None
        self.failed: set[str] = set()
        self.position = _NOWHERE
        self.after = _NOWHERE  # the position given at construction: reads see it even after reset()
        self.confirmed: dict[str, Position] = {}
        self.gave_up = _NOWHERE  # positions a causal wait of this session already timed out for
        self._verify: Callable[[str], Position] | None = None  # the engine's token decoder
        self._encode: Callable[[Position], str] | None = None
        self.cluster: str | None = None
        self.read_from: set[str] = set()
        self._observed: tuple[Position, Position, ConsistencyScope | None] | None = None  # observed()

    def primary_reason(self) -> str | None:
        """Why this session's next read must go to the primary, or None if a replica may serve it."""
        if self.forced:
            return USE_PRIMARY
        if self.tx_on_primary:
            return "transaction wrote or locked on the primary"
        if self.connection_state:
            return "connection state (SET, temporary table, lock) lives on the primary connection"
        if self.session_pinned:
            return "read-your-writes: session wrote"
        if self.pin_window and _pinned_until.get() > time.time():
            return "read-your-writes: pin_window after a write in this context"
        return None

    def wrote(self) -> None:
        """Record a possible data write on the primary (tables unknown: it may touch anything)."""
        self.tx_on_primary = True
        self.tx_wrote = True
        self.session_wrote = True
        if self.mode == "session":
            self.session_pinned = True
        if self.pin_window:
            pin_primary_until(time.time() + self.pin_window)

    def ran_on_primary(self, effect: str) -> None:
        """Record a statement the classifier sent to the primary transaction (``Decision.effect``)."""
        if effect == "write":
            self.wrote()
        else:
            self.bind_transaction()

    def bind_transaction(self) -> None:
        """A lock, session setting or savepoint on the primary: the transaction stays there, no pin."""
        self.tx_on_primary = True

    def mark_connection_state(self) -> None:
        """A SET, temporary table or lock now lives on this connection's primary: reads follow it."""
        self.connection_state = True

    def use_replica(self, name: str) -> None:
        """Later reads stick to replica ``name``; it counts for monotonic reads (``read_from``)."""
        self.replica = name
        self.read_from.add(name)

    def drop_replica(self) -> None:
        """Stop sticking to the current replica (it failed or fell behind); ``read_from`` keeps it."""
        self.replica = None

    def replica_failed(self, name: str) -> None:
        """A read on ``name`` failed: not retried there in this transaction, nor kept as the replica."""
        self.failed.add(name)
        if self.replica == name:
            self.drop_replica()

    @contextlib.contextmanager
    def primary_only(self) -> Iterator[None]:
        """Within the block every read goes to the primary (``use_primary()``; blocks nest)."""
        self.forced += 1
        try:
            yield
        finally:
            self.forced -= 1

    def transaction_ended(self) -> None:
        """The transaction committed or rolled back: it no longer keeps reads on the primary."""
        if self.tx_wrote and self.pin_window:
            # Replicas can only start applying a write once it commits: the window counts from here.
            pin_primary_until(time.time() + self.pin_window)
        self.tx_on_primary = False
        self.tx_wrote = False
        self.failed.clear()

    # ---------------------------------------------------------------- causal mode
    def bind_cluster(
        self,
        cluster: str,
        verify: Callable[[str], Position] | None = None,
        encode: Callable[[Position], str] | None = None,
    ) -> None:
        """This state belongs to an engine of ``cluster``; a causal one joins the current scope now.

        Joining early makes a scope of another cluster, or a scope token this engine refuses
        (``verify``), fail when the session is made, not after its first commit.
        """
        self.cluster = cluster
        self._verify, self._encode = verify, encode
        if self.mode == "causal":
            scope = current_scope()
            if scope is not None:
                scope.join(cluster, verify, encode)

    def required(self) -> Position:
        """The position a causal read must see: this session's, and its request scope's."""
        scope = current_scope()
        if scope is None:
            return self.position
        scope.join(self.cluster, self._verify, self._encode)
        if not scope.position:
            return self.position
        return self.position.merge(scope.position)

    def give_up(self, position: Position) -> None:
        """A causal wait for ``position`` timed out: later reads of this session (and its request
        scope) needing no more than that do not wait for it again."""
        self.gave_up = self.gave_up.merge(position)
        scope = current_scope()
        if scope is not None:
            scope.gave_up = scope.gave_up.merge(position)

    def waited_for(self, position: Position) -> bool:
        """Whether a wait for ``position`` (or a later one) already timed out in this session or scope."""
        if self.gave_up and self.gave_up.covers(position):
            return True
        scope = current_scope()
        return scope is not None and bool(scope.gave_up) and scope.gave_up.covers(position)

    def advance(self, position: Position) -> None:
        """Raise the position this session has written or observed (never lowers it)."""
        if position and not self.position.covers(position):
            self.position = self.position.merge(position)
        scope = current_scope()
        if scope is not None and position:
            scope.join(self.cluster, self._verify, self._encode)
            if not scope.position.covers(position):
                scope.advance(position)

    def observed(self, replica: Position, primary: Position) -> None:
        """A read on a replica the monitor last saw at ``replica`` sees at least that: advance to it.

        Only what the primary has counts (a replica's extra domain would stall every other one).
        Done once per probe of that replica (and request scope): the reads that follow would only
        advance to the same position again.
        """
        scope = current_scope()
        seen = self._observed
        if seen is not None and seen[0] is replica and seen[1] is primary and seen[2] is scope:
            return
        self._observed = (replica, primary, scope)
        position = replica.within(primary)
        if position:
            self.advance(position)

    def committed(self, position: Position | None) -> None:
        """The primary committed this transaction at ``position`` (causal mode).

        Only a transaction that may have changed data matters; if its position is unknown the
        session reads from the primary from now on.
        """
        if not self.tx_wrote:
            return
        if position is None:
            self.session_pinned = True
            return
        self.advance(position)

    def confirm(self, replica: str, position: Position) -> None:
        """``replica`` has applied ``position`` (a wait for it succeeded)."""
        self.confirmed[replica] = self.confirmed.get(replica, Position()).merge(position)

    def confirmed_covers(self, replica: str, position: Position) -> bool:
        """Whether a wait on ``replica`` already proved it has applied ``position``."""
        have = self.confirmed.get(replica)
        return have is not None and have.covers(position)

    def start_after(self, position: Position) -> None:
        """Reads of this session or connection see ``position``, also after it is closed and reused."""
        self.after = position
        self.advance(position)

    def reset(self) -> None:
        """The session closed: forget everything but its settings (``after`` is one of them)."""
        self.session_pinned = False
        self.tx_on_primary = False
        self.tx_wrote = False
        self.session_wrote = False
        self.connection_state = False
        self.replica = None
        self.failed.clear()
        self.position = self.after
        self.gave_up = _NOWHERE
        self.confirmed.clear()
        self.read_from.clear()
        self._observed = None
